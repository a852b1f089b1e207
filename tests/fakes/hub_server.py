"""A local Hugging Face Hub: the HTTP protocol `huggingface_hub` 0.36.0 speaks, for model repositories.

`infra/runtime/weights.py` is tested by running the real `snapshot_download` and
`HfApi.model_info` against this server, so what is verified is the real client's
behaviour (cache layout, `.incomplete` resume, error mapping), not a mock of it.
Only what that client reads is served, header for header:

- ``GET /api/models/<org>/<name>[/revision/<rev>]``: ``{"id", "sha", "siblings": [{"rfilename"}], ...}``
  (`HfApi.model_info`/`repo_info`; `snapshot_download` takes the file list and the commit from it).
- ``HEAD /<org>/<name>/resolve/<rev>/<path>`` (`get_hf_file_metadata`): ``X-Repo-Commit``, and
  for a regular file ``ETag`` = its git blob sha1 and ``Content-Length``; for an LFS file a 302
  to the "CDN" (``/cdn/<sha256>``, same host) with ``X-Linked-Etag`` = its sha256 and
  ``X-Linked-Size``, as the Hub does. The client then GETs the ``Location`` directly.
- ``GET`` of a file (resolve or CDN): the bytes, honouring ``Range: bytes=N-`` with a 206 and
  ``Content-Range`` (`http_get` resumes a ``.incomplete`` blob that way).
- Errors carry ``X-Error-Code``/``X-Error-Message`` so `hf_raise_for_status` maps them to
  ``RepositoryNotFoundError``, ``RevisionNotFoundError``, ``EntryNotFoundError``, ``GatedRepoError``.
- No Xet headers (``X-Xet-*``, ``Link: ...xet-auth``): the client stays on plain HTTP.

Faults, for tests: `drop_file(path, times, after_bytes)` sends the headers and part of a
file's body, then closes the connection, for that many GETs; `fail_api(status, times)` makes the
`/api/` endpoint answer an HTTP error. A gated repository (`FakeRepo(gated=True)`) needs
``Authorization: Bearer <server token>``: none is a 401 ``GatedRepo``, an unknown token a 401
"Invalid credentials in Authorization header", a token in `denied_tokens` a 403 ``GatedRepo``.

Every request is recorded (`requests`), so tests count metadata calls against file downloads.
The server runs in a background thread of the test process (`with HubServer(repo) as hub:`) and
`stop()` closes its listening socket and every open keep-alive connection, then joins its threads.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

MiB = 1024 * 1024
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_sha1(data: bytes) -> str:
    """The ETag the Hub sends for a regular (non-LFS) file: git's object id of the blob."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeRepo:
    """A model repository: files at one or more commits, and refs (branches, tags) naming commits.

    `commits` maps a 40-hex commit to its files (path -> bytes); `refs` maps "main" and any
    other branch or tag to one of them.
    """

    repo_id: str
    commits: dict[str, dict[str, bytes]]
    refs: dict[str, str]
    lfs: frozenset[str] = frozenset({"model.safetensors"})  # served via the CDN redirect, as on the Hub
    gated: bool = False

    def __post_init__(self):
        # The CDN finds LFS blobs by sha256 on every request: hash each once.
        self._lfs_by_sha256 = {
            hashlib.sha256(data).hexdigest(): (path, data)
            for files in self.commits.values()
            for path, data in files.items()
            if path in self.lfs
        }

    @property
    def commit(self) -> str:
        """What main points to."""
        return self.refs["main"]

    def files(self, commit: str | None = None) -> dict[str, bytes]:
        return self.commits[commit or self.commit]

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)

    def size_bytes(self, commit: str | None = None) -> int:
        return sum(len(b) for b in self.files(commit).values())

    def sha256(self, path: str, commit: str | None = None) -> str:
        return hashlib.sha256(self.files(commit)[path]).hexdigest()

    def blob_by_sha256(self, sha: str) -> tuple[str, bytes] | None:
        """(path, bytes) of the LFS file with this sha256, at any commit: what the CDN stores."""
        return self._lfs_by_sha256.get(sha)


def _commit_id(rng: random.Random) -> str:
    return "%040x" % rng.getrandbits(160)


def make_repo(
    repo_id: str = "acme/tiny-llm",
    *,
    seed: int = 0,
    big_file_size: int = 16 * MiB,
    gated: bool = False,
    history: bool = False,
) -> FakeRepo:
    """A small model-shaped repository: config, tokenizer, README and several MB of random "weights".

    With `history`, an older commit (also tagged "v1") precedes main, with different config and
    weights, so a test can tell which commit was downloaded.
    """
    rng = random.Random(f"{repo_id}:{seed}")

    def snapshot(generation: int) -> dict[str, bytes]:
        return {
            "README.md": f"# {repo_id}\n\nA generated test repository (seed {seed}, generation "
                         f"{generation}).\n".encode(),
            "config.json": json.dumps(
                {"architectures": ["TinyForCausalLM"], "hidden_size": 64, "generation": generation}
            ).encode(),
            "tokenizer.json": json.dumps({"version": "1.0",
                                          "model": {"vocab": {f"t{i}": i for i in range(200)}}}).encode(),
            "model.safetensors": rng.randbytes(big_file_size),
        }

    commits: dict[str, dict[str, bytes]] = {}
    refs: dict[str, str] = {}
    if history:
        old = _commit_id(rng)
        commits[old] = snapshot(1)
        refs["v1"] = old
    head = _commit_id(rng)
    commits[head] = snapshot(2)
    refs["main"] = head
    return FakeRepo(repo_id, commits, refs, gated=gated)


@dataclass
class Recorded:
    method: str
    path: str  # without the query string
    query: str
    range: str | None
    authorization: str | None
    status: int | None = None

    @property
    def is_metadata(self) -> bool:
        """Requests that fetch no file content: the API and the per-file HEADs."""
        return self.method == "HEAD" or self.path.startswith("/api/")

    @property
    def is_file(self) -> bool:
        return self.method == "GET" and not self.path.startswith("/api/")


@dataclass
class _Drop:
    remaining: int
    after_bytes: int


@dataclass
class _HubState:
    repos: dict[str, FakeRepo]
    token: str | None
    denied_tokens: set[str]
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[Recorded] = field(default_factory=list)
    drops: dict[tuple[str, str], _Drop] = field(default_factory=dict)  # (repo_id, path) -> fault
    api_failures: list[int] = field(default_factory=list)  # statuses still to answer on /api/
    dropped: int = 0


class _ConnectionTrackingServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args, **kwargs):
        self.open_connections: set[socket.socket] = set()
        self.handler_threads: list[threading.Thread] = []
        self._conn_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        with self._conn_lock:
            self.open_connections.add(request)
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        self.handler_threads.append(thread)
        thread.start()

    def shutdown_request(self, request):
        with self._conn_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self._conn_lock:
            connections = list(self.open_connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked reading the next keep-alive request
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the Hub
    server_version = "FakeHub/0.1"
    timeout = 30  # an idle keep-alive connection is not kept forever

    # ------------------------------------------------------------------ plumbing

    @property
    def hub(self) -> _HubState:
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - silence stderr access logs
        pass

    def _record(self) -> Recorded:
        url = urlsplit(self.path)
        rec = Recorded(
            method=self.command,
            path=unquote(url.path),
            query=url.query,
            range=self.headers.get("Range"),
            authorization=self.headers.get("Authorization"),
        )
        with self.hub.lock:
            self.hub.requests.append(rec)
        return rec

    def _send(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self._rec.status = status
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, headers, json.dumps({"error": message}).encode())

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def _dispatch(self) -> None:
        self._rec = self._record()
        path = self._rec.path
        try:
            if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path):
                return self._model_info(m.group(1), m.group(2) or "main")
            if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
                return self._resolve(m.group(1), m.group(2), m.group(3))
            if m := re.fullmatch(r"/cdn/([^/]+)/([0-9a-f]{64})", path):
                return self._cdn(m.group(1).replace("--", "/"), m.group(2))
            self._error(404, None, f"no route for {path}")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ------------------------------------------------------------------ access

    def _repo_or_error(self, repo_id: str) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if repo.gated and not self._authorized(repo):
            return None
        return repo

    def _revision_or_error(self, repo_id: str, revision: str) -> tuple[FakeRepo, str] | None:
        """The repository and the commit `revision` names, or None once the error response is sent."""
        repo = self._repo_or_error(repo_id)
        if repo is None:
            return None
        commit = repo.resolve(revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo, commit

    def _authorized(self, repo: FakeRepo) -> bool:
        header = self.headers.get("Authorization") or ""
        if not header:
            self._error(
                401,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated to "
                "access it. Please log in.",
            )
            return False
        given = header.removeprefix("Bearer ").strip()
        if given in self.hub.denied_tokens:
            self._error(
                403, "GatedRepo", f"Access to model {repo.repo_id} is restricted and you are not in the authorized "
                                  "list."
            )
            return False
        if self.hub.token is None or given != self.hub.token:
            self._error(401, None, "Invalid credentials in Authorization header")
            return False
        return True

    # ------------------------------------------------------------------ endpoints

    def _model_info(self, repo_id: str, revision: str) -> None:
        with self.hub.lock:
            failure = self.hub.api_failures.pop(0) if self.hub.api_failures else None
        if failure is not None:
            return self._error(failure, None, "The Hub is having a bad day")
        found = self._revision_or_error(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        info = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit,
            "lastModified": "2026-01-01T00:00:00.000Z",
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": ["safetensors"],
            "library_name": "transformers",
            "siblings": [{"rfilename": name} for name in sorted(repo.files(commit))],
        }
        self._send(200, {"Content-Type": "application/json"}, json.dumps(info).encode())

    def _resolve(self, repo_id: str, revision: str, filename: str) -> None:
        found = self._revision_or_error(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        files = repo.files(commit)
        if filename not in files:
            return self._error(404, "EntryNotFound", f"{filename} does not exist at {commit}")
        data = files[filename]
        common = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if filename in repo.lfs:
            sha = repo.sha256(filename, commit)
            host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
            location = f"http://{host}/cdn/{repo_id.replace('/', '--')}/{sha}?expires=4102444800&signature=fake"
            self._send(
                302,
                {
                    **common,
                    "Location": location,
                    "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(len(data)),
                    "ETag": f'"{git_blob_sha1(data)}"',  # the LFS pointer's; the client prefers X-Linked-Etag
                },
            )
            return
        self._content(repo.repo_id, filename, data, {**common, "ETag": f'"{git_blob_sha1(data)}"'})

    def _cdn(self, repo_id: str, sha: str) -> None:
        """The storage behind the redirect: no Authorization needed (the URL is "signed")."""
        repo = self.hub.repos.get(repo_id)
        found = repo.blob_by_sha256(sha) if repo else None
        if found is None:
            return self._error(404, None, "no such object")
        filename, data = found
        self._content(repo_id, filename, data, {"ETag": f'"{sha}"', "Accept-Ranges": "bytes"})

    def _content(self, repo_id: str, filename: str, data: bytes, headers: dict[str, str]) -> None:
        size = len(data)
        status = 200
        if (wanted := self.headers.get("Range")) and self.command == "GET":
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if not m or int(m.group(1)) >= size:
                return self._send(416, {"Content-Range": f"bytes */{size}"})
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            data = data[start : end + 1]
            headers = {**headers, "Content-Range": f"bytes {start}-{start + len(data) - 1}/{size}"}
            status = 206
        if self.command == "HEAD":
            return self._head(status, headers, len(data))
        drop = self._take_drop(repo_id, filename)
        self._head(status, headers, len(data))
        view = memoryview(data)
        limit = len(data) if drop is None else min(drop, len(data))
        for offset in range(0, limit, 256 * 1024):
            self.wfile.write(view[offset : min(offset + 256 * 1024, limit)])
        if drop is not None:
            # The connection dies mid-body: the client has fewer bytes than Content-Length promised.
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _head(self, status: int, headers: dict[str, str], length: int) -> None:
        self._rec.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _take_drop(self, repo_id: str, filename: str) -> int | None:
        with self.hub.lock:
            fault = self.hub.drops.get((repo_id, filename))
            if fault is None or fault.remaining <= 0:
                return None
            fault.remaining -= 1
            self.hub.dropped += 1
            return fault.after_bytes


class HubServer:
    """The fake Hub on 127.0.0.1:<free port>, serving `repos`, in a background thread.

    `url` is what `endpoint=` takes. Use as a context manager, or call `start()`/`stop()`.
    """

    def __init__(self, *repos: FakeRepo, token: str | None = None, denied_tokens: set[str] | None = None):
        self._state = _HubState({r.repo_id: r for r in repos}, token, set(denied_tokens or ()))
        self._httpd: _ConnectionTrackingServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life

    def start(self) -> HubServer:
        httpd = _ConnectionTrackingServer(("127.0.0.1", 0), _Handler)
        httpd.hub = self._state  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        httpd, self._httpd = self._httpd, None
        httpd.shutdown()  # serve_forever returns
        httpd.close_open_connections()
        httpd.server_close()
        for thread in list(httpd.handler_threads):
            thread.join(timeout=5)
        assert self._thread is not None
        self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ faults

    def drop_file(self, repo_id: str, path: str, *, times: int, after_bytes: int = 12 * MiB) -> None:
        """The next `times` GETs of this file's content send `after_bytes` bytes of it, then drop the connection.

        The default (12 MiB) is more than `huggingface_hub`'s 10 MiB read chunk, so one whole chunk
        reaches the `.incomplete` blob before the break and the next attempt resumes with a Range.
        """
        with self._state.lock:
            self._state.drops[(repo_id, path)] = _Drop(times, after_bytes)

    def fail_api(self, status: int = 503, *, times: int = 1) -> None:
        """The next `times` calls to /api/models/... answer `status`."""
        with self._state.lock:
            self._state.api_failures.extend([status] * times)

    def clear_faults(self) -> None:
        with self._state.lock:
            self._state.drops.clear()
            self._state.api_failures.clear()

    @property
    def dropped(self) -> int:
        """How many responses were cut short by `drop_file`."""
        with self._state.lock:
            return self._state.dropped

    # ------------------------------------------------------------------ what happened

    @property
    def requests(self) -> list[Recorded]:
        with self._state.lock:
            return list(self._state.requests)

    def metadata_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.is_metadata]

    def file_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.is_file]

    def reset_requests(self) -> None:
        with self._state.lock:
            self._state.requests.clear()
