"""The container images the components run in (the containers issue builds them); both can be overridden."""

from __future__ import annotations

import os

IMAGE_ENV = "OCRTUNE_IMAGE"
TRAINER_IMAGE_ENV = "OCRTUNE_TRAINER_IMAGE"
DEFAULT_IMAGE = "ghcr.io/ocrtune/ocrtune:0.1.0"
DEFAULT_TRAINER_IMAGE = "ghcr.io/ocrtune/ocrtune-train:0.1.0"


def image() -> str:
    """The project's image, every component's base_image: ``$OCRTUNE_IMAGE`` or the released tag."""
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


def trainer_image() -> str:
    """The image a TrainJob / PyTorchJob's ranks run: ``$OCRTUNE_TRAINER_IMAGE`` or the released tag."""
    return os.environ.get(TRAINER_IMAGE_ENV) or DEFAULT_TRAINER_IMAGE
