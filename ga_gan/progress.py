"""Progress display for long runs."""

from __future__ import annotations

import sys


class Progress:
    """A tqdm bar when stderr is a terminal, else one plain line every ~10% of the run."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.enabled, self.total, self.bar = enabled, total, None
        self.next_line = start
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="gen", dynamic_ncols=True)

    def __call__(self, generation: int, last: dict) -> None:
        if not self.enabled:
            return
        show = {k: last[k] for k in ("real_score", "fake_score", "loss_d", "loss_g")
                if k in last}
        show.update({k: v for k, v in last.items() if k.startswith(("fd_", "fid"))})
        text = " ".join(f"{k}={v:.3g}" for k, v in show.items())
        if self.bar is not None:
            self.bar.n = generation
            self.bar.set_postfix_str(text, refresh=True)
        elif generation >= self.next_line or generation == self.total:
            print(f"generation {generation}/{self.total} {text}", file=sys.stderr, flush=True)
            self.next_line = generation + max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
