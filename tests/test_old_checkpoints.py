"""Run folders written by the version before issue 14 (tests/data/old-runs, see its README)
still resume: from their checkpoint at generation 6, not from scratch, and to the very state and
metrics.jsonl lines an uninterrupted run of the current code reaches at generation 10."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from procs import assert_same_final_state, metrics

from ga_gan.cli import main

pytestmark = pytest.mark.slow

OLD_RUNS = Path(__file__).parent / "data" / "old-runs"
SAVED, TOTAL = 6, 10
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
    assert_same_final_state(old, fresh, TOTAL)
    assert metrics(old) == metrics(fresh)  # every line, timings aside
    assert [r["generation"] for r in metrics(old)] == list(range(1, TOTAL + 1))
