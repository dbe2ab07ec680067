"""The config overrides that end a tool's command line (``KEY VALUE`` pairs for YAML
configs, ``key=value`` for LazyConfigs), checked when the arguments are read.

argparse puts every word after the first override into the override list, so a flag
given after them (``SOLVER.MAX_ITER 4 --resume``) would be read as a key or a value and
fail later, far from its cause (yacs' "Override list has odd length"), or not at all.
Depth settings given as arguments (``--depth``, ``--depths``) are checked here too, for
their form; their number of letters is the model's (checked once its config is read).
"""
import argparse
from typing import Sequence

from ..depth import DEPTH_ALIASES, DEPTH_LIST_WORDS


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




def _depth_word(text: str, lists: bool) -> str:
    if text.lower() in DEPTH_ALIASES or (lists and text.lower() in DEPTH_LIST_WORDS):
        return text.lower()
    if text and set(text.upper()) <= set("TF"):
        return text.upper()
    if text.lower() in DEPTH_LIST_WORDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} names several settings; this option takes one, e.g. TTFF or 'base' "
            f"(run once per setting for several)")
    hint = ""
    if "." in text or text[:1].upper() not in ("T", "F"):
        hint = (f" If {text!r} is a config override, put the overrides after --opts, which "
                f"ends the list of settings: ... --opts {text} VALUE.")
    words = ", ".join(repr(w) for w in [*DEPTH_ALIASES, *(DEPTH_LIST_WORDS if lists else ())])
    raise argparse.ArgumentTypeError(
        f"Invalid depth setting {text!r}: give one letter per adaptive part, 'T' (skip) or "
        f"'F' (run), e.g. TTFF, or {words}.{hint}")


def depth_argument(text: str) -> str:
    """An argparse type for one depth setting: T/F letters or 'super' / 'base'."""
    return _depth_word(text, lists=False)


def depth_list_argument(text: str) -> str:
    """An argparse type for an entry of a list of depth settings: also 'all' or 'mixed'
    (which stand alone: :func:`check_depth_list`)."""
    return _depth_word(text, lists=True)


def check_depth_list(parser: argparse.ArgumentParser, option: str, depths) -> None:
    """'all' and 'mixed' stand alone in a list of depth settings."""
    for word in DEPTH_LIST_WORDS:
        if depths and word in depths and len(depths) > 1:
            parser.error(f"{option} {word} stands alone: give {word!r} or a list of settings")


def positive_int_argument(what: str, example: str, how: str = "give"):
    """An argparse type for a positive whole number: a bad one names ``what`` it counts
    and an example, e.g. "'0' is not a positive number of detections: give e.g. ..."
    (``how`` replaces "give", e.g. "give the image as H W,")."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a positive {what}: {how} e.g. {example}.")
        return value
    parse.__name__ = what.replace(" ", "_")  # argparse names the type in its messages
    return parse
