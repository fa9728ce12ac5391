"""Progress display for long runs: where the run is, how fast it goes, and what evaluation costs.

One line: generation, generations/s, ETA, real_score, fake_score, the last Fréchet distances
and the share of the wall clock spent in Fréchet evaluation (`eval_s` in metrics.jsonl), so a
run whose evaluation dominates says so. `--no-progress` turns it off (clean logs).
"""

from __future__ import annotations

import sys
import time

LINE_EVERY_S = 30.0  # without a terminal: a line every ~10% of the run or every 30 s


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """A tqdm bar when stderr is a terminal, else a plain line every ~10% of the run or 30 s."""

    def __init__(self, total: int, start: int, enabled: bool, *,
                 time_budget: float | None = None, train_time: float = 0.0):
        self.enabled, self.total, self.start, self.bar = enabled, total, start, None
        self.time_budget = time_budget
        self.t0, self.train0 = time.perf_counter(), train_time
        self.eval_s, self.fd, self.scores = 0.0, {}, {}
        self.next_line, self.last_line = start, self.t0
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="gen", dynamic_ncols=True)

    def observe(self, record: dict) -> None:
        """Take a metrics.jsonl record into account (evaluation time, latest values)."""
        self.eval_s += record.get("eval_s", 0.0)
        self.scores.update({k: record[k] for k in ("real_score", "fake_score") if k in record})
        self.fd.update({k: v for k, v in record.items() if k.startswith(("fd_", "fid"))})

    def text(self, generation: int, train_time: float) -> str:
        wall = max(time.perf_counter() - self.t0, 1e-9)
        rate = (generation - self.start) / wall
        left = (self.total - generation) / rate if rate > 0 else float("inf")
        if self.time_budget is not None and train_time > self.train0:
            # the budget counts training seconds; wall seconds run faster by this ratio
            wall_per_train = wall / (train_time - self.train0)
            left = min(left, max(self.time_budget - train_time, 0.0) * wall_per_train)
        parts = [f"{rate:.3g} gen/s", f"ETA {_duration(left) if left < 1e7 else '?'}"]
        parts += [f"{k}={v:.3g}" for k, v in {**self.scores, **self.fd}.items()]
        parts.append(f"eval {100 * self.eval_s / wall:.0f}% of wall")
        return " ".join(parts)

    def __call__(self, generation: int, records: list[dict], train_time: float) -> None:
        if not self.enabled:
            return
        for r in records:
            self.observe(r)
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.n = generation
            self.bar.set_postfix_str(self.text(generation, train_time), refresh=True)
        elif (generation >= self.next_line or generation == self.total
              or now - self.last_line >= LINE_EVERY_S):
            print(f"generation {generation}/{self.total} {self.text(generation, train_time)}",
                  file=sys.stderr, flush=True)
            self.next_line = generation + max(1, self.total // 10)
            self.last_line = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
