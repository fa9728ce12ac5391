"""TensorBoard event files in `<out>/tb/` beside metrics.jsonl (`--set log.tensorboard=true`).

Written through tensorboardX (`pip install 'ga-gan[tensorboard]'`): it needs neither TensorFlow
nor torch. (`clu.metric_writers`, which the flax examples use, imports TensorFlow for its
summary writer, so it does not run here without it.) Every numeric metrics.jsonl key becomes a
scalar at step = generation; Fréchet distances go under `frechet/` so that TensorBoard draws
them in one section, and sample grids are images. On resume, events past the checkpoint are
purged (tensorboardX's purge_step), as metrics.jsonl drops its lines past it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ga_gan.errors import UserError

SKIP = ("generation",)


def tag(key: str) -> str:
    """The TensorBoard tag of a metrics.jsonl key."""
    if key.startswith(("fd_", "fid")):
        return f"frechet/{key}"
    if key in ("time_s", "eval_s"):
        return f"time/{key}"
    return f"train/{key}"


class TensorBoard:
    def __init__(self, out: Path, *, resume_generation: int | None = None):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise UserError("log.tensorboard=true needs tensorboardX: "
                            "pip install 'ga-gan[tensorboard]'") from None
        purge = None if resume_generation is None else resume_generation + 1
        self.writer = SummaryWriter(str(Path(out) / "tb"), purge_step=purge,
                                    flush_secs=30)

    def scalars(self, record: dict) -> None:
        step = int(record["generation"])
        for key, value in record.items():
            if key not in SKIP and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag(key), float(value), step)

    def image(self, name: str, image: np.ndarray, step: int) -> None:
        """An (H, W, C) uint8 image (a sample grid)."""
        self.writer.add_image(name, np.asarray(image), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()
