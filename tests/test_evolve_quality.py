"""benchmarks/evolve_quality.py's reading of curves and its bar, on a hand-made report (the
script's runs themselves go through side_by_side's machinery, tested in test_benchmark.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("evolve_quality", BENCH / "evolve_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(method, seed, budget, curve, final):
    return {"method": method, "seed": seed, "budget": budget, "time_s": budget + 1.0,
            "steps": 100, "curve": [{"generation": 10 * t, "time_s": t, "fd_classifier": v}
                                    for t, v in curve],
            "final": {"fd_classifier": final}, "fd_metrics": ["fd_classifier"]}


def test_bar_reads_adam_at_its_time_and_judges_each_seed():
    eq = _module()
    adam = [_run("adam", s, 600, [(0, 900), (100, 60), (300, 40 + s), (500, 20)], 18)
            for s in range(3)]
    evo = [_run("evolve", 0, 3600, [(0, 900), (3000, 45)], 39),
           _run("evolve", 1, 3600, [(0, 900), (3000, 50)], 44)]
    report = {"runs": adam + evo, "bar_at": 300}
    lines = eq.verdict(report, "fd_classifier")
    assert "at 300 s of training: 41" in lines[0]  # the median of 40, 41, 42 read at 300 s
    assert "seed 0" in lines[1] and "meets the bar" in lines[1]  # 39 <= 41
    assert "seed 1" in lines[2] and "misses the bar" in lines[2]  # 44 > 41
    # each seed also against its own seed's Adam at 300 s: 39 / 40, 44 / 41
    assert "0.97x its own seed's Adam, 40" in lines[1]
    assert "1.07x its own seed's Adam, 41" in lines[2]
    # and the method's median over its seeds (issue 15's bar): 41.5 > 41
    assert "evolve, median of 2 seeds: 41.5" in lines[3] and "misses the bar" in lines[3]
    # without bar_at the bar is Adam's whole budget, i.e. its final values
    assert "at 600 s of training: 18" in eq.verdict({"runs": adam}, "fd_classifier")[0]


def test_curve_reading_before_between_and_after_the_budget():
    eq = _module()
    run = _run("evolve", 0, 100, [(0, 900), (50, 300), (90, 200)], 150)
    assert eq.value_at(run["curve"], "fd_classifier", 49.9) == 900
    assert eq.reading(run, "fd_classifier", 60) == 300
    assert eq.reading(run, "fd_classifier", 200) == 150  # past the run's clock: its final state
    assert eq.reading(run, "fd_classifier", 100) == 150  # at its budget (time_s overshoots it)
    assert eq.parse_budgets("adam=300, evolve=3600") == {"adam": 300.0, "evolve": 3600.0}


def test_each_run_is_judged_against_its_own_generation_0():
    eq = _module()
    runs = [_run("evolve", 0, 1800, [(0, 1000), (900, 400)], 499),
            _run("evolve", 1, 1800, [(0, 1000), (900, 400)], 500)]
    lines = eq.against_start({"runs": runs}, "fd_classifier")
    assert "49.9% of its start (below half)" in lines[0]
    assert "50.0% of its start (not below half)" in lines[1]


def test_the_grid_is_read_as_the_classifiers_confident_share_at_the_bars_times():
    eq = _module()

    def scored(run, points):  # (time_s, confident, classes) added to the run's curve
        run["curve"] += [{"generation": 10 * t, "time_s": t, "confident": c,
                          "classes_covered": k} for t, c, k in points]
        return run

    adam = scored(_run("adam", 0, 600, [(0, 900)], 18), [(300, 0.44, 9), (600, 0.6, 10)])
    evo = scored(_run("evolve", 0, 3600, [(0, 900)], 40), [(1800, 0.2, 8), (3600, 0.3, 9)])
    report = {"runs": [evo, adam], "bar_at": 300, "ceiling": {"confident": 0.88,
                                                                "classes_covered": 10}}
    lines = eq.legibility(report)
    assert lines[0] == "Real test images: 0.88 confident, 10 classes covered."
    # Adam at the bar's 300 s (not its end), evolution at its end; Adam listed first
    assert lines[1] == "- adam seed 0 at 300 s: 0.44 confident (50% of real), 9 classes"
    assert lines[2] == "- evolve seed 0 at 3600 s: 0.3 confident (34% of real), 9 classes"
    # no classifier (Anime): no section
    assert eq.legibility({"runs": [evo, adam], "ceiling": {"fd_pixels": 10.0}}) == []


def test_a_signal_stops_the_benchmark_and_its_truncated_run_is_not_recorded(
        tmp_path, monkeypatch, capsys):
    """A SIGTERM makes the Runner save and return early; the benchmark used to record that run
    (10 generations read as a 300 s result) and start the next one."""
    import json
    import signal

    import ga_gan.run
    from ga_gan.interrupt import StopOnSignal

    runs = []

    class SignalInSecondRun(StopOnSignal):
        def __enter__(self):
            super().__enter__()
            runs.append(self)
            if len(runs) == 2:
                self.signal = signal.SIGTERM  # as if it arrived at the first generation
            return self

    monkeypatch.setattr(ga_gan.run, "StopOnSignal", SignalInSecondRun)
    eq = _module()
    out = tmp_path / "out"
    # evolve's budget is far beyond its first chunk (compilation included: ~2 s on a loaded
    # machine), so the signal, not the budget, is what stops it
    rc = eq.main(["--dataset", "digits", "--budgets", "adam=2,evolve=60", "--seeds", "0,1",
                  "--fd-samples", "256", "--set", "evolve.g.pop=8", "--set", "evolve.d.pop=8",
                  "--out", str(out), "--runs-dir", str(tmp_path / "runs"), "--name", "q"])
    err = capsys.readouterr().err
    assert rc == 130
    assert "interrupted: evolve stopped by a signal" in err and "Traceback" not in err
    assert len(runs) == 2  # seed 1 never started
    report = json.loads((out / "q.json").read_text())
    assert [(r["method"], r["seed"]) for r in report["runs"]] == [("adam", 0)]
    assert report["runs"][0]["stopped_by"] == "time_budget"
    assert report["machine"]["cores"] >= 1  # recorded, so --report-only can write the table
