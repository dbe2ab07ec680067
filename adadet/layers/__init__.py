from .switchable_norm import SkipSwitch, SwitchableNormConv2d

__all__ = ["SkipSwitch", "SwitchableNormConv2d"]
