"""Evolution (pure, or a hybrid) against Adam on the same nets, over seeds and budgets.

    python benchmarks/evolve_quality.py --dataset mnist-evolve --data mnist:../shared/data/mnist \\
        --budgets adam=300,evolve=3600 --seeds 0,1,2 --name evolve_mnist
    python benchmarks/evolve_quality.py --dataset anime-evolve \\
        --data folder:../shared/data/anime-faces-64/images --budgets adam=1800,evolve=1800 \\
        --seeds 0,1,2 --name evolve_anime
    python benchmarks/evolve_quality.py --dataset mnist --budgets adam=180,hybrid-egan=180 \\
        --seeds 0,1,2 --at 60,120,180 --name hybrid_mnist

Each (method, seed) runs sequentially in this process through `side_by_side`'s machinery (same
config building, same final-checkpoint evaluation), each with its own training budget: the bar
compares evolution after 60 minutes with Adam after 5. Every finished run is written to
<out>/<name>.json at once, and a rerun with the same --name skips the runs already there, so a
3-hour series survives an interruption. --report-only rewrites the report from the JSON.

The report (<name>.md): per method the median over seeds (and each seed) of the primary Fréchet
distance and classifier_score at the --at times, final values, generations per second; the
real test images' own scores (the ceiling of classifier_score, the floor of the Fréchet
distance); and, for every other seed, its final primary distance against Adam's median at
Adam's budget, and each method's median over its seeds against that (issue 11's bar reads the
seeds, issue 15's the medians); the classifier's reading of the grids (its `confident` share
beside real images'). Curves (<name>_curves.png) and the final grids of every run
(<name>_samples.png).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import side_by_side as sbs  # noqa: E402  (the benchmark next door)

from ga_gan.report import finite, fmt  # noqa: E402

REFERENCE = "adam"


def parse_budgets(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, secs = part.partition("=")
        if not sep:
            raise ValueError(f"--budgets takes METHOD=SECONDS pairs, got {part!r}")
        out[name.strip()] = float(secs)
    return out


def value_at(curve: list[dict], key: str, t: float):
    """The last evaluation at or before training second t (None before the first)."""
    best = None
    for p in curve:
        if p["time_s"] <= t and key in p and finite(p[key]):
            best = p[key]
    return best


def real_ceiling(cfg, dataset, log) -> dict:
    """The real test images scored as if generated: classifier_score's ceiling and the
    Fréchet distances' floor at the runs' sample count."""
    from ga_gan.data.pixels import to_model_range
    from ga_gan.metrics import make_evaluators
    from ga_gan.metrics.score import make_scorers
    from ga_gan.run import load_data
    from ga_gan.config import apply_overrides

    test = load_data(apply_overrides(cfg, {"data.split": "test", "data.limit": None}), log)
    n = min(cfg.log.fd_samples, len(test.images))
    real = to_model_range(test.images[:n])
    out = {k: float(ev(real)) for k, ev in make_evaluators(
        list(cfg.log.fd), dataset.images, dataset.name, n_samples=n,
        labelled_dataset=dataset, log=log).items()}
    for scorer in make_scorers(tuple(cfg.log.scores), dataset.images.shape[1:],
                               dataset_name=dataset.name, labelled_dataset=dataset, log=log):
        out.update(scorer(real))
    return {"images": n, **out}


def run_all(args, report: dict, path: Path, log) -> None:
    from ga_gan.run import load_data

    known = sbs.methods()
    spec = sbs.DATASETS[args.dataset]
    done = {(r["method"], r["seed"]) for r in report["runs"]}
    dataset = None
    for seed in args.seeds:
        for name, budget in args.budgets.items():
            if (name, seed) in done:
                log(f"=== {name} seed {seed}: in {path.name} already, skipped")
                continue
            ns = SimpleNamespace(**{**vars(args), "budget": budget, "seed": seed,
                                    "runs_dir": str(Path(args.runs_dir) / f"seed{seed}")})
            cfg = sbs.build_config(ns, name, known[name], spec)
            if dataset is None:
                dataset = load_data(cfg, log)
                if "ceiling" not in report and cfg.log.scores:
                    report["ceiling"] = real_ceiling(cfg, dataset, log)
            log(f"=== {name} seed {seed}: budget {budget:g} s, eval_every {cfg.log.eval_every}")
            s = sbs.run_method(name, known[name], cfg, dataset, log)
            s["seed"], s["budget"], s["command"] = seed, budget, report["command"]
            log(f"=== {name} seed {seed}: {s['steps']} steps in {s['time_s']:.0f} s; "
                f"final {s['final']}")
            report["runs"].append(s)
            save(report, path)


def method_rows(report: dict, key: str, score: str) -> list[list[str]]:
    rows = []
    by_method: dict[str, list[dict]] = {}
    for r in report["runs"]:
        by_method.setdefault(r["method"], []).append(r)
    for name, runs in by_method.items():
        runs.sort(key=lambda r: r["seed"])
        for t in report["at"]:
            vals = [reading(r, key, t) for r in runs if t <= r["budget"]]
            scs = [score_at(r, score, t) for r in runs if t <= r["budget"]]
            if not vals:
                continue
            rows.append([name, f"{t:g}", _med(vals), " / ".join(fmt(v) for v in vals),
                         _med(scs), " / ".join(fmt(v) for v in scs),
                         " / ".join(fmt(r["steps"] / max(r["time_s"], 1e-9), 3) for r in runs)])
    return rows


def _final(run: dict, key: str):
    pts = [p for p in run["curve"] if key in p]
    return pts[-1][key] if pts else None


def _med(vals: list) -> str:
    vals = [v for v in vals if finite(v)]
    return fmt(statistics.median(vals)) if vals else "—"


def _ended(run: dict, t: float) -> bool:
    """Training second t is at or past the run's end (its budget: time_s overshoots it by up
    to a step)."""
    return t >= min(run["time_s"], run["budget"])


def reading(run: dict, key: str, t: float):
    """A run's value at training second t: its final state from its budget on."""
    return run["final"].get(key) if _ended(run, t) else value_at(run["curve"], key, t)


def score_at(run: dict, key: str, t: float):
    """A classifier score at training second t: as `reading`, but scores live only in the curve
    (`final` holds the Fréchet distances), so from the run's end on its last evaluation."""
    return _final(run, key) if _ended(run, t) else value_at(run["curve"], key, t)


def verdict(report: dict, key: str) -> list[str]:
    """Each evolutionary seed's final distance against Adam's median (and its own seed's Adam) at
    `bar_at` seconds (its whole budget by default): the issue's bar is evolution at 60 minutes
    against Adam at 5."""
    ref = [r for r in report["runs"] if r["method"] == REFERENCE and key in r["final"]]
    if not ref:
        return []
    at = report.get("bar_at")
    vals = [v for v in (reading(r, key, at) if at else r["final"][key] for r in ref)
            if finite(v)]
    at = at or ref[0]["budget"]
    if not vals:
        return [f"Adam logged no {key} by {at:g} s."]
    ref_val = statistics.median(vals)
    # the same seed's Adam run too: "same nets for both" read per seed
    own = {r["seed"]: reading(r, key, at) for r in ref}
    lines = [f"Adam's median {key} at {at:g} s of training: {fmt(ref_val)}."]
    finals: dict[str, list] = {}
    for r in report["runs"]:
        if r["method"] != REFERENCE and key in r["final"]:
            v = r["final"][key]
            finals.setdefault(r["method"], []).append(v)
            mine = own.get(r["seed"])
            same_seed = (f"; {v / mine:.2f}x its own seed's Adam, {fmt(mine)}"
                         if finite(mine) else "")
            lines.append(f"- {r['method']} seed {r['seed']} after {r['time_s']:.0f} s: {fmt(v)} "
                         f"= {v / ref_val:.2f}x Adam's median{same_seed} "
                         f"({'meets' if v <= ref_val else 'misses'} the bar)")
    # issue 15's bar is a median over seeds against Adam's median
    for method, vals in finals.items():
        vals = [v for v in vals if finite(v)]
        if len(vals) > 1:
            m = statistics.median(vals)
            lines.append(f"- **{method}, median of {len(vals)} seeds: {fmt(m)} = "
                         f"{m / ref_val:.2f}x Adam's median** "
                         f"({'meets' if m <= ref_val else 'misses'} the bar)")
    return lines


def against_start(report: dict, key: str) -> list[str]:
    """Each run's final distance as a share of its own generation-0 value (the Anime Face bar:
    below 50% at 30 minutes)."""
    lines = []
    for r in report["runs"]:
        start = next((p[key] for p in r["curve"] if p.get("generation") == 0 and key in p), None)
        end = r["final"].get(key)
        if finite(start) and finite(end) and start > 0:
            lines.append(f"- {r['method']} seed {r['seed']}: {fmt(start)} at generation 0 -> "
                         f"{fmt(end)} after {r['time_s']:.0f} s = {100 * end / start:.1f}% of "
                         f"its start ({'below' if end < start / 2 else 'not below'} half)")
    return lines


def legibility(report: dict) -> list[str]:
    """The grid half of issue 11's bar read by the classifier: the share of samples it labels
    with p >= 0.9 (`confident`) and the classes it finds, Adam at `bar_at` (its budget without
    one), every other run at its end, against real test images. A number beside the eye: the
    Fréchet distance can match while single samples stay illegible."""
    real = report.get("ceiling") or {}
    if not finite(real.get("confident")) or real["confident"] <= 0:
        return []
    lines = [f"Real test images: {fmt(real['confident'])} confident, "
             f"{fmt(real.get('classes_covered'))} classes covered."]
    for r in sorted(report["runs"], key=lambda r: (r["method"] != REFERENCE, r["method"],
                                                    r["seed"])):
        t = report.get("bar_at") if r["method"] == REFERENCE else None
        t = t or r["budget"]
        got = {k: score_at(r, k, t) for k in ("confident", "classes_covered")}
        if finite(got["confident"]):
            lines.append(f"- {r['method']} seed {r['seed']} at {t:g} s: {fmt(got['confident'])} "
                         f"confident ({100 * got['confident'] / real['confident']:.0f}% of "
                         f"real), {fmt(got['classes_covered'])} classes")
    return lines if len(lines) > 1 else []


def write_markdown(path: Path, report: dict) -> None:
    key, score = report["primary"], "classifier_score"
    head = ["method", "at s", f"median {key}", "per seed", f"median {score}", "per seed",
            "gens or steps / s"]
    methods = list(dict.fromkeys(r["method"] for r in report["runs"]))
    seeds = sorted({r["seed"] for r in report["runs"]})
    lines = [f"# {report['dataset']}: {', '.join(methods)}; seeds "
             f"{', '.join(map(str, seeds))}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in method_rows(report, key, score)]
    lines.append("")
    lines.append("Values at a time are the last evaluation at or before it; at or after a run's "
                 "budget, its final state (measured from its last checkpoint). Training seconds "
                 "are the Runner's `time_s` (compilation included, evaluation excluded).")
    if report.get("ceiling"):
        c = report["ceiling"]
        lines += ["", f"Real test images ({c['images']}) scored as if generated: "
                  + ", ".join(f"{k} {fmt(v)}" for k, v in c.items() if k != "images")
                  + " (classifier_score's ceiling, the Fréchet floor at this sample count)."]
    lines += ["", "## The bar", ""] + verdict(report, key)
    grid = legibility(report)
    if grid:
        lines += ["", "Samples the classifier reads with p >= 0.9 (`confident`): the grid, in "
                  "a number.", ""] + grid
    lines += ["", f"Against each run's own start ({key}):", ""] + against_start(report, key)
    # the runs may come from several invocations (a rerun skips the runs already done)
    commands = list(dict.fromkeys(r.get("command", report["command"]) for r in report["runs"]))
    lines += ["", "## Reproduce", "", "```", *commands, "```", ""]
    m = report.get("machine")
    lines += [f"Machine: {m['cores']} cores ({m['cpu']}), load at the end "
              f"{m['loadavg_at_end']}; {report['date']}; {report['script_wall_s']:.0f} s of wall "
              f"time in this invocation." if m else
              "Machine: not recorded (the last invocation was stopped before its end)."]
    path.write_text("\n".join(lines) + "\n")


def plot_curves(path: Path, report: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [report["primary"]] + (["classifier_score"] if report.get("ceiling", {}).get(
        "classifier_score") else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(6.5 * len(keys), 4.2), squeeze=False)
    colors = dict(zip(dict.fromkeys(r["method"] for r in report["runs"]),
                      plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, k in zip(axes[0], keys):
        for r in report["runs"]:
            pts = [(p["time_s"], p[k]) for p in r["curve"] if k in p and finite(p[k])]
            if pts:
                ax.plot(*zip(*pts), color=colors[r["method"]], lw=1, marker="o", ms=2,
                        label=f"{r['method']} seed {r['seed']}")
        if k in report.get("ceiling", {}):
            ax.axhline(report["ceiling"][k], color="gray", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log" if k.startswith("fd") else "linear")
        ax.set_xlabel("training seconds")
        ax.set_ylabel(k)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save(report: dict, path: Path) -> None:
    """The JSON after every run, so that a stopped series goes on from where it was."""
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")


def finish(report: dict, out: Path) -> None:
    name = report["name"]
    save(report, out / f"{name}.json")
    write_markdown(out / f"{name}.md", report)
    plot_curves(out / f"{name}_curves.png", report)
    runs = [{**r, "method": f"{r['method']} s{r['seed']}"} for r in report["runs"]]
    sbs.compose_samples(out / f"{name}_samples.png",
                        {"methods": runs, "fd_metrics": [report["primary"]]})


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, choices=sorted(sbs.DATASETS))
    p.add_argument("--budgets", default="adam=300,evolve=3600", type=parse_budgets,
                   help="METHOD=SECONDS,... (methods as side_by_side.py --methods)")
    p.add_argument("--seeds", default="0,1,2",
                   type=lambda s: [int(x) for x in s.split(",") if x.strip()])
    p.add_argument("--at", default="60,300,900,1800,3600",
                   type=lambda s: [float(x) for x in s.split(",") if x.strip()],
                   help="training seconds at which the table reads each curve")
    p.add_argument("--bar-at", type=float, help="Adam's training second the bar reads "
                   "(default: Adam's budget; e.g. 300 with adam=3600 gives both readings)")
    p.add_argument("--name", default=None, help="report name (default evolve_<dataset>)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--runs-dir", default="runs/evolve_quality")
    p.add_argument("--data", help="override the config's data (KIND:PATH)")
    p.add_argument("--fd-samples", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--report-only", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ga_gan.errors import UserError

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or f"evolve_{args.dataset.split('-')[0]}"
    path = out / f"{name}.json"
    unknown = [m for m in args.budgets if m not in sbs.methods()]
    if unknown:
        print(f"error: unknown method(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    report = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    if not args.report_only:
        report.update(name=name, dataset=args.dataset, seeds=args.seeds, at=args.at,
                      bar_at=args.bar_at,
                      command="python benchmarks/evolve_quality.py " + shlex.join(argv))
        interrupted = None
        try:
            run_all(args, report, path, log)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code
        except sbs.Interrupted as e:
            interrupted = e
        report.update(machine=sbs.machine_info(), script_wall_s=time.perf_counter() - t0,
                      date=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        if interrupted is not None:  # keep the machine with the runs done, for --report-only
            save(report, path)
            print(f"interrupted: {interrupted}; the runs before it are in {path}, and the same "
                  f"command goes on from there", file=sys.stderr)
            return 130
    keys = [k for r in report["runs"] for k in r["fd_metrics"]]
    report["primary"] = "fd_classifier" if "fd_classifier" in keys else (keys or ["fd_pixels"])[0]
    finish(report, out)
    print((out / f"{name}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
