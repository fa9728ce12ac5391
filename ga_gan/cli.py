"""`ga-gan` command line: parses flags into a RunConfig and calls the library. Nothing else.

Every user-facing problem is a `UserError`: one line on stderr, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ga_gan.errors import UserError
from ga_gan.invert.command import add_invert_parser, cmd_invert

# Named configs (`--config mnist`) ship inside the package.
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one `error:` line (usage stays on --help), like every other
    bad input."""

    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def _common(p: argparse.ArgumentParser, steps_flag: str) -> None:
    p.add_argument("--config", help="TOML config file, or a shipped config's name: "
                                    "digits, mnist, mnist-evolve, anime, anime-cpu, anime-evolve")
    p.add_argument("--data", metavar="KIND:PATH",
                   help="digits | mnist:DIR | cifar:DIR | folder:DIR (default: digits)")
    p.add_argument(steps_flag, type=int, dest="steps", metavar="N",
                   help="the run's total length (a resumed run stops where an uninterrupted "
                        "one would; raise it to extend a finished run)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="stop cleanly after this many seconds of training (across resumes)")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<command>-<data>)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its latest checkpoint (or in a bucket's "
                        "checkpoint directory, gs://BUCKET/PATH, with --out for the logs)")
    p.add_argument("--restart", action="store_true",
                   help="start over even if the run folder has checkpoints (deletes them)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config value, e.g. --set model.width=0.5 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    p.add_argument("--distributed", action="store_true",
                   help="many hosts: jax.distributed.initialize() first (TPU pods detect "
                        "themselves; elsewhere add the three flags below), then one global mesh")
    p.add_argument("--coordinator", metavar="HOST:PORT", help="with --distributed: process 0's address")
    p.add_argument("--num-processes", type=int, metavar="N", help="with --distributed")
    p.add_argument("--process-id", type=int, metavar="I", help="with --distributed")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ga-gan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evolve", help="evolve G and D populations with evosax (no backprop)")
    _common(ev, "--generations")
    ev.add_argument("--pop", type=int, help="population size of both G and D")
    ev.add_argument("--pop-g", type=int)
    ev.add_argument("--pop-d", type=int)
    ev.add_argument("--strategy", help="evosax strategy for both populations: open_es, snes, "
                                       "pgpe, sep_cma_es, simple_ga, ... (default open_es)")
    ev.add_argument("--rank", type=int, help="with --strategy lowrank_es: rank of each "
                                             "kernel's perturbation (default 4)")
    ev.add_argument("--mode", help="evolve (default) | hybrid")
    ev.add_argument("--hybrid", metavar="VARIANT",
                    help="with --mode hybrid: egan | adam-d | lamarck | lipizzaner | mustangs")

    tr = sub.add_parser("train", help="the Adam DCGAN baseline on the same nets and data")
    _common(tr, "--steps")

    sa = sub.add_parser("sample", help="write images from a run's current generator")
    sa.add_argument("--run", required=True, metavar="DIR")
    sa.add_argument("--n", type=int, default=64)
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--out", required=True, metavar="FILE", help=".png grid or .npz array")

    co = sub.add_parser("compare", help="one report (HTML or PNG) that compares run folders")
    co.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    co.add_argument("--out", required=True, metavar="FILE",
                    help="report.html (self-contained) or report.png")
    co.add_argument("--threshold", type=float, action="append", metavar="FD",
                    help="a Fréchet-distance bar for the time-to-threshold columns "
                         "(repeatable; default 2x and 1.25x the best final value)")

    add_invert_parser(sub)
    sub.add_parser("configs", help="list the named configs --config NAME accepts")
    return parser


def named_configs() -> dict[str, Path]:
    """NAME -> TOML file for `--config NAME`: the package's configs, overridden by ./configs."""
    found = {p.stem: p for p in sorted(PACKAGED_CONFIGS.glob("*.toml"))}
    local = Path("configs")
    if local.is_dir():
        found.update({p.stem: p for p in sorted(local.glob("*.toml"))})
    return dict(sorted(found.items()))


def cmd_configs(args: argparse.Namespace) -> int:
    """One line per named config: name, file, and the first line of its header comment."""
    for name, path in named_configs().items():
        first = next((line.lstrip("# ").strip() for line in path.read_text(errors="replace")
                      .splitlines() if line.startswith("#")), "")
        print(f"{name:<10} {path}  {first}")
    return 0


def _config_path(name: str) -> Path:
    """A TOML path as given, else a name: ./configs/NAME.toml, then the configs shipped in the
    package (so `--config mnist` works from any folder after a plain `pip install`)."""
    p = Path(name)
    if p.suffix == ".toml" or p.exists():
        return p
    local = Path("configs") / f"{name}.toml"
    if local.is_file():
        return local
    packaged = PACKAGED_CONFIGS / f"{name}.toml"
    return packaged if packaged.is_file() else p


def resolve_config(args: argparse.Namespace):
    """Config file (or the resumed run's own config), then flags, then --set overrides."""
    from ga_gan.config import apply_overrides, load_config, load_run_config, parse_set
    from ga_gan.validate import validate_config

    method = args.command
    if args.resume:
        cfg, saved_method = load_run_config(args.resume)
        if saved_method != method:
            raise UserError(f"{args.resume} is a '{saved_method}' run; use ga-gan {saved_method}")
        over = {"out": args.resume}
        if "://" in args.resume:  # a bucket's checkpoints: the run folder is --out (or as saved)
            over = {"out": args.out or cfg.out, "checkpoint_dir": args.resume}
    else:
        cfg = load_config(None if args.config is None else _config_path(args.config))
        over = {}
    if args.data is not None:
        over["data.spec"] = args.data
    if args.seed is not None:
        over["seed"] = args.seed
    if args.time_budget is not None:
        over["time_budget"] = args.time_budget
    if args.steps is not None:
        over["evolve.generations" if method == "evolve" else "train.steps"] = args.steps
    if args.no_progress:
        over["log.progress"] = False
    if method == "evolve":
        for role, own in (("g", args.pop_g), ("d", args.pop_d)):
            val = own if own is not None else args.pop  # --pop-g 0 is refused, not ignored
            if val is not None:
                over[f"evolve.{role}.pop"] = val
        if args.strategy is not None:
            over["evolve.g.name"] = over["evolve.d.name"] = args.strategy
        if getattr(args, "rank", None) is not None:
            over["evolve.g.rank"] = over["evolve.d.rank"] = args.rank
        if args.mode is not None:
            over["evolve.mode"] = args.mode
        if args.hybrid is not None:
            over["evolve.hybrid.variant"] = args.hybrid
            over.setdefault("evolve.mode", "hybrid")
    over.update(parse_set(args.set))
    cfg = apply_overrides(cfg, over)
    if method == "evolve" and args.rank is not None and "lowrank_es" not in (
            n.lower().replace("-", "_") for n in (cfg.evolve.g.name, cfg.evolve.d.name)):
        raise UserError(f"--rank applies to --strategy lowrank_es only, not "
                        f"'{cfg.evolve.g.name}'")
    if not args.resume and args.out is None and cfg.out == "runs/default":
        kind = cfg.data.spec.split(":")[0]
        cfg = apply_overrides(cfg, {"out": f"runs/{method}-{kind}"})
    elif args.out is not None and not args.resume:
        cfg = apply_overrides(cfg, {"out": args.out})
    validate_config(cfg, method)
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    if getattr(args, "distributed", False):  # before any other JAX work
        from ga_gan import distributed
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    elif getattr(args, "coordinator", None) or getattr(args, "num_processes", None):
        raise UserError("--coordinator/--num-processes/--process-id need --distributed")
    cfg = resolve_config(args)  # before importing JAX: a bad value fails in a blink
    import jax
    from ga_gan.run import Runner
    primary = jax.process_index() == 0
    log = print if primary else (lambda *a, **k: None)
    result = Runner(cfg, args.command, restart=args.restart, log=log).run()
    if not primary:
        return 0
    last = {k: round(v, 4) for k, v in result.last.items() if isinstance(v, float)}
    print(f"done: {result.out} at generation {result.generation} "
          f"({result.time_s:.1f} s training) {last}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from ga_gan.validate import check_seed, writable_file
    check_seed(args.seed)  # before JAX is imported (sample_run checks again, for library calls)
    writable_file(args.out)
    from ga_gan.sample import sample_run
    path = sample_run(args.run, n=args.n, seed=args.seed, out=args.out)
    print(f"wrote {args.n} images to {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ga_gan.compare import compare
    print(f"wrote {compare(args.runs, args.out, args.threshold)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        args = build_parser().parse_args(argv)
        if args.command == "configs":
            return cmd_configs(args)
        if args.command == "invert":
            return cmd_invert(args)
        if args.command == "sample":
            return cmd_sample(args)
        if args.command == "compare":
            return cmd_compare(args)
        return cmd_run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
