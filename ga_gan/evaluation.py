"""What a run measures of its generator: Fréchet distances, classifier scores, sample grids.

Kept apart from the Runner's loop: the same `Evaluation` scores a run while it trains, and a
benchmark scores a finished run's last checkpoint with it (`Runner.evaluate`).
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np

from ga_gan import distributed, ema
from ga_gan.config import RunConfig
from ga_gan.data import Dataset, to_model_range
from ga_gan.images import grid
from ga_gan.sampling import sample_images

GRID_KEY, FD_KEY = 0x6121D, 0xFD  # fixed latents for the grids and for every evaluation


class Evaluation:
    """One run's evaluators (built on first use: the classifier may need training)."""

    def __init__(self, cfg: RunConfig, gan, method, dataset: Dataset,
                 log: Callable[[str], None] = print):
        self.cfg, self.gan, self.method, self.dataset, self.log = cfg, gan, method, dataset, log
        self._evaluators, self._scorers = None, None

    def sample(self, state, n: int, key: jax.Array, single: bool = False) -> np.ndarray:
        """n images in eval mode (running BN statistics): from the method's own `sample` when
        it has one (a mixture of generators), else (or with `single`) from `generator`."""
        if hasattr(self.method, "sample") and not single:
            return self.method.sample(state, key, n)
        params, stats = distributed.local(self.method.generator(state))
        return sample_images(self.gan, params, stats, key, n)

    def evaluators(self):
        if self._evaluators is None:
            from ga_gan.metrics import FrechetEvaluator
            self._evaluators = [
                FrechetEvaluator(name, self.dataset.images, self.dataset.name,
                                 n_samples=self.cfg.log.fd_samples,
                                 weights=self.cfg.log.inception_weights,
                                 labelled_dataset=self.dataset, log=self.log)
                for name in self.cfg.log.fd]
        return self._evaluators

    def scorers(self):
        if self._scorers is None:
            from ga_gan.metrics.score import make_scorers
            self._scorers = make_scorers(self.cfg.log.scores, self.dataset.images.shape[1:],
                                         dataset_name=self.dataset.name,
                                         labelled_dataset=self.dataset, log=self.log)
        return self._scorers

    def __call__(self, state) -> dict:
        """Fréchet distances of the run's generator, with the raw generator's beside them
        (`fd_*_raw`) when an average is kept, and `eval_s`: the seconds this took."""
        if not (self.cfg.log.fd or self.cfg.log.scores) or self.cfg.log.eval_every <= 0:
            return {}
        t0 = time.perf_counter()
        key = jax.random.fold_in(jax.random.key(self.cfg.seed), FD_KEY)
        out = {}
        # a method that samples a mixture also logs its single best generator (`_single`)
        for single in (False, True) if hasattr(self.method, "sample") else (False,):
            fds = self.frechet(self.sample(state, self.cfg.log.fd_samples, key, single=single))
            out.update({k + ("_single" if single else ""): v for k, v in fds.items()})
        if isinstance(self.method, ema.EMA):
            params, stats = distributed.local(self.method.raw_generator(state))
            raw = self.frechet(sample_images(self.gan, params, stats, key,
                                             self.cfg.log.fd_samples))
            out.update({f"{k}_raw": v for k, v in raw.items()})
        return {**out, "eval_s": round(time.perf_counter() - t0, 3)}

    def frechet(self, fakes: np.ndarray) -> dict:
        fakes = to_model_range(fakes)
        out = {ev.metric_name: float(ev(fakes)) for ev in self.evaluators()}
        for scorer in self.scorers():  # classifier_score, classes_covered, confident
            out.update(scorer(fakes))
        return out

    def grid(self, state) -> np.ndarray:
        """The 8x8 sample grid of fixed latents, as a uint8 image."""
        key = jax.random.fold_in(jax.random.key(self.cfg.seed), GRID_KEY)
        return grid(self.sample(state, 64, key), cols=8)
