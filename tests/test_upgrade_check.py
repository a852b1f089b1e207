"""upgrade-check.yml's finder (tools/upgrade_check.py): newest releases from PyPI's JSON API, newest commits from the
Hub, one pull request body per recipe that is behind, rendered from `invoke upgrade`'s report."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.control.upgrade import Report, markdown
from infra.runtime.recipes import RECIPES
from tests.conftest import REPO
from tests.fakes.hub_server import FakeRepo, HubServer
from tools import upgrade_check

FIXTURES = Path(__file__).parent / "fixtures" / "upgrade"
NEW = "1" * 40


class PyPI:
    """PyPI's JSON API (`/pypi/<name>/json`) for a few packages: releases with their files."""

    def __init__(self, releases: dict[str, dict[str, list[dict]]]):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.split("/")[1]
                if name not in outer.releases:
                    self.send_error(404)
                    return
                body = json.dumps({"releases": outer.releases[name]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.releases = releases
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


FILE = [{"filename": "x.whl"}]


@pytest.fixture
def pypi():
    index = PyPI({
        "sglang": {"0.5.11": FILE, "0.5.23": FILE, "0.5.24rc1": FILE, "0.5.99": [{"filename": "y", "yanked": True}],
                   "0.6.0": []},
        "modal": {"1.6.4": FILE, "1.6.5": FILE, "1.7.0.dev3": FILE},
    })
    yield index
    index.close()


def test_newest_release_skips_pre_releases_yanked_and_empty_ones(pypi):
    assert upgrade_check.newest_release("sglang", index=pypi.url) == "0.5.23"
    assert upgrade_check.newest_release("modal", index=pypi.url) == "1.6.5"


def test_an_unreachable_index_is_one_line_naming_the_address():
    with pytest.raises(SystemExit) as caught:
        upgrade_check.newest_release("sglang", index="http://127.0.0.1:9", timeout=2)
    assert "http://127.0.0.1:9/sglang/json: ConnectionError" in str(caught.value)


def test_moves_name_only_what_is_behind():
    low = RECIPES["qwen3-8b-low-latency"]
    moves = upgrade_check.moves_for(low, sglang="0.5.23", modal="1.6.4", pinned_modal="1.6.4",
                                    commits={low.model: low.model_revision, low.draft_model: NEW})
    assert (moves.sglang, moves.modal, moves.model_revision, moves.draft_revision) == ("0.5.23", None, None, NEW)
    assert moves.flags() == ["--recipe", low.name, "--sglang", "0.5.23", "--draft-revision", NEW]
    assert moves.branch == "upgrade/qwen3-8b-low-latency/sglang-0.5.23-draft-11111111"
    same = upgrade_check.moves_for(low, sglang=low.sglang_version, modal="1.6.4", pinned_modal="1.6.4",
                                   commits={low.model: low.model_revision})
    assert not same.any


def test_the_pull_request_body_is_rendered_from_the_report():
    report = Report.model_validate(json.loads((FIXTURES / "report_vlm_0.5.23.json").read_text()))
    body = markdown(report)
    assert body == (FIXTURES / "pull_request_vlm_0.5.23.md").read_text()
    assert "| `--mamba-scheduler-strategy` | `--mamba-scheduler-strategy` | `--mamba-radix-cache-strategy` |" in body
    assert "### What the migration could not do\n\nNothing: every flag moved." in body
    assert "launch  + --cuda-graph-max-bs-decode 20" in body
    refused = report.model_copy(update={"migration": report.migration.model_copy(
        update={"refused": ("--x: SGLang 0.5.23 removed it with no successor",)})})
    assert "- --x: SGLang 0.5.23 removed it with no successor" in markdown(refused)


def test_print_finds_what_each_recipe_is_behind_on_and_renders_its_body(pypi, capsys):
    repos = []
    for recipe in RECIPES.values():
        for repo, pinned in recipe.repositories():
            head = NEW if repo == "Tengyunw/qwen3_8b_eagle3" else pinned
            repos.append(FakeRepo(repo, commits={head: {"config.json": b"{}"}}, refs={"main": head}))
    with HubServer(*repos) as hub:
        assert upgrade_check.main(["--print", "--index", pypi.url, "--hub", hub.url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("newest: SGLang 0.5.23, modal 1.6.5 (pinned 1.6.4);")
    assert ("--- upgrade/qwen3-8b-low-latency/sglang-0.5.23-modal-1.6.5-draft-11111111\n"
            "## Upgrade `qwen3-8b-low-latency`") in out
    assert "--- upgrade/qwen3.6-35b-vlm/sglang-0.5.23-modal-1.6.5\n" in out
    assert f"| `draft_revision` | `-` | `{NEW}` | pinned to a commit |" in out
    assert "| `modal` | `1.6.4` | `1.6.5` |" in out
    assert '"modal==1.6.4"' in (REPO / "pyproject.toml").read_text()  # --print wrote nothing
