"""Engine semantics: accumulation, graph freeing, long graphs, higher-order
gradients, grad mode, dtypes, error messages and memory."""
import gc
import pathlib
import sys
import weakref

import numpy as np  # host-side: references
import pytest

import minigrad as mg
from minigrad.tensor import Function, Tensor

ROOT = pathlib.Path(__file__).resolve().parents[1]


def t64(data, requires_grad=True):
    return mg.tensor(np.asarray(data, dtype=np.float64), requires_grad=requires_grad)


# ----------------------------------------------------------------------------- accumulation
def test_reused_input_accumulates(backend_name):
    a = mg.tensor(1.0, requires_grad=True)
    (a + a).backward()
    assert a.grad.item() == 2.0
    a.grad = None
    b = a + a
    c = b + b
    c.backward()
    assert a.grad.item() == 4.0
    assert a.grad.backend == backend_name


def test_reused_node_in_a_diamond(backend_name):
    # y feeds two branches that meet again: d/dx (y*y + 3y) with y = 2x  ->  8x + 6
    x = t64([0.5, -1.0, 2.0])
    y = x * 2.0
    z = y * y + y * 3.0
    z.backward(t64([1.0, 2.0, -1.0], False))
    np.testing.assert_allclose(x.grad.numpy(), (8 * x.numpy() + 6) * [1.0, 2.0, -1.0])


def test_backward_twice_accumulates(backend_name):
    x = t64([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_backward_through_freed_graph_raises(backend_name):
    x = t64([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*"
                                           "retain_graph=True"):
        y.backward()


def test_intermediate_buffers_are_freed_after_backward(backend_name):
    x = t64([1.0, 2.0])
    h = x.exp()
    node = weakref.ref(h._ctx)
    y = (h * x).sum()
    y.backward()
    assert node() is not None and node().inputs is None    # released, not just unreachable
    assert set(vars(node())) <= {"generation", "inputs"}     # saved arrays dropped


def test_retain_graph_keeps_saved_values(backend_name):
    x = t64([0.3, -0.7])
    y = (x.tanh() * x).sum()
    for k in range(1, 4):
        y.backward(retain_graph=True)
        expected = np.tanh(x.numpy()) + x.numpy() * (1 - np.tanh(x.numpy()) ** 2)
        np.testing.assert_allclose(x.grad.numpy(), k * expected)


def test_long_chain_does_not_recurse(backend_name):
    x = t64(1.0)
    y = x
    n = 10_000
    for _ in range(n):
        y = y * 1.0001
    limit = sys.getrecursionlimit()
    assert n > limit   # the chain is deeper than any recursive walk could go
    y.backward()
    assert x.grad.item() == pytest.approx(1.0001 ** n, rel=1e-9)
    # and a chain that is simply dropped (never backpropagated) is freed without recursion
    z = x
    for _ in range(n):
        z = z + 1.0
    ref = weakref.ref(z._ctx)
    del z
    gc.collect()
    assert ref() is None


def test_non_scalar_backward_needs_gradient(backend_name):
    x = t64([1.0, 2.0])
    y = x * 2.0
    with pytest.raises(RuntimeError, match=r"scalar output.*shape \(2,\)"):
        y.backward()
    with pytest.raises(RuntimeError, match=r"gradient of shape \(3,\).*shape \(2,\)"):
        y.backward(t64([1.0, 1.0, 1.0], False))
    y.backward(t64([1.0, -3.0], False))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, -6.0])


def test_backward_on_tensor_without_grad_raises(backend_name):
    with pytest.raises(RuntimeError, match="does not require grad"):
        (t64([1.0], requires_grad=False) * 2.0).sum().backward()


def test_gradients_are_tensors_without_graph(backend_name):
    x = t64([1.0, 2.0])
    (x * x).sum().backward()
    assert isinstance(x.grad, Tensor) and not x.grad.requires_grad and x.grad.grad_fn is None


def test_engine_rejects_a_gradient_of_the_wrong_shape(backend_name):
    class BadShape(Function):
        def forward(self, x):
            return x * 2

        def backward(self, gy):
            return gy.sum()     # a scalar for a (3,) input

    x = t64([1.0, 2.0, 3.0])
    with pytest.raises(RuntimeError, match=r"BadShape.backward returned a gradient of shape "
                                           r"\(\) for an input of shape \(3,\)"):
        BadShape.apply(x).sum().backward()


# ----------------------------------------------------------------------------- mg.grad
def test_grad_returns_without_touching_dot_grad(backend_name):
    x = t64([1.0, 2.0])
    y = t64([3.0, 4.0])
    gx, gy = mg.grad((x * y).sum(), [x, y])
    np.testing.assert_allclose(gx.numpy(), [3.0, 4.0])
    np.testing.assert_allclose(gy.numpy(), [1.0, 2.0])
    assert x.grad is None and y.grad is None


def test_grad_of_intermediate_and_unused(backend_name):
    x = t64([1.0, 2.0])
    h = x * 3.0
    unused = t64([5.0])
    y = (h * h).sum()
    with pytest.raises(RuntimeError, match="not used"):
        mg.grad(y, [h, unused], retain_graph=True)
    gh, gu = mg.grad(y, [h, unused], allow_unused=True)
    np.testing.assert_allclose(gh.numpy(), 2 * h.numpy())
    assert gu is None


def test_double_backward_scalar(backend_name):
    x = t64(0.7)
    (g,) = mg.grad(x ** 3, x, create_graph=True)
    assert g.requires_grad
    (h,) = mg.grad(g, x, create_graph=True)
    (t,) = mg.grad(h, x)
    assert (g.item(), h.item(), t.item()) == pytest.approx((3 * 0.49, 6 * 0.7, 6.0))


def _mlp_loss(params, x, target):
    w1, b1, w2, b2 = params
    h = (x @ w1 + b1).tanh()
    out = h @ w2 + b2
    return ((out - target) ** 2).mean() + (h.sigmoid().sum(axis=1, keepdims=True) * out).sum() * 0.1


def test_hessian_vector_product_of_mlp_matches_finite_differences(backend_name):
    """H v from double backward equals (grad(w + eps v) - grad(w - eps v)) / (2 eps)."""
    rng = np.random.default_rng(3)
    shapes = [(4, 5), (5,), (5, 2), (2,)]
    host = [rng.standard_normal(s) * 0.7 for s in shapes]
    vs = [rng.standard_normal(s) for s in shapes]
    x = t64(rng.standard_normal((3, 4)), False)
    target = t64(rng.standard_normal((3, 2)), False)

    params = [t64(p) for p in host]
    grads = mg.grad(_mlp_loss(params, x, target), params, create_graph=True)
    dot = sum(((g * t64(v, False)).sum() for g, v in zip(grads, vs)), t64(0.0, False))
    hv = mg.grad(dot, params)

    eps = 1e-5

    def grad_at(sign):
        ps = [t64(p + sign * eps * v) for p, v in zip(host, vs)]
        return [g.numpy() for g in mg.grad(_mlp_loss(ps, x, target), ps)]

    plus, minus = grad_at(+1), grad_at(-1)
    for h, gp, gm in zip(hv, plus, minus):
        fd = (gp - gm) / (2 * eps)
        assert np.abs(fd).max() > 1e-3       # the check is not vacuous
        np.testing.assert_allclose(h.numpy(), fd, rtol=1e-5, atol=1e-7)


def test_gradient_penalty_style_double_backward(backend_name):
    # d/dw of ||d f/dx||^2 for f = sum(tanh(x @ w)): the WGAN-GP pattern
    x = t64([[0.3, -0.2], [0.5, 0.1]])
    w = t64([[0.4], [-0.6]])
    assert mg.gradcheck(lambda w_: (mg.grad((x @ w_).tanh().sum(), x, create_graph=True)[0]
                                    ** 2).sum(), [w])


# ----------------------------------------------------------------------------- grad mode
def test_no_grad_records_nothing(backend_name):
    x = t64([1.0, 2.0])
    with mg.no_grad():
        y = x * 2.0 + 1.0
        z = mg.zeros(3)
        assert not mg.is_grad_enabled()
        with mg.enable_grad():
            w = x * 3.0
    assert mg.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert not z.requires_grad
    assert w.requires_grad and w.grad_fn is not None

    @mg.no_grad()
    def evaluate(t):
        return t * t

    assert evaluate(x).grad_fn is None


def test_detach_cuts_the_graph(backend_name):
    x = t64([1.0, 2.0])
    y = (x * x.detach()).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 2.0])


def test_integer_tensors_cannot_require_grad(backend_name):
    with pytest.raises(TypeError, match="floating-point.*int64"):
        mg.tensor([1, 2, 3], requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        mg.arange(3).requires_grad_()
    with pytest.raises(TypeError, match="floating-point.*bool"):
        mg.tensor([True, False], requires_grad=True)


# ----------------------------------------------------------------------------- dtypes
def test_float32_stays_float32(backend_name):
    x = mg.randn(3, 4, requires_grad=True)
    assert x.dtype == mg.float32
    results = {
        "x * 0.5": x * 0.5, "x + 1": x + 1, "2 - x": 2 - x, "x / 3": x / 3, "1 / x": 1.0 / x,
        "x ** 2": x ** 2, "x ** 0.5": x.abs() ** 0.5, "2 ** x": 2 ** x, "sum": x.sum(),
        "mean": x.mean(axis=0), "var": x.var(), "std": x.std(axis=1), "max": x.max(),
        "logsumexp": x.logsumexp(axis=1), "softmax": x.softmax(), "log_softmax": x.log_softmax(),
        "sigmoid": x.sigmoid(), "softplus": x.softplus(), "elu": x.elu(),
        "clip": x.clip(-0.5, 0.5), "where": mg.where(x > 0, x, 0.0),
        "maximum": mg.maximum(x, 0.0), "matmul": x @ x.T, "pad": mg.pad(x, (1, 1)),
        "getitem": x[mg.tensor([0, 0, 2])],
    }
    for name, y in results.items():
        assert y.dtype == mg.float32, f"{name} gave {y.dtype}"
    total = sum((y.sum() for y in results.values()), mg.zeros(()))
    total.backward()
    assert x.grad.dtype == mg.float32


def test_float64_end_to_end(backend_name):
    x = mg.randn(3, 4, dtype="float64", requires_grad=True)
    w = mg.randn(4, 2, dtype="float64", requires_grad=True)
    loss = ((x @ w).tanh().log_softmax(axis=1) * 0.5 + 1).mean()
    assert loss.dtype == mg.float64
    loss.backward()
    assert x.grad.dtype == mg.float64 and w.grad.dtype == mg.float64


def test_cast_keeps_gradient(backend_name):
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x.double()
    assert y.dtype == mg.float64
    (y * y).sum().backward()
    assert x.grad.dtype == mg.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_python_defaults_match_pytorch(backend_name):
    assert mg.tensor(1.5).dtype == mg.float32
    assert mg.tensor([1, 2]).dtype == mg.int64
    assert mg.tensor([True]).dtype == mg.bool
    assert mg.tensor(np.zeros(2, np.float64)).dtype == mg.float64
    assert mg.tensor([1, 2], dtype="float64").dtype == mg.float64


# ----------------------------------------------------------------------------- errors
def test_shape_mismatch_names_op_and_shapes(backend_name):
    a, b = mg.zeros(2, 3), mg.zeros(4)
    for fn, name in [(lambda: a + b, "add"), (lambda: a * b, "mul"), (lambda: a - b, "sub"),
                     (lambda: mg.maximum(a, b), "maximum")]:
        with pytest.raises(ValueError, match=rf"{name}.*\(2, 3\).*\(4,\)"):
            fn()
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(2, 3\)"):
        a @ a
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, 2\)"):
        a.reshape(4, 2)
    with pytest.raises(ValueError, match=r"cat.*\(2, 3\).*\(4,\)"):
        mg.cat([a, b])
    with pytest.raises(ValueError, match=r"broadcast_to.*\(2, 3\).*\(4, 3\)"):
        a.broadcast_to(4, 3)


def test_mixing_backends_raises_naming_both():
    x = mg.tensor([1.0, 2.0], backend="numpy")
    y = mg.tensor([1.0, 2.0], backend="strict")
    for fn in (lambda: x + y, lambda: y * x, lambda: mg.maximum(x, y), lambda: x @ y,
               lambda: mg.cat([x, y])):
        with pytest.raises(ValueError, match=r"'numpy'.*'strict'|'strict'.*'numpy'"):
            fn()


# ----------------------------------------------------------------------------- memory
def _count_graph_objects():
    gc.collect()
    n_fn = n_t = 0
    for o in gc.get_objects():
        if isinstance(o, Function):
            n_fn += 1
        elif isinstance(o, Tensor):
            n_t += 1
    return n_fn, n_t


def test_training_loop_does_not_leak(backend_name):
    """1,000 MLP-like steps (forward, backward, SGD under no_grad): the number of
    live Function nodes and Tensors stays flat, and every step's graph dies as soon
    as the last reference to it goes (no reference cycles)."""
    mg.manual_seed(0)
    w1 = mg.randn(8, 16, requires_grad=True)
    b1 = mg.zeros(16, requires_grad=True)
    w2 = mg.randn(16, 3, requires_grad=True)
    params = [w1, b1, w2]
    x = mg.randn(32, 8)
    y = mg.randint(0, 3, (32,))
    node_refs = []
    counts = []
    for step in range(1000):
        h = (x @ w1 + b1).relu()
        logits = h @ w2
        loss = -(logits.log_softmax(axis=1)[mg.arange(32), y]).mean()
        node_refs.append(weakref.ref(loss.grad_fn))
        for p in params:
            p.grad = None
        loss.backward()
        with mg.no_grad():
            for p in params:
                p.data = (p - 0.01 * p.grad).data
        del h, logits, loss
        # freed by reference counting alone, no cycle collector: device memory returns at once
        assert node_refs[-1]() is None
        if step in (10, 999):
            counts.append(_count_graph_objects())
    assert counts[0] == counts[1], f"live (Function, Tensor) grew from {counts[0]} to {counts[1]}"
    assert all(r() is None for r in node_refs)


def test_index_and_condition_on_another_backend_raise():
    x = mg.tensor([1.0, 2.0, 3.0], backend="numpy")
    idx = mg.tensor([0, 2], backend="strict")
    with pytest.raises(ValueError, match="'strict'.*'numpy'"):
        x[idx]
    with pytest.raises(ValueError, match="'strict'.*'numpy'"):
        mg.where(mg.tensor([True, False, True], backend="strict"), x, 0.0)


def test_integer_and_float_operands_promote_like_pytorch(backend_name):
    """int/bool meeting float becomes that float dtype (not float64, and never the
    Array API's refusal to mix kinds); int / int is true division in float32."""
    i = mg.arange(3)
    f32 = mg.tensor([1.0, 2.0, 4.0], requires_grad=True)
    f64 = mg.tensor([1.0, 2.0, 4.0], dtype="float64")
    cases = {"i * 0.5": (i * 0.5, mg.float32, [0.0, 0.5, 1.0]),
             "i + f32": (i + f32, mg.float32, [1.0, 3.0, 6.0]),
             "f64 * i": (f64 * i, mg.float64, [0.0, 2.0, 8.0]),
             "i / 2": (i / 2, mg.float32, [0.0, 0.5, 1.0]),
             "mask * f32": ((i > 0) * f32, mg.float32, [0.0, 2.0, 4.0]),
             "i + 1": (i + 1, mg.int64, [1, 2, 3]),
             "i.mean()": (i.mean(), mg.float32, 1.0)}
    for name, (got, dtype, values) in cases.items():
        assert got.dtype == dtype, f"{name}: {got.dtype}"
        np.testing.assert_allclose(got.numpy(), values, err_msg=name)
    ((i > 0) * f32 + i * f32).sum().backward()
    np.testing.assert_allclose(f32.grad.numpy(), [0.0, 2.0, 3.0])


def test_max_with_ties_shares_the_gradient(backend_name):
    """At a tie max has no derivative; like PyTorch's full reduction and amax/amin,
    the gradient is split equally among the elements that attain the maximum; max
    along a dim gives it to the index it returns (the first)."""
    x = t64([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]])
    x.max().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [0, 0, 0]])
    x.grad = None
    x.amax(dim=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [0.5, 0, 0.5]])
    x.grad = None
    values, indices = x.max(dim=1)
    assert indices.tolist() == [1, 0]
    values.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 1, 0], [1, 0, 0]])
    x.grad = None
    x.min(axis=1).values.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[1, 0, 0], [0, 1, 0]])


def _counting(fn_cls, counts):
    """A subclass of ``fn_cls`` that counts its backward calls under its own name."""
    class Counted(fn_cls):
        def backward(self, gy):
            counts[self.tag] = counts.get(self.tag, 0) + 1
            return super().backward(gy)
    return Counted


def test_grad_prunes_backward_to_the_asked_inputs(backend_name):
    """mg.grad(loss, [x]) runs backward only on nodes from which x can be reached:
    a branch that leads to another leaf alone (a discriminator's weights) is skipped,
    and a node feeding both gets asked for x's side only."""
    from minigrad.functional import Linear
    counts = {}
    Counted = _counting(Linear, counts)

    def linear(x, w, tag):
        y = Counted.apply(x, w)
        y._ctx.tag = tag
        return y

    x = mg.randn(4, 3, dtype="float64", requires_grad=True)
    w_g = mg.randn(5, 3, dtype="float64", requires_grad=True)     # "generator" weight
    w_d = mg.randn(1, 5, dtype="float64", requires_grad=True)     # "discriminator" weight
    w_other = mg.randn(1, 3, dtype="float64", requires_grad=True)
    h = linear(x, w_g, "g")
    loss = linear(h.tanh(), w_d, "d").sum() + linear(mg.ones(4, 3, dtype="float64"),
                                                     w_other, "other").sum()
    (gx,) = mg.grad(loss, [x], retain_graph=True)
    assert counts == {"g": 1, "d": 1}          # "other" reaches only w_other: never run
    # the same gradient as a full backward
    loss.backward()
    np.testing.assert_allclose(gx.numpy(), x.grad.numpy(), rtol=1e-12)
    assert counts == {"g": 2, "d": 2, "other": 1}


def test_pruned_backward_asks_only_for_the_gradients_that_lead_on(backend_name):
    seen = []

    class Spy(mg.Function):
        def forward(self, a, b):
            return a * b

        def backward(self, gy):
            seen.append(self.needs_input_grad)
            a, b = self.inputs
            return gy * b, gy * a

    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([3.0, 4.0], requires_grad=True)
    out = Spy.apply(a, b).sum()
    (ga,) = mg.grad(out, [a], retain_graph=True)
    assert seen == [(True, False)] and ga.tolist() == [3.0, 4.0]
    out.backward()
    assert seen[-1] == (True, True)              # restored for a later full backward


def test_grad_of_a_freed_graph_still_says_so(backend_name):
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    mg.grad(y, [x])
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        mg.grad(y, [x])


def test_manual_seed_also_seeds_backends_created_later():
    import subprocess
    import sys
    code = ("import minigrad as mg; mg.manual_seed(42); a = mg.randn(3, backend='strict').tolist();"
            " mg.manual_seed(42); b = mg.randn(3, backend='strict').tolist();"
            " import numpy as np; c = np.random.default_rng(42).standard_normal(3).tolist();"
            " print(a == b, [round(v, 5) for v in a] == [round(v, 5) for v in c])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=str(ROOT), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"]


def test_manual_seed_range_follows_pytorch():
    mg.manual_seed(-1)                       # mapped to 2**64 - 2, as in PyTorch
    a = mg.randn(2).tolist()
    mg.manual_seed(2 ** 64 - 2)
    assert mg.randn(2).tolist() == a
    with pytest.raises(ValueError, match="seed"):
        mg.manual_seed(2 ** 64)
    mg.manual_seed(0)


def test_importing_minigrad_installs_no_warnings_filter():
    import subprocess
    import sys
    # numpy, scipy and matplotlib install filters of their own when imported: take them first
    code = ("import warnings, numpy, scipy, matplotlib; before = list(warnings.filters); "
            "import minigrad; print(warnings.filters == before)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=str(ROOT), timeout=120)
    assert r.stdout.split() == ["True"], r.stderr
