"""Helpers that several of adadet's packages share; they import nothing else of adadet, so
any package may import them.

* :mod:`.messages`: the pieces of error messages (a long list shown by its first items).

Import the submodule you need: this package imports none of them.
"""
