"""Throw generated bad invocations and bad files at the `ga-gan` CLI; count what goes wrong.

    python benchmarks/fuzz_cli.py [--cases 160] [--workers 2] [--seed 0] [--timeout 120]

Every case is a real `python -m ga_gan.cli ...` process in a scratch folder. A case expects
either a refusal (exit 2, exactly one stderr line, starting with `error:`) or, for damaged
checkpoints, a refusal or a run that resumes from an intact step and says so. Reported:
tracebacks (any "Traceback" on stderr), hangs (no exit within --timeout), exit-0 nonsense
(exit 0 where a refusal was due), and bad form (exit 2 but not exactly one `error:` line).
Flags and config values are refused before JAX is imported, so most cases take well under a
second; data, output-folder and checkpoint cases import JAX and take seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--no-progress", "--pop", "4", "--set", "log.eval_every=0", "--set", "log.image_every=0",
         "--set", "model.g_hidden=8,16", "--set", "model.d_hidden=16,8",
         "--set", "evolve.batch=16", "--set", "log.checkpoint_every=10"]
COMMANDS = ("evolve", "train", "sample", "invert")
COUNT_KEYS = ("evolve.batch", "train.batch", "log.every", "log.fd_samples", "log.max_to_keep",
              "log.steps_per_call", "evolve.g.pop", "evolve.d.pop", "evolve.g.rank",
              "model.latent_dim", "train.d_steps", "evolve.hybrid.mu", "evolve.generations",
              "train.steps")
BAD_NUMBERS = ("0", "-1", "-7", "abc", "", "1.5", "nan", "1e999", "0x10", "4294967296000")
BAD_SEEDS = ("-1", "4294967296", "99999999999999999999", "abc", "1.5", "")
BAD_FLAG_VALUES = {"--pop": BAD_NUMBERS, "--generations": ("0", "-1", "abc", "-99"),
                   "--steps": ("0", "-3", "x"), "--time-budget": ("0", "-5", "nan", "-inf", "x"),
                   "--seed": BAD_SEEDS, "--rank": ("0", "-2", "x"), "--pop-g": ("1", "0", "q"),
                   "--pop-d": ("0", "-4", "1"), "--out": ("", "/proc/x", "/dev/null"),
                   "--mode": ("nope", ""), "--strategy": ("no_such", "", "cma_es!")}


@dataclass
class Case:
    name: str
    args: list
    expect: str = "error"  # "error" | "error-or-resume"
    setup: object = None  # callable(folder) run before the process starts
    resumed: object = None  # callable(folder) -> bool: an exit 0 that resumed correctly
    result: dict = field(default_factory=dict)


def write_idx(path: Path, magic: int, dims: tuple, payload: bytes = b"") -> None:
    path.write_bytes(struct.pack(">I" + "I" * len(dims), magic, *dims) + payload)


def generate(rng: random.Random, n: int, base_run: Path) -> list[Case]:
    """n cases: each kind of damaged checkpoint once (they resume a run: the slowest), then
    draws from every other family of bad input, each family at least once."""
    families = [fam_flag, fam_set, fam_argparse, fam_config_file, fam_out, fam_data_folder,
                fam_idx, fam_seed_other]
    weights = [6, 6, 4, 2, 2, 2, 2, 2]
    cases = [fam_checkpoint(rng, i, base_run, kind) for i, kind in enumerate(CKPT_DAMAGE)]
    cases += [fam(rng, len(cases), base_run) for fam in families]
    while len(cases) < n:
        fam = rng.choices(families, weights)[0]
        cases.append(fam(rng, len(cases), base_run))
    return cases


def fam_flag(rng, i, base):
    flag = rng.choice(list(BAD_FLAG_VALUES))
    cmd = "train" if flag == "--steps" else "evolve"
    args = [cmd, f"{flag}={rng.choice(BAD_FLAG_VALUES[flag])}"] + (["--out", "r"] if flag != "--out" else [])
    if flag == "--rank" and rng.random() < 0.5:
        args += ["--strategy", "lowrank_es"]
    return Case(f"{i}-flag{flag}", args)


def fam_set(rng, i, base):
    key = rng.choice(COUNT_KEYS)
    cmd = "train" if key.startswith("train") else "evolve"
    return Case(f"{i}-set-{key}", [cmd, "--set", f"{key}={rng.choice(BAD_NUMBERS)}", "--out", "r"])


def fam_argparse(rng, i, base):
    choices = [["evolve", "--bogus-flag"], ["evolve", "--pop"], ["sample"], [],
               ["nonsense"], ["train", "--pop", "4"], ["invert", "--run"],
               ["evolve", "--set"], ["evolve", "--set", "noequals"],
               ["evolve", "--set", "model.nonsense=1"], ["sample", "--run", "x", "--n", "q"],
               ["evolve", "--data", "nosuchkind:/x"], ["evolve", "--coordinator", "h:1"],
               ["invert", "--run", "x", "--out", "o", "--distance", "nope"],
               ["evolve", "--set", "log.fd=pixels,bogus"], ["evolve", "--config", "no/such.toml"]]
    return Case(f"{i}-argparse", rng.choice(choices))


def fam_config_file(rng, i, base):
    kind = rng.choice(["binary", "latin1", "types", "table", "toml"])
    content = {"binary": bytes(rng.randrange(256) for _ in range(64)),
               "latin1": "seed = 1\n# caf\xe9\n".encode("latin-1"),
               "types": b"[model]\nwidth = [1, 2]\n",
               "table": b"evolve = 3\n",
               "toml": b"[evolve\nbatch = \n"}[kind]

    def setup(folder):
        (folder / "bad.toml").write_bytes(content)
    return Case(f"{i}-config-{kind}", ["evolve", "--config", "bad.toml", "--out", "r"],
                setup=setup)


def fam_out(rng, i, base):
    kind = rng.choice(["proc", "file", "under-file", "sample-proc", "sample-dir",
                       "invert-proc", "ckpt-dir"])

    def setup(folder):
        (folder / "f").write_text("a file")
        (folder / "d.png").mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "t.png")
    args = {"proc": ["evolve", "--out", "/proc/forbidden"],
            "file": ["evolve", "--out", "f"],
            "under-file": ["train", "--out", "f/run"],
            "sample-proc": ["sample", "--run", base, "--out", "/proc/forbidden/x.png"],
            "sample-dir": ["sample", "--run", base, "--out", "d.png"],
            "invert-proc": ["invert", "--run", base, "--target", "t.png", "--out", "/proc/x"],
            "ckpt-dir": ["evolve", "--out", "r", "--set", "checkpoint_dir=/proc/x"]}[kind]
    return Case(f"{i}-out-{kind}", args, setup=setup)


def fam_seed_other(rng, i, base):
    cmd = rng.choice(["sample", "invert"])

    def setup(folder):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "t.png")
    args = ([cmd, "--run", base, "--seed", rng.choice(BAD_SEEDS), "--out"] +
            (["s.png"] if cmd == "sample" else ["inv", "--target", "t.png"]))
    return Case(f"{i}-seed-{cmd}", args, setup=setup)


def fam_data_folder(rng, i, base):
    kind = rng.choice(["fifo", "loop", "dangling", "empty", "garbage", "mixed-special"])

    def setup(folder):
        d = folder / "pics"
        d.mkdir()
        if kind in ("fifo", "mixed-special"):
            os.mkfifo(d / "pipe.jpg")
        if kind in ("loop", "mixed-special"):
            os.symlink("b.jpg", d / "a.jpg")
            os.symlink("a.jpg", d / "b.jpg")
        if kind in ("dangling", "mixed-special"):
            os.symlink("gone.png", d / "x.png")
        if kind == "garbage":
            for j in range(3):
                (d / f"g{j}.png").write_bytes(bytes(rng.randrange(256) for _ in range(100)))
        if kind == "empty":
            (d / "e.jpg").write_bytes(b"")
    return Case(f"{i}-folder-{kind}", ["evolve", "--data", "folder:pics", "--out", "r",
                                       "--set", "data.cache_dir=cache"], setup=setup)


def fam_idx(rng, i, base):
    kind = rng.choice(["zero", "overflow", "magic", "truncated", "labels", "random"])

    def setup(folder):
        d = folder / "mnist"
        d.mkdir()
        img, lab = d / "train-images-idx3-ubyte", d / "train-labels-idx1-ubyte"
        dims = {"zero": (0, 28, 28), "overflow": (2**31, 2**31, 4), "magic": (2, 28, 28),
                "truncated": (5, 28, 28), "labels": (2, 28, 28), "random": (3, 28, 28)}[kind]
        payload = bytes(2 * 28 * 28) if kind in ("magic", "labels") else b"\0" * 100
        write_idx(img, 0x999 if kind == "magic" else 0x803, dims, payload)
        write_idx(lab, 0x801, (7 if kind == "labels" else dims[0],), b"\0" * 2)
        if kind == "random":
            img.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
    return Case(f"{i}-idx-{kind}", ["evolve", "--data", "mnist:mnist", "--out", "r",
                                    "--set", "model.resolution=28"], setup=setup)


CKPT_DAMAGE = ("truncate", "flip", "delete-meta", "garbage-meta")


def fam_checkpoint(rng, i, base, kind):

    def setup(folder):
        run = folder / "run"
        shutil.copytree(base, run)
        step = run / "checkpoints" / "20"
        files = sorted(p for p in step.rglob("*") if p.is_file())
        target = rng.choice(files)
        if kind == "truncate":
            with open(target, "r+b") as f:
                f.truncate(rng.randrange(max(1, target.stat().st_size)))
        elif kind == "flip":
            data = bytearray(target.read_bytes())
            for _ in range(max(1, len(data) // 20)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            target.write_bytes(bytes(data))
        elif kind == "delete-meta":
            (step / "meta" / "metadata").unlink()
        else:
            (step / "meta" / "metadata").write_text("{not json")
    def resumed(folder):  # every generation once, in order (from an intact step)
        lines = (folder / "run" / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["generation"] for line in lines] == list(range(1, 31))
    return Case(f"{i}-ckpt-{kind}", ["evolve", "--out", "run", "--generations", "30", *QUICK],
                expect="error-or-resume", setup=setup, resumed=resumed)


def run_case(case: Case, scratch: Path, timeout: float) -> Case:
    folder = Path(tempfile.mkdtemp(prefix="case-", dir=scratch))
    if case.setup:
        case.setup(folder)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-m", "ga_gan.cli", *map(str, case.args)],
                           cwd=folder, env=env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = None, str(e.stdout or ""), str(e.stderr or "")
    ok_resume = rc == 0 and case.resumed is not None and case.resumed(folder)
    case.result = {"rc": rc, "seconds": round(time.perf_counter() - t0, 2), "verdict":
                   verdict(case, rc, err, ok_resume), "stderr": err[-600:]}
    shutil.rmtree(folder, ignore_errors=True)
    return case


def verdict(case: Case, rc, err: str, ok_resume: bool) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    if rc is None:
        return "hang"
    if "Traceback" in err:
        return "traceback"
    if rc == 0:
        return "ok" if case.expect == "error-or-resume" and ok_resume else "exit-0 nonsense"
    if rc == 2 and len(lines) - sum("is damaged" in x for x in lines) == 1 and \
            lines[-1].startswith("error: "):
        return "ok"
    return "bad form"


def make_base_run(scratch: Path) -> Path:
    run = scratch / "base-run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-m", "ga_gan.cli", "evolve", "--generations", "20",
                    "--out", str(run), *QUICK], env=env, check=True, capture_output=True)
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=160)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--json", help="write every case's result here")
    a = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ga-gan-fuzz-") as tmp:
        scratch = Path(tmp)
        base = make_base_run(scratch)
        cases = generate(random.Random(a.seed), a.cases, base)
        with ThreadPoolExecutor(a.workers) as pool:
            done = list(pool.map(lambda c: run_case(c, scratch, a.timeout), cases))
    counts: dict = {}
    for c in done:
        counts[c.result["verdict"]] = counts.get(c.result["verdict"], 0) + 1
    bad = [c for c in done if c.result["verdict"] != "ok"]
    for c in bad:
        print(f"{c.result['verdict']}: {c.name}: ga-gan {' '.join(map(str, c.args))}\n"
              f"    {c.result['stderr'].strip()[-400:]}")
    slow = sorted(done, key=lambda c: -c.result["seconds"])[:3]
    print(f"{len(done)} cases in {time.perf_counter() - t0:.0f} s with {a.workers} workers: "
          f"{counts.get('ok', 0)} ok, {counts.get('traceback', 0)} tracebacks, "
          f"{counts.get('hang', 0)} hangs, {counts.get('exit-0 nonsense', 0)} exit-0 nonsense, "
          f"{counts.get('bad form', 0)} bad form; slowest "
          + ", ".join(f"{c.name} {c.result['seconds']} s" for c in slow))
    if a.json:
        Path(a.json).write_text(json.dumps([{"name": c.name, "args": list(map(str, c.args)),
                                             **c.result} for c in done], indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
