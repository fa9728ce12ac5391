"""benchmarks/side_by_side.py at its smallest setting: both methods run, and the table, the plots
and the JSON summary come out."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "side_by_side.py"


def load_script(path: Path = SCRIPT):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out, runs = tmp / "out", tmp / "runs"
    bench = load_script()
    rc = bench.main(["--dataset", "digits", "--budget", "3", "--fd-samples", "256",
                     "--eval-every", "5", "--set", "evolve.g.pop=8", "--set", "evolve.d.pop=8",
                     "--out", str(out), "--runs-dir", str(runs)])
    assert rc == 0
    return out, runs


def _number(cell: str) -> float:
    return float(cell.replace(",", "").split(" ")[0])


def test_table_has_a_numeric_row_per_method(tiny_digits):
    out, _ = tiny_digits
    text = (out / "digits.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(header)
        rows[cells[0]] = dict(zip(header, cells))
    assert set(rows) == {"adam", "evolve"}
    for row in rows.values():
        assert _number(row["steps / gens"]) > 0
        assert _number(row["train s"]) >= 3  # the budget stops each run, not the step count
        for col in ("final fd_pixels", "best fd_pixels (at s)", "final real_score",
                    "final fake_score"):
            assert 0 <= _number(row[col]) < 1e6, (col, row[col])
    assert re.search(r"evolve/adam final fd_pixels at equal wall-clock\*\*: [\d.]+x", text)
    assert "python benchmarks/side_by_side.py --dataset digits --budget 3" in text
    assert "jax backend" in text


def test_plots_are_valid_images(tiny_digits):
    out, _ = tiny_digits
    for name in ("digits_fd.png", "digits_samples.png"):
        path = out / name
        assert path.stat().st_size > 0
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.width > 100 and im.height > 100


def test_json_summary(tiny_digits):
    out, runs = tiny_digits
    report = json.loads((out / "digits.json").read_text())
    for key in ("dataset", "budget", "seed", "methods", "fd_metrics", "thresholds", "ratios",
                "command", "machine", "date"):
        assert key in report
    assert report["dataset"] == "digits" and report["budget"] == 3
    # adam samples from its EMA generator and logs the raw one beside it
    assert report["fd_metrics"] == ["fd_pixels", "fd_pixels_raw"]
    assert [m["method"] for m in report["methods"]] == ["adam", "evolve"]
    for m in report["methods"]:
        for key in ("runner", "steps", "time_s", "stopped_by", "final", "best", "initial",
                    "final_scores", "curve", "reached", "run_dir"):
            assert key in m
        assert m["stopped_by"] == "time_budget"
        assert m["final"]["fd_pixels"] > 0
        assert m["curve"][0]["generation"] == 0 and m["curve"][-1]["generation"] == m["steps"]
        assert Path(m["run_dir"]) == runs / f"digits-{m['method']}"
        assert (Path(m["run_dir"]) / "samples.png").is_file()
    assert report["machine"]["cores"] >= 1 and report["machine"]["backend"]


def test_unknown_method_is_refused(tmp_path, capsys):
    bench = load_script()
    assert bench.main(["--dataset", "digits", "--methods", "adam,nope",
                       "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err


def test_eval_every_picks_about_the_wanted_number_of_points():
    bench = load_script()
    spec = bench.DatasetSpec("x.toml", 60, rate={"train": 1000, "evolve": 20}, points=25)
    every = bench.eval_every_for(spec, "train", 60, 10)
    assert every % 10 == 0 and 10 <= 60 * 1000 / every <= 50
    assert bench.eval_every_for(spec, "evolve", 60, 10) % 10 == 0
    assert set(bench.methods()) >= {"adam", "evolve", "egan", "lipizzaner", "hybrid-egan"}


def test_held_crossing_ignores_a_one_evaluation_dip():
    sbs = load_script()
    fd = [40, 30, 17, 25, 24, 23, 18, 16, 17, 15, 14, 19]
    curve = [{"time_s": float(i), "fd_pixels": v} for i, v in enumerate(fd)]
    assert sbs.first_time(curve, "fd_pixels", 18.3) == 2.0  # the dip
    # t=2..6 (17, 25, 24, 23, 18) has median 23; t=4 (24, 23, 18, 16, 17) has median 18 but is
    # itself above the bar; from t=6, (18, 16, 17, 15, 14) has median 16
    assert sbs.held_time(curve, "fd_pixels", 18.3) == 6.0
    assert sbs.held_time(curve, "fd_pixels", 10.0) is None
    # a falling curve is held from its first crossing, never before it
    assert sbs.held_time(curve, "fd_pixels", 35.0) == sbs.first_time(curve, "fd_pixels", 35.0) == 1.0


def test_throughput_picks_each_populations_fastest_layout_and_ratios():
    tp = load_script(SCRIPT.parent / "throughput.py")
    r = {"vmap": {"s": 3.0}, "map": {"s": 2.0, "chunk": 8},
         "lowrank": {"s": 1.5}, "lowrank_map": {"s": 1.0, "chunk": 4}}
    assert tp.fastest(r, {"vmap": "vmap", "map": "map"}, 1) == ["map", 8]
    assert tp.fastest({"vmap": {"s": 1.0}, "map": {"s": 2.0, "chunk": 1}},
                      {"vmap": "vmap", "map": "map"}, 1) == ["vmap", 0]
    assert tp.fastest(r, {"lowrank_map": "map"}, 1) == ["map", 4]
    assert tp.fastest({}, {"lowrank_map": "map"}, 2) == ["map", 2]
    assert tp.layout_text({"g": ["map", 1], "d": ["map", 4]}) == "G map 1, D map 4"

    gen = lambda strategy, s, peak: {"model": "m", "pop": 8, "strategy": strategy,
                                     "s_per_gen": s, "peak_rss_mib": peak,
                                     "peak_above_init_mib": peak - 100}
    gens = [gen("open_es", 6.0, 1100), gen("lowrank_es", 2.5, 400), gen("lowrank_es", 2.0, 300)]
    results = {"m": {"d": {8: {"plain": {"s": 1.0}}}, "g": {8: {"plain": {"s": 2.0}}}}}
    args = type("A", (), {"batch": 16, "gen_batch": 16})()
    [row] = tp.generation_summary(results, gens, args)
    assert row["speedup"] == 3.0 and row["low"]["s_per_gen"] == 2.0
    assert row["memory"] == 300 / 1100 and row["bound"] == 2.0  # 6 s / (1 + 2) s
    for g, device in zip(gens, (800, 500, 200)):  # an accelerator: its own peaks count
        g["device_peak_mib"] = device
    [row] = tp.generation_summary(results, gens, args)
    assert row["memory"] == 200 / 800 and row["memory_of"] == "device_peak_mib"


def test_throughput_configs_section_is_replaced_and_survives_a_full_report(tmp_path):
    """--configs rewrites only its own section of throughput.md; a full run's report keeps it."""
    sys.path.insert(0, str(SCRIPT.parent))
    tc = load_script(SCRIPT.parent / "throughput_configs.py")
    report = tmp_path / "throughput.md"
    report.write_text("# Population fitness throughput\n\ntables\n")
    rows = [{"config": "c", "variant": v, "layouts": "G auto: map 16 merged; D auto: map 16 merged",
             "s_per_gen": s, "times": [s, s + 0.1], "load": (2.0, 3.0)}
            for v, s in (("reference", 0.5), ("shipped", 0.25))]
    tc.write_section(report, tc.section(rows, "cmd", "cpu", 2, 5))
    first = report.read_text()
    assert first.startswith("# Population fitness throughput\n\ntables\n")
    assert "| c | shipped | G auto: map 16 merged; D auto: map 16 merged | 0.250 | 4.00 | 2.00x |" in first
    rows[1]["s_per_gen"] = 0.4
    tc.write_section(report, tc.section(rows, "cmd", "cpu", 2, 5))
    second = report.read_text()
    assert second.count(tc.BEGIN) == 1 and "| 0.400 | 2.50 | 1.25x |" in second
    assert tc.kept_section(second) in second and "tables" in second
