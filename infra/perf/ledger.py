"""The release ledger: what each release measured, and what its output tokens cost.

A release manifest entry (infra/releases.Release, one per deploy, promotion or
rollback) carries two measurements of the recipe's gate workload, both bench
reports without their per-request records (`compact`):

- `gate`: the promotion gate's record, `{"verdict", "measurement", "evaluation",
  "override"}` (infra/perf/gate.py `record`): the release measured on the source
  environment's endpoint before it was promoted (or the override that skipped it);
- `measurement`: the same workload measured on the release's own environment after
  it went live (the gate's `record_baseline`), when that was done.

From either, `performance` summarises a release in a few figures and prices its
output: a replica's GPUs cost `gpu_hourly_usd × gpu_count` per hour and, at the
recipe's target concurrency (what Modal routes to one replica), produce the
measured total output tokens/s, so

    USD per million output tokens = gpu_hourly_usd × gpu_count / (tokens/s × 3600) × 10⁶.

That is the price of a busy replica; idle warm replicas cost more per token
(`plan` shows their standing cost). `compare_releases` puts two recorded
releases through `infra.perf.bench.compare`, as `invoke bench --compare` does two files.

Releases are read as mappings (the manifest's JSON) or as Release objects: the
fields read here are named in one place each (`release_field`, `hardware_of`).
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from infra.control.objectives import METRICS
from infra.perf import bench
from infra.runtime.errors import ConfigError

# infra/releases.new_release_id: r<UTC date>-<UTC time>-<6 hex> (tests/test_ledger.py keeps the two in step).
RELEASE_ID_RE = re.compile(r"r\d{8}-\d{6}-[0-9a-f]{6}")
SECONDS_PER_HOUR = 3600
# The figures a ledger shows per level: (metric, column heading).
FIGURES = (("ttft_p90_ms", "TTFT p90 ms"), ("tpot_p50_ms", "TPOT p50 ms"), ("output_tokens_per_s", "tok/s"),
           ("error_rate", "errors"))


def is_release_id(text: str) -> bool:
    return bool(RELEASE_ID_RE.fullmatch(text.strip()))


def release_field(release: Any, name: str) -> Any:
    """A field of a release given as a manifest mapping or as a Release object (None when it has none)."""
    if isinstance(release, Mapping):
        return release.get(name)
    return getattr(release, name, None)


def compact(report: dict) -> dict:
    """A bench report as a manifest stores it: every aggregate, no per-request records (those stay in --json files)."""
    out = copy.deepcopy(report)
    out.pop("_path", None)
    for level in out.get("levels", []):
        level.pop("records", None)
    return out


def measured_where(measurement: dict) -> str:
    t = measurement.get("target") or {}
    return t.get("env") or t.get("url") or "?"


def measurement_of(release: Any) -> tuple[dict, str] | None:
    """The release's measurement for the ledger, and where it was taken: its own environment's first, else its gate's."""
    own = release_field(release, "measurement")
    if own:
        return own, f"on {measured_where(own)}"
    gate = release_field(release, "gate") or {}
    if gate.get("measurement"):
        return gate["measurement"], f"gate on {measured_where(gate['measurement'])}"
    return None


def hardware_of(release: Any) -> tuple[str, int, int]:
    """(gpu_type, gpu_count, target_concurrency) of the deployment a release ran; the one place that reads them.

    A manifest's `deployment` nests the resolved recipe (`deployment.recipe.gpu_type`); entries recorded
    before that change keep the flat layout (`deployment.gpu_type`, `recipe` a name), and the ledger reads
    a whole history, so both are read.
    """
    d = release_field(release, "deployment") or {}
    r = d["recipe"] if isinstance(d.get("recipe"), Mapping) else d
    return r["gpu_type"], int(r["gpu_count"]), int(r["target_concurrency"])


# ---------------------------------------------------------------- cost and summary


def cost_per_million_output_tokens(output_tokens_per_s: float | None, *, gpu_hourly_usd: float, gpu_count: int) -> float | None:
    """USD per 10⁶ output tokens for a replica producing this many tokens/s; None without throughput."""
    if not output_tokens_per_s or output_tokens_per_s <= 0:
        return None
    return gpu_hourly_usd * gpu_count / (output_tokens_per_s * SECONDS_PER_HOUR) * 1e6


@dataclass(frozen=True)
class LevelFigures:
    concurrency: int
    sent: int
    values: dict[str, float | None]  # metric -> value, for the metrics of FIGURES


@dataclass(frozen=True)
class Performance:
    """One measurement of one release, summarised and priced."""

    measured_on: str  # "gate on staging", "on prod"
    created: str | None
    target_concurrency: int
    levels: tuple[LevelFigures, ...]
    gpu_type: str
    gpu_count: int
    gpu_hourly_usd: float

    def at(self, concurrency: int) -> LevelFigures | None:
        return next((lv for lv in self.levels if lv.concurrency == concurrency), None)

    @property
    def output_tokens_per_s(self) -> float | None:
        lv = self.at(self.target_concurrency)
        return lv.values["output_tokens_per_s"] if lv else None

    @property
    def usd_per_million_output_tokens(self) -> float | None:
        return cost_per_million_output_tokens(self.output_tokens_per_s, gpu_hourly_usd=self.gpu_hourly_usd,
                                              gpu_count=self.gpu_count)

    def value(self, metric: str, concurrency: int) -> float | None:
        lv = self.at(concurrency)
        return lv.values.get(metric) if lv else None

    def cost_text(self) -> str:
        usd = self.usd_per_million_output_tokens
        hardware = f"{self.gpu_count}×{self.gpu_type} at ${self.gpu_hourly_usd:.2f}/h"
        return f"${usd:.2f} per 1M output tokens ({hardware})" if usd is not None else f"cost unknown ({hardware}, no throughput)"

    def line(self) -> str:
        """One line for `invoke status`: latency at 1 and at the target, throughput, errors, cost."""
        t = self.target_concurrency
        levels = sorted({1, t})

        def per_level(metric: str) -> str:
            return " / ".join(f"{METRICS[metric].format(self.value(metric, c))} @{c}" for c in levels)

        errors = sum(round((lv.values["error_rate"] or 0) * lv.sent) for lv in self.levels)
        sent = sum(lv.sent for lv in self.levels)
        return (f"TTFT p90 {per_level('ttft_p90_ms')}; TPOT p50 {per_level('tpot_p50_ms')}; "
                f"{METRICS['output_tokens_per_s'].format(self.output_tokens_per_s)} @{t}; errors {errors}/{sent}; "
                f"{self.cost_text()} [{self.measured_on}]")

    def to_dict(self) -> dict:
        return {
            "measured_on": self.measured_on,
            "created": self.created,
            "target_concurrency": self.target_concurrency,
            "levels": [{"concurrency": lv.concurrency, "sent": lv.sent, **lv.values} for lv in self.levels],
            "gpu_type": self.gpu_type,
            "gpu_count": self.gpu_count,
            "gpu_hourly_usd": self.gpu_hourly_usd,
            "output_tokens_per_s": self.output_tokens_per_s,
            "usd_per_million_output_tokens": _round(self.usd_per_million_output_tokens, 4),
        }


def _round(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def performance(measurement: dict, *, target_concurrency: int, gpu_type: str, gpu_count: int, gpu_hourly_usd: float,
                measured_on: str | None = None) -> Performance:
    """Summarise a bench report (full or compact). The price comes from the caller: settings' override or the catalog."""
    levels = tuple(
        LevelFigures(lv["concurrency"], lv["requests"]["sent"], {m: METRICS[m].read(lv) for m, _ in FIGURES})
        for lv in sorted(measurement["levels"], key=lambda lv: lv["concurrency"])
    )
    return Performance(measured_on or f"on {measured_where(measurement)}", measurement.get("created"), target_concurrency,
                       levels, gpu_type, gpu_count, gpu_hourly_usd)


def priced(release: Any, gpu_hourly_usd: Callable[[str], float]) -> Performance | None:
    """The release's measurement summarised and priced (`gpu_hourly_usd`: GPU type -> price), or None if unmeasured."""
    found = measurement_of(release)
    if found is None:
        return None
    gpu_type, gpu_count, target_concurrency = hardware_of(release)
    return performance(found[0], target_concurrency=target_concurrency, gpu_type=gpu_type, gpu_count=gpu_count,
                       gpu_hourly_usd=gpu_hourly_usd(gpu_type), measured_on=found[1])


# ---------------------------------------------------------------- the ledger of an environment


def how(release: Any) -> str:
    """How a release got where it is: deploy, promote from staging (gate passed / skipped), rollback to vN."""
    kind = release_field(release, "kind") or "?"
    origin = release_field(release, "promoted_from")
    text = f"{kind} from {origin['env']}" if origin else kind
    if kind == "rollback" and release_field(release, "rolled_back_to"):
        text += f" to v{release_field(release, 'rolled_back_to')}"
    gate = release_field(release, "gate")
    if gate and kind == "promote":
        text += ", gate skipped" if gate.get("verdict") == "skipped" else f", gate {gate.get('verdict')}"
    return text


def entry(release: Any, perf: Performance | None, cold_start: dict | None = None) -> dict:
    """One ledger row as data (`invoke status --json`); `cold_start` is its starts' summary (infra/control/coldstarts.py)."""
    smoke = release_field(release, "smoke")
    gate = release_field(release, "gate") or {}
    override = gate.get("override") or None
    return {
        "release_id": release_field(release, "release_id"),
        "version": release_field(release, "version"),
        "how": how(release),
        "deployed_at": release_field(release, "deployed_at"),
        "deployed_by": release_field(release, "deployed_by"),
        "commit": release_field(release, "commit"),
        "dirty": release_field(release, "dirty"),
        "image": release_field(release, "image"),
        "model_revision": release_field(release, "model_revision"),
        "draft_revision": release_field(release, "draft_revision"),
        "smoke_passed": None if not smoke else bool(smoke.get("passed")),
        "gate": gate.get("verdict"),
        "gate_override": override,
        "performance": perf.to_dict() if perf else None,
        "cold_start": cold_start,
    }


def _short(text: str | None, n: int = 8) -> str:
    return "-" if not text else text[:n]


def _image_tag(image: str | None) -> str:
    return "-" if not image else image.rsplit(":", 1)[-1] if ":" in image else image


def cold_start_text(summary: dict | None) -> str:
    """'94.7/127.5 (3)': median and worst seconds from container start to ready, and how many starts ready."""
    if not summary or summary.get("median_s") is None:
        return "-"
    return f"{summary['median_s']:.1f}/{summary['worst_s']:.1f} ({summary['ready']})"


def render_table(rows: Iterable[tuple[Any, Performance | None]], cold_starts: Mapping[str, dict] | None = None) -> str:
    """The ledger as a table, newest first: where each release came from, its cold starts (median/worst seconds
    from container start to ready, and how many), and what it measured and cost."""
    header = ["release", "v", "how", "when (UTC)", "commit", "image", "model", "draft", "smoke", "cold start s med/worst (n)",
              "TTFT p90 ms 1/T", "TPOT p50 ms 1/T", "tok/s @T", "errors", "$/1M out", "measured"]
    cold_starts = cold_starts or {}
    body = []
    for release, perf in rows:
        smoke = release_field(release, "smoke")
        at = release_field(release, "deployed_at")
        cells = [
            release_field(release, "release_id") or "-",
            f"v{release_field(release, 'version')}" if release_field(release, "version") else "v?",
            how(release),
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(at)) if at else "-",
            _short(release_field(release, "commit"), 12) + ("-dirty" if release_field(release, "dirty") else ""),
            _image_tag(release_field(release, "image")),
            _short(release_field(release, "model_revision")),
            _short(release_field(release, "draft_revision")),
            "-" if not smoke else ("passed" if smoke.get("passed") else "FAILED"),
            cold_start_text(cold_starts.get(release_field(release, "release_id")) or release_field(release, "cold_starts")),
        ]
        if perf is None:
            cells += ["-", "-", "-", "-", "-", "not measured"]
        else:
            t = perf.target_concurrency

            def pair(metric: str, digits: int) -> str:
                return "/".join(bench._num(perf.value(metric, c), 1, digits) for c in (1, t))

            failed = sum(round((lv.values["error_rate"] or 0) * lv.sent) for lv in perf.levels)
            usd = perf.usd_per_million_output_tokens
            cells += [pair("ttft_p90_ms", 1), pair("tpot_p50_ms", 2), bench._num(perf.output_tokens_per_s, 1, 1),
                      f"{failed}/{sum(lv.sent for lv in perf.levels)}", "-" if usd is None else f"${usd:.2f}",
                      perf.measured_on]
        body.append(cells)
    return bench._table(header, body, right={1, 9, 10, 11, 12, 13, 14})


# ---------------------------------------------------------------- bench --compare <release-id> <release-id>


def find_release(releases: Iterable[Any], release_id: str, where: str) -> Any:
    """The release with this id among `releases` (the histories read from `where`, e.g. 'prod and staging manifests')."""
    seen = []
    for release in releases:
        if release_field(release, "release_id") == release_id:
            return release
        seen.append(release_field(release, "release_id"))
    known = ", ".join(seen[:5]) + (", ..." if len(seen) > 5 else "") if seen else "none"
    raise ConfigError(f"--compare: no release {release_id!r} in the {where}; recorded there (newest first): {known}")


def labelled(release: Any) -> dict:
    """The release's measurement as a bench report labelled with the release (for bench.compare and bench.plot)."""
    found = measurement_of(release)
    rid = release_field(release, "release_id")
    if found is None:
        raise ConfigError(f"--compare: release {rid} has no recorded measurement (it was not promoted through the gate and "
                          "not measured after going live); compare two measured releases, or two bench JSON files")
    report, where = found
    env = release_field(release, "env") or "?"
    version = release_field(release, "version")
    return dict(report, label=f"{rid} ({env} v{version if version else '?'}, {where})")


def compare_releases(a: Any, b: Any) -> dict:
    """B relative to A from their recorded measurements; `warnings` says when the two are not like for like."""
    return compare_reports(labelled(a), labelled(b))


def compare_reports(ra: dict, rb: dict) -> dict:
    """`bench.compare` with `warnings` where the two reports were not measured alike (a release's, or a file)."""
    comparison = bench.compare(ra, rb)
    warnings = []
    wa, wb = ({k: v for k, v in r.get("workload", {}).items() if k != "model"} for r in (ra, rb))
    if wa != wb:
        diff = ", ".join(f"{k} {wa.get(k)!r} vs {wb.get(k)!r}" for k in sorted(set(wa) | set(wb)) if wa.get(k) != wb.get(k))
        warnings.append(f"the two were measured with different workloads ({diff}): differences are not only the releases'")
    if measured_where(ra) != measured_where(rb):
        warnings.append(f"A was measured on {measured_where(ra)}, B on {measured_where(rb)}: endpoints differ too")
    comparison["warnings"] = warnings
    return comparison


def render_comparison(comparison: dict) -> str:
    return "\n".join([bench.render_compare(comparison), *(f"warning: {w}" for w in comparison.get("warnings", []))])
