"""FID Inception-v3: architecture, state_dict conversion, .npz/.pth loading, all with generated weights.

The real pytorch-fid weights are not available offline, so every check uses random weights laid
out exactly like pytorch-fid's state_dict (torch names, OIHW kernels, BN running statistics).
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ga_gan.errors import UserError
from ga_gan.metrics import inception as inc
from ga_gan.metrics.torch_reader import read_torch_state_dict

# Shapes fixed by pytorch-fid's network (torch layout); a wrong block definition changes them.
KNOWN_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "Mixed_7c.branch3x3_2b.bn.running_var": (384,),
}


def random_state_dict(seed=0) -> dict[str, np.ndarray]:
    """He-scaled random weights and non-trivial BN statistics, in pytorch-fid's naming and layout."""
    rng = np.random.default_rng(seed)
    state = {}
    for tkey, shape in state_shapes().items():
        if tkey.endswith("conv.weight"):
            fan_in = np.prod(shape[1:])
            state[tkey] = rng.normal(0, np.sqrt(2 / fan_in), shape).astype(np.float32)
        elif tkey.endswith(("bn.weight", "bn.running_var")):
            state[tkey] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            state[tkey] = rng.normal(0, 0.1, shape).astype(np.float32)
    state["fc.weight"] = np.zeros((1008, 2048), np.float32)  # present in the real file, ignored
    state["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0, np.int64)
    return state


_SHAPES: dict = {}


def state_shapes() -> dict[str, tuple[int, ...]]:
    if not _SHAPES:
        from flax.traverse_util import flatten_dict

        for (collection, *path), shape in flatten_dict(inc._template()).items():
            shape = tuple(shape)
            _SHAPES[inc._torch_key(collection, tuple(path))] = shape[::-1][:2] + shape[:2] if len(shape) == 4 else shape
    return _SHAPES


@pytest.fixture(scope="module")
def state():
    return random_state_dict()


@pytest.fixture(scope="module")
def feature_fn():
    """One jitted network reused by every test (weights are arguments, so no recompiles)."""
    model = inc.FIDInceptionV3()
    return jax.jit(model.apply)


@pytest.fixture(scope="module")
def images():
    return jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32))


def test_architecture_matches_pytorch_fid_layout(state):
    shapes = state_shapes()
    assert len(shapes) == 94 * 5  # 94 BasicConv2d blocks: conv weight + 4 BN tensors each
    for key, shape in KNOWN_SHAPES.items():
        assert shapes[key] == shape, key


def test_count_include_pad_false_average_pool():
    pooled = inc._avg_pool_same(jnp.ones((1, 5, 5, 1)))
    np.testing.assert_allclose(np.asarray(pooled), 1.0, rtol=1e-6)  # with padding counted, corners would be 4/9


def reference_basic_conv(x_nchw, state, prefix, stride, padding):
    """torch semantics in numpy: cross-correlation on OIHW weights, then eval-mode BN(eps=1e-3), ReLU."""
    w = state[f"{prefix}.conv.weight"].astype(np.float64)
    (ph, pw), (kh, kw) = padding, w.shape[2:]
    x = np.pad(x_nchw.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            out += np.einsum("ncyx,oc->noyx", patch, w[:, :, i, j])
    bn = lambda n: state[f"{prefix}.bn.{n}"][None, :, None, None]  # noqa: E731
    out = (out - bn("running_mean")) / np.sqrt(bn("running_var") + 1e-3) * bn("weight") + bn("bias")
    return np.maximum(out, 0)


@pytest.mark.parametrize(
    "prefix, cin, kernel, stride, padding",
    [("Conv2d_1a_3x3", 3, (3, 3), 2, (0, 0)), ("Mixed_6b.branch7x7_2", 128, (1, 7), 1, (0, 3))],
)
def test_converted_layers_match_torch_semantics(state, prefix, cin, kernel, stride, padding):
    variables = inc.state_dict_to_variables(state)
    path = prefix.split(".")
    sub = {col: variables[col] for col in ("params", "batch_stats")}
    for name in path:
        sub = {col: tree[name] for col, tree in sub.items()}
    layer = inc.BasicConv2d(state[f"{prefix}.conv.weight"].shape[0], kernel, stride=stride, padding=padding)
    x = np.random.default_rng(1).normal(size=(2, 9, 11, cin)).astype(np.float32)
    got = np.asarray(layer.apply(sub, jnp.asarray(x)))
    want = reference_basic_conv(x.transpose(0, 3, 1, 2), state, prefix, stride, padding).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_npz_round_trip_gives_identical_features(state, feature_fn, images, tmp_path):
    variables = inc.state_dict_to_variables(state)
    feats = np.asarray(feature_fn(variables, images))
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    assert np.std(feats) > 0 and not np.allclose(feats[0], feats[1])

    path = tmp_path / "weights.npz"
    inc.export_npz(variables, path)
    reloaded = inc.load_weights(path)
    np.testing.assert_array_equal(np.asarray(feature_fn(reloaded, images)), feats)
    exported = inc.variables_to_state_dict(variables)
    for key in KNOWN_SHAPES:
        np.testing.assert_array_equal(exported[key], state[key])


def test_tampered_weights_are_user_errors(state, tmp_path):
    missing = {k: v for k, v in state.items() if k != "Mixed_5b.branch1x1.conv.weight"}
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(UserError, match="missing 1 key.*Mixed_5b.branch1x1.conv.weight"):
        inc.load_weights(tmp_path / "missing.npz")

    bad = dict(state, **{"Mixed_7c.branch_pool.conv.weight": np.zeros((192, 2047, 1, 1), np.float32)})
    np.savez(tmp_path / "shape.npz", **bad)
    with pytest.raises(UserError, match="wrong shape.*Mixed_7c.branch_pool.conv.weight"):
        inc.load_weights(tmp_path / "shape.npz")

    extra = dict(state, **{"Mixed_8a.conv.weight": np.zeros(1, np.float32)})
    with pytest.raises(UserError, match="unexpected 1 key.*Mixed_8a"):
        inc.state_dict_to_variables(extra)


# --- .pth without torch: write checkpoints in torch's format with a stand-in `torch` module -------


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


@pytest.fixture
def fake_torch(monkeypatch):
    """Importable ``torch.FloatStorage`` etc. so pickle writes the same global references torch does."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # only its module and name get pickled
        raise AssertionError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _tensors(arrays: dict[str, np.ndarray]):
    """One storage per array, plus a transposed view and an offset view to exercise strides."""
    storages, out = {}, collections.OrderedDict()
    for i, (name, arr) in enumerate(arrays.items()):
        arr = np.array(arr, order="C")  # not ascontiguousarray: that turns 0-d into 1-d
        storages[str(i)] = _Storage(str(i), arr.ravel())
        out[name] = _Tensor(storages[str(i)], 0, arr.shape, tuple(s // arr.itemsize for s in arr.strides))
    return storages, out


class _Pickler(pickle.Pickler):
    def __init__(self, f, torch, legacy):
        super().__init__(f, protocol=2)
        self.torch, self.legacy = torch, legacy

    def persistent_id(self, obj):
        if not isinstance(obj, _Storage):
            return None
        storage_type = self.torch.LongStorage if obj.array.dtype == np.int64 else self.torch.FloatStorage
        pid = ("storage", storage_type, obj.key, "cpu", obj.array.size)
        return pid + (None,) if self.legacy else pid


def write_zip_pth(path, arrays, torch):
    storages, obj = _tensors(arrays)
    buf = io.BytesIO()
    _Pickler(buf, torch, legacy=False).dump(obj)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for key, st in storages.items():
            zf.writestr(f"archive/data/{key}", st.array.tobytes())
        zf.writestr("archive/version", "3\n")


def write_legacy_pth(path, arrays, torch):
    storages, obj = _tensors(arrays)
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        _Pickler(f, torch, legacy=True).dump(obj)
        pickle.dump(list(storages), f, protocol=2)
        for st in storages.values():
            f.write(np.int64(st.array.size).tobytes())
            f.write(st.array.tobytes())


SMALL = {
    "a.conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
    "a.bn.num_batches_tracked": np.array(7, np.int64),
    "b": np.linspace(0, 1, 5, dtype=np.float32),
}


@pytest.mark.parametrize("writer", [write_zip_pth, write_legacy_pth])
def test_pth_reader_without_torch(fake_torch, tmp_path, writer, monkeypatch):
    path = tmp_path / "w.pth"
    writer(path, SMALL, fake_torch)
    monkeypatch.delitem(sys.modules, "torch")  # the reader must not need torch
    monkeypatch.delitem(sys.modules, "torch._utils")
    got = read_torch_state_dict(path)
    assert list(got) == list(SMALL)
    for key, value in SMALL.items():
        assert got[key].dtype == value.dtype
        np.testing.assert_array_equal(got[key], value)


def test_pth_strided_view(fake_torch, tmp_path):
    storages, obj = _tensors({"w": np.arange(12, dtype=np.float32)})
    obj["t"] = _Tensor(storages["0"], 2, (3, 2), (1, 3))  # transposed view starting at element 2
    buf = io.BytesIO()
    _Pickler(buf, fake_torch, legacy=False).dump(obj)
    with zipfile.ZipFile(tmp_path / "v.pth", "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/data/0", storages["0"].array.tobytes())
    got = read_torch_state_dict(tmp_path / "v.pth")
    np.testing.assert_array_equal(got["t"], np.arange(2, 8, dtype=np.float32).reshape(2, 3).T)


def test_pth_with_foreign_globals_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": print}, protocol=2))
    with pytest.raises(UserError, match="refusing to load .*print"):
        read_torch_state_dict(tmp_path / "evil.pth")


def test_pth_goes_through_the_same_key_checks(fake_torch, tmp_path):
    write_zip_pth(tmp_path / "partial.pth", SMALL, fake_torch)
    with pytest.raises(UserError, match="missing 470 key"):
        inc.load_weights(tmp_path / "partial.pth")
