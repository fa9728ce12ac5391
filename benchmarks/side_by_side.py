"""Adam vs evolution (and later hybrids) on one dataset at an equal wall-clock training budget.

    python benchmarks/side_by_side.py --dataset digits --budget 60
    python benchmarks/side_by_side.py --dataset mnist --budget 180

Every method runs sequentially in this one process on the same data, model, seed, Fréchet
extractors and sample count, with `time_budget` = --budget and a step count too large to matter,
so the clock is what stops each run. `time_s` is the Runner's training clock: it includes the
first step's compilation and excludes Fréchet evaluation, sample grids and checkpoints.

The Runner stops on the budget without a last evaluation, so the final Fréchet distance of each
run is measured here from its final checkpoint (same latents and sample count as the run's own
evaluations) and appended to its curve at the run's final time_s.

Writes to --out: <dataset>.md (the table), <dataset>.json (raw summary), <dataset>_fd.png
(Fréchet distance against training seconds) and <dataset>_samples.png (final grids).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the analysis `ga-gan compare` shares: final / best values, first and held crossings, numbers
from ga_gan.report import (HELD_WINDOW, curve_summary, fd_keys as _fd_keys,
                           finite as _finite, first_time, fmt, held_time)

REPO = Path(__file__).resolve().parents[1]
BIG = 10**6  # generations / steps: the time budget is what stops a run

# --- what can be compared -------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    method: str  # a ga_gan.methods.REGISTRY name: adam, evolve, egan, ... or one a test registered
    overrides: dict = field(default_factory=dict)  # dotted config overrides for this method only
    label: str = ""

    @property
    def runner(self) -> str:
        """The Runner's command name ("train" for Adam, else "evolve")."""
        from ga_gan.methods import run_command
        return run_command(self.method)[0]


# Named presets on top of a registry name; every registry name is also usable as itself.
LIPIZZANER = {"evolve.hybrid.k": 20, "evolve.hybrid.lr_sigma": 2e-5}
PRESETS: dict[str, Method] = {
    "adam": Method("adam", {}, "Adam (DCGAN baseline, backprop; samples from the EMA "
                               "generator, the raw one logged as fd_*_raw)"),
    "adam-noema": Method("adam", {"log.ema": 0.0}, "Adam without a generator average"),
    "evolve": Method("evolve", {}, "evolution (evosax, no backprop)"),
    "evolve-lowrank": Method("evolve", {"evolve.g.name": "lowrank_es",
                                        "evolve.d.name": "lowrank_es"},
                             "low-rank ES (EGGROLL-style rank-4 perturbations, no backprop)"),
    "hybrid-egan": Method("egan", {}, "E-GAN hybrid: G population mutated by Adam on 3 losses, "
                                      "D by Adam"),
    "hybrid-adam-d": Method("adam-d", {}, "hybrid: D by Adam, G evolved (evosax)"),
    "hybrid-lamarck": Method("lamarck", {}, "hybrid: evosax populations + Adam steps on their "
                                            "means"),
    # spatial coevolution: a 2x2 torus, 20 Adam rounds per cell between selections; a smaller
    # lr mutation step than the papers' 1e-4, whose generation is a whole epoch
    "hybrid-lipizzaner": Method("lipizzaner", LIPIZZANER,
                                "Lipizzaner: 2x2 grid of Adam-trained G/D cells, selection, "
                                "mixture of generators"),
    "hybrid-mustangs": Method("mustangs", LIPIZZANER,
                              "Mustangs: Lipizzaner with a random G loss per step"),
}


def methods() -> dict[str, Method]:
    """Every name --methods accepts: the registry's names (as they are) and the presets."""
    from ga_gan.methods import REGISTRY
    return {**{name: Method(name) for name in REGISTRY}, **PRESETS}


# The reference that the thresholds and ratios are measured against (when it is run).
REFERENCE = "adam"


@dataclass(frozen=True)
class DatasetSpec:
    config: str  # relative to the repo root
    budget: float  # default --budget, seconds
    overrides: dict = field(default_factory=dict)
    # Rough steps (or generations) per training second on a 2-core CPU, per Runner method; only
    # used to pick eval_every so that about `points` evaluations land inside the budget.
    rate: dict = field(default_factory=dict)
    # Evaluations wanted per run: each costs seconds of wall time (not of training time) on big
    # images, where the Fréchet distance needs a matrix square root of the feature covariance.
    points: int = 25


DATASETS: dict[str, DatasetSpec] = {
    # (rates by Runner method, or by --methods name where that differs: the hybrids)
    "digits": DatasetSpec("ga_gan/configs/digits.toml", 60, {},
                          {"train": 1000, "evolve": 20, "evolve-lowrank": 40, "hybrid-egan": 250,
                           "hybrid-adam-d": 45, "hybrid-lamarck": 25},
                          points=60),  # 64-d pixel FD: cheap, and Adam moves in seconds
    "mnist": DatasetSpec("ga_gan/configs/mnist.toml", 180, {},
                         {"train": 75, "evolve": 0.8, "evolve-lowrank": 4, "hybrid-egan": 55,
                          "hybrid-adam-d": 3.5,
                          "hybrid-lamarck": 1.8, "hybrid-lipizzaner": 0.8,
                          "hybrid-mustangs": 0.8}, points=12),
    "anime": DatasetSpec("ga_gan/configs/anime-cpu.toml", 600, {"data.limit": 2000},
                         {"train": 5, "evolve": 2}, points=12),
    # the evolution-sized nets (DCGAN width 0.0625, latent 16; low-rank ES pop 256, batch 16)
    "mnist-evolve": DatasetSpec("ga_gan/configs/mnist-evolve.toml", 300, {},
                                {"train": 60, "evolve": 2.5}, points=12),
    "anime-evolve": DatasetSpec("ga_gan/configs/anime-evolve.toml", 600, {"data.limit": 2000},
                                {"train": 10, "evolve": 2}, points=12),
}


def eval_every_for(spec: DatasetSpec, runner: str, budget: float, spc: int) -> int:
    """eval_every that gives about spec.points evaluations in the budget, a multiple of the
    Runner's steps_per_call (it only evaluates at the end of a dispatched chunk)."""
    rate = spec.rate.get(runner, spec.rate.get("evolve", 10))
    raw = max(1.0, rate * budget / spec.points)
    nice = _nice(raw)
    return max(spc, int(round(nice / spc)) * spc)


def _nice(x: float) -> int:
    """1, 2, 5, 10, 20, 50, ... closest (in log) to x."""
    exp = 10 ** math.floor(math.log10(x))
    options = [m * exp for m in (1, 2, 5, 10)]
    return int(min(options, key=lambda o: abs(math.log(o / x))))


# --- running ----------------------------------------------------------------------------------


def _resolve_spec(spec: str, data_override: str | None) -> str:
    """Data spec with a relative path made relative to the repo root (the configs' convention)."""
    if data_override:
        spec = data_override if ":" in data_override or data_override in ("digits",) \
            else f"{spec.split(':')[0]}:{data_override}"
    kind, sep, path = spec.partition(":")
    if sep and path and "://" not in path and not os.path.isabs(os.path.expanduser(path)):
        if not Path(path).exists() and (REPO / path).exists():
            path = str((REPO / path).resolve())
        else:
            path = str(Path(path).resolve())
        spec = f"{kind}:{path}"
    return spec


def build_config(args, name: str, method: Method, spec: DatasetSpec):
    from ga_gan.config import apply_overrides, load_config, parse_set

    cfg = load_config(REPO / spec.config)
    over: dict[str, Any] = dict(spec.overrides)
    over.update({
        "seed": args.seed,
        "time_budget": float(args.budget),
        "evolve.generations": BIG,
        "train.steps": BIG,
        "out": str((Path(args.runs_dir) / f"{args.dataset}-{name}").resolve()),
        "log.progress": False,
        "log.checkpoint_every": 0,  # one checkpoint, at the end (read back for the final FD)
        "log.image_every": 0,  # the final grid is written anyway
    })
    if args.fd_samples:
        over["log.fd_samples"] = args.fd_samples
    from ga_gan.methods import run_command
    over.update(run_command(method.method)[1])
    over.update(method.overrides)
    over.update(parse_set(args.set))
    cfg = apply_overrides(cfg, over)
    cfg = apply_overrides(cfg, {"data.spec": _resolve_spec(cfg.data.spec, args.data)})
    spc = max(1, cfg.log.steps_per_call)
    if args.eval_every:
        every = args.eval_every
        if every % spc:
            cfg = apply_overrides(cfg, {"log.steps_per_call": math.gcd(every, spc)})
    elif any(k == "log.eval_every" for k in parse_set(args.set)):
        every = cfg.log.eval_every
    else:
        every = eval_every_for(spec, name if name in spec.rate else method.runner,
                               float(args.budget), spc)
    return apply_overrides(cfg, {"log.eval_every": every})


class Interrupted(Exception):
    """A signal (Ctrl-C, a preemption's SIGTERM) stopped a run before its budget. The Runner saves
    and returns as usual; a benchmark must not read that truncated run as a result, nor go on to
    the next one, so it stops here and says so."""


def run_method(name: str, method: Method, cfg, dataset, log) -> dict:
    from ga_gan.run import Runner
    from ga_gan.runlog import read_metrics
    from ga_gan.sample import load_generator

    t0 = time.perf_counter()
    runner = Runner(cfg, method.runner, restart=True, log=log, dataset=dataset)
    result = runner.run()
    wall = time.perf_counter() - t0
    if result.stopped_by == "signal":
        raise Interrupted(f"{name} stopped by a signal at generation {result.generation} "
                          f"({result.time_s:.0f} s of training), not recorded; its run "
                          f"directory {result.out} is kept")
    records = read_metrics(runner.out / "metrics.jsonl")
    fd_keys = _fd_keys(records) or [ev.metric_name for ev in runner.evaluators()]
    last_fd = next((r for r in reversed(records) if any(k in r for k in fd_keys)), None)
    final_source = "logged"
    if cfg.log.fd and (last_fd is None or last_fd["generation"] != result.generation):
        # the Runner stopped on the clock between evaluations: measure the final state
        state = load_generator(runner.out)[4]
        fd = runner.evaluate(state)
        final_source = "final checkpoint"
        records.append({"generation": result.generation, "time_s": round(result.time_s, 4),
                        **fd, "_final_eval": True})
        fd_keys = _fd_keys(records)
    return summarise(name, method, cfg, result, records, fd_keys, wall, final_source)


def summarise(name, method, cfg, result, records, fd_keys, wall, final_source) -> dict:
    last_scores = next((r for r in reversed(records) if "real_score" in r), {})
    # classifier_score & co. (log.scores) ride along with the Fréchet distances
    keep = list(fd_keys) + ["classifier_score", "classes_covered", "confident"]
    curve = [{"generation": r["generation"], "time_s": r["time_s"],
              **{k: r[k] for k in keep if k in r}}
             for r in records if any(k in r for k in fd_keys)]
    initial, final, best = curve_summary(curve, fd_keys)
    return {
        "method": name,
        "label": method.label,
        "runner": method.runner,
        "overrides": method.overrides,
        "run_dir": str(result.out),
        "steps": result.generation,
        "time_s": result.time_s,
        "wall_s": wall,  # including evaluation, image grids, checkpoint I/O
        "stopped_by": result.stopped_by,
        "eval_every": cfg.log.eval_every,
        "evaluations": len(curve),
        "final_fd_source": final_source,
        "fd_metrics": fd_keys,
        "initial": initial,
        "final": final,
        "best": best,
        "final_scores": {k: last_scores.get(k) for k in ("real_score", "fake_score", "loss_d",
                                                         "loss_g")},
        "curve": curve,
    }


# --- analysis ---------------------------------------------------------------------------------


def thresholds_for(summaries: list[dict], key: str) -> list[dict]:
    by = {s["method"]: s for s in summaries}
    ref = by.get(REFERENCE) or summaries[0]
    out = []
    if key in ref["final"]:
        for m in (2.0, 1.25):
            out.append({"name": f"{m:g}x {ref['method']} final",
                        "value": m * ref["final"][key]})
    bar_src = by.get("evolve") or summaries[0]
    if key in bar_src["initial"]:
        out.append({"name": f"40% of {bar_src['method']} initial",
                    "value": 0.4 * bar_src["initial"][key]})
    return out


def ratios(summaries: list[dict], key: str) -> list[dict]:
    """For every method other than the reference: final-FD ratio at equal wall-clock, and how
    long it took to reach its own best FD compared with the reference reaching the same value."""
    by = {s["method"]: s for s in summaries}
    ref = by.get(REFERENCE)
    out = []
    if ref is None:
        return out
    for s in summaries:
        if s is ref or key not in s["final"] or key not in ref["final"]:
            continue
        quality = s["final"][key] / ref["final"][key]
        target = s["best"][key]["value"]
        t_self = s["best"][key]["time_s"]
        improved = target < s["initial"][key]
        t_ref = first_time(ref["curve"], key, target) if improved else None
        first_eval = next((p["time_s"] for p in ref["curve"] if p["time_s"] > 0), None)
        out.append({"method": s["method"], "metric": key, "final_ratio": quality,
                    "improved": improved, "initial": s["initial"][key],
                    "target": target, "t_method": t_self, "t_reference": t_ref,
                    "time_ratio": (t_self / t_ref) if t_ref else None,
                    "ref_first_eval": t_ref is not None and t_ref == first_eval})
    return out


def machine_info() -> dict:
    import jax

    from ga_gan.run import versions

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    vers = versions()
    for k, v in list(vers.items()):
        if v == "?":  # a package without __version__: ask its installed metadata
            try:
                from importlib.metadata import version
                vers[k] = version(k.replace("_", "-"))
            except Exception:
                pass
    return {"cores": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "loadavg_at_end": [round(x, 2) for x in load] if load else None,
            "versions": vers}


# --- outputs ----------------------------------------------------------------------------------


def write_markdown(path: Path, report: dict) -> None:
    s_list = report["methods"]
    metrics = report["fd_metrics"]
    primary = metrics[0] if metrics else None
    thr = report["thresholds"]
    head = ["method", "steps / gens", "train s"]
    for k in metrics:
        head += [f"final {k}", f"best {k} (at s)"]
    head += ["final real_score", "final fake_score"]
    head += [f"s to {primary} ≤ {fmt(t['value'])} ({t['name']}): first / held" for t in thr]
    rows = []
    for s in s_list:
        row = [s["method"], fmt(s["steps"]), f"{s['time_s']:.1f}"]
        for k in metrics:
            row.append(fmt(s["final"].get(k)))
            b = s["best"].get(k)
            row.append(f"{fmt(b['value'])} ({b['time_s']:.1f})" if b else "—")
        row += [fmt(s["final_scores"].get("real_score")), fmt(s["final_scores"].get("fake_score"))]
        for t in thr:
            reach = s["reached"].get(t["name"])
            # reports written before "held" existed are re-rendered with "—" there
            held = s.get("held", {}).get(t["name"])
            row.append(" / ".join(f"{x:.1f}" if x is not None else "—" for x in (reach, held)))
        rows.append(row)
    lines = [f"# {report['dataset']}: {', '.join(s['method'] for s in s_list)} at "
             f"{report['budget']:g} s of training each", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("")
    lines.append("Training seconds are the Runner's `time_s` (first-step compilation included, "
                 "Fréchet evaluation, sample grids and checkpoints excluded). Final Fréchet "
                 "distances are measured at each run's last step; threshold times are the first "
                 "evaluation at or below the bar (first) and the first evaluation from which the "
                 f"median of {HELD_WINDOW} consecutive evaluations is (held); both are only as "
                 "fine as `eval_every` "
                 + ", ".join(f"{s['method']} {s['eval_every']}" for s in s_list)
                 + f" ({', '.join(str(s['evaluations']) for s in s_list)} evaluations).")
    lines.append("")
    if report["ratios"]:
        lines.append("## Ratios")
        lines.append("")
        for r in report["ratios"]:
            ref = REFERENCE
            lines.append(f"- **{r['method']}/{ref} final {r['metric']} at equal wall-clock**: "
                         f"{r['final_ratio']:.2f}x")
            if not r.get("improved", True):
                lines.append(f"  - {r['method']} never got below its initial {r['metric']} "
                             f"({fmt(r['initial'])}): no time-to-quality ratio")
            elif r["time_ratio"] is not None:
                lines.append(f"  - time to the same quality ({r['metric']} ≤ {fmt(r['target'])},"
                             f" {r['method']}'s best): {r['method']} {r['t_method']:.1f} s vs "
                             f"{ref} {r['t_reference']:.1f} s -> {r['time_ratio']:.1f}x"
                             + (f" ({ref} was there by its first evaluation after 0 s: its time "
                                "is an upper bound)" if r.get("ref_first_eval") else ""))
            elif r["t_reference"] is not None:
                lines.append(f"  - {ref} was already at {r['metric']} ≤ {fmt(r['target'])} "
                             f"({r['method']}'s best, at {r['t_method']:.1f} s) at 0 s")
            else:
                lines.append(f"  - {ref} never logged {r['metric']} ≤ {fmt(r['target'])} "
                             f"({r['method']}'s best) within its budget")
        lines.append("")
    lines.append("## Reproduce")
    lines.append("")
    lines.append("```")
    lines.append(report["command"])
    lines.append("```")
    lines.append("")
    m = report["machine"]
    v = m["versions"]
    lines.append("## Machine")
    lines.append("")
    lines.append(f"- {m['cores']} cores ({m['cpu']}), {m['platform']}; jax backend "
                 f"`{m['backend']}`; load average at the end {m['loadavg_at_end']}")
    lines.append("- " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "backend"))
    lines.append(f"- date: {report['date']}; total wall time of the script "
                 f"{report['script_wall_s']:.0f} s")
    lines.append("")
    lines.append("Timings come from one sequential run on a shared machine; compare methods "
                 "within one report, not across reports.")
    path.write_text("\n".join(lines) + "\n")


def plot_fd(path: Path, report: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = report["fd_metrics"] or ["fd_pixels"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, k in zip(axes[0], metrics):
        for i, s in enumerate(report["methods"]):
            pts = [(p["time_s"], p[k]) for p in s["curve"] if k in p and _finite(p[k])]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, color=colors[i % len(colors)],
                        label=f"{s['method']} ({fmt(s['steps'])} steps)")
        if k == metrics[0]:
            for t in report["thresholds"]:
                ax.axhline(t["value"], color="gray", lw=0.8, ls=":")
                ax.annotate(t["name"], (0, t["value"]), xycoords=("axes fraction", "data"),
                            fontsize=7, color="gray", va="bottom")
        ax.set_yscale("log")
        ax.set_xlabel("training wall-clock (s)")
        ax.set_ylabel(k)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(f"{report['dataset']}: Fréchet distance vs training time "
                 f"(budget {report['budget']:g} s each)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compose_samples(path: Path, report: dict) -> None:
    from PIL import Image, ImageDraw, ImageFont

    tiles = []
    for s in report["methods"]:
        p = Path(s["run_dir"]) / "samples.png"
        if p.is_file():
            tiles.append((s, Image.open(p).convert("RGB")))
    if not tiles:
        return
    target = max(256, max(im.height for _, im in tiles))
    scaled = []
    for s, im in tiles:
        factor = max(1, round(target / im.height))
        scaled.append((s, im.resize((im.width * factor, im.height * factor), Image.NEAREST)))
    font = ImageFont.load_default()
    label_h, pad = 36, 10
    width = sum(im.width for _, im in scaled) + pad * (len(scaled) + 1)
    height = max(im.height for _, im in scaled) + label_h + pad * 2
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = pad
    for s, im in scaled:
        primary = (report["fd_metrics"] or ["fd_pixels"])[0]
        draw.text((x, pad), s["method"], fill="black", font=font)
        draw.text((x, pad + 14), f"{fmt(s['steps'])} steps, {s['time_s']:.0f} s, "
                  f"{primary} {fmt(s['final'].get(primary))}", fill="black", font=font)
        canvas.paste(im, (x, pad + label_h))
        x += im.width + pad
    canvas.save(path)


# --- entry point ------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--budget", type=float, help="training seconds per method "
                   "(default: digits 60, mnist 180, anime 600)")
    p.add_argument("--methods", default="adam,evolve",
                   help=f"comma-separated, from: {', '.join(methods())}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results", help="where the report files go")
    p.add_argument("--runs-dir", default="runs/bench", help="run folders <dir>/<dataset>-<method>")
    p.add_argument("--data", help="override the config's data (KIND:PATH or a directory)")
    p.add_argument("--fd-samples", type=int, help="generated/real images per Fréchet distance")
    p.add_argument("--eval-every", type=int,
                   help="evaluate every N steps for every method (default: per method, about "
                        "12-25 evaluations inside the budget)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every method, e.g. --set evolve.g.pop=32")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rewrite the .md and plots from <out>/<dataset>.json")
    return p.parse_args(argv)


def finish(report: dict, out: Path) -> None:
    """Derived numbers (thresholds, times to reach them, ratios) and the files."""
    summaries, fd_metrics = report["methods"], report["fd_metrics"]
    primary = fd_metrics[0] if fd_metrics else None
    report["thresholds"] = thresholds_for(summaries, primary) if primary else []
    for s in summaries:
        s["reached"] = {t["name"]: first_time(s["curve"], primary, t["value"])
                        for t in report["thresholds"]}
        s["held"] = {t["name"]: held_time(s["curve"], primary, t["value"])
                     for t in report["thresholds"]}
    report["ratios"] = [r for k in fd_metrics for r in ratios(summaries, k)]
    name = report["dataset"]
    (out / f"{name}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    write_markdown(out / f"{name}.md", report)
    plot_fd(out / f"{name}_fd.png", report)
    compose_samples(out / f"{name}_samples.png", report)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ga_gan.errors import UserError
    from ga_gan.run import load_data

    if args.report_only:
        out = Path(args.out)
        finish(json.loads((out / f"{args.dataset}.json").read_text()), out)
        print((out / f"{args.dataset}.md").read_text())
        return 0
    spec = DATASETS[args.dataset]
    if args.budget is None:
        args.budget = spec.budget
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    known = methods()
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        print(f"error: unknown method(s) {', '.join(unknown) or '(none)'}; known: "
              f"{', '.join(known)}", file=sys.stderr)
        return 2
    # Import every method's code now, so that all runs use one consistent snapshot of ga_gan
    # even when its files change while the benchmark runs.
    import ga_gan.methods.adam  # noqa: F401
    import ga_gan.methods.evolve  # noqa: F401
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    try:
        configs = {n: build_config(args, n, known[n], spec) for n in names}
        # every method gets the same images (the config's data section must agree)
        data_keys = {json.dumps(vars(c.data), sort_keys=True, default=str)
                     for c in configs.values()}
        first = configs[names[0]]
        dataset = load_data(first, log) if len(data_keys) == 1 else None
        summaries = []
        for n in names:
            cfg = configs[n]
            log(f"=== {n}: ga-gan {known[n].runner}, budget {cfg.time_budget:g} s, "
                f"eval_every {cfg.log.eval_every}, fd {list(cfg.log.fd)} x {cfg.log.fd_samples}")
            s = run_method(n, known[n], cfg, dataset, log)
            log(f"=== {n}: {s['steps']} steps in {s['time_s']:.1f} s training "
                f"({s['wall_s']:.1f} s wall); final {s['final']}")
            summaries.append(s)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130

    fd_metrics = []
    for s in summaries:
        fd_metrics += [k for k in s["fd_metrics"] if k not in fd_metrics]
    report = {
        "dataset": args.dataset,
        "budget": float(args.budget),
        "seed": args.seed,
        "methods": summaries,
        "fd_metrics": fd_metrics,
        "reference": REFERENCE,
        "command": "python benchmarks/side_by_side.py " + shlex.join(argv),
        "machine": machine_info(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "script_wall_s": time.perf_counter() - t_start,
        "configs": {n: _config_dict(c) for n, c in configs.items()},
    }
    finish(report, out)
    log(f"wrote {out}/{args.dataset}.md, .json, _fd.png, _samples.png")
    print((out / f"{args.dataset}.md").read_text())
    return 0


def _config_dict(cfg) -> dict:
    from ga_gan.config import to_dict
    return to_dict(cfg)


if __name__ == "__main__":
    sys.exit(main())
