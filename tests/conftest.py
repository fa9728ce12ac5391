"""What every test shares: one JAX compilation cache for the whole session and the digits
fixtures (helpers.py holds the small configs and loops, procs.py the helpers for tests that
start `ga-gan` processes).

The compilation cache: most of the suite's time is XLA compiling the same small programs again,
in this process and in every `ga-gan` process a test starts. The cache is set through the
environment at import time (before anything imports jax), so every subprocess inherits the
same folder. A cached executable is the one a fresh compile
produces, so no number changes (the bit-exact resume tests run with it). Set
GA_GAN_TEST_NO_JAX_CACHE=1 to compile everything afresh (measured: test_hybrid.py takes 77 s
of CPU with the cache, 91 s without).

XLA's LLVM backend at optimisation level 1 (XLA's default is 2): the programs here are small,
so compiling them is most of the suite's time, and level 1 compiles faster while its code still
runs fast (measured on the shared 2-core machine under load 2 to 6, so roughly: test_hybrid.py
59 s of CPU instead of 77 s; the MNIST config test and the 300-generation evolve test 28 s
instead of 42 s; level 0 compiles faster still, but its code is slow: 73 s for those two).
Every comparison in the suite (a resumed run
against an uninterrupted one, 4 devices against 1) compares programs compiled with the same
flags, in this process and in the `ga-gan` processes it starts (they inherit XLA_FLAGS).
GA_GAN_TEST_XLA_OPT=1 keeps XLA's default level (what users run), for a release check.
"""

from __future__ import annotations

import os
import shutil
import tempfile

if not os.environ.get("GA_GAN_TEST_NO_JAX_CACHE") and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="ga-gan-test-jax-cache-")
    os.environ["GA_GAN_TEST_OWNS_JAX_CACHE"] = os.environ["JAX_COMPILATION_CACHE_DIR"]
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
if not os.environ.get("GA_GAN_TEST_XLA_OPT") and \
        "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"),
                                                     "--xla_backend_optimization_level=1"]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if "GA_GAN_TEST_LOCK_DIR" not in os.environ:  # procs.Cores: made before any xdist worker starts
    os.environ["GA_GAN_TEST_LOCK_DIR"] = tempfile.mkdtemp(prefix="ga-gan-test-locks-")
    os.environ["GA_GAN_TEST_OWNS_LOCK_DIR"] = os.environ["GA_GAN_TEST_LOCK_DIR"]

import jax  # noqa: E402  (after the environment above)
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # jax may have been imported before this file
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


@pytest.fixture(autouse=True)
def _cores_shared():
    """Every test runs holding the cores shared; procs.CORES.alone() takes them exclusively."""
    from procs import CORES
    CORES.take_shared()
    yield
    CORES.release_shared()


@pytest.fixture(scope="session")
def dataset():
    """The embedded digits, all splits: the data of every small method test."""
    from ga_gan.data import load_dataset
    return load_dataset("digits", split="all", log=lambda *_: None)


@pytest.fixture(scope="session")
def digits(dataset):
    """The embedded digits' images as one device array."""
    return jnp.asarray(dataset.images)


def pytest_unconfigure(config):
    """The session that made the cache and lock folders removes them (pytest-xdist workers leave
    them alone)."""
    if not hasattr(config, "workerinput"):
        owned = os.environ.get("GA_GAN_TEST_OWNS_JAX_CACHE")
        if owned and owned == os.environ.get("JAX_COMPILATION_CACHE_DIR"):
            shutil.rmtree(owned, ignore_errors=True)
        locks = os.environ.get("GA_GAN_TEST_OWNS_LOCK_DIR")
        if locks and locks == os.environ.get("GA_GAN_TEST_LOCK_DIR"):
            shutil.rmtree(locks, ignore_errors=True)
