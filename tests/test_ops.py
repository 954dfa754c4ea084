"""Property tests for every entry of minigrad/testing/registry.py, on every backend:

* forward equals the NumPy/SciPy reference (values, shape, float64 kept);
* ``mg.gradcheck``: backward against central differences, with a random upstream
  gradient, on shapes with broadcasting, size-1 dims, 0-d tensors, non-contiguous
  (transposed / strided) inputs and the same tensor used twice;
* ``mg.gradgradcheck`` where the op has a second derivative.

Each test draws its cases with hypothesis (profiles in conftest.py).
"""
import gc

import numpy as np  # host-side: references and comparisons
import pytest
from hypothesis import given

import minigrad as mg
from minigrad.gradcheck import FULL_CHECK_MAX_ELEMENTS
from minigrad.testing import functions_reached, run_check
from minigrad.testing.registry import OPS, coverage_table

GRAD_OPS = [s for s in OPS if s.differentiable]
GRADGRAD_OPS = [s for s in GRAD_OPS if s.gradgrad]


def _run(check, spec, backend_name):
    @given(spec.cases())
    def run(case):
        run_check(check, spec, case, backend_name)
    run()


@pytest.mark.parametrize("spec", OPS, ids=[s.name for s in OPS])
def test_forward_matches_numpy(spec, backend_name):
    _run("forward", spec, backend_name)


@pytest.mark.parametrize("spec", GRAD_OPS, ids=[s.name for s in GRAD_OPS])
def test_gradcheck(spec, backend_name):
    _run("gradcheck", spec, backend_name)


@pytest.mark.parametrize("spec", GRADGRAD_OPS, ids=[s.name for s in GRADGRAD_OPS])
def test_gradgradcheck(spec, backend_name):
    _run("gradgradcheck", spec, backend_name)


def _all_functions():
    def subclasses(c):
        for s in c.__subclasses__():
            yield s
            yield from subclasses(s)
    return {f for f in subclasses(mg.Function) if f.__module__.startswith("minigrad.")
            and not f.__module__.startswith("minigrad.testing")}


def test_every_function_is_reached_by_a_registry_entry():
    """Adding a Function without a registry entry fails here: the union of what the
    entries reach (forward, backward and the backward's backward) is every Function."""
    reached = set()
    for spec in OPS:
        reached |= functions_reached(spec)
    missing = sorted(f"{f.__module__}.{f.__name__}" for f in _all_functions() - reached)
    assert not missing, f"Functions no registry entry reaches: {missing}"


def test_the_coverage_check_can_fail():
    class Unregistered(mg.Function):
        def forward(self, x):
            return x

        def backward(self, gy):
            return gy

    Unregistered.__module__ = "minigrad.ops"     # as if it were defined in the engine
    try:
        assert Unregistered in _all_functions()
        assert not any(Unregistered in functions_reached(s) for s in OPS[:5])
    finally:
        del Unregistered
        gc.collect()      # drop it from Function.__subclasses__()


def test_registry_covers_issue_ops():
    """Every op the core issue lists has an entry (so the table cannot silently shrink)."""
    names = {s.name for s in OPS}
    required = {"add", "sub", "mul", "div", "pow", "neg", "matmul", "exp", "log", "sqrt", "abs",
                "sin", "cos", "tanh", "sigmoid", "relu", "leaky_relu", "elu", "softplus", "clip",
                "maximum", "minimum", "where", "sum", "mean", "max", "min", "var", "std",
                "logsumexp", "softmax", "log_softmax", "reshape", "view", "transpose", "permute",
                "swapaxes", "flatten", "squeeze", "unsqueeze", "expand", "broadcast_to",
                "concatenate", "stack", "split", "chunk", "pad", "getitem_basic",
                "getitem_int_array", "getitem_bool", "amax", "amin", "clone", "mm", "bmm",
                "square", "rsqrt", "reciprocal", "log1p", "expm1", "cumsum", "prod", "norm",
                "gather", "index_select", "masked_fill", "repeat", "flip", "tril", "triu",
                "erf", "sign", "floor", "round", "isnan", "isfinite", "clamp_min",
                "clamp_tensor_bounds", "softplus_beta_threshold", "conv2d",
                "conv_transpose2d", "max_pool2d", "avg_pool2d", "linear", "batch_norm_train",
                "cross_entropy", "binary_cross_entropy", "cast", "to_backend"}
    assert required <= names, sorted(required - names)


def test_gradcheck_catches_a_wrong_backward():
    """The checker itself can fail: a backward off by a factor, or one that ignores
    the upstream gradient, is reported with the input, element and both values."""
    class Wrong(mg.Function):
        def forward(self, x):
            return x * x

        def backward(self, gy):
            return 2.0 * self.inputs[0]     # ignores gy

    x = mg.tensor([0.5, -1.5, 2.0], dtype="float64", requires_grad=True)
    with pytest.raises(AssertionError, match=r"input 0 .*element .*analytic .*numerical"):
        mg.gradcheck(lambda t: Wrong.apply(t), [x])


def test_coverage_table_lists_every_op():
    table = coverage_table()
    for s in OPS:
        assert f"\n{s.name} " in table
    assert "Conv2dWeight" in table and "ToBackend" in table and "BatchNormTrain" in table


def test_gradcheck_reports_the_worst_element(backend_name):
    class WrongAtTheEnd(mg.Function):
        def forward(self, x):
            return x * 1.0

        def backward(self, gy):
            return gy * mg.tensor([1.0, 1.1, 1.5, 1.0], dtype="float64")

    x = mg.tensor([1.0, 2.0, 3.0, 4.0], dtype="float64", requires_grad=True)
    with pytest.raises(AssertionError, match=r"element \(2,\).*worst of 2 failing out of 4"):
        mg.gradcheck(lambda t: WrongAtTheEnd.apply(t), [x])


def test_gradcheck_on_large_inputs_uses_random_directions(backend_name):
    """Inputs above FULL_CHECK_MAX_ELEMENTS are checked along random directions:
    a right backward passes, a backward off by 1% on one element fails."""
    x = mg.randn(20, 20, dtype="float64", requires_grad=True)
    assert x.size > FULL_CHECK_MAX_ELEMENTS
    assert mg.gradcheck(lambda t: (t.tanh() @ t).sigmoid(), [x])

    class Slightly(mg.Function):
        def forward(self, x):
            return x * x

        def backward(self, gy):
            scale = np.ones(self.inputs[0].shape)
            scale[3, 4] = 30.0
            return gy * 2.0 * self.inputs[0] * mg.tensor(scale)

    with pytest.raises(AssertionError, match="random direction"):
        mg.gradcheck(lambda t: Slightly.apply(t), [x])


def test_comparisons_and_argmax_are_not_differentiable(backend_name):
    a_np = np.array([[0.5, -1.0, 2.0], [3.0, 0.0, -2.5]])
    b_np = np.array([0.5, 1.0, -2.0])
    a = mg.tensor(a_np, requires_grad=True)
    b = mg.tensor(b_np)
    for got, expected in [(a == b, a_np == b_np), (a != b, a_np != b_np), (a < b, a_np < b_np),
                          (a <= b, a_np <= b_np), (a > b, a_np > b_np), (a >= b, a_np >= b_np),
                          (a > 0.0, a_np > 0.0),
                          (a.argmax(), np.argmax(a_np)), (a.argmin(), np.argmin(a_np)),
                          (a.argmax(axis=1), np.argmax(a_np, axis=1)),
                          (a.argmin(axis=0, keepdims=True), np.argmin(a_np, 0, keepdims=True))]:
        assert not got.requires_grad and got.grad_fn is None
        np.testing.assert_array_equal(got.numpy(), expected)
    assert (a > 0.0).dtype == mg.bool and a.argmax().dtype == mg.int64


def test_list_command_prints_the_table():
    import pathlib
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "minigrad.testing", "--list"], cwd=root,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("op ") and f"{len(OPS)} entries" in r.stdout
    assert all(f"\n{s.name} " in r.stdout for s in OPS)
