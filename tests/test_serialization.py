"""Checkpoints: nested structures, no pickle, atomic writes, any backend."""
import os

import numpy as np  # host-side: comparing loaded values
import pytest

import minigrad as mg
from minigrad import nn, optim, serialization


def test_round_trip_nested(tmp_path, backend_name):
    t = mg.randn(3, 4)
    obj = {"model": {"w": t, "b": mg.zeros(4, dtype="float64")}, "epoch": 3, "lr": 1e-3,
           "name": "vae", "none": None, "flag": True, "steps": [1, 2, (3, 4)],
           "state": {0: {"step": 5}, 1: {}}, "rng": np.random.default_rng(0).bit_generator.state}
    path = tmp_path / "c.npz"
    mg.save(obj, path)
    back = mg.load(path)
    assert back["epoch"] == 3 and back["lr"] == 1e-3 and back["name"] == "vae"
    assert back["none"] is None and back["flag"] is True and back["steps"] == [1, 2, (3, 4)]
    assert back["state"] == {0: {"step": 5}, 1: {}}            # int keys survive
    assert back["rng"] == obj["rng"]                            # 128-bit ints survive
    np.testing.assert_array_equal(back["model"]["w"].numpy(), t.numpy())
    assert back["model"]["b"].dtype == mg.float64 and back["model"]["w"].backend == backend_name


def test_no_pickle_and_clear_errors(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        mg.save({"f": lambda: 0}, tmp_path / "x.npz")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not written by mg.save"):
        mg.load(tmp_path / "foreign.npz")
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable"):
        mg.load(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        mg.load(tmp_path / "missing.npz")


def test_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    mg.save({"epoch": 1, "w": mg.ones(3)}, path)

    def crash_midway(f, arrays):
        f.write(b"PK\x03\x04 half a zip file")     # some bytes reach the disk...
        raise OSError("disk full")                 # ...then the write fails

    monkeypatch.setattr(serialization, "_write_npz", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        mg.save({"epoch": 2, "w": mg.zeros(3)}, path)
    assert mg.load(path)["epoch"] == 1                        # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left


def test_truncated_or_damaged_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "c.npz"
    mg.save({"epoch": 1, "w": mg.randn(64, 64)}, path)
    whole = path.read_bytes()
    (tmp_path / "half.npz").write_bytes(whole[:len(whole) // 2])     # a zip without its index
    with pytest.raises(ValueError, match="not a readable"):
        mg.load(tmp_path / "half.npz")
    damaged = bytearray(whole)
    damaged[len(whole) // 3] ^= 0xFF                                # inside the array data: CRC
    (tmp_path / "flip.npz").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="not a readable"):
        mg.load(tmp_path / "flip.npz")


def test_saved_file_gets_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        mg.save({"epoch": 1}, tmp_path / "c.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == 0o644


def test_saved_on_strict_loads_on_numpy_with_same_outputs(tmp_path):
    with mg.backend("strict"):
        mg.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))
        opt = optim.Adam(model.parameters(), lr=0.1)
        x = mg.randn(8, 5)
        model(x).sum().backward()
        opt.step()
        model.eval()
        expected = model(x).numpy()
        mg.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "s.npz")
        host_x = x.numpy()
    with mg.backend("numpy"):
        ckpt = mg.load(tmp_path / "s.npz")
        again = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2))
        again.load_state_dict(ckpt["model"])
        optim.Adam(again.parameters(), lr=0.1).load_state_dict(ckpt["opt"])
        again.eval()
        np.testing.assert_allclose(again(mg.tensor(host_x)).numpy(), expected, rtol=1e-6)
    assert os.path.getsize(tmp_path / "s.npz") > 0
