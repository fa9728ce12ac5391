"""`ga-gan invert`: find latents of a trained run's generator whose images match target images.

This module glues a run folder to the inversion library: it restores the run's generator (eval
mode: the running BatchNorm statistics of the checkpoint), reads the targets at the generator's
resolution and channels, builds the feature space asked for, runs ``invert`` and writes the
files. Heavy imports (JAX, flax, orbax) happen inside the functions so that building the CLI
parser stays cheap.

Feature spaces for ``--distance features|both``:
  classifier     the penultimate layer (128 units) of the small CNN behind ``fd_classifier``,
                 trained once on the run's labelled dataset and cached (as in the run's own
                 Fréchet evaluation, so both share the cache entry);
  discriminator  the run's own discriminator in eval mode: the activations fed to its final
                 (logit) Dense layer, captured with ``flax.linen.intercept_methods`` so the
                 models need no hook.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

from ga_gan.errors import UserError

DISTANCES = ("pixels", "features", "both")
FEATURES = ("classifier", "discriminator")
REDUCTIONS = ("min", "mean")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# ------------------------------------------------------------------------------ the library call


def invert_run(
    run_dir,
    *,
    target=None,
    targets=None,
    distance: str = "pixels",
    features: str = "classifier",
    feature_weight: float = 1.0,
    reduce: str = "min",
    strategy: str = "blx_ga",
    pop: int = 200,
    generations: int = 100,
    prior_weight: float = 0.0,
    seed: int = 0,
    out,
    log: Callable[[str], None] = print,
):
    """Invert one image (``target``) or a folder of images (``targets``) through a run's generator.

    Returns the ``InversionResult`` and writes best.png, best_latent.npy, strip.png, fitness.png
    and summary.json into ``out``. Every problem the user can fix is a one-line ``UserError``.
    """
    # Cheap checks first, so a typo fails before a checkpoint is restored.
    _check_options(target, targets, distance, features, reduce, pop, generations,
                   feature_weight, prior_weight, strategy)
    from ga_gan.validate import check_seed, writable_dir
    check_seed(seed)
    out = writable_dir(out, "--out")  # before the search, so its result cannot be lost
    target_files = _target_files(target, targets)

    gan, g_params, g_stats, cfg, state, method = _load_run(run_dir)
    method_name = run_method_name(run_dir, cfg)
    res, ch = cfg.model.resolution, cfg.model.channels
    from ga_gan.invert.output import load_target_images, write_outputs
    from ga_gan.invert.search import invert

    images = load_target_images(target if target is not None else targets, res, ch)
    feature_fn = None
    if distance != "pixels":
        feature_fn = _feature_fn(features, gan, cfg, method, state, method_name, log)
    every, progress = _progress(generations, log)
    log(f"inverting {len(images)} target{'s' if len(images) != 1 else ''} ({res}x{res}x{ch}) "
        f"with {strategy}, pop {pop}, {generations} generations, "
        f"distance {distance}{'' if distance == 'pixels' else f' ({features})'}")
    result = invert(
        lambda z: gan.generate(g_params, g_stats, z, train=False)[0], images,
        latent_dim=cfg.model.latent_dim, strategy=strategy, pop=pop, generations=generations,
        distance=distance, feature_fn=feature_fn, feature_weight=feature_weight, reduce=reduce,
        prior_weight=prior_weight, seed=seed, log_every=every, on_generation=progress,
    )
    write_outputs(result, out, images)
    _extend_summary(out / "summary.json", {
        "run": str(run_dir), "method": method_name,
        "targets": [str(p) for p in target_files], "features": features if distance != "pixels" else None,
        "feature_weight": float(feature_weight), "prior_weight": float(prior_weight),
        "pop": int(pop), "seed": int(seed), "resolution": int(res), "channels": int(ch),
    })
    log(_outcome(result, out))
    return result


# ------------------------------------------------------------------------------ pieces


def _check_options(target, targets, distance, features, reduce, pop, generations,
                   feature_weight, prior_weight, strategy) -> None:
    """Every option error that needs no file and no JAX, in the order a user would fix them."""
    if (target is None) == (targets is None):
        raise UserError("give exactly one of --target IMAGE or --targets DIR")
    if distance not in DISTANCES:
        raise UserError(f"unknown distance {distance!r}; use one of {', '.join(DISTANCES)}")
    if features not in FEATURES:
        raise UserError(f"unknown features {features!r}; use one of {', '.join(FEATURES)}")
    if reduce not in REDUCTIONS:
        raise UserError(f"unknown reduce {reduce!r}; use one of {', '.join(REDUCTIONS)}")
    if pop < 2 or generations < 1:
        raise UserError(f"need --pop >= 2 and --generations >= 1 (got {pop} and {generations})")
    if not feature_weight >= 0 or not prior_weight >= 0:  # also rejects NaN
        raise UserError(f"--feature-weight and --prior-weight must be >= 0 "
                        f"(got {feature_weight} and {prior_weight})")
    from ga_gan.invert.strategies import resolve_strategy
    resolve_strategy(strategy)


def run_method_name(run_dir, cfg) -> str:
    """The registry name of the method that made the run (summary.json's "method"), from the
    command its config.json records ("train", "evolve") and its config."""
    from ga_gan.methods import method_name
    return method_name(json.loads((Path(run_dir) / "config.json").read_text()).get("method", ""),
                       cfg)


def _feature_fn(features, gan, cfg, method, state, method_name, log) -> Callable:
    """The feature space ``--features`` names (see the module doc)."""
    if features == "classifier":
        return classifier_features(cfg, log)
    if not hasattr(method, "discriminator"):
        raise UserError(f"a '{method_name}' run keeps no discriminator; use --features classifier")
    return discriminator_features(gan, *method.discriminator(state))


def _progress(generations: int, log) -> tuple[int, Callable[[int, float], None]]:
    """(snapshot interval, progress callback): one line per ~10% of the generations."""
    every = max(1, generations // 10)
    t0 = time.perf_counter()

    def progress(g: int, best: float) -> None:
        if g % every == 0 or g == generations:
            log(f"generation {g}/{generations} best {best:.5g} ({time.perf_counter() - t0:.1f} s "
                f"elapsed, compilation included)")

    return every, progress


def _outcome(result, out) -> str:
    return (f"best distance {result.best_distance:.5g} (pixel MSE {result.pixel_mse:.5g}; best "
            f"prior draw {result.initial_distance:.5g}) in {result.seconds:.1f}s "
            f"({1000 * result.seconds_per_generation:.2f} ms/generation, compile "
            f"{result.compile_seconds:.1f}s); wrote {out}")


def _target_files(target, targets) -> list[Path]:
    """The image files that will be read, in the order ``load_target_images`` reads them."""
    if target is not None:
        p = Path(target)
        if not p.exists():
            raise UserError(f"target image not found: {p}")
        if p.is_dir():
            raise UserError(f"--target expects an image file, {p} is a folder (use --targets)")
        return [p]
    p = Path(targets)
    if not p.exists():
        raise UserError(f"targets folder not found: {p}")
    if not p.is_dir():
        raise UserError(f"--targets expects a folder, {p} is a file (use --target)")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise UserError(f"no PNG/JPEG images in folder: {p}")
    return files


def _load_run(run_dir):
    """(gan, g_params, g_stats, cfg, state, method) of the run's latest checkpoint."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"run folder not found: {run}")
    if not (run / "config.json").is_file():
        raise UserError(f"not a ga-gan run folder (no config.json): {run}")
    from ga_gan.sample import load_generator
    try:
        return load_generator(run)
    except UserError:
        raise
    except Exception as e:  # a corrupt or incompatible checkpoint: say so in one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise UserError(f"cannot restore the checkpoint in {run}: {e.__class__.__name__}"
                        f"{': ' + first if first else ''}") from None


def discriminator_features(gan, d_params, d_stats) -> Callable:
    """Pure ``x (B, H, W, C) -> (B, F)``: the input of D's final Dense layer, eval mode
    (`GAN.discriminate_features`)."""

    def features(x):
        try:
            return gan.discriminate_features(d_params, d_stats, x, train=False)[1]
        except ValueError as e:
            raise UserError(str(e)) from None

    return features


def classifier_features(cfg, log: Callable[[str], None] = print) -> Callable:
    """The ``fd_classifier`` CNN's penultimate features for the run's dataset and image size.

    Uses the same dataset name and labelled data as the run's Fréchet evaluation, so a
    classifier the run already trained is reused from the cache; otherwise it is trained
    (seconds on CPU) and cached.
    """
    from ga_gan.metrics import build_extractor
    from ga_gan.run import load_data

    ds = load_data(cfg, log)
    shape = (cfg.model.resolution, cfg.model.resolution, cfg.model.channels)
    ex = build_extractor("classifier", shape, dataset_name=ds.name, labelled_dataset=ds, log=log)
    return ex.fn


def _extend_summary(path: Path, extra: dict) -> None:
    summary = json.loads(path.read_text())
    summary.update(extra)
    path.write_text(json.dumps(summary, indent=2) + "\n")


# ------------------------------------------------------------------------------ the CLI


def add_invert_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``invert`` to ``ga-gan``'s subparsers (flags exactly as documented)."""
    p = subparsers.add_parser(
        "invert", help="find latents whose generated images match target images",
        description="Search a trained run's latent space (no gradients) for the input whose "
                    "generated image best matches a target image or a folder of them.")
    p.add_argument("--run", required=True, metavar="DIR", help="run folder with a checkpoint")
    p.add_argument("--target", metavar="IMAGE", help="one target image (resized to the model)")
    p.add_argument("--targets", metavar="DIR", help="folder of PNG/JPEG targets")
    p.add_argument("--distance", default="pixels", choices=DISTANCES,
                   help="pixels (MSE), features, or both (MSE + W * feature distance)")
    p.add_argument("--features", default="classifier", choices=FEATURES,
                   help="feature space for --distance features|both (default classifier)")
    p.add_argument("--feature-weight", type=float, default=1.0, metavar="W",
                   help="weight of the feature term with --distance both (default 1)")
    p.add_argument("--reduce", default="min", choices=REDUCTIONS,
                   help="several targets: match the nearest (min) or all of them (mean)")
    p.add_argument("--strategy", default="blx_ga",
                   help="blx_ga (default), simple_ga, cma_es, open_es, snes, ... (any evosax "
                        "algorithm)")
    p.add_argument("--pop", type=int, default=200)
    p.add_argument("--generations", type=int, default=100)
    p.add_argument("--prior-weight", type=float, default=0.0, metavar="W",
                   help="penalty W * mean(z^2) keeping latents typical (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the results")
    return p


def cmd_invert(args: argparse.Namespace) -> int:
    invert_run(
        args.run, target=args.target, targets=args.targets, distance=args.distance,
        features=args.features, feature_weight=args.feature_weight, reduce=args.reduce,
        strategy=args.strategy, pop=args.pop, generations=args.generations,
        prior_weight=args.prior_weight, seed=args.seed, out=args.out,
    )
    return 0
