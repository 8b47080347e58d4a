"""A stand-in for the KFP 2.x API server on 127.0.0.1: records every request, answers in v2beta1 shapes.

There is no KFP API server to run here, so ``ocrtune pipeline submit|schedule|runs`` are tested against
this: the real ``kfp.Client`` (2.17) and its generated ``kfp_server_api`` talk HTTP to it. It keeps
pipelines, versions, experiments, runs and recurring runs in memory with the fields the client reads
(snake_case JSON, as the KFP server's grpc-gateway writes), parses the multipart uploads and the
``filter`` predicates the client sends (``display_name`` EQUALS). ``fail[(METHOD, path)] = (status, msg)``
makes one endpoint answer an error, to test what the caller leaves behind.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

API = "/apis/v2beta1"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    return str(uuid.uuid4())


class Recorded(dict):
    """One request: method, path, query (dict of lists), json (the body when JSON), files (multipart)."""


class KfpStandin:
    """``with KfpStandin() as kfp: kfp.url ...``; ``kfp.requests`` lists what came in, in order."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}  # version id -> version (with pipeline_id)
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.fail: dict[tuple[str, str], tuple[int, str]] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KfpStandin:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self, method: str | None = None) -> list[str]:
        return [r["path"] for r in self.requests if method is None or r["method"] == method]

    # ---- the routes ---------------------------------------------------------------------------------
    def route(self, req: Recorded) -> tuple[int, Any]:
        method, parts = req["method"], req["path"].removeprefix(API).strip("/").split("/")
        if (method, req["path"]) in self.fail:
            status, message = self.fail[(method, req["path"])]
            return status, {"error": message, "code": 3, "message": message, "details": []}
        head = parts[0]
        if head == "healthz":
            return 200, {"multi_user": False, "pipeline_store": "database"}
        if head == "pipelines":
            return self.pipelines_route(method, parts[1:], req)
        if head == "experiments":
            return self.collection(method, parts[1:], req, self.experiments, "experiment_id", "experiments")
        if head == "runs":
            return self.collection(method, parts[1:], req, self.runs, "run_id", "runs")
        if head == "recurringruns":
            return self.collection(
                method, parts[1:], req, self.recurring_runs, "recurring_run_id", "recurringRuns"
            )
        return 404, {"message": f"no route {method} {req['path']}"}

    def pipelines_route(self, method: str, rest: list[str], req: Recorded) -> tuple[int, Any]:
        q = {k: v[0] for k, v in req["query"].items()}
        if method == "POST" and rest == ["upload"]:
            pipeline = {
                "pipeline_id": new_id(),
                "display_name": q.get("name", ""),
                "name": q.get("name", ""),
                "description": q.get("description", ""),
                "created_at": now(),
            }
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            self.add_version(pipeline["pipeline_id"], q.get("name", ""), req)
            return 200, pipeline
        if method == "POST" and rest == ["upload_version"]:
            if q.get("pipelineid") not in self.pipelines:
                return 404, {"message": f"pipeline {q.get('pipelineid')} not found"}
            return 200, self.add_version(q["pipelineid"], q.get("name", ""), req)
        if method == "GET" and not rest:
            found = [p for p in self.pipelines.values() if matches(p, q.get("filter"))]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if len(rest) >= 2 and rest[1] == "versions":
            return self.versions_route(method, rest[0], rest[2:])
        if method == "DELETE" and len(rest) == 1:
            if any(v["pipeline_id"] == rest[0] for v in self.versions.values()):
                return 400, {"message": "pipeline has versions"}
            return (200, {}) if self.pipelines.pop(rest[0], None) else (404, {"message": "not found"})
        return 404, {"message": f"no route {method} pipelines/{'/'.join(rest)}"}

    def versions_route(self, method: str, pipeline_id: str, rest: list[str]) -> tuple[int, Any]:
        if method == "GET" and not rest:
            found = sorted(
                (v for v in self.versions.values() if v["pipeline_id"] == pipeline_id),
                key=lambda v: v["created_at"],
                reverse=True,
            )
            return 200, {"pipeline_versions": found, "total_size": len(found)}
        if method == "DELETE" and len(rest) == 1:
            return (200, {}) if self.versions.pop(rest[0], None) else (404, {"message": "not found"})
        return 404, {"message": "no such version route"}

    def add_version(self, pipeline_id: str, name: str, req: Recorded) -> dict:
        docs = list(
            yaml.safe_load_all(req["files"].get("uploadfile", b"") or b"{}")
        )  # pipeline + platform spec
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": new_id(),
            "display_name": name,
            "name": name,
            "created_at": now(),
            "pipeline_spec": docs[0],
            "platform_spec": docs[1] if len(docs) > 1 else None,
        }
        self.versions[version["pipeline_version_id"]] = version
        return version

    def collection(self, method: str, rest: list[str], req: Recorded, store: dict, key: str, plural: str):
        q = {k: v[0] for k, v in req["query"].items()}
        if method == "POST" and not rest:
            item = self.create(dict(req["json"] or {}), key)
            if item is None:
                return 400, {"message": "pipeline version reference does not exist"}
            store[item[key]] = item
            return 200, item
        if method == "GET" and not rest:
            found = [i for i in store.values() if matches(i, q.get("filter"))]
            if q.get("experiment_id"):
                found = [i for i in found if i.get("experiment_id") == q["experiment_id"]]
            # created_at has whole seconds, as the API's; ties go by creation order, as the server's row ids do
            order = sorted(enumerate(found), key=lambda p: (p[1]["created_at"], p[0]))
            found = [i for _, i in (order[::-1] if q.get("sort_by", "").endswith(" desc") else order)]
            found = found[: int(q.get("page_size") or len(found) or 1)]
            return 200, {
                plural if plural != "recurringRuns" else "recurringRuns": found,
                "total_size": len(found),
            }
        if method == "GET" and len(rest) == 1:
            return (200, store[rest[0]]) if rest[0] in store else (404, {"message": "not found"})
        return 404, {"message": f"no route {method} {req['path']}"}

    def create(self, body: dict, key: str) -> dict | None:
        ref = body.get("pipeline_version_reference")
        if ref and ref.get("pipeline_version_id") not in self.versions:
            return None
        body.setdefault("display_name", body.get("display_name", ""))
        body[key] = new_id()
        body["created_at"] = now()
        if key == "run_id":
            body.setdefault("state", "PENDING")
            body.setdefault("experiment_id", body.get("experiment_id", ""))
        if key == "recurring_run_id":
            body.setdefault("status", "ENABLED")
        return body

    # ---- HTTP ---------------------------------------------------------------------------------------
    def handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do(self) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                req = Recorded(
                    method=self.command,
                    path=url.path,
                    query=parse_qs(url.query),
                    json=None,
                    files={},
                    headers=dict(self.headers),
                )
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("multipart/form-data"):
                    req["files"] = multipart(ctype, body)
                elif body:
                    req["json"] = json.loads(body)
                with standin.lock:
                    standin.requests.append(req)
                    status, answer = standin.route(req)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = do

        return Handler


def multipart(ctype: str, body: bytes) -> dict[str, bytes]:
    """name -> content of each part of a multipart/form-data body."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }


def matches(item: dict, filter_json: str | None) -> bool:
    """The EQUALS predicates of a KFP list filter (what kfp.Client sends for a name look-up)."""
    if not filter_json:
        return True
    for pred in json.loads(filter_json).get("predicates", []):
        value = pred.get("stringValue", pred.get("string_value"))
        if pred.get("operation") in ("EQUALS", 1) and str(item.get(pred["key"])) != str(value):
            return False
    return True
