"""The array backend: the no-NumPy-outside-the-backend rule, choosing backends,
the clear CuPy error, scatter-add, the strict GPU stand-in, and moving tensors."""
import ast
import io
import os
import pathlib
import subprocess
import sys
import tokenize

import numpy as np  # host-side: references
import pytest

import minigrad as mg
from minigrad.backend import BackendError, available_backends, backend_of, get_backend

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARRAY_LIBS = {"numpy", "cupy", "cupyx"}
HOST_SIDE = "# host-side:"
# NumPy-only spellings that break on CuPy or on the Array API
FORBIDDEN_TOKENS = ("np.", "numpy.", "cupy.", "cupyx.", ".add.at(", "as_strided",
                    "ascontiguousarray", "stride_tricks")
# ndarray methods that Array API arrays (CuPy's aside) do not have: inside a
# Function.forward the arguments ARE arrays, so calling these on them is a bug
NDARRAY_ONLY_METHODS = {"astype", "reshape", "copy", "ravel", "flatten", "transpose", "swapaxes",
                        "sum", "mean", "max", "min", "prod", "fill", "nonzero", "repeat", "clip",
                        "dot", "squeeze", "cumsum", "argmax", "argmin", "any", "all", "std", "var",
                        "view", "item", "tolist", "tobytes", "take", "put", "round"}


def _import_violations(source, filename):
    """Imports of numpy/cupy without a ``# host-side:`` comment on their line(s)."""
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module]
        else:
            continue
        if not any(m.split(".")[0] in ARRAY_LIBS for m in mods):
            continue
        text = "\n".join(lines[node.lineno - 1:node.end_lineno])
        if HOST_SIDE not in text:
            out.append(f"{filename}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return out


def _engine_violations(source, filename):
    """For engine code (minigrad/ outside backend.py, no host-side import): any
    numpy/cupy name, NumPy-only tokens, and ndarray-only methods in forward()."""
    tree = ast.parse(source, filename)
    host_side = any(HOST_SIDE in line and "import" in line for line in source.splitlines())
    out = []
    if not host_side:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in ARRAY_LIBS | {"np", "cp"}:
                out.append(f"{filename}:{node.lineno}: uses the name {node.id!r}")
        for i, line in enumerate(_code_only(source).splitlines(), 1):
            for tok in FORBIDDEN_TOKENS:
                if tok in line:
                    out.append(f"{filename}:{i}: NumPy-only {tok!r}: {line.strip()}")
    for fn in _function_forwards(tree):
        params = {a.arg for a in fn.args.args[1:]} | \
            ({fn.args.vararg.arg} if fn.args.vararg else set())
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id in params \
                    and node.func.attr in NDARRAY_ONLY_METHODS:
                out.append(f"{filename}:{node.lineno}: ndarray-only method "
                           f".{node.func.attr}() on array {node.func.value.id!r} in forward")
    return out


def _function_forwards(tree):
    """The ``forward`` methods of Function subclasses (their arguments are raw
    arrays; a Module's forward takes Tensors, which have these methods)."""
    classes = {c.name: c for c in ast.walk(tree) if isinstance(c, ast.ClassDef)}
    is_fn = {}

    def derives(name, seen=()):
        if name in is_fn:
            return is_fn[name]
        c = classes.get(name)
        result = False
        if c is not None and name not in seen:
            for b in c.bases:
                bname = b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")
                if bname == "Function" or derives(bname, seen + (name,)):
                    result = True
        is_fn[name] = result
        return result

    for name, c in classes.items():
        if derives(name):
            for f in c.body:
                if isinstance(f, ast.FunctionDef) and f.name == "forward":
                    yield f


def _code_only(source):
    """``source`` with strings and comments blanked out (an error message or a
    docstring may mention np.pad; only code counts)."""
    lines = [list(line) for line in source.splitlines()]
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                row = lines[r - 1]
                lo = c0 if r == r0 else 0
                hi = c1 if r == r1 else len(row)
                row[lo:hi] = " " * (hi - lo)
    return "\n".join("".join(row) for row in lines)


def _python_files(*dirs):
    for d in dirs:
        yield from sorted((ROOT / d).rglob("*.py"))


def test_no_array_library_outside_the_backend():
    violations = []
    for path in _python_files("minigrad", "models"):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "minigrad/backend.py":
            continue
        source = path.read_text()
        violations += _import_violations(source, rel)
        if rel.startswith("minigrad/"):
            violations += _engine_violations(source, rel)
    assert not violations, "array-library use outside minigrad/backend.py " \
        "(go through be.xp / the Backend, or mark host-only imports '# host-side: why'):\n" + \
        "\n".join(violations)


def test_the_rule_checker_can_fail():
    bad = "import numpy as np\nfrom cupy import asarray\nimport numpy.linalg\n"
    assert len(_import_violations(bad, "x.py")) == 3
    ok = "import numpy as np  # host-side: figures\nimport math\n"
    assert _import_violations(ok, "x.py") == []
    engine = ("def f(x):\n    return np.exp(x)\n"
              "class A(mg.Function):\n    def forward(self, x, w):\n"
              "        return x.reshape(3) + w.astype(1)\n"
              "np.add.at(t, i, v)\n"
              "def g():\n    \"\"\"mentions np.pad in text\"\"\"\n    raise ValueError('no np.pad')\n")
    found = "\n".join(_engine_violations(engine, "x.py"))
    assert "'np'" in found and ".reshape()" in found and ".astype()" in found
    assert "'.add.at('" in found and "np.pad" not in found
    module = "class M(Module):\n    def forward(self, x):\n        return x.reshape(3)\n"
    assert _engine_violations(module, "x.py") == []   # a Module's forward takes Tensors


# ----------------------------------------------------------------------------- choosing
def test_available_backends():
    names = available_backends()
    assert names[0] == "numpy" and "strict" in names


def _has_gpu():
    try:
        get_backend("cupy")
        return True
    except BackendError:
        return False


@pytest.mark.skipif(_has_gpu(), reason="a GPU with CuPy is present: the error cannot happen")
def test_cupy_without_gpu_gives_a_clear_error():
    before = mg.get_backend()
    for call in (lambda: mg.set_backend("cupy"), lambda: get_backend("cupy"),
                 lambda: mg.tensor([1.0]).to("cupy")):
        with pytest.raises(BackendError) as info:
            call()
        msg = str(info.value)
        assert 'pip install -e ".[cuda12]"' in msg or "no CUDA GPU" in msg \
            or "no usable CUDA GPU" in msg, msg
        assert "cupy" in msg
    assert mg.get_backend() is before   # a failed switch leaves the backend alone


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match=r"unknown backend 'torch'.*numpy"):
        mg.set_backend("torch")


def _run(code, **env):
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=120)


def test_env_var_chooses_the_backend():
    r = _run("import minigrad as mg; print(mg.tensor([1.0]).backend, mg.get_backend().name)",
             MINIGRAD_BACKEND="strict")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["strict", "strict"]
    r = _run("import minigrad as mg; print(mg.tensor([1.0]).backend)", MINIGRAD_BACKEND="")
    assert r.stdout.split() == ["numpy"]


@pytest.mark.skipif(_has_gpu(), reason="a GPU with CuPy is present")
def test_env_var_cupy_without_gpu_names_the_variable_and_the_fix():
    """The variable is read when a backend is first needed: importing works (so a
    CLI can still print --help or choose --backend numpy), the first tensor says why."""
    r = _run("import minigrad", MINIGRAD_BACKEND="cupy")
    assert r.returncode == 0, r.stderr
    r = _run("import minigrad as mg; mg.tensor(1.0)", MINIGRAD_BACKEND="cupy")
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "BackendError: MINIGRAD_BACKEND=cupy" in last and "cuda" in last
    r = _run("import minigrad as mg; print(mg.tensor(1.0, backend='numpy').backend)",
             MINIGRAD_BACKEND="cupy")
    assert r.returncode == 0 and r.stdout.split() == ["numpy"], r.stderr


def test_backend_context_restores_previous():
    mg.set_backend("numpy")
    with mg.backend("strict") as be:
        assert be.name == "strict" and mg.tensor(1.0).backend == "strict"
        with mg.backend("numpy"):
            assert mg.zeros(2).backend == "numpy"
        assert mg.randn(2).backend == "strict"
    assert mg.get_backend().name == "numpy"
    with pytest.raises(KeyError):
        with mg.backend("strict"):
            raise KeyError("boom")
    assert mg.get_backend().name == "numpy"


def test_explicit_backend_argument(backend_name):
    other = "numpy" if backend_name != "numpy" else "strict"
    assert mg.zeros(2, backend=other).backend == other
    assert mg.tensor([1.0], backend=other).backend == other
    assert mg.tensor([1.0]).backend == backend_name


# ----------------------------------------------------------------------------- the missing ops
def test_scatter_add_matches_np_add_at(backend_name):
    be = get_backend(backend_name)
    rng = np.random.default_rng(0)
    cases = [
        ((6,), np.array([0, 2, 2, -1, 5, 0])),                        # repeats and -1
        ((4, 3), np.array([3, 3, 1])),                                 # whole rows
        ((4, 3), (np.array([0, 0, 3, -4]), np.array([2, 2, 0, 1]))),   # element pairs
    ]
    for shape, index in cases:
        target = rng.standard_normal(shape)
        gathered_shape = target[index].shape
        values = rng.standard_normal(gathered_shape)
        expected = target.copy()
        np.add.at(expected, index, values)
        key = tuple(be.from_numpy(i) for i in index) if isinstance(index, tuple) \
            else be.from_numpy(index)
        out = be.scatter_add(be.from_numpy(target), key, be.from_numpy(values))
        assert be.is_array(out)
        np.testing.assert_allclose(be.to_numpy(out), expected, rtol=1e-12)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_index_add_matches_np_add_at(backend_name, axis):
    be = get_backend(backend_name)
    rng = np.random.default_rng(axis)
    target = rng.standard_normal((3, 4, 5))
    index = np.array([0, 2, 2, -1, 1, 0])
    values = rng.standard_normal(target.shape[:axis] + (len(index),) + target.shape[axis + 1:])
    expected = target.copy()
    np.add.at(expected, (slice(None),) * axis + (index,), values)
    out = be.index_add(be.from_numpy(target), axis, be.from_numpy(index), be.from_numpy(values))
    np.testing.assert_allclose(be.to_numpy(out), expected, rtol=1e-12)


def test_random_generator_is_seeded_and_checkpointable(backend_name):
    mg.manual_seed(123)
    a = mg.randn(5).numpy()
    state = get_backend(backend_name).rng_state()
    b = mg.rand(4).numpy()
    mg.manual_seed(123)
    np.testing.assert_array_equal(mg.randn(5).numpy(), a)
    get_backend(backend_name).set_rng_state(state)
    np.testing.assert_array_equal(mg.rand(4).numpy(), b)
    r = mg.randint(0, 3, (1000,)).numpy()
    assert set(np.unique(r)) == {0, 1, 2}
    u = mg.rand(2000).numpy()
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.05


# ----------------------------------------------------------------------------- the GPU stand-in
def test_strict_arrays_refuse_implicit_numpy_conversion():
    with mg.backend("strict"):
        t = mg.tensor([1.0, 2.0])
    assert "device1" in str(t.data.device)
    with pytest.raises(Exception):
        np.asarray(t.data)
    with pytest.raises(Exception):
        np.exp(t.data)
    cpu = get_backend("strict").xp.asarray([1.0, 2.0])      # a strict array on its CPU device
    with pytest.raises(Exception):
        t.data + cpu
    # only the explicit transfer reaches the host, and it does so with the values
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])
    assert repr(t) == "tensor([1., 2.], backend='strict')"


def test_host_transfers_are_explicit(backend_name):
    t = mg.tensor([[1.5, -2.0]], dtype="float64")
    host = t.numpy()
    assert type(host) is np.ndarray and host.dtype == np.float64
    assert t[0, 1].item() == -2.0 and float(t.sum()) == -0.5
    assert t.tolist() == [[1.5, -2.0]]
    assert backend_of(t.data).name == backend_name


@pytest.mark.parametrize("src,dst", [("numpy", "strict"), ("strict", "numpy")])
def test_to_round_trip_carries_the_gradient(src, dst):
    x = mg.tensor([0.5, -1.0, 2.0], dtype="float64", requires_grad=True, backend=src)
    y = x.to(dst)
    assert y.backend == dst and y.dtype == mg.float64 and y.requires_grad
    z = (y * y).sum()
    z.backward()
    assert x.grad.backend == src
    np.testing.assert_allclose(x.grad.numpy(), [1.0, -2.0, 4.0])
    back = y.to(src)
    assert back.backend == src
    np.testing.assert_array_equal(back.detach().numpy(), x.detach().numpy())
    assert x.to(src) is x   # a move to where it already is does nothing
    assert mg.gradcheck(lambda t: (t.to(dst).tanh() * 2.0).to(src), [x])


def test_factories_put_arrays_on_the_current_backend(backend_name):
    like = mg.tensor([[1.0, 2.0]], dtype="float64")
    made = {
        "zeros": (mg.zeros(2, 3), (2, 3), mg.float32, np.zeros((2, 3))),
        "ones": (mg.ones((2,)), (2,), mg.float32, np.ones(2)),
        "full": (mg.full((2, 2), 7.0), (2, 2), mg.float32, np.full((2, 2), 7.0)),
        "zeros_like": (mg.zeros_like(like), (1, 2), mg.float64, np.zeros((1, 2))),
        "ones_like": (mg.ones_like(like), (1, 2), mg.float64, np.ones((1, 2))),
        "full_like": (mg.full_like(like, 3.0), (1, 2), mg.float64, np.full((1, 2), 3.0)),
        "arange": (mg.arange(5), (5,), mg.int64, np.arange(5)),
        "arange float": (mg.arange(0, 1, 0.25), (4,), mg.float32, np.arange(0, 1, 0.25)),
        "eye": (mg.eye(3), (3, 3), mg.float32, np.eye(3)),
        "from_numpy": (mg.from_numpy(np.arange(3.0)), (3,), mg.float64, np.arange(3.0)),
    }
    for name, (t, shape, dtype, values) in made.items():
        assert t.backend == backend_name, name
        assert be_is_array(t) and t.shape == shape and t.dtype == dtype, name
        np.testing.assert_array_equal(t.numpy(), values, err_msg=name)
    assert mg.randn(2, 3, requires_grad=True).requires_grad
    assert mg.rand(4, dtype="float64").dtype == mg.float64
    assert mg.randint(0, 5, (3, 2)).dtype == mg.int64


def be_is_array(t):
    return get_backend(t.backend).is_array(t.data)


def test_repr_is_readable(backend_name):
    suffix = "" if backend_name == "numpy" else f", backend='{backend_name}'"
    assert repr(mg.tensor([1.0, 2.5])) == f"tensor([1. , 2.5]{suffix})"
    x = mg.tensor([[1.0]], dtype="float64", requires_grad=True)
    assert repr(x) == f"tensor([[1.]], dtype=minigrad.float64{suffix}, requires_grad=True)"
    assert repr(x * 2.0).endswith("grad_fn=<Mul>)")
