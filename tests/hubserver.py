"""A local stand-in for the Hugging Face Hub's file-resolve protocol, on 127.0.0.1 only.

Serves ``/{owner}/{repo}/resolve/{revision}/{filename}`` for HEAD and GET (with Range), with the
headers huggingface_hub reads: ``X-Repo-Commit``, ``ETag`` / ``X-Linked-Etag`` (the sha256 of an
LFS file), ``X-Linked-Size``, ``Content-Length``; 404s carry ``X-Error-Code`` (RepoNotFound,
RevisionNotFound, EntryNotFound) as the Hub's do. Faults can be injected per file: ``"short"``
(fewer bytes than announced, then close), ``"corrupt"`` (same size, wrong bytes), ``"drop"``
(connection closed mid-body), ``"slow"`` (a pause before the body, for concurrency tests),
``"drip"`` (the body one byte every ``drip_interval`` seconds: a link that never times out and
never finishes).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

_PATH = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


@dataclass
class _Repo:
    commit: str
    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.drip_interval = 0.2
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

    def gets(self, filename: str | None = None) -> int:
        return sum(1 for m, p in self.requests if m == "GET" and (filename is None or p.endswith(filename)))

    def stop(self) -> None:
        """Stop serving (idempotent): later requests are refused, as by a server that is down."""
        if self._thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join()

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
        m = _PATH.match(path)
        if not m:
            return self._error(h, "RepoNotFound")
        repo = self.repos.get(m["repo"])
        if repo is None:
            return self._error(h, "RepoNotFound")
        if m["rev"] not in ("main", repo.commit):
            return self._error(h, "RevisionNotFound")
        data = repo.files.get(m["file"])
        if data is None:
            return self._error(h, "EntryNotFound", repo.commit)
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
        h.send_response(status)
        h.send_header("X-Repo-Commit", repo.commit)
        h.send_header("ETag", f'"{sha}"')
        h.send_header("X-Linked-Etag", f'"{sha}"')
        h.send_header("X-Linked-Size", str(len(data)))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(end - start))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        if fault in ("short", "drop"):
            h.send_header("Connection", "close")
        h.end_headers()
        if not body:
            return
        payload = data[start:end]
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
                    h.wfile.write(payload[i:i + 1])
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
