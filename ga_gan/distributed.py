"""Many devices and many hosts: one population mesh, fitness sharded over it, the rest replicated.

Layout (measured fastest, see notes): ask/tell run replicated on every device (each draws the
same noise from the same key); only the fitness evaluation is split, with the population axis
of `jax.shard_map` over every device, so the only traffic per generation is the fitness vector.

Single host: the mesh covers the local devices (none when there is only one device, and then
nothing changes). Many hosts (`--distributed`): `initialize()` runs `jax.distributed.initialize`
before any other JAX work, the mesh covers `jax.devices()` (every process's devices), and the
run's data and state are global arrays replicated over it (`replicate`); host-side reads go
through `local` (this process's copy of a replicated array).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from ga_gan.errors import UserError

AXIS = "pop"
_enabled = True


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """`jax.distributed.initialize`, before any JAX computation. TPU pods and SLURM/MPI-launched
    clusters detect themselves (no arguments); elsewhere pass all three. On CPU, cross-process
    collectives use gloo."""
    given = [a is not None for a in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise UserError("--coordinator, --num-processes and --process-id go together")
    # only affects the CPU backend (accelerators bring their own collectives)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        if all(given):
            jax.distributed.initialize(coordinator_address=coordinator,
                                       num_processes=num_processes, process_id=process_id)
        else:
            jax.distributed.initialize()
    except (RuntimeError, ValueError) as e:
        raise UserError(f"--distributed: jax.distributed.initialize failed: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else e!r}") from e
    population_mesh.cache_clear()


def set_enabled(on: bool) -> None:
    """Turn population sharding off (True again: back on); for comparisons and debugging."""
    global _enabled
    _enabled = on
    population_mesh.cache_clear()


@functools.lru_cache(maxsize=None)
def population_mesh() -> jax.sharding.Mesh | None:
    """A 1-D mesh named "pop" over every device of every process; None with a single device
    (or sharding turned off). Auto axis types: evosax's tell fails under Explicit ones."""
    if not _enabled or jax.device_count() == 1:
        return None
    return jax.make_mesh((jax.device_count(),), (AXIS,),
                         axis_types=(jax.sharding.AxisType.Auto,), devices=jax.devices())


def replicated() -> NamedSharding | None:
    mesh = population_mesh()
    return None if mesh is None else NamedSharding(mesh, P())


def check_split(pop: int) -> int:
    """The device count, when a population of `pop` splits evenly over the mesh."""
    n = jax.device_count()
    if pop % n:
        raise UserError(f"--pop {pop} does not split over {n} devices (use a multiple of {n}, "
                        f"or one device)")
    return n


def shard_population(fn, population: Any) -> jax.Array:
    """fn(rows) -> per-row values, run on each device's slice of the population rows.

    `population` is an array of rows or a pytree whose leaves all lead with the member axis
    (low-rank factors). Arrays `fn` closes over (the real batch, the fakes, the opponent's mean,
    traced or not) are passed whole to every device (replicated); the fitness vector is the only
    output.
    """
    mesh = population_mesh()
    if mesh is None:
        return fn(population)
    check_split(jax.tree.leaves(population)[0].shape[0])
    return jax.shard_map(fn, mesh=mesh, in_specs=P(AXIS), out_specs=P(AXIS))(population)


def replicate(tree: Any) -> Any:
    """Host or single-device arrays as global arrays replicated over the mesh (every process
    passes the same values); unchanged without a mesh."""
    sharding = replicated()
    if sharding is None:
        return tree

    def put(x):
        if not isinstance(x, (jax.Array, np.ndarray)):
            return x
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(x)
            data = put(jax.random.key_data(x))
            return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl),
                           out_shardings=sharding)(data)
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, tree)


def local(tree: Any) -> Any:
    """This process's copy of replicated global arrays (single-device arrays), so host code
    (metrics, sampling) can read them without a collective. Other leaves pass through."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x.addressable_data(0)
        return x
    return jax.tree.map(one, tree)


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def any_process(flag: bool) -> bool:
    """True on every process if `flag` is True on any one. A preemption's SIGTERM reaches the
    hosts of a pod at slightly different times: each must stop after the same chunk, or one would
    save (a collective) while another runs the next step (also a collective), and both hang."""
    if not is_multiprocess():
        return flag
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))
