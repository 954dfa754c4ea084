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

Loading trusts nothing in the file: the manifest is checked against its schema
(types and nesting depth), only the arrays it references are read, each one's
dtype and shape are checked from its ``.npy`` header, and its size against the
bytes the file really holds, before anything is allocated. Every problem is a
``ValueError`` that names the entry.
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

__all__ = ["save", "load", "remove_stale_temporaries", "process_alive"]

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


_MAX_DEPTH = 64                  # nesting a state dict could need, with room to spare
_MAX_MANIFEST = 64 << 20         # bytes
_MAX_INFLATION = 16              # uncompressed bytes per byte of file
_DTYPE_KINDS = "biuf"            # bool, signed/unsigned ints, floats: nothing else is state
_ARRAY_TAGS = ("__tensor__", "__array__", "__ndarray__")


def _check(obj, depth=0, where="root"):
    """The manifest's schema, with the array keys it references; iterative in spirit
    (depth-capped), so a hostile file cannot exhaust the stack."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"nesting deeper than {_MAX_DEPTH} levels at {where}")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return []
    if isinstance(obj, list):
        return [k for i, v in enumerate(obj) for k in _check(v, depth + 1, f"{where}[{i}]")]
    if not isinstance(obj, dict):
        raise ValueError(f"{where} is a {type(obj).__name__}, not a value of the format")
    tags = [t for t in obj if t.startswith("__") and t.endswith("__")]
    if not tags:
        return [k for name, v in obj.items() for k in _check(v, depth + 1, f"{where}.{name}")]
    if len(obj) != 1:
        raise ValueError(f"{where} mixes the tag {tags[0]} with other keys")
    tag, value = tags[0], obj[tags[0]]
    if tag in _ARRAY_TAGS:
        if not isinstance(value, str):
            raise ValueError(f"{where}: {tag} names no array ({value!r})")
        return [(value, where)]
    if tag == "__tuple__" and isinstance(value, list):
        return _check(value, depth + 1, where)
    if tag == "__items__" and isinstance(value, list) and all(
            isinstance(kv, list) and len(kv) == 2 for kv in value):
        out = []
        for i, (k, v) in enumerate(value):
            if not (k is None or isinstance(k, (bool, int, float, str))) and not (
                    isinstance(k, dict) and "__tuple__" in k):
                raise ValueError(f"{where}: key {i} is a {type(k).__name__}, which cannot be a "
                                 "dict key")
            out += _check(k, depth + 1, f"{where}<key {i}>") + _check(v, depth + 1,
                                                                       f"{where}[{i}]")
        return out
    raise ValueError(f"{where}: unknown or malformed tag {tag}")


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
        return {_hashable(_decode(k, arrays, be)): _decode(v, arrays, be)
                for k, v in obj["__items__"]}
    return {k: _decode(v, arrays, be) for k, v in obj.items()}


def _hashable(k):
    if isinstance(k, list):
        return tuple(_hashable(v) for v in k)
    return k


def _read_member(z, info, where):
    """One ``.npy`` member, its header checked before its data is read."""
    with z.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unknown .npy version {version}")
        except Exception as e:          # numpy's header parser raises many kinds
            raise ValueError(f"the header of array {info.filename!r} ({where}) is damaged "
                             f"({type(e).__name__}: {e})") from None
        if dtype.kind not in _DTYPE_KINDS or dtype.hasobject:
            raise ValueError(f"array {info.filename!r} ({where}) has dtype {dtype}; a "
                             "checkpoint holds bool, integer or float arrays only")
        count = 1
        for n in shape:
            count *= n
        nbytes = count * dtype.itemsize
        if nbytes != info.file_size - f.tell():
            raise ValueError(f"array {info.filename!r} ({where}) claims shape {shape} of "
                             f"{dtype} ({nbytes} bytes) but holds {info.file_size - f.tell()}")
        data = f.read(nbytes)
    a = np.frombuffer(data, dtype=dtype, count=count)
    return a.reshape(shape, order="F" if fortran else "C").copy()


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
        _fsync_directory(directory)   # the new name itself must survive a power loss
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:                 # Windows cannot open a directory: nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(directory):
    """Delete ``.tmp-PID-*.npz`` files that killed writers left in ``directory`` (their
    PID is no longer alive); returns their names. A live writer's file is left alone."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        parts = name.split("-")
        if not (name.startswith(".tmp-") and name.endswith(".npz") and len(parts) >= 3
                and parts[1].isdigit()):
            continue
        pid = int(parts[1])
        if pid != os.getpid() and process_alive(pid):
            continue
        try:
            os.remove(os.path.join(directory, name))
            removed.append(name)
        except OSError:
            pass
    return removed


def process_alive(pid):
    """True if a process with this pid runs (the owner of a temporary file or a lock)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # someone else's live process
        return True
    except OSError:
        return False
    return True


def _write_npz(f, arrays):
    np.savez(f, **arrays)


def load(path, backend=None):
    """Read a checkpoint written by ``save``; tensors land on ``backend`` (default:
    the current backend), whatever backend they were saved from. A damaged or hostile
    file is a ``ValueError`` naming what is wrong, raised before anything large is
    allocated."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mg.load: no checkpoint at {path}")
    be = get_backend(backend)
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as z:
            members = {i.filename: i for i in z.infolist()}
            # mg.save stores its members uncompressed: a file may inflate to a few times
            # its size (someone's savez_compressed), never to a thousand (a zip bomb)
            inflated = sum(i.file_size for i in members.values())
            if inflated > _MAX_INFLATION * size + (1 << 20):
                raise ValueError(f"has members that inflate to {inflated} bytes from a "
                                 f"{size}-byte file")
            info = members.get(_MANIFEST + ".npy")
            if info is None:
                raise ValueError("has no manifest; it was not written by mg.save")
            if info.file_size > _MAX_MANIFEST:
                raise ValueError(f"has a manifest of {info.file_size} bytes")
            raw = _read_member(z, info, "the manifest")
            try:
                manifest = json.loads(raw.tobytes().decode())
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
                raise ValueError(f"has a corrupt manifest ({type(e).__name__})") from None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                found = manifest.get("format") if isinstance(manifest, dict) else manifest
                raise ValueError(f"has format {str(found)[:40]!r}, expected {FORMAT!r}")
            if "root" not in manifest:
                raise ValueError("has a manifest without a root")
            refs = _check(manifest["root"])
            arrays = {}
            for key, where in refs:
                info = members.get(key + ".npy")
                if info is None:
                    raise ValueError(f"{where} references array {key!r}, which is not in "
                                     "the file")
                if key not in arrays:
                    arrays[key] = _read_member(z, info, where)
    except ValueError as e:
        raise ValueError(f"mg.load: {path} {e}" if str(e).startswith("has")
                         else f"mg.load: {path}: {e}") from None
    # a truncated or damaged zip raises BadZipFile / zlib.error / NotImplementedError
    # (an unknown compression method), not OSError
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
            RuntimeError, KeyError) as e:
        raise ValueError(f"mg.load: {path} is not a readable minigrad checkpoint "
                         f"({type(e).__name__}: {e})") from None
    return _decode(manifest["root"], arrays, be)
