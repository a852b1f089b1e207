"""Every command the docs show is run, and what they show it printing is checked: a doc that drifts fails.

Each line of a fenced code block in README.md or docs/*.md that starts with `invoke` (or `$ invoke`) is a
documented command. In a `console` block, the lines after a `$ invoke ...` line, up to the next `$`, are the
output it documents: each must appear in what the command printed, in order (`...` skips lines, `<...>` stands
for any text). Every command runs in document order, README.md first and then docs/ in name order, as a reader
would, in one of two worlds (dev and local servers; staging and prod), each in a clean checkout, against the fake Modal
control plane through the real `modal` client
(tests/wire.py), with a local OpenAI-compatible server where the docs name one (LOCAL_SERVER), a local index
of SGLang wheels for `sglang-flags`, and the release ids the world recorded where the docs show example ids.
docs/errors.md has its own test (tests/test_errors_catalog.py), which runs and checks every one of its commands.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target)


def reading_order() -> list[Path]:
    """README.md, then the pages of docs/ in the order the README links them (a reader's order: the tasks'
    walkthrough before the pages that build on it), then any page it does not link, by name."""
    pages = [p for p in sorted((REPO / "docs").glob("*.md")) if p.name != "errors.md"]
    linked = [(REPO / target).resolve() for target in LINK.findall((REPO / "README.md").read_text())]
    ordered = [p for p in dict.fromkeys(linked) if p in {q.resolve() for q in pages}]
    return [REPO / "README.md", *ordered, *(p for p in pages if p.resolve() not in ordered)]


DOCS = reading_order()
LOCAL_SERVER = "http://127.0.0.1:30000"  # where the docs put "an OpenAI-compatible server" (SGLang's default port)


@dataclass
class Documented:
    """One documented command, where it is, and the output lines the doc shows for it."""

    where: str
    argv: list[str]
    shows: list[str] = field(default_factory=list)


def documented(path: Path) -> list[Documented]:
    found: list[Documented] = []
    in_block, language, pending = False, "", ""
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.rstrip()
        if line.lstrip().startswith("```"):
            in_block, language = (not in_block), line.strip().strip("`")
            continue
        if not in_block:
            continue
        text = pending + line.strip().removeprefix("$ ")
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        if re.match(r"invoke(\s|$)", text):
            argv = shlex.split(text, comments=True)[1:]
            found.append(Documented(f"{path.name}:{number}", argv))
        elif language == "console" and found and not line.startswith("$ ") and line.strip():
            found[-1].shows.append(line.rstrip())
    return found


def shows_in_order(shown: list[str], printed: str) -> list[str]:
    """The documented lines that the printed output lacks (in order; `...` skips, `<...>` matches any text)."""
    missing, at = [], 0
    for line in shown:
        if line.strip() == "...":
            continue
        pattern = ".*?".join(re.escape(part) for part in re.split(r"<[^<>]+>", line.strip()))
        found = re.compile(pattern).search(printed, at)
        if found is None:
            missing.append(line)
        else:
            at = found.end()
    return missing


def test_every_doc_has_its_commands_found():
    commands = {path.name: documented(path) for path in DOCS}
    assert len(commands["README.md"]) >= 4  # the quick start
    assert len(commands["tasks.md"]) >= 15
    assert sum(len(c) for c in commands.values()) >= 25


def test_every_relative_link_in_the_docs_resolves():
    """A page moved or renamed leaves no dead link behind: every relative link of README.md and docs/ names a file
    that exists (and, with a #fragment, a heading of it)."""
    broken = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in LINK.findall(path.read_text()):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file, _, fragment = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            if not resolved.exists():
                broken.append(f"{path.relative_to(REPO)}: {target}")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert broken == []


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in path.read_text().splitlines() if line.startswith("#")}


def test_the_link_check_can_fail(tmp_path):
    assert "tasks" in {p.stem for p in DOCS[1:3]}  # the walkthrough runs right after the front page
    assert anchors(REPO / "docs" / "tasks.md") >= {"the-tasks"}


def test_the_front_page_stays_short_and_links_every_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 120
    linked = {(REPO / target).resolve() for target in LINK.findall(readme)}
    assert {p.resolve() for p in (REPO / "docs").glob("*.md")} <= linked, "link each docs/ page from README's list"


def test_benchs_option_table_is_its_help(cli):
    """docs/bench.md's table of options names exactly the flags `invoke bench` takes (it once documented a
    `--json [PATH]` that failed)."""
    documented_flags = set()
    for line in (REPO / "docs" / "bench.md").read_text().splitlines():
        if line.startswith("| `--"):
            documented_flags |= set(re.findall(r"`(--[a-z-]+)", line.split("|")[1]))
    helped = set(re.findall(r"^  (--[a-z-]+)", cli("--help", "bench").stdout, re.M))
    assert documented_flags == helped


def test_the_output_check_can_fail():
    assert shows_in_order(["== prod / <recipe> ==", "...", "Scaling        min_containers 1"],
                          "== prod / qwen3 ==\nx\nScaling        min_containers 1\n") == []
    assert shows_in_order(["Scaling        min_containers 2"], "Scaling        min_containers 1") != []
    assert shows_in_order(["b", "a"], "a\nb\n") == ["a"]  # order matters


RELEASE_ID = re.compile(r"r\d{8}-\d{6}-[0-9a-f]{6}")


def local_wheels(folder: Path) -> Path:
    """Wheels pip finds instead of PyPI's for the versions the docs name: small SGLang stand-ins (their tables are
    written into the checkout's copy of sglang_versions.json, which nothing after them reads)."""
    from tests.test_sglang_flags import OLD_STYLE, build_wheel

    folder.mkdir(parents=True, exist_ok=True)
    for version in ("0.5.6.post2", "0.5.10.post1", "0.5.23"):
        build_wheel(folder, version, OLD_STYLE)
    return folder


def world_of(command: Documented) -> str:
    """Commands that touch staging or prod run in one world, the rest (dev, local servers, files) in another: two
    worlds the suite runs side by side, each in document order."""
    argv = command.argv
    touched = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--env", "--from", "--to")}
    return "staging-prod" if touched & {"staging", "prod"} else "dev"


def test_every_command_belongs_to_one_world():
    worlds = {world_of(c) for path in DOCS for c in documented(path)}
    assert worlds == {"dev", "staging-prod"}


# What the documented promotion's gate judges: objectives the test sets for its own fake server, never prod's
# (1,000 tok/s at the target, which a fake on a loaded CI machine reached at 460-868 tok/s). Errors are the fake's to
# control (it answers every request); a latency bound of a minute holds on any machine that runs the suite at all.
FAKE_GATE = {"INFRA_GATE__OBJECTIVES": '[{ metric = "error_rate", level = "target", max = 0.0 }, '
                                       '{ metric = "error_rate", level = 1, max = 0.0 }, '
                                       '{ metric = "ttft_p90_ms", level = 1, max = 60000 }]'}


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    """The docs' "OpenAI-compatible server" at LOCAL_SERVER, answering at a replica's pace (20 ms to the first token,
    5 ms between tokens): at zero delay the documented `bench --duration 5` kept the benchmark and this server busy on
    both cores of a CI machine for ten seconds."""
    from tests.conftest import RunningServer

    server = RunningServer(["--tokens", "6", "--ttft", "0.02", "--itl", "0.005"],
                           tmp_path_factory.mktemp("local") / "requests.jsonl")
    yield server
    server.stop()


@pytest.mark.timeout(1200)  # a hang guard: the walkthrough runs ~30 invoke commands, each a Python start
@pytest.mark.parametrize("world", ["dev", "staging-prod"])
def test_documented_commands_run_and_print_what_the_doc_shows(world, wire, wire_cli, local_server, tmp_path):
    upstream = local_server.url
    pip = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(local_wheels(tmp_path / "wheels"))}
    failures, ran = [], 0
    for command in [c for path in DOCS for c in documented(path) if world_of(c) == world]:
        argv = [a.replace(LOCAL_SERVER, upstream) for a in command.argv]
        # example ids: the environment's two newest releases, oldest first
        if any(RELEASE_ID.fullmatch(a) for a in argv):
            env = argv[argv.index("--env") + 1]
            manifest = wire.volume_files(env, "sglang-releases").get("releases/qwen3-8b-low-latency.json")
            measured = [r for r in json.loads(manifest)["history"] if r.get("measurement") or (r.get("gate") or {})
                        .get("measurement")] if manifest else []
            newest = [r["release_id"] for r in measured[:2]][::-1]
            argv = [(newest.pop(0) if newest else a) if RELEASE_ID.fullmatch(a) else a for a in argv]
        output = None
        if ">" in argv:
            argv, output = argv[:argv.index(">")], argv[argv.index(">") + 1]
        done = wire_cli(*argv, timeout=240, **pip, **(FAKE_GATE if argv[0] == "promote" else {}))
        ran += 1
        if output:
            (wire_cli.project / output).write_text(done.stdout)
        printed = done.stdout + done.stderr
        if done.returncode != 0:
            failures.append(f"{command.where}: invoke {' '.join(command.argv)} exited {done.returncode}:\n"
                            f"{printed[-1500:]}")
        elif missing := shows_in_order(command.shows, printed):
            failures.append(f"{command.where}: invoke {' '.join(command.argv)} did not print {missing[:3]}\n"
                            f"{printed[-1500:]}")
    assert failures == [], "\n\n".join(failures)
    assert ran >= 10
