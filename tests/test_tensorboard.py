"""`log.tensorboard=true` writes what metrics.jsonl holds: read the event files back and compare."""

from __future__ import annotations

import math

import pytest

from ga_gan.config import RunConfig, apply_overrides
from ga_gan.run import Runner
from ga_gan.runlog import read_metrics

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _events(folder):
    acc = event_accumulator.EventAccumulator(
        str(folder), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    acc.Reload()
    return acc


def test_event_scalars_match_metrics_jsonl(tmp_path):
    from ga_gan.tblog import tag
    over = {"out": str(tmp_path / "run"), "train.steps": 10, "log.tensorboard": True,
            "log.eval_every": 5, "log.image_every": 5, "log.steps_per_call": 5,
            "log.progress": False, "log.fd_samples": 128, "log.checkpoint_every": 5}
    Runner(apply_overrides(RunConfig(), over), "train", log=lambda *_: None).run()
    # extend the run: the resumed process appends to the same tags, without duplicates
    over["train.steps"] = 15
    Runner(apply_overrides(RunConfig(), over), "train", log=lambda *_: None).run()

    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    expected: dict[str, dict[int, float]] = {}
    for r in records:
        for k, v in r.items():
            if k != "generation":
                expected.setdefault(tag(k), {})[r["generation"]] = v
    assert {"train/real_score", "frechet/fd_pixels", "frechet/fd_pixels_raw",
            "time/eval_s"} <= set(expected)

    acc = _events(tmp_path / "run" / "tb")
    assert set(acc.Tags()["scalars"]) == set(expected)
    for name, by_step in expected.items():
        events = acc.Scalars(name)
        assert [e.step for e in events] == sorted(by_step), name
        for e in events:
            assert math.isclose(e.value, by_step[e.step], rel_tol=1e-6, abs_tol=1e-6), name
    assert [e.step for e in acc.Scalars("frechet/fd_pixels")] == [0, 5, 10, 15]
    images = acc.Images("samples")
    assert [e.step for e in images] == [5, 10, 15]
    assert images[0].width > 0 and images[0].encoded_image_string.startswith(b"\x89PNG")
