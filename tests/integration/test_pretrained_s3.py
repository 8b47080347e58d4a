"""Pretrained starts: the offline english_g2, the korean_g2 download (served on 127.0.0.1), checked loading."""

from __future__ import annotations

from ocrtune.files import file_digest
from ocrtune.model.pretrained import (
    STORE_PREFIX,
    download_model,
)


def test_object_store_cache(served, store, tmp_path):
    """A downloaded model is published to object storage; another node then needs no internet."""
    base, md5 = served
    store.ensure_bucket()
    store.delete_prefix(STORE_PREFIX)
    first = download_model(
        "korean_g2", cache_dir=tmp_path / "a", url=f"{base}/korean_g2.zip", md5=md5, store=store
    )
    assert store.exists(f"{STORE_PREFIX}/korean_g2.pth")
    second = download_model(
        "korean_g2", cache_dir=tmp_path / "b", url=f"{base}/missing.zip", md5=md5, store=store
    )
    assert file_digest(second, "md5") == file_digest(first, "md5") == md5
