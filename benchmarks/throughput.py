"""Population fitness throughput: Python loop, vmap, lax.map, low-rank ES, one batched network.

For each model and population size it measures image forwards per second of
  D  population scoring: every D member scores `batch` real and `batch` fake images
     (2 * batch D forwards per member);
  G  population through D: every G member makes `batch` images, the D mean scores them
     (batch G forwards + batch D forwards per member);
with (a) a Python loop over members (a jitted single-member function; at most --loop-members
members are timed, the rate does not depend on the population), (b) `jax.vmap` over full-rank
members, (c) `lax.map` over full-rank members (best of several chunks), (d) low-rank ES
(`lowrank_es`, vmap and lax.map), and (e) one plain batched forward of a single network over the
same number of images (best chunking). Then the whole generation (ask + fitness + tell, both
populations, `Evolve.step`) and its peak memory, each configuration in a fresh subprocess
(VmHWM; XLA:CPU has no `memory_stats`), for full-rank OpenES in its best layout vs low-rank.

    python benchmarks/throughput.py                      # digits MLP + 32x32 DCGAN (full width)
    python benchmarks/throughput.py --pops 16,64 --models mlp --quick

Writes benchmarks/results/throughput.md, throughput.json and throughput.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from ga_gan.config import RunConfig, apply_overrides
from ga_gan.gan import losses as F
from ga_gan.gan import task
from ga_gan.strategies import evaluate_population
from ga_gan.strategies.lowrank import evaluate_lowrank, make_lowrank
from ga_gan.strategies.evosax_strategy import make_strategy
from ga_gan.gan import make_gan

MODELS = {
    "mlp": {},  # the digits default: MLP GAN for 8x8x1
    "dcgan32": {"model.name": "dcgan", "model.resolution": 32, "model.channels": 3,
                "model.width": 1.0},
}


def model_cfg(name: str, extra: dict | None = None) -> RunConfig:
    return apply_overrides(RunConfig(), {**MODELS[name], **(extra or {})})


def timed(fn, *args, min_time: float = 1.0, max_reps: int = 3) -> float:
    """Seconds per call after one compile/warm-up call: min over up to max_reps calls."""
    jax.block_until_ready(fn(*args))
    best, total, reps = float("inf"), 0.0, 0
    while reps < max_reps and (reps == 0 or total < min_time):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        dt = time.perf_counter() - t
        best, total, reps = min(best, dt), total + dt, reps + 1
    return best


class Problem:
    """One model's networks, data and member fitness functions (as in Evolve.step)."""

    def __init__(self, model: str, batch: int):
        self.cfg = model_cfg(model)
        self.gan = gan = make_gan(self.cfg.model)
        self.batch = batch
        g_vars, d_vars = gan.init(jax.random.key(0))
        self.g_params, self.g_stats = g_vars["params"], g_vars["batch_stats"]
        self.d_params, self.d_stats = d_vars["params"], d_vars["batch_stats"]
        m = self.cfg.model
        self.real = jax.random.uniform(jax.random.key(1), (batch, m.resolution, m.resolution,
                                                           m.channels), minval=-1, maxval=1)
        self.z = gan.latents(jax.random.key(2), batch)
        self.fake = gan.generate(self.g_params, self.g_stats, self.z)[0]

    def member(self, role: str):
        """Evolve's member fitness (ga_gan.gan.task) with the BCE objectives."""
        gan = self.gan
        if role == "d":
            return task.d_member(gan, F.loss_d, False, self.d_stats, self.real, self.fake)
        bce, higher, _ = F.g_objective("bce")
        return task.g_member(gan, higher, self.g_stats, self.z,
                             task.against_d(gan, bce, self.d_params, self.d_stats, None))

    def size(self, role):
        return self.gan.d_size if role == "d" else self.gan.g_size

    def unravel(self, role):
        return self.gan.unravel_d if role == "d" else self.gan.unravel_g

    def params(self, role):
        return self.d_params if role == "d" else self.g_params

    def images_per_member(self) -> int:
        return 2 * self.batch

    def population(self, role: str, pop: int) -> jax.Array:
        s = make_strategy("open_es", pop=pop, num_dims=self.size(role), std=0.05, lr=0.01)
        flat = jax.flatten_util.ravel_pytree(self.params(role))[0]
        return jax.jit(s.ask)(jax.random.key(3), s.init(jax.random.key(4), flat))[0]

    def plain(self, role: str, pop: int, chunk: int):
        """One network over pop * batch inputs (D: 2 batches of images; G: latents then D)."""
        gan, n = self.gan, pop * self.batch
        if role == "d":
            x = jnp.concatenate([jnp.tile(self.real, (pop, 1, 1, 1)),
                                 jnp.tile(self.fake, (pop, 1, 1, 1))])
            f = lambda xb: gan.discriminate(self.d_params, self.d_stats, xb)[0]
        else:
            x = jnp.tile(self.z, (pop, 1))
            f = lambda zb: gan.discriminate(self.d_params, self.d_stats,
                                            gan.generate(self.g_params, self.g_stats, zb)[0])[0]
        total = x.shape[0]
        c = min(chunk, total) if chunk else total
        if total % c:
            return None
        xs = x.reshape(total // c, c, *x.shape[1:])
        del n
        return jax.jit(lambda xs: jax.lax.map(f, xs)), xs


def fitness_rates(prob: Problem, role: str, pop: int, args, skip: set) -> dict:
    """Image forwards per second for every layout; `skip` holds layouts too slow to try."""
    imgs = pop * prob.images_per_member()
    member = prob.member(role)
    unravel = prob.unravel(role)
    out: dict = {}

    def rec(name, seconds, **extra):
        out[name] = {"s": seconds, "rate": imgs / seconds if seconds else None, **extra}

    def rec_best_chunk(name, chunks, seconds_at):
        """Time `name` at every chunk (each kept as name_c<chunk>), record the fastest."""
        best = None
        for chunk in chunks:
            s = seconds_at(chunk)
            out[f"{name}_c{chunk}"] = {"s": s, "rate": imgs / s}
            if best is None or s < best[0]:
                best = (s, chunk)
        if best:
            rec(name, best[0], chunk=best[1])

    if "loop" not in skip:
        popn = prob.population(role, pop)
        one = jax.jit(lambda flat: member(unravel(flat)))
        n = min(pop, args.loop_members)
        jax.block_until_ready(one(popn[0]))
        t = time.perf_counter()
        for i in range(n):
            jax.block_until_ready(one(popn[i]))
        dt = (time.perf_counter() - t) * pop / n  # extrapolated to the whole population
        rec("loop", dt, timed_members=n)
    full = None
    if not {"vmap", "map"} <= skip:
        full = prob.population(role, pop)
    if "vmap" not in skip:
        f = jax.jit(lambda P: evaluate_population(lambda fl: member(unravel(fl)), P, "vmap"))
        rec("vmap", timed(f, full))
    if "map" not in skip:
        rec_best_chunk("map", [c for c in args.chunks if c <= pop], lambda c: timed(jax.jit(
            lambda P: evaluate_population(lambda fl: member(unravel(fl)), P, "map", c)), full))
    full = None  # free the full-rank population before the low-rank runs
    es = make_lowrank(prob.params(role), pop=pop, rank=args.rank, std=0.05, lr=0.01)
    noise = jax.jit(es.sample)(jax.random.key(5))
    mean = prob.params(role)
    lowrank = lambda lay, c: jax.jit(
        lambda nz, m: evaluate_lowrank(es, m, nz, member, lay, c))
    if "lowrank" not in skip:
        rec("lowrank", timed(lowrank("vmap", 0), noise, mean))
    if "lowrank_map" not in skip:  # a chunk of the whole population would be (d) again
        rec_best_chunk("lowrank_map", [c for c in args.lowrank_chunks if c < pop],
                       lambda c: timed(lowrank("map", c), noise, mean))
    best = None
    for chunk in args.plain_chunks:
        made = prob.plain(role, pop, chunk)
        if made is None:
            continue
        f, xs = made
        s = timed(f, xs)
        if best is None or s < best[0]:
            best = (s, chunk)
    rec("plain", best[0], chunk=best[1])
    return out


# --- whole generation in a fresh process ------------------------------------------------------
def hwm_mib() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it is not inherited from
    the parent across fork/exec)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generation_child(model: str, pop: int, strategy: str, layouts: dict, rank: int,
                     batch: int, reps: int) -> dict:
    """layouts: {"g": [layout, chunk], "d": [layout, chunk]}."""
    from ga_gan.gan import strong_types
    from ga_gan.methods import build
    rss0 = hwm_mib()
    over = {"evolve.batch": batch}
    for r in ("g", "d"):
        over.update({f"evolve.{r}.name": strategy, f"evolve.{r}.pop": pop,
                     f"evolve.{r}.layout": layouts[r][0], f"evolve.{r}.chunk": layouts[r][1],
                     f"evolve.{r}.rank": rank})
    cfg = model_cfg(model, over)
    method = build("evolve", make_gan(cfg.model), cfg)
    m = cfg.model
    data = jax.random.uniform(jax.random.key(1), (512, m.resolution, m.resolution, m.channels),
                              minval=-1, maxval=1)
    state = strong_types(method.init(jax.random.key(0)))
    jax.block_until_ready(state)
    rss_init = hwm_mib()
    step = jax.jit(method.step)
    compiled = step.lower(state, data).compile()
    rss_compiled = hwm_mib()
    state, _ = compiled(state, data)
    jax.block_until_ready(state)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        state, metrics = compiled(state, data)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    rss = hwm_mib()
    stats = jax.devices()[0].memory_stats() or {}  # accelerators; XLA:CPU reports none
    device_peak = stats.get("peak_bytes_in_use")
    return {"model": model, "pop": pop, "strategy": strategy, "layouts": layouts,
            "device_peak_mib": device_peak / 2**20 if device_peak is not None else None,
            "rank": rank, "batch": batch, "s_per_gen": min(times), "times": times,
            "peak_rss_mib": rss, "rss_import_mib": rss0,
            "rss_after_init_mib": rss_init, "rss_after_compile_mib": rss_compiled,
            "run_peak_above_compile_mib": rss - rss_compiled,
            "peak_above_init_mib": rss - rss_init}


def generation(model, pop, strategy, layouts, rank, batch, reps, timeout) -> dict | None:
    cmd = [sys.executable, __file__, "--child", json.dumps(
        [model, pop, strategy, layouts, rank, batch, reps])]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": model, "pop": pop, "strategy": strategy, "layouts": layouts,
                "timeout": timeout}
    if p.returncode:
        print(p.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def fastest(r: dict, names: dict, default_chunk: int) -> list:
    """[layout, chunk] of the fastest measured entry among `names` (result key -> layout);
    map with `default_chunk` when none was measured."""
    got = [(r[k]["s"], k) for k in names if r.get(k)]
    if not got:
        return ["map", default_chunk]
    key = min(got)[1]
    return [names[key], r[key].get("chunk", 0) if names[key] == "map" else 0]


def layout_text(layouts: dict) -> str:
    one = lambda lc: lc[0] + (f" {lc[1]}" if lc[0] == "map" else "")
    if layouts["g"] == layouts["d"]:
        return one(layouts["g"])
    return f"G {one(layouts['g'])}, D {one(layouts['d'])}"


# --- report ------------------------------------------------------------------------------------
LABELS = [("loop", "(a) loop"), ("vmap", "(b) vmap"), ("map", "(c) lax.map best"),
          ("lowrank", "(d) low-rank vmap"), ("lowrank_map", "(d') low-rank lax.map best"),
          ("plain", "(e) one net, batched")]


def fmt_rate(x):
    return "-" if x is None else f"{x:,.0f}"


def best_lowrank(r: dict) -> tuple[str, dict] | None:
    """The faster of the two low-rank layouts measured for one population."""
    got = [(k, r[k]) for k in ("lowrank", "lowrank_map") if r.get(k)]
    return max(got, key=lambda kv: kv[1]["rate"]) if got else None


def _ratio(x: dict | None, y: dict | None) -> float | None:
    return x["rate"] / y["rate"] if x and y else None


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def generation_summary(results: dict, gens: list, args) -> list[dict]:
    """Per (model, pop): the low-rank generation (best layout) against full-rank OpenES (best
    layout): speed-up, peak-memory ratio, and the largest speed-up any method whose fitness
    costs at least one plain batched forward of the same images (e) could reach."""
    rows = []
    for model in {g["model"] for g in gens if g}:
        for pop in sorted({g["pop"] for g in gens if g and g["model"] == model}):
            done = [g for g in gens if g and "timeout" not in g and g["model"] == model
                    and g["pop"] == pop]
            full = [g for g in done if g["strategy"] != "lowrank_es"]
            low = [g for g in done if g["strategy"] == "lowrank_es"]
            if not full or not low:
                continue
            f, lo = min(full, key=lambda g: g["s_per_gen"]), min(low, key=lambda g: g["s_per_gen"])
            fit = results.get(model, {})
            plain = [fit.get(role, {}).get(pop, {}).get("plain") for role in ("d", "g")]
            bound = (f["s_per_gen"] / sum(p["s"] for p in plain)
                     if all(plain) and args.batch == args.gen_batch else None)
            # on an accelerator the memory that matters is the device's; on CPU it is RSS
            mem = "device_peak_mib" if f.get("device_peak_mib") and lo.get("device_peak_mib") \
                else "peak_rss_mib"
            rows.append({"model": model, "pop": pop, "full": f, "low": lo,
                         "speedup": f["s_per_gen"] / lo["s_per_gen"],
                         "memory": lo[mem] / f[mem], "memory_of": mem,
                         "memory_above_init": lo["peak_above_init_mib"] / f["peak_above_init_mib"],
                         "bound": bound})
    return rows


def write_report(results: dict, gens: list, args, out: Path, wall: float, command: str):
    lines = ["# Population fitness throughput", "",
             f"Command: `{command}`  ", f"Machine: {machine()}  ",
             f"Wall time of the benchmark: {wall / 60:.1f} min, run alone on the machine (no other "
             "jobs); each number is the best of a few calls after a compile call.", "",
             f"Per member: batch {args.batch} (D role: {args.batch} real + {args.batch} fake D "
             f"forwards; G role: {args.batch} G forwards + {args.batch} D forwards through the D "
             f"mean), so one member = {2 * args.batch} image forwards. Low-rank ES rank "
             f"{args.rank}. Rates are image forwards per second (higher is better); (a) times "
             f"{args.loop_members} members and extrapolates; (c) is the best of chunks "
             f"{', '.join(map(str, args.chunks))} (chunk in brackets); (d') is the best of chunks "
             f"{', '.join(map(str, args.lowrank_chunks))}; (e) is the best of chunks "
             f"{', '.join(str(c or 'all') for c in args.plain_chunks)} images. "
             "(d*) is the faster of (d) and (d'). (e)/(a) bounds (d*)/(a): low-rank fitness is "
             "(e)'s forward plus corrections, so it cannot beat (e). "
             "'-' = not run (see Skipped).", ""]
    for model, per_role in results.items():
        for role, per_pop in per_role.items():
            what = "D population scoring" if role == "d" else "G population through D"
            lines += [f"## {model}: {what}", "",
                      "| pop | " + " | ".join(l for _, l in LABELS) +
                      " | (d*)/(e) | (d*)/(a) | bound (e)/(a) |",
                      "|---:|" + "---:|" * (len(LABELS) + 3)]
            for pop, r in per_pop.items():
                cells = []
                for key, _ in LABELS:
                    v = r.get(key)
                    cell = fmt_rate(v["rate"]) if v else "-"
                    if v and key in ("map", "lowrank_map"):
                        cell += f" [{v['chunk']}]"
                    cells.append(cell)
                best = best_lowrank(r)
                d = best[1] if best else None
                lines.append(f"| {pop} | " + " | ".join(cells) +
                             f" | {fmt_ratio(_ratio(d, r.get('plain')))} | "
                             f"{fmt_ratio(_ratio(d, r.get('loop')))} | "
                             f"{fmt_ratio(_ratio(r.get('plain'), r.get('loop')))} |")
            lines.append("")
    lines += ["## Whole generation (ask + fitness + tell, D then G), fresh process each", "",
              f"batch {args.gen_batch}; peak = VmHWM of the process (includes the Python/JAX "
              "runtime and compilation); 'run peak' = growth of VmHWM while the compiled "
              "step runs (0 when the compile peak was higher); 'device peak' = the "
              "accelerator's peak_bytes_in_use ('-' on CPU, which reports none).", "",
              "| model | pop | strategy | layout | s / generation | peak RSS MiB | RSS after init MiB | "
              "peak above init MiB | run peak MiB | device peak MiB |",
              "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for g in gens:
        if g is None:
            continue
        lay = layout_text(g["layouts"])
        name = g["strategy"] + (f" r{g.get('rank')}" if g["strategy"] == "lowrank_es" else "")
        if "timeout" in g:
            lines.append(f"| {g['model']} | {g['pop']} | {name} | {lay} | > {g['timeout']} s "
                         f"(timeout) | - | - | - | - | - |")
            continue
        lines.append(f"| {g['model']} | {g['pop']} | {name} | {lay} | {g['s_per_gen']:.3f} | "
                     f"{g['peak_rss_mib']:.0f} | {g['rss_after_init_mib']:.0f} | "
                     f"{g['peak_above_init_mib']:.0f} | {g['run_peak_above_compile_mib']:.0f} | "
                     f"{fmt_rate(g.get('device_peak_mib'))} |")
    lines.append("")
    summary = generation_summary(results, gens, args)
    if summary:
        lines += ["### Low-rank (best layout) vs full-rank OpenES (best layout)", "",
                  "bound = OpenES's s/generation divided by (e)'s time for the generation's "
                  "image forwards (both populations): the speed-up of a generation whose "
                  "fitness cost nothing beyond one plain batched forward of its images. "
                  "Peak memory ratio: device peaks where the backend reports them, else RSS.", "",
                  "| model | pop | speed-up | bound | peak memory ratio | peak-above-init ratio |",
                  "|---|---:|---:|---:|---:|---:|"]
        for row in summary:
            lines.append(f"| {row['model']} | {row['pop']} | {row['speedup']:.2f}x | "
                         f"{fmt_ratio(row['bound'])}x | {row['memory']:.2f} | "
                         f"{row['memory_above_init']:.2f} |")
        lines.append("")
    if args.skipped:
        lines += ["## Skipped", ""] + [f"- {s}" for s in args.skipped] + [""]
    report = out / "throughput.md"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from throughput_configs import kept_section  # --configs' section survives a full run
    kept = kept_section(report.read_text()) if report.exists() else ""
    report.write_text("\n".join(lines) + ("\n" + kept if kept else ""))


def plot(results: dict, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(m, r) for m in results for r in results[m]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (model, role) in zip(axes[0], panels):
        per_pop = results[model][role]
        for key, label in LABELS:
            pts = [(int(p), r[key]["rate"]) for p, r in per_pop.items() if r.get(key)]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("population")
        ax.set_ylabel("image forwards / s")
        ax.set_title(f"{model}: {'D scoring' if role == 'd' else 'G through D'}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.default_backend()}), "
            f"Python {platform.python_version()}")


def configs_mode(args, command: str) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import throughput_configs as tc
    rows = tc.measure(args.configs.split(","), args.rounds, args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tc.write_section(out / "throughput.md",
                     tc.section(rows, command, machine(), args.rounds, args.steps))
    print(f"wrote its section of {out / 'throughput.md'}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mlp,dcgan32")
    p.add_argument("--pops", default="16,64,256,1024")
    p.add_argument("--batch", type=int, default=16, help="images per member (fitness tables)")
    p.add_argument("--gen-batch", type=int, default=16, help="evolve.batch of the generations")
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--chunks", default="1,8,32", help="lax.map chunks tried for (c)")
    p.add_argument("--lowrank-chunks", default="1,4,16", help="lax.map chunks tried for (d')")
    p.add_argument("--max-pop", default="", help="per-model population cap, e.g. dcgan32=256")
    p.add_argument("--plain-chunks", default="0,2048,512,128,32", help="0 = all images at once")
    p.add_argument("--loop-members", type=int, default=8)
    p.add_argument("--max-seconds", type=float, default=20.0,
                   help="skip a layout at the next population when its extrapolated fitness "
                        "time exceeds this")
    p.add_argument("--gen-pops", default="256", help="populations of the whole-generation runs")
    p.add_argument("--gen-timeout", type=float, default=300)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--fitness-from", metavar="JSON",
                   help="reuse the fitness tables of an earlier throughput.json (generations only)")
    p.add_argument("--configs", help="instead: whole generations of these packaged configs "
                   "(e.g. mnist-evolve,anime-evolve), reference layout vs as shipped, interleaved "
                   "(throughput_configs.py); writes its section of throughput.md")
    p.add_argument("--rounds", type=int, default=5, help="--configs: interleaved rounds")
    p.add_argument("--steps", type=int, default=5, help="--configs: generations per round")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(generation_child(*json.loads(args.child))))
        return 0
    command = "python benchmarks/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.configs:
        return configs_mode(args, command)
    t0 = time.perf_counter()
    args.chunks = [int(c) for c in args.chunks.split(",")]
    args.lowrank_chunks = [int(c) for c in args.lowrank_chunks.split(",")]
    args.plain_chunks = [int(c) for c in args.plain_chunks.split(",")]
    args.skipped = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pops = [int(x) for x in args.pops.split(",")]
    results: dict = {}
    if args.fitness_from:
        raw = json.loads(Path(args.fitness_from).read_text())
        results = {m: {r: {int(p): v for p, v in pp.items()} for r, pp in rr.items()}
                   for m, rr in raw["fitness"].items()}
        args.skipped = raw.get("skipped", [])
    for model in ([] if args.fitness_from else args.models.split(",")):
        prob = Problem(model, args.batch)
        results[model] = {}
        for role in ("d", "g"):
            results[model][role] = {}
            skip: set = set()
            prev = None
            cap = dict(kv.split("=") for kv in args.max_pop.split(",") if kv)
            for pop in pops:
                if model in cap and pop > int(cap[model]):
                    args.skipped.append(f"{model} {role}: pop {pop} not run (time on this "
                                        f"shared 2-core CPU; --max-pop {model}={cap[model]})")
                    continue
                if prev is not None:
                    for name, v in prev[1].items():
                        est = v["s"] * pop / prev[0]
                        if name in {k for k, _ in LABELS} and name != "plain" and \
                                est > args.max_seconds and name not in skip:
                            skip.add(name)
                            args.skipped.append(f"{model} {role} {name}: from pop {pop} "
                                                f"(extrapolated {est:.0f} s > {args.max_seconds:.0f} s)")
                t = time.perf_counter()
                r = fitness_rates(prob, role, pop, args, skip)
                results[model][role][pop] = r
                prev = (pop, r)
                print(f"{model} {role} pop {pop} ({time.perf_counter() - t:.0f} s): " +
                      ", ".join(f"{k} {fmt_rate(v['rate'])}" for k, v in r.items()), flush=True)
    gens = []
    for model in args.models.split(","):
        for pop in [int(x) for x in args.gen_pops.split(",")]:
            fit = {role: results.get(model, {}).get(role, {}).get(pop, {}) for role in ("g", "d")}
            # each population in its fastest measured layout: full-rank OpenES from (b)/(c),
            # low-rank from (d) (vmap) and (d') (map, with its best chunk)
            configs = [("open_es", {r: fastest(fit[r], {"vmap": "vmap", "map": "map"}, 1)
                                    for r in fit}),
                       ("lowrank_es", {r: ["vmap", 0] for r in fit}),
                       ("lowrank_es", {r: fastest(fit[r], {"lowrank_map": "map"},
                                                  args.lowrank_chunks[0]) for r in fit})]
            for strategy, layouts in configs:
                g = generation(model, pop, strategy, layouts, args.rank, args.gen_batch,
                               args.reps, args.gen_timeout)
                gens.append(g)
                if g:
                    print(f"generation {model} pop {pop} {strategy} {layout_text(layouts)}: "
                          f"{g.get('s_per_gen', float('nan')):.3f} s, "
                          f"peak {g.get('peak_rss_mib', float('nan')):.0f} MiB", flush=True)
    wall = time.perf_counter() - t0
    (out / "throughput.json").write_text(json.dumps(
        {"fitness": results, "generations": gens, "machine": machine(), "command": command,
         "skipped": args.skipped, "summary": generation_summary(results, gens, args)},
        indent=1, default=str))
    write_report(results, gens, args, out, wall, command)
    plot(results, out)
    print(f"wrote {out / 'throughput.md'} ({wall / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
