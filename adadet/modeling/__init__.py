from .backbone import *  # noqa: F401,F403  (registers the ADN backbones)
