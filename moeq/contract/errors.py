"""Error types that carry a precise, user-facing message (CLI prints them on one line)."""

from __future__ import annotations


class MoeqError(Exception):
    """Base class: a problem the user can fix; the message says what and where."""


class RecipeError(MoeqError):
    """A recipe key has an unknown name or an impossible value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"recipe.{key}: {message}")
        self.key = key
        self.detail = message


class ModelError(MoeqError):
    """The model reference cannot be loaded or is not a supported MoE model."""


class UnsupportedFamilyError(ModelError):
    """The checkpoint's model_type has no adapter."""


class CalibrationError(MoeqError):
    """The calibration set is empty, too short or unusable."""


class CancelledError(MoeqError):
    """The run was cancelled by the user; raised between blocks."""


class ArtifactError(MoeqError):
    """A saved artifact is missing, corrupted or does not match its checksum."""
