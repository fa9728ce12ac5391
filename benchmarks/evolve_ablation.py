"""Pure evolution, one lever at a time: same nets, data, seed and training budget per row.

    python benchmarks/evolve_ablation.py --dataset mnist-evolve --budget 300
    python benchmarks/evolve_ablation.py --dataset mnist-evolve --budget 300 --levers base,fm,hof

Every row is the dataset's config (`side_by_side.DATASETS`) plus one lever's overrides, run by
the same `side_by_side.run_method` (Runner, time budget, final evaluation from the checkpoint).
The table gives fd_classifier and classifier_score (the config's `log.scores`) at fixed
training times (the last evaluation at or before each time), the final scores of D, and
generations per training second. Writes <out>/evolve_ablation.md and .json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import side_by_side as sbs  # noqa: E402

def both(key: str, value) -> dict:
    """The same override for the G and the D population."""
    return {f"evolve.g.{key}": value, f"evolve.d.{key}": value}


# name -> (what changes, overrides on top of the config)
LEVERS: dict[str, tuple[str, dict]] = {
    "base": ("the config as it is", {}),
    "fm": ("G fitness: feature matching on D's features", {"evolve.g.fitness": "feature_matching"}),
    "fmbce": ("G fitness: log(feature matching) + log(-log D(G(z)))",
              {"evolve.g.fitness": "feature_matching_bce"}),
    "gwd": ("G mean weight decay 0.1 (adamw)",
            {"evolve.g.optimizer": "adamw", "evolve.g.weight_decay": 0.1}),
    "dwd": ("D mean weight decay 1.0 (adamw)",
            {"evolve.d.optimizer": "adamw", "evolve.d.weight_decay": 1.0}),
    "hof": ("G plays the D mean + a hall of fame of 5 past D means (every 50 gens)",
            {"evolve.hall_of_fame": 5, "evolve.hall_every": 50}),
    "d2": ("D evolves every 2nd generation", {"evolve.d_every": 2}),
    "dacc": ("D evolves only while its last accuracy is <= 0.8 (adaptive handicap)",
             {"evolve.d_max_accuracy": 0.8}),
    "dlr": ("D lr 0.001 (3x slower D)", {"evolve.d.lr": 0.001}),
    "glr": ("G lr 0.03 (3x)", {"evolve.g.lr": 0.03}),
    "batch64": ("64 images per generation (4x)", {"evolve.batch": 64}),
    "pop64": ("pop 64 both", {"evolve.g.pop": 64, "evolve.d.pop": 64}),
    # population against images per generation at the same cost (pop x batch = 4,096 on
    # mnist-evolve): more search directions on fewer images, or the reverse
    "pop512_b8": ("pop 512 both, 8 images per generation (same pop x batch)",
                  {**both("pop", 512), "evolve.batch": 8}),
    "pop128_b32": ("pop 128 both, 32 images per generation (same pop x batch)",
                   {**both("pop", 128), "evolve.batch": 32}),
    "rank1": ("rank 1", {"evolve.g.rank": 1, "evolve.d.rank": 1}),
    "rank8": ("rank 8 both", both("rank", 8)),
    "std02": ("std 0.02 both", {"evolve.g.std": 0.02, "evolve.d.std": 0.02}),
    "open_es": ("full-rank OpenES instead of low-rank", {"evolve.g.name": "open_es",
                                                         "evolve.d.name": "open_es"}),
    # sample-efficiency levers of issue 11 item 3 (README "Sample-efficiency levers")
    "std_decay": ("std x 0.999 per generation down to 0.01, both",
                  {**both("std_decay", 0.999), **both("std_min", 0.01)}),
    "lr_decay": ("lr x 0.999 per update down to 1/10 of the config's, both",
                 {**both("lr_decay", 0.999), "evolve.g.lr_min": 0.001, "evolve.d.lr_min": 0.0003}),
    "elite_g": ("G keeps its mean when the update scores worse on the batch",
                {"evolve.g.elite": True}),
    "elite": ("both keep their mean when the update scores worse on the batch",
              both("elite", True)),
    "unmirrored": ("independent noise draws instead of antithetic pairs, both",
                   both("mirrored", False)),
    "zscore": ("fitness shaping: z-scores instead of centred ranks, both",
               both("shaping", "z_score")),
    "raw": ("fitness shaping: raw fitness instead of centred ranks, both", both("shaping", "raw")),
    "snes": ("SNES (per-parameter std, full-rank) instead of low-rank, both",
             both("name", "snes")),
    "pgpe": ("PGPE (per-parameter std, full-rank) instead of low-rank, both",
             both("name", "pgpe")),
}


def value_at(curve: list[dict], key: str, t: float):
    """The last evaluation of `key` at or before t training seconds (None before the first)."""
    pts = [p[key] for p in curve if key in p and p["time_s"] <= t + 1e-6]
    return pts[-1] if pts else None


def table(report: dict) -> str:
    times = report["times"]
    head = ["lever", "change", "gens", "gens/s"]
    head += [f"fd_classifier @{t:g}s" for t in times] + [f"score @{t:g}s" for t in times]
    head += ["final fd_classifier", "final score", "final fd_pixels", "classes", "confident",
             "real / fake score"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in report["rows"]:
        c = s["curve"]
        fin = c[-1] if c else {}
        sc = s["final_scores"]
        row = [s["method"], LEVERS[s["method"]][0], f"{s['steps']:,}",
               f"{s['steps'] / max(s['time_s'], 1e-9):.2f}"]
        row += [sbs.fmt(value_at(c, "fd_classifier", t)) for t in times]
        row += [sbs.fmt(value_at(c, "classifier_score", t)) for t in times]
        row += [sbs.fmt(fin.get("fd_classifier")), sbs.fmt(fin.get("classifier_score")),
                sbs.fmt(fin.get("fd_pixels")), sbs.fmt(fin.get("classes_covered")),
                sbs.fmt(fin.get("confident")),
                f"{sbs.fmt(sc.get('real_score'))} / {sbs.fmt(sc.get('fake_score'))}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_markdown(path: Path, report: dict) -> None:
    m = report["machine"]
    text = [f"# Pure-evolution ablation on {report['dataset']}: one lever at a time, "
            f"{report['budget']:g} s of training each, seed {report['seed']}", "",
            table(report), "",
            "Each row changes one thing from the config "
            f"(`{sbs.DATASETS[report['dataset']].config}`); values at a time are the last "
            "evaluation at or before it; `final` values come from the run's last state. "
            "Training seconds are the Runner's `time_s` (compilation included, evaluation "
            "excluded). `final` is measured after the budget ran out, at the run's last "
            "generation (its time_s is slightly above the budget).", *report.get("notes", []),
            "", "## Reproduce", "", "```", report["command"], "```", "",
            "## Machine", "",
            f"- {m.get('cores', '?')} cores, jax backend `{m.get('backend', '?')}`; load "
            f"average before / after: {report['load_before']} / {report['load_after']}",
            f"- date: {report['date']}; total wall time {report['script_wall_s']:.0f} s", "",
            "The rows ran one after another on this machine: compare them within this report; "
            "the load average says whether other work shared it."]
    path.write_text("\n".join(text) + "\n")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist-evolve", choices=sorted(sbs.DATASETS))
    p.add_argument("--budget", type=float, default=300, help="training seconds per lever")
    p.add_argument("--levers", default=",".join(LEVERS), help=f"from: {', '.join(LEVERS)}")
    p.add_argument("--times", default="", help="report times in s (default: budget/3, 2/3, 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--runs-dir", default="runs/ablation")
    p.add_argument("--data")
    p.add_argument("--fd-samples", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rewrite the .md from <out>/evolve_ablation.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.report_only:
        out = Path(args.out)
        write_markdown(out / "evolve_ablation.md",
                       json.loads((out / "evolve_ablation.json").read_text()))
        print((out / "evolve_ablation.md").read_text())
        return 0
    names = [n.strip() for n in args.levers.split(",") if n.strip()]
    if not names or any(n not in LEVERS for n in names):
        print(f"error: unknown lever in {args.levers!r}; known: {', '.join(LEVERS)}",
              file=sys.stderr)
        return 2
    from ga_gan.errors import UserError
    from ga_gan.run import load_data

    spec = sbs.DATASETS[args.dataset]
    t_start, load_before = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    log = lambda msg: print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)
    rows = []
    try:
        dataset = None
        for n in names:
            method = sbs.Method("evolve", LEVERS[n][1], LEVERS[n][0])
            cfg = sbs.build_config(args, n, method, spec)
            dataset = dataset or load_data(cfg, log)
            log(f"=== {n}: {LEVERS[n][0]}")
            s = sbs.run_method(n, method, cfg, dataset, log)
            log(f"=== {n}: {s['steps']} generations in {s['time_s']:.1f} s; final {s['final']}")
            rows.append(s)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except sbs.Interrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        return 130
    times = ([float(t) for t in args.times.split(",")] if args.times else
             [round(args.budget * f) for f in (1 / 3, 2 / 3, 1)])
    report = {"dataset": args.dataset, "budget": args.budget, "seed": args.seed, "times": times,
              "rows": rows, "command": "python benchmarks/evolve_ablation.py " + shlex.join(argv),
              "machine": sbs.machine_info(), "load_before": load_before,
              "load_after": [round(x, 2) for x in os.getloadavg()],
              "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
              "script_wall_s": time.perf_counter() - t_start}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evolve_ablation.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    write_markdown(out / "evolve_ablation.md", report)
    print((out / "evolve_ablation.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
