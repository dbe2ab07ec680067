"""The config overrides that end a tool's command line (``KEY VALUE`` pairs for YAML
configs, ``key=value`` for LazyConfigs), checked when the arguments are read.

argparse puts every word after the first override into the override list, so a flag
given after them (``SOLVER.MAX_ITER 4 --resume``) would be read as a key or a value and
fail later, far from its cause (yacs' "Override list has odd length"), or not at all.
"""
import argparse
from typing import Sequence


def check_overrides(parser: argparse.ArgumentParser, opts: Sequence[str], pairs: bool = True) -> None:
    """Stops through ``parser.error`` (exit status 2) if ``opts`` holds one of the tool's
    flags (or any ``--word``), or, with ``pairs``, an odd number of words."""
    flags = [w for w in opts if w.startswith("--") or w in parser._option_string_actions]
    if flags:
        named = " ".join(dict.fromkeys(flags))
        first = next((w for w in opts if w not in flags), "KEY")
        override = f"{first} VALUE" if pairs else first
        parser.error(
            f"{flags[0]} comes after the config overrides, where it is read as one of them: "
            f"put {named} before the first override (the overrides come last), e.g. {parser.prog} "
            f"--config-file FILE {named} {override} ..."
        )
    if pairs and len(opts) % 2:
        parser.error(
            f"config overrides come in KEY VALUE pairs; got {len(opts)} word{'' if len(opts) == 1 else 's'}: "
            f"{list(opts)}")
