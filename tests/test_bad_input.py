"""Bad input, in every form a new user tried (issue 12): one `error:` line on stderr, exit 2, no
traceback, and nothing already in the run folder changed.

Most cases call `ga_gan.cli.main` in-process (a subprocess costs seconds of JAX import); the
lock, kill and read-only cases use real processes where the kernel's part matters.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ga_gan.cli import main

QUICK = ["--no-progress", "--pop", "4", "--set", "log.eval_every=0", "--set", "log.image_every=0",
         "--set", "model.g_hidden=8,16", "--set", "model.d_hidden=16,8",
         "--set", "evolve.batch=16", "--set", "log.checkpoint_every=10"]
HUGE_SEED = "99999999999999999999"


def one_error_line(rc: int, err: str, needle: str = "") -> str:
    """The run refused: exit 2, exactly one stderr line, starting with `error:`."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0], lines[0]
    return lines[0]


def cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def snapshot(run: Path) -> dict:
    """Every file's bytes, except the lock's record of its last holder."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".ga-gan.lock"}


def metrics(run: Path, timing: bool = False) -> list[dict]:
    from ga_gan.runlog import read_metrics
    return [{k: v for k, v in r.items() if timing or k != "time_s"}
            for r in read_metrics(run / "metrics.jsonl")]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    """A finished 20-generation run (checkpoints at 10 and 20) to throw bad input at."""
    run = tmp_path_factory.mktemp("bad") / "run"
    assert main(["evolve", "--generations", "20", "--out", str(run), *QUICK]) == 0
    return run


@pytest.fixture
def target_png(tmp_path):
    path = tmp_path / "t.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    return path


# --- argparse, flags and config values ---------------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["evolve", "--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    (["evolve", "--pop", "abc"], "argument --pop: invalid int value: 'abc'"),
    (["sample", "--out", "x.png"], "--run"),
    ([], "required"),
    (["nonsense"], "invalid choice"),
    (["evolve", "--generations", "-1"], "evolve.generations (--generations) must be a positive"),
    (["evolve", "--generations", "0"], "must be a positive integer, got 0"),
    (["train", "--steps", "-3"], "train.steps (--steps)"),
    (["evolve", "--time-budget", "-5"], "time_budget (--time-budget) must be a positive"),
    (["evolve", "--time-budget", "0"], "time_budget"),
    (["evolve", "--time-budget", "nan"], "time_budget"),
    (["evolve", "--set", "evolve.batch=0"], "evolve.batch must be a positive integer"),
    (["train", "--set", "train.batch=0"], "train.batch"),
    (["evolve", "--set", "log.every=0"], "log.every"),
    (["evolve", "--set", "log.fd_samples=1"], "log.fd_samples"),
    (["evolve", "--set", "log.fd=pixels,bogus"], "unknown log.fd bogus"),
    (["evolve", "--pop", "0"], "evolve.g.pop (--pop/--pop-g) must be an integer >= 2"),
    (["evolve", "--out="], "--out must name a folder"),
    (["evolve", "--pop-g", "0"], "evolve.g.pop (--pop/--pop-g) must be an integer >= 2"),
    (["evolve", "--pop-d", "0", "--pop", "8"], "evolve.d.pop (--pop/--pop-d)"),
    (["evolve", "--strategy", "lowrank_es", "--rank", "0"], "evolve.g.rank (--rank)"),
    (["evolve", "--rank", "3"], "--rank applies to --strategy lowrank_es only"),
    (["evolve", "--seed", HUGE_SEED], "seed (--seed) must be an integer from 0 to 4294967295"),
    (["train", "--seed", "-1"], "seed"),
    (["evolve", "--set", "checkpoint_dir=/proc/forbidden/ckpt"], "cannot write to checkpoint_dir"),
])
def test_bad_flags_and_values_are_one_line(capsys, tmp_path, args, needle):
    extra = ["--out", tmp_path / "r"] if args and args[0] in ("evolve", "train") \
        and not any(str(a).startswith("--out") for a in args) else []
    one_error_line(*cli(capsys, *args, *extra)[::2], needle)
    assert not (tmp_path / "r").exists()  # refused before any folder was made


def test_help_still_prints_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["evolve", "--help"])
    assert e.value.code == 0 and "usage: ga-gan evolve" in capsys.readouterr().out


def test_non_utf8_config(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"seed = 1\n# caf\xe9 \xff\n")
    one_error_line(*cli(capsys, "evolve", "--config", bad, "--out", tmp_path / "r")[::2],
                   "is not UTF-8 text")


@pytest.mark.parametrize("out", ["/proc/forbidden", "{file}", "{file}/below"])
def test_unwritable_out_is_refused_before_any_work(capsys, tmp_path, out):
    (tmp_path / "f").write_text("a file")
    out = out.format(file=tmp_path / "f")
    t0 = time.perf_counter()
    one_error_line(*cli(capsys, "evolve", "--out", out, "--set", "data.spec=folder:/nonexistent",
                        )[::2], out)  # the out error comes before the data error
    assert time.perf_counter() - t0 < 30


def test_out_probe_survives_a_peer_removing_the_folder_it_made(tmp_path, monkeypatch):
    """The two processes of a --distributed run probe the same new --out at once; one may
    rmdir the folder it made while the other writes its probe there (seen in CI as "cannot
    write to --out ...: No such file or directory"). The probe tries again, and still leaves
    nothing behind."""
    import tempfile

    from ga_gan import validate

    out, real, calls = tmp_path / "a" / "run", tempfile.mkstemp, []

    def peer_cleans_up_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the peer's cleanup lands between our mkdir and our probe
            out.rmdir()
            out.parent.rmdir()
        return real(*args, **kwargs)

    monkeypatch.setattr(validate.tempfile, "mkstemp", peer_cleans_up_first)
    assert validate.writable_dir(out) == out
    assert len(calls) == 2 and not (tmp_path / "a").exists()


# --- sample and invert ---------------------------------------------------------------------------

def test_sample_and_invert_check_seed_and_out_first(capsys, tmp_path, done_run, target_png):
    existing = tmp_path / "grid.png"
    existing.mkdir()
    for args, needle in [
        (["sample", "--run", done_run, "--seed", HUGE_SEED, "--out", tmp_path / "s.png"], "--seed"),
        (["sample", "--run", done_run, "--out", "/proc/forbidden/x.png"], "cannot write"),
        (["sample", "--run", done_run, "--out", existing], "is a folder"),
        (["invert", "--run", done_run, "--target", target_png, "--seed", HUGE_SEED,
          "--out", tmp_path / "i"], "--seed"),
        (["invert", "--run", "no/such/run", "--target", target_png,
          "--out", "/proc/forbidden"], "cannot write to --out /proc/forbidden"),
        (["invert", "--run", done_run, "--target", target_png, "--out", target_png], "is a file"),
    ]:
        one_error_line(*cli(capsys, *args)[::2], needle)
    assert sorted(os.listdir(tmp_path)) == ["grid.png", "t.png"]  # no stray temporaries
    assert os.listdir(existing) == []


def test_sample_write_leaves_no_temporary(tmp_path, done_run, capsys):
    assert cli(capsys, "sample", "--run", done_run, "--n", "4", "--out", tmp_path / "s.npz")[0] == 0
    assert os.listdir(tmp_path) == ["s.npz"]
    from ga_gan.images import write_atomically

    def fail(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError):
        write_atomically(tmp_path / "s.npz", fail)
    assert os.listdir(tmp_path) == ["s.npz"] and np.load(tmp_path / "s.npz")["images"].shape[0] == 4


# --- a run folder that already holds work ---------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--generations", "-1"], ["--time-budget", "0"], ["--set", "evolve.batch=0"],
    ["--seed", HUGE_SEED], ["--set", "log.every=0"], ["--bogus"],
])
def test_bad_input_on_an_existing_run_changes_nothing(capsys, done_run, args):
    before = snapshot(done_run)
    one_error_line(*cli(capsys, "evolve", "--out", done_run, *QUICK, *args)[::2])
    assert snapshot(done_run) == before


def test_folder_made_unwritable_mid_run_is_one_line_and_keeps_earlier_work(
        capsys, tmp_path, monkeypatch):
    """A metrics write that fails (read-only folder, full disk) at generation 25 stops the run
    with one line; the checkpoint at 20 and the metrics through it stay, and the run resumes."""
    from ga_gan import runlog
    run = tmp_path / "ro"
    append = runlog.RunLog.append

    def failing_append(self, record):
        if record["generation"] > 25:
            raise PermissionError(13, "Permission denied", str(self.metrics_path))
        append(self, record)
    monkeypatch.setattr(runlog.RunLog, "append", failing_append)
    line = one_error_line(*cli(capsys, "evolve", "--generations", "40", "--out", run,
                               *QUICK)[::2], "Permission denied")
    assert "metrics.jsonl" in line and f"--resume {run}" in line
    assert [r["generation"] for r in metrics(run)] == list(range(1, 26))
    monkeypatch.setattr(runlog.RunLog, "append", append)
    rc, out, err = cli(capsys, "evolve", "--generations", "40", "--out", run, *QUICK)
    assert rc == 0 and "from its checkpoint at generation 20" in out, err
    assert [r["generation"] for r in metrics(run)] == list(range(1, 41))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_really_read_only_folder(capsys, tmp_path, done_run):
    run = tmp_path / "ro"
    shutil.copytree(done_run, run)
    before = snapshot(run)
    os.chmod(run, 0o555)
    try:
        one_error_line(*cli(capsys, "evolve", "--generations", "40", "--out", run,
                            *QUICK)[::2], "cannot write")
    finally:
        os.chmod(run, 0o755)
    assert snapshot(run) == before


# --- data ----------------------------------------------------------------------------------------

def _idx(path: Path, magic: int, dims: tuple, payload: bytes = b"") -> None:
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I" + "I" * len(dims), magic, *dims) + payload)


@pytest.mark.parametrize("dims, needle", [
    ((0, 28, 28), "holds no data"),
    ((2**31, 2**31, 4), "truncated"),
])
def test_idx_headers_checked_with_python_ints(capsys, tmp_path, dims, needle):
    d = tmp_path / "mnist"
    d.mkdir()
    _idx(d / "train-images-idx3-ubyte.gz", 0x803, dims)
    _idx(d / "train-labels-idx1-ubyte.gz", 0x801, (0,))
    one_error_line(*cli(capsys, "evolve", "--data", f"mnist:{d}", "--out", tmp_path / "r",
                        "--set", "model.resolution=28")[::2], needle)


def _special_files(folder: Path) -> None:
    os.symlink("b.jpg", folder / "a.jpg")  # a loop
    os.symlink("a.jpg", folder / "b.jpg")
    os.symlink("gone.png", folder / "dangling.png")
    os.mkfifo(folder / "pipe.jpg")  # opening it would block forever


def _load_in_thread(spec: str, **kw):
    """load_dataset with a deadline: a hang (a FIFO opened) fails the test instead of pytest."""
    from ga_gan.data import load_dataset
    result: dict = {}

    def target():
        try:
            result["value"] = load_dataset(spec, **kw)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            result["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "loading the folder hung (a FIFO was opened?)"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_folder_skips_links_fifos_and_counts_them(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    _special_files(folder)
    Image.fromarray(np.full((12, 12, 3), 200, np.uint8)).save(folder / "ok.png")
    os.symlink("ok.png", folder / "link-to-ok.png")  # a link to a regular file is fine
    messages: list = []
    ds = _load_in_thread(f"folder:{folder}", resolution=8, cache_dir=tmp_path / "c",
                         log=messages.append)
    assert ds.images.shape == (2, 8, 8, 3) and ds.skipped == 4
    assert any("skipped 4 image names" in m and "not regular files" in m for m in messages)


def test_folder_of_only_special_files_is_one_line(capsys, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    _special_files(folder)
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(out=cli(
        capsys, "evolve", "--data", f"folder:{folder}", "--out", tmp_path / "r")), daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "hung on a FIFO"
    one_error_line(*result["out"][::2], "no image files")


def test_16_bit_png_gradient_scales_to_8_bits(tmp_path):
    from ga_gan.data.folder import decode
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    for mode in ("L", "RGB"):
        x = decode(str(tmp_path / "g16.png"), 64, mode).astype(float)
        assert abs(x.mean() - 127.5) < 1.0, x.mean()  # was 254.6: clipped at 255
        assert x.min() == 0 and x.max() == 255
        np.testing.assert_allclose(x[..., 0], ramp / 257.0, atol=3)  # the ramp, resampled


def test_palette_la_and_cmyk_images_convert_to_their_colours(tmp_path):
    from ga_gan.data.folder import decode
    red = Image.new("RGB", (16, 16), (200, 30, 30))
    red.convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    p_t = red.convert("P", palette=Image.Palette.ADAPTIVE)
    p_t.info["transparency"] = 0
    p_t.save(tmp_path / "pt.png", transparency=0)
    Image.new("LA", (16, 16), (90, 255)).save(tmp_path / "la.png")
    red.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    for name in ("p.png", "pt.png", "cmyk.jpg"):
        x = decode(str(tmp_path / name), 8, "RGB").reshape(-1, 3).mean(0)
        np.testing.assert_allclose(x, (200, 30, 30), atol=6, err_msg=name)
    assert abs(decode(str(tmp_path / "la.png"), 8, "L").mean() - 90) < 1


# --- configs shipped in the package ------------------------------------------------------------

def test_configs_lists_the_shipped_configs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./configs here
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == ["anime", "anime-cpu", "anime-evolve", "digits", "mnist", "mnist-evolve"]
    assert all("ga_gan/configs/" in line for line in lines)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.toml").write_text("# my own\nseed = 3\n")
    assert main(["configs"]) == 0
    assert "mine       configs/mine.toml  my own" in capsys.readouterr().out


def test_wheel_ships_the_configs(tmp_path):
    """`pip install .` (not editable) carries ga_gan/configs/*.toml inside the wheel."""
    import zipfile
    pytest.importorskip("setuptools", minversion="77")  # SPDX license string
    root, src = Path(__file__).resolve().parents[1], tmp_path / "src"
    src.mkdir()  # a copy, so the build leaves no build/ or egg-info in the checkout
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "ga_gan", src / "ga_gan", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("ga_gan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("anime", "anime-cpu", "digits", "mnist"):
        assert f"ga_gan/configs/{name}.toml" in names


def test_validated_fd_names_are_the_extractor_registry():
    """validate.py names the extractors without importing JAX: it must not drift from them."""
    from ga_gan.metrics.features import EXTRACTORS
    from ga_gan.validate import FD_NAMES
    assert set(FD_NAMES) == set(EXTRACTORS)
