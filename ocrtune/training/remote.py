"""Training data in and training output out through object storage, for trainers that see no shared disk.

A cluster trainer (a TrainJob node, a PyTorchJob pod) cannot read the files of the pipeline step that
launched it: ``ocrtune train`` takes ``s3://bucket/prefix`` for ``--train`` / ``--val`` (a tree published
with ``ObjectStore.publish_tree``), fetched once per node into a local cache keyed by the manifest's hashes
(ranks on one node share it, under a lock), and ``--publish s3://bucket/prefix`` uploads the output
directory when training ends, manifest last, so a reader never sees half an output.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from pathlib import Path
from typing import Any

from ocrtune.errors import UserError
from ocrtune.files import cache_dir
from ocrtune.platform.endpoints import s3_settings
from ocrtune.platform.storage import ObjectStore

CACHE_ENV = "OCRTUNE_DATA_CACHE"


def is_s3(path: str) -> bool:
    return str(path).startswith("s3://")


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix); a UserError for anything else."""
    bucket, _, prefix = url[len("s3://") :].partition("/") if is_s3(url) else ("", "", "")
    prefix = prefix.strip("/")
    if not bucket or not prefix:
        raise UserError(f"{url!r}: an object-storage tree must look like s3://bucket/prefix")
    return bucket, prefix


def store_for(url: str) -> tuple[ObjectStore, str]:
    """The store of ``url``'s bucket (endpoints from the environment first) and the prefix in it."""
    bucket, prefix = split_s3(url)
    return ObjectStore(s3_settings(bucket=bucket)), prefix


def _manifest_key(manifest: dict[str, Any]) -> str:
    files = {rel: info["sha256"] for rel, info in sorted(manifest["files"].items())}
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def fetch_input(path: str, cache: str | Path | None = None) -> str:
    """A local path for ``path``: itself when local, else the published tree fetched into the cache.

    The cache entry is named by the tree's content, so a republished prefix is fetched again and an unchanged
    one is not; a lock file makes the ranks of one node fetch it once."""
    if not is_s3(path):
        return path
    store, prefix = store_for(path)
    manifest = store.manifest(prefix)
    root = Path(cache) if cache else cache_dir("data", CACHE_ENV)
    dest = root / store.bucket / prefix / _manifest_key(manifest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not dest.is_dir():
            store.fetch_tree(prefix, dest)
    return str(dest)


def fetch_file(path: str, cache: str | Path | None = None) -> str:
    """A local path for one file: itself when local, else the object ``s3://bucket/key`` downloaded (a run
    config for a trainer that cannot see the launcher's files)."""
    if not is_s3(path):
        return path
    store, key = store_for(path)
    if not store.exists(key):
        raise UserError(f"{path}: no such object")
    root = Path(cache) if cache else cache_dir("data", CACHE_ENV)
    dest = root / store.bucket / "files" / key
    store.get_file(key, dest)  # to a temp file beside it, renamed: ranks never read half of it
    return str(dest)


def publish_output(out_dir: str | Path, url: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Upload ``out_dir`` under ``url`` (files first, the manifest last); returns the manifest."""
    store, prefix = store_for(url)
    return store.publish_tree(out_dir, prefix, meta=meta)


def download_output(url: str, local_dir: str | Path) -> dict[str, Any]:
    """The published tree at ``url`` into ``local_dir`` (complete or not at all); returns the manifest."""
    store, prefix = store_for(url)
    return store.fetch_tree(prefix, local_dir)
