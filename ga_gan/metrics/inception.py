"""Inception-v3 pool3 features exactly as pytorch-fid computes them, in flax (NHWC), for the FID.

The FID network is not torchvision's Inception-v3: it is the 2015-12-05 TensorFlow graph ported
by pytorch-fid, whose ``FIDInceptionA/C/E_1/E_2`` blocks average-pool with
``count_include_pad=False`` and max-pool in the last block's pool branch. Only with these blocks
and those weights are FIDs comparable with the literature.

Weights are never downloaded: pass the path of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
(released with pytorch-fid, https://github.com/mseitzer/pytorch-fid, under
``releases/download/fid_weights/``), or an ``.npz`` of the same state_dict (see ``export_npz``).
The ``.pth`` is read without torch, through a restricted unpickler that only builds tensors.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from ga_gan.errors import UserError
from ga_gan.metrics.extractor import FeatureExtractor
from ga_gan.metrics.torch_reader import read_torch_state_dict

WEIGHTS_HINT = (
    "the FID needs pytorch-fid's Inception weights: download pt_inception-2015-12-05-6726825d.pth from "
    "https://github.com/mseitzer/pytorch-fid/releases (tag fid_weights) and pass its path as weights="
)
FID_SIZE = 299
BN_EPS = 1e-3


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (inference, eps 1e-3) -> relu; submodule names mirror torch's."""

    features: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        ph, pw = self.padding
        x = nn.Conv(
            self.features, self.kernel, strides=(self.stride, self.stride),
            padding=((ph, ph), (pw, pw)), use_bias=False, name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return nn.relu(x)


def _avg_pool_same(x):
    """3x3/1 average pool that, like ``count_include_pad=False``, divides by the in-image count at borders."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_down(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, (3, 3), stride=2, name="branch3x3")(x)
        bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, (3, 3), stride=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_down(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c = self.channels_7x7
        b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv2d(c, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv2d(c, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv2d(c, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv2d(320, (3, 3), stride=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, (3, 3), stride=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_down(x)], axis=-1)


class InceptionE(nn.Module):
    """``max_pool=False`` is pytorch-fid's FIDInceptionE_1 (Mixed_7b), ``True`` its FIDInceptionE_2 (Mixed_7c)."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate([
            BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
            BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
        ], axis=-1)
        bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([
            BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
            BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
        ], axis=-1)
        if self.max_pool:
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_same(x)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """Images in [-1, 1] (any size, 1 or 3 channels, NHWC) -> ``(N, 2048)`` pool3 features.

    Inputs are resized bilinearly to 299x299 without antialiasing (torch's
    ``interpolate(..., align_corners=False)``, as pytorch-fid does) and grey is repeated to RGB.
    [-1, 1] is the network's native range: pytorch-fid maps its [0, 1] inputs to it.
    """

    @nn.compact
    def __call__(self, x):
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)
        if x.shape[1:3] != (FID_SIZE, FID_SIZE):
            x = jax.image.resize(x, (x.shape[0], FID_SIZE, FID_SIZE, 3), "bilinear", antialias=False)
        x = BasicConv2d(32, (3, 3), stride=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_down(x)
        x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_down(x)
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = InceptionC(128, name="Mixed_6b")(x)
        x = InceptionC(160, name="Mixed_6c")(x)
        x = InceptionC(160, name="Mixed_6d")(x)
        x = InceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(max_pool=False, name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        return jnp.mean(x, axis=(1, 2))


# --- state_dict <-> flax variables -------------------------------------------------------------

# torch BasicConv2d leaf -> (flax collection, flax leaf name)
_LEAVES = {
    "conv.weight": ("params", "kernel"),
    "bn.weight": ("params", "scale"),
    "bn.bias": ("params", "bias"),
    "bn.running_mean": ("batch_stats", "mean"),
    "bn.running_var": ("batch_stats", "var"),
}
_IGNORED_SUFFIXES = ("num_batches_tracked",)
_IGNORED_PREFIXES = ("fc.", "AuxLogits.")  # classifier head: unused by pool3 features


def _torch_key(collection: str, path: tuple[str, ...]) -> str:
    module, layer, leaf = path[:-2], path[-2], path[-1]
    for tkey, (col, fleaf) in _LEAVES.items():
        if col == collection and fleaf == leaf and tkey.startswith(layer + "."):
            return ".".join(module + (tkey,))
    raise AssertionError(f"unexpected flax variable {collection}/{'/'.join(path)}")


def _template() -> dict:
    """Variable shapes of the model, without running it at 299x299."""
    shapes = jax.eval_shape(FIDInceptionV3().init, jax.random.PRNGKey(0), jnp.zeros((1, 75, 75, 3)))
    return jax.tree_util.tree_map(lambda s: s.shape, shapes)


def state_dict_to_variables(state: dict[str, np.ndarray]) -> dict:
    """pytorch-fid state_dict (OIHW convs, BN running stats) -> flax ``{"params", "batch_stats"}``.

    Any missing key, unexpected key or shape mismatch is a ``UserError`` naming the first few,
    because a silently half-loaded network would give plausible-looking but wrong FIDs.
    """
    expected: dict[str, tuple[tuple[str, str, tuple[str, ...]], tuple[int, ...]]] = {}
    for (collection, *path), shape in flatten_dict(_template()).items():
        expected[_torch_key(collection, tuple(path))] = ((collection, tuple(path)), shape)
    used = {
        k for k in state if not k.endswith(_IGNORED_SUFFIXES) and not k.startswith(_IGNORED_PREFIXES)
    }
    missing = sorted(set(expected) - used)
    unexpected = sorted(used - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} key(s) e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s) e.g. {', '.join(unexpected[:3])}")
    flat, bad_shapes = {}, []
    for tkey in sorted(used & set(expected)):
        (collection, path), shape = expected[tkey]
        value = np.asarray(state[tkey], dtype=np.float32)
        if value.ndim == 4:
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        if value.shape != tuple(shape):
            bad_shapes.append(f"{tkey} {tuple(np.shape(state[tkey]))}")
            continue
        flat[(collection,) + path] = value
    if bad_shapes:
        problems.append(f"wrong shape for {len(bad_shapes)} key(s) e.g. {', '.join(bad_shapes[:3])}")
    if problems:
        raise UserError("Inception weights do not match pytorch-fid's FID Inception: " + "; ".join(problems))
    return unflatten_dict(flat)


def variables_to_state_dict(variables: dict) -> dict[str, np.ndarray]:
    """Inverse of ``state_dict_to_variables`` (pytorch-fid names, OIHW convs)."""
    state = {}
    for (collection, *path), value in flatten_dict(jax.device_get(dict(variables))).items():
        value = np.asarray(value, dtype=np.float32)
        state[_torch_key(collection, tuple(path))] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value
    return state


def export_npz(variables: dict, path: str | os.PathLike) -> None:
    """Save flax variables as an ``.npz`` keyed like pytorch-fid's state_dict (loadable by ``load_weights``)."""
    np.savez(path, **variables_to_state_dict(variables))


def load_weights(path: str | os.PathLike | None) -> dict:
    """Flax variables for ``FIDInceptionV3`` from pytorch-fid's ``.pth`` or an ``.npz`` of its state_dict."""
    if path is None:
        raise UserError(f"no Inception weights given; {WEIGHTS_HINT}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"Inception weights file {path} not found; {WEIGHTS_HINT}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                state = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile) as err:
            raise UserError(f"cannot read {path} as .npz: {err}") from None
    else:
        state = read_torch_state_dict(path)
    return state_dict_to_variables(state)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def make_feature_fn(variables: dict):
    """Jitted ``images [-1, 1] NHWC -> (N, 2048)`` with the weights passed as arguments, not baked-in constants."""
    model = FIDInceptionV3()
    apply = jax.jit(model.apply)
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    return lambda x: apply(variables, x)


def inception_extractor(weights: str | os.PathLike | None) -> FeatureExtractor:
    variables = load_weights(weights)
    identity = f"inception-fid-{_file_digest(Path(weights).expanduser())}"
    return FeatureExtractor("inception", "fid", make_feature_fn(variables), identity)
