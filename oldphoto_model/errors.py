"""Typed errors of the model package."""
from __future__ import annotations


class OldPhotoError(Exception):
    """Base class of this package's errors."""


class WeightsError(OldPhotoError):
    """A weight file is missing, unreadable, of another format, or does not match
    its config. ``path`` names the file, ``reason`` says what is wrong."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class InputError(OldPhotoError, ValueError):
    """An image or mask the pipeline cannot take (wrong dtype, shape, channels)."""


class Cancelled(OldPhotoError):
    """Raised by a progress callback to stop a restore; the pipeline re-raises it."""
