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


# ----------------------------------------------------------------------------- hostile files
def _npz(path, manifest=None, raw_manifest=None, **arrays):
    """A .npz with a given manifest (as JSON), written the way mg.save writes one."""
    import json
    payload = raw_manifest if raw_manifest is not None else json.dumps(manifest).encode()
    np.savez(path, __manifest__=np.frombuffer(payload, dtype=np.uint8), **arrays)
    return path


def _malformed(tmp_path):
    """(name, path) of checkpoints that must each give one ValueError, never a crash."""
    import io
    import zipfile
    f = "minigrad-checkpoint-1"
    out = []

    def add(name, path):
        out.append((name, path))

    add("list root", _npz(tmp_path / "a.npz", [1, 2]))
    add("int root", _npz(tmp_path / "b.npz", 7))
    add("string root", _npz(tmp_path / "b2.npz", "x"))
    add("wrong format", _npz(tmp_path / "c.npz", {"format": "other", "root": 1}))
    add("no root", _npz(tmp_path / "d.npz", {"format": f}))
    add("dangling array", _npz(tmp_path / "e.npz", {"format": f, "root": {"__tensor__": "a9"}}))
    add("array key not a string", _npz(tmp_path / "e2.npz", {"format": f,
                                                            "root": {"__tensor__": 3}}))
    add("unhashable key", _npz(tmp_path / "g.npz", {"format": f, "root": {
        "__items__": [[[1, 2], 3]]}}))
    add("malformed items", _npz(tmp_path / "g2.npz", {"format": f, "root": {"__items__": 5}}))
    add("unknown tag", _npz(tmp_path / "g3.npz", {"format": f, "root": {"__pickle__": "x"}}))
    add("tag mixed with keys", _npz(tmp_path / "g4.npz", {"format": f, "root": {
        "__tuple__": [], "x": 1}}))
    deep = "[" * 200_000 + "]" * 200_000
    add("200k-deep nesting", _npz(tmp_path / "h.npz", raw_manifest=(
        '{"format": "%s", "root": %s}' % (f, deep)).encode()))
    add("65-deep nesting", _npz(tmp_path / "h2.npz", raw_manifest=(
        '{"format": "%s", "root": %s}' % (f, "[" * 70 + "]" * 70)).encode()))
    add("manifest not utf-8", _npz(tmp_path / "i.npz", raw_manifest=b"\xff\xfe\x00"))
    add("manifest not json", _npz(tmp_path / "i2.npz", raw_manifest=b"{not json"))
    add("object array", _npz(tmp_path / "j.npz", {"format": f, "root": {"__ndarray__": "a0"}},
                             a0=np.array(["text"])))
    np.savez(tmp_path / "k.npz", w=np.zeros(3))
    add("no manifest", tmp_path / "k.npz")
    # a header that claims 2**40 elements: refused before any allocation
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": (2 ** 40,)})
    buf.write(b"\0" * 16)
    path = _npz(tmp_path / "l.npz", {"format": f, "root": {"__tensor__": "a0"}})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("a0.npy", buf.getvalue())
    add("huge header", path)
    # a zip bomb: a small compressed member that inflates far beyond the file
    path = _npz(tmp_path / "m.npz", {"format": f, "root": {"__tensor__": "a0"}})
    bomb = io.BytesIO()
    np.lib.format.write_array(bomb, np.zeros(30_000_000, dtype=np.uint8))
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("a0.npy", bomb.getvalue())
    add("zip bomb", path)
    (tmp_path / "t.npz").write_text("just text\n")
    add("a text file", tmp_path / "t.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    add("an empty file", tmp_path / "empty.npz")
    # bit flips all over a real checkpoint (zip fields, headers, data, manifest)
    good = tmp_path / "good.npz"
    mg.save({"epoch": 3, "w": mg.randn(8, 8), "opt": {"lr": 0.1, "state": [mg.ones(4)]}}, good)
    raw = good.read_bytes()
    rng = np.random.default_rng(0)
    for i, pos in enumerate(rng.integers(0, len(raw), 40)):
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << int(rng.integers(8))
        path = tmp_path / f"flip{i}.npz"
        path.write_bytes(bytes(flipped))
        add(f"bit flip at byte {pos}", path)
    return out


def test_malformed_checkpoints_give_one_value_error_each(tmp_path):
    """Every hostile or damaged file is refused with a ValueError that names it; a bit
    flip in a byte nothing reads (zip metadata) may load, but then with exactly the
    saved data. Nothing crashes with another exception type."""
    refused = 0
    cases = _malformed(tmp_path)
    good = mg.load(tmp_path / "good.npz")
    for name, path in cases:
        try:
            out = mg.load(path)
        except ValueError as e:
            assert str(path) in str(e), (name, e)
            refused += 1
        else:
            assert name.startswith("bit flip"), f"{name} loaded: {out!r}"
            assert out.keys() == good.keys() and out["epoch"] == good["epoch"], name
            np.testing.assert_array_equal(out["w"].numpy(), good["w"].numpy(), err_msg=name)
            np.testing.assert_array_equal(out["opt"]["state"][0].numpy(),
                                          good["opt"]["state"][0].numpy(), err_msg=name)
    assert refused >= 40 and len(cases) >= 55


def test_only_referenced_arrays_are_read(tmp_path, monkeypatch):
    path = _npz(tmp_path / "x.npz", {"format": "minigrad-checkpoint-1",
                                     "root": {"w": {"__ndarray__": "a0"}}},
                a0=np.arange(3.0), big=np.zeros(1000))
    read = []
    original = serialization._read_member
    monkeypatch.setattr(serialization, "_read_member",
                        lambda z, info, where: read.append(info.filename) or
                        original(z, info, where))
    assert mg.load(path)["w"].tolist() == [0.0, 1.0, 2.0]
    assert "big.npy" not in read


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    import os
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / f".tmp-{dead}-abcd.npz").write_bytes(b"x")
    (tmp_path / f".tmp-{os.getppid()}-live.npz").write_bytes(b"x")   # a live process
    (tmp_path / "checkpoint.npz").write_bytes(b"x")
    assert serialization.remove_stale_temporaries(tmp_path) == [f".tmp-{dead}-abcd.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".tmp-{os.getppid()}-live.npz", "checkpoint.npz"])
