"""components/image.py: the images every component and the trainer run in, overridable by environment."""

from ocrtune.components import image


def test_defaults_and_overrides(monkeypatch):
    monkeypatch.delenv(image.IMAGE_ENV, raising=False)
    monkeypatch.delenv(image.TRAINER_IMAGE_ENV, raising=False)
    assert image.image() == "ghcr.io/ocrtune/ocrtune:0.1.0"
    assert image.trainer_image() == "ghcr.io/ocrtune/ocrtune-train:0.1.0"
    monkeypatch.setenv(image.IMAGE_ENV, "registry.local/ocrtune:dev")
    monkeypatch.setenv(image.TRAINER_IMAGE_ENV, "registry.local/ocrtune-train:dev")
    assert image.image() == "registry.local/ocrtune:dev"
    assert image.trainer_image() == "registry.local/ocrtune-train:dev"
