"""IDX reader, DataLoader and the shipped / looked-up data sets (no downloads)."""
import gzip
import struct

import numpy as np  # host-side: test data
import pytest

import minigrad as mg
from minigrad.data import DataError, DataLoader, TensorDataset, load_dataset, read_idx


def _write_idx(path, array, compress=False):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i4"): 0x0C,
             np.dtype(">f4"): 0x0D}
    if array.dtype == np.float32:
        array = array.astype(">f4")
    header = struct.pack(">HBB", 0, codes[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.tobytes()
    (gzip.open if compress else open)(path, "wb").write(raw)
    return raw


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.idx", a, compress)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), a)
    b = np.array([[1, -2], [3, 40000]], dtype=">i4")
    _write_idx(tmp_path / "b.idx", b)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.idx"), b)


def test_idx_truncated_and_corrupt(tmp_path):
    a = np.zeros((5, 28, 28), np.uint8)
    raw = _write_idx(tmp_path / "good.idx", a)
    (tmp_path / "short.idx").write_bytes(raw[:-10])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "long.idx").write_bytes(raw + b"\0")
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(tmp_path / "long.idx")
    (tmp_path / "magic.idx").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "magic.idx")
    (tmp_path / "header.idx").write_bytes(raw[:6])
    with pytest.raises(DataError, match="header"):
        read_idx(tmp_path / "header.idx")
    (tmp_path / "gz.idx").write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "gz.idx")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "missing.idx")


def test_idx_corrupt_deflate_stream_and_overflowing_dims(tmp_path):
    raw = _write_idx(tmp_path / "good.idx", np.zeros((5, 28, 28), np.uint8))
    gz = bytearray(gzip.compress(raw, mtime=0))
    gz[10] ^= 0x5A              # first byte of the deflate data: "invalid block type"
    (tmp_path / "flip.gz").write_bytes(bytes(gz))
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "flip.gz")
    # 4 dims of 65536: 2**64 elements, which np.prod wraps to 0 (= the 0 data bytes here)
    (tmp_path / "huge.idx").write_bytes(struct.pack(">HBB4I", 0, 0x08, 4, *[65536] * 4))
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(tmp_path / "huge.idx")


def test_mnist_10k_ships_with_its_split():
    d = load_dataset("mnist-10k")
    assert d.train_x.shape == (8000, 1, 28, 28) and d.test_x.shape == (2000, 1, 28, 28)
    assert d.train_x.dtype == np.float32 and 0.0 <= d.train_x.min() and d.train_x.max() == 1.0
    assert d.train_y.dtype == np.int64 and d.n_classes == 10
    # class counts documented in the data's README (first 8,000 + last 2,000 = all 10,000)
    counts = np.bincount(np.concatenate([d.train_y, d.test_y]), minlength=10)
    assert counts.tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]


def test_full_sets_from_a_data_dir_and_the_missing_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGRAD_NO_DOWNLOAD", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIGRAD_DATA", raising=False)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz",
                   rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), compress=True)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz",
                   rng.integers(0, 10, n).astype(np.uint8), compress=True)
    d = load_dataset("mnist", data_dir=tmp_path)
    assert d.train_x.shape == (6, 1, 28, 28) and d.test_y.shape == (4,)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as e:          # a --data-dir without the files: no fallback
        load_dataset("mnist", data_dir=empty)
    msg = str(e.value)
    assert str(empty) in msg and "--data-dir" in msg and "lacks" in msg
    assert all(f in msg for f in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
    assert "https://" in msg
    monkeypatch.setenv("MINIGRAD_DATA", str(empty))
    with pytest.raises(DataError) as e:          # the search path, when none is given
        load_dataset("mnist")
    msg = str(e.value)
    assert str(empty) in msg and "--data-dir" in msg and "train-images-idx3-ubyte.gz" in msg
    assert "no download (MINIGRAD_NO_DOWNLOAD=1)" in msg and "https://" in msg
    with pytest.raises(DataError, match="not a readable directory"):
        load_dataset("mnist", data_dir=tmp_path / "nope")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("cifar")


def test_download_is_verified(tmp_path, monkeypatch):
    """A download whose bytes do not match the SHA-256 is rejected (served from a local
    file:// mirror, so no network is used)."""
    from minigrad import data
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIGRAD_NO_DOWNLOAD", raising=False)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for f in data._FILES:
        (mirror / f).write_bytes(b"not the real file")
    spec = dict(data.DATASETS["mnist"], mirrors=[mirror.as_uri() + "/"])
    monkeypatch.setitem(data.DATASETS, "mnist", spec)
    monkeypatch.setattr(data, "_candidates", lambda name, d: [])
    with pytest.raises(DataError, match="SHA-256"):
        load_dataset("mnist")
    assert not any((tmp_path / "cache" / "minigrad" / "mnist").glob("*.gz"))


def test_dataloader_covers_each_example_once_and_shuffles_reproducibly(backend_name):
    x = np.arange(23, dtype=np.float32).reshape(23, 1)
    y = np.arange(23)
    ds = TensorDataset(x, y)
    loader = DataLoader(ds, batch_size=5, shuffle=True, seed=3)
    assert len(loader) == 5
    epoch1 = [b for b in loader]
    assert all(isinstance(t, mg.Tensor) and t.backend == backend_name for b in epoch1 for t in b)
    seen = np.concatenate([b[1].numpy() for b in epoch1])
    assert sorted(seen.tolist()) == list(range(23))
    assert seen.tolist() != list(range(23))          # shuffled
    epoch2 = np.concatenate([b[1].numpy() for b in loader])
    assert epoch2.tolist() != seen.tolist()         # a new order every epoch
    again = DataLoader(ds, batch_size=5, shuffle=True, seed=3)
    assert np.concatenate([b[1].numpy() for b in again]).tolist() == seen.tolist()
    # the order can be checkpointed: restoring the state replays the next epoch
    state = again.state_dict()
    nxt = np.concatenate([b[1].numpy() for b in again])
    again.load_state_dict(state)
    assert np.concatenate([b[1].numpy() for b in again]).tolist() == nxt.tolist()
    dropped = DataLoader(ds, batch_size=5, drop_last=True)
    assert len(dropped) == 4 and sum(b[0].shape[0] for b in dropped) == 20
    np.testing.assert_array_equal(next(iter(dropped))[0].numpy(), x[:5])
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="different lengths"):
        TensorDataset(x, y[:3])


def test_data_loader_binds_its_backend_when_made():
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    with mg.backend("strict"):
        loader = DataLoader(TensorDataset(x), batch_size=2)
    with mg.backend("numpy"):
        (batch,) = next(iter(loader))
    assert batch.backend == "strict"
    assert DataLoader(TensorDataset(x), batch_size=2, backend="numpy").backend.name == "numpy"


# ----------------------------------------------------------------------------- validation
def _mnist_10k_dir(tmp_path, images, labels, compress=True):
    d = tmp_path / "mine"
    d.mkdir(exist_ok=True)
    _write_idx(d / "images-idx3-ubyte.gz", images, compress=compress)
    _write_idx(d / "labels-idx1-ubyte.gz", labels, compress=compress)
    return d


def _ok_images(n, rng=np.random.default_rng(0)):
    return rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((9000, 14, 56), np.uint8), np.zeros(9000, np.uint8), r"shape \(9000, 14, 56\)"),
    (np.zeros((9000, 784), np.uint8), np.zeros(9000, np.uint8), r"shape \(9000, 784\)"),
    (np.full((9000, 28, 28), np.nan, np.float32), np.zeros(9000, np.uint8), "finite"),
    (np.full((9000, 28, 28), 3.0, np.float32), np.zeros(9000, np.uint8), r"in \[0, 1\]"),
    (_ok_images(9000), np.full(9000, 10, np.uint8), r"labels in \[10, 10\]"),
    (_ok_images(9000), np.full(9000, 255, np.uint8), "classes 0..9"),
    (_ok_images(9000), np.full(9000, -1, np.int8), r"labels in \[-1, -1\]"),
    (_ok_images(9000), np.zeros(9000, np.float32), "one integer per image"),
    (_ok_images(9000), np.zeros(8999, np.uint8), "9000 images but 8999 labels"),
    (_ok_images(500), np.zeros(500, np.uint8), "0 test images"),
])
def test_bad_data_is_refused_with_a_message(tmp_path, images, labels, message):
    d = _mnist_10k_dir(tmp_path, images, labels)
    with pytest.raises(DataError, match=message):
        load_dataset("mnist-10k", data_dir=d)


def test_float_pixels_in_0_1_are_left_alone_and_uint8_is_scaled(tmp_path):
    x = np.random.default_rng(1).random((9000, 28, 28)).astype(np.float32)
    d = _mnist_10k_dir(tmp_path, x, np.zeros(9000, np.uint8))
    got = load_dataset("mnist-10k", data_dir=d)
    np.testing.assert_array_equal(got.train_x[:, 0], x[:8000])          # not divided by 255
    (tmp_path / "u").mkdir()
    d2 = _mnist_10k_dir(tmp_path / "u", _ok_images(9000), np.zeros(9000, np.uint8))
    u = load_dataset("mnist-10k", data_dir=d2).train_x
    assert u.dtype == np.float32 and u.max() <= 1.0 and u.max() > 0.9


def test_a_data_dir_without_the_files_is_an_error_not_the_bundled_copy(tmp_path):
    with pytest.raises(DataError, match="lacks images-idx3-ubyte.gz, labels-idx1-ubyte.gz"):
        load_dataset("mnist-10k", data_dir=tmp_path)


def test_an_unreadable_data_dir_is_a_data_error(tmp_path, monkeypatch):
    from minigrad import data
    monkeypatch.setattr(data.os, "access", lambda path, mode: False)   # root reads all
    with pytest.raises(DataError, match="not a readable directory"):
        load_dataset("mnist", data_dir=tmp_path)


def test_a_gzip_bomb_is_refused_before_it_is_all_in_memory(tmp_path, monkeypatch):
    from minigrad import data
    monkeypatch.setattr(data, "MAX_IDX_BYTES", 1 << 20)
    path = tmp_path / "bomb.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, 1) + struct.pack(">I", 8 << 20))
        f.write(b"\0" * (8 << 20))
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match="more than 1048576 bytes once decompressed"):
        read_idx(path)


def test_a_download_has_a_size_cap(tmp_path, monkeypatch):
    from minigrad import data
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MINIGRAD_NO_DOWNLOAD", raising=False)
    monkeypatch.setattr(data, "MAX_DOWNLOAD_BYTES", 1000)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for f in data._FILES:
        (mirror / f).write_bytes(b"x" * 5000)
    monkeypatch.setitem(data.DATASETS, "mnist", dict(data.DATASETS["mnist"],
                                                     mirrors=[mirror.as_uri() + "/"]))
    monkeypatch.setattr(data, "_candidates", lambda name, d: [])
    with pytest.raises(DataError, match="more than 1000"):
        load_dataset("mnist")
