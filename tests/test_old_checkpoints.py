"""Run folders written by the version before issue 14 (tests/data/old-runs, see its README)
still resume: from their checkpoint at generation 6, not from scratch, keeping their metrics
lines, and to the state and metrics.jsonl lines an uninterrupted run of the current code reaches
at generation 10.

Equal up to float rounding, not bit for bit: those folders were written on another CPU, and XLA
compiles for the CPU it runs on (vector width, hence the order of float sums), so the first six
generations of a fresh run here can differ from the saved ones in the last bits (measured: at
most 2.4e-7 absolute, 2.6e-6 relative in the logged numbers). On the machine that wrote them the
resume was bit-exact (its README), and bit-exact resume of the current code is test_resume.py's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from procs import assert_same_final_state, metrics

from ga_gan.cli import main

pytestmark = pytest.mark.slow

OLD_RUNS = Path(__file__).parent / "data" / "old-runs"
SAVED, TOTAL = 6, 10
RTOL = 1e-4  # float rounding from another CPU, carried through four more generations
FLAGS = ["--no-progress", "--set", "model.width=0.25", "--set", "model.g_hidden=16",
         "--set", "model.d_hidden=16", "--set", "model.latent_dim=4",
         "--set", "log.eval_every=0", "--set", "log.image_every=0",
         "--set", "log.checkpoint_every=3", "--set", "log.max_to_keep=1",
         "--set", "log.steps_per_call=2"]
COMMANDS = {"evolve": ["evolve", "--pop", "8"], "train": ["train"],
            "egan": ["evolve", "--mode", "hybrid", "--hybrid", "egan", "--pop", "4"]}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_old_run_folder_resumes_bit_exact(name, tmp_path, capsys):
    command = COMMANDS[name][0]
    length = ["--steps" if command == "train" else "--generations", str(TOTAL)]
    old = tmp_path / name
    shutil.copytree(OLD_RUNS / name, old)
    written_before = (old / "metrics.jsonl").read_text()
    assert [r["generation"] for r in metrics(old)] == list(range(1, SAVED + 1))

    assert main([command, "--resume", str(old), *length, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {old} from its checkpoint at generation {SAVED}" in out, out
    assert (old / "metrics.jsonl").read_text().startswith(written_before)  # kept, not redone

    fresh = tmp_path / f"{name}-fresh"
    assert main([*COMMANDS[name], *FLAGS, *length, "--out", str(fresh)]) == 0
    assert_same_final_state(old, fresh, TOTAL, rtol=RTOL)
    resumed, reference = metrics(old), metrics(fresh)
    assert [r["generation"] for r in resumed] == list(range(1, TOTAL + 1))
    assert [sorted(r) for r in resumed] == [sorted(r) for r in reference]  # same keys per line
    for r, ref in zip(resumed, reference):  # every line, timings aside
        assert r == pytest.approx(ref, rel=RTOL, abs=RTOL * 1e-2), r["generation"]
