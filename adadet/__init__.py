"""adadet: Adaptive Depth Networks (ADN) for Detectron2."""
__version__ = "0.1.0"
