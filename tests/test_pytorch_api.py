"""A PyTorch user guesses right: every reproduction of issue 15, each with PyTorch's
answer written out (checked against torch 2.13 when these tests were written), so
they run without torch. tests/test_torch_parity.py compares a table of calls with
torch itself where it is installed."""
import math
import warnings

import numpy as np  # host-side: expected values
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim


# ----------------------------------------------------------------------------- keywords
def test_dim_and_keepdim_everywhere(backend_name):
    x = mg.tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]])
    assert x.sum(dim=1).tolist() == [9.0, 12.0]
    assert x.mean(dim=0, keepdim=True).shape == (1, 3)
    np.testing.assert_allclose(F.softmax(x, dim=-1).sum(dim=-1).numpy(), [1, 1], rtol=1e-6)
    assert mg.amax(x, dim=(0, 1)).item() == 6.0
    assert x.argmax(dim=1, keepdim=True).tolist() == [[1], [2]]
    assert x.logsumexp(dim=1).shape == (2,)
    assert x.var(dim=1, keepdim=True).shape == (2, 1)
    assert mg.cat([x, x], dim=1).shape == (2, 6)
    assert mg.stack([x, x], dim=2).shape == (2, 3, 2)
    assert [p.shape for p in x.split(2, dim=1)] == [(2, 2), (2, 1)]
    assert [p.shape for p in x.chunk(3, dim=1)] == [(2, 1)] * 3
    assert x.unsqueeze(dim=0).squeeze(dim=0).shape == (2, 3)
    assert x.any(dim=1).tolist() == [True, True] and (x > 4).all(dim=0).tolist() == [False,
                                                                                    False, False]
    # NumPy's spellings stay as aliases; both at once is an error naming them
    assert x.sum(axis=1, keepdims=True).shape == (2, 1)
    with pytest.raises(TypeError, match="both dim=.* and axis="):
        x.sum(dim=0, axis=1)
    with pytest.raises(TypeError, match="both keepdim= and keepdims="):
        x.mean(0, keepdim=True, keepdims=True)


def test_var_and_std_default_to_correction_1(backend_name):
    x = mg.tensor([1.0, 2.0, 3.0, 4.0])
    assert x.var().item() == pytest.approx(5 / 3)
    assert x.std().item() == pytest.approx(math.sqrt(5 / 3))
    assert x.var(unbiased=False).item() == pytest.approx(1.25)
    assert x.var(correction=0).item() == pytest.approx(1.25)
    assert mg.var(x, True).item() == pytest.approx(5 / 3)       # var(input, unbiased)
    with pytest.raises(TypeError, match="unbiased= and correction="):
        x.var(unbiased=True, correction=1)


def test_max_min_return_values_and_indices(backend_name):
    x = mg.tensor([[1.0, 5.0], [4.0, 2.0]])
    values, indices = mg.max(x, 1)
    assert values.tolist() == [5.0, 4.0] and indices.tolist() == [1, 0]
    r = x.min(dim=0, keepdim=True)
    assert r.values.tolist() == [[1.0, 2.0]] and r.indices.tolist() == [[0, 1]]
    assert mg.max(x).item() == 5.0
    # mg.max(a, b) and mg.min(a, b) are maximum/minimum, not a reduction over axis b
    b = mg.tensor([[2.0, 2.0], [2.0, 2.0]])
    assert mg.max(x, b).tolist() == [[2.0, 5.0], [4.0, 2.0]]
    assert mg.min(x, b).tolist() == [[1.0, 2.0], [2.0, 2.0]]


def test_softplus_threshold_is_used(backend_name):
    y = F.softplus(mg.tensor([0.01, 0.1, 1.0]), beta=3, threshold=0.2)
    np.testing.assert_allclose(y.numpy(), [0.2361, 0.1, 1.0], atol=1e-4)     # torch's values


# ----------------------------------------------------------------------------- sigmoid
def test_float32_sigmoid_is_accurate_in_the_tail(backend_name):
    x = mg.tensor([-15.0, -20.0, -80.0, 15.0])
    y = mg.sigmoid(x).numpy()
    exact = 1 / (1 + np.exp(-np.array([-15.0, -20.0, -80.0, 15.0])))
    np.testing.assert_allclose(y, exact, rtol=1e-6)      # float32, not 2.6% off at -15
    assert y[2] > 0


def test_bce_of_sigmoid_keeps_the_generator_gradient(backend_name):
    """nn.Sigmoid + nn.BCELoss, the DCGAN example's pattern, at a confident D."""
    x = mg.tensor(-20.0, requires_grad=True)
    loss = F.binary_cross_entropy(mg.sigmoid(x), mg.tensor(1.0))
    loss.backward()
    assert loss.item() == pytest.approx(20.0, rel=1e-5)
    assert x.grad.item() == pytest.approx(-1.0, rel=1e-5)
    assert F.logsigmoid(mg.tensor(-100.0)).item() == pytest.approx(-100.0)


# ----------------------------------------------------------------------------- promotion
@pytest.mark.parametrize("make, expected", [
    (lambda: mg.exp(mg.tensor([1, 2])), "float32"),
    (lambda: mg.log(mg.tensor([1, 2])), "float32"),
    (lambda: mg.sin(mg.tensor([1, 2])), "float32"),
    (lambda: mg.cos(mg.tensor([1, 2])), "float32"),
    (lambda: mg.tanh(mg.tensor([1, 2])), "float32"),
    (lambda: mg.sqrt(mg.tensor([1, 2])), "float32"),
    (lambda: mg.sigmoid(mg.tensor([1, 2])), "float32"),
    (lambda: mg.logsumexp(mg.tensor([1, 2]), 0), "float32"),
    (lambda: F.avg_pool2d(mg.arange(16).reshape(1, 1, 4, 4), 2), "int64"),
    (lambda: mg.tensor([1.0, 2.0]) + mg.tensor(2.0, dtype="float64"), "float32"),
    (lambda: mg.tensor([1, 2]) + mg.tensor(2.5, dtype="float64"), "float64"),
    (lambda: mg.tensor([True, False]) / 2, "float32"),
    (lambda: mg.tensor([True, False]) + 2, "int64"),
    (lambda: mg.tensor([1, 2]) ** 2.0, "float32"),
    (lambda: mg.tensor([1, 2]) ** 2, "int64"),
    (lambda: mg.tensor([1, 2], dtype="int32") + 2, "int32"),
    (lambda: mg.tensor([1, 2], dtype="int32") + 2.5, "float32"),
    (lambda: mg.tensor([1, 2], dtype="uint8") + mg.tensor([1], dtype="int8"), "int16"),
    (lambda: mg.tensor([1, 2]) / mg.tensor([2, 4]), "float32"),
    (lambda: mg.tensor([True]).sum(), "int64"),
])
def test_type_promotion_is_pytorchs(backend_name, make, expected):
    assert make().dtype == expected


def test_promotion_values_and_gradients(backend_name):
    assert (mg.tensor([True, False]) / 2).tolist() == [0.5, 0.0]
    assert (mg.tensor([True, False]) + 2).tolist() == [3, 2]
    assert F.avg_pool2d(mg.arange(16).reshape(1, 1, 4, 4), 2).tolist() == [[[[2, 4],
                                                                            [10, 12]]]]
    # a float64 0-d tensor that requires grad, added to a float32 tensor: float32 out,
    # and the gradient comes back in float64
    s = mg.tensor(2.0, dtype="float64", requires_grad=True)
    y = mg.tensor([1.0, 2.0]) * s
    assert y.dtype == mg.float32
    y.sum().backward()
    assert s.grad.dtype == mg.float64 and s.grad.item() == 3.0


def test_arange_with_an_integer_dtype_truncates_first(backend_name):
    assert mg.arange(3.1, dtype="int64").tolist() == [0, 1, 2]
    assert mg.arange(0.5, 3.9, dtype="int64").tolist() == [0, 1, 2]
    assert mg.arange(0, 1, 0.25).tolist() == [0.0, 0.25, 0.5, 0.75]


# ----------------------------------------------------------------------------- shapes, non-finite
def test_unbatched_class_losses_with_reduction_none_are_0d(backend_name):
    x = mg.tensor([-1.0, -2.0, -0.5])
    assert F.nll_loss(x, mg.tensor(1), reduction="none").shape == ()
    assert F.cross_entropy(x, mg.tensor(1), reduction="none").shape == ()


def test_cross_entropy_with_every_target_ignored(backend_name):
    logits = mg.tensor([[1.0, 2.0], [0.5, 0.0]], requires_grad=True)
    loss = F.cross_entropy(logits, mg.tensor([-100, -100]))
    loss.backward()
    assert math.isnan(loss.item())                        # PyTorch: nan ...
    assert logits.grad.tolist() == [[0.0, 0.0], [0.0, 0.0]]   # ... with a zero gradient


def test_cross_entropy_with_minus_infinite_logits(backend_name):
    x = mg.tensor([[-math.inf, 0.0, 1.0]], requires_grad=True)
    loss = F.cross_entropy(x, mg.tensor([1]))
    assert loss.item() == pytest.approx(math.log(1 + math.e))       # 1.3133, as torch
    loss.backward()
    g = x.grad.numpy()
    assert np.all(np.isfinite(g)) and g[0, 0] == 0.0
    assert F.nll_loss(F.log_softmax(x.detach(), dim=1), mg.tensor([2])).item() == \
        pytest.approx(math.log(1 + 1 / math.e), rel=1e-6)


def test_non_finite_values_as_pytorch(backend_name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)        # NumPy's log(0) warning
        assert mg.logsumexp(mg.tensor([-math.inf, -math.inf]), 0).item() == -math.inf
    assert math.isnan(mg.relu(mg.tensor(math.nan)).item())
    assert math.isnan(mg.maximum(mg.tensor([math.nan]), mg.tensor([1.0])).item())
    x = mg.tensor([0.0], requires_grad=True)
    (x ** 0).sum().backward()
    assert x.grad.tolist() == [0.0]
    c = mg.ones(3, requires_grad=True)
    c.std().backward()
    assert c.grad.tolist() == [0.0, 0.0, 0.0]
    z = mg.zeros(3, requires_grad=True)
    z.norm().backward()
    assert z.grad.tolist() == [0.0, 0.0, 0.0]


def test_maximum_and_minimum_split_the_gradient_at_ties(backend_name):
    a = mg.tensor([1.0, 2.0], requires_grad=True)
    b = mg.tensor([1.0, 3.0], requires_grad=True)
    mg.maximum(a, b).sum().backward()
    assert a.grad.tolist() == [0.5, 0.0] and b.grad.tolist() == [0.5, 1.0]
    a.grad = b.grad = None
    mg.minimum(a, b).sum().backward()
    assert a.grad.tolist() == [0.5, 1.0] and b.grad.tolist() == [0.5, 0.0]


# ----------------------------------------------------------------------------- version counters
def test_an_optimizer_step_between_forward_and_backward_raises(backend_name):
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    loss = (model(mg.randn(4, 3)) ** 2).sum()
    for p in model.parameters():
        p.grad = mg.ones(p.shape)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation.*version"):
        loss.backward()


def test_in_place_ops_count_versions_and_guard_the_graph(backend_name):
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    with mg.no_grad():
        x.add_(1.0)
    assert x._version == 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    # an op that saved only shapes is not affected, as in PyTorch
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    s = w + 1.0
    with mg.no_grad():
        w.mul_(3.0)
    s.sum().backward()
    assert w.grad.tolist() == [1.0, 1.0]
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w.add_(1.0)
    t = mg.zeros(3)
    t.copy_(mg.tensor([1.0, 2.0, 3.0])).add_(1.0, alpha=2).clamp_(max=4.0)
    assert t.tolist() == [3.0, 4.0, 4.0] and t._version == 3
    assert t.zero_().tolist() == [0.0, 0.0, 0.0]
    # .data is the escape hatch: writing it changes nothing that is counted
    v = mg.tensor([1.0], requires_grad=True)
    out = v * v
    v.data[...] = 5.0
    out.backward()
    assert v._version == 0


# ----------------------------------------------------------------------------- clear errors
def test_clamp_with_tensor_bounds(backend_name):
    x = mg.tensor([1.0, 5.0, 2.5], requires_grad=True)
    lo = mg.tensor([2.0, 2.0, 2.0], requires_grad=True)
    hi = mg.tensor([3.0, 3.0, 3.0], requires_grad=True)
    y = mg.clamp(x, min=lo, max=hi)
    assert y.tolist() == [2.0, 3.0, 2.5]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 1.0]
    assert lo.grad.tolist() == [1.0, 0.0, 0.0] and hi.grad.tolist() == [0.0, 1.0, 0.0]
    assert mg.clip(mg.tensor([0.0]), min=mg.tensor([2.0]), max=mg.tensor([1.0])).tolist() == [1.0]
    assert x.clamp_min(2.0).tolist() == [2.0, 5.0, 2.5]


def test_dim_0_on_a_0d_tensor(backend_name):
    x = mg.tensor(3.0, requires_grad=True)
    assert x.sum(dim=0).item() == 3.0 and x.sum(dim=-1).shape == ()
    assert x.amax(dim=0).item() == 3.0 and x.mean(dim=0).item() == 3.0
    values, indices = x.max(dim=0)
    assert values.item() == 3.0 and indices.item() == 0
    assert F.softmax(x, dim=0).item() == 1.0 and x.logsumexp(dim=0).item() == 3.0
    assert x.squeeze(0).shape == () and x.transpose(0, 0).shape == ()
    with pytest.raises(IndexError, match="dim 1 is out of range for a tensor with 0 dim"):
        x.sum(dim=1)


def test_empty_reductions_and_degrees_of_freedom(backend_name):
    e = mg.zeros(0)
    assert math.isnan(e.mean().item()) and math.isnan(e.var().item())
    assert math.isnan(mg.tensor([1.0]).var().item())           # 0 / 0, as torch


def test_randint_float_dtype_and_two_spellings(backend_name):
    r = mg.randint(0, 10, (4,), dtype="float32")
    assert r.dtype == mg.float32 and all(float(v).is_integer() for v in r.tolist())
    assert mg.randint(5, (3,)).shape == (3,) and max(mg.randint(5, (50,)).tolist()) < 5


def test_sgd_with_a_tensor_lr_keeps_numbers(backend_name):
    p = nn.Parameter(mg.tensor([1.0, 2.0]))
    opt = optim.SGD([p], lr=mg.tensor(0.5))
    for _ in range(2):
        p.grad = mg.ones(2)
        opt.step()
    assert isinstance(p, mg.Tensor) and p.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="one-element tensor"):
        optim.SGD([p], lr=mg.ones(2))


def test_load_state_dict_validates_before_it_changes_anything(backend_name):
    class HostArray:                         # stands in for a torch.Tensor: __array__ only
        def __init__(self, a):
            self.a, self.shape, self.dtype = np.asarray(a), np.asarray(a).shape, "float32"

        def __array__(self, dtype=None, copy=None):
            return self.a

    model = nn.Linear(3, 2)
    before = [p.numpy().copy() for p in model.parameters()]
    bad = {"weight": HostArray(np.ones((2, 3))), "bias": HostArray(np.array(["a", "b"]))}
    with pytest.raises(nn.StateDictError, match="bias"):
        model.load_state_dict(bad)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.numpy(), b)          # the weight was not touched
    model.load_state_dict({"weight": HostArray(np.ones((2, 3))),
                           "bias": HostArray(np.zeros(2))})
    assert model.weight.tolist() == [[1.0] * 3] * 2 and model.weight.dtype == mg.float32


def test_set_grad_enabled_as_a_call(backend_name):
    try:
        mg.set_grad_enabled(False)
        assert not mg.is_grad_enabled()
        assert not (mg.ones(1, requires_grad=True) * 2).requires_grad
    finally:
        mg.set_grad_enabled(True)
    assert mg.is_grad_enabled()
    with mg.set_grad_enabled(False):
        assert not mg.is_grad_enabled()
    assert mg.is_grad_enabled()


# ----------------------------------------------------------------------------- the ops reached for first
def test_everyday_ops_exist_with_pytorchs_spelling(backend_name):
    x = mg.tensor([[1.0, -2.0], [3.0, 0.5]])
    assert x.clone().tolist() == x.tolist()
    assert x.mm(x).shape == (2, 2) and mg.bmm(x[None], x[None]).shape == (1, 2, 2)
    assert x.square().tolist() == [[1.0, 4.0], [9.0, 0.25]]
    assert x.abs().rsqrt().tolist()[0][0] == 1.0 and x.reciprocal().tolist()[1][1] == 2.0
    assert x.abs().log1p().shape == x.expm1().shape == (2, 2)
    assert x.cumsum(1).tolist() == [[1.0, -1.0], [3.0, 3.5]] and x.prod().item() == -3.0
    assert x.norm().item() == pytest.approx(math.sqrt(14.25))
    assert x.gather(1, mg.tensor([[1], [0]])).tolist() == [[-2.0], [3.0]]
    assert x.index_select(0, mg.tensor([1, 1])).tolist() == [[3.0, 0.5]] * 2
    assert x.masked_fill(x < 0, 0.0).tolist() == [[1.0, 0.0], [3.0, 0.5]]
    assert x.repeat(1, 2).shape == (2, 4) and x.flip(0).tolist()[0] == [3.0, 0.5]
    assert x.tril().tolist() == [[1.0, 0.0], [3.0, 0.5]]
    assert x.triu(1).tolist() == [[0.0, -2.0], [0.0, 0.0]]
    assert mg.erf(mg.tensor(0.5)).item() == pytest.approx(math.erf(0.5), rel=1e-6)
    assert x.sign().tolist() == [[1.0, -1.0], [1.0, 1.0]]
    assert mg.tensor([0.5, 1.5, -1.7]).round().tolist() == [0.0, 2.0, -2.0]
    assert mg.tensor([-1.7]).floor().tolist() == [-2.0]
    assert mg.tensor([math.nan, 1.0]).isnan().tolist() == [True, False]
    assert mg.tensor([math.inf, 1.0]).isfinite().tolist() == [False, True]
    assert mg.ones(1, 2).expand_as(x).shape == (2, 2) and mg.ones(4).view_as(x).shape == (2, 2)
    assert F.gelu(mg.tensor(1.0)).item() == pytest.approx(0.8413447, rel=1e-6)
    assert F.silu(mg.tensor(1.0)).item() == pytest.approx(1 / (1 + math.exp(-1)), rel=1e-6)
    assert F.hardtanh(mg.tensor([-3.0, 0.5])).tolist() == [-1.0, 0.5]
    np.testing.assert_allclose(F.normalize(mg.tensor([[3.0, 4.0]])).numpy(), [[0.6, 0.8]],
                               rtol=1e-6)
    assert F.cosine_similarity(mg.tensor([[1.0, 0.0]]), mg.tensor([[1.0, 1.0]])).item() == \
        pytest.approx(1 / math.sqrt(2), rel=1e-6)
    for name in ("kl_div", "smooth_l1_loss", "huber_loss", "group_norm"):
        assert callable(getattr(F, name))
    assert isinstance(optim.RMSprop([nn.Parameter(mg.ones(1))]), optim.Optimizer)
    assert isinstance(optim.Adadelta([nn.Parameter(mg.ones(1))]), optim.Optimizer)


def test_pooling_padding_and_interpolation_arguments(backend_name):
    x = mg.arange(16.0).reshape(1, 1, 4, 4)
    y, idx = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, return_indices=True)
    assert y.shape == (1, 1, 3, 3)                     # torch's values, ceil_mode's extra row
    assert idx.tolist() == [[[[5, 7, 7], [13, 15, 15], [13, 15, 15]]]]
    assert F.max_pool2d(x, 2, dilation=2, stride=1).tolist() == [[[[10.0, 11.0], [14.0, 15.0]]]]
    a = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    assert a.tolist()[0][0][0][0] == pytest.approx((0 + 1 + 4 + 5) / 4)
    assert F.avg_pool2d(x, 2, divisor_override=1).tolist()[0][0][0][0] == 10.0
    r = F.pad(mg.tensor([[[1.0, 2.0, 3.0]]]), (2, 1), mode="reflect")
    assert r.tolist() == [[[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]]]
    assert F.pad(mg.tensor([[[1.0, 2.0]]]), (1, 1), mode="replicate").tolist() == \
        [[[1.0, 1.0, 2.0, 2.0]]]
    assert F.pad(mg.tensor([[[1.0, 2.0]]]), (1, 1), mode="circular").tolist() == \
        [[[2.0, 1.0, 2.0, 1.0]]]
    b = F.interpolate(mg.tensor([[[[0.0, 1.0]]]]), scale_factor=2, mode="bilinear")
    np.testing.assert_allclose(b.numpy(), [[[[0.0, 0.25, 0.75, 1.0]] * 2]])
    c = F.interpolate(mg.tensor([[[[0.0, 1.0]]]]), size=(1, 3), mode="bilinear",
                      align_corners=True)
    np.testing.assert_allclose(c.numpy(), [[[[0.0, 0.5, 1.0]]]])
    conv = nn.Conv2d(2, 3, 4, padding="same")
    assert conv(mg.randn(1, 2, 7, 5)).shape == (1, 3, 7, 5)
    bn = nn.BatchNorm2d(2, affine=False)
    assert bn(mg.randn(4, 2, 3, 3)).shape == (4, 2, 3, 3) and bn.weight is None
