"""The command line: error paths give one line and exit 2; a short run and `sample` work."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import records

from ga_gan.cli import main

QUICK = ["--no-progress", "--set", "log.eval_every=0", "--set", "log.image_every=0",
         "--set", "model.g_hidden=8,16", "--set", "model.d_hidden=16,8",
         "--set", "evolve.batch=16"]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run_cli(capsys, *args: str) -> tuple[int, str]:
    """`ga-gan ARGS` in this process (an exception escaping main fails the test): exit code and
    stderr."""
    capsys.readouterr()
    rc = main(list(args))
    return rc, capsys.readouterr().err


def assert_one_line_error(rc: int, err: str, needle: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], err


def test_missing_folder_is_one_line_and_exit_2(tmp_path, capsys):
    rc, err = run_cli(capsys, "evolve", "--data", f"folder:{tmp_path / 'nope'}",
                      "--out", str(tmp_path / "r"))
    assert_one_line_error(rc, err, "nope")


def test_wrong_idx_magic_is_one_line_and_exit_2(tmp_path, capsys):
    d = tmp_path / "mnist"
    d.mkdir()
    with gzip.open(d / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x0000_0999, 2, 28, 28) + bytes(2 * 28 * 28))
    with gzip.open(d / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x0000_0801, 2) + bytes(2))
    rc, err = run_cli(capsys, "evolve", "--data", f"mnist:{d}", "--out", str(tmp_path / "r"),
                      "--set", "model.resolution=28")
    assert_one_line_error(rc, err, "magic")


@pytest.mark.parametrize("args, needle", [
    (["evolve", "--strategy", "not_a_strategy"], "unknown strategy"),
    (["evolve", "--pop", "7"], "even"),
    (["evolve", "--set", "model.nonsense=1"], "unknown config key"),
    (["evolve", "--set", "model.width=abc"], "cannot read"),
    (["evolve", "--set", "model.d_width=0"], "model.d_width must be a positive number"),
    (["evolve", "--set", "model.d_width=nan"], "model.d_width must be a positive number"),
    (["evolve", "--config", "does/not/exist.toml"], "config file not found"),
    (["evolve", "--data", "nosuchkind:/x"], "unknown dataset kind"),
    (["evolve", "--mode", "nope"], "unknown --mode"),
    (["train", "--set", "model.name=dcgan", "--set", "model.resolution=48"], "cannot produce"),
    (["sample", "--run", "no/such/run", "--out", "x.png"], "run folder not found"),
])
def test_bad_input_in_process(tmp_path, capsys, args, needle):
    argv = args + (["--out", str(tmp_path / "r")] if args[0] != "sample" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and needle in err[-1], err


def test_nan_fitness_is_a_clear_error_and_keeps_the_last_good_state(tmp_path, capsys):
    out = tmp_path / "nan"
    # a learning rate of inf poisons the means after the first update
    code = main(["evolve", "--generations", "5", "--out", str(out), "--pop", "4",
                 "--set", "evolve.g.lr=inf", *QUICK])
    assert code == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and "saved" in err
    assert (out / "checkpoints").is_dir()


def test_evolve_then_sample_png_and_npz(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["evolve", "--generations", "6", "--pop", "4", "--out", str(out), *QUICK]) == 0
    lines = records(out)
    assert [r["generation"] for r in lines] == list(range(1, 7))
    for key in ("generation", "real_score", "fake_score", "loss_d", "loss_g", "time_s",
                "fitness_g_best", "fitness_g_mean", "fitness_g_std", "fitness_d_best",
                "fitness_d_mean", "fitness_d_std"):
        assert key in lines[-1], key
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "evolve" and config["config"]["evolve"]["g"]["pop"] == 4
    assert "jax" in config["versions"]

    assert main(["sample", "--run", str(out), "--n", "10", "--out", str(tmp_path / "s.npz")]) == 0
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (10, 8, 8, 1) and images.dtype == np.uint8
    assert main(["sample", "--run", str(out), "--n", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size[0] >= 4 * 8
    # same seed, same images: sampling is deterministic
    assert main(["sample", "--run", str(out), "--n", "10", "--out", str(tmp_path / "t.npz")]) == 0
    np.testing.assert_array_equal(images, np.load(tmp_path / "t.npz")["images"])


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason="../shared/data/mnist not present")
def test_evolve_on_real_mnist(tmp_path):
    out = tmp_path / "mnist"
    assert main(["evolve", "--config", "ga_gan/configs/mnist.toml", "--data", f"mnist:{SHARED / 'mnist'}",
                 "--generations", "3", "--pop", "4", "--out", str(out), "--set", "data.limit=2000",
                 "--set", "model.width=0.0625", *QUICK[:5]]) == 0
    last = records(out)[-1]
    assert last["generation"] == 3 and 0 <= last["real_score"] <= 1


@pytest.mark.skipif(not (SHARED / "anime-faces-64").is_dir(),
                    reason="../shared/data/anime-faces-64 not present")
def test_evolve_on_real_anime_faces(tmp_path):
    out = tmp_path / "anime"
    assert main(["evolve", "--config", "ga_gan/configs/anime-cpu.toml",
                 "--data", f"folder:{SHARED / 'anime-faces-64'}", "--generations", "2",
                 "--pop", "4", "--out", str(out), "--set", "data.limit=200",
                 "--set", "model.width=0.0625", "--set", "evolve.batch=8", *QUICK[:5]]) == 0
    last = records(out)[-1]
    assert last["generation"] == 2
    assert all(k in last for k in ("real_score", "fake_score", "loss_d", "loss_g"))
