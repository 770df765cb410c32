"""A local stand-in for the Hugging Face Hub's file-resolve protocol, on 127.0.0.1 only.

Serves ``/{owner}/{repo}/resolve/{revision}/{filename}`` for HEAD and GET (with Range), with the
headers huggingface_hub reads: ``X-Repo-Commit``, ``ETag`` / ``X-Linked-Etag`` (the sha256 of an
LFS file), ``X-Linked-Size``, ``Content-Length``; 404s carry ``X-Error-Code`` (RepoNotFound,
RevisionNotFound, EntryNotFound) as the Hub's do. Faults can be injected per file: ``"short"``
(fewer bytes than announced, then close), ``"corrupt"`` (same size, wrong bytes), ``"drop"``
(connection closed mid-body), ``"slow"`` (a pause before the body, for concurrency tests),
``"drip"`` (the body one byte every ``drip_interval`` seconds: a link that never times out and
never finishes).

It also takes uploads as huggingface_hub sends them over the LFS protocol (with
``HF_HUB_DISABLE_XET=1``): ``POST /api/repos/create``, ``/api/validate-yaml``,
``/api/{type}s/{repo}/preupload/{rev}``, ``/{type}s/{repo}.git/info/lfs/objects/batch`` (basic
transfer), ``PUT`` of the bytes, and ``/api/{type}s/{repo}/commit/{rev}`` (ndjson), which makes
a new commit; earlier commits stay resolvable by their hash. Dataset repos are kept under
``"datasets/owner/name"``, so ``add_file("datasets/o/n", ...)`` publishes into one.

It can also lie, as a hostile mirror or proxy would: :meth:`HubServer.lie` replaces or removes
any header of a file's answers (``ETag``, ``X-Linked-Etag``, ``X-Repo-Commit``,
``X-Linked-Size``, or a ``Location`` redirect), and ``lie_404`` the commit sent with a 404. Body
faults for lies: ``"oversize"`` (8 MiB more than declared), ``"inflate"`` (a gzip body of
63 kB that inflates to 64 MiB), ``"short_clean"`` (half the body, with a Content-Length that
says so, so the transfer ends cleanly).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

_PATH = re.compile(r"^/(?P<repo>(?:datasets/)?[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API = re.compile(r"^/api/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)/(?P<op>preupload|commit)/(?P<rev>[^/]+)$")
_TREE = re.compile(r"^/api/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)$")
_LFS = re.compile(r"^/(?:(?P<type>datasets)/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")


_LFS_SUFFIXES = (".safetensors", ".parquet", ".bin", ".pth")


@dataclass
class _Repo:
    commit: str
    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)
    lies: dict[str, dict[str, str | None]] = field(default_factory=dict)
    commit_404: str | None = None
    history: dict[str, dict[str, bytes]] = field(default_factory=dict)  # earlier commits' files


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header
        self.drip_interval = 0.2
        self.blobs: dict[str, bytes] = {}  # LFS uploads by sha256, until a commit names them
        self.commits: list[tuple[str, str, list[str]]] = []  # (repo key, new commit, paths)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                server._handle(self, body=False)

            def do_GET(self):
                server._handle(self, body=True)

            def do_POST(self):
                server._upload(self)

            def do_PUT(self):
                server._upload(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def add_file(self, repo: str, filename: str, data: bytes, *, fault: str | None = None) -> str:
        """Publish ``data`` as ``repo/filename``; returns the repo's commit hash."""
        with self._lock:
            r = self.repos.get(repo)
            if r is None:
                r = self.repos[repo] = _Repo(commit=hashlib.sha1(repo.encode()).hexdigest())
            r.files[filename] = data
            if fault:
                r.faults[filename] = fault
            else:
                r.faults.pop(filename, None)
            return r.commit

    def set_fault(self, repo: str, filename: str, fault: str | None) -> None:
        with self._lock:
            if fault:
                self.repos[repo].faults[filename] = fault
            else:
                self.repos[repo].faults.pop(filename, None)

    def lie(self, repo: str, filename: str, **headers: str | None) -> None:
        """Answer for ``repo/filename`` with these headers instead (``None``: leave it out).
        Names use ``_`` for ``-``: ``lie(r, f, X_Repo_Commit="../x", ETag=None)``."""
        with self._lock:
            self.repos[repo].lies[filename] = {k.replace("_", "-"): v for k, v in headers.items()}

    def lie_404(self, repo: str, commit: str | None) -> None:
        """Send ``commit`` as the X-Repo-Commit of this repo's 404s for missing files."""
        with self._lock:
            self.repos[repo].commit_404 = commit

    def gets(self, filename: str | None = None) -> int:
        return sum(1 for m, p in self.requests if m == "GET" and (filename is None or p.endswith(filename)))

    def stop(self) -> None:
        """Stop serving (idempotent): later requests are refused, as by a server that is down."""
        if self._thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join()

    # -- uploads ------------------------------------------------------------------------------

    def _json(self, h: BaseHTTPRequestHandler, status: int, document: object) -> None:
        data = json.dumps(document).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        if status == 404:
            h.send_header("X-Error-Code", "RepoNotFound")
        h.end_headers()
        h.wfile.write(data)

    def _upload(self, h: BaseHTTPRequestHandler) -> None:
        path = unquote(h.path.split("?", 1)[0])
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with self._lock:
            self.requests.append((h.command, path))
            self.authorizations.append(h.headers.get("Authorization"))
        if h.command == "PUT" and path.startswith("/lfs-upload/"):
            oid = path.rsplit("/", 1)[1]
            if hashlib.sha256(body).hexdigest() != oid:
                return self._json(h, 400, {"error": "sha256 mismatch"})
            with self._lock:
                self.blobs[oid] = body
            return self._json(h, 200, {})
        if path == "/api/validate-yaml":
            return self._json(h, 200, {"warnings": [], "errors": []})
        if path == "/api/repos/create":
            request = json.loads(body)
            repo_id = f"{request['organization']}/{request['name']}"
            key = ("datasets/" if request.get("type") == "dataset" else "") + repo_id
            prefix = "datasets/" if request.get("type") == "dataset" else ""
            answer = {"url": f"{self.url}/{prefix}{repo_id}", "name": repo_id}
            with self._lock:
                if key in self.repos:  # the Hub's 409 carries the url too
                    return self._json(h, 409, {"error": "You already created this repo", **answer})
                self.repos[key] = _Repo(commit=hashlib.sha1(key.encode()).hexdigest())
            return self._json(h, 200, answer)
        if m := _LFS.match(path):
            request = json.loads(body)
            objects = []
            for o in request["objects"]:
                entry = {"oid": o["oid"], "size": o["size"]}
                if o["oid"] not in self.blobs:
                    entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"}}
                objects.append(entry)
            return self._json(h, 200, {"transfer": "basic", "objects": objects})
        m = _API.match(path)
        key = None if m is None else ("datasets/" if m["type"] == "datasets" else "") + m["repo"]
        if m is None or key not in self.repos:
            return self._json(h, 404, {"error": "Repository not found"})
        if m["op"] == "preupload":
            files = json.loads(body)["files"]
            modes = [
                {"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(_LFS_SUFFIXES) else "regular",
                 "shouldIgnore": False}
                for f in files
            ]  # fmt: skip
            return self._json(h, 200, {"files": modes})
        return self._commit(h, key, body)

    def _commit(self, h: BaseHTTPRequestHandler, key: str, body: bytes) -> None:
        with self._lock:
            repo = self.repos[key]
            files = dict(repo.files)
            for line in body.splitlines():
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "lfsFile":
                    if value["oid"] not in self.blobs:
                        return self._json(h, 400, {"error": f"LFS object {value['oid']} was not uploaded"})
                    files[value["path"]] = self.blobs[value["oid"]]
                elif item["key"] == "deletedFile":
                    files.pop(value["path"], None)
            repo.history[repo.commit] = repo.files
            commit = hashlib.sha1((repo.commit + body.decode()).encode()).hexdigest()
            repo.commit, repo.files = commit, files
            self.commits.append((key, commit, sorted(files)))
        prefix = "datasets/" if key.startswith("datasets/") else ""
        name = key.removeprefix("datasets/")
        return self._json(h, 200, {"commitUrl": f"{self.url}/{prefix}{name}/commit/{commit}", "commitOid": commit})

    # -- request handling -------------------------------------------------------------------

    def _error(self, h: BaseHTTPRequestHandler, code: str, commit: str | None = None) -> None:
        h.send_response(404)
        h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", code)
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _handle(self, h: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = unquote(h.path.split("?", 1)[0])
        with self._lock:
            self.requests.append(("GET" if body else "HEAD", path))
            self.authorizations.append(h.headers.get("Authorization"))
        if (t := _TREE.match(path)) and body:
            key = ("datasets/" if t["type"] == "datasets" else "") + t["repo"]
            repo = self.repos.get(key)
            if repo is None:
                return self._json(h, 404, {"error": "Repository not found"})
            files = repo.files if t["rev"] in ("main", repo.commit) else repo.history.get(t["rev"], {})
            tree = [
                {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for name, data in sorted(files.items())
            ]
            return self._json(h, 200, tree)
        m = _PATH.match(path)
        if not m:
            return self._error(h, "RepoNotFound")
        repo = self.repos.get(m["repo"])
        if repo is None:
            return self._error(h, "RepoNotFound")
        if m["rev"] not in ("main", repo.commit, *repo.history):
            return self._error(h, "RevisionNotFound")
        commit = repo.commit if m["rev"] == "main" else m["rev"]
        files = repo.files if commit == repo.commit else repo.history[commit]
        data = files.get(m["file"])
        if data is None:
            return self._error(h, "EntryNotFound", repo.commit_404 or commit)
        fault = repo.faults.get(m["file"])
        sha = hashlib.sha256(data).hexdigest()
        start, end = 0, len(data)
        rng = h.headers.get("Range")
        status = 200
        if body and rng:
            rm = re.match(r"bytes=(\d+)-(\d*)", rng)
            if rm:
                start = int(rm[1])
                end = int(rm[2]) + 1 if rm[2] else len(data)
                status = 206
        payload = data[start:end]
        encoding = None
        if body and fault == "oversize":
            payload = payload + b"\0" * (8 << 20)
        elif body and fault == "inflate":
            payload, encoding = gzip.compress(payload + b"\0" * (64 << 20), compresslevel=9), "gzip"
        elif fault == "short_clean":
            payload = payload[: len(payload) // 2]
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{sha}"',
            "X-Linked-Etag": f'"{sha}"',
            "X-Linked-Size": str(len(data)),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(payload) if body or fault == "short_clean" else end - start),
        }
        if encoding:
            headers["Content-Encoding"] = encoding
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        if fault in ("short", "drop"):
            headers["Connection"] = "close"
        lies = repo.lies.get(m["file"], {})
        for k, v in lies.items():
            if v is None:
                headers.pop(k, None)
            else:
                headers[k] = v
        if "Location" in lies:
            status, payload = 302, b""
            headers["Content-Length"] = "0"
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if not body or status == 302:
            return
        if fault == "corrupt":
            payload = bytes(b ^ 0xFF for b in payload[:64]) + payload[64:]
        elif fault == "short":
            payload = payload[: len(payload) // 2]
        elif fault == "drop":
            payload = payload[: len(payload) // 3]
        elif fault == "slow":
            time.sleep(0.5)
        elif fault == "drip":
            try:
                for i in range(len(payload)):
                    h.wfile.write(payload[i : i + 1])
                    h.wfile.flush()
                    time.sleep(self.drip_interval)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        try:
            h.wfile.write(payload)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        if fault in ("short", "drop"):
            h.close_connection = True
