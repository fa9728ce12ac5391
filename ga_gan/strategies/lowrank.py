"""Low-rank evolution strategy (in the spirit of EGGROLL, "Evolution Strategies at the Hyperscale").

Member i of a population is the shared mean plus a perturbation. For every large kernel (Dense,
Conv, ConvTranspose) the perturbation is rank r,

    W_i = W + sigma / sqrt(r) * s_i * A_i @ B_i^T      (A_i: fan_in x r, B_i: out x r, s_i = +-1)

and the member's layer output is computed without ever forming W_i:

    y_i = layer(x_i; W) + sigma / sqrt(r) * s_i * (layer(x_i; A_i) @ B_i^T)

`layer(x; A)` is the same layer (same strides, padding, dilation) with r output channels, so
for a convolution it is a k x k convolution to r channels followed by a 1x1 convolution (a
matmul over channels) to the output channels; the same holds for a transposed convolution,
since both are linear in the kernel. Small leaves (biases, BatchNorm scale/bias, kernels whose
smaller side is not above r) get plain Gaussian noise, which is cheap. A small *kernel* (a conv to
3 colour channels, a dense to one logit) is still applied through its layer, as
`layer(x; W) + sigma * s_i * layer(x; eps_i)`: putting a per-member kernel inside the module would
make vmap batch the kernel, and a batched kernel is a grouped convolution, which XLA:CPU runs
several times slower than ordinary ones (measured: the G population of the 32x32 DCGAN, whose
last transposed conv has 3 output channels, ran 2.8x slower per member in chunks of 4).

The layers are reached through `flax.linen.intercept_methods`: the module runs as written with
the mean's kernel, and the interceptor adds the correction from the member's factors, looked up
by module path. Under `jax.vmap` over members the mean kernel is not batched, so XLA turns the
base op of every layer into one large op over all members' images; only the thin factors are
batched. No pop x n array is ever materialised: noise per member is r * (fan_in + out) per
kernel plus the small leaves.

`kernels="merged"` (opt-in, `evolve.{g,d}.kernels`) computes the same member another way: its
kernel W_i = W + sigma / sqrt(r) * s_i * A_i B_i^T is formed (a few thousand floats on a
population-sized net) and the layer runs once with it, instead of the mean's op plus the thin
correction. Equal up to float reassociation; on tiny nets it saves one op per layer and chunk
(measured: the MNIST-evolve D population 1.7x faster,
benchmarks/results/throughput-small-nets.md).

Estimator: antithetic pairs (member j and j + P/2 share factors with opposite signs;
`mirrored=False`: P independent draws), centred ranks of the (to be minimised) fitness (evosax's
own shaping; or z-scores, or raw values), and the OpenES gradient

    g = 1 / (P * sigma) * sum_i f_i * eps_i ,    eps_i = s_i * A_i B_i^T / sqrt(r) (reshaped)

computed as one einsum over the factors, then an optax optimizer on the flat mean. With a std
schedule, sigma_t = schedule(generation_counter): ask scales the drawn factors by sigma_t / sigma,
so members and the interceptor run unchanged, and tell divides the estimate by (sigma_t/sigma)^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from evosax.core.fitness_shaping import centered_rank_fitness_shaping_fn
from flax import struct
from jax.flatten_util import ravel_pytree

from ga_gan.config import KERNEL_FORMS  # how a member's layer is computed (module doc)
from ga_gan.distributed import shard_population
from ga_gan.errors import UserError
from ga_gan.strategies.base import make_optimizer, over_members, shaping_fn

NAME = "lowrank_es"
LAYERS = (nn.Dense, nn.Conv, nn.ConvTranspose)


@struct.dataclass
class LowRankState:
    mean: jax.Array  # flat, in `ravel_pytree` order of the network's params
    opt_state: Any
    best_fitness: jax.Array
    generation_counter: jax.Array


@dataclass(frozen=True)
class _Kernel:
    module: str  # module path, '/'-joined, as `Module.path` gives it
    leaf: tuple  # key path of the kernel inside the params tree
    shape: tuple


def _key_names(path) -> tuple:
    return tuple(getattr(k, "key", getattr(k, "name", str(k))) for k in path)


@dataclass(frozen=True, eq=False)
class LowRankES:
    """Per-layer rank-r perturbations; hashable by identity (a jit static, like `Strategy`)."""

    name: str
    pop: int
    rank: int
    std: float
    optimizer: Any
    kernels: tuple  # _Kernel for every low-rank leaf
    small: tuple  # key paths of the full-rank (plain Gaussian) leaves
    layer_noise: tuple  # _Kernel for the small leaves that are layer kernels (see module doc)
    template: Any  # params pytree of ShapeDtypeStructs
    unravel: Callable
    kernel_form: str = "factored"  # KERNEL_FORMS
    distribution: bool = True
    std_schedule: Callable | None = None  # sigma_t of the generation count (None: constant std)
    mirrored: bool = True  # antithetic pairs; False: pop independent draws
    shape_fitness: Callable = centered_rank_fitness_shaping_fn  # evosax signature

    @property
    def population_size(self) -> int:
        return self.pop

    @property
    def layer_kernels(self) -> tuple:
        """Every kernel whose noise the interceptor adds: low-rank and small (full noise)."""
        return self.kernels + self.layer_noise

    # --- SearchStrategy: a population is the P/2 pairs' factors, never P flat rows ------------
    def init(self, key: jax.Array, x0: jax.Array,
             evaluated: tuple[jax.Array, jax.Array] | None = None) -> LowRankState:
        del key
        best = jnp.asarray(jnp.inf, jnp.float32) if evaluated is None else jnp.nanmin(evaluated[1])
        return LowRankState(mean=x0, opt_state=self.optimizer.init(x0), best_fitness=best,
                            generation_counter=jnp.zeros((), jnp.int32))

    def center(self, state: LowRankState) -> jax.Array:
        return state.mean

    def ask(self, key: jax.Array, state: LowRankState) -> tuple[dict, LowRankState]:
        noise = self.sample(key)
        if self.std_schedule is not None:  # sigma_t: the factors scaled by sigma_t / sigma
            ratio = self.std_ratio(state)
            noise = {**noise, "A": jax.tree.map(lambda a: a * ratio, noise["A"]),
                     "eps": jax.tree.map(lambda e: e * ratio, noise["eps"])}
        return noise, state

    def std_ratio(self, state: LowRankState) -> jax.Array:
        """sigma_t / sigma of the state's generation (the schedule's count is the state's)."""
        return self.std_schedule(state.generation_counter) / self.std

    @property
    def draws(self) -> int:
        """Noise draws per generation: P/2 mirrored pairs, or P independent members."""
        return self.pop // 2 if self.mirrored else self.pop

    def evaluate(self, member_fitness: Callable, noise: dict, state: LowRankState,
                 unravel: Callable, layout: str, chunk: int) -> jax.Array:
        """Every member run around the (unravelled) mean, which is never copied per member."""
        return evaluate_lowrank(self, unravel(self.center(state)), noise, member_fitness,
                                layout, chunk)

    # --- noise --------------------------------------------------------------------------------
    def sample(self, key: jax.Array) -> dict:
        """Factors for the P/2 antithetic pairs: {'A': {module: (P/2, *fan_in, r)},
        'B': {module: (P/2, out, r)}, 'eps': {leaf: (P/2, *shape)}}.

        One draw of P/2 x (all factors and small leaves), cut into pieces: a separate threefry
        per piece made the compiled step twice as large and its compilation 2x slower (the
        noise of one member is small, a few r x (fan_in + out) per kernel)."""
        half, r = self.draws, self.rank
        shapes = ([("A", k.module, (*k.shape[:-1], r)) for k in self.kernels]
                  + [("B", k.module, (k.shape[-1], r)) for k in self.kernels]
                  + [("eps", "/".join(p), _leaf(self.template, p).shape) for p in self.small])
        sizes = [math.prod(shape) for _, _, shape in shapes]
        flat = jax.random.normal(key, (half, sum(sizes)), jnp.float32)
        out: dict = {"A": {}, "B": {}, "eps": {}}
        start = 0
        for (kind, name, shape), size in zip(shapes, sizes):
            out[kind][name] = flat[:, start:start + size].reshape(half, *shape)
            start += size
        return out

    @staticmethod
    def members(noise: dict, mirrored: bool = True) -> dict:
        """Expand pairs to the whole population: members j and j + P/2 have opposite signs
        (the sign goes on A and on eps; B is shared). Unmirrored draws are the members."""
        if not mirrored:
            return noise
        both = lambda x: jnp.concatenate([x, -x])
        return {"A": jax.tree.map(both, noise["A"]),
                "B": jax.tree.map(lambda x: jnp.concatenate([x, x]), noise["B"]),
                "eps": jax.tree.map(both, noise["eps"])}

    # --- one member's network -------------------------------------------------------------------
    def member_params(self, mean_tree: Any, member: dict) -> Any:
        """The mean with every small non-kernel leaf perturbed; kernels stay the (shared)
        mean, their noise is added by the interceptor."""
        out = mean_tree
        through_layer = {k.leaf for k in self.layer_noise}
        for path in self.small:
            if path not in through_layer:
                out = _set_leaf(out, path,
                                _leaf(mean_tree, path) + self.std * member["eps"]["/".join(path)])
        return out

    def interceptor(self, member: dict, params: Any, reached: set | None = None) -> Callable:
        """A flax method interceptor adding the member's low-rank correction to every low-rank
        layer of the network that runs with `params`. A layer is recognised by its module path
        and by holding that very kernel array, so another network called in the same fitness
        function (D scoring a G member's images) passes through untouched. The paths of the
        layers it corrects are added to `reached` (at trace time)."""
        scale = self.std / math.sqrt(self.rank)
        A, B = member["A"], member["B"]
        eps = {k.module: member["eps"]["/".join(k.leaf)] for k in self.layer_noise}
        kernels = {k.module: _leaf(params, k.leaf) for k in self.layer_kernels}

        def intercept(next_fun, args, kwargs, context):
            mod = context.module
            path = "/".join(mod.path) if isinstance(mod, LAYERS) else None
            if context.method_name != "__call__" or path not in kernels or \
                    not mod.has_variable("params", "kernel") or \
                    mod.get_variable("params", "kernel") is not kernels[path]:
                return next_fun(*args, **kwargs)
            x = args[0] if args else kwargs["inputs"]
            if reached is not None:
                reached.add(path)
            if self.kernel_form == "merged":  # the member's own kernel, one op
                noise = (self.std * eps[path] if path in eps else
                         scale * jnp.einsum("...r,or->...o", A[path], B[path]))
                return merged_layer(mod, x, kernels[path] + noise)
            y = next_fun(*args, **kwargs)
            if path in eps:  # a small kernel: its full noise, through the layer (linear in it)
                return y + self.std * layer_linear(mod, x, eps[path])
            return y + scale * thin_correction(mod, x, A[path], B[path])

        return intercept

    def member_apply(self, mean_tree: Any, member: dict, fn: Callable) -> Any:
        """fn(params) evaluated as member `member` (one member's factors, no population axis)."""
        params = self.member_params(mean_tree, member)
        reached: set = set()
        with nn.intercept_methods(self.interceptor(member, params, reached)):
            out = fn(params)
        # A kernel whose layer the interceptor never saw (not Dense/Conv/ConvTranspose, or not
        # called) would be evaluated unperturbed while `tell` credits it with noise.
        missed = {k.module for k in self.layer_kernels} - reached
        if missed:
            raise RuntimeError(f"{NAME}: the layers {sorted(missed)} hold perturbed kernels but "
                               "were not run as flax Dense/Conv/ConvTranspose by the fitness")
        return out

    # --- update -----------------------------------------------------------------------------------
    def gradient(self, noise: dict, shaped: jax.Array) -> jax.Array:
        """OpenES gradient (flat, ravel order) from P/2 pairs' factors and P shaped fitnesses,
        without forming any per-member full matrix."""
        half = self.pop // 2
        # antithetic: f_j eps_j + f_{j+h} (-eps_j)
        w = shaped[:half] - shaped[half:] if self.mirrored else shaped
        denom = self.pop * self.std
        grads = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self.template)
        for k in self.kernels:
            a, b = noise["A"][k.module], noise["B"][k.module]
            g = jnp.einsum("p,p...r,por->...o", w, a, b) / (denom * math.sqrt(self.rank))
            grads = _set_leaf(grads, k.leaf, g)
        for path in self.small:
            e = noise["eps"]["/".join(path)]
            grads = _set_leaf(grads, path, jnp.tensordot(w, e, axes=1) / denom)
        return ravel_pytree(grads)[0]

    def tell(self, key: jax.Array, noise: dict, fitness: jax.Array,
             state: LowRankState) -> LowRankState:
        """One optimiser step along `gradient` of the shaped fitness, by default evosax's
        centred ranks (the key is unused: ask drew the noise). Ties share a rank, so a pair
        scored alike moves the mean by nothing, and NaN ranks last."""
        del key
        grad = self.gradient(noise, self.shape_fitness(None, fitness, None, None))
        if self.std_schedule is not None:  # noise = ratio * eps, and g ~ 1 / sigma_t
            grad = grad / self.std_ratio(state) ** 2
        updates, opt_state = self.optimizer.update(grad, state.opt_state, state.mean)
        return LowRankState(mean=optax.apply_updates(state.mean, updates), opt_state=opt_state,
                            best_fitness=jnp.minimum(state.best_fitness, jnp.min(fitness)),
                            generation_counter=state.generation_counter + 1)

    def full_perturbation(self, noise: dict, i: int) -> jax.Array:
        """Member i's flat perturbation eps_i, built explicitly (tests and checks only)."""
        half = self.pop // 2
        j, sign = (i % half, (1.0 if i < half else -1.0)) if self.mirrored else (i, 1.0)
        tree = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self.template)
        for k in self.kernels:
            a, b = noise["A"][k.module][j], noise["B"][k.module][j]
            tree = _set_leaf(tree, k.leaf, sign * jnp.einsum("...r,or->...o", a, b)
                             / math.sqrt(self.rank))
        for path in self.small:
            tree = _set_leaf(tree, path, sign * noise["eps"]["/".join(path)][j])
        return ravel_pytree(tree)[0]


# How a thin op batched over members (x and factors both carry the member axis) is computed:
# "loop" runs it member by member (lax.map of ordinary ops), "batched" leaves it to vmap's rule
# (grouped convolutions / batched matmuls, which XLA:CPU runs slowly).
# Measured (benchmarks/results/throughput.md): grouped convs lose 2-3x to the member loop; for
# the thin dense matmuls the batched form is as fast or faster.
THIN_BATCHING = {"conv": "loop", "dense": "batched"}
# Members per lax.map chunk when the config says 0. On XLA:CPU (32x32 DCGAN at full width, 16
# images per member, benchmarks/results/throughput.md), one member at a time is as fast as chunks
# of 4 for the D population and faster for G (pop 256: D 3,310 vs 3,274 images/s, G 2,991 vs
# 2,486; chunks of 16: 3,032 and 2,578; one vmap over the population: 2,047 and 1,729): a
# member's 16-32 images already fill the cores, and bigger ops fall out of cache.
DEFAULT_CHUNK = 1


def _member_loop(f: Callable, kind: str) -> Callable:
    """f(x, a) whose batching over both x and a runs f member by member (see THIN_BATCHING);
    batched over x alone it stays one op over all members' inputs."""
    g = jax.custom_batching.custom_vmap(f)

    @g.def_vmap
    def rule(axis_size, in_batched, x, a):
        bx, ba = in_batched
        if bx and ba and THIN_BATCHING[kind] == "loop":
            return jax.lax.map(lambda xa: f(*xa), (x, a)), True
        return jax.vmap(f, in_axes=(0 if bx else None, 0 if ba else None))(x, a), True

    return g


def layer_linear(mod: nn.Module, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The layer's linear map with another kernel (same geometry, no bias); its output has
    kernel.shape[-1] channels. Batched over members in both x and kernel, it runs member by
    member (see THIN_BATCHING) instead of as a grouped convolution."""
    if isinstance(mod, nn.Dense):
        f, kind = (lambda x, k: jnp.einsum("...i,io->...o", x, k)), "dense"
    else:  # Conv / ConvTranspose: identical geometry, kernel.shape[-1] output channels
        op = mod.clone(parent=None, features=kernel.shape[-1], use_bias=False)
        f, kind = (lambda x, k: op.apply({"params": {"kernel": k}}, x)), "conv"
    return _member_loop(f, kind)(x, kernel)


def thin_correction(mod: nn.Module, x: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """layer(x; A) @ B^T: the same layer with r output channels and no bias, then a 1x1 map."""
    return jnp.einsum("...r,or->...o", layer_linear(mod, x, a), b)


def merged_layer(mod: nn.Module, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The layer as it would run with `kernel` in place of its own (bias included)."""
    y = layer_linear(mod, x, kernel)
    return y + mod.get_variable("params", "bias") if mod.use_bias else y


def _leaf(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _set_leaf(tree, path, value):
    if not path:
        return value
    new = dict(tree)
    new[path[0]] = _set_leaf(tree[path[0]], path[1:], value)
    return new


def make_lowrank(params_template: Any, *, pop: int, rank: int, std: float, lr,
                 optimizer: str = "adam", weight_decay: float = 0.0,
                 std_schedule: Callable | None = None, mirrored: bool = True,
                 shaping: str = "centered_rank", kernels: str = "factored") -> LowRankES:
    """Low-rank ES over a params pytree (arrays or ShapeDtypeStructs of a flax model's params);
    `lr` a number or an optax schedule, `std_schedule` sigma over generations (None: `std`),
    `kernels` how a member's layer is computed (KERNEL_FORMS, module doc)."""
    if pop < 2 or (mirrored and pop % 2):
        even = "an even population (mirrored pairs)" if mirrored else "a population"
        raise UserError(f"strategy '{NAME}' needs {even} of at least 2, got {pop}")
    if rank < 1:
        raise UserError(f"strategy '{NAME}' needs rank >= 1, got {rank}")
    if kernels not in KERNEL_FORMS:
        raise UserError(f"strategy '{NAME}': unknown kernels '{kernels}' (factored or merged)")
    opt = make_optimizer(optimizer, lr, weight_decay)
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params_template)
    _, unravel = ravel_pytree(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template))
    low, small, layer_noise = [], [], []
    for path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
        names = _key_names(path)
        shape = tuple(leaf.shape)
        fan_in = math.prod(shape[:-1]) if len(shape) >= 2 else 0
        kernel = _Kernel(module="/".join(names[:-1]), leaf=names, shape=shape)
        if names[-1] == "kernel" and len(shape) >= 2 and min(fan_in, shape[-1]) > rank:
            low.append(kernel)
        else:
            small.append(names)
            if names[-1] == "kernel" and len(shape) >= 2:
                layer_noise.append(kernel)
    return LowRankES(name=NAME, pop=pop, rank=rank, std=std, optimizer=opt,
                     kernels=tuple(low), small=tuple(small), layer_noise=tuple(layer_noise),
                     template=template, unravel=unravel, std_schedule=std_schedule,
                     mirrored=mirrored, shape_fitness=shaping_fn(shaping), kernel_form=kernels)


def evaluate_lowrank(es: LowRankES, mean_tree: Any, noise: dict, fn: Callable, layout: str,
                     chunk: int = 0) -> jax.Array:
    """fn(params) -> scalar fitness for every member. vmap keeps the mean unbatched (one big
    op per layer over all members); map runs lax.map over chunks of `chunk` members (0 means
    DEFAULT_CHUNK), each chunk vmapped the same way."""
    run = over_members(lambda m: es.member_apply(mean_tree, m, fn), layout,
                       chunk or DEFAULT_CHUNK)
    # With several devices each one evaluates its slice of the members' factors (the mean and
    # whatever fn closes over are replicated); only fitness values travel.
    return shard_population(run, es.members(noise, es.mirrored))
