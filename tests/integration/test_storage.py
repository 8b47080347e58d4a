"""ocrtune.storage against the real SeaweedFS S3 server of the local stack."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from ocrtune.errors import UserError
from ocrtune.files import sha256_file
from ocrtune.platform.stack import free_ports
from ocrtune.platform.storage import MANIFEST, ObjectStore, S3Settings


def test_30mb_roundtrip_multipart_and_hash(store, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(30 * 1024 * 1024))
    digest = store.put_file(src, "t/big.bin")
    assert digest == sha256_file(src)
    st = store.client.stat_object(store.bucket, "t/big.bin")
    assert "-" in st.etag.strip('"'), f"expected a multipart ETag, got {st.etag}"  # "<md5>-<parts>"
    assert st.metadata.get("x-amz-meta-sha256") == digest
    out = tmp_path / "back.bin"
    assert store.get_file("t/big.bin", out, sha256=digest) == digest
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(UserError, match="does not match"):
        store.get_file("t/big.bin", tmp_path / "bad.bin", sha256="0" * 64)
    assert not (tmp_path / "bad.bin").exists()


def test_wrong_credentials_refused(stack):
    creds = stack.credentials()
    bad = ObjectStore(S3Settings(stack.state.s3_url, creds.access_key, "not-the-secret", stack.state.bucket))
    with pytest.raises(UserError, match=f"S3 endpoint {stack.state.s3_url} refused the credentials"):
        bad.list("")


def test_unreachable_endpoint_names_it():
    (port,) = free_ports(1)
    s = ObjectStore(S3Settings(f"http://127.0.0.1:{port}", "a", "b", "bucket"), retries=2, backoff=0.05)
    with pytest.raises(UserError) as exc:
        s.list("")
    msg = str(exc.value)
    assert f"http://127.0.0.1:{port} unreachable" in msg and "after 3 tries" in msg and "\n" not in msg


def test_missing_bucket_is_named(stack):
    creds = stack.credentials()
    other = ObjectStore(S3Settings(stack.state.s3_url, creds.access_key, creds.secret_key, "no-such-bucket"))
    with pytest.raises(UserError, match=f"S3 endpoint {stack.state.s3_url} has no bucket 'no-such-bucket'"):
        other.get_bytes("anything")


def test_a_gateway_answering_5xx_is_retried_then_one_line():
    """A proxy or overloaded gateway in front of S3 answers 503 without an S3 error body."""
    import http.server
    import threading

    hits = []

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            hits.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        s = ObjectStore(S3Settings(url, "a", "b", "bucket"), retries=2, backoff=0.05)
        with pytest.raises(UserError) as exc:
            s.get_bytes("k")
    finally:
        server.shutdown()
        server.server_close()
    msg = str(exc.value)
    assert f"S3 endpoint {url} answered HTTP 503 during download k after 3 tries" in msg and "\n" not in msg
    assert len(hits) == 3


def test_publish_and_fetch_tree(store, tmp_path):
    src = tmp_path / "tree"
    (src / "images").mkdir(parents=True)
    (src / "gt.txt").write_text("images/a.jpg\t가나다\n", encoding="utf-8")
    (src / "images" / "a.jpg").write_bytes(b"\xff\xd8fake")
    m = store.publish_tree(src, "datasets/d1", meta={"kind": "test"})
    assert set(m["files"]) == {"gt.txt", "images/a.jpg"}
    assert "datasets/d1" in store.list_published("datasets/")
    dest = tmp_path / "back"
    store.fetch_tree("datasets/d1", dest)
    assert (dest / "gt.txt").read_text(encoding="utf-8") == "images/a.jpg\t가나다\n"

    # an object changed behind the manifest's back is caught, and nothing lands
    store.put_bytes(b"tampered", "datasets/d1/images/a.jpg")
    with pytest.raises(UserError, match="does not match"):
        store.fetch_tree("datasets/d1", tmp_path / "back2")
    assert not (tmp_path / "back2").exists()


UPLOADER = """
import sys
from ocrtune.platform.storage import ObjectStore, S3Settings
s = ObjectStore(S3Settings(*sys.argv[1:5]))
s.publish_tree(sys.argv[5], sys.argv[6], progress=lambda rel: print(rel, flush=True))
"""


def test_interrupted_tree_upload_is_never_available(stack, store, tmp_path):
    src = tmp_path / "tree"
    src.mkdir()
    for i in range(40):
        (src / f"part-{i:03d}.bin").write_bytes(os.urandom(1024 * 1024))
    creds = stack.credentials()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            UPLOADER,
            stack.state.s3_url,
            creds.access_key,
            creds.secret_key,
            stack.state.bucket,
            str(src),
            "datasets/interrupted",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    first = proc.stdout.readline()  # one file is up: kill it mid-tree
    assert first.startswith("part-")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.2)
    uploaded = store.list("datasets/interrupted/")
    assert uploaded, "the uploader died before uploading anything; the test proves nothing"
    assert len(uploaded) < 40
    assert f"datasets/interrupted/{MANIFEST}" not in uploaded
    assert "datasets/interrupted" not in store.list_published("datasets/")
    assert not store.is_published("datasets/interrupted")
    with pytest.raises(UserError, match="not published"):
        store.fetch_tree("datasets/interrupted", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_republish_withdraws_old_manifest_first(store, tmp_path):
    src = tmp_path / "t"
    src.mkdir()
    (src / "a.txt").write_text("one")
    store.publish_tree(src, "models/m")
    (src / "a.txt").write_text("two")
    m = store.publish_tree(src, "models/m")
    assert m["files"]["a.txt"]["sha256"] == hashlib.sha256(b"two").hexdigest()
    assert store.manifest("models/m")["files"]["a.txt"]["sha256"] == m["files"]["a.txt"]["sha256"]
