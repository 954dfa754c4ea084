"""Every kernel of minigrad/kernels/ equals its reference on the reading path.

For each registered kernel, hypothesis draws cases where the kernel applies
(``when`` holds), in float32 and float64, on every backend where it applies; the
kernel and the reference get the same inputs and must give the same numbers
(exactly where the kernel claims the same arithmetic, else to a few units of
rounding). Also: the switch really swaps the functions, and every kernel has cases.
"""
import copy

import numpy as np  # host-side: test data and comparisons
import pytest
from hypothesis import given, strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import conv, kernels, optim
from minigrad.backend import backend_of
from minigrad.testing import strategies as S

OVERRIDES = {ov.qualname: ov for ov in kernels.registered()}
RTOL = {"float32": 2e-5, "float64": 1e-12}


def host(a):
    return (a.numpy() if isinstance(a, mg.Tensor) else backend_of(a).to_numpy(a)).astype(
        np.float64)


def assert_close(a, b, dtype, exact=False):
    a, b = host(a), host(b)
    assert a.shape == b.shape
    if exact:
        np.testing.assert_array_equal(a, b)
        zeros = b == 0
        np.testing.assert_array_equal(np.signbit(a[zeros]), np.signbit(b[zeros]))  # -0 is not +0
    else:
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def array(be, shape, dtype, rng, low=-2.0, high=2.0):
    return be.from_numpy(rng.uniform(low, high, shape), dtype)


# ----------------------------------------------------------------------------- conv
@st.composite
def im2col_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    c = draw(st.integers(-(-8 // kw), 12))                  # kw*C >= 8: the kernel applies
    sh, sw, dh, dw = (draw(st.integers(1, 3)) for _ in range(4))
    hp = draw(st.integers(dh * (kh - 1) + 1, dh * (kh - 1) + 7))
    wp = draw(st.integers(dw * (kw - 1) + 1, dw * (kw - 1) + 7))
    g = conv.Geom(kh, kw, sh, sw, dh, dw, 0, 0, 0, 0)
    ho, wo = conv.output_hw(hp, wp, g)
    return (draw(st.integers(1, 3)), hp, wp, c), g, ho, wo


@st.composite
def input_grad_cases(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.sampled_from([(2, 2), (2, 1), (1, 3), (3, 2)]))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    c, o, n = draw(st.integers(16, 20)), draw(st.integers(1, 4)), draw(st.integers(1, 2))
    h = draw(st.integers(max(1, kh - 2 * ph), kh - 2 * ph + 6))
    w = draw(st.integers(max(1, kw - 2 * pw), kw - 2 * pw + 6))
    g = conv.Geom(kh, kw, sh, sw, 1, 1, ph, ph, pw, pw)
    ho, wo = conv.output_hw(h, w, g)
    return (n, o, ho, wo), (o, c, kh, kw), (n, c, h, w), g


@st.composite
def weight_grad_cases(draw):
    o = draw(st.integers(1, 16))
    k = draw(st.integers(1, 4096 // o))                      # K*O <= 4096: the kernel applies
    m = draw(st.sampled_from([1, 63, 64, 65, 300, 2000]))     # one block, and several
    return m, k, o


def _im2col(be, dtype, case, rng):
    shape, g, ho, wo = case
    xpad = array(be, shape, dtype, rng)
    return (be, xpad, g, ho, wo), {}, True


def _input_grad(be, dtype, case, rng):
    gy_shape, w_shape, x_shape, g = case
    return (be, array(be, gy_shape, dtype, rng), array(be, w_shape, dtype, rng), x_shape, g), \
        {}, False


def _weight_grad(be, dtype, case, rng):
    m, k, o = case
    kh, kw, cg = 1, 1, k
    return (be, array(be, (m, o), dtype, rng), array(be, (m, k), dtype, rng),
            (o, cg, kh, kw), 1), {}, False


# ----------------------------------------------------------------------------- losses
@st.composite
def class_cases(draw):
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 7))
    extra = tuple(draw(st.lists(st.integers(1, 3), max_size=1)))
    return (n, c) + extra, draw(st.booleans())


def _cross_entropy(be, dtype, case, rng):
    shape, weighted = case
    x = mg.Tensor._make(array(be, shape, dtype, rng, -5, 5), be, True, None)
    target = mg.Tensor._make(be.from_numpy(rng.integers(0, shape[1], (shape[0],) + shape[2:])),
                             be, False, None)
    weight = mg.tensor(rng.uniform(0.5, 2, shape[1]), dtype=dtype, backend=be) if weighted \
        else None
    mask, _ = F._target_weights(x, target, weight, -100, be)
    node = F.CrossEntropy.apply(x, mask=mask)._ctx
    gy = mg.Tensor._make(array(be, (shape[0],) + shape[2:], dtype, rng), be, False, None)
    return (node, gy), {}, False


@st.composite
def bce_cases(draw):
    return draw(S.shapes()), draw(st.sampled_from([(True, False), (False, True), (True, True)]))


def _bce(be, dtype, case, rng):
    shape, (need_x, need_t) = case
    x = mg.Tensor._make(array(be, shape, dtype, rng, 0.01, 0.99), be, need_x, None)
    t = mg.Tensor._make(array(be, shape, dtype, rng, 0.0, 1.0), be, need_t, None)
    node = F.BinaryCrossEntropy.apply(x, t)._ctx
    return (node, mg.Tensor._make(array(be, shape, dtype, rng), be, False, None)), {}, False


def _bce_with_logits(be, dtype, case, rng):
    shape, (need_x, need_t) = case
    x = mg.Tensor._make(array(be, shape, dtype, rng, -30, 30), be, need_x, None)
    t = mg.Tensor._make(array(be, shape, dtype, rng, 0.0, 1.0), be, need_t, None)
    node = F.BCEWithLogits.apply(x, t)._ctx
    return (node, mg.Tensor._make(array(be, shape, dtype, rng), be, False, None)), {}, True


def _bce_with_logits_forward(be, dtype, case, rng):
    """Logits over both tails, where exp(-|x|) is below float32's rounding of 1 + e."""
    shape, _ = case
    x = rng.uniform(-40, 40, shape)
    x.reshape(-1)[: min(3, x.size)] = [0.0, -17.0, 90.0][: min(3, x.size)]
    xt = mg.Tensor._make(be.from_numpy(x, dtype), be, True, None)
    t = mg.Tensor._make(array(be, shape, dtype, rng, 0.0, 1.0), be, False, None)
    node = F.BCEWithLogits.apply(xt, t)._ctx
    return (node, xt.data, t.data), {}, False


# ----------------------------------------------------------------------------- linear
@st.composite
def linear_cases(draw):
    """x (..., in) with 0-2 leading axes, a bias or none, any subset of gradients."""
    lead = tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
    n_in, n_out = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    bias = draw(st.booleans())
    need = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()).filter(
        lambda n: n[0] or n[1] or (bias and n[2])))      # some input needs a gradient
    return lead, n_in, n_out, bias, need, draw(st.booleans())


def _linear(be, dtype, case, rng):
    """The reference and the kernel get the same node; x non-contiguous when drawn so."""
    lead, n_in, n_out, bias, need, strided = case
    if strided:        # every other column of a wider array: a non-contiguous input
        x = array(be, lead + (2 * n_in,), dtype, rng)[..., ::2]
    else:
        x = array(be, lead + (n_in,), dtype, rng)
    inputs = [mg.Tensor._make(x, be, need[0], None),
              mg.Tensor._make(array(be, (n_out, n_in), dtype, rng), be, need[1], None)]
    if bias:
        inputs.append(mg.Tensor._make(array(be, (n_out,), dtype, rng), be, need[2], None))
    node = F.Linear.apply(*inputs)._ctx
    gy = mg.Tensor._make(array(be, lead + (n_out,), dtype, rng), be, False, None)
    return (node, gy), {}, True


# ----------------------------------------------------------------------------- activations
def _sigmoid(be, dtype, case, rng):
    """Both tails (float32's exp(-|x|) underflows past -88), 0, +-inf and nan."""
    x = rng.uniform(-120, 120, case)
    flat = x.reshape(-1)
    flat[: min(5, flat.size)] = [0.0, -np.inf, np.inf, np.nan, -87.5][: min(5, flat.size)]
    x = mg.Tensor._make(be.from_numpy(x, dtype), be, True, None)
    node = mg.ops.Sigmoid.apply(x)._ctx
    return (node, x.data), {}, True


def _relu_input(be, dtype, case, rng):
    x = rng.uniform(-2, 2, case)
    x.reshape(-1)[: min(4, x.size)] = [0.0, -0.0, np.nan, -np.inf][: min(4, x.size)]
    return mg.Tensor._make(be.from_numpy(x, dtype), be, True, None)


def _relu_forward(be, dtype, case, rng):
    x = _relu_input(be, dtype, case, rng)
    return (mg.ops.ReLU.apply(x)._ctx, x.data), {}, True


def _relu_backward(be, dtype, case, rng):
    x = _relu_input(be, dtype, case, rng)
    gy = mg.Tensor._make(array(be, case, dtype, rng), be, False, None)
    return (mg.ops.ReLU.apply(x)._ctx, gy), {}, False     # gy < 0 masked: -0, not +0


SLOPES = st.sampled_from([0.0, 0.01, 0.2, 1.0, 1.5, -0.1])     # the last two: the reference


@st.composite
def leaky_relu_cases(draw):
    return draw(S.shapes()), draw(SLOPES)


def _leaky_input(be, dtype, shape, slope, rng):
    """ReLU's inputs; with slope 0, -inf becomes -3 (0 * inf warns in the reference too)."""
    x = _relu_input(be, dtype, shape, rng)
    if slope == 0.0:
        h = be.to_numpy(x.data).copy()
        h[np.isinf(h)] = -3.0
        x = mg.Tensor._make(be.from_numpy(h, dtype), be, True, None)
    return x


def _leaky_relu_forward(be, dtype, case, rng):
    shape, slope = case
    x = _leaky_input(be, dtype, shape, slope, rng)
    return (mg.ops.LeakyReLU.apply(x, negative_slope=slope)._ctx, x.data), \
        {"negative_slope": slope}, True


def _leaky_relu_backward(be, dtype, case, rng):
    """gy with an inf and a nan too: the kernel's factor holds exactly 1 and a."""
    shape, slope = case
    x = _leaky_input(be, dtype, shape, slope, rng)
    g = rng.uniform(-2, 2, shape)
    g.reshape(-1)[-min(2, g.size):] = [np.inf if slope else 5.0, np.nan][-min(2, g.size):]
    gy = mg.Tensor._make(be.from_numpy(g, dtype), be, False, None)
    return (mg.ops.LeakyReLU.apply(x, negative_slope=slope)._ctx, gy), {}, True


@st.composite
def batch_norm_cases(draw):
    c = draw(st.integers(1, 4))
    shape = (draw(st.integers(2, 5)), c) + tuple(draw(st.lists(st.integers(1, 4), max_size=2)))
    return shape, draw(st.sampled_from(["none", "weight", "both"]))


def _batch_norm(be, dtype, case, rng):
    shape, affine = case
    x = mg.Tensor._make(array(be, shape, dtype, rng), be, True, None)
    args = [x]
    if affine != "none":
        args.append(mg.Tensor._make(array(be, (shape[1],), dtype, rng), be, True, None))
    if affine == "both":
        args.append(mg.Tensor._make(array(be, (shape[1],), dtype, rng), be, True, None))
    node = F.BatchNormTrain.apply(*args, eps=1e-5)._ctx
    return (node, mg.Tensor._make(array(be, shape, dtype, rng), be, False, None)), {}, False


# ----------------------------------------------------------------------------- optimizers
SGD_OPTIONS = st.fixed_dictionaries({
    "lr": st.sampled_from([0.1, 0.01]), "momentum": st.sampled_from([0.0, 0.9]),
    "dampening": st.sampled_from([0.0, 0.3]), "weight_decay": st.sampled_from([0.0, 0.01]),
    "nesterov": st.booleans(), "maximize": st.booleans()}).filter(
    lambda o: not o["nesterov"] or (o["momentum"] > 0 and o["dampening"] == 0))
ADAM_OPTIONS = st.fixed_dictionaries({
    "cls": st.sampled_from([optim.Adam, optim.AdamW]), "lr": st.sampled_from([1e-3, 0.1]),
    "betas": st.sampled_from([(0.9, 0.999), (0.5, 0.9), (0.0, 0.9)]),
    "weight_decay": st.sampled_from([0.0, 0.01]), "amsgrad": st.booleans(),
    "maximize": st.booleans()})


def _optimizer_run(be, dtype, options, rng, update):
    """Three steps of an optimizer on two parameters with fixed random gradients,
    every update done by ``update`` (the reference or the kernel)."""
    options = dict(options)
    cls = options.pop("cls", optim.SGD)
    params = [mg.nn.Parameter(mg.Tensor._make(array(be, s, dtype, rng), be, False, None))
              for s in [(3, 4), (5,)]]
    grads = [[array(be, p.shape, dtype, rng) for p in params] for _ in range(3)]
    opt = cls(params, **options)
    for step in grads:
        for p, g in zip(params, step):
            group = opt.param_groups[0]
            update(opt, p, g, group, opt.state.setdefault(p, {}))
    return params, opt.state


@st.composite
def optimizer_cases(draw, options):
    return draw(options), draw(st.integers(0, 2 ** 16))


def _optimizer_case(be, dtype, case, rng):
    return case, {}, True


CASES = {   # kernel -> (hypothesis cases, builder(be, dtype, case, rng) -> (args, kwargs, exact))
    "conv.im2col_nhwc": (im2col_cases(), _im2col),
    "conv.input_grad": (input_grad_cases(), _input_grad),
    "conv.weight_grad": (weight_grad_cases(), _weight_grad),
    "CrossEntropy.backward": (class_cases(), _cross_entropy),
    "BinaryCrossEntropy.backward": (bce_cases(), _bce),
    "BatchNormTrain.backward": (batch_norm_cases(), _batch_norm),
    "BCEWithLogits.backward": (bce_cases(), _bce_with_logits),
    "BCEWithLogits.forward": (bce_cases(), _bce_with_logits_forward),
    "Linear.backward": (linear_cases(), _linear),
    "Sigmoid.forward": (S.shapes(), _sigmoid),
    "ReLU.forward": (S.shapes(), _relu_forward),
    "ReLU.backward": (S.shapes(), _relu_backward),
    "LeakyReLU.forward": (leaky_relu_cases(), _leaky_relu_forward),
    "LeakyReLU.backward": (leaky_relu_cases(), _leaky_relu_backward),
    "SGD._update": (optimizer_cases(SGD_OPTIONS), _optimizer_case),
    "Adam._update": (optimizer_cases(ADAM_OPTIONS), _optimizer_case),
}


# kernels that apply only on backends with one of these capabilities
ONLY_WITH = {"conv.im2col_nhwc": {"cpu_blas", "strided_views"},
             "conv.weight_grad": {"cpu_blas", "strided_views"},
             "Sigmoid.forward": {"ufunc_out"}, "BCEWithLogits.forward": {"ufunc_out"},
             "LeakyReLU.forward": {"ufunc_out"}}


FLOAT32_ONLY = {"BCEWithLogits.forward"}


def test_every_kernel_has_cases():
    assert set(CASES) == set(OVERRIDES), "a kernel without equality cases, or a stale entry"


def _compare(a, b, dtype, exact):
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert (x is None) == (y is None)
            if x is not None:
                _compare(x, y, dtype, exact)
    else:
        assert_close(a, b, dtype, exact)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_equals_its_reference(name, dtype, backend_name):
    ov = OVERRIDES[name]
    cases, build = CASES[name]
    be = mg.get_backend(backend_name)
    applied = []

    @given(cases)
    def check(case):
        rng = np.random.default_rng(0)
        if name.endswith("._update"):
            options, seed = case
            ref_params, ref_state = _optimizer_run(be, dtype, options,
                                                   np.random.default_rng(seed), ov.reference)
            ker_params, ker_state = _optimizer_run(be, dtype, options,
                                                   np.random.default_rng(seed), ov.kernel)
            for p, q in zip(ref_params, ker_params):
                assert_close(q.data, p.data, dtype, exact=True)
            for sp, sq in zip(ref_state.values(), ker_state.values()):
                assert sp.keys() == sq.keys()
                for k in sp:
                    if k == "step":
                        assert sp[k] == sq[k]
                    else:
                        assert_close(sq[k], sp[k], dtype, exact=True)
            applied.append(True)
            return
        args, kwargs, exact = build(be, dtype, case, rng)
        with mg.no_grad():         # the loss kernels apply where no graph is recorded
            if not ov.when(*args, **kwargs):
                return
            applied.append(True)
            expected = ov.reference(*args, **kwargs)
            got = ov.kernel(*args, **kwargs)
        _compare(got, expected, dtype, exact)
    check()
    claims = ONLY_WITH.get(name)
    if (claims is not None and not claims & be.capabilities) or (
            name in FLOAT32_ONLY and dtype != "float32"):
        assert not applied        # a kernel that claims only some backends stays off here
    else:
        assert applied, f"{name} never applied to the drawn cases on {backend_name}"


def test_the_switch_swaps_the_functions_and_restores_them():
    with kernels.set_enabled(True):      # whatever MINIGRAD_KERNELS says
        ov = OVERRIDES["conv.im2col_nhwc"]
        assert kernels.is_enabled()
        assert conv.im2col_nhwc is ov.dispatch
        with kernels.disabled():
            assert not kernels.is_enabled()
            assert conv.im2col_nhwc is ov.reference
            assert optim.Adam._update is OVERRIDES["Adam._update"].reference
            assert "_update" not in vars(optim.AdamW)        # AdamW inherits Adam's again
        assert conv.im2col_nhwc is ov.dispatch and kernels.is_enabled()
        kernels.set_enabled(False)
        try:
            assert F.CrossEntropy.backward is OVERRIDES["CrossEntropy.backward"].reference
        finally:
            kernels.set_enabled(True)
        assert F.CrossEntropy.backward is OVERRIDES["CrossEntropy.backward"].dispatch


def test_kernels_run_in_a_real_conv_step_and_off_means_none(monkeypatch):
    calls = []
    for ov in kernels.registered():
        monkeypatch.setattr(ov, "kernel", (lambda k, q: lambda *a, **kw: (calls.append(q),
                                                                          k(*a, **kw))[1])(
            ov.kernel, ov.qualname))

    def step():
        mg.manual_seed(0)
        x = mg.randn(4, 32, 8, 8, requires_grad=True)
        w = mg.randn(16, 32, 3, 3, requires_grad=True)
        y = F.conv2d(x, w, stride=2, padding=1)
        (y * y).sum().backward()
        return x.grad.numpy(), w.grad.numpy()

    with mg.backend("numpy"), kernels.set_enabled(True):
        fast = step()
        assert {"conv.im2col_nhwc", "conv.input_grad"} <= set(calls)
        calls.clear()
        with kernels.disabled():
            slow = step()
        assert calls == []
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_an_optimizer_made_while_kernels_were_off_keeps_working_with_them_on():
    with kernels.disabled():
        p = mg.nn.Parameter(mg.ones(3))
        opt = optim.Adam([p], lr=0.1)
        (p * p).sum().backward()
        opt.step()
    q = copy.deepcopy(p)
    (p * p).sum().backward()
    opt.step()
    assert np.all(p.numpy() < q.numpy())


# ----------------------------------------------------------------------------- workspace
def test_a_workspace_array_is_handed_out_again_only_once_nothing_holds_it(monkeypatch):
    from minigrad.kernels import workspace
    monkeypatch.setattr(workspace, "MIN_BYTES", 0)
    monkeypatch.setattr(workspace, "_enabled", True)
    workspace.clear()
    be = mg.get_backend("numpy")
    a = workspace.empty(be, (3, 5), "float32")
    view = be.xp.reshape(a, (15,))
    del a
    b = workspace.empty(be, (3, 5), "float32")
    assert not np.shares_memory(view, b)       # a view still holds the first array
    del view, b
    c = workspace.empty(be, (3, 5), "float32")
    d = workspace.empty(be, (3, 5), "float32")
    assert not np.shares_memory(c, d)
    kept = [c.__array_interface__["data"][0], d.__array_interface__["data"][0]]
    del c, d
    e = workspace.empty(be, (3, 5), "float32")
    assert e.__array_interface__["data"][0] in kept   # reused once free
    workspace.clear()


def test_two_convs_of_one_shape_in_one_graph_keep_their_own_columns(monkeypatch):
    from minigrad.kernels import workspace
    monkeypatch.setattr(workspace, "MIN_BYTES", 0)
    monkeypatch.setattr(workspace, "_enabled", True)

    def grads():
        mg.manual_seed(0)
        x1 = mg.randn(2, 8, 6, 6, requires_grad=True)
        x2 = mg.randn(2, 8, 6, 6, requires_grad=True)
        w = mg.randn(4, 8, 3, 3, requires_grad=True)
        for _ in range(2):                         # the second step reuses the first's arrays
            x1.grad = x2.grad = w.grad = None
            y = F.conv2d(x1, w, padding=1) * F.conv2d(x2, w, padding=1)
            y.sum().backward()
        return x1.grad.numpy(), x2.grad.numpy(), w.grad.numpy()

    with mg.backend("numpy"), kernels.set_enabled(True):
        fast = grads()
        with kernels.disabled():
            slow = grads()
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    workspace.clear()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1.0])
def test_leaky_relu_backward_kernel_applies_to_the_usual_slopes(slope, dtype):
    """Its factor 1 - a + a must be exactly 1 for the slopes models use (else the
    reference runs, which is right but slow)."""
    be = mg.get_backend("numpy")
    x = mg.Tensor._make(be.from_numpy(np.linspace(-1, 1, 6), dtype), be, True, None)
    node = mg.ops.LeakyReLU.apply(x, negative_slope=slope)._ctx
    with mg.no_grad():
        assert OVERRIDES["LeakyReLU.backward"].when(node, mg.ones_like(x))


def test_glibc_keeps_freed_memory_unless_the_workspace_is_off(monkeypatch):
    """keep_freed_memory() sets glibc's thresholds once (mallopt accepts them: it
    returns 0 for a value it refuses), and does nothing with MINIGRAD_WORKSPACE=off."""
    import platform

    from minigrad.kernels import workspace
    monkeypatch.setattr(workspace, "_kept", [False])
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert workspace.keep_freed_memory() is (glibc and workspace._enabled)
    monkeypatch.setattr(workspace, "_kept", [False])
    monkeypatch.setattr(workspace, "_enabled", False)
    assert workspace.keep_freed_memory() is False
