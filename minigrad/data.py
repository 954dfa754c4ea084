"""Data: datasets, a seeded DataLoader, a strict IDX reader and the MNIST family.

Datasets live on the HOST as NumPy arrays (they come from files); a
``DataLoader`` gathers each batch on the host and makes one explicit transfer
to the backend, so training on CuPy moves one batch at a time.

The package ships ``mnist-10k`` (10,000 MNIST training digits; licence in
``minigrad/datasets/mnist-10k/README.md``): its first 8,000 digits are the
training split and the last 2,000 the test split, so everything runs offline.
Full ``mnist`` and ``fashion-mnist`` are looked up, in order, in ``--data-dir``,
``$MINIGRAD_DATA``, ``~/.cache/minigrad/<name>``, ``/usr/share/datasets/<name>``
(``apt-get install dataset-fashion-mnist`` puts Fashion-MNIST there), and are
otherwise downloaded into the cache from the official mirrors and verified by
SHA-256.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import pathlib
import struct
import urllib.request
import zlib
from dataclasses import dataclass, field

import numpy as np  # host-side: datasets, IDX files and batch gathering are host arrays

from .backend import get_backend
from .tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "DataLoader", "read_idx", "load_dataset", "Splits",
           "DataError", "DATASETS"]


class DataError(RuntimeError):
    """A data set could not be found, read or verified."""


# ----------------------------------------------------------------------------- datasets
class Dataset:
    """Anything with ``__len__`` and ``__getitem__(i) -> tuple of host arrays/numbers``."""

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, i):
        raise NotImplementedError


class TensorDataset(Dataset):
    """Rows of equally long host arrays (or Tensors, which are copied to the host)."""

    def __init__(self, *arrays):
        arrays = [a.numpy() if isinstance(a, Tensor) else np.asarray(a) for a in arrays]
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        n = len(arrays[0])
        for a in arrays[1:]:
            if len(a) != n:
                raise ValueError(f"TensorDataset: arrays have different lengths "
                                 f"({[len(b) for b in arrays]})")
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, i):
        return tuple(a[i] for a in self.arrays)


class DataLoader:
    """Batches of a dataset as backend Tensors (PyTorch's ``DataLoader``).

    ``shuffle=True`` draws a new permutation every epoch from the loader's own
    generator, seeded by ``seed``; ``state_dict()`` captures that generator so a
    resumed run sees the same batch order as an uninterrupted one. The batches go
    to ``backend`` (default: the current backend when the loader is made).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None,
                 backend=None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.backend = get_backend(backend)
        self._rng = np.random.default_rng(seed)

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        be = self.backend
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                return
            yield tuple(Tensor._make(be.from_numpy(np.ascontiguousarray(a)), be, False, None)
                        for a in self._gather(idx))

    def _gather(self, idx):
        if isinstance(self.dataset, TensorDataset):
            return [a[idx] for a in self.dataset.arrays]
        rows = [self.dataset[int(i)] for i in idx]
        return [np.stack([np.asarray(r[k]) for r in rows]) for k in range(len(rows[0]))]

    def state_dict(self):
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state):
        self._rng.bit_generator.state = state["rng"]


# ----------------------------------------------------------------------------- IDX files
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


MAX_IDX_BYTES = 512 << 20     # decompressed: full MNIST's training images are 47 MB
MAX_DOWNLOAD_BYTES = 64 << 20  # the largest official file is about 26 MB


def read_idx(path):
    """Read an IDX file (LeCun's MNIST format), gzip-compressed or raw.

    Layout: two zero bytes, a dtype code, the number of dimensions d, then d
    big-endian uint32 sizes, then the data. Every part is checked; a truncated,
    padded or corrupt file raises ``DataError`` naming the file and the problem, and
    a file that decompresses past ``MAX_IDX_BYTES`` (a gzip bomb) is refused before
    it is all in memory.
    """
    path = pathlib.Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
            f.seek(0)
            raw = gzip.GzipFile(fileobj=f).read(MAX_IDX_BYTES + 1) if magic == b"\x1f\x8b" \
                else f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: corrupt deflate data
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DataError(f"{path}: more than {MAX_IDX_BYTES} bytes once decompressed; not an "
                        "MNIST-family file")
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000 then "
                        "a dtype code and the number of dimensions)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize  # exact: np.prod wraps around at 2**64
    if len(raw) - header != expected:
        raise DataError(f"{path}: {len(raw) - header} data bytes for dimensions {dims} "
                        f"(expected {expected}): the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


# ----------------------------------------------------------------------------- the MNIST family
@dataclass
class Splits:
    """A data set on the host: x float32 (N, 1, 28, 28) in [0, 1], y int64."""
    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list = field(default_factory=list)

    @property
    def n_classes(self):
        return len(self.class_names)


_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

DATASETS = {
    "mnist-10k": {"classes": [str(i) for i in range(10)]},
    "mnist": {
        "classes": [str(i) for i in range(10)],
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/"],
        "sha256": dict(zip(_FILES, (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"))),
    },
    "fashion-mnist": {
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot"],
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/"
                    "data/fashion/"],
        "sha256": dict(zip(_FILES, (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"))),
    },
}

PACKAGED = pathlib.Path(__file__).resolve().parent / "datasets"
MNIST_10K_SHA256 = {
    "images-idx3-ubyte.gz": "c57357b7f233235eb1e538ee125b55b20d88da422662fd72fe439c4947307fbd",
    "labels-idx1-ubyte.gz": "ed545b8ffef8656e44a67816308b76cf033930d9076bb519d941f927f54811df",
}


def _images(a, where):
    """IDX images -> float32 (N, 1, 28, 28) in [0, 1]: uint8 is scaled by 1/255, float
    is taken as it is but must already lie in [0, 1]; anything else is refused."""
    if a.ndim != 3 or a.shape[1:] != (28, 28):
        raise DataError(f"{where}: images of shape {a.shape}; expected (N, 28, 28)")
    if a.dtype == np.uint8:
        return (a.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    if a.dtype.kind != "f":
        raise DataError(f"{where}: images of dtype {a.dtype}; expected uint8 or float "
                        "pixels")
    if not np.all(np.isfinite(a)) or a.min(initial=0.0) < 0 or a.max(initial=0.0) > 1:
        raise DataError(f"{where}: float pixels must be finite and in [0, 1]")
    return a.astype(np.float32).reshape(-1, 1, 28, 28)


def _labels(a, n_images, n_classes, where):
    """IDX labels -> int64 (N,), checked: integers, one per image, each a class."""
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise DataError(f"{where}: labels of shape {a.shape} and dtype {a.dtype}; expected "
                        "one integer per image")
    if len(a) != n_images:
        raise DataError(f"{where}: {n_images} images but {len(a)} labels")
    if len(a) and (a.min() < 0 or a.max() >= n_classes):
        raise DataError(f"{where}: labels in [{a.min()}, {a.max()}], expected classes "
                        f"0..{n_classes - 1}")
    return a.astype(np.int64)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _candidates(name, data_dir):
    dirs = []
    if data_dir:
        dirs.append(pathlib.Path(data_dir))
    if os.environ.get("MINIGRAD_DATA"):
        dirs.append(pathlib.Path(os.environ["MINIGRAD_DATA"]) / name)
        dirs.append(pathlib.Path(os.environ["MINIGRAD_DATA"]))
    dirs.append(cache_dir() / name)
    dirs.append(pathlib.Path("/usr/share/datasets") / name)
    return dirs


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "minigrad"


def load_dataset(name="mnist-10k", data_dir=None, download=True, timeout=10.0):
    """The named data set as host arrays (``Splits``).

    ``mnist-10k`` is read from the package. For ``mnist`` and ``fashion-mnist``
    the directories above are tried in order; a directory counts when it holds
    all four official files (``train-images-idx3-ubyte.gz`` ...). Local files are
    validated by the IDX reader; downloaded ones also by SHA-256.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if data_dir is not None and not (os.path.isdir(data_dir) and
                                     os.access(data_dir, os.R_OK | os.X_OK)):
        raise DataError(f"--data-dir {data_dir} is not a readable directory")
    spec = DATASETS[name]
    if name == "mnist-10k":
        files = ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz")
        if data_dir is not None:
            folder = pathlib.Path(data_dir)
            _require(folder, files, name)
        else:  # the shipped copy: check it is the documented one
            folder = PACKAGED / "mnist-10k"
            for fname, digest in MNIST_10K_SHA256.items():
                if _sha256(folder / fname) != digest:
                    raise DataError(f"{folder / fname}: SHA-256 differs from the documented "
                                    "one; reinstall minigrad")
        x = _images(read_idx(folder / files[0]), folder / files[0])
        y = _labels(read_idx(folder / files[1]), len(x), len(spec["classes"]), folder / files[1])
        return _split(name, x[:8000], y[:8000], x[8000:], y[8000:], spec, folder)
    if data_dir is not None:          # the user's folder, or an error: never a fallback
        _require(pathlib.Path(data_dir), _FILES, name)
        return _read_official(name, pathlib.Path(data_dir), spec)
    tried = []
    for d in _candidates(name, data_dir):
        tried.append(str(d))
        if all(_readable(d / f) for f in _FILES):
            return _read_official(name, d, spec)
    if download and os.environ.get("MINIGRAD_NO_DOWNLOAD") != "1":
        target = cache_dir() / name
        errors = _download(name, spec, target, timeout)
        if not errors:
            return _read_official(name, target, spec)
        tried.append("download: " + "; ".join(errors))
    else:
        tried.append("no download (" + ("download=False" if not download else
                                         "MINIGRAD_NO_DOWNLOAD=1") + ")")
    raise DataError(f"{name} not found. Tried: {', '.join(tried)}. Put the four files "
                    f"({', '.join(_FILES)}) in a directory and pass --data-dir DIR "
                    f"(or set MINIGRAD_DATA), or: {_hint(name, spec)}")


def _hint(name, spec):
    return ("apt-get install dataset-fashion-mnist" if name == "fashion-mnist" else
            f"download them from {spec['mirrors'][0]}" if "mirrors" in spec else
            "use the copy that ships with minigrad (no --data-dir)")


def _readable(path):
    try:
        return path.is_file() and os.access(path, os.R_OK)
    except OSError:                          # a folder we may not look into
        return False


def _require(folder, files, name):
    missing = [f for f in files if not _readable(folder / f)]
    if missing:
        raise DataError(f"--data-dir {folder} lacks {', '.join(missing)} (or cannot read "
                        f"them) for {name}; put the files there, or "
                        f"{_hint(name, DATASETS[name])}")


def _split(name, tx, ty, vx, vy, spec, where):
    if not len(tx) or not len(vx):
        raise DataError(f"{where}: {len(tx)} training and {len(vx)} test images; both splits "
                        "need at least one")
    return Splits(name, tx, ty, vx, vy, list(spec["classes"]))


def _read_official(name, d, spec):
    tx, ty, vx, vy = (read_idx(d / f) for f in _FILES)
    n = len(spec["classes"])
    tx, vx = _images(tx, d / _FILES[0]), _images(vx, d / _FILES[2])
    ty, vy = _labels(ty, len(tx), n, d / _FILES[1]), _labels(vy, len(vx), n, d / _FILES[3])
    return _split(name, tx, ty, vx, vy, spec, d)


def _download(name, spec, target, timeout):
    """Fetch the four files into ``target``; returns a list of error strings (empty on
    success). Each file is verified by SHA-256 before it is moved into place."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None
    errors = []
    target.mkdir(parents=True, exist_ok=True)
    for fname in _FILES:
        dest = target / fname
        if dest.is_file() and _sha256(dest) == spec["sha256"][fname]:
            continue
        ok = False
        for mirror in spec["mirrors"]:
            tmp = dest.with_suffix(".part")
            try:
                with urllib.request.urlopen(mirror + fname, timeout=timeout) as r, \
                        open(tmp, "wb") as f:
                    total = int(r.headers.get("Content-Length") or 0)
                    if total > MAX_DOWNLOAD_BYTES:
                        raise OSError(f"offers {total} bytes, more than {MAX_DOWNLOAD_BYTES}")
                    bar = tqdm(total=total, unit="B", unit_scale=True, desc=fname,
                               disable=tqdm is None) if tqdm else None
                    written = 0
                    for block in iter(lambda: r.read(1 << 16), b""):
                        written += len(block)
                        if written > MAX_DOWNLOAD_BYTES:
                            raise OSError(f"sent more than {MAX_DOWNLOAD_BYTES} bytes")
                        f.write(block)
                        if bar:
                            bar.update(len(block))
                    if bar:
                        bar.close()
                digest = _sha256(tmp)
                if digest != spec["sha256"][fname]:
                    errors.append(f"{mirror + fname}: SHA-256 {digest[:12]}... does not match")
                    tmp.unlink()
                    continue
                os.replace(tmp, dest)
                ok = True
                break
            except OSError as e:
                errors.append(f"{mirror + fname}: {getattr(e, 'reason', e)}")
                if tmp.exists():
                    tmp.unlink()
        if not ok:
            return errors
    return []
