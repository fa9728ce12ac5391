"""Compare runs: curves, Fréchet distances, final/best values, time to thresholds, grids.

`ga-gan compare RUN ... --out report.html` (or `.png`) reads each run folder's metrics.jsonl,
config.json and latest sample grid, and writes one self-contained file: an HTML page with its
images inlined as base64 PNGs (readable offline), or one PNG of the same figures and grids.
The analysis functions (final / best values, first and held threshold crossings) are the ones
`benchmarks/side_by_side.py` reports with.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path


from ga_gan.errors import UserError
from ga_gan.runlog import read_metrics

HELD_WINDOW = 5  # evaluations whose median must be at or below a bar for it to count as held
NOT_CURVES = ("generation", "time_s")  # axes, not metrics


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_frechet(key: str) -> bool:
    return key.startswith(("fd_", "fid"))


def fd_keys(records: list[dict]) -> list[str]:
    """Fréchet metrics in the order they first appear."""
    keys: list[str] = []
    for r in records:
        keys += [k for k in r if is_frechet(k) and k not in keys]
    return keys


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, int):
        return f"{x:,}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def first_time(curve: list[dict], key: str, threshold: float) -> float | None:
    """Training seconds of the first evaluation at or below the bar."""
    for p in curve:
        if key in p and finite(p[key]) and p[key] <= threshold:
            return p["time_s"]
    return None


def held_time(curve: list[dict], key: str, threshold: float,
              window: int = HELD_WINDOW) -> float | None:
    """First evaluation at or below the bar from which the median of it and the next
    window - 1 evaluations is also at or below: a crossing that lasts, not a one-evaluation dip
    of a noisy curve (never earlier than the first crossing)."""
    pts = [p for p in curve if key in p and finite(p[key])]
    for i in range(len(pts) - window + 1):
        if pts[i][key] <= threshold and \
                statistics.median(p[key] for p in pts[i:i + window]) <= threshold:
            return pts[i]["time_s"]
    return None


def curve_summary(curve: list[dict], keys: list[str]) -> tuple[dict, dict, dict]:
    """(initial, final, best) per key over evaluation points; best = {"value", "time_s"}."""
    initial, final, best = {}, {}, {}
    for k in keys:
        pts = [(p["time_s"], p[k]) for p in curve if k in p and finite(p[k])]
        if not pts:
            continue
        initial[k], final[k] = pts[0][1], pts[-1][1]
        t, v = min(pts, key=lambda tv: tv[1])
        best[k] = {"value": v, "time_s": t}
    return initial, final, best


# --- runs ---------------------------------------------------------------------------------------

@dataclass
class Run:
    name: str
    path: Path
    method: str
    records: list[dict]
    config: dict = field(default_factory=dict)

    @property
    def curve(self) -> list[dict]:
        """The evaluation points (records holding a Fréchet distance)."""
        return [r for r in self.records if any(is_frechet(k) for k in r)]

    def grid_png(self) -> bytes | None:
        p = self.path / "samples.png"
        return p.read_bytes() if p.is_file() else None

    def describe(self) -> str:
        c = self.config
        model = c.get("model", {})
        what = (f"{self.method}" if self.method != "evolve" else
                f"evolve {c.get('evolve', {}).get('g', {}).get('name', '')}")
        return (f"{what}, {model.get('name', '?')} width {model.get('width', '?')}, "
                f"data {c.get('data', {}).get('spec', '?')}, seed {c.get('seed', '?')}")


def load_run(path: str | Path, name: str | None = None) -> Run:
    path = Path(path)
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise UserError(f"not a ga-gan run folder (no metrics.jsonl): {path}")
    records = read_metrics(metrics)
    if not records:
        raise UserError(f"{metrics} holds no records yet")
    cfg, method = {}, "?"
    try:
        raw = json.loads((path / "config.json").read_text())
        cfg, method = raw.get("config", {}), raw.get("method", "?")
    except (OSError, ValueError):
        pass
    return Run(name or path.resolve().name, path, method, records, cfg)


def load_runs(paths: list[str]) -> list[Run]:
    if not paths:
        raise UserError("compare needs at least one run folder")
    runs = [load_run(p) for p in paths]
    names = [r.name for r in runs]
    for r in runs:  # runs/a/x and runs/b/x: name them by their parent too
        if names.count(r.name) > 1:
            r.name = f"{r.path.resolve().parent.name}/{r.name}"
    return runs


def shared_scalars(runs: list[Run]) -> list[str]:
    """Per-generation metrics every run logs (the Fréchet distances are plotted apart)."""
    sets = [{k for r in run.records for k, v in r.items() if finite(v)} for run in runs]
    shared = set.intersection(*sets) - set(NOT_CURVES)
    order = [k for r in runs[0].records for k in r]
    return sorted((k for k in shared if not is_frechet(k) and k != "eval_s"),
                  key=lambda k: order.index(k) if k in order else 1e9)


def thresholds(runs: list[Run], key: str, given: list[float] | None = None) -> list[float]:
    """The bars for the time-to-threshold columns: given, else 2x and 1.25x the best final
    value among the runs."""
    if given:
        return list(given)
    finals = [curve_summary(r.curve, [key])[1].get(key) for r in runs]
    finals = [f for f in finals if f is not None]
    return [m * min(finals) for m in (2.0, 1.25)] if finals else []


def summary_table(runs: list[Run], bars: list[float]) -> tuple[list[str], list[list[str]]]:
    keys = []
    for r in runs:
        keys += [k for k in fd_keys(r.records) if k not in keys]
    primary = keys[0] if keys else None
    head = ["run", "gens / steps", "train s", "eval s"]
    for k in keys:
        head += [f"final {k}", f"best {k} (at s)"]
    head += ["final real_score", "final fake_score"]
    head += [f"s to {primary} ≤ {fmt(b)}: first / held" for b in bars]
    rows = []
    for r in runs:
        last = r.records[-1]
        scores = next((x for x in reversed(r.records) if "real_score" in x), {})
        _, final, best = curve_summary(r.curve, keys)
        row = [r.name, fmt(int(last["generation"])), f"{last.get('time_s', 0):.1f}",
               f"{sum(x.get('eval_s', 0.0) for x in r.records):.1f}"]
        for k in keys:
            b = best.get(k)
            row += [fmt(final.get(k)), f"{fmt(b['value'])} ({b['time_s']:.1f})" if b else "—"]
        row += [fmt(scores.get("real_score")), fmt(scores.get("fake_score"))]
        for b in bars:
            times = (first_time(r.curve, primary, b), held_time(r.curve, primary, b))
            row.append(" / ".join(f"{t:.1f}" if t is not None else "—" for t in times))
        rows.append(row)
    return head, rows
