"""`invoke plan`: what would be deployed, resolved, offline, for a person (text) and for CI (stable JSON).

The plan is a pure function of the settings, the recipes and what this machine's
stage state recorded (infra/state.py); it needs neither network nor Modal
credentials. Its JSON has no timestamps and sorted keys, so CI can diff it.
"""

from __future__ import annotations

import json

from infra import catalog, kernels, sglang_args
from infra.deployment import COMMIT_RE, SERVER_NAME, Deployment
from infra.recipes.base import KERNELS_PATH, HF_CACHE_PATH
from infra.secrets import local_credentials
from infra.settings import Settings
from infra.state import StageState

HOURS_PER_30_DAYS = 24 * 30
DEEPGEMM_COLD_SECONDS = 30 * 60  # "tens of minutes" to JIT-compile on a cold kernel cache
SNAPSHOT_RESTORE_SECONDS = 20.0


def gpu_price(settings: Settings, gpu_type: str) -> float:
    return settings.costs.gpu_hourly_usd.get(gpu_type, catalog.gpu_list_price(gpu_type))


def standing_cost(settings: Settings, d: Deployment) -> dict:
    """What the warm replicas cost even when nobody calls them."""
    price = gpu_price(settings, d.gpu_type)
    warm_gpus = d.min_containers * d.gpu_count
    return {
        "gpu_hourly_usd": price,
        "warm_replicas": d.min_containers,
        "warm_gpus": warm_gpus,
        "gpu_hours_per_hour": warm_gpus,
        "gpu_hours_per_30_days": warm_gpus * HOURS_PER_30_DAYS,
        "usd_per_hour": round(warm_gpus * price, 2),
        "usd_per_30_days": round(warm_gpus * price * HOURS_PER_30_DAYS, 2),
    }


def cold_start(settings: Settings, d: Deployment, state: StageState) -> dict:
    """An estimate of a cold start, part by part, from settings and what the stages recorded."""
    cs = settings.cold_start
    parts: dict[str, dict] = {}
    image_gb = cs.image_size_gb.get(d.sglang_image)
    parts["image_pull"] = (
        {"seconds": round(image_gb / cs.image_pull_gbps, 1), "basis": f"{image_gb} GB at {cs.image_pull_gbps} GB/s"}
        if image_gb
        else {"seconds": None, "basis": "image size unknown (set cold_start.image_size_gb)"}
    )
    download = state.get("download")
    if download:
        size_gb = sum(item["size_bytes"] for item in download["result"]) / 1e9
        basis = "sizes recorded by the download stage"
    else:
        size_gb = d.model_size_gb + d.draft_size_gb
        basis = "nominal sizes (run `invoke download` to record real ones)"
    parts["weights"] = {
        "seconds": round(size_gb / settings.caches.volume_read_gbps, 1),
        "basis": f"{size_gb:.1f} GB from the Volume at {settings.caches.volume_read_gbps} GB/s; {basis}",
    }
    compiled = state.is_current("compile", kernels.kernel_fingerprint(d))
    parts["deepgemm"] = (
        {"seconds": 5.0, "basis": "kernel cache matches (compile marker recorded here)"}
        if compiled
        else {"seconds": DEEPGEMM_COLD_SECONDS, "basis": "not known to be compiled: tens of minutes of JIT (run `invoke compile`)"}
    )
    parts["server_boot"] = {"seconds": cs.server_boot_seconds, "basis": "process start, imports, NCCL (cold_start.server_boot_seconds)"}
    parts["cuda_graphs"] = {"seconds": cs.cuda_graph_seconds, "basis": "capture (cold_start.cuda_graph_seconds)"}
    parts["warmup"] = {"seconds": d.warmup_budget, "basis": f"at most {d.warmup.count} × {d.warmup.timeout:g} s"}
    known = [p["seconds"] for p in parts.values() if p["seconds"] is not None]
    total = round(sum(known), 1)
    result = {"parts": parts, "estimate_seconds": total, "complete": len(known) == len(parts)}
    if d.gpu_snapshot:
        restored = SNAPSHOT_RESTORE_SECONDS + (parts["image_pull"]["seconds"] or 0)
        result["snapshot_restore_seconds"] = restored
        result["note"] = "a GPU snapshot restore replaces boot, weight loading, kernels, CUDA graphs and warm-up"
    return result


def warnings_for(settings: Settings, d: Deployment, cold: dict) -> list[str]:
    out = [f"unpinned: {item}; `invoke download` resolves and records a commit" for item in d.unpinned()]
    if not d.proxy_auth:
        out.append("endpoint is public: anyone with the URL can call it (auth.proxy_auth = false)")
    budget = d.readiness_timeout + d.warmup_budget
    if d.startup_timeout < budget:  # validation refuses this; kept for plans of hand-built deployments
        out.append(f"startup_timeout {d.startup_timeout} s is shorter than the readiness budget {budget:g} s")
    expected = cold["estimate_seconds"] * settings.cold_start.margin
    if not d.gpu_snapshot and d.startup_timeout < expected:
        out.append(
            f"startup_timeout {d.startup_timeout} s is below the estimated cold start {cold['estimate_seconds']:g} s "
            f"× margin {settings.cold_start.margin:g}: a cold container may be killed before it is ready"
        )
    if settings.release.guarded and d.min_containers == 0:
        out.append(f"production environment '{d.env}' has min_containers = 0: every first request pays the full cold start "
                   f"(~{cold['estimate_seconds']:g} s)")
    if d.gpu_snapshot:
        out.append("GPU memory snapshots are alpha on Modal (cold_start.gpu_snapshot)")
    return out


def plan_for(settings: Settings, d: Deployment, state: StageState | None = None) -> dict:
    state = state or StageState(d.env, d.recipe)
    download = state.get("download")
    resolved = {item["repo"]: item["commit"] for item in download["result"]} if download else {}
    cold = cold_start(settings, d, state)

    def model(repo: str | None, revision: str | None) -> dict | None:
        if repo is None:
            return None
        return {
            "id": repo,
            "revision": revision,
            "pinned": bool(COMMIT_RE.match(revision or "")),
            "resolved_commit": resolved.get(repo),
        }

    plan = {
        "env": d.env,
        "recipe": d.recipe,
        "modal": {
            "environment": d.modal_environment,
            "app": d.app_name,
            "server": SERVER_NAME,
            "jobs_app": f"{d.app_name}-jobs",
            "cache_environment": d.cache_environment,
        },
        "image": {
            "base": d.sglang_image,
            "entrypoint": [],
            "sglang_version": d.sglang_version,
            "pip_installs": list(d.pip_installs),
            "env": d.image_env,
        },
        "model": model(d.model, d.model_revision),
        "draft_model": model(d.draft_model, d.draft_revision),
        "volumes": [
            {"name": d.weights_volume, "mount": HF_CACHE_PATH, "modal_environment": d.cache_environment},
            {"name": d.kernels_volume, "mount": KERNELS_PATH, "modal_environment": d.cache_environment},
        ],
        "gpu": {"type": d.gpu_type, "count": d.gpu_count, "request": d.gpu, "tensor_parallel": d.tp_size},
        "regions": {"compute": d.compute_region, "routing": d.routing_region},
        "scaling": {
            "min_containers": d.min_containers,
            "max_containers": d.max_containers,
            "buffer_containers": d.buffer_containers,
            "scaledown_window": d.scaledown_window,
            "target_concurrency": d.target_concurrency,
        },
        "timeouts": {
            "startup_timeout": d.startup_timeout,
            "readiness_timeout": d.readiness_timeout,
            "exit_grace_period": d.exit_grace_period,
        },
        "launch_command": sglang_args.launch_command(d),
        "compile_command": sglang_args.compile_command(d),
        "readiness": {
            "health": f"GET /health every {d.health_poll_interval:g} s until healthy",
            "warmup": {
                "requests": d.warmup.count,
                "prompt": d.warmup.prompt,
                "max_tokens": d.warmup.max_tokens,
                "timeout": d.warmup.timeout,
                "image": "packaged, inline data URL" if d.warmup.with_image else None,
            },
        },
        "endpoint": {
            "public": not d.proxy_auth,
            "auth": "Modal proxy auth: send Modal-Key / Modal-Secret" if d.proxy_auth else "none",
        },
        "server_env": {k: ("<this deployment, resolved>" if k == "INFRA_DEPLOYMENT" else v) for k, v in d.server_env.items()},
        "secrets": {"hf_token_secret": d.hf_token_secret},
        "snapshot": {"gpu_snapshot": True, "enable_memory_snapshot": True, "experimental_options": {"enable_gpu_snapshot": True}}
        if d.gpu_snapshot
        else None,
        "cost": standing_cost(settings, d),
        "cold_start": cold,
        "warnings": warnings_for(settings, d, cold),
    }
    return plan


def to_json(plans: list[dict]) -> str:
    return json.dumps(plans, indent=2, sort_keys=True)


def render(plans: list[dict]) -> str:
    """The human view: one block per recipe, knobs named as in settings and Modal."""
    lines: list[str] = []
    for p in plans:
        m, img, gpu, sc, to = p["modal"], p["image"], p["gpu"], p["scaling"], p["timeouts"]
        lines += [
            f"== {p['env']} / {p['recipe']} " + "=" * max(0, 60 - len(p["env"]) - len(p["recipe"])),
            f"Modal          environment {m['environment']}, app {m['app']} (server '{m['server']}'), jobs app {m['jobs_app']}",
            f"Image          {img['base']} (SGLang {img['sglang_version']}), entrypoint []",
        ]
        if img["pip_installs"]:
            lines.append(f"               + uv_pip_install {' '.join(img['pip_installs'])}")
        lines.append("               + env " + " ".join(f"{k}={v}" for k, v in img["env"].items()))
        for label, mdl in (("Model", p["model"]), ("Draft model", p["draft_model"])):
            if mdl:
                pin = "pinned" if mdl["pinned"] else "UNPINNED"
                res = f", resolved {mdl['resolved_commit'][:12]}" if mdl["resolved_commit"] and not mdl["pinned"] else ""
                lines.append(f"{label:<15}{mdl['id']} @ {mdl['revision'] or '(unset)'} [{pin}{res}]")
        for v in p["volumes"]:
            lines.append(f"Volume         {v['name']} -> {v['mount']} (Modal environment {v['modal_environment']})")
        lines += [
            f"GPU            {gpu['request']} (tensor parallel {gpu['tensor_parallel']})",
            f"Regions        compute {p['regions']['compute'] or 'any'}, routing (proxy) {p['regions']['routing']}",
            f"Scaling        min_containers {sc['min_containers']}, max_containers {sc['max_containers'] or 'unbounded'}, "
            f"target_concurrency {sc['target_concurrency']}",
            f"Timeouts       startup_timeout {to['startup_timeout']} s, readiness_timeout {to['readiness_timeout']} s, "
            f"exit_grace_period {to['exit_grace_period']} s",
            f"Endpoint       {'PUBLIC (no auth)' if p['endpoint']['public'] else 'private: ' + p['endpoint']['auth']}",
            f"Launch         {' '.join(p['launch_command'])}",
            f"Kernels        {' '.join(p['compile_command'])}",
            f"Readiness      {p['readiness']['health']}; then {p['readiness']['warmup']['requests']} warm-up requests "
            f"({p['readiness']['warmup']['prompt']!r}, max_tokens {p['readiness']['warmup']['max_tokens']}, "
            f"{p['readiness']['warmup']['timeout']:g} s timeout"
            + (", with the packaged image)" if p["readiness"]["warmup"]["image"] else ")"),
            "Server env     " + " ".join(f"{k}={v}" for k, v in p["server_env"].items()),
            f"Secrets        HF token from Modal Secret: {p['secrets']['hf_token_secret'] or 'none'}",
        ]
        if p["snapshot"]:
            lines.append("Snapshots      enable_memory_snapshot=True, experimental enable_gpu_snapshot (alpha)")
        c = p["cost"]
        lines.append(
            f"Standing cost  {c['warm_gpus']} warm GPU(s) × ${c['gpu_hourly_usd']:.2f}/h = ${c['usd_per_hour']:.2f}/h, "
            f"{c['gpu_hours_per_30_days']:g} GPU-hours and ${c['usd_per_30_days']:,.2f} per 30 days"
        )
        cold = p["cold_start"]
        parts = ", ".join(
            f"{name} {'?' if part['seconds'] is None else format(part['seconds'], 'g') + ' s'}" for name, part in cold["parts"].items()
        )
        lines.append(f"Cold start     ~{cold['estimate_seconds']:g} s{'' if cold['complete'] else '+'} ({parts})")
        if "snapshot_restore_seconds" in cold:
            lines.append(f"               with a snapshot restore: ~{cold['snapshot_restore_seconds']:g} s")
        for w in p["warnings"]:
            lines.append(f"WARNING        {w}")
        lines.append("")
    creds = local_credentials()
    lines.append("Local credentials: " + ", ".join(f"{k} {v}" for k, v in creds.items()))
    return "\n".join(lines)
