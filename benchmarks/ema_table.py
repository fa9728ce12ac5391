"""One table of the EMA generator against the raw one, over seeds, from side_by_side.py reports.

    for s in 0 1 2; do
      python benchmarks/side_by_side.py --dataset digits --budget 60 --methods adam --seed $s \
          --out benchmarks/results/ema/digits-seed$s
    done
    python benchmarks/ema_table.py benchmarks/results/ema/digits-seed*/digits.json \
        --out benchmarks/results/ema_digits.md

An `adam` run logs both generators at every evaluation of one training trajectory (the
average only observes training): `fd_pixels` is the EMA generator's, `fd_pixels_raw` the last
iterate's, so the comparison is paired, same weights history, same latents.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ga_gan.report import fmt


def rows(reports: list[dict], metric: str) -> list[list[str]]:
    out = []
    for r in reports:
        for s in r["methods"]:
            f, b = s["final"], s["best"]
            if metric not in f or f"{metric}_raw" not in f:
                continue
            out.append([str(r["seed"]), s["method"], fmt(s["steps"]), f"{s['time_s']:.1f}",
                        fmt(f[metric]), fmt(f[f"{metric}_raw"]),
                        f"{f[metric] / f[f'{metric}_raw']:.2f}",
                        fmt(b[metric]["value"]), fmt(b[f"{metric}_raw"]["value"]),
                        str(r["machine"]["loadavg_at_end"])])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="+", help="side_by_side.py <dataset>.json files")
    p.add_argument("--metric", default="fd_pixels")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    reports = sorted((json.loads(Path(f).read_text()) for f in args.reports),
                     key=lambda r: r["seed"])
    m = args.metric
    head = ["seed", "method", "steps", "train s", f"final {m} (EMA)", f"final {m}_raw",
            "EMA / raw", f"best {m} (EMA)", f"best {m}_raw", "load average at end"]
    table = rows(reports, m)
    lines = [f"# {reports[0]['dataset']}: EMA generator vs raw generator, "
             f"{reports[0]['budget']:g} s of training, {len(reports)} seeds", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in table]
    lines += ["", f"`{m}` is the EMA generator (`log.ema`, 0.999 with warm-up, the default for "
              f"`train`); `{m}_raw` the last iterate of the same run, evaluated on the same "
              "latents at the same steps.", "", "Commands:", ""]
    lines += [f"    {r['command']}" for r in reports]
    v = reports[0]["machine"]
    lines += ["", f"Machine: {v['cores']} cores ({v['cpu']}), shared with other developers' "
              "work while this ran (see the load averages): steps per run vary with it.", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
