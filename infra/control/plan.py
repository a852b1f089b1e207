"""`invoke plan`: what would be deployed, resolved, offline, for a person (text) and for CI (stable JSON).

The plan is a pure function of the settings, the recipes and what this machine's
stage state recorded (infra/control/state.py); it needs neither network nor Modal
credentials. Its JSON has no timestamps and sorted keys, so CI can diff it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from infra.control import cold_start_figures as figures
from infra.control import costs, objectives, revisions, sglang_flags, watching
from infra.control import plan_record as rec
from infra.control.resolve import gate_for, resolve
from infra.control.settings import Settings
from infra.control.state import StageState
from infra.runtime import compile_cache, kernels, schedule, sglang_args, spec
from infra.runtime.deployment import Deployment, Scaling
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


def first_pipeline(d: Deployment, cold: rec.ColdStartEstimate, rates: costs.Rates) -> rec.FirstPipeline:
    """What this recipe's first `invoke pipeline` takes at most, in time and money: the bound of
    first_pipeline_seconds, each paid part priced at its container's rate (the download job at the slow Hub rate,
    the compile job to its timeout, the smoke test's cold start on a replica). Image builds are not priced."""
    jobs = rec.JobFunctions.model_validate(spec.jobs(d))
    parts = {
        "download": costs.job(costs.price(jobs.download_weights.container(), rates), round(_download_seconds(d), 1),
                              f"{d.recipe.model_size_gb + d.recipe.draft_size_gb:g} GB of weights at a slow Hub's "
                              f"{SLOW_DOWNLOAD_GBPS:g} Gbps"),
        "compile": costs.job(costs.price(jobs.compile_kernels.container(), rates),
                             spec.compile_budget(d).timeout_seconds, "the compile job to its timeout"),
        "smoke": costs.job(replica_cost(d, rates), cold.estimate_seconds, "the smoke test's cold start on a replica"),
    }
    return rec.FirstPipeline(
        seconds=first_pipeline_seconds([d]), usd=round(sum(p.usd for p in parts.values()), 2), parts=parts,
        basis=f"an upper bound: the parts above, plus {BUILD_DEPLOY_SMOKE_SECONDS // 60} min for image builds (not "
              "priced), deploys and the smoke request")


def gpu_test_cost(d: Deployment, rates: costs.Rates) -> rec.GpuTestCost:
    """One `invoke gpu-test` run per shape: its Function's container (the recipe's GPUs) for the shape's measured
    time, and the most a run can cost (to the Function's timeout)."""
    hourly = costs.price(rec.JobFunctions.model_validate(spec.jobs(d)).gpu_test.container(), rates)
    timeout = spec.gpu_test_timeout(d)
    return rec.GpuTestCost(shapes={shape: costs.job(hourly, seconds, f"the {shape} suite's measured time")
                                   for shape, seconds in spec.gpu_test_seconds(d).items()},
                           timeout_seconds=timeout, usd_at_timeout=costs.job(hourly, timeout, "timeout").usd)


def replica_cost(d: Deployment, rates: costs.Rates) -> costs.Price:
    """One server container per hour, priced from the very options Modal receives (infra/runtime/spec.py)."""
    return costs.price(costs.Container.of(spec.server(d)), rates)


def cost_plan(settings: Settings, d: Deployment, cold: rec.ColdStartEstimate,
              rates: costs.Rates | None = None) -> rec.CostPlan:
    """What this deployment costs: a replica per hour (its parts, the region multiplier, each rate's source), the
    warm replicas' standing cost, one compile job, and the promotion gate's measurement."""
    rates = rates or costs.rates_for(settings.costs)
    replica = replica_cost(d, rates)
    compile_job = costs.price(rec.JobFunctions.model_validate(spec.jobs(d)).compile_kernels.container(), rates)
    gate, measurement = gate_for(settings, d.recipe.name), None
    if gate.enabled:
        w, target = d.recipe.gate_workload, d.recipe.target_concurrency
        targets = objectives.resolve(gate, target)
        seconds = costs.gate_seconds(targets, objectives.levels(targets, target), requests=w.requests,
                                     warmup_rounds=w.warmup_rounds, max_tokens=w.max_tokens)
        measurement = costs.job(
            replica, seconds, f"{w.requests} requests per level at the objectives' TTFT and TPOT limits, on the "
            f"source environment's replica (priced at this one's); plus a cold start where the source keeps none warm"
            if seconds is not None else "unknown: a measured level has no ttft_p90_ms and tpot_p50_ms objective")
    return rec.CostPlan(
        rates=rates.shown(), replica=replica, standing=costs.standing(replica, d.scaling.min_containers),
        compile_job=costs.job(compile_job, cold.uncached_estimate_seconds,
                              "a start that compiles every kernel (the cold start without the compile caches), "
                              "once per change of the kernel key"),
        gate_measurement=measurement, first_pipeline=first_pipeline(d, cold, rates), gpu_test=gpu_test_cost(d, rates))


def cold_start(settings: Settings, d: Deployment, state: StageState) -> rec.ColdStartEstimate:
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
    image_gb = cs.image_size_gb.get(r.sglang_image)
    pull = (rec.ColdPhase(seconds=round(image_gb / cs.image_pull_gbps, 1),
                          basis=f"{image_gb} GB at {cs.image_pull_gbps} GB/s") if image_gb
            else rec.ColdPhase(seconds=None, basis="image size unknown (set cold_start.image_size_gb)"))
    parts: dict[str, rec.ColdPhase] = {"image_pull": pull}
    restore = profile.restore
    parts["compile_cache_restore"] = rec.ColdPhase(
        seconds=restore.cached, uncached_seconds=0.0, cached=compiled,
        basis=f"copy of this key's tree to local disk (measured {restore.cached:g} s for {profile.restored_mb:g} "
              f"MB); cached: {when}")
    if ("--load-format", "dummy") in r.extra_flags:
        parts["weights_read"] = rec.ColdPhase(seconds=0.0, basis="--load-format dummy: random weights, nothing read "
                                                                 "(their 0.2 s of initialisation is in the measured "
                                                                 "phases)")
    else:
        if downloads := revisions.recorded_downloads(state):
            size_gb = sum(item.size_bytes for item in downloads) / 1e9
            basis = "sizes recorded by the download stage"
        else:
            size_gb = r.model_size_gb + r.draft_size_gb
            basis = "nominal sizes (run `invoke download` to record real ones)"
        parts["weights_read"] = rec.ColdPhase(
            seconds=round(size_gb / cs.volume_read_gbps, 1),
            basis=f"{size_gb:.1f} GB from the Volume at {cs.volume_read_gbps} GB/s; {basis}; not measured (the "
                  "measured starts read dummy weights)")
    piecewise, why = piecewise_graphs(d)
    for name, figure in profile.phases:
        if ((name == profile.piecewise_phase and not piecewise) or (name in profile.draft_phases and not r.speculative)
                or (name == profile.skipped_warmup_phase and "--skip-server-warmup" in flags)):
            continue
        parts[name] = _measured(figure, compiled, when, profile)
    if r.deep_gemm_shapes and profile.deep_gemm_per_shape and compile_cache.deepgemm_enabled(r.image_env):
        per = profile.deep_gemm_per_shape.uncached
        parts["deep_gemm_jit"] = rec.ColdPhase(
            seconds=0.0, uncached_seconds=round(per * r.deep_gemm_shapes, 1), cached=compiled,
            basis=f"DeepGEMM's JIT of {r.deep_gemm_shapes} GEMM shape(s) (the recipe's deep_gemm_shapes) at {per:g} "
                  f"s each, measured by compile_deep_gemm ({profile.measured_on}); loading them is in cuda_graphs; "
                  f"cached: {when}")
    first = profile.first_request
    parts["first_warmup_request"] = (
        _measured(first, compiled, when, profile, "the first speculative decode JIT-compiles without the caches")
        if r.speculative else
        rec.ColdPhase(seconds=first.cached, basis="a warm-up request once compiled (measured with speculative "
                                                  "decoding; nothing measured without it)"))
    if more := r.warmup.count - 1:
        w = profile.warmup_request
        parts["warmup"] = rec.ColdPhase(
            seconds=round(more * w.cached, 1), uncached_seconds=round(more * w.uncached, 1),
            basis=f"{more} more request(s) of {r.warmup.max_tokens} tokens at {w.cached:g} s each "
                  f"({profile.measured_on}; bounded by {r.warmup.timeout:g} s each)")
    known = {k: p for k, p in parts.items() if p.seconds is not None}
    launch = [p for k, p in known.items() if k not in BEFORE_LAUNCH]
    snapshot = {}
    if d.startup.gpu_snapshot:
        resume = figures.SNAPSHOT_RESUME.cached
        snapshot = {"snapshot_restore_seconds": round(figures.MODAL_SNAPSHOT_RESTORE_SECONDS + resume
                                                      + (pull.seconds or 0), 1),
                    "note": "a GPU snapshot restore replaces boot, weight loading, kernels, CUDA graphs and warm-up: "
                            f"SGLang takes its memory back and answers once in {resume:g} s (measured on the H200), "
                            f"after Modal restores the container (assumed {figures.MODAL_SNAPSHOT_RESTORE_SECONDS:g} "
                            "s, not measured)"}
    return rec.ColdStartEstimate(
        parts=parts, estimate_seconds=_total(known.values()), uncached_estimate_seconds=_total(known.values(), True),
        launch_to_ready_seconds=_total(launch), uncached_launch_to_ready_seconds=_total(launch, True),
        compiled=compiled, complete=len(known) == len(parts),
        profile=rec.ProfileShown(name=profile.name, measured_on=profile.measured_on, source=profile.source,
                                 measured_with_this_model=measured_here),
        piecewise_graphs=why, caveats=caveats,
        measured_starts=whole, **snapshot)


def _total(parts, uncached: bool = False) -> float:
    return round(sum(p.uncached if uncached else p.seconds for p in parts), 1)


def _measured(figure, compiled: bool, when: str, profile, what: str = "") -> rec.ColdPhase:
    basis = (f"{what + '; ' if what else ''}measured on {profile.measured_on} ({profile.source}: {figure.cached_at} / "
             f"{figure.uncached_at})")
    if figure.cached == figure.uncached:
        return rec.ColdPhase(seconds=figure.cached, uncached_seconds=figure.uncached, basis=basis)
    return rec.ColdPhase(seconds=figure.cached, uncached_seconds=figure.uncached, cached=compiled,
                         basis=f"{basis}; cached: {when}")


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


def warnings_for(settings: Settings, d: Deployment, cold: rec.ColdStartEstimate) -> list[str]:
    out = [f"unpinned: {item}; `invoke download` resolves and records a commit" for item in d.recipe.unpinned()]
    if not d.auth.proxy_auth:
        out.append("endpoint is public: anyone with the URL can call it (auth.proxy_auth = false)")
    budget = d.recipe.readiness_timeout + d.recipe.warmup_budget
    if d.recipe.startup_timeout < budget:  # validation refuses this; kept for plans of hand-built deployments
        out.append(f"startup_timeout {d.recipe.startup_timeout} s is shorter than the readiness budget {budget:g} s")
    expected = cold.estimate_seconds * settings.cold_start.margin
    if not d.startup.gpu_snapshot and d.recipe.startup_timeout < expected:
        out.append(
            f"startup_timeout {d.recipe.startup_timeout} s is below the estimated cold start "
            f"{cold.estimate_seconds:g} s × margin {settings.cold_start.margin:g}: a cold container may be killed "
            "before it is ready"
        )
    if settings.release.guarded and d.scaling.min_containers == 0 and not any(
            w.min_containers for w in d.scaling.schedule):
        out.append(f"production environment '{d.env}' has min_containers = 0: every first request pays the full cold "
                   f"start (~{cold.estimate_seconds:g} s)")
    if d.startup.gpu_snapshot:
        out.append("GPU memory snapshots are alpha on Modal (startup.gpu_snapshot)")
    out += sglang_flags.deprecation_warnings(d)
    return out


def schedule_plan(settings: Settings, d: Deployment, now: datetime | None = None,
                  rates: costs.Rates | None = None) -> rec.SchedulePlan | None:
    """The warm-capacity schedule: its windows, the cron triggers that apply it, and what it costs.

    The cost covers the week (and the 30 days) from the Monday of this week in the first
    window's zone: the same figures all week, so CI's plan diffs stay quiet, and exact
    across a daylight-saving change. What is in force *now* is left to `render`.
    """
    windows = d.scaling.schedule
    if not windows:
        return None
    start = schedule.start_of_week(now or datetime.now(UTC), windows[0].timezone)
    return rec.SchedulePlan(
        windows=[rec.PlannedWindow.model_validate(w.model_dump() | {"opens": schedule.explain(w.start),
                                                                    "closes": schedule.explain(w.end)},
                                                  context=RESOLVED) for w in windows],
        overlaps="the highest floor wins, field by field",
        triggers=[rec.Trigger(cron=b.cron, timezone=b.timezone, events=list(b.events))
                  for b in schedule.boundaries(windows)],
        base=rec.ScheduleBase(min_containers=d.scaling.min_containers, max_containers=d.scaling.max_containers,
                              buffer_containers=d.scaling.buffer_containers),
        cost=costs.scheduled(replica_cost(d, rates or costs.rates_for(settings.costs)), windows, d.scaling, start))


def sentinel_plan(settings: Settings, rates: costs.Rates) -> rec.SentinelPlan | None:
    """The environment's sentinel (infra/control/watching.py), when it is enabled: its app's options and its cost."""
    if not settings.sentinel.enabled:
        return None
    served = [resolve(settings, name) for name in settings.serves]
    s = watching.spec_for(settings, served)
    return rec.SentinelPlan(modal=spec.sentinel_app(s),
                            cost=watching.cost(s, rates, [(d, replica_cost(d, rates)) for d in served]))


def plan_for(settings: Settings, d: Deployment, state: StageState | None = None,
             commit: str | None = None) -> rec.DeploymentPlan:
    """`commit`: the git tag a deploy from this checkout would send (infra/control/gitinfo.py `GitInfo.tag`), so the
    app's tags here are the exact ones deploy sends; None outside a git checkout."""
    state = state or StageState(d.env, d.recipe.name)
    resolved = revisions.recorded(state)
    cold = cold_start(settings, d, state)
    rates = costs.rates_for(settings.costs)
    r = d.recipe

    def model(repo: str | None, revision: str | None) -> rec.ModelPin | None:
        return None if repo is None else rec.ModelPin(id=repo, revision=revision,
                                                      pinned=bool(COMMIT_RE.match(revision or "")),
                                                      resolved_commit=resolved.get(repo))

    return rec.DeploymentPlan(
        env=d.env, recipe=r.name, modal_environment=d.modal.environment, sglang_version=r.sglang_version,
        modal=rec.ModalSpec.model_validate(spec.modal_spec(d, commit)),
        model=model(r.model, r.model_revision), draft_model=model(r.draft_model, r.draft_revision),
        tensor_parallel=r.tp_size, readiness_timeout=r.readiness_timeout,
        launch_command=sglang_args.launch_command(d), compile_command=sglang_args.compile_command(d),
        readiness=rec.ReadinessShown(
            health=f"GET /health every {r.health_poll_interval:g} s until healthy",
            warmup=rec.WarmupShown(requests=r.warmup.count, prompt=r.warmup.prompt, max_tokens=r.warmup.max_tokens,
                                   timeout=r.warmup.timeout,
                                   image="packaged, inline data URL" if r.warmup.with_image else None)),
        endpoint=rec.Endpoint(public=not d.auth.proxy_auth,
                              auth="Modal proxy auth: send Modal-Key / Modal-Secret" if d.auth.proxy_auth else "none"),
        cost=cost_plan(settings, d, cold, rates), schedule=schedule_plan(settings, d, rates=rates),
        gate=objectives.to_plan(gate_for(settings, r.name), r.target_concurrency),
        sentinel=sentinel_plan(settings, rates), cold_start=cold, compile_job=spec.compile_budget(d),
        warnings=warnings_for(settings, d, cold))


def to_json(plans: list[rec.DeploymentPlan]) -> str:
    return json.dumps([p.to_data() for p in plans], indent=2, sort_keys=True)


LABEL_WIDTH = 15  # the plain text's first column: "Standing cost" and a space


# What `invoke plan` shows without --full: where it deploys, on what, what it costs and takes, the gate, the cold
# start in one line, and every warning. --full adds the image, commands, environment, secrets, jobs, each cost part's
# source, the schedule's triggers, the objectives and each cold-start phase with where it was measured.
COMPACT = ("Modal", "Model", "Draft model", "GPU", "Regions", "Scaling", "Endpoint", "Cost", "Standing cost",
           "First pipeline", "Gate", "Schedule", "Sentinel", "Cold start", "WARNING")
FULL_HINT = ("`invoke plan --full` adds the image, launch and compile commands, jobs, rates, objectives, the "
             "schedule's triggers and each cold-start phase")


def render(plans: list[rec.DeploymentPlan], full: bool = True) -> str:
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


def title(p: rec.DeploymentPlan) -> str:
    return f"== {p.env} / {p.recipe} " + "=" * max(0, 60 - len(p.env) - len(p.recipe))


def credentials_line() -> str:
    return "Local credentials: " + ", ".join(f"{k} {v}" for k, v in local_credentials().items())


def rows(p: rec.DeploymentPlan, full: bool = True) -> list[tuple[str, str, str]]:
    """One recipe's plan as (label, value, kind) rows, kind "warning" for what needs attention; a continuation
    row has an empty label. Without `full`, the COMPACT rows alone, each on its first line."""
    out = _rows(p)
    if full:
        return out
    cold = p.cold_start
    compact = []
    for label, value, kind in out:
        if label == "Cold start":
            value = (f"~{cold.estimate_seconds:g} s{'' if cold.complete else '+'} with the compile caches, "
                     f"~{cold.uncached_estimate_seconds:g} s without them")
            value += "".join(f"; measured with this model: ready in {m.seconds:.1f} s without caches"
                             for m in cold.measured_starts)
        if label in COMPACT:
            compact.append((label, value, kind))
    return [*compact, ("", f"({FULL_HINT})", "")]


def _rows(p: rec.DeploymentPlan) -> list[tuple[str, str, str]]:
    m = p.modal
    server, jobs = m.server, m.jobs
    lines = [
        f"Modal          environment {p.modal_environment}, app {m.app.name} (server '{server.name}'), "
        f"jobs app {m.jobs_app.name}",
        f"Image          {server.image_text()} (SGLang {p.sglang_version})",
    ]
    for label, mdl in (("Model", p.model), ("Draft model", p.draft_model)):
        if mdl:
            pin = "pinned" if mdl.pinned else "UNPINNED"
            res = f", resolved {mdl.resolved_commit[:12]}" if mdl.resolved_commit and not mdl.pinned else ""
            lines.append(f"{label:<15}{mdl.id} @ {mdl.revision or '(unset)'} [{pin}{res}]")
    for mount, v in server.volumes.items():
        lines.append(f"Volume         {v.name} -> {mount} (Modal environment {v.environment})")
    warmup = p.readiness.warmup
    lines += [
        f"GPU            {server.gpu} (tensor parallel {p.tensor_parallel})",
        f"Regions        compute {server.compute_region or 'any'}, routing (proxy) {server.routing_region}",
        f"Scaling        min_containers {server.min_containers}, max_containers "
        f"{server.max_containers or 'unbounded'}, target_concurrency {server.target_concurrency}",
        f"Timeouts       startup_timeout {server.startup_timeout} s, readiness_timeout {p.readiness_timeout} s, "
        f"exit_grace_period {server.exit_grace_period} s",
        f"Endpoint       {'PUBLIC (no auth)' if p.endpoint.public else 'private: ' + p.endpoint.auth}",
        f"Launch         {' '.join(p.launch_command)}",
        f"Kernels        {' '.join(p.compile_command)}",
        f"Readiness      {p.readiness.health}; then {warmup.requests} warm-up requests ({warmup.prompt!r}, max_tokens "
        f"{warmup.max_tokens}, {warmup.timeout:g} s timeout" + (", with the packaged image)" if warmup.image else ")"),
        "Server env     " + server.env_text(),
        f"Secrets        server: {server.secrets_text()}; download job: {jobs.download_weights.secrets_text()}",
    ]
    if server.enable_memory_snapshot:
        lines.append("Snapshots      enable_memory_snapshot=True, experimental enable_gpu_snapshot (alpha)")
    for name, job in jobs:
        lines.append(f"Job            {name}: {job.image_text()}, {job.gpu or 'no GPU'}, timeout {job.timeout} s")
    lines += _cost_lines(p.cost, p.schedule, p.compile_job)
    lines += _schedule_lines(p.schedule)
    lines += _labelled("Gate", [line.removeprefix("gate: ") for line in objectives.describe(p.gate)])
    lines += (_labelled("Sentinel", watching.describe_cost(p.sentinel.cost)) if p.sentinel
              else ["Sentinel       off (sentinel.enabled = false): nothing probes this environment"])
    lines += _cold_start_lines(p.cold_start, server.startup_timeout)
    lines += [f"WARNING        {w}" for w in p.warnings]
    return [(line[:LABEL_WIDTH].strip(), line[LABEL_WIDTH:], "warning" if line.startswith("WARNING") else "")
            for line in lines]


def _cold_start_lines(cold: rec.ColdStartEstimate, startup_timeout: float) -> list[str]:
    parts = ", ".join(f"{name} {'?' if part.seconds is None else format(part.seconds, 'g') + ' s'}"
                      for name, part in cold.parts.items())
    state = "compile caches recorded here" if cold.compiled else "with the compile caches `invoke compile` produces"
    compiled_parts = ", ".join(f"{name} {part.uncached:g} s" for name, part in cold.parts.items()
                               if part.uncached != part.seconds)
    over = cold.uncached_estimate_seconds > startup_timeout and not cold.compiled
    lines = [f"Cold start     ~{cold.estimate_seconds:g} s{'' if cold.complete else '+'} {state} ({parts})",
             f"               without them: ~{cold.uncached_estimate_seconds:g} s ({compiled_parts})"
             + (f", beyond startup_timeout {startup_timeout} s: deploy after `invoke compile` (the pipeline does)"
                if over else ""),
             f"               figures measured on {cold.profile.measured_on} ({cold.profile.source}); piecewise CUDA "
             f"graphs {cold.piecewise_graphs}"]
    lines += [f"               note: {c}" for c in cold.caveats]
    lines += [f"               measured with this model: ready in {m.seconds:.1f} s (healthy {m.healthy_seconds:.1f} "
              f"s, warm-ups {', '.join(format(w, '.1f') + ' s' for w in m.warmup_seconds)}): {m.what}; "
              f"{m.measured_on} ({m.source})" for m in cold.measured_starts]
    if cold.snapshot_restore_seconds is not None:
        lines.append(f"               with a snapshot restore: ~{cold.snapshot_restore_seconds:g} s")
    return lines


def _schedule_lines(plan: rec.SchedulePlan | None, now: datetime | None = None) -> list[str]:
    """The schedule's windows, what holds now and next, and its cost beside always-warm."""
    if not plan:
        return []
    now = now or datetime.now(UTC)
    base = Scaling.model_validate(plan.base.model_dump(), context=RESOLVED)
    lines = [f"Schedule       {w.name} ({w.timezone}): opens {w.opens.lower()}, closes {w.closes.lower()}: "
             + schedule.Floor(w.min_containers, base.max_containers if w.max_containers is None else w.max_containers,
                              w.buffer_containers).describe() for w in plan.windows]
    lines.append("               triggers: " + "; ".join(f"{t.cron} ({t.timezone})" for t in plan.triggers)
                 + f"; overlaps: {plan.overlaps}")
    now_floor = schedule.floor_at(now, plan.windows, base)
    lines.append(f"               in force now: {now_floor.describe()} ({now_floor.cause})")
    if upcoming := schedule.next_change(now, plan.windows, base):
        lines.append(f"               next change: {upcoming.describe()}")
    c = plan.cost
    for label, period in (("per week", c.per_week), ("per 30 days", c.per_30_days)):
        s, a = period.scheduled, period.always_warm
        lines.append(f"               warm cost {label}: {s.gpu_hours:g} GPU-hours ${s.usd:,.2f} on schedule, "
                     f"{a.gpu_hours:g} GPU-hours ${a.usd:,.2f} always warm at {c.peak_min_containers} replica(s)")
    return lines


def _cost_lines(c: rec.CostPlan, scheduled: rec.SchedulePlan | None, sized: spec.CompileBudget) -> list[str]:
    """A replica's price part by part with the multiplier, each figure's source, and what warm replicas and jobs cost:
    with a schedule, what stands warm is the schedule's, so that is the standing cost shown."""
    st = c.standing
    overrides = "; ".join(f"{res} ${o.usd_per_hour:g}/h from {o.setting}" for res, o in c.rates.overrides.items())
    lines = [
        f"Cost           per replica: {c.replica.describe()}",
        f"               rates: {c.rates.source}" + (f"; overridden: {overrides}" if overrides else "")
        + f"; region multiplier: {c.replica.region.source}",
    ]
    if scheduled:
        month = scheduled.cost.per_30_days.scheduled
        lines.append(f"Standing cost  on the schedule: {month.gpu_hours:g} GPU-hours and ${month.usd:,.2f} per "
                     f"30 days (outside its windows {st.warm_replicas} warm replica(s), ${st.usd_per_hour:,.2f}/h)")
    else:
        lines.append(f"Standing cost  {st.warm_replicas} warm replica(s) = ${st.usd_per_hour:,.2f}/h, "
                     f"{st.gpu_hours_per_30_days:g} GPU-hours and ${st.usd_per_30_days:,.2f} per 30 days")
    first = c.first_pipeline
    lines.append(f"First pipeline at most ~{first.seconds / 60:.0f} min ≈ ${first.usd:,.2f}: "
                 + ", ".join(f"{name} ~{part.seconds / 60:.0f} min ${part.usd:,.2f}"
                             for name, part in first.parts.items()) + f" ({first.basis})")
    lines.append(f"Compile job    {c.compile_job.describe()}")
    # What the job asks for and how long it may run, from the measured compile.
    lines.append(f"               sized: cpu {sized.cpu:g}, timeout {sized.timeout_seconds} s (compile_deep_gemm "
                 f"killed after {sized.deep_gemm_kill_after_seconds} s): {sized.basis}")
    if c.gate_measurement is not None:
        lines.append(f"Gate measure   {c.gate_measurement.describe()}")
    g = c.gpu_test
    lines.append("GPU test       " + ", ".join(f"{shape} ~{j.seconds / 60:.0f} min ${j.usd:,.2f}"
                                               for shape, j in g.shapes.items())
                 + f"; at most ${g.usd_at_timeout:,.2f} (timeout {g.timeout_seconds} s): invoke gpu-test --shape")
    return lines


def _labelled(label: str, lines: list[str]) -> list[str]:
    """Lines under one label: the first beside it, the rest (their own indent dropped) below it."""
    first, *rest = lines
    return [f"{label:<{LABEL_WIDTH}}{first}", *(f"{'':<{LABEL_WIDTH}}{line.strip()}" for line in rest)]
