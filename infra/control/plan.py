"""`invoke plan`: what would be deployed, resolved, offline, for a person (text) and for CI (stable JSON).

The plan is a pure function of the settings, the recipes and what this machine's
stage state recorded (infra/control/state.py); it needs neither network nor Modal
credentials. Its JSON has no timestamps and sorted keys, so CI can diff it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from infra.control import cold_start_figures as figures
from infra.control import costs, objectives, revisions, sglang_flags
from infra.control.resolve import gate_for
from infra.control.settings import Settings
from infra.control.state import StageState
from infra.runtime import compile_cache, kernels, schedule, sglang_args, spec
from infra.runtime.deployment import DEPLOYMENT_VARIABLE, Deployment, Scaling, Window
from infra.runtime.model import RESOLVED
from infra.runtime.recipes.base import COMMIT_RE
from infra.runtime.secrets import local_credentials

BEFORE_LAUNCH = ("image_pull", "compile_cache_restore")  # the parts of a cold start before SGLang is launched


# A first pipeline of an environment downloads and compiles everything; these bound the rest of it.
SLOW_DOWNLOAD_GBPS = 0.25  # a slow day on the Hub (Xet transfers usually reach 1 Gbps and more)
BUILD_DEPLOY_SMOKE_SECONDS = 15 * 60  # image builds (cached after the first), deploys, a cold start for the smoke test


def first_pipeline_seconds(deployments: list[Deployment]) -> int:
    """How long an environment's first `invoke pipeline` may take: every recipe's weights at a slow Hub rate, its
    compile job to the timeout derived from measurement (spec.compile_budget), builds, deploys and smoke tests.
    What a CI job's time limit should exceed (.github/workflows/deploy-staging.yml; tests/test_workflows.py)."""
    downloads = sum(_download_seconds(d) for d in deployments)
    compiles = sum(spec.compile_budget(d).timeout_seconds for d in deployments)
    return int(downloads + compiles + BUILD_DEPLOY_SMOKE_SECONDS)


def _download_seconds(d: Deployment) -> float:
    return (d.recipe.model_size_gb + d.recipe.draft_size_gb) * 8 / SLOW_DOWNLOAD_GBPS


def first_pipeline(d: Deployment, cold: dict, rates: costs.Rates) -> dict:
    """What this recipe's first `invoke pipeline` takes at most, in time and money: the bound of
    first_pipeline_seconds, each paid part priced at its container's rate (the download job at the slow Hub rate,
    the compile job to its timeout, the smoke test's cold start on a replica). Image builds are not priced."""
    jobs = spec.jobs(d)
    download = costs.price(costs.Container.of(jobs["download_weights"]), rates)
    compile_job = costs.price(costs.Container.of(jobs["compile_kernels"]), rates)
    parts = {
        "download": costs.job(download, round(_download_seconds(d), 1),
                              f"{d.recipe.model_size_gb + d.recipe.draft_size_gb:g} GB of weights at a slow Hub's "
                              f"{SLOW_DOWNLOAD_GBPS:g} Gbps"),
        "compile": costs.job(compile_job, spec.compile_budget(d).timeout_seconds, "the compile job to its timeout"),
        "smoke": costs.job(replica_cost(d, rates), cold["estimate_seconds"],
                           "the smoke test's cold start on a replica"),
    }
    return {"seconds": first_pipeline_seconds([d]), "usd": round(sum(p["usd"] for p in parts.values()), 2),
            "parts": parts, "basis": f"an upper bound: the parts above, plus {BUILD_DEPLOY_SMOKE_SECONDS // 60} min "
                                     "for image builds (not priced), deploys and the smoke request"}


def gpu_test_cost(d: Deployment, rates: costs.Rates) -> dict:
    """One `invoke gpu-test` run per shape: its Function's container (the recipe's GPUs) for the shape's measured
    time, and the most a run can cost (to the Function's timeout)."""
    hourly = costs.price(costs.Container.of(spec.jobs(d)["gpu_test"]), rates)
    shapes = {shape: costs.job(hourly, seconds, f"the {shape} suite's measured time")
              for shape, seconds in spec.gpu_test_seconds(d).items()}
    timeout = spec.gpu_test_timeout(d)
    return {"shapes": shapes, "timeout_seconds": timeout,
            "usd_at_timeout": costs.job(hourly, timeout, "timeout")["usd"]}


def replica_cost(d: Deployment, rates: costs.Rates) -> costs.Hourly:
    """One server container per hour, priced from the very options Modal receives (infra/runtime/spec.py)."""
    return costs.price(costs.Container.of(spec.server(d)), rates)


def cost_plan(settings: Settings, d: Deployment, cold: dict, rates: costs.Rates | None = None) -> dict:
    """What this deployment costs: a replica per hour (its parts, the region multiplier, each rate's source), the
    warm replicas' standing cost, one compile job, and the promotion gate's measurement."""
    rates = rates or costs.rates_for(settings.costs)
    replica = replica_cost(d, rates)
    compile_job = costs.price(costs.Container.of(spec.jobs(d)["compile_kernels"]), rates)
    gate = gate_for(settings, d.recipe.name)
    out = {
        "rates": rates.to_dict(),
        "replica": replica.to_dict(),
        "standing": costs.standing(replica, d.scaling.min_containers),
        "compile_job": costs.job(compile_job, cold["uncached_estimate_seconds"],
                                 "a start that compiles every kernel (the cold start without the compile caches), "
                                 "once per change of the kernel key"),
        "gate_measurement": None,
        "first_pipeline": first_pipeline(d, cold, rates),
        "gpu_test": gpu_test_cost(d, rates),
    }
    if gate.enabled:
        w, target = d.recipe.gate_workload, d.recipe.target_concurrency
        targets = objectives.resolve(gate, target)
        seconds = costs.gate_seconds(targets, objectives.levels(targets, target), requests=w.requests,
                                     warmup_rounds=w.warmup_rounds, max_tokens=w.max_tokens)
        out["gate_measurement"] = costs.job(
            replica, seconds, f"{w.requests} requests per level at the objectives' TTFT and TPOT limits, on the "
            f"source environment's replica (priced at this one's); plus a cold start where the source keeps none warm"
            if seconds is not None else "unknown: a measured level has no ttft_p90_ms and tpot_p50_ms objective")
    return out


def cold_start(settings: Settings, d: Deployment, state: StageState) -> dict:
    """A cold start, phase by phase, for the flow the user runs (the pipeline compiles before it deploys).

    Every figure is measured (infra/control/cold_start_figures.py): the profile measured with this model, or
    the nearest measured shape, each part naming where it was measured; `caveats` say what differs from where
    this deployment runs. Phases the deployment does not have are left out (piecewise CUDA graphs where its
    SGLang version does not capture them, the drafter's without speculative decoding, SGLang's own warm-up with
    --skip-server-warmup). The estimate assumes the compile caches, as the pipeline leaves them; each phase also
    says what it costs without them (`uncached_seconds`), and whether this machine recorded the compile for
    this deployment's key (`cached`).
    """
    cs, r = settings.cold_start, d.recipe
    profile, measured_here = figures.profile_for(r.model)
    compiled = state.is_current("compile", kernels.kernel_fingerprint(d))
    when = ("compile cache recorded here for this deployment's key" if compiled else
            "after `invoke compile` (the pipeline's compile stage); not yet recorded here for this key")
    flags = {flag for flag, _ in r.extra_flags}
    whole = figures.measured_starts(r.model)
    caveats = [] if measured_here else [
        f"no start measured phase by phase with {r.model}: the phases of the nearest measured shape"
        if whole else f"nothing measured with {r.model}: the figures of the nearest measured shape"]
    here = f"SGLang {r.sglang_version} on {r.gpu}, TP {r.tp_size}"
    if (r.sglang_version != profile.sglang_version or r.tp_size != 1
            or r.gpu_type.rstrip("!") not in profile.measured_on):
        caveats.append(f"this deployment runs {here}: not measured there; the figures are used as they are")
    parts: dict[str, dict] = {}
    image_gb = cs.image_size_gb.get(r.sglang_image)
    parts["image_pull"] = (
        {"seconds": round(image_gb / cs.image_pull_gbps, 1), "basis": f"{image_gb} GB at {cs.image_pull_gbps} GB/s"}
        if image_gb
        else {"seconds": None, "basis": "image size unknown (set cold_start.image_size_gb)"}
    )
    restore = profile.restore
    parts["compile_cache_restore"] = {
        "seconds": restore.cached, "uncached_seconds": 0.0, "cached": compiled,
        "basis": f"copy of this key's tree to local disk (measured {restore.cached:g} s for {profile.restored_mb:g} "
                 f"MB); cached: {when}"}
    if ("--load-format", "dummy") in r.extra_flags:
        parts["weights_read"] = {"seconds": 0.0, "basis": "--load-format dummy: random weights, nothing read (their "
                                                          "0.2 s of initialisation is in the measured phases)"}
    else:
        if downloads := revisions.recorded_downloads(state):
            size_gb = sum(item["size_bytes"] for item in downloads) / 1e9
            basis = "sizes recorded by the download stage"
        else:
            size_gb = r.model_size_gb + r.draft_size_gb
            basis = "nominal sizes (run `invoke download` to record real ones)"
        parts["weights_read"] = {
            "seconds": round(size_gb / settings.cold_start.volume_read_gbps, 1),
            "basis": f"{size_gb:.1f} GB from the Volume at {settings.cold_start.volume_read_gbps} GB/s; {basis}; not "
                     "measured (the measured starts read dummy weights)",
        }
    piecewise, why = piecewise_graphs(d)
    skipped = {profile.skipped_warmup_phase: "--skip-server-warmup"} if "--skip-server-warmup" in flags else {}
    for name, figure in profile.phases:
        if name == profile.piecewise_phase and not piecewise:
            continue
        if name in profile.draft_phases and not r.speculative:
            continue
        if name in skipped:
            continue
        parts[name] = _measured(figure, compiled, when, profile)
    if r.deep_gemm_shapes and profile.deep_gemm_per_shape and compile_cache.deepgemm_enabled(r.image_env):
        per = profile.deep_gemm_per_shape.uncached
        parts["deep_gemm_jit"] = {
            "seconds": 0.0, "uncached_seconds": round(per * r.deep_gemm_shapes, 1), "cached": compiled,
            "basis": f"DeepGEMM's JIT of {r.deep_gemm_shapes} GEMM shape(s) (the recipe's deep_gemm_shapes) at {per:g} "
                     f"s each, measured by compile_deep_gemm ({profile.measured_on}); loading them is in cuda_graphs; "
                     f"cached: {when}"}
    first = profile.first_request
    if r.speculative:
        parts["first_warmup_request"] = _measured(first, compiled, when, profile,
                                                  "the first speculative decode JIT-compiles without the caches")
    else:
        parts["first_warmup_request"] = {"seconds": first.cached, "basis": "a warm-up request once compiled (measured "
                                         "with speculative decoding; nothing measured without it)"}
    more = r.warmup.count - 1
    if more:
        w = profile.warmup_request
        parts["warmup"] = {"seconds": round(more * w.cached, 1), "uncached_seconds": round(more * w.uncached, 1),
                           "basis": f"{more} more request(s) of {r.warmup.max_tokens} tokens at {w.cached:g} s each "
                                    f"({profile.measured_on}; bounded by {r.warmup.timeout:g} s each)"}
    known = {k: p for k, p in parts.items() if p["seconds"] is not None}
    launch = {k: p for k, p in known.items() if k not in BEFORE_LAUNCH}

    def total(chosen: dict, uncached: bool) -> float:
        return round(sum(p.get("uncached_seconds", p["seconds"]) if uncached else p["seconds"]
                         for p in chosen.values()), 1)

    result = {
        "parts": parts,
        "estimate_seconds": total(known, False),
        "uncached_estimate_seconds": total(known, True),
        "launch_to_ready_seconds": total(launch, False),
        "uncached_launch_to_ready_seconds": total(launch, True),
        "compiled": compiled,
        "complete": len(known) == len(parts),
        "profile": {"name": profile.name, "measured_on": profile.measured_on, "source": profile.source,
                    "measured_with_this_model": measured_here},
        "piecewise_graphs": why,
        "caveats": caveats,
        # Whole starts measured with this model (cold_start_figures.MEASURED_STARTS), shown beside the estimate.
        "measured_starts": [{"seconds": m.seconds, "healthy_seconds": m.healthy_seconds,
                             "warmup_seconds": list(m.warmup_seconds), "what": m.what, "measured_on": m.measured_on,
                             "source": m.source} for m in whole],
    }
    if d.startup.gpu_snapshot:
        resume = figures.SNAPSHOT_RESUME.cached
        result["snapshot_restore_seconds"] = round(figures.MODAL_SNAPSHOT_RESTORE_SECONDS + resume
                                                   + (parts["image_pull"]["seconds"] or 0), 1)
        result["note"] = ("a GPU snapshot restore replaces boot, weight loading, kernels, CUDA graphs and warm-up: "
                          f"SGLang takes its memory back and answers once in {resume:g} s (measured on the H200), "
                          f"after Modal restores the container (assumed {figures.MODAL_SNAPSHOT_RESTORE_SECONDS:g} s, "
                          "not measured)")
    return result


def _measured(figure, compiled: bool, when: str, profile, what: str = "") -> dict:
    part = {"seconds": figure.cached, "uncached_seconds": figure.uncached,
            "basis": f"{what + '; ' if what else ''}measured on {profile.measured_on} ({profile.source}: "
                     f"{figure.cached_at} / {figure.uncached_at})"}
    if figure.cached != figure.uncached:
        part["cached"] = compiled
        part["basis"] += f"; cached: {when}"
    return part


def piecewise_graphs(d: Deployment) -> tuple[bool, str]:
    """Whether SGLang captures piecewise CUDA graphs for this deployment, and why (read in each version's wheel)."""
    r = d.recipe
    flags = {flag for flag, _ in r.extra_flags}
    version = sglang_flags.version_key(r.sglang_version)
    if "--disable-piecewise-cuda-graph" in flags:
        return False, "not captured: --disable-piecewise-cuda-graph"
    if version < sglang_flags.version_key("0.5.10"):
        on = "--enable-piecewise-cuda-graph" in flags
        return on, (f"{'captured' if on else 'not captured'}: opt-in before SGLang 0.5.10 "
                    "(--enable-piecewise-cuda-graph)")
    if r.warmup.with_image or r.smoke.with_image:
        return False, ("not captured: SGLang turns them off for multimodal models "
                       "(server_args._handle_piecewise_cuda_graph)")
    if r.speculative and version < sglang_flags.version_key("0.5.11"):
        return False, "not captured: SGLang 0.5.10 turns them off with speculative decoding (server_args)"
    return True, "captured: on by default for text models from SGLang 0.5.10 (with speculative decoding from 0.5.11)"


def warnings_for(settings: Settings, d: Deployment, cold: dict) -> list[str]:
    out = [f"unpinned: {item}; `invoke download` resolves and records a commit" for item in d.recipe.unpinned()]
    if not d.auth.proxy_auth:
        out.append("endpoint is public: anyone with the URL can call it (auth.proxy_auth = false)")
    budget = d.recipe.readiness_timeout + d.recipe.warmup_budget
    if d.recipe.startup_timeout < budget:  # validation refuses this; kept for plans of hand-built deployments
        out.append(f"startup_timeout {d.recipe.startup_timeout} s is shorter than the readiness budget {budget:g} s")
    expected = cold["estimate_seconds"] * settings.cold_start.margin
    if not d.startup.gpu_snapshot and d.recipe.startup_timeout < expected:
        out.append(
            f"startup_timeout {d.recipe.startup_timeout} s is below the estimated cold start "
            f"{cold['estimate_seconds']:g} s × margin {settings.cold_start.margin:g}: a cold container may be killed "
            "before it is ready"
        )
    if settings.release.guarded and d.scaling.min_containers == 0 and not any(
            w.min_containers for w in d.scaling.schedule):
        out.append(f"production environment '{d.env}' has min_containers = 0: every first request pays the full cold "
                   f"start (~{cold['estimate_seconds']:g} s)")
    if d.startup.gpu_snapshot:
        out.append("GPU memory snapshots are alpha on Modal (startup.gpu_snapshot)")
    out += sglang_flags.deprecation_warnings(d)
    return out


def schedule_plan(settings: Settings, d: Deployment, now: datetime | None = None,
                  rates: costs.Rates | None = None) -> dict | None:
    """The warm-capacity schedule: its windows, the cron triggers that apply it, and what it costs.

    The cost covers the week (and the 30 days) from the Monday of this week in the first
    window's zone: the same figures all week, so CI's plan diffs stay quiet, and exact
    across a daylight-saving change. What is in force *now* is left to `render`.
    """
    windows = d.scaling.schedule
    if not windows:
        return None
    now = now or datetime.now(UTC)
    start = schedule.start_of_week(now, windows[0].timezone)
    cost = costs.scheduled(replica_cost(d, rates or costs.rates_for(settings.costs)), windows, d.scaling, start)
    return {
        "windows": [w.model_dump() | {"opens": schedule.explain(w.start), "closes": schedule.explain(w.end)}
                    for w in windows],
        "overlaps": "the highest floor wins, field by field",
        "triggers": [{"cron": b.cron, "timezone": b.timezone, "events": list(b.events)}
                     for b in schedule.boundaries(windows)],
        "base": {"min_containers": d.scaling.min_containers, "max_containers": d.scaling.max_containers,
                 "buffer_containers": d.scaling.buffer_containers},
        "cost": cost,
    }


def sentinel_plan(settings: Settings, rates: costs.Rates) -> dict | None:
    """The environment's sentinel (infra/control/watching.py), when it is enabled: its app's options and its cost."""
    if not settings.sentinel.enabled:
        return None
    from infra.control import watching
    from infra.control.resolve import resolve

    served = [resolve(settings, name) for name in settings.serves]
    s = watching.spec_for(settings, served)
    return {"modal": spec.sentinel_app(s),
            "cost": watching.cost(s, rates, [(d, replica_cost(d, rates)) for d in served])}


def plan_for(settings: Settings, d: Deployment, state: StageState | None = None, commit: str | None = None) -> dict:
    """`commit`: the git tag a deploy from this checkout would send (infra/control/gitinfo.py `GitInfo.tag`), so the
    app's tags here are the exact ones deploy sends; None outside a git checkout."""
    state = state or StageState(d.env, d.recipe.name)
    resolved = revisions.recorded(state)
    cold = cold_start(settings, d, state)
    rates = costs.rates_for(settings.costs)
    r = d.recipe

    def model(repo: str | None, revision: str | None) -> dict | None:
        if repo is None:
            return None
        return {
            "id": repo,
            "revision": revision,
            "pinned": bool(COMMIT_RE.match(revision or "")),
            "resolved_commit": resolved.get(repo),
        }

    return {
        "env": d.env,
        "recipe": r.name,
        "modal_environment": d.modal.environment,
        "sglang_version": r.sglang_version,
        # Verbatim what infra/runtime/app.py and infra/runtime/jobs.py pass to Modal (infra/runtime/spec.py).
        "modal": spec.modal_spec(d, commit),
        "model": model(r.model, r.model_revision),
        "draft_model": model(r.draft_model, r.draft_revision),
        "tensor_parallel": r.tp_size,
        "readiness_timeout": r.readiness_timeout,
        "launch_command": sglang_args.launch_command(d),
        "compile_command": sglang_args.compile_command(d),
        "readiness": {
            "health": f"GET /health every {r.health_poll_interval:g} s until healthy",
            "warmup": {
                "requests": r.warmup.count,
                "prompt": r.warmup.prompt,
                "max_tokens": r.warmup.max_tokens,
                "timeout": r.warmup.timeout,
                "image": "packaged, inline data URL" if r.warmup.with_image else None,
            },
        },
        "endpoint": {
            "public": not d.auth.proxy_auth,
            "auth": "Modal proxy auth: send Modal-Key / Modal-Secret" if d.auth.proxy_auth else "none",
        },
        "cost": cost_plan(settings, d, cold, rates),
        "schedule": schedule_plan(settings, d, rates=rates),
        # What a promotion into this environment must measure (infra/control/objectives.py, infra/perf/gate.py).
        "gate": objectives.to_plan(gate_for(settings, r.name), r.target_concurrency),
        # The environment's sentinel, the same in every recipe's plan: it probes them all (docs/sentinel.md).
        "sentinel": sentinel_plan(settings, rates),
        "cold_start": cold,
        # The compile job's CPU request and timeout, derived from measured compile times (infra/runtime/spec.py).
        "compile_job": spec.compile_budget(d).to_data(),
        "warnings": warnings_for(settings, d, cold),
    }


def to_json(plans: list[dict]) -> str:
    return json.dumps(plans, indent=2, sort_keys=True)


LABEL_WIDTH = 15  # the plain text's first column: "Standing cost" and a space


# What `invoke plan` shows without --full: where it deploys, on what, what it costs and takes, the gate, the cold
# start in one line, and every warning. --full adds the image, commands, environment, secrets, jobs, each cost part's
# source, the schedule's triggers, the objectives and each cold-start phase with where it was measured.
COMPACT = ("Modal", "Model", "Draft model", "GPU", "Regions", "Scaling", "Endpoint", "Cost", "Standing cost",
           "First pipeline", "Gate", "Schedule", "Sentinel", "Cold start", "WARNING")
FULL_HINT = ("`invoke plan --full` adds the image, launch and compile commands, jobs, rates, objectives, the "
             "schedule's triggers and each cold-start phase")


def render(plans: list[dict], full: bool = True) -> str:
    """The human view as plain text (what a pipe, a file or CI gets; a terminal gets stages/show.py's tables):
    one block per recipe, knobs named as in settings and Modal, read from the spec; `full=False` is the compact
    view `invoke plan` prints by default."""
    lines: list[str] = []
    for p in plans:
        lines.append(title(p))
        lines += [f"{label:<{LABEL_WIDTH}}{value}".rstrip() for label, value, _kind in rows(p, full)]
        lines.append("")
    lines.append(credentials_line())
    return "\n".join(lines)


def title(p: dict) -> str:
    return f"== {p['env']} / {p['recipe']} " + "=" * max(0, 60 - len(p["env"]) - len(p["recipe"]))


def credentials_line() -> str:
    return "Local credentials: " + ", ".join(f"{k} {v}" for k, v in local_credentials().items())


def rows(p: dict, full: bool = True) -> list[tuple[str, str, str]]:
    """One recipe's plan as (label, value, kind) rows, kind "warning" for what needs attention; a continuation
    row has an empty label. Without `full`, the COMPACT rows alone, each on its first line."""
    out = _rows(p)
    if full:
        return out
    cold = p["cold_start"]
    compact = []
    for label, value, kind in out:
        if label == "Cold start":
            value = (f"~{cold['estimate_seconds']:g} s{'' if cold['complete'] else '+'} with the compile caches, "
                     f"~{cold['uncached_estimate_seconds']:g} s without them")
            value += "".join(f"; measured with this model: ready in {m['seconds']:.1f} s without caches"
                             for m in cold["measured_starts"])
        if label in COMPACT:
            compact.append((label, value, kind))
    return [*compact, ("", f"({FULL_HINT})", "")]


def _rows(p: dict) -> list[tuple[str, str, str]]:
    lines: list[str] = []
    m = p["modal"]
    server, jobs = m["server"], m["jobs"]
    lines += [
        f"Modal          environment {p['modal_environment']}, app {m['app']['name']} (server '{server['name']}'), "
        f"jobs app {m['jobs_app']['name']}",
        f"Image          {_image(server['image'])} (SGLang {p['sglang_version']})",
    ]
    for label, mdl in (("Model", p["model"]), ("Draft model", p["draft_model"])):
        if mdl:
            pin = "pinned" if mdl["pinned"] else "UNPINNED"
            res = f", resolved {mdl['resolved_commit'][:12]}" if mdl["resolved_commit"] and not mdl["pinned"] else ""
            lines.append(f"{label:<15}{mdl['id']} @ {mdl['revision'] or '(unset)'} [{pin}{res}]")
    for mount, v in server["volumes"].items():
        lines.append(f"Volume         {v['name']} -> {mount} (Modal environment {v['environment']})")
    lines += [
        f"GPU            {server['gpu']} (tensor parallel {p['tensor_parallel']})",
        f"Regions        compute {server['compute_region'] or 'any'}, routing (proxy) {server['routing_region']}",
        f"Scaling        min_containers {server['min_containers']}, max_containers "
        f"{server['max_containers'] or 'unbounded'}, target_concurrency {server['target_concurrency']}",
        f"Timeouts       startup_timeout {server['startup_timeout']} s, readiness_timeout {p['readiness_timeout']} s, "
        f"exit_grace_period {server['exit_grace_period']} s",
        f"Endpoint       {'PUBLIC (no auth)' if p['endpoint']['public'] else 'private: ' + p['endpoint']['auth']}",
        f"Launch         {' '.join(p['launch_command'])}",
        f"Kernels        {' '.join(p['compile_command'])}",
        f"Readiness      {p['readiness']['health']}; then {p['readiness']['warmup']['requests']} warm-up requests "
        f"({p['readiness']['warmup']['prompt']!r}, max_tokens {p['readiness']['warmup']['max_tokens']}, "
        f"{p['readiness']['warmup']['timeout']:g} s timeout"
        + (", with the packaged image)" if p["readiness"]["warmup"]["image"] else ")"),
        "Server env     " + _env(server["env"]),
        f"Secrets        server: {_secrets(server['secrets'])}; download job: "
        f"{_secrets(jobs['download_weights']['secrets'])}",
    ]
    if server.get("enable_memory_snapshot"):
        lines.append("Snapshots      enable_memory_snapshot=True, experimental enable_gpu_snapshot (alpha)")
    for name, job in jobs.items():
        lines.append(f"Job            {name}: {_image(job['image'])}, {job.get('gpu') or 'no GPU'}, timeout "
                     f"{job['timeout']} s")
    lines += _cost_lines(p["cost"], p["schedule"], p["compile_job"])
    lines += _schedule_lines(p["schedule"])
    lines += _gate(p["gate"])
    lines += _sentinel(p.get("sentinel"))
    cold = p["cold_start"]
    parts = ", ".join(
        f"{name} {'?' if part['seconds'] is None else format(part['seconds'], 'g') + ' s'}" for name,
        part in cold["parts"].items()
    )
    state = "compile caches recorded here" if cold["compiled"] else "with the compile caches `invoke compile` produces"
    lines.append(f"Cold start     ~{cold['estimate_seconds']:g} s{'' if cold['complete'] else '+'} {state} ({parts})")
    compiled_parts = ", ".join(f"{name} {part['uncached_seconds']:g} s" for name, part in cold["parts"].items()
                               if part.get("uncached_seconds", part["seconds"]) != part["seconds"])
    over = cold["uncached_estimate_seconds"] > p["modal"]["server"]["startup_timeout"]
    lines.append(f"               without them: ~{cold['uncached_estimate_seconds']:g} s ({compiled_parts})"
                 + (f", beyond startup_timeout {p['modal']['server']['startup_timeout']} s: deploy after "
                    "`invoke compile` (the pipeline does)" if over and not cold["compiled"] else ""))
    lines.append(f"               figures measured on {cold['profile']['measured_on']} ({cold['profile']['source']}); "
                 f"piecewise CUDA graphs {cold['piecewise_graphs']}")
    lines += [f"               note: {c}" for c in cold["caveats"]]
    lines += [f"               measured with this model: ready in {m['seconds']:.1f} s (healthy "
              f"{m['healthy_seconds']:.1f} s, warm-ups "
              f"{', '.join(format(w, '.1f') + ' s' for w in m['warmup_seconds'])}): {m['what']}; {m['measured_on']} "
              f"({m['source']})" for m in cold["measured_starts"]]
    if "snapshot_restore_seconds" in cold:
        lines.append(f"               with a snapshot restore: ~{cold['snapshot_restore_seconds']:g} s")
    for w in p["warnings"]:
        lines.append(f"WARNING        {w}")
    return [(line[:LABEL_WIDTH].strip(), line[LABEL_WIDTH:], "warning" if line.startswith("WARNING") else "")
            for line in lines]


def _schedule_lines(plan: dict | None, now: datetime | None = None) -> list[str]:
    """The schedule's windows, what holds now and next, and its cost beside always-warm."""
    if not plan:
        return []
    now = now or datetime.now(UTC)
    windows = [Window.model_validate({k: v for k, v in w.items() if k not in ("opens", "closes")}, context=RESOLVED)
               for w in plan["windows"]]
    base = Scaling.model_validate(plan["base"], context=RESOLVED)
    lines = []
    for w in plan["windows"]:
        floor = schedule.Floor(w["min_containers"], w["max_containers"] if w["max_containers"] is not None
                               else base.max_containers, w["buffer_containers"]).describe()
        lines.append(f"Schedule       {w['name']} ({w['timezone']}): opens {w['opens'].lower()}, closes "
                     f"{w['closes'].lower()}: {floor}")
    lines.append("               triggers: " + "; ".join(f"{t['cron']} ({t['timezone']})" for t in plan["triggers"])
                 + f"; overlaps: {plan['overlaps']}")
    now_floor = schedule.floor_at(now, windows, base)
    lines.append(f"               in force now: {now_floor.describe()} ({now_floor.cause})")
    if upcoming := schedule.next_change(now, windows, base):
        lines.append(f"               next change: {upcoming.describe()}")
    c = plan["cost"]
    for label, key in (("per week", "per_week"), ("per 30 days", "per_30_days")):
        s, a = c[key]["scheduled"], c[key]["always_warm"]
        lines.append(f"               warm cost {label}: {s['gpu_hours']:g} GPU-hours ${s['usd']:,.2f} on schedule, "
                     f"{a['gpu_hours']:g} GPU-hours ${a['usd']:,.2f} always warm at {c['peak_min_containers']} "
                     f"replica(s)")
    return lines
def _cost_lines(c: dict, scheduled: dict | None, sized: dict) -> list[str]:
    """A replica's price part by part with the multiplier, each figure's source, and what warm replicas and jobs cost:
    with a schedule, what stands warm is the schedule's, so that is the standing cost shown."""
    st = c["standing"]
    overrides = "; ".join(f"{res} ${o['usd_per_hour']:g}/h from {o['setting']}" for res,
                          o in c["rates"]["overrides"].items())
    lines = [
        f"Cost           per replica: {costs.describe(c['replica'])}",
        f"               rates: {c['rates']['source']}" + (f"; overridden: {overrides}" if overrides else "")
        + f"; region multiplier: {c['replica']['region']['source']}",
    ]
    if scheduled:
        month = scheduled["cost"]["per_30_days"]["scheduled"]
        lines.append(f"Standing cost  on the schedule: {month['gpu_hours']:g} GPU-hours and ${month['usd']:,.2f} per "
                     f"30 days (outside its windows {st['warm_replicas']} warm replica(s), "
                     f"${st['usd_per_hour']:,.2f}/h)")
    else:
        lines.append(f"Standing cost  {st['warm_replicas']} warm replica(s) = ${st['usd_per_hour']:,.2f}/h, "
                     f"{st['gpu_hours_per_30_days']:g} GPU-hours and ${st['usd_per_30_days']:,.2f} per 30 days")
    first = c["first_pipeline"]
    lines.append(f"First pipeline at most ~{first['seconds'] / 60:.0f} min ≈ ${first['usd']:,.2f}: "
                 + ", ".join(f"{name} ~{part['seconds'] / 60:.0f} min ${part['usd']:,.2f}"
                             for name, part in first["parts"].items()) + f" ({first['basis']})")
    for label, key in (("Compile job", "compile_job"), ("Gate measure", "gate_measurement")):
        if (j := c[key]) is not None:
            shown = f"~{j['seconds']:g} s ≈ ${j['usd']:,.2f}" if j["usd"] is not None else "unknown"
            lines.append(f"{label:<15}{shown} at ${j['usd_per_hour']:,.2f}/h ({j['container']}"
                         + (f", × {j['region_multiplier']:g}" if j["region_multiplier"] != 1
                            else ", no region multiplier")
                         + f"): {j['basis']}")
        if key == "compile_job":  # what the job asks for and how long it may run, from the measured compile
            lines.append(f"               sized: cpu {sized['cpu']:g}, timeout {sized['timeout_seconds']} s "
                         f"(compile_deep_gemm killed after {sized['deep_gemm_kill_after_seconds']} s): "
                         f"{sized['basis']}")
    if g := c.get("gpu_test"):
        lines.append("GPU test       " + ", ".join(f"{shape} ~{j['seconds'] / 60:.0f} min ${j['usd']:,.2f}"
                                                   for shape, j in g["shapes"].items())
                     + f"; at most ${g['usd_at_timeout']:,.2f} (timeout {g['timeout_seconds']} s): "
                       "invoke gpu-test --shape")
    return lines


def _sentinel(plan: dict | None) -> list[str]:
    if plan is None:
        return ["Sentinel       off (sentinel.enabled = false): nothing probes this environment"]
    from infra.control import watching

    first, *rest = watching.describe_cost(plan["cost"])
    return [f"Sentinel       {first}", *(f"               {line.strip()}" for line in rest)]


def _gate(gate: dict) -> list[str]:
    first, *rest = objectives.describe_plan(gate)
    return [f"Gate           {first.removeprefix('gate: ')}", *(f"               {line.strip()}" for line in rest)]


def _image(layers: list[dict]) -> str:
    """'lmsysorg/sglang:... + entrypoint [] + uv_pip_install huggingface-hub==0.36.0 + env (4) + infra'."""
    out = []
    for layer in layers:
        args, kwargs = layer["args"], layer["kwargs"]
        if layer["method"] == "env":
            out.append("env " + " ".join(f"{k}={v}" for k, v in args[0].items()))
        elif layer["method"] in ("from_registry", "add_local_python_source"):
            out.append(" ".join(args) + (" (mounted)" if layer["method"] == "add_local_python_source" else ""))
        else:
            words = [a if isinstance(a, str) else json.dumps(a) for a in args] + [f"{k}={v}" for k, v in kwargs.items()]
            out.append(" ".join([layer["method"], *words]))
    return " + ".join(out)


def _env(env: dict[str, str]) -> str:
    shown = {k: (f"<this deployment, {len(v)} bytes of JSON>" if k == DEPLOYMENT_VARIABLE else v) for k,
             v in env.items()}
    return " ".join(f"{k}={v}" for k, v in shown.items())


def _secrets(secrets: list[dict]) -> str:
    return ", ".join(f"Modal Secret {s['name']} ({s['environment']})" for s in secrets) or "none"
