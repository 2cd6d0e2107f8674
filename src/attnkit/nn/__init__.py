"""nn.Module wrappers that own parameters and call :mod:`attnkit.functional`."""

from .base import AttentionOutput

__all__ = ["AttentionOutput"]
