"""The config that torchvision-style weights (official ADN and torchvision ResNets) need.

Those ResNets put the stride of a bottleneck in its 3x3 conv and were trained on RGB images
normalised with ImageNet's mean/std; Detectron2's defaults follow the MSRA weights instead
(stride in the 1x1 conv, BGR, mean only). The checkpointer cannot see the config, so tools
call :func:`check_config_for_torchvision_weights` when the checkpointer reports
``needs_torchvision_config``.
"""

import functools
from typing import List, Optional, Sequence

from .errors import WeightsConfigError

__all__ = [
    "TORCHVISION_WEIGHTS_CONFIG",
    "torchvision_config_mismatches",
    "check_config_for_torchvision_weights",
    "torchvision_config_yaml",
]

#: Config keys and the values torchvision-style weights need.
TORCHVISION_WEIGHTS_CONFIG = {
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
    "INPUT.FORMAT": "RGB",
    "MODEL.PIXEL_MEAN": [123.675, 116.280, 103.530],
    "MODEL.PIXEL_STD": [58.395, 57.120, 57.375],
}


def _get(cfg, dotted: str):
    return functools.reduce(getattr, dotted.split("."), cfg)


def _same(actual, expected) -> bool:
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(
            abs(float(a) - e) < 1e-3 for a, e in zip(actual, expected)
        )
    return actual == expected


def torchvision_config_mismatches(cfg) -> List[str]:
    """One line per config key that differs from :data:`TORCHVISION_WEIGHTS_CONFIG`."""
    return [
        f"{key} is {_get(cfg, key)!r}, the weights need {expected!r}"
        for key, expected in TORCHVISION_WEIGHTS_CONFIG.items()
        if not _same(_get(cfg, key), expected)
    ]


def torchvision_config_yaml(
    weights: Optional[str] = None,
    depth: Optional[int] = None,
    basic_blocks: bool = False,
    num_mandatory_blocks: Optional[Sequence[int]] = None,
) -> str:
    """The config snippet torchvision-style weights need (printed by the converter)."""
    lines = ["MODEL:"]
    if weights:
        lines.append(f'  WEIGHTS: "{weights}"')
    lines += [
        "  PIXEL_MEAN: [123.675, 116.280, 103.530]",
        "  PIXEL_STD: [58.395, 57.120, 57.375]",
        "  RESNETS:",
    ]
    if depth:
        lines.append(f"    DEPTH: {depth}")
    if basic_blocks:  # Detectron2's ResNet-18/34 need it; its default (256) is for bottlenecks
        lines.append("    RES2_OUT_CHANNELS: 64")
    lines.append("    STRIDE_IN_1X1: False")
    if num_mandatory_blocks:
        lines += ["  ADN:", f"    NUM_MANDATORY_BLOCKS: {list(num_mandatory_blocks)}"]
    lines += ["INPUT:", '  FORMAT: "RGB"']
    return "\n".join(lines) + "\n"


def check_config_for_torchvision_weights(cfg) -> None:
    """Raise :class:`WeightsConfigError` listing every key of ``cfg`` that torchvision-style
    weights (official ADN, torchvision) would be used wrongly with; silent otherwise.

    A wrong stride position or channel order does not fail, it just gives poor results,
    hence the check.
    """
    problems = torchvision_config_mismatches(cfg)
    if problems:
        raise WeightsConfigError(
            f"MODEL.WEIGHTS ({cfg.MODEL.WEIGHTS!r}) holds torchvision-style ResNet weights "
            "(official ADN or torchvision: stride in the 3x3 conv, RGB input, ImageNet "
            "mean/std), but the config does not match them:\n  - "
            + "\n  - ".join(problems)
            + "\nFix: set "
            + ", ".join(f"{k}: {v}" for k, v in TORCHVISION_WEIGHTS_CONFIG.items())
            + "."
        )
