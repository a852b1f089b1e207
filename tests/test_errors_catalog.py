"""Every bad input and fault a user can meet, with the exact message they see: asserted here,
and rendered into docs/errors.md, which this test keeps current (it fails when the doc drifts).

Regenerate the doc after changing a message:  INFRA_WRITE_DOCS=1 python -m pytest tests/test_errors_catalog.py
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
from pathlib import Path

import pytest

from infra.perf import client
from infra.runtime import lifecycle, sglang_args
from infra.runtime.errors import UserError
from infra.runtime.kernels import CompileFailed, compile_kernels
from infra.runtime.lifecycle import Readiness, ServerFailed
from infra.runtime.weights import WeightsMissing, require_downloaded
from tests.conftest import REPO, changed, deployment, free_port, standin_env
from tests.fakes.modal_wire.billing import RATES

DOC = REPO / "docs" / "errors.md"
WRITE_DOCS = bool(os.environ.get("INFRA_WRITE_DOCS"))  # read at import: tests run with INFRA_* cleared

# (situation, invoke arguments, how to set up the world) -> the one line the user sees.
BAD_INPUT = [
    ("unknown --env", ["plan", "--env", "qa"], None),
    ("unknown --recipe", ["plan", "--env", "prod", "--recipe", "llama"], None),
    ("recipe not served by that environment", ["plan", "--env", "edge", "--recipe", "qwen3.6-35b-vlm"], "edge"),
    ("malformed TOML in an environment file", ["plan", "--env", "prod"], "malformed"),
    ("unknown key in an environment file", ["plan", "--env", "prod"], "typo"),
    ("wrong type in an environment file", ["plan", "--env", "prod"], "wrong-type"),
    ("negative replicas", ["plan", "--env", "prod", "--set", "scaling.min_containers=-1"], None),
    ("min_containers > max_containers", ["plan", "--env", "prod", "--set", "scaling.min_containers=5"], None),
    ("warm replicas where the environment forbids them", ["plan", "--env", "dev", "--set", "scaling.min_containers=1"],
     None),
    ("bad GPU type", ["plan", "--env", "prod", "--set", "recipes.qwen3-8b-low-latency.gpu_type=H1000"], None),
    ("bad GPU count", ["plan", "--env", "prod", "--set", "recipes.qwen3-8b-low-latency.gpu_count=9"], None),
    ("tensor parallelism set apart from the GPU count (tp_size is gpu_count)",
     ["plan", "--env", "prod", "--set", "recipes.qwen3-8b-low-latency.tp_size=1"], None),
    ("a switch the container reads, in its old laptop-only section", ["plan", "--env", "prod"], "moved-startup"),
    ("a figure only plan reads, in its old deployed section",
     ["plan", "--env", "prod", "--set", "caches.volume_read_gbps=2"], None),
    ("a region in a recipe's table (regions are [placement]'s)",
     ["plan", "--env", "prod", "--set", 'recipes.qwen3-8b-low-latency.compute_region="us-west"'], None),
    ("port out of range", ["plan", "--env", "prod", "--set", "server.port=70000"], None),
    ("region not a Modal region", ["plan", "--env", "prod", "--set", "placement.compute_region=us-middle"], None),
    ("routing region Modal has no proxies in", ["plan", "--env", "prod", "--set", "placement.routing_region=eu-north"],
     None),
    ("concurrency target <= 0", ["plan", "--env", "prod", "--set", "recipes.qwen3-8b-low-latency.target_concurrency=0"],
     None),
    ("readiness timeout <= 0", ["plan", "--env", "prod", "--set", "recipes.qwen3-8b-low-latency.readiness_timeout=0"],
     None),
    ("startup timeout shorter than the readiness budget", ["plan", "--env", "prod", "--set",
                                                           "recipes.qwen3.6-35b-vlm.startup_timeout=600"], None),
    ("empty model id", ["plan", "--env", "prod", "--set", 'recipes.qwen3-8b-low-latency.model=""'], None),
    ("malformed revision where pinning is required", ["plan", "--env", "prod", "--set",
                                                      "recipes.qwen3-8b-low-latency.model_revision=main"], None),
    ("missing Modal credentials", ["build", "--env", "dev", "--recipe", "qwen3-8b-low-latency"], "no-credentials"),
    ("gated model whose Modal Secret is missing", ["download", "--env", "staging", "--recipe", "qwen3-8b-low-latency",
                                                  "--set", "recipes.qwen3-8b-low-latency.gated=true"], None),
    ("promote with the same source and target", ["promote", "--from", "prod", "--to", "prod"], None),
    ("prod deploy without a terminal and without --yes", ["deploy", "--env", "prod", "--recipe", "qwen3.6-35b-vlm",
                                                          "--force"], None),
    ("promote without a staging release", ["promote", "--from", "staging", "--to", "prod", "--yes"], None),
    ("a bake longer than the promotion job allows", ["promote", "--from", "staging", "--to", "prod", "--yes",
                                                     "--set", "release.bake_minutes=80"], None),
    ("prod's bake turned off without a reason", ["promote", "--from", "staging", "--to", "prod", "--yes",
                                                 "--set", "release.bake_minutes=0", "--set",
                                                 'release.bake_off_reason=""'],
     None),
    ("rollback to a version that does not exist", ["rollback", "--env", "dev", "--recipe", "qwen3-8b-low-latency",
                                                   "--to", "v9"], None),
    ("scale with junk", ["scale", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--min", "two"], None),
    ("bench with --concurrency 0", ["bench", "--env", "dev", "--url", "http://127.0.0.1:9", "--concurrency", "0"],
     None),
    ("bench with junk concurrency", ["bench", "--env", "dev", "--url", "http://127.0.0.1:9", "--concurrency", "1,x"],
     None),
    ("bench report to a folder that does not exist", ["bench", "--url", "http://127.0.0.1:9", "--output",
                                                      "/no/such/r.json"], None),
    ("gpu-test at a shape the suite does not have", ["gpu-test", "--env", "dev", "--shape", "huge"], None),
    ("bench requests of several levels written to one file", ["bench", "--url", "http://127.0.0.1:9", "--concurrency",
                                                              "1,16",
                                                             "--write-requests", "sent.jsonl"], None),
    ("bench: proxy credentials in clear text to another host",
     ["bench", "--url", "http://example.com:9", "--proxy-auth"],
     "proxy-credentials"),
    ("scale without --min", ["scale", "--env", "prod"], None),
    ("prod deploy from a dirty tree (nothing reaches Modal)", ["deploy", "--env", "prod", "--yes"], "dirty"),
    ("promotion against its direction", ["promote", "--from", "dev", "--to", "prod", "--yes"], None),
    ("a credential where a Modal Secret's name belongs", ["plan", "--env", "prod", "--set",
                                                          "secrets.hf_token_secret=hf_abcdefghijklmnopqrstuvwxyz0123"],
     None),
    ("a setting that chooses what to load, given with --set", ["plan", "--env", "prod", "--set", "env=dev"], None),
    ("a JSON variable that is not JSON", ["plan", "--env", "prod"], "bad-json-variable"),
    ("a variable nested below a single value", ["plan", "--env", "prod"], "too-deep-variable"),
    ("a list setting given as a plain string", ["plan", "--env", "prod"], "list-variable"),
    ("a boolean where a number belongs", ["plan", "--env", "prod", "--set", "scaling.min_containers=true"], None),
    ("a configuration folder that does not exist", ["plan", "--env", "prod"], "no-config-dir"),
    ("an environment file that is not UTF-8", ["plan", "--env", "prod"], "not-utf8"),
    ("a schedule window with a bad cron expression", ["plan", "--env", "prod", "--set",
     'scaling.schedule=[{name="business-hours", start="0 8 * * MONDAY", end="0 18 * * MON-FRI", '
     'timezone="America/New_York", min_containers=1}]'], None),
    ("a schedule window above max_containers", ["plan", "--env", "prod", "--set",
     'scaling.schedule=[{name="business-hours", start="0 8 * * MON-FRI", end="0 18 * * MON-FRI", '
     'timezone="America/New_York", min_containers=9}]'], None),
    ("unknown metric in a gate objective",
     ["plan", "--env", "prod", "--set", 'gate.objectives=[{ metric = "ttft_p95_ms", level = 1, max = 500 }]'], None),
    ("gate limit on the wrong side of its metric",
     ["plan", "--env", "prod", "--set", 'gate.objectives=[{ metric = "output_tokens_per_s", level = "target", max = '
                                        '900 }]'], None),
    ("gate objective at a concurrency of 0",
     ["plan", "--env", "prod", "--set", 'recipes.qwen3-8b-low-latency.gate.objectives=[{ metric = "ttft_p90_ms", level '
                                        '= 0, max = 500 }]'], None),
    ("regression budget out of range", ["plan", "--env", "prod", "--set", "gate.regression_budget=1.5"], None),
    ("two gate objectives on one concurrency",
     ["plan", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--set",
      'gate.objectives=[{ metric = "ttft_p90_ms", level = 10, max = 500 }, { metric = "ttft_p90_ms", level = "target", '
      'max = 900 }]'], None),
    ("--skip-gate without --reason", ["promote", "--from", "staging", "--to", "prod", "--yes", "--skip-gate"], None),
    ("--reason without --skip-gate", ["promote", "--from", "staging", "--to", "prod", "--yes", "--reason", "hotfix"],
     None),
    ("an unknown resource in the rates", ["plan", "--env", "prod", "--set", "costs.rates={ gpu = 3.2 }"], None),
    ("a negative rate", ["plan", "--env", "prod", "--set", "costs.rates={ cpu = -0.05 }"], None),
    ("the bill of a period in the future", ["status", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--cost",
                                            "--since", "2099-01-01"], None),
    ("the bill of a period that is not a time", ["status", "--env", "prod", "--cost", "--since", "last week"], None),
    ("the bill of less than one whole hour", ["status", "--env", "prod", "--cost", "--since", "2026-11-30T10:10",
                                              "--until", "2026-11-30T10:50"], None),
    ("--until without --since", ["status", "--env", "prod", "--until", "2026-11-01"], None),
    ("bench --compare with a release id nobody recorded",
     ["bench", "--compare", "r20260101-120000-abcdef", "--compare", "r20260102-120000-abcdef", "--env", "prod",
      "--recipe", "qwen3-8b-low-latency"], None),
    ("an integer of 5,000 digits in --set", ["plan", "--env", "prod", "--set", "scaling.min_containers=" + "9" * 5000],
     None),
    ("a 100,000-character value", ["plan", "--env", "prod", "--set", "secrets.hf_token_secret=" + "x" * 100_000], None),
    ("a control sequence in --env", ["plan", "--env", "\x1b[31mprod"], None),
    ("an SGLang version with a wildcard", ["sglang-flags", "--version", "0.5.*"], None),
    ("a downloaded wheel that is an HTML page", ["sglang-flags", "--wheel", "sglang-0.5.11-py3-none-any.whl"],
     "html-wheel"),
    ("a truncated bench report in --compare", ["bench", "--compare", "a.json", "--compare", "b.json"],
     "truncated-report"),
    ("a recipe table for a recipe the environment does not serve", ["plan", "--env", "edge"], "unserved-gate"),
    ("Modal's control plane out of reach (credentials set)", ["status", "--env", "dev"], "unreachable"),
    ("a misspelt --env", ["plan", "--env", "prdo"], None),
    ("a flag the task does not take", ["status", "--dry-run"], None),
    ("an environment file that is a directory", ["plan", "--env", "dev"], "dir-env-file"),
    ("an unquoted dotted recipe table", ["plan", "--env", "staging"], "dotted-table"),
    ("a rate of nan", ["plan", "--env", "prod", "--set", "costs.rates={ cpu = nan }"], None),
    ("a rate of inf", ["plan", "--env", "prod", "--set", "costs.gpu_hourly_usd={ H100 = inf }"], None),
    ("a prod deploy dry run with an unset draft revision",
     ["deploy", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--dry-run"], None),
    ("the bill of a period before year 1", ["status", "--env", "prod", "--cost", "--since", "1000000d"], None),
    ("bench --url with an unclosed IPv6 bracket", ["bench", "--url", "http://[::1"], None),
    ("a hand-edited bench report with latencies as strings", ["bench", "--compare", "a.json", "--compare", "b.json"],
     "string-latencies"),
    ("a hand-edited bench report with a list for concurrency", ["bench", "--compare", "a.json", "--compare", "b.json"],
     "list-concurrency"),
    ("compile without credentials (nothing reaches Modal)",
     ["compile", "--env", "dev", "--recipe", "qwen3-8b-low-latency"], "no-credentials"),
    ("bench --proxy-auth without MODAL_KEY/MODAL_SECRET", ["bench", "--url", "http://127.0.0.1:9", "--proxy-auth"],
     None),
    ("logs --follow with --json", ["logs", "--env", "dev", "--follow", "--json"], None),
    ("logs --tail 0", ["logs", "--env", "dev", "--tail", "0"], None),
    ("stop in prod without a terminal and without --yes", ["stop", "--env", "prod", "--recipe", "qwen3-8b-low-latency"],
     None),
    ("a sentinel interval under Modal's minimum", ["plan", "--env", "prod", "--set", "sentinel.interval_seconds=30"],
     None),
    ("a sentinel for an environment that does not enable it", ["sentinel", "--env", "dev"], None),
    ("status --since that is not a time", ["status", "--env", "prod", "--recipe", "qwen3-8b-low-latency", "--since",
                                           "yesterday"], None),
    ("schedule advice with no billing history", ["status", "--env", "prod", "--recipe", "qwen3-8b-low-latency",
                                                 "--advise"], None),
]


# Setups that set one environment variable: the doc shows it before the command.
VARIABLES = {"bad-json-variable": ("INFRA_SCALING", "{bad json"),
             "too-deep-variable": ("INFRA_SCALING__MIN_CONTAINERS__X", "1"),
             "list-variable": ("INFRA_SERVES", "qwen3-8b-low-latency"),
             "no-config-dir": ("INFRA_CONFIG_DIR", "/no/such/folder")}


def _prepare(cli, setup: str | None) -> None:
    if setup in ("edge", "malformed", "typo", "wrong-type", "moved-startup"):
        config = cli.tmp / "environments"
        shutil.copytree(REPO / "environments", config)
        cli.env["INFRA_CONFIG_DIR"] = str(config)
        prod = config / "prod.toml"
        if setup == "edge":
            (config / "edge.toml").write_text('serves = ["qwen3-8b-low-latency"]\n')
        elif setup == "malformed":
            prod.write_text(prod.read_text().replace("[scaling]", "[scaling", 1))
        elif setup == "moved-startup":
            prod.write_text(prod.read_text().replace("[startup]", "[cold_start]", 1))
        elif setup == "typo":
            prod.write_text(prod.read_text().replace("min_containers = 1", "min_contianers = 1"))
        elif setup == "wrong-type":
            prod.write_text(prod.read_text().replace("min_containers = 1", 'min_containers = "two"'))
    if setup in ("dir-env-file", "dotted-table"):
        config = cli.tmp / "environments"
        shutil.copytree(REPO / "environments", config)
        cli.env["INFRA_CONFIG_DIR"] = str(config)
        if setup == "dir-env-file":
            (config / "dev.toml").unlink()
            (config / "dev.toml").mkdir()
        else:
            with (config / "staging.toml").open("a") as f:
                f.write("\n[recipes.qwen3.6-35b-vlm]\ngpu_count = 1\n")
    if setup == "no-credentials":
        cli.credentials = False
    if setup == "proxy-credentials":
        cli.env |= {"MODAL_KEY": "wk-abcdefghijklmnop0123", "MODAL_SECRET": "ws-abcdefghijklmnop0123"}
    if setup == "dirty":
        staging = cli.project / "environments" / "staging.toml"
        staging.write_text(staging.read_text() + "# an uncommitted edit\n")
    if setup in VARIABLES:
        name, value = VARIABLES[setup]
        cli.env[name] = value
    if setup == "html-wheel":
        (cli.project / "sglang-0.5.11-py3-none-any.whl").write_text(
            "<!DOCTYPE html><html><body>Sign in</body></html>\n")
    if setup == "truncated-report":
        good = {"schema": 1, "levels": [{"concurrency": 1, "ttft_s": {"p50": 0.1}}]}
        (cli.project / "a.json").write_text(__import__("json").dumps(good))
        (cli.project / "b.json").write_text('{"schema": 1, "levels": [1, 2]}')
    if setup in ("string-latencies", "list-concurrency"):
        report = __import__("json").loads((REPO / "tests" / "fixtures" / "bench" / "baseline.json").read_text())
        (cli.project / "b.json").write_text(__import__("json").dumps(report))
        if setup == "string-latencies":
            report["levels"][0]["ttft_s"] |= {"p50": "0.1", "p99": "0.2"}
        else:
            report["levels"][0]["concurrency"] = [1, 2]
        (cli.project / "a.json").write_text(__import__("json").dumps(report))
    if setup == "unserved-gate":
        config = cli.tmp / "environments"
        shutil.copytree(REPO / "environments", config)
        cli.env["INFRA_CONFIG_DIR"] = str(config)
        (config / "edge.toml").write_text('serves = ["qwen3-8b-low-latency"]\n\n[recipes."qwen3.6-35b-vlm".gate]\n'
                                          'regression_budget = 0.2\n')
    if setup == "unreachable":  # the real client, credentials set, and nothing listening where it would connect
        import socket as _socket

        with _socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cli.env |= {"MODAL_SERVER_URL": f"http://127.0.0.1:{port}",
                    "MODAL_TOKEN_ID": "ak-0123456789abcdef0123", "MODAL_TOKEN_SECRET": "as-0123456789abcdef0123"}
    if setup == "not-utf8":
        config = cli.tmp / "environments"
        shutil.copytree(REPO / "environments", config)
        cli.env["INFRA_CONFIG_DIR"] = str(config)
        (config / "prod.toml").write_bytes((config / "prod.toml").read_bytes() + b"# caf\xe9\n")


def normalise(text: str, tmp: str | None = None) -> str:
    import certifi

    text = text.replace(certifi.where(), "<certifi>/cacert.pem")  # wherever this Python installed it
    if tmp:
        text = text.replace(str(Path(tmp) / "project"), "<repo>").replace(tmp, "<tmp>")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(r"LISTENING \d+", "LISTENING <port>", text)
    text = text.replace(str(REPO), "<repo>")
    text = re.sub(r"after \d+\.\d s", "after <t> s", text)
    text = re.sub(r"\(\d+ attempts;", "(<n> attempts;", text)
    text = re.sub(r"\(r\d{8}-\d{6}-[0-9a-f]{6}", "(<release>", text)
    return text


# Cases that need nothing but settings and flags run in this process (tests/conftest.run_in_process); the rest
# need a checkout of their own (git state), the stand-in Modal, or the real Modal client, and run as a user would.
IN_PROCESS = {"plan", "bench", "sglang-flags", "scale"}
OWN_PROCESS = {"dirty", "unreachable", "no-credentials", "proxy-credentials"}


@pytest.fixture(scope="module")
def bad_input_lines(tmp_path_factory, wire_session):
    from tests.conftest import Cli, run_in_process

    wire = wire_session.wire
    # A fresh workspace: the session's wire still holds what the test before this one on the worker left there (a
    # staging release would turn "promote without a staging release" into another refusal).
    wire.reset(tmp_path_factory.mktemp("modal-wire"))
    before = len(wire.rpcs())

    def run(case, in_process: bool = False):
        situation, args, setup = case
        cli = Cli(tmp_path_factory.mktemp("cli"), wire)
        _prepare(cli, setup)
        if in_process:
            own = ("html-wheel", "truncated-report", "string-latencies", "list-concurrency")
            cwd = cli.project if setup in own else cli.tmp / "work"
            cwd.mkdir(exist_ok=True)
            env = {"INFRA_STATE_DIR": str(cli.tmp / "state")} | cli.modal_environ() | cli.env
            done = run_in_process(args, env, cwd)
        else:
            done = cli(*args)
        shown = [f"{VARIABLES[setup][0]}='{VARIABLES[setup][1]}'"] if setup in VARIABLES else []
        return situation, args, done, str(cli.tmp), shown

    here = [i for i, (_, args, setup) in enumerate(BAD_INPUT) if args[0] in IN_PROCESS and setup not in OWN_PROCESS]
    results = {i: run(BAD_INPUT[i], in_process=True) for i in here}
    # The others: each in its own process and checkout, a few at once.
    others = [i for i in range(len(BAD_INPUT)) if i not in results]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results |= dict(zip(others, pool.map(run, [BAD_INPUT[i] for i in others])))
    return [results[i] for i in range(len(BAD_INPUT))], wire.rpcs()[before:]


@pytest.mark.timeout(600)  # every case of the catalogue, ~90 commands: 110 s here at a load of 17 on 2 cores
def test_bad_input_is_one_line_nonzero_no_traceback_and_changes_nothing(bad_input_lines, tmp_path, fake_server,
                                                                        wire):
    from tests.wire import MUTATING_RPCS

    bad_input_lines, rpcs = bad_input_lines
    assert not MUTATING_RPCS & set(rpcs), sorted(MUTATING_RPCS & set(rpcs))  # no case changed anything on Modal
    for situation, _, done, tmp, _ in bad_input_lines:
        assert done.returncode != 0, (situation, done.stdout)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, (situation, done.stderr)
        assert "Traceback" not in done.stderr, situation
        assert done.stdout == "", (situation, done.stdout)
        assert not os.path.exists(os.path.join(tmp, "state")), situation
    # The catalogue takes ~17 s of CPU to run: this one test runs it, then checks that docs/errors.md lists each case
    # with the exact message it printed (two tests would run it twice, once per worker).
    check_docs_errors_md(bad_input_lines, tmp_path, fake_server, wire)


def test_debug_shows_the_traceback(cli):
    done = cli("plan", "--env", "prod", "--set", "server.port=70000", "--debug")
    assert done.returncode == 1 and "Traceback" in done.stderr and "error: --set: server.port = 70000" in done.stderr


def test_unknown_infra_variable_warns_and_still_plans(cli):
    done = cli("plan", "--env", "dev", INFRA_SCALNG__MIN_CONTAINERS="1")
    assert done.returncode == 0
    assert ("warning: environment variable INFRA_SCALNG__MIN_CONTAINERS matches no setting and is ignored; "
            "did you mean INFRA_SCALING__MIN_CONTAINERS?") in done.stderr


# ---------------------------------------------------------------------------- faults


def _fault_lines(tmp_path, fake_server, wire) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    def expect(situation, exc_type, fn):
        with pytest.raises(exc_type) as err:
            fn()
        out.append((situation, normalise(str(err.value), str(tmp_path))))

    d = deployment(port=free_port())
    base = f"http://127.0.0.1:{d.server.port}"

    def start(timeout=30.0, **fake):
        readiness = Readiness(timeout=timeout, poll_interval=0.2, warmup=d.recipe.warmup, model=d.recipe.model)
        return lifecycle.start_and_warm(sglang_args.launch_command(d), base, readiness, env=standin_env(**fake))

    expect("SGLang exits during start-up", ServerFailed,
           lambda: start(listen_after=30, exit_after=0.3, exit_code=7, log_lines=["CUDA error: out of memory"]))
    expect("SGLang never becomes healthy", ServerFailed,
           lambda: start(timeout=1.0, never_healthy=True, log_lines=["capturing CUDA graphs"]))
    expect("a warm-up request fails", ServerFailed, lambda: start(chat_status=500))
    offline = changed(d, hf_hub_offline=True)
    expect("weights missing from the Volume at start-up", WeightsMissing,
           lambda: require_downloaded(tmp_path / "empty", offline))

    env = standin_env() | {"FAKE_COMPILE_FAIL": "3"}
    expect("DeepGEMM compile fails", CompileFailed,
           lambda: compile_kernels(d, tmp_path / "dg", env=env, local_root=tmp_path / "local"))

    def probe(*args, deadline=3.0):
        url = fake_server(*args).url
        return asyncio.run(client.probe(url, client.chat_payload([{"role": "user", "content": "hi"}]),
                                        deadline_seconds=deadline))

    expect("HTTP 4xx with a body", client.EndpointError, lambda: probe("--chat-status", "400"))
    expect("connection reset mid-stream", client.EndpointError, lambda: probe("--reset-at", "3"))
    expect("malformed SSE line", client.EndpointError, lambda: probe("--malformed-at", "1"))
    expect("server error inside the stream", client.EndpointError, lambda: probe("--error-at", "1"))
    expect("no replica within the deadline (503s)", client.EndpointError,
           lambda: probe("--unavailable-first", "1000", deadline=2.5))

    import modal
    from grpclib import Status

    from infra.control.resolve import resolve
    from infra.control.settings import load_settings
    from infra.perf.releases import Release, ReleaseStore
    from infra.runtime.remote import ModalRemote
    from stages import deploy
    from stages.common import Context

    # The Modal boundary: the real ModalRemote in front of the wire fake (tests/wire.py), a refusal scripted there.
    remote = ModalRemote()
    wire.fail("AppPublish", "image build failed", Status.INVALID_ARGUMENT)
    settings = load_settings("dev", "qwen3-8b-low-latency")
    ctx = Context(settings=settings, remote=remote, say=lambda m: None)
    expect("deploy raises (manifest left unchanged)", modal.exception.InvalidError,
           lambda: deploy.run(ctx, resolve(settings, "qwen3-8b-low-latency")))
    remote.acquire_lock("dev", "dev/qwen3-8b-low-latency", "promote by alice@ci pid 1", 60)
    store = ReleaseStore(remote)

    def locked():
        with store.locked(resolve(settings, "qwen3-8b-low-latency"), "deploy"):
            pass

    expect("a second release operation while one holds the lock", UserError, locked)

    # The bill (issue 25): Modal's rates without one the deployment needs, and a report of untagged apps.
    from datetime import UTC, datetime, timedelta

    from stages import status

    prod = load_settings("prod", "qwen3-8b-low-latency")
    wire.rates = {"CPU": "0.0000131", "Memory": "0.00000222"}
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    ctx = Context(settings=prod, remote=remote, say=lambda m: None, clock=lambda: now)
    expect("Modal's rates lack one the deployment needs (status --cost)", UserError,
           lambda: status.run(ctx, resolve(prod, "qwen3-8b-low-latency"), status.Options(cost=True)))
    wire.rates = dict(RATES)
    d = resolve(prod, "qwen3-8b-low-latency")
    store = ReleaseStore(remote)
    store.record(d, store.read(d), Release(
        release_id="r20261130-070000-abcdef", kind="deploy", commit="a" * 40, dirty=False, tag="git-aaaaaaaaaaaa",
        deployment=d, version=1, deployed_at=now.timestamp() - 5 * 3600))
    # The server's App as one deployed before apps were tagged: it carries no tags, and Modal bills it so.
    modal.App.lookup(d.app_name, environment_name="prod", create_if_missing=True)
    wire.charge("prod", d.app_name, [now - timedelta(hours=h) for h in (2, 3)], {"H100": "13.82"})
    ctx = Context(settings=prod, remote=remote, say=lambda m: None, clock=lambda: now)
    expect("a bill whose rows carry no tags", UserError,
           lambda: status.run(ctx, d, status.Options(cost=True, since="1d")))
    # A row with a negative cost (issue 30) is no error: the bill goes on without it, and this note says so.
    from infra.control import costs
    from infra.perf import ledger

    credit = costs.BillRow("ap-9", d.app_name, now - timedelta(hours=3), -3.0, {"H100": -3.0},
                           {"env": "prod", "recipe": d.recipe.name, "role": "server"})
    bill = ledger.bill([], [credit], costs.Period(now - timedelta(hours=6), now), env="prod", recipe=d.recipe.name,
                       app_names=(d.app_name,), rates=costs.Rates(costs.TABLE, costs.TABLE_SOURCE), margin=0.15,
                       now=now)
    out.append(("a billing row with a negative cost (status --cost: a note; the bill goes on without it)",
                bill.notes[0]))

    # The network (issue 30): a control plane, an endpoint and a Hub that accept and never answer, sit behind a
    # certificate nobody trusts, or refuse; the bound set small here ([client] connect_timeout, the first answer).
    _network_faults(tmp_path, expect)
    return [(s, re.sub(r"since \d\d:\d\d:\d\dZ", "since <time>", m)) for s, m in out]


def _network_faults(tmp_path, expect) -> None:
    """Each network fault through `expect` (which records its line), with real sockets."""
    import dataclasses

    from infra.runtime import remote, weights
    from stages import bench as bench_stage
    from stages import flags
    from tests.fakes.network_faults import SilentServer, UntrustedTLSServer, refused_port

    saved = {k: os.environ.get(k) for k in ("MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET",
                                            "MODAL_CONFIG_PATH")}
    (tmp_path / "modal.toml").write_text("")
    os.environ.update(MODAL_TOKEN_ID="ak-fake", MODAL_TOKEN_SECRET="as-fake",
                      MODAL_CONFIG_PATH=str(tmp_path / "modal.toml"))

    def control_plane(url, timeout=0.5):
        os.environ["MODAL_SERVER_URL"] = url
        return lambda: remote.ModalRemote(connect_timeout=timeout).history(deployment())

    def bench(url, **plan):
        options = flags.bench_options(url=url, concurrency="1", requests="1", prompt_tokens="4")
        options = dataclasses.replace(options, plan=options.plan.model_copy(update=plan))
        return lambda: bench_stage.run_url(options, say=lambda _m: None)

    try:
        with SilentServer() as silent, UntrustedTLSServer(tmp_path) as tls:
            silent_url, tls_url = f"127.0.0.1:{silent.port}", f"https://127.0.0.1:{tls.port}"
            expect("Modal's control plane accepts and never answers (https, connect_timeout 0.5)", UserError,
                   control_plane(f"https://{silent_url}"))
            expect("Modal's control plane accepts and never answers (http, connect_timeout 0.5)", UserError,
                   control_plane(f"http://{silent_url}"))
            expect("Modal's control plane behind a proxy that intercepts TLS", UserError, control_plane(tls_url, 5))
            expect("Modal's control plane refuses the connection", UserError,
                   control_plane(f"https://127.0.0.1:{refused_port()}", 5))
            expect("bench --url: a refused port (no retries)", UserError, bench(f"http://127.0.0.1:{refused_port()}"))
            expect("bench --url: accepted, never answers (first answer 0.5 s)", UserError,
                   bench(f"http://{silent_url}", first_answer=0.5))
            expect("bench --url: a certificate nobody trusts", UserError, bench(tls_url))
            expect("the Hub accepts and never answers (download job, timeout 0.5 s)", UserError,
                   lambda: weights.download("acme/model", "main", tmp_path / "hub", endpoint=f"http://{silent_url}",
                                            timeout=0.5))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def shown_arg(arg: str) -> str:
    """A command-line argument as the doc shows it: long ones cut, control characters escaped."""
    if not arg.isprintable():
        return "$'" + arg.encode("unicode_escape").decode() + "'"
    return arg if len(arg) <= 200 else f"{arg[:40]}…({len(arg):,} characters)"


def render(bad: list[tuple[str, list[str], str, list[str]]], faults: list[tuple[str, str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "<br>")

    lines = [
        "# Errors and what the user sees",
        "",
        "Generated by `tests/test_errors_catalog.py`, which asserts every line below; it fails when this file",
        "drifts. Regenerate: `INFRA_WRITE_DOCS=1 python -m pytest tests/test_errors_catalog.py`.",
        "",
        "## Bad input",
        "",
        "Each exits non-zero with this one line on stderr (no traceback unless `--debug`), and changes",
        "nothing on Modal or on disk.",
        "",
        "| situation | command | message |",
        "|---|---|---|",
    ]
    lines += [f"| {cell(s)} | `{' '.join([*v, 'invoke', *map(shown_arg, a)])}` | {cell(m)} |" for s, a, m, v in bad]
    lines += [
        "",
        "## Faults",
        "",
        "What a failing server, job or endpoint reports (ports and durations normalised).",
        "",
        "| situation | message |",
        "|---|---|",
    ]
    lines += [f"| {cell(s)} | {cell(m)} |" for s, m in faults]
    return "\n".join(lines) + "\n"


def check_docs_errors_md(bad_input_lines, tmp_path, fake_server, wire) -> None:
    """docs/errors.md lists every case with its exact message (and the faults with theirs)."""
    bad = []
    for situation, args, done, tmp, variables in bad_input_lines:
        message = next(line for line in done.stderr.splitlines() if line.startswith("error:"))
        bad.append((situation, args, normalise(message, tmp), variables))
    text = render(bad, _fault_lines(tmp_path, fake_server, wire))
    if WRITE_DOCS:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text)
    stale = "docs/errors.md is stale: INFRA_WRITE_DOCS=1 python -m pytest tests/test_errors_catalog.py"
    assert DOC.exists() and DOC.read_text() == text, stale
