"""irctl: batch image restoration with diffusion models."""

__version__ = "0.1.0"
