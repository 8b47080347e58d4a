"""One small S3 layer (over the ``minio`` SDK) for every artifact the platform moves.

Trees are published atomically: files go up under a prefix first and a manifest (file list + sha256)
is written last. Readers trust only prefixes that have a manifest, and verify every hash they download,
so an interrupted upload can never be mistaken for a dataset or a model.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import urllib3
import urllib3.exceptions as u3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from ocrtune.errors import UserError
from ocrtune.files import atomic_path, sha256_file, staged_dir
from ocrtune.platform.endpoints import S3Settings, redact_url

MANIFEST = "_MANIFEST.json"
PART_SIZE = 8 * 1024 * 1024  # multipart above this size
NOT_FOUND = ("NoSuchKey", "NoSuchObject", "NotFound")
T = TypeVar("T")
CONNECTION_ERRORS = (u3.MaxRetryError, u3.ProtocolError, u3.NewConnectionError, ConnectionError, TimeoutError)


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, CONNECTION_ERRORS)


def _answer_status(exc: BaseException) -> int | None:
    """The HTTP status of a non-S3 answer (minio raises these for bodies that are not S3 XML)."""
    if isinstance(exc, ServerError):
        return exc.status_code
    if isinstance(exc, InvalidResponseError):
        return int(getattr(exc, "_code", 0)) or None
    return None


class ObjectStore:
    """Upload/download files and trees to one bucket, with retries and hash checks."""

    def __init__(
        self, settings: S3Settings, retries: int = 4, backoff: float = 0.5, read_timeout: float = 120
    ):
        self.settings = settings
        self.retries = retries
        self.backoff = backoff
        url = urlparse(settings.endpoint if "://" in settings.endpoint else "http://" + settings.endpoint)
        if not url.hostname:
            raise UserError(f"S3 endpoint '{settings.endpoint}' is not a URL like http://host:port")
        self.endpoint = redact_url(f"{url.scheme}://{url.netloc}")  # for messages
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=read_timeout),
            retries=urllib3.Retry(total=0, connect=0, read=0, redirect=0),
            maxsize=8,
        )
        self.client = Minio(
            url.netloc,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=url.scheme == "https",
            region=settings.region,
            http_client=http,
        )
        self.bucket = settings.bucket

    # ---- plumbing ------------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with backoff on connection errors; map failures to one-line UserErrors."""
        attempt = 0
        while True:
            try:
                return fn()
            except S3Error as exc:
                if exc.code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"):
                    raise UserError(
                        f"S3 endpoint {self.endpoint} refused the credentials for {what} ({exc.code})"
                    ) from None
                if exc.code == "NoSuchBucket":
                    raise UserError(
                        f"S3 endpoint {self.endpoint} has no bucket '{self.bucket}' ({what})"
                    ) from None
                if exc.code in NOT_FOUND:
                    raise  # an answer, not a failure: callers such as exists() read it
                raise UserError(
                    f"S3 endpoint {self.endpoint} failed {what}: {exc.code}: {exc.message}"
                ) from None
            except Exception as exc:
                status = _answer_status(exc)  # an answer without an S3 error body (a proxy, a gateway)
                if status is not None and status < 500:
                    raise UserError(
                        f"S3 endpoint {self.endpoint} answered HTTP {status} to {what}, not as S3 does"
                    ) from None
                if status is None and not _is_connection_error(exc):
                    raise
                if attempt >= self.retries:  # connection errors and 5xx may pass: retried
                    reason = getattr(exc, "reason", None) or exc
                    how = f"answered HTTP {status}" if status else "unreachable"
                    raise UserError(
                        f"S3 endpoint {self.endpoint} {how} during {what} after {attempt + 1} tries: "
                        f"{type(reason).__name__}"
                    ) from None
                time.sleep(self.backoff * (2**attempt))
                attempt += 1

    def ensure_bucket(self) -> None:
        if not self._call("bucket check", lambda: self.client.bucket_exists(self.bucket)):
            self._call("bucket create", lambda: self.client.make_bucket(self.bucket))

    def exists(self, key: str) -> bool:
        try:
            self._call(f"stat {key}", lambda: self.client.stat_object(self.bucket, key))
            return True
        except S3Error as exc:
            if exc.code in NOT_FOUND:
                return False
            raise

    def list(self, prefix: str = "", recursive: bool = True) -> list[str]:
        return self._call(
            f"list {prefix}",
            lambda: [
                o.object_name
                for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=recursive)
            ],
        )

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self._call(f"delete {key}", lambda k=key: self.client.remove_object(self.bucket, k))
        return len(keys)

    # ---- files ---------------------------------------------------------------------------------
    def put_file(self, path: str | Path, key: str, sha256: str | None = None) -> str:
        """Upload one file (multipart above 8 MiB); returns and stores its sha256 as object metadata."""
        digest = sha256 or sha256_file(path)
        self._call(
            f"upload {key}",
            lambda: self.client.fput_object(
                self.bucket, key, str(path), part_size=PART_SIZE, metadata={"x-amz-meta-sha256": digest}
            ),
        )
        return digest

    def put_bytes(self, data: bytes, key: str, content_type: str = "application/octet-stream") -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._call(
            f"upload {key}",
            lambda: self.client.put_object(
                self.bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata={"x-amz-meta-sha256": digest},
            ),
        )
        return digest

    def get_bytes(self, key: str) -> bytes:
        def fetch() -> bytes:
            resp = self.client.get_object(self.bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self._call(f"download {key}", fetch)

    def get_file(self, key: str, path: str | Path, sha256: str | None = None) -> str:
        """Download to a temp file beside ``path``, verify the hash, then rename into place."""
        with atomic_path(path, suffix=".part", mode=0o644) as tmp:
            self._call(f"download {key}", lambda: self.client.fget_object(self.bucket, key, str(tmp)))
            digest = sha256_file(tmp)
            if sha256 and digest != sha256:
                raise UserError(
                    f"s3://{self.bucket}/{key}: sha256 {digest[:12]}… does not match {sha256[:12]}…"
                )
        return digest

    # ---- trees ---------------------------------------------------------------------------------
    @staticmethod
    def _walk(root: Path) -> Iterator[Path]:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                yield p

    def publish_tree(
        self,
        local_dir: str | Path,
        prefix: str,
        meta: dict[str, Any] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Upload ``local_dir`` under ``prefix``; the manifest goes last, so the tree is all-or-nothing."""
        root = Path(local_dir)
        if not root.is_dir():
            raise UserError(f"{root}: not a directory")
        prefix = prefix.strip("/")
        manifest_key = f"{prefix}/{MANIFEST}"
        if self.exists(manifest_key):  # republishing: withdraw the old one first, readers see nothing
            self._call(f"delete {manifest_key}", lambda: self.client.remove_object(self.bucket, manifest_key))
        files = {}
        for path in self._walk(root):
            rel = path.relative_to(root).as_posix()
            digest = self.put_file(path, f"{prefix}/{rel}")
            files[rel] = {"sha256": digest, "size": path.stat().st_size}
            if progress:
                progress(rel)
        manifest = {
            "prefix": prefix,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": files,
            "meta": meta or {},
        }
        self.put_bytes(
            json.dumps(manifest, indent=1, ensure_ascii=False).encode(), manifest_key, "application/json"
        )
        return manifest

    def manifest(self, prefix: str) -> dict[str, Any]:
        prefix = prefix.strip("/")
        key = f"{prefix}/{MANIFEST}"
        if not self.exists(key):
            raise UserError(
                f"s3://{self.bucket}/{prefix} is not published (no {MANIFEST}): incomplete or missing"
            )
        return json.loads(self.get_bytes(key))

    def is_published(self, prefix: str) -> bool:
        return self.exists(f"{prefix.strip('/')}/{MANIFEST}")

    def list_published(self, prefix: str = "") -> list[str]:
        """Prefixes under ``prefix`` that carry a manifest: the only ones readers may use."""
        suffix = "/" + MANIFEST
        return sorted(k[: -len(suffix)] for k in self.list(prefix) if k.endswith(suffix))

    def fetch_tree(self, prefix: str, local_dir: str | Path) -> dict[str, Any]:
        """Download a published tree, verifying every hash; lands in ``local_dir`` only when complete."""
        manifest = self.manifest(prefix)
        dest = Path(local_dir)
        if dest.exists() and any(dest.iterdir()):
            raise UserError(f"{dest}: exists and is not empty")
        with staged_dir(dest, overwrite=True) as staging:  # an empty ``dest`` is replaced, nothing else
            for rel, info in manifest["files"].items():
                self.get_file(f"{manifest['prefix']}/{rel}", staging / rel, sha256=info["sha256"])
        return manifest
