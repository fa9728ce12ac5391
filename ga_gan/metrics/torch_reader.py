"""Reading a `torch.save`d state_dict without torch (zip and legacy formats).

pytorch-fid publishes its FID Inception weights only as a `.pth`; installing torch just to read
a dict of tensors would be a multi-GB dependency. The unpickler is restricted: it builds dicts
and tensors (as numpy views over the checkpoint's storages, bounds-checked) and refuses every
other global, so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ga_gan.errors import UserError

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, size, stride, *_ignored) -> np.ndarray:
    """numpy equivalent of ``torch._utils._rebuild_tensor_v2``, bounds-checked against the storage.

    Returns a view, not a copy: legacy checkpoints fill their storages after the object is built.
    """
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if any(s < 0 for s in stride) or len(size) != len(stride):
        raise UserError("malformed tensor in checkpoint")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if offset < 0 or last >= storage.size:
        raise UserError("tensor in checkpoint points outside its storage")
    item = storage.itemsize
    return np.ndarray(size, storage.dtype, storage, offset * item, tuple(s * item for s in stride))


def _rebuild_parameter(data, *_ignored):
    return data


class _SafeUnpickler(pickle.Unpickler):
    """Builds only dicts and tensors: arbitrary globals in a downloaded file are refused."""

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UserError(f"refusing to load {module}.{name} from the checkpoint (only tensors are allowed)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", b"storage")):
            raise UserError(f"unsupported persistent id in checkpoint: {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise UserError("unsupported storage type in checkpoint")
        if len(pid) > 5 and pid[5] is not None:
            raise UserError("storage views in legacy checkpoints are not supported")
        return self._load_storage(str(key), storage_type.dtype, int(numel))


def _read_zip_checkpoint(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl")), None)
        if pkl is None:
            raise UserError(f"{path} is a zip but not a torch checkpoint (no data.pkl)")
        prefix = pkl[: -len("data.pkl")]
        if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() != b"little":
            raise UserError(f"{path}: big-endian checkpoints are not supported")

        def load_storage(key, dtype, numel):
            raw = zf.read(f"{prefix}data/{key}")
            if len(raw) < numel * dtype.itemsize:
                raise UserError(f"{path}: storage {key} is truncated")
            return np.frombuffer(raw, dtype=dtype, count=numel)

        return _SafeUnpickler(io.BytesIO(zf.read(pkl)), load_storage).load()


def _read_legacy_checkpoint(path: Path) -> Any:
    """Pre-1.6 torch.save format: pickled header, pickled object, pickled storage keys, raw storages."""
    with open(path, "rb") as f:
        header = _SafeUnpickler(f, None)
        if header.load() != _LEGACY_MAGIC or header.load() != _LEGACY_PROTOCOL:
            raise UserError(f"{path} is not a torch checkpoint")
        _SafeUnpickler(f, None).load()  # sys_info
        storages: dict[str, np.ndarray] = {}

        def load_storage(key, dtype, numel):
            storages.setdefault(key, np.zeros(numel, dtype))
            return storages[key]

        obj = _SafeUnpickler(f, load_storage).load()
        for key in _SafeUnpickler(f, None).load():
            buf = storages[str(key)]
            numel = int(np.frombuffer(f.read(8), "<i8")[0])
            data = f.read(numel * buf.itemsize)
            if numel != buf.size or len(data) != buf.nbytes:
                raise UserError(f"{path}: storage {key} is truncated")
            buf[:] = np.frombuffer(data, buf.dtype)
    return obj


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``torch.save``d state_dict (zip or legacy format) as numpy arrays, without torch."""
    path = Path(path)
    reader = _read_zip_checkpoint if zipfile.is_zipfile(path) else _read_legacy_checkpoint
    try:
        obj = reader(path)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise UserError(f"cannot read torch checkpoint {path}: {err}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError(f"{path} does not hold a state_dict")
    return {str(k): np.array(v) for k, v in obj.items()}
