"""Helpers that several of adadet's packages share; they import nothing else of adadet, so
any package may import them.

* :mod:`.messages`: the pieces of error messages (a long list shown by its first items).
* :mod:`.tracing`: tensor-in, tensor-out adapters of a Detectron2 model for tracing (the
  exporters of :mod:`adadet.deploy`, FLOP counting in :mod:`adadet.evaluation.cost`).
* :mod:`.timing`: latency with the device synchronised (the per-depth evaluation, the
  predictor, the benchmarks).

Import the submodule you need: this package imports none of them.
"""
