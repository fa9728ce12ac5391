"""`ga-gan invert` end to end on a tiny Adam run of the digits data (8x8 MLP GAN)."""

import argparse
import json

import jax
import numpy as np
import pytest
from PIL import Image

from ga_gan.cli import main as cli_main
from ga_gan.errors import UserError
from ga_gan.config import RunConfig, apply_overrides
from ga_gan.invert.command import add_invert_parser, cmd_invert, invert_run, run_method_name
from ga_gan.invert.output import to_uint8
from ga_gan.sample import load_generator

SUMMARY_KEYS = {
    "best_distance", "pixel_mse", "initial_distance", "generations", "seconds",
    "seconds_per_generation", "strategy", "distance", "num_targets", "latent_dim", "run",
    "targets", "pop", "seed",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 30-step Adam run plus three images its generator made, and their latents."""
    root = tmp_path_factory.mktemp("invert")
    out = root / "run"
    rc = cli_main(["train", "--steps", "30", "--out", str(out), "--set", "log.eval_every=0",
                   "--set", "log.image_every=0", "--no-progress"])
    assert rc == 0
    gan, params, stats, cfg, *_ = load_generator(out)
    z = jax.random.normal(jax.random.key(7), (3, cfg.model.latent_dim))
    images = np.asarray(gan.generate(params, stats, z, train=False)[0])
    targets = root / "targets"
    targets.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(to_uint8(im)).save(targets / f"t{i}.png")
    # what the generator gives for random latents: the baseline an inversion must beat
    z_rand = jax.random.normal(jax.random.key(99), (1000, cfg.model.latent_dim))
    rand = np.asarray(gan.generate(params, stats, z_rand, train=False)[0])
    return dict(root=root, out=out, cfg=cfg, images=images, targets=targets, random=rand)


def _quiet(*_):
    pass


def _target_array(path):
    return np.asarray(Image.open(path), np.float32)[..., None] / 127.5 - 1.0


def test_pixels_inversion_beats_random_latents(run, tmp_path):
    target = run["targets"] / "t0.png"
    lines = []
    res = invert_run(run["out"], target=target, generations=60, pop=200, out=tmp_path / "inv",
                     log=lines.append)
    t = _target_array(target)
    random_mse = np.mean((run["random"] - t[None]) ** 2, axis=(1, 2, 3))
    assert res.pixel_mse < 0.2 * np.median(random_mse)
    assert res.pixel_mse <= res.initial_distance  # never worse than the best prior draw
    # progress: one line per ~10% of generations, plus the header and the final line
    progress = [ln for ln in lines if ln.startswith("generation ")]
    assert [int(ln.split()[1].split("/")[0]) for ln in progress] == list(range(6, 61, 6))
    best = Image.open(tmp_path / "inv" / "best.png")
    assert best.size == (8, 8) and best.mode == "L"
    for name in ("best_latent.npy", "strip.png", "fitness.png"):
        assert (tmp_path / "inv" / name).is_file()
    assert np.load(tmp_path / "inv" / "best_latent.npy").shape == (run["cfg"].model.latent_dim,)
    summary = json.loads((tmp_path / "inv" / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["num_targets"] == 1 and summary["distance"] == "pixels"
    assert summary["method"] == "adam"  # the registry name of `ga-gan train`
    assert summary["pixel_mse"] == pytest.approx(res.pixel_mse)


def test_discriminator_features(run, tmp_path):
    res = invert_run(run["out"], target=run["targets"] / "t1.png", distance="features",
                     features="discriminator", strategy="cma_es", pop=32, generations=30,
                     out=tmp_path / "d", log=_quiet)
    assert np.isfinite(res.best_distance) and res.best_distance <= res.initial_distance
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["features"] == "discriminator" and summary["strategy"] == "cma_es"


def test_targets_folder(run, tmp_path):
    res = invert_run(run["out"], targets=run["targets"], generations=20, pop=64,
                     out=tmp_path / "many", log=_quiet)
    summary = json.loads((tmp_path / "many" / "summary.json").read_text())
    assert summary["num_targets"] == 3 and len(summary["targets"]) == 3
    # "min": the best image is scored against its nearest target
    mses = [np.mean((res.best_image - run["images"][i]) ** 2) for i in range(3)]
    assert res.pixel_mse == pytest.approx(min(mses), abs=1e-3)


def test_cli_parser_and_wrong_size_target(run, tmp_path):
    big = tmp_path / "big.png"  # 32x24 RGB: centre-cropped, resized and made grey
    Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(big)
    parser = argparse.ArgumentParser()
    add_invert_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["invert", "--run", str(run["out"]), "--target", str(big),
                              "--strategy", "snes", "--pop", "16", "--generations", "5",
                              "--prior-weight", "0.1", "--seed", "3", "--out", str(tmp_path / "c")])
    assert cmd_invert(args) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["strategy"] == "snes" and summary["prior_weight"] == 0.1 and summary["seed"] == 3
    assert Image.open(tmp_path / "c" / "best.png").size == (8, 8)


def test_errors(run, tmp_path):
    good = run["targets"] / "t0.png"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    (empty_run / "config.json").write_text((run["out"] / "config.json").read_text())
    cases = [
        (dict(run_dir=tmp_path / "missing", target=good), "run folder not found"),
        (dict(run_dir=empty_run, target=good), "no checkpoint"),
        (dict(run_dir=run["out"]), "exactly one"),
        (dict(run_dir=run["out"], target=good, targets=run["targets"]), "exactly one"),
        (dict(run_dir=run["out"], target=corrupt), "cannot read image"),
        (dict(run_dir=run["out"], target=tmp_path / "nope.png"), "not found"),
        (dict(run_dir=run["out"], targets=tmp_path / "nowhere"), "not found"),
        (dict(run_dir=run["out"], target=good, strategy="hill_climb"), "unknown strategy"),
        (dict(run_dir=run["out"], target=good, distance="cosine"), "unknown distance"),
        (dict(run_dir=run["out"], target=good, features="vgg"), "unknown features"),
    ]
    for kwargs, message in cases:
        run_dir = kwargs.pop("run_dir")
        with pytest.raises(UserError, match=message) as info:
            invert_run(run_dir, out=tmp_path / "o", log=_quiet, **kwargs)
        assert "\n" not in str(info.value)
    assert not (empty_run / "checkpoints").exists()  # the check did not create it


def test_method_name_comes_from_the_run_config(tmp_path):
    """summary.json's "method" is the registry name the run resolves to, not a class attribute."""
    (tmp_path / "config.json").write_text(json.dumps({"method": "evolve"}))
    hybrid = apply_overrides(RunConfig(), {"evolve.mode": "hybrid",
                                           "evolve.hybrid.variant": "Adam_D"})
    assert run_method_name(tmp_path, hybrid) == "adam-d"  # the registry name
    assert run_method_name(tmp_path, RunConfig()) == "evolve"
