"""Model weights in the cache Volume: download them once, prove they are complete, check before serving.

A download is complete only when its marker exists, written once every file is on the Volume and committed: a
download killed halfway is never mistaken for a finished one, and the next run resumes it (`huggingface_hub` keeps
partial blobs). The server never downloads: its @modal.enter calls `require_downloaded` first. No `modal` import:
tests run `download` for real against a local Hub.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.runtime import reach
from infra.runtime.errors import UserError
from infra.runtime.files import MARKERS, write_atomically
from infra.runtime.recipes.base import COMMIT_RE


class WeightsMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Downloaded:
    repo: str
    requested: str  # what was asked for: a commit, a branch or a tag
    commit: str  # what it resolved to
    files: list[str]
    size_bytes: int
    skipped: bool  # True when a complete marker already existed


def ref_relpath(repo: str, ref: str) -> str:
    """Where the commit an unpinned revision resolved to is recorded, relative to the Volume root."""
    return f"{MARKERS}/{repo.replace('/', '--')}/refs/{ref.replace('/', '--')}"


def marker_path(cache_dir: Path, repo: str, commit: str) -> Path:
    return Path(cache_dir) / MARKERS / repo.replace("/", "--") / f"{commit}.json"


def ref_path(cache_dir: Path, repo: str, ref: str) -> Path:
    return Path(cache_dir) / ref_relpath(repo, ref)


def read_marker(cache_dir: Path, repo: str, commit: str) -> dict | None:
    with contextlib.suppress(FileNotFoundError):
        return json.loads(marker_path(cache_dir, repo, commit).read_text())
    return None


def download(repo: str, revision: str | None, cache_dir: str | Path, *, token: str | None = None,
             endpoint: str | None = None, commit_volume: Callable[[], None] = lambda: None, max_workers: int = 8,
             timeout: float | None = None) -> Downloaded:
    """Download `repo` at `revision` into the Hugging Face cache layout under `cache_dir`, once. Every Hub call must
    answer within `timeout` (default HF_HUB_ETAG_TIMEOUT): the metadata call has no bound of its own."""
    from huggingface_hub import HfApi, constants, snapshot_download

    timeout = timeout or constants.HF_HUB_ETAG_TIMEOUT
    cache_dir = Path(cache_dir)
    with _hub_problems_explained(endpoint or constants.ENDPOINT, timeout):
        api = HfApi(endpoint=endpoint, token=token)
        requested = revision or "main"
        info = None
        if COMMIT_RE.match(requested):
            commit = requested  # pinned: no network at all when the marker exists
        else:
            # Unpinned: resolve to a commit (one metadata call) and record what it was.
            info = api.model_info(repo, revision=requested, timeout=timeout)
            commit = info.sha
        if marker := read_marker(cache_dir, repo, commit):
            return Downloaded(repo, requested, commit, marker["files"], marker["size_bytes"], skipped=True)
        # snapshot_download swallows a failed listing (network error, 5xx, HF_HUB_OFFLINE) and returns the partial
        # cached snapshot of a pinned commit as if complete: check against the Hub's own list.
        if info is None:
            info = api.model_info(repo, revision=commit, timeout=timeout)
        expected = sorted(s.rfilename for s in info.siblings or [])

        snapshot = Path(snapshot_download(repo, revision=commit, cache_dir=cache_dir, token=token, endpoint=endpoint,
                                          max_workers=max_workers, etag_timeout=timeout))
        files = sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())
        if missing := sorted(set(expected) - set(files)):
            raise RuntimeError(
                f"{repo}@{commit}: download incomplete, {len(missing)} file(s) missing: {', '.join(missing[:5])}; "
                "no completion marker written, run the download again")
        size = sum((snapshot / f).stat().st_size for f in files)
        commit_volume()  # the files are durable before anything says they are complete
        record = {"repo": repo, "requested": requested, "commit": commit, "files": files, "size_bytes": size,
                  "completed_at": time.time()}
        write_atomically(marker_path(cache_dir, repo, commit), json.dumps(record, indent=1))
        if requested != commit:
            write_atomically(ref_path(cache_dir, repo, requested), commit)
        commit_volume()
        return Downloaded(repo, requested, commit, files, size, skipped=False)


class HubUnreachable(UserError):
    """The Hub did not answer (refused, silent, an untrusted certificate, an unknown name)."""


@contextlib.contextmanager
def _hub_problems_explained(address: str, timeout: float) -> Iterator[None]:
    """A failure to reach the Hub in one line; the Hub's own answers (401, 404) pass as they are."""
    try:
        yield
    except OSError as exc:
        if getattr(exc, "response", None) is not None:
            raise
        root = reach.root_cause(exc)
        if root is exc and not isinstance(exc, (TimeoutError,
                                                ConnectionError)) and "Connection" not in type(exc).__name__:
            raise
        words = reach.cause(root, timeout)
        if isinstance(root, TimeoutError):
            words = f"accepted the connection but no answer within {timeout:g} s"
        check = reach.TLS_HINT if isinstance(root, ssl.SSLCertVerificationError) else (
            "check the network, any proxy (HTTPS_PROXY) and HF_ENDPOINT (HF_HUB_ETAG_TIMEOUT bounds the wait)")
        raise HubUnreachable(f"cannot reach the Hugging Face Hub at {address}: {words}; {check}") from None


def commit_of(repo: str, ref: str, *, token: str | None = None, endpoint: str | None = None) -> str:
    """The commit a branch or tag of `repo` points at now: how a new revision is pinned."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token).model_info(repo, revision=ref).sha


def resolved_ref(cache_dir: Path, repo: str, ref: str) -> str | None:
    """The commit an unpinned revision resolved to at its last download, if any."""
    with contextlib.suppress(FileNotFoundError):
        return ref_path(cache_dir, repo, ref).read_text().strip()
    return None


def missing_weights(cache_dir: str | Path, deployment) -> list[str]:
    """`repo@revision` of each model this deployment serves that has no complete download in the Volume."""
    def complete(repo: str, revision: str) -> bool:
        commit = revision if COMMIT_RE.match(revision) else resolved_ref(Path(cache_dir), repo, revision)
        return bool(commit) and read_marker(Path(cache_dir), repo, commit) is not None

    return [f"{repo}@{rev}" for repo, rev in deployment.recipe.repositories() if not complete(repo, rev)]


def require_downloaded(cache_dir: str | Path, deployment) -> None:
    """Fail before launching SGLang when an offline server would not find its weights; online, warn only."""
    for item in missing_weights(cache_dir, deployment):
        message = f"weights for {item} are not in the Volume: run `invoke download --env {deployment.env}`"
        if deployment.server.hf_hub_offline:
            raise WeightsMissing(message)
        print(f"warning: {message} (SGLang will fetch them from the Hub during this start)", flush=True)


def as_dict(result: Downloaded) -> dict:
    return asdict(result)
