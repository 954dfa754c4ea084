"""Parity with PyTorch where it is installed (skipped otherwise): each call below is
written ONCE, in PyTorch's spelling, and run with ``T, F = torch, torch.nn.functional``
and with ``T, F = minigrad, minigrad.functional``. Forward value, dtype, shape and
(for float outputs that require grad) the gradient of a random weighted sum must agree.
"""
import numpy as np  # host-side: inputs and comparisons
import pytest

import minigrad as mg
import minigrad.functional as mgF

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

RNG = np.random.default_rng(7)
A = RNG.standard_normal((3, 4))
B = RNG.standard_normal((3, 4))
V = RNG.standard_normal(4)
IMG = RNG.standard_normal((2, 3, 6, 5))
INTS = np.array([[1, 2, 3], [4, 5, 6]])
LABELS = np.array([1, 0, 3])

CALLS = {
    # name: f(T, F, a, b, v, img) -> tensor (a, b, v, img require grad)
    "sum_dim": lambda T, F, a, b, v, i: a.sum(dim=1, keepdim=True),
    "mean_dims": lambda T, F, a, b, v, i: a.mean(dim=(0, 1)),
    "var_default": lambda T, F, a, b, v, i: a.var(),
    "var_dim_unbiased_false": lambda T, F, a, b, v, i: a.var(dim=0, unbiased=False),
    "std_correction": lambda T, F, a, b, v, i: a.std(dim=1, correction=0),
    "max_dim_values": lambda T, F, a, b, v, i: T.max(a, 1).values,
    "max_dim_indices": lambda T, F, a, b, v, i: T.max(a, 1).indices,
    "min_pair": lambda T, F, a, b, v, i: T.min(a, b),
    "amax": lambda T, F, a, b, v, i: T.amax(a, dim=(0, 1)),
    "argmax_dim": lambda T, F, a, b, v, i: a.argmax(dim=0),
    "logsumexp": lambda T, F, a, b, v, i: T.logsumexp(a, dim=1),
    "softmax": lambda T, F, a, b, v, i: F.softmax(a, dim=0),
    "log_softmax": lambda T, F, a, b, v, i: F.log_softmax(a, dim=-1),
    "softplus_beta": lambda T, F, a, b, v, i: F.softplus(a, beta=3, threshold=1),
    "sigmoid_tail": lambda T, F, a, b, v, i: T.sigmoid(a * 30),
    "logsigmoid": lambda T, F, a, b, v, i: F.logsigmoid(a * 30),
    "gelu": lambda T, F, a, b, v, i: F.gelu(a),
    "gelu_tanh": lambda T, F, a, b, v, i: F.gelu(a, approximate="tanh"),
    "silu": lambda T, F, a, b, v, i: F.silu(a),
    "hardtanh": lambda T, F, a, b, v, i: F.hardtanh(a, -0.7, 0.9),
    "normalize": lambda T, F, a, b, v, i: F.normalize(a, dim=1),
    "cosine_similarity": lambda T, F, a, b, v, i: F.cosine_similarity(a, b, dim=1),
    "clamp_tensors": lambda T, F, a, b, v, i: T.clamp(a, min=b - 0.3, max=b + 0.3),
    "cumsum": lambda T, F, a, b, v, i: a.cumsum(dim=1),
    "prod": lambda T, F, a, b, v, i: a.prod(dim=0),
    "norm_p3": lambda T, F, a, b, v, i: a.norm(p=3, dim=1),
    "gather": lambda T, F, a, b, v, i: a.gather(1, T.tensor([[0, 0], [3, 1], [2, 2]])),
    "index_select": lambda T, F, a, b, v, i: a.index_select(1, T.tensor([3, 0, 3])),
    "masked_fill": lambda T, F, a, b, v, i: a.masked_fill(a > 0.5, -1.0),
    "repeat": lambda T, F, a, b, v, i: v.repeat(2, 3),
    "flip": lambda T, F, a, b, v, i: a.flip(0, 1),
    "tril_triu": lambda T, F, a, b, v, i: a.tril(-1) + a.triu(2),
    "erf": lambda T, F, a, b, v, i: T.erf(a),
    "log1p_expm1": lambda T, F, a, b, v, i: T.log1p(a.abs()) + T.expm1(a),
    "rsqrt_square": lambda T, F, a, b, v, i: a.abs().rsqrt() + a.square(),
    "mm": lambda T, F, a, b, v, i: a.mm(b.T),
    "matmul_vec": lambda T, F, a, b, v, i: a @ v,
    "maximum_ties": lambda T, F, a, b, v, i: T.maximum(a, a.detach()),
    "where_scalar": lambda T, F, a, b, v, i: T.where(a > 0, a, 0.0),
    "split_cat": lambda T, F, a, b, v, i: T.cat(a.split(3, dim=1)[::-1], dim=1),
    "chunk_stack": lambda T, F, a, b, v, i: T.stack(a.chunk(2, dim=0)[1:] * 2, dim=0),
    "pad_reflect": lambda T, F, a, b, v, i: F.pad(i, (2, 1, 1, 3), mode="reflect"),
    "pad_replicate": lambda T, F, a, b, v, i: F.pad(i, (2, 1, 1, 3), mode="replicate"),
    "pad_circular": lambda T, F, a, b, v, i: F.pad(i, (2, 1, 1, 3), mode="circular"),
    "pad_constant": lambda T, F, a, b, v, i: F.pad(i, (1, 1), value=2.5),
    "max_pool_ceil": lambda T, F, a, b, v, i: F.max_pool2d(i, 3, 2, 1, ceil_mode=True),
    "max_pool_dilation": lambda T, F, a, b, v, i: F.max_pool2d(i, 2, 1, dilation=2),
    "max_pool_indices": lambda T, F, a, b, v, i: F.max_pool2d(i, 2, return_indices=True)[1],
    "avg_pool_exclude_pad": lambda T, F, a, b, v, i: F.avg_pool2d(i, 3, 2, 1,
                                                                  count_include_pad=False),
    "avg_pool_ceil": lambda T, F, a, b, v, i: F.avg_pool2d(i, 2, ceil_mode=True),
    "adaptive_avg_pool": lambda T, F, a, b, v, i: F.adaptive_avg_pool2d(i, (4, 2)),
    "interpolate_bilinear": lambda T, F, a, b, v, i: F.interpolate(i, size=(9, 4),
                                                                   mode="bilinear"),
    "interpolate_align": lambda T, F, a, b, v, i: F.interpolate(i, scale_factor=1.5,
                                                                mode="bilinear",
                                                                align_corners=True),
    "interpolate_nearest": lambda T, F, a, b, v, i: F.interpolate(i, size=(4, 11)),
    "group_norm": lambda T, F, a, b, v, i: F.group_norm(i[:, :2], 2),
    "layer_norm": lambda T, F, a, b, v, i: F.layer_norm(i, (6, 5)),
    "cross_entropy": lambda T, F, a, b, v, i: F.cross_entropy(a, T.tensor([1, 0, 3])),
    "cross_entropy_smooth": lambda T, F, a, b, v, i: F.cross_entropy(a, T.tensor([1, 0, 3]),
                                                                     label_smoothing=0.1),
    "nll_none": lambda T, F, a, b, v, i: F.nll_loss(F.log_softmax(a, 1), T.tensor([1, 0, 3]),
                                                    reduction="none"),
    "bce_logits": lambda T, F, a, b, v, i: F.binary_cross_entropy_with_logits(a, b.sigmoid()),
    "kl_div": lambda T, F, a, b, v, i: F.kl_div(F.log_softmax(a, 1), F.softmax(b, 1),
                                                reduction="batchmean"),
    "smooth_l1": lambda T, F, a, b, v, i: F.smooth_l1_loss(a, b, beta=0.5),
    "huber": lambda T, F, a, b, v, i: F.huber_loss(a, b, delta=0.7),
    "mse_sum": lambda T, F, a, b, v, i: F.mse_loss(a, b, reduction="sum"),
    # dtypes: ints, bools and 0-d tensors
    "int_exp": lambda T, F, a, b, v, i: T.exp(T.tensor([[1, 2, 3], [4, 5, 6]])),
    "int_pow_float": lambda T, F, a, b, v, i: T.tensor([1, 2, 3]) ** 2.0,
    "bool_div": lambda T, F, a, b, v, i: T.tensor([True, False]) / 2,
    "bool_add_int": lambda T, F, a, b, v, i: T.tensor([True, False]) + 2,
    "zero_d_float64": lambda T, F, a, b, v, i: a.float() * T.tensor(2.0, dtype=T.float64),
    "int_plus_zero_d_float": lambda T, F, a, b, v, i: T.tensor([1, 2]) + T.tensor(
        0.5, dtype=T.float64),
    "int_sum": lambda T, F, a, b, v, i: T.tensor([[1, 2], [3, 4]], dtype=T.int32).sum(dim=0),
    "int_avg_pool": lambda T, F, a, b, v, i: F.avg_pool2d(
        T.arange(-8, 8).reshape(1, 1, 4, 4), 2),
    "arange_int": lambda T, F, a, b, v, i: T.arange(3.1, dtype=T.int64),
    "full_int": lambda T, F, a, b, v, i: T.full((2,), 3),
}


def _run(T, F, name):
    def leaf(x):
        return T.tensor(x, requires_grad=True)
    args = [leaf(A), leaf(B), leaf(V), leaf(IMG)]
    out = CALLS[name](T, F, *args)
    return out, args


@pytest.mark.parametrize("name", sorted(CALLS))
def test_same_answer_as_pytorch(name):
    with mg.backend("numpy"):
        got, mg_args = _run(mg, mgF, name)
    want, torch_args = _run(torch, TF, name)
    assert got.shape == tuple(want.shape), f"shape {got.shape} vs torch {tuple(want.shape)}"
    assert got.dtype.name == str(want.dtype).replace("torch.", ""), \
        f"dtype {got.dtype.name} vs torch {want.dtype}"
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-6, atol=1e-9)
    if want.requires_grad and want.dtype.is_floating_point:
        w = np.random.default_rng(1).standard_normal(tuple(want.shape))
        (got * mg.tensor(w)).sum().backward()
        (want * torch.tensor(w)).sum().backward()
        for m, t in zip(mg_args, torch_args):
            if t.grad is None:
                assert m.grad is None or not np.any(m.grad.numpy())
            else:
                np.testing.assert_allclose(m.grad.numpy(), t.grad.numpy(), rtol=1e-6,
                                           atol=1e-9)
