"""minigrad.functional: layers and losses against their defining NumPy expressions,
gradient checks in float64 (first and second order), and PyTorch's edge cases."""
import numpy as np  # host-side: reference values
import pytest

import minigrad as mg
import minigrad.functional as F

RNG = np.random.default_rng(1234)


def t(a, requires_grad=False, dtype=None):
    """A tensor on the current backend from a host array (float64 unless dtype)."""
    a = np.asarray(a)
    if dtype is None and a.dtype.kind == "f":
        dtype = "float64"
    return mg.tensor(a, requires_grad=requires_grad, dtype=dtype)


def randn(*shape):
    return RNG.standard_normal(shape)


def np_log_softmax(x, axis=1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def reduce_np(loss, reduction):
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


REDUCTIONS = ["mean", "sum", "none"]


# ----------------------------------------------------------------------------- linear
@pytest.mark.parametrize("xshape", [(5, 3), (2, 4, 3), (3,), (1, 3)])
def test_linear_matches_numpy_and_gradchecks(backend_name, xshape):
    x, w, b = randn(*xshape), randn(4, 3), randn(4)
    y = F.linear(t(x), t(w), t(b))
    np.testing.assert_allclose(y.numpy(), x @ w.T + b, rtol=1e-12)
    np.testing.assert_allclose(F.linear(t(x), t(w)).numpy(), x @ w.T, rtol=1e-12)
    xs, ws, bs = t(x, True), t(w, True), t(b, True)
    assert mg.gradcheck(lambda x, w, b: F.linear(x, w, b), (xs, ws, bs))
    assert mg.gradcheck(lambda x, w: F.linear(x, w), (xs, ws))
    assert mg.gradgradcheck(lambda x, w, b: F.linear(x, w, b).tanh(), (xs, ws, bs))


def test_linear_noncontiguous_input(backend_name):
    x = randn(3, 6)
    xt = t(x, True)[:, ::2]          # a strided view as input
    w, b = t(randn(4, 3), True), t(randn(4), True)
    np.testing.assert_allclose(F.linear(xt, w, b).numpy(), x[:, ::2] @ w.numpy().T + b.numpy(),
                               rtol=1e-12)
    assert mg.gradcheck(lambda x, w, b: F.linear(x[:, ::2], w, b), (t(x, True), w, b))


def test_linear_shape_errors(backend_name):
    with pytest.raises(ValueError, match=r"input of shape \(2, 5\).*weight of shape \(4, 3\)"):
        F.linear(t(randn(2, 5)), t(randn(4, 3)))
    with pytest.raises(ValueError, match="bias of shape"):
        F.linear(t(randn(2, 3)), t(randn(4, 3)), t(randn(3)))


# ----------------------------------------------------------------------------- dropout
def test_dropout_scaling_and_fraction(backend_name):
    mg.manual_seed(3)
    x = mg.ones(200, 500)
    p = 0.3
    y = F.dropout(x, p, training=True).numpy()
    zero = (y == 0).mean()
    assert abs(zero - p) < 0.01                      # 100k Bernoulli draws: sd 0.0015
    np.testing.assert_allclose(y[y != 0], 1 / (1 - p), rtol=1e-6)
    assert abs(y.mean() - 1.0) < 0.02                # the mean is preserved


def test_dropout_eval_identity_and_edges(backend_name):
    x = t(randn(4, 5), True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0, training=True) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0, training=True).numpy(), 0.0)
    with pytest.raises(ValueError, match="p must be in"):
        F.dropout(x, 1.5)


def test_dropout_gradient_is_the_mask(backend_name):
    mg.manual_seed(0)
    x = t(randn(50, 40), True)
    y = F.dropout(x, 0.4, training=True)
    g = randn(50, 40)
    y.backward(t(g))
    kept = y.numpy() != 0
    np.testing.assert_allclose(x.grad.numpy(), np.where(kept, g / 0.6, 0.0), rtol=1e-12)


# ----------------------------------------------------------------------------- batch norm
def np_batch_norm(x, w, b, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w.reshape(shape) + b.reshape(shape)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 2, 4, 5)])
def test_batch_norm_training_matches_numpy(backend_name, shape):
    x, w, b = randn(*shape) * 2 + 1, randn(shape[1]), randn(shape[1])
    rm, rv = t(np.zeros(shape[1])), t(np.ones(shape[1]))
    y = F.batch_norm(t(x), rm, rv, t(w), t(b), training=True, momentum=0.2, eps=1e-5)
    np.testing.assert_allclose(y.numpy(), np_batch_norm(x, w, b, 1e-5), rtol=1e-10, atol=1e-12)
    axes = (0,) + tuple(range(2, x.ndim))
    n = x.size // shape[1]
    np.testing.assert_allclose(rm.numpy(), 0.2 * x.mean(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), 0.8 + 0.2 * x.var(axis=axes) * n / (n - 1),
                               rtol=1e-12)


def test_batch_norm_eval_uses_running_stats(backend_name):
    x, w, b = randn(5, 3, 2, 2), randn(3), randn(3)
    rm, rv = randn(3), np.abs(randn(3)) + 0.5
    y = F.batch_norm(t(x), t(rm), t(rv), t(w), t(b), training=False, eps=1e-3)
    s = (1, 3, 1, 1)
    ref = (x - rm.reshape(s)) / np.sqrt(rv.reshape(s) + 1e-3) * w.reshape(s) + b.reshape(s)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12)
    xs, ws, bs = t(x, True), t(w, True), t(b, True)
    assert mg.gradcheck(lambda x, w, b: F.batch_norm(x, t(rm), t(rv), w, b), (xs, ws, bs))


@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 3, 2)])
def test_batch_norm_training_gradcheck(backend_name, shape):
    x, w, b = t(randn(*shape), True), t(randn(shape[1]), True), t(randn(shape[1]), True)
    fn = lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True)  # noqa: E731
    assert mg.gradcheck(fn, (x, w, b))
    assert mg.gradgradcheck(fn, (x, w, b))
    assert mg.gradcheck(lambda x: F.batch_norm(x, None, None, training=True), (x,))
    # a non-contiguous input: the channel axis swapped in from the last position
    xt = t(np.moveaxis(randn(*shape), 1, -1), True)
    assert mg.gradcheck(lambda x, w: F.batch_norm(mg.transpose(x, 1, -1) if x.ndim > 2 else x,
                                                  None, None, w, training=True), (xt, w))


def test_batch_norm_errors(backend_name):
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(t(randn(1, 3)), None, None, training=True)
    with pytest.raises(ValueError, match=r"weight has shape \(4,\), expected \(3,\)"):
        F.batch_norm(t(randn(4, 3)), None, None, t(randn(4)), training=True)


# ----------------------------------------------------------------------------- embedding
def test_embedding_forward_and_repeated_index_gradient(backend_name):
    w = randn(6, 3)
    idx = np.array([[0, 2, 2], [5, 0, 2]])
    y = F.embedding(t(idx), t(w))
    np.testing.assert_allclose(y.numpy(), w[idx], rtol=0)
    wt = t(w, True)
    g = randn(2, 3, 3)
    F.embedding(t(idx), wt).backward(t(g))
    ref = np.zeros_like(w)
    np.add.at(ref, idx, g)
    np.testing.assert_allclose(wt.grad.numpy(), ref, rtol=1e-12)
    assert mg.gradcheck(lambda w: F.embedding(t(idx), w), (t(w, True),))


def test_embedding_padding_idx_gets_no_gradient(backend_name):
    w = t(randn(4, 2), True)
    idx = t(np.array([1, 3, 1, 0]))
    out = F.embedding(idx, w, padding_idx=1)
    np.testing.assert_allclose(out.numpy(), w.numpy()[[1, 3, 1, 0]])
    out.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), [[1, 1], [0, 0], [0, 0], [1, 1]])


def test_one_hot(backend_name):
    y = F.one_hot(t(np.array([[0, 3], [2, 1]])), 4)
    assert y.dtype == mg.int64 and y.shape == (2, 2, 4)
    np.testing.assert_array_equal(y.numpy(), np.eye(4, dtype=np.int64)[[[0, 3], [2, 1]]])
    assert F.one_hot(t(np.array([0, 2]))).shape == (2, 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        F.one_hot(t(np.array([0, 3])), 3)


# ----------------------------------------------------------------------------- regression losses
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_and_l1_match_numpy(backend_name, reduction):
    x, y = randn(4, 5), randn(4, 5)
    np.testing.assert_allclose(F.mse_loss(t(x), t(y), reduction=reduction).numpy(),
                               reduce_np((x - y) ** 2, reduction), rtol=1e-12)
    np.testing.assert_allclose(F.l1_loss(t(x), t(y), reduction=reduction).numpy(),
                               reduce_np(np.abs(x - y), reduction), rtol=1e-12)
    xs, ys = t(x, True), t(y, True)
    assert mg.gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), (xs, ys))
    assert mg.gradcheck(lambda a, b: F.l1_loss(a, b, reduction=reduction), (xs, ys))


def test_loss_argument_errors(backend_name):
    with pytest.raises(ValueError, match=r"target shape \(4, 1\) differs from input shape \(4,\)"):
        F.mse_loss(t(randn(4)), t(randn(4, 1)))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.l1_loss(t(randn(4)), t(randn(4)), reduction="avg")
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(t(randn(4, 3)), t(np.array([0, 1, 2, 0])), reduction="batchmean")


# ----------------------------------------------------------------------------- binary losses
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy_matches_numpy(backend_name, reduction):
    p = RNG.uniform(0.05, 0.95, (3, 4))
    y = RNG.uniform(0, 1, (3, 4))
    w = RNG.uniform(0.5, 2, (3, 4))
    ref = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    np.testing.assert_allclose(F.binary_cross_entropy(t(p), t(y), reduction=reduction).numpy(),
                               reduce_np(ref, reduction), rtol=1e-12)
    np.testing.assert_allclose(
        F.binary_cross_entropy(t(p), t(y), weight=t(w), reduction=reduction).numpy(),
        reduce_np(ref * w, reduction), rtol=1e-12)
    ps, ys = t(p, True), t(y, True)
    assert mg.gradcheck(lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction), (ps, ys))
    assert mg.gradgradcheck(lambda a, b: F.binary_cross_entropy(a, b, reduction=reduction),
                            (ps, ys))


def test_binary_cross_entropy_clamps_log_at_minus_100(backend_name):
    p = t(np.array([0.0, 1.0, 0.0, 1.0]), True)
    y = t(np.array([1.0, 0.0, 0.0, 1.0]))
    loss = F.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_allclose(loss.numpy(), [100.0, 100.0, 0.0, 0.0])
    loss.sum().backward()
    g = p.grad.numpy()
    assert np.all(np.isfinite(g))
    # PyTorch's gradient: (x - t) / max(x (1 - x), 1e-12)
    np.testing.assert_allclose(g, [-1e12, 1e12, 0.0, 0.0])
    with pytest.raises(ValueError, match="probabilities in"):
        F.binary_cross_entropy(t(np.array([1.5])), t(np.array([1.0])))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_matches_numpy(backend_name, reduction):
    x, y = randn(3, 4) * 3, RNG.uniform(0, 1, (3, 4))
    sig = 1 / (1 + np.exp(-x))
    ref = -(y * np.log(sig) + (1 - y) * np.log(1 - sig))
    got = F.binary_cross_entropy_with_logits(t(x), t(y), reduction=reduction).numpy()
    np.testing.assert_allclose(got, reduce_np(ref, reduction), rtol=1e-10)
    xs, ys = t(x, True), t(y, True)
    fn = lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction)  # noqa
    assert mg.gradcheck(fn, (xs, ys))
    assert mg.gradgradcheck(fn, (xs, ys))


def test_bce_with_logits_pos_weight_and_weight(backend_name):
    x, y = randn(5, 3) * 2, RNG.integers(0, 2, (5, 3)).astype(float)
    pw, w = np.array([1.0, 2.5, 0.3]), RNG.uniform(0.5, 2, (5, 3))
    sig = 1 / (1 + np.exp(-x))
    ref = -(pw * y * np.log(sig) + (1 - y) * np.log(1 - sig)) * w
    got = F.binary_cross_entropy_with_logits(t(x), t(y), weight=t(w), pos_weight=t(pw),
                                             reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)
    assert mg.gradcheck(lambda a: F.binary_cross_entropy_with_logits(a, t(y), pos_weight=t(pw)),
                        (t(x, True),))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_with_logits_is_exact_for_huge_logits(backend_name, dtype):
    x = t(np.array([1e4, -1e4, 1e4, -1e4, 50.0]), True, dtype=dtype)
    y = t(np.array([1.0, 0.0, 0.0, 1.0, 1.0]), dtype=dtype)
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_array_equal(loss.numpy()[:4], [0.0, 0.0, 1e4, 1e4])
    assert np.isfinite(loss.numpy()).all() and 0 < loss.numpy()[4] < 1e-20
    loss.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[:4], [0.0, 0.0, 1.0, -1.0])


# ----------------------------------------------------------------------------- class losses
def np_nll(logp, y, w=None, ignore_index=-100):
    """Per-example -w_y logp[y] over (N, C, ...) and the weights w_y (0 where ignored)."""
    c = logp.shape[1]
    w = np.ones(c) if w is None else w
    lp = np.moveaxis(logp, 1, -1).reshape(-1, c)
    yy = y.reshape(-1)
    valid = yy != ignore_index
    safe = np.where(valid, yy, 0)
    picked = lp[np.arange(len(yy)), safe]
    wy = np.where(valid, w[safe], 0.0)
    return (-wy * picked).reshape(y.shape), wy.reshape(y.shape)


def reduce_weighted(loss, wy, reduction):
    return {"mean": loss.sum() / wy.sum(), "sum": loss.sum(), "none": loss}[reduction]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_and_nll_match_numpy(backend_name, reduction, weighted):
    x, y = randn(6, 4) * 3, RNG.integers(0, 4, 6)
    w = RNG.uniform(0.5, 2, 4) if weighted else None
    wt = t(w) if weighted else None
    loss, wy = np_nll(np_log_softmax(x), y, w)
    ref = reduce_weighted(loss, wy, reduction)
    np.testing.assert_allclose(F.cross_entropy(t(x), t(y), weight=wt, reduction=reduction)
                               .numpy(), ref, rtol=1e-10)
    lp = np_log_softmax(x)
    np.testing.assert_allclose(F.nll_loss(t(lp), t(y), weight=wt, reduction=reduction).numpy(),
                               ref, rtol=1e-10)
    xs = t(x, True)
    assert mg.gradcheck(lambda a: F.cross_entropy(a, t(y), weight=wt, reduction=reduction), (xs,))
    assert mg.gradgradcheck(lambda a: F.cross_entropy(a, t(y), weight=wt, reduction=reduction),
                            (xs,))
    assert mg.gradcheck(lambda a: F.nll_loss(a, t(y), weight=wt, reduction=reduction), (xs,))


def test_cross_entropy_spatial_and_ignore_index(backend_name):
    x = randn(2, 3, 4, 5)
    y = RNG.integers(0, 3, (2, 4, 5))
    y[0, 1, :] = 1
    loss, wy = np_nll(np_log_softmax(x), np.where(y == 1, -7, y), None, ignore_index=-7)
    got = F.cross_entropy(t(x), t(np.where(y == 1, -7, y)), ignore_index=-7)
    np.testing.assert_allclose(got.numpy(), loss.sum() / wy.sum(), rtol=1e-10)
    # an ignore_index that is a real class
    loss, wy = np_nll(np_log_softmax(x), y, None, ignore_index=1)
    got = F.cross_entropy(t(x), t(y), ignore_index=1, reduction="none")
    np.testing.assert_allclose(got.numpy(), loss, rtol=1e-10)
    assert np.all(got.numpy()[y == 1] == 0)
    assert mg.gradcheck(lambda a: F.cross_entropy(a, t(y), ignore_index=1), (t(x, True),))


def test_cross_entropy_is_stable_for_huge_logits(backend_name):
    x = t(np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]]), True, dtype="float32")
    loss = F.cross_entropy(x, t(np.array([0, 1])), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [0.0, 2e4])
    loss.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0, 0], [0, -1, 1]], atol=1e-6)


def test_cross_entropy_probability_targets_and_label_smoothing(backend_name):
    x = randn(5, 4)
    p = RNG.dirichlet(np.ones(4), 5)
    lp = np_log_softmax(x)
    np.testing.assert_allclose(F.cross_entropy(t(x), t(p)).numpy(), -(p * lp).sum(1).mean(),
                               rtol=1e-10)
    y = RNG.integers(0, 4, 5)
    eps = 0.2
    smooth = (1 - eps) * np.eye(4)[y] + eps / 4
    np.testing.assert_allclose(F.cross_entropy(t(x), t(y), label_smoothing=eps).numpy(),
                               -(smooth * lp).sum(1).mean(), rtol=1e-10)
    assert mg.gradcheck(lambda a: F.cross_entropy(a, t(y), label_smoothing=eps), (t(x, True),))


def test_class_loss_errors(backend_name):
    x = t(randn(4, 3))
    with pytest.raises(ValueError, match=r"target values must be in \[0, 3\)"):
        F.cross_entropy(x, t(np.array([0, 1, 3, 0])))
    with pytest.raises(ValueError, match=r"target of shape \(3,\) does not fit input"):
        F.cross_entropy(x, t(np.array([0, 1, 2])))
    with pytest.raises(TypeError, match="integer class indices"):
        F.nll_loss(x, t(np.array([0.0, 1.0, 2.0, 0.0])))


def test_losses_keep_float32(backend_name):
    x = mg.randn(8, 5)
    y = mg.randint(0, 5, (8,))
    assert F.cross_entropy(x, y).dtype == mg.float32
    assert F.binary_cross_entropy_with_logits(x, mg.rand(8, 5)).dtype == mg.float32
    assert F.mse_loss(x, x * 0.5).dtype == mg.float32


# ----------------------------------------------------------------------------- optional oracle
def test_losses_against_torch_if_available():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x, y = randn(6, 4) * 3, RNG.integers(0, 4, 6)
    w = RNG.uniform(0.5, 2, 4)
    for kw in ({}, {"label_smoothing": 0.1}, {"ignore_index": 2}, {"label_smoothing": 0.1,
                                                                   "ignore_index": 2}):
        for wt in (None, w):
            ours = F.cross_entropy(t(x), t(y), weight=None if wt is None else t(wt), **kw)
            ref = tf.cross_entropy(torch.tensor(x), torch.tensor(y),
                                   weight=None if wt is None else torch.tensor(wt), **kw)
            np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-10, err_msg=str(kw))
    xl, yl, pw = randn(5, 3) * 4, RNG.uniform(0, 1, (5, 3)), RNG.uniform(0.5, 3, 3)
    ours = F.binary_cross_entropy_with_logits(t(xl), t(yl), pos_weight=t(pw))
    ref = tf.binary_cross_entropy_with_logits(torch.tensor(xl), torch.tensor(yl),
                                              pos_weight=torch.tensor(pw))
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-10)


# ----------------------------------------------------------------------------- gelu ... group_norm
# (forward, gradient and second derivative on drawn cases: the op registry, tests/test_ops.py;
# here the edge cases and errors, and PyTorch as an oracle)
def test_new_activations_edge_values_and_errors(backend_name):
    x = t(np.array([-1.0, -0.5, 0.0, 0.7, 1.0, 2.0]), True)
    y = F.hardtanh(x, -0.5, 0.7)
    y.backward(t(np.arange(1.0, 7.0)))
    np.testing.assert_array_equal(y.numpy(), [-0.5, -0.5, 0.0, 0.7, 0.7, 0.7])
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 3, 0, 0, 0])  # 0 at the bounds too
    assert np.isnan(F.hardtanh(t(np.array([np.nan]))).numpy()[0])      # nan passes, as clamp's
    big = t(np.array([-30.0, 0.0, 30.0]), dtype="float32")
    np.testing.assert_array_equal(F.gelu(big).numpy(), [0.0, 0.0, 30.0])
    np.testing.assert_array_equal(F.gelu(big, approximate="tanh").numpy(), [0.0, 0.0, 30.0])
    assert np.all(np.isfinite(F.silu(big * 100.0).numpy()))
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh', got 'erf'"):
        F.gelu(big, approximate="erf")
    with pytest.raises(ValueError, match="min_val cannot be greater than max_val"):
        F.hardtanh(big, 1.0, -1.0)
    assert F.hardtanh(big, 0.5, 0.5).numpy().tolist() == [0.5, 0.5, 0.5]


def test_normalize_special_norms_and_the_zero_vector(backend_name):
    x = np.array([[0.5, -2.0, 1.5], [-0.25, 0.75, 3.0]])
    for p, norm in [(np.inf, np.abs(x).max(1)), (0, (x != 0).sum(1)), (1, np.abs(x).sum(1))]:
        np.testing.assert_allclose(F.normalize(t(x), p=p).numpy(), x / norm[:, None],
                                   rtol=1e-12, err_msg=f"p={p}")
    assert mg.gradcheck(lambda a: F.normalize(a, p=np.inf), (t(x, True),))  # no ties in |x|
    assert mg.gradgradcheck(lambda a: F.normalize(a, p=np.inf, dim=0), (t(x, True),))
    # the zero vector stays 0; its gradient is that of x / eps (PyTorch: 1/eps, no nan)
    z = t(np.zeros((2, 3)), True)
    out = F.normalize(z, eps=1e-6)
    out.backward(t(np.ones((2, 3))))
    np.testing.assert_array_equal(out.numpy(), 0.0)
    np.testing.assert_allclose(z.grad.numpy(), 1e6, rtol=1e-12)
    with pytest.raises(IndexError, match="out of range"):    # PyTorch's IndexError too
        F.normalize(t(np.ones(3)))            # dim=1 on a vector


def test_cosine_similarity_broadcasts_and_stays_in_range(backend_name):
    a, b = randn(4, 3), randn(3)
    got = F.cosine_similarity(t(a), t(b))   # dim=1 of the broadcast shape (4, 3)
    assert got.shape == (4,)
    ref = (a @ b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    # a size-1 axis along dim is broadcast before the norm is taken
    col = randn(4, 1)
    np.testing.assert_allclose(F.cosine_similarity(t(a), t(col)).numpy(),
                               a.sum(1) * np.sign(col[:, 0]) / (np.linalg.norm(a, axis=1) *
                                                                np.sqrt(3)), rtol=1e-12)
    np.testing.assert_allclose(F.cosine_similarity(t(a), t(a * 1e6)).numpy(), 1.0, rtol=1e-15)
    assert F.cosine_similarity(t(a[0]), t(b), dim=0).shape == ()
    zero = F.cosine_similarity(t(np.zeros((2, 3))), t(a[:2]))
    np.testing.assert_array_equal(zero.numpy(), 0.0)


def test_kl_div_reductions_zero_targets_and_warning(backend_name):
    logq = np_log_softmax(randn(4, 3))
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.1, 0.1, 0.8]])
    pointwise = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0) - p * logq
    x = t(logq, True)
    loss = F.kl_div(x, t(p), reduction="batchmean")
    np.testing.assert_allclose(loss.numpy(), pointwise.sum() / 4, rtol=1e-12)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), -p / 4, rtol=1e-12)   # finite where p = 0
    np.testing.assert_allclose(F.kl_div(t(logq), t(p), reduction="none").numpy(), pointwise,
                               rtol=1e-12)
    np.testing.assert_allclose(F.kl_div(t(logq), t(np.log(p + 0.1)), reduction="sum",
                                        log_target=True).numpy(),
                               ((p + 0.1) * (np.log(p + 0.1) - logq)).sum(), rtol=1e-12)
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
        mean = F.kl_div(t(logq), t(p))
    np.testing.assert_allclose(mean.numpy(), pointwise.mean(), rtol=1e-12)
    with pytest.raises(ValueError, match=r"kl_div: reduction must be one of \('mean', 'sum', "
                                         r"'none', 'batchmean'\), got 'avg'"):
        F.kl_div(t(logq), t(p), reduction="avg")
    with pytest.raises(ValueError, match="kl_div: target shape"):
        F.kl_div(t(logq), t(p[0]))


def test_smooth_l1_and_huber_relations_and_errors(backend_name):
    x, y = t(randn(5, 4) * 2), t(randn(5, 4))
    np.testing.assert_allclose(F.smooth_l1_loss(x, y, beta=0.0).numpy(),
                               F.l1_loss(x, y).numpy(), rtol=1e-15)
    for delta in (0.5, 1.0, 2.0):    # huber = delta * smooth_l1 with beta = delta
        np.testing.assert_allclose(F.huber_loss(x, y, "none", delta).numpy(),
                                   delta * F.smooth_l1_loss(x, y, "none", delta).numpy(),
                                   rtol=1e-14)
    w = t(RNG.uniform(0, 1, (5, 4)))
    np.testing.assert_allclose(F.huber_loss(x, y, "sum", weight=w).numpy(),
                               (F.huber_loss(x, y, "none").numpy() * w.numpy()).sum(), rtol=1e-14)
    with pytest.raises(ValueError, match="smooth_l1_loss: beta must be >= 0, got -1"):
        F.smooth_l1_loss(x, y, beta=-1.0)
    with pytest.raises(ValueError, match="huber_loss: delta must be positive, got 0"):
        F.huber_loss(x, y, delta=0.0)
    with pytest.raises(ValueError, match=r"huber_loss: weight of shape \(4,\) must have"):
        F.huber_loss(x, y, weight=t(np.ones(4)))
    with pytest.raises(ValueError, match="smooth_l1_loss: reduction must be one of"):
        F.smooth_l1_loss(x, y, reduction="batchmean")


def test_group_norm_special_cases_and_errors(backend_name):
    x = randn(3, 4, 2, 5) * 2 + 1
    # one group: layer norm over (C, H, W); C groups: instance norm over (H, W)
    np.testing.assert_allclose(F.group_norm(t(x), 1).numpy(),
                               F.layer_norm(t(x), (4, 2, 5)).numpy(), rtol=1e-12)
    inst = (x - x.mean((2, 3), keepdims=True)) / np.sqrt(x.var((2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(F.group_norm(t(x), 4).numpy(), inst, rtol=1e-10, atol=1e-12)
    # batch size 1 is fine (no batch statistics), and non-contiguous input
    xt = t(x[:1].transpose(0, 1, 3, 2))
    ref = F.group_norm(t(np.ascontiguousarray(x[:1].transpose(0, 1, 3, 2))), 2)
    np.testing.assert_allclose(F.group_norm(xt, 2).numpy(), ref.numpy(), rtol=1e-15)
    with pytest.raises(ValueError, match=r"num_groups must be a positive int that divides the "
                                         r"4 channels of input of shape \(3, 4, 2, 5\), got 3"):
        F.group_norm(t(x), 3)
    with pytest.raises(ValueError, match=r"weight has shape \(3,\), expected \(4,\)"):
        F.group_norm(t(x), 2, t(np.ones(3)))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, ...\)"):
        F.group_norm(t(np.ones(4)), 1)


def test_new_functions_refuse_integer_input_as_pytorch(backend_name):
    i, f = t(np.array([[-3, 0, 2]])), t(np.array([[0.5, -1.0, 2.0]]))
    for name, call in [("gelu", lambda: F.gelu(i)), ("silu", lambda: F.silu(i)),
                       ("normalize", lambda: F.normalize(i)),
                       ("cosine_similarity: x2", lambda: F.cosine_similarity(f, i)),
                       ("kl_div: target", lambda: F.kl_div(f, i, "sum")),
                       ("smooth_l1_loss", lambda: F.smooth_l1_loss(i, f)),
                       ("huber_loss", lambda: F.huber_loss(i, f)),
                       ("group_norm", lambda: F.group_norm(i, 1))]:
        with pytest.raises(TypeError, match=f"{name}.* must be a floating-point tensor, got "
                                            f"int64"):
            call()
    # hardtanh keeps an integer dtype, with the bounds truncated to integers (PyTorch's)
    out = F.hardtanh(t(np.array([-3, 0, 2])), -1.5, 0.7)
    assert out.dtype == mg.int64 and out.numpy().tolist() == [-1, 0, 0]
    # an integer target is promoted, as in any binary op
    np.testing.assert_allclose(F.smooth_l1_loss(f, t(np.array([[1, 0, 2]]))).numpy(),
                               (0.125 + 0.5 + 0) / 3, rtol=1e-12)


def test_new_functions_keep_float32(backend_name):
    x, y = mg.randn(4, 6), mg.randn(4, 6)
    for out in (F.gelu(x), F.gelu(x, "tanh"), F.silu(x), F.hardtanh(x), F.normalize(x),
                F.cosine_similarity(x, y), F.kl_div(x, y.softmax(1), "batchmean"),
                F.smooth_l1_loss(x, y), F.huber_loss(x, y), F.group_norm(x, 3),
                F.normalize(x, p=np.inf), F.normalize(mg.zeros(2, 3))):
        assert out.dtype == mg.float32


def test_new_functions_against_torch_if_available():
    """Forward and gradient of each new function against PyTorch's, in float64, with
    the edge cases: zero vectors, zero targets, beta = 0, both reductions of kl_div."""
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x, y = randn(4, 6) * 2, randn(4, 6)
    p = np.abs(randn(4, 6))
    p[0, :3] = 0.0
    p /= p.sum(1, keepdims=True)
    xz = x.copy()
    xz[1] = 0.0
    cases = [("gelu", lambda m, a: m.gelu(a), [x]),
             ("gelu tanh", lambda m, a: m.gelu(a, approximate="tanh"), [x]),
             ("silu", lambda m, a: m.silu(a), [x]),
             ("hardtanh", lambda m, a: m.hardtanh(a, -0.5, 1.5), [x]),
             ("normalize", lambda m, a: m.normalize(a), [xz]),
             ("normalize p=1 dim=0", lambda m, a: m.normalize(a, 1.0, 0), [xz]),
             ("normalize p=inf", lambda m, a: m.normalize(a, p=float("inf")), [x]),
             ("normalize p=3 dim=-1", lambda m, a: m.normalize(a, p=3.0, dim=-1), [x]),
             ("cosine_similarity", lambda m, a, b: m.cosine_similarity(a, b), [xz, y]),
             ("cosine broadcast", lambda m, a, b: m.cosine_similarity(a, b, dim=0),
              [x, y[:1]]),
             ("kl_div batchmean", lambda m, a: m.kl_div(a, tp(m, p), reduction="batchmean"),
              [np_log_softmax(x)]),
             ("kl_div none log", lambda m, a, b: m.kl_div(a, b, reduction="none",
                                                          log_target=True),
              [np_log_softmax(x), np_log_softmax(y)]),
             ("kl_div sum", lambda m, a, b: m.kl_div(a, b, reduction="sum"),
              [np_log_softmax(x), p + 0.1])]
    for red in ("mean", "sum", "none"):
        for beta in (1.0, 0.5, 0.0):
            cases.append((f"smooth_l1 {red} {beta}",
                          lambda m, a, b, r=red, k=beta: m.smooth_l1_loss(a, b, reduction=r,
                                                                          beta=k), [x, y]))
        cases.append((f"huber {red}", lambda m, a, b, r=red: m.huber_loss(a, b, reduction=r,
                                                                          delta=0.7), [x, y]))
        cases.append((f"huber weight {red}",
                      lambda m, a, b, w, r=red: m.huber_loss(a, b, reduction=r, weight=w),
                      [x, y, p]))
    g_x = randn(3, 6, 2, 2) * 3 + 1
    cases.append(("group_norm", lambda m, a, w, b: m.group_norm(a, 3, w, b, eps=1e-3),
                  [g_x, randn(6), randn(6)]))
    cases.append(("group_norm no affine", lambda m, a: m.group_norm(a, 2), [g_x[:, :, 0]]))
    for name, call, arrays in cases:
        ours = [t(a, True) for a in arrays]
        theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
        out, ref = call(F, *ours), call(tf, *theirs)
        assert out.shape == tuple(ref.shape), name
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)
        gy = randn(*out.shape)
        out.backward(t(gy))
        ref.backward(torch.tensor(gy))
        for k, (a, b) in enumerate(zip(ours, theirs)):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-10,
                                       err_msg=f"{name}: gradient of input {k}")


def tp(module, array):
    """A constant target for either library: minigrad's (F) or PyTorch's."""
    if module is F:
        return t(array)
    import torch
    return torch.tensor(array)
