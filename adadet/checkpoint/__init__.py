from .adn_checkpointer import ADNCheckpointer

__all__ = ["ADNCheckpointer"]
