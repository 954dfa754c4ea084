"""Checkpoints: ``mg.save(obj, path)`` and ``mg.load(path)``.

A checkpoint is one ``.npz`` file: every tensor or array becomes an entry
(``a0``, ``a1``, ...), and the nesting (dicts, lists, numbers, strings, None,
bools, dict keys that are not strings) is a JSON manifest stored beside them.
Nothing is pickled, so loading a file cannot run code.

Writes are atomic: the file is written under a temporary name in the same
directory, flushed to disk, then renamed over the target (``os.replace`` is
atomic on POSIX and Windows). A crash mid-save leaves the previous checkpoint
intact, never a truncated one.

Tensors are saved through the backend's explicit host transfer and loaded onto
any backend: a checkpoint written on CuPy (or strict) loads on NumPy.
"""
from __future__ import annotations

import json
import os
import secrets
import zipfile
import zlib

import numpy as np  # host-side: checkpoint files hold host arrays

from .backend import get_backend
from .tensor import Tensor

__all__ = ["save", "load"]

_MANIFEST = "__manifest__"
FORMAT = "minigrad-checkpoint-1"


def _encode(obj, arrays):
    if isinstance(obj, Tensor):
        key = f"a{len(arrays)}"
        arrays[key] = obj.numpy()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray) or isinstance(obj, np.generic):
        key = f"a{len(arrays)}"
        arrays[key] = np.asarray(obj)
        return {"__ndarray__": key}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") and k.endswith("__")
                                                            for k in obj):
            return {k: _encode(v, arrays) for k, v in obj.items()}
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    for b in _backends_with_arrays():
        if b.is_array(obj):
            key = f"a{len(arrays)}"
            arrays[key] = b.to_numpy(obj)
            return {"__array__": key}
    raise TypeError(f"mg.save: cannot store an object of type {type(obj).__name__}; "
                    "checkpoints hold tensors, arrays, numbers, strings, None, lists and dicts")


def _backends_with_arrays():
    from .backend import all_backends
    return all_backends()


def _decode(obj, arrays, be):
    if isinstance(obj, list):
        return [_decode(v, arrays, be) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return Tensor._make(be.from_numpy(arrays[obj["__tensor__"]]), be, False, None)
    if "__array__" in obj:
        return be.from_numpy(arrays[obj["__array__"]])
    if "__ndarray__" in obj:
        return arrays[obj["__ndarray__"]]
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays, be) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, arrays, be): _decode(v, arrays, be) for k, v in obj["__items__"]}
    return {k: _decode(v, arrays, be) for k, v in obj.items()}


def save(obj, path):
    """Write ``obj`` (nested dicts/lists of tensors, arrays and plain values) to
    ``path`` atomically."""
    path = os.fspath(path)
    arrays = {}
    manifest = {"format": FORMAT, "root": _encode(obj, arrays)}
    arrays[_MANIFEST] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{secrets.token_hex(4)}.npz")
    # O_EXCL: never another writer's file; mode 0666 minus the umask, like open()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_npz(f, arrays):
    np.savez(f, **arrays)


def load(path, backend=None):
    """Read a checkpoint written by ``save``; tensors land on ``backend`` (default:
    the current backend), whatever backend they were saved from."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mg.load: no checkpoint at {path}")
    be = get_backend(backend)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    # a truncated or damaged zip raises BadZipFile / zlib.error, not OSError
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"mg.load: {path} is not a readable minigrad checkpoint ({e})") from None
    if _MANIFEST not in arrays:
        raise ValueError(f"mg.load: {path} has no manifest; it was not written by mg.save")
    try:
        manifest = json.loads(arrays.pop(_MANIFEST).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"mg.load: {path} has a corrupt manifest ({e})") from None
    if not isinstance(manifest, dict):
        manifest = {"format": None}
    if manifest.get("format") != FORMAT:
        raise ValueError(f"mg.load: {path} has format {manifest.get('format')!r}, "
                         f"expected {FORMAT!r}")
    return _decode(manifest["root"], arrays, be)
