"""Stateless layers and losses (PyTorch's ``torch.nn.functional``):
``import minigrad.functional as F``.

Argument order and ``reduction=`` follow PyTorch: ``loss(input, target, ...)``
with ``reduction`` one of ``"mean"`` (default), ``"sum"``, ``"none"``.

The hot paths (``linear``, ``cross_entropy``, ``binary_cross_entropy[_with_logits]``,
``batch_norm``) are single Functions: one graph node, a forward with few array
temporaries, and ONE backward written in Tensor ops, so it can be differentiated
again. (Where no graph of the backward is recorded, ``minigrad/kernels/losses.py``
computes the same gradients on arrays, in fewer passes.)
"""
from __future__ import annotations

import math
import warnings

from . import ops as _ops
from .conv import (adaptive_avg_pool2d, avg_pool2d, conv2d, conv_transpose2d,  # noqa: F401
                   interpolate, max_pool2d)
from .ops import (elu, leaky_relu, log_softmax, pad, relu, sigmoid, softmax,  # noqa: F401
                  tanh)
from .tensor import Function, Tensor, no_grad

__all__ = ["linear", "dropout", "batch_norm", "layer_norm", "embedding", "one_hot", "mse_loss", "l1_loss", "logsigmoid",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy",
           "nll_loss", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softplus", "softmax",
           "log_softmax", "pad", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d",
           "adaptive_avg_pool2d", "interpolate", "flatten",
           "gelu", "silu", "hardtanh", "normalize", "cosine_similarity", "kl_div",
           "smooth_l1_loss", "huber_loss", "group_norm"]


def _const(array, be):
    return Tensor._make(array, be, False, None)


softplus = _ops.softplus


def logsigmoid(x):
    """log(sigmoid(x)) = -softplus(-x): exact in both tails (sigmoid itself underflows)."""
    return -_ops.softplus(-x)


def flatten(x, start_dim=0, end_dim=-1):
    return _ops.flatten(x, start_dim, end_dim)


# ----------------------------------------------------------------------------- linear
class Linear(Function):
    """y = x @ W^T + b, W of shape (out, in) (PyTorch's layout), x of shape (..., in).

    dx = gy @ W;  dW = gy^T x (over all leading axes);  db = sum of gy over them."""

    def forward(self, x, w, b=None):
        xp = self.xp
        y = xp.matmul(x, xp.matrix_transpose(w))
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        x, w = self.inputs[0], self.inputs[1]
        need = self.needs_input_grad
        gx = gw = gb = None
        if need[0]:
            gx = gy @ w
        if need[1]:
            g2 = gy.reshape(-1, gy.shape[-1]) if gy.ndim != 2 else gy
            x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
            gw = g2.mT @ x2
        if len(self.inputs) > 2 and need[2]:
            gb = gy.sum_to(self.inputs[2].shape)
        return gx, gw, gb


def linear(input, weight, bias=None):
    """y = input @ weight^T + bias with weight of shape (out_features, in_features)."""
    if input.ndim < 1 or weight.ndim != 2 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {input.shape} does not fit weight of shape "
                         f"{weight.shape} (need input.shape[-1] == weight.shape[1])")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias of shape {bias.shape} does not fit weight of shape "
                         f"{weight.shape} (need ({weight.shape[0]},))")
    if input.ndim == 1:
        return linear(input.reshape(1, -1), weight, bias).reshape(-1)
    if bias is None:
        return Linear.apply(input, weight)
    return Linear.apply(input, weight, bias)


# ----------------------------------------------------------------------------- dropout
def dropout(input, p=0.5, training=True):
    """Inverted dropout: in training, zero each element with probability p and scale
    the rest by 1/(1-p), so the expected value is unchanged; identity otherwise."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    be = input._backend
    xp = be.xp
    if p == 1.0:
        return input * 0.0
    keep = be.uniform(input.shape, dtype=input.data.dtype) >= p
    mask = xp.astype(keep, input.data.dtype)
    mask *= 1.0 / (1.0 - p)
    return input * _const(mask, be)


# ----------------------------------------------------------------------------- batch norm
def _bn_axes(x):
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, ...), got {x.shape}")
    return (0,) + tuple(range(2, x.ndim))


def _bn_shape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


class BatchNormTrain(Function):
    """Training-mode batch norm over axes (0, 2, 3, ...), n values per channel:

        xhat = (x - mean) / sqrt(var + eps)   (biased batch variance)
        y    = gamma * xhat + beta

    Backward, with g = gy * gamma:
        dx     = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)
        dgamma = sum(gy * xhat),  dbeta = sum(gy)
    xhat is rebuilt from x with Tensor ops, so a second derivative sees how it
    depends on x.
    """

    def forward(self, x, weight=None, bias=None, eps=1e-5):
        xp = self.xp
        axes = _bn_axes(x)
        mean = xp.mean(x, axis=axes, keepdims=True)
        xhat = x - mean
        var = xp.mean(xhat * xhat, axis=axes, keepdims=True)
        xhat *= 1.0 / xp.sqrt(var + eps)   # in place: large temporaries are the cost here
        self.eps, self.axes = eps, axes
        self.batch_mean, self.batch_var = mean, var   # for the running statistics
        if weight is not None:
            xhat *= xp.reshape(weight, _bn_shape(x))
        if bias is not None:
            xhat += xp.reshape(bias, _bn_shape(x))
        return xhat

    def backward(self, gy):
        x = self.inputs[0]
        has_w = len(self.inputs) > 1
        shape, axes = _bn_shape(x), self.axes
        d = x - _ops.mean(x, axes, keepdims=True)
        rstd = 1.0 / _ops.sqrt(_ops.mean(d * d, axes, keepdims=True) + self.eps)
        xhat = d * rstd
        g = gy * self.inputs[1].reshape(shape) if has_w else gy
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = (g - _ops.mean(g, axes, keepdims=True)
                  - xhat * _ops.mean(g * xhat, axes, keepdims=True)) * rstd
        if has_w and self.needs_input_grad[1]:
            gw = _ops.sum(gy * xhat, axes).reshape(-1)
        if len(self.inputs) > 2 and self.needs_input_grad[2]:
            gb = _ops.sum(gy, axes).reshape(-1)
        return gx, gw, gb


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation over (N, C) or (N, C, ...) inputs, per channel C.

    training: normalise with the batch mean and biased variance, and update the
    running estimates in place (if given):
        running_mean = (1 - momentum) running_mean + momentum mean
        running_var  = (1 - momentum) running_var  + momentum var * n / (n - 1)
    evaluation: normalise with the running estimates.
    """
    _bn_axes(input)
    c = input.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if t is not None and t.shape != (c,):
            raise ValueError(f"batch_norm: {name} has shape {t.shape}, expected ({c},) for "
                             f"input of shape {input.shape}")
    if training:
        n = input.size // c
        if n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when "
                             f"training, got input of shape {input.shape}")
        args = [input] + ([weight] if weight is not None else []) + \
            ([bias] if bias is not None else [])
        if weight is None and bias is not None:
            args = [input, _ops.ones_like(bias), bias]
        y = BatchNormTrain.apply(*args, eps=eps)
        node = y._ctx
        if running_mean is not None or running_var is not None:
            # recompute the (cheap) batch statistics when no node kept them
            xp = input._backend.xp
            if node is not None:
                mean, var = node.batch_mean, node.batch_var
            else:
                axes = _bn_axes(input)
                mean = xp.mean(input.data, axis=axes, keepdims=True)
                var = xp.mean((input.data - mean) ** 2, axis=axes, keepdims=True)
            with no_grad():
                if running_mean is not None:
                    running_mean.data = (1.0 - momentum) * running_mean.data + \
                        momentum * xp.reshape(mean, (c,))
                if running_var is not None:
                    running_var.data = (1.0 - momentum) * running_var.data + \
                        momentum * (n / (n - 1)) * xp.reshape(var, (c,))
        return y
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm: evaluation mode needs running_mean and running_var")
    shape = _bn_shape(input)
    be = input._backend
    rstd = 1.0 / be.xp.sqrt(running_var.data + eps)
    scale = _const(be.xp.reshape(rstd, shape), be)
    y = (input - _const(be.xp.reshape(running_mean.data, shape), be)) * scale
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last len(normalized_shape) axes, per example:
    y = (x - mean) / sqrt(var + eps) * weight + bias (biased variance). No batch
    statistics, so it suits critics trained with a gradient penalty."""
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else \
        tuple(normalized_shape)
    k = len(normalized_shape)
    if input.shape[input.ndim - k:] != normalized_shape:
        raise ValueError(f"layer_norm: input of shape {input.shape} does not end with "
                         f"normalized_shape {normalized_shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != normalized_shape:
            raise ValueError(f"layer_norm: {name} has shape {t.shape}, expected "
                             f"{normalized_shape}")
    axes = tuple(range(input.ndim - k, input.ndim))
    d = input - _ops.mean(input, axes, keepdims=True)
    y = d / _ops.sqrt(_ops.mean(d * d, axes, keepdims=True) + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


# ----------------------------------------------------------------------------- embedding
def embedding(input, weight, padding_idx=None):
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer tensor ``input``:
    output shape input.shape + (dim,). The row ``padding_idx`` gets no gradient."""
    if input.dtype.is_floating_point:
        raise TypeError(f"embedding: input must be an integer tensor, got {input.dtype.name}")
    out = weight[input]
    if padding_idx is not None:
        if padding_idx < 0:
            padding_idx += weight.shape[0]
        keep = _const((input.data != padding_idx)[..., None], input._backend)
        out = _ops.where(keep, out, out.detach())
    return out


def one_hot(tensor, num_classes=-1):
    """int64 tensor of shape tensor.shape + (num_classes,) with a 1 at each index."""
    be = tensor._backend
    xp = be.xp
    if tensor.dtype.is_floating_point:
        raise TypeError(f"one_hot: needs an integer tensor, got {tensor.dtype.name}")
    if num_classes < 0:
        num_classes = int(be.to_numpy(xp.max(tensor.data))) + 1 if tensor.size else 0
    _check_class_range(tensor.data, num_classes, be, "one_hot", None)
    classes = be.arange(num_classes, dtype=tensor.data.dtype)
    return _const(xp.astype(tensor.data[..., None] == classes, be.dtype("int64")), be)


def _check_class_range(t, n, be, name, ignore_index):
    # One boolean comes to the host (a sync on a GPU): a target out of range would
    # otherwise give a silently wrong loss, as the one-hot mask would miss it.
    xp = be.xp
    bad = (t < 0) | (t >= n)
    if ignore_index is not None:
        bad = bad & (t != ignore_index)
    if bool(be.to_numpy(xp.any(bad))):
        lo, hi = int(be.to_numpy(xp.min(t))), int(be.to_numpy(xp.max(t)))
        raise ValueError(f"{name}: target values must be in [0, {n}), got values in "
                         f"[{lo}, {hi}]")


# ----------------------------------------------------------------------------- losses
_REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss, reduction, name):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_reduction(reduction, name, allowed=_REDUCTIONS):
    if reduction not in allowed:
        raise ValueError(f"{name}: reduction must be one of {allowed}, got {reduction!r}")


def _same_shape(input, target, name):
    if not isinstance(target, Tensor):
        raise TypeError(f"{name}: target must be a Tensor, got {type(target).__name__}")
    if input.shape != target.shape:
        raise ValueError(f"{name}: target shape {target.shape} differs from input shape "
                         f"{input.shape}; they must match (reshape one of them)")


def mse_loss(input, target, reduction="mean"):
    """(input - target)^2, reduced."""
    _same_shape(input, target, "mse_loss")
    _check_reduction(reduction, "mse_loss")
    d = input - target
    return _reduce(d * d, reduction, "mse_loss")


def l1_loss(input, target, reduction="mean"):
    """|input - target|, reduced."""
    _same_shape(input, target, "l1_loss")
    _check_reduction(reduction, "l1_loss")
    return _reduce(_ops.abs(input - target), reduction, "l1_loss")


class BinaryCrossEntropy(Function):
    """l = -(t log x + (1 - t) log(1 - x)), each log clamped at -100 (as PyTorch).

    dx = (x - t) / max(x (1 - x), 1e-12);  dt = log(1 - x) - log(x) (clamped logs)."""

    def forward(self, x, t):
        xp = self.xp
        return -(t * clamped_log(xp, x) + (1.0 - t) * clamped_log(xp, 1.0 - x))

    def backward(self, gy):
        x, t = self.inputs
        gx = gt = None
        if self.needs_input_grad[0]:
            gx = gy * (x - t) / _ops.clip(x * (1.0 - x), 1e-12, None)
        if self.needs_input_grad[1]:
            gt = gy * (_ops.clip(_ops.log(1.0 - x), -100.0, None)
                       - _ops.clip(_ops.log(x), -100.0, None))
        return gx, gt


def clamped_log(xp, a):
    """max(log(a), -100) on arrays, with log(0) = -100 and no warning (PyTorch's BCE)."""
    pos = a > 0
    return xp.where(pos, xp.maximum(xp.log(xp.where(pos, a, 1.0)), -100.0), -100.0)


def _apply_weight(loss, weight):
    return loss if weight is None else loss * weight


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """-(t log x + (1 - t) log(1 - x)) for probabilities x in [0, 1], logs clamped at
    -100 (so x = 0 or 1 gives a finite loss), times ``weight``, reduced."""
    _same_shape(input, target, "binary_cross_entropy")
    _check_reduction(reduction, "binary_cross_entropy")
    xp = input._backend.xp
    if bool(input._backend.to_numpy(xp.any((input.data < 0) | (input.data > 1)))):
        raise ValueError("binary_cross_entropy: input values must be probabilities in [0, 1] "
                         "(use binary_cross_entropy_with_logits for logits)")
    loss = BinaryCrossEntropy.apply(input, target)
    return _reduce(_apply_weight(loss, weight), reduction, "binary_cross_entropy")


class BCEWithLogits(Function):
    """l = max(x, 0) - x t + log(1 + exp(-|x|))  (= softplus(x) - x t, exact for large |x|);
    dx = sigmoid(x) - t;  dt = -x."""

    def forward(self, x, t):
        xp = self.xp
        return xp.maximum(x, 0.0 * x) - x * t + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, gy):
        x, t = self.inputs
        gx = gy * (_ops.sigmoid(x) - t) if self.needs_input_grad[0] else None
        gt = gy * -x if self.needs_input_grad[1] else None
        return gx, gt


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """Binary cross-entropy of sigmoid(input) against target, without forming the
    sigmoid: max(x, 0) - x t + log(1 + exp(-|x|)), finite and exact for any logit.
    With ``pos_weight`` p (per class, broadcast over the last axis), the positive term
    is weighted: (1 - t) x + (1 + (p - 1) t) (log(1 + exp(-|x|)) + max(-x, 0))."""
    _same_shape(input, target, "binary_cross_entropy_with_logits")
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    if pos_weight is None:
        loss = BCEWithLogits.apply(input, target)
    else:
        log_weight = (pos_weight - 1.0) * target + 1.0
        loss = (1.0 - target) * input + log_weight * softplus(-input)
    return _reduce(_apply_weight(loss, weight), reduction, "binary_cross_entropy_with_logits")


def _class_mask(target, n_classes, be, dtype):
    """One-hot of ``target`` (N, d...) along a new axis 1: shape (N, C, d...)."""
    xp = be.xp
    classes = xp.reshape(be.arange(n_classes, dtype=target.dtype),
                         (1, n_classes) + (1,) * (target.ndim - 1))
    return xp.astype(xp.expand_dims(target, axis=1) == classes, dtype)


def _check_class_input(input, target, name):
    if input.ndim < 1:
        raise ValueError(f"{name}: input must have a class axis, got shape {input.shape}")
    if target.dtype.is_floating_point:
        raise TypeError(f"{name}: target must hold integer class indices, got "
                        f"{target.dtype.name}")
    expected = (input.shape[0],) + input.shape[2:] if input.ndim > 1 else ()
    if target.shape != expected:
        raise ValueError(f"{name}: target of shape {target.shape} does not fit input of shape "
                         f"{input.shape} (expected {expected})")


def _target_weights(input, target, weight, ignore_index, be):
    """mask (N, C, ...) of the target class with the class weight in it, and the
    per-example weight w[t] (0 for ignored targets), both arrays."""
    xp = be.xp
    c = input.shape[1]
    mask = _class_mask(target.data, c, be, input.data.dtype)
    if weight is not None:
        if weight.shape != (c,):
            raise ValueError(f"weight has shape {weight.shape}, expected ({c},)")
        mask = mask * xp.reshape(weight.data, (1, c) + (1,) * (input.ndim - 2))
    if 0 <= ignore_index < c:  # other values never match a class: already all-zero rows
        keep = xp.astype(target.data != ignore_index, input.data.dtype)
        mask = mask * xp.expand_dims(keep, axis=1)
    per_example = xp.sum(mask, axis=1)
    return mask, per_example


class CrossEntropy(Function):
    """Per-example l_i = -w_{t_i} log softmax(x_i)_{t_i} = w_{t_i} (logsumexp(x_i) - x_{i,t_i})
    for logits x (N, C, ...) and a weighted one-hot mask M (N, C, ...):
        l = sum_c M (lse - x);   dx = gy (softmax(x) sum_c M - M)."""

    def forward(self, x, mask=None):
        xp = self.xp
        m = xp.max(x, axis=1, keepdims=True)
        lse = xp.log(xp.sum(xp.exp(x - m), axis=1, keepdims=True)) + m
        self.mask = mask
        self.msum = xp.sum(mask, axis=1, keepdims=True)
        # a class the mask leaves out may have logit -inf, and 0 * inf is nan: drop it first
        return xp.sum(mask * (lse - xp.where(mask != 0, x, 0.0)), axis=1)

    def backward(self, gy):
        be = self._backend
        x, = self.inputs
        g = _ops.softmax(x, axis=1) * _const(self.msum, be) - _const(self.mask, be)
        return g * gy.unsqueeze(1)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """-w_t input[n, t] for log-probabilities input (N, C, ...) and class indices
    target (N, ...); "mean" divides by the sum of w_t over non-ignored targets."""
    _check_class_input(input, target, "nll_loss")
    _check_reduction(reduction, "nll_loss")
    be = input._backend
    if input.ndim == 1:      # one example: reduction="none" gives a 0-d loss, as PyTorch
        loss = nll_loss(input.unsqueeze(0), target.unsqueeze(0), weight, ignore_index,
                        reduction)
        return loss.squeeze(0) if reduction == "none" else loss
    _check_class_range(target.data, input.shape[1], be, "nll_loss", ignore_index)
    mask, per_example = _target_weights(input, target, weight, ignore_index, be)
    picked = _ops.where(_const(mask != 0, be), input, 0.0)   # 0 * -inf would be nan
    loss = -(picked * _const(mask, be)).sum(1)
    return _weighted_reduce(loss, per_example, reduction, be)


def _weighted_reduce(loss, per_example, reduction, be):
    """"mean" divides by the total weight of the targets. With every target ignored
    that is 0: the loss is nan and its gradient 0, as in PyTorch (and no host sync)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    xp = be.xp
    total = xp.sum(per_example)
    some = total > 0
    return loss.sum() / _const(xp.where(some, total, xp.ones_like(total)), be) + \
        _const(xp.where(some, xp.zeros_like(total), xp.full_like(total, float("nan"))), be)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Softmax cross-entropy of logits input (N, C) or (N, C, d...) against integer
    class indices target (N,) or (N, d...) (or class probabilities of input's shape):
    logsumexp(x) - x_t per example, stable for any logits. "mean" divides by the
    sum of the class weights of the non-ignored targets (PyTorch's convention).
    ``label_smoothing`` eps mixes in the uniform target: (1 - eps) nll + eps mean_c(-log p)."""
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    be = input._backend
    if target.dtype.is_floating_point:  # class probabilities
        if target.shape != input.shape:
            raise ValueError(f"cross_entropy: probability target of shape {target.shape} must "
                             f"match input of shape {input.shape}")
        c = input.shape[1] if input.ndim > 1 else input.shape[0]
        axis = 1 if input.ndim > 1 else 0
        if label_smoothing:
            target = target * (1.0 - label_smoothing) + label_smoothing / c
        logp = log_softmax(input, axis=axis)
        if weight is not None:
            wshape = (1, c) + (1,) * (input.ndim - 2) if input.ndim > 1 else (c,)
            logp = logp * weight.reshape(wshape)
        loss = -(logp * target).sum(axis)
        return _reduce(loss, reduction, "cross_entropy")
    _check_class_input(input, target, "cross_entropy")
    if input.ndim == 1:      # one example: reduction="none" gives a 0-d loss, as PyTorch
        loss = cross_entropy(input.unsqueeze(0), target.unsqueeze(0), weight, ignore_index,
                             reduction, label_smoothing)
        return loss.squeeze(0) if reduction == "none" else loss
    _check_class_range(target.data, input.shape[1], be, "cross_entropy", ignore_index)
    mask, per_example = _target_weights(input, target, weight, ignore_index, be)
    nll = _weighted_reduce(CrossEntropy.apply(input, mask=mask), per_example, reduction, be)
    if not label_smoothing:
        return nll
    # PyTorch's smoothing term: -sum_c w_c log p_c per example, ignored targets zeroed;
    # "mean" divides by sum(w_t) over the non-ignored targets, as for the nll term.
    c = input.shape[1]
    xp = be.xp
    logp = log_softmax(input, axis=1)
    if weight is not None:
        logp = logp * weight.reshape((1, c) + (1,) * (input.ndim - 2))
    keep = _const(xp.astype(target.data != ignore_index, input.data.dtype), be)
    smooth = _weighted_reduce(-logp.sum(1) * keep, per_example, reduction, be)
    return nll * (1.0 - label_smoothing) + smooth * (label_smoothing / c)



# ----------------------------------------------------------------------------- more activations
def _check_floating(t, name, arg="input"):
    """These functions are defined on real numbers: an integer tensor is refused, as
    PyTorch refuses it (rather than silently picking a float dtype)."""
    if not t.dtype.is_floating_point:
        raise TypeError(f"{name}: {arg} must be a floating-point tensor, got {t.dtype.name} "
                        f"(convert it with .float())")


def gelu(input, approximate="none"):
    """GELU(x) = x Phi(x), Phi the standard normal CDF (Hendrycks & Gimpel):
        "none": x/2 (1 + erf(x / sqrt(2)))
        "tanh": x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (their approximation)"""
    _check_floating(input, "gelu")
    if approximate == "none":
        return input * 0.5 * (1.0 + _ops.erf(input * (1.0 / math.sqrt(2.0))))
    if approximate == "tanh":
        inner = (input + input ** 3 * 0.044715) * math.sqrt(2.0 / math.pi)
        return input * 0.5 * (1.0 + _ops.tanh(inner))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def silu(input, inplace=False):
    """SiLU (swish): x sigmoid(x). ``inplace`` is accepted for PyTorch's signature;
    the result is always a new tensor."""
    _check_floating(input, "silu")
    return input * sigmoid(input)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """x clamped to [min_val, max_val]. As in PyTorch, the gradient is 1 strictly
    inside and 0 at the bounds themselves (clamp's is 1 there). ``inplace`` is
    accepted for PyTorch's signature; the result is always a new tensor."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val cannot be greater than max_val, got "
                         f"min_val={min_val}, max_val={max_val}")
    if not input.dtype.is_floating_point:   # as PyTorch: integer bounds (truncated), same dtype
        min_val, max_val = int(min_val), int(max_val)
    return _ops.where(input <= min_val, min_val,
                      _ops.where(input >= max_val, max_val, input))


# ----------------------------------------------------------------------------- norms of vectors
def normalize(input, p=2.0, dim=1, eps=1e-12):
    """v / max(||v||_p, eps) for each vector v along ``dim``: unit vectors, and
    the zero vector stays 0."""
    _check_floating(input, "normalize")
    return input / _ops.clip(_ops.norm(input, p, dim, keepdim=True), eps, None)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """x1 . x2 / (max(||x1||, eps) max(||x2||, eps)) along ``dim``, which is removed;
    x1 and x2 broadcast together first. Each vector is scaled to unit length
    before the dot product (PyTorch's order, which keeps the result in [-1, 1])."""
    _check_floating(x1, "cosine_similarity", "x1")
    _check_floating(x2, "cosine_similarity", "x2")
    shape = _ops._broadcast_shapes(x1.shape, x2.shape)
    x1 = x1 if x1.shape == shape else x1.broadcast_to(shape)
    x2 = x2 if x2.shape == shape else x2.broadcast_to(shape)
    u1 = x1 / _ops.clip(_ops.norm(x1, 2, dim, keepdim=True), eps, None)
    u2 = x2 / _ops.clip(_ops.norm(x2, 2, dim, keepdim=True), eps, None)
    return (u1 * u2).sum(dim)


# ----------------------------------------------------------------------------- more losses
_KL_REDUCTIONS = _REDUCTIONS + ("batchmean",)


def kl_div(input, target, reduction="mean", log_target=False):
    """Pointwise KL divergence, PyTorch's argument order: ``input`` holds the model's
    log-probabilities log q, ``target`` the probabilities t of the data:
        t (log t - input)          (t log t taken as 0 at t = 0, its limit)
        exp(t) (t - input)         with ``log_target=True`` (target as log t)
    "batchmean" divides the sum by the batch size input.shape[0]: KL(t || q) per
    example, the mathematical definition. "mean" divides by the number of elements
    instead, which is not a KL divergence: PyTorch warns, and so does minigrad."""
    _same_shape(input, target, "kl_div")
    _check_reduction(reduction, "kl_div", _KL_REDUCTIONS)
    _check_floating(input, "kl_div")
    _check_floating(target, "kl_div", "target")
    if log_target:
        loss = _ops.exp(target) * (target - input)
    else:   # xlogy(t, t): 0 where t = 0 (and nan where t < 0, as log's)
        t_log_t = target * _ops.log(_ops.where(target == 0, 1.0, target))
        loss = t_log_t - target * input
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.ndim else loss.sum()
    if reduction == "mean":
        warnings.warn("kl_div: reduction='mean' divides the total loss by both the batch size "
                      "and the support size; 'batchmean' divides only by the batch size and "
                      "is the KL divergence's definition", UserWarning, stacklevel=2)
    return _reduce(loss, reduction, "kl_div")


def _smooth_l1(d, beta):
    """0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (beta > 0)."""
    ad = _ops.abs(d)
    return _ops.where(ad < beta, d * d * (0.5 / beta), ad - 0.5 * beta)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """Smooth L1 of d = input - target: 0.5 d^2 / beta for |d| < beta, |d| - 0.5 beta
    beyond (Fast R-CNN's loss): quadratic near 0, so its gradient shrinks with d,
    and linear in the tails, so outliers pull with a bounded force. beta = 0 is
    l1_loss."""
    _same_shape(input, target, "smooth_l1_loss")
    _check_reduction(reduction, "smooth_l1_loss")
    _check_floating(input, "smooth_l1_loss")
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    if beta == 0:
        return l1_loss(input, target, reduction)
    return _reduce(_smooth_l1(input - target, beta), reduction, "smooth_l1_loss")


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """Huber loss of d = input - target: 0.5 d^2 for |d| < delta, delta (|d| - 0.5 delta)
    beyond; it is delta * smooth_l1 with beta = delta. ``weight`` (input's shape)
    multiplies each element's loss before the reduction."""
    _same_shape(input, target, "huber_loss")
    _check_reduction(reduction, "huber_loss")
    _check_floating(input, "huber_loss")
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    if weight is not None and weight.shape != input.shape:
        raise ValueError(f"huber_loss: weight of shape {weight.shape} must have input's shape "
                         f"{input.shape}")
    loss = _smooth_l1(input - target, delta) * delta
    return _reduce(_apply_weight(loss, weight), reduction, "huber_loss")


# ----------------------------------------------------------------------------- group norm
def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Group norm (Wu & He) of input (N, C, ...): split the C channels into
    ``num_groups`` groups, normalise each example's group over its channels and
    positions, y = (x - mean) / sqrt(var + eps) (biased variance), then scale and
    shift per channel. No batch statistics: the same for any batch size. One
    group is layer norm over (C, ...); C groups is instance norm."""
    if input.ndim < 2:
        raise ValueError(f"group_norm: expected input of shape (N, C, ...), got {input.shape}")
    _check_floating(input, "group_norm")
    n, c = input.shape[:2]
    if not isinstance(num_groups, int) or num_groups <= 0 or c % num_groups:
        raise ValueError(f"group_norm: num_groups must be a positive int that divides the {c} "
                         f"channels of input of shape {input.shape}, got {num_groups!r}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise ValueError(f"group_norm: {name} has shape {t.shape}, expected ({c},) for "
                             f"input of shape {input.shape}")
    per_group = c // num_groups * math.prod(input.shape[2:])
    grouped = input.reshape(n, num_groups, per_group)
    y = layer_norm(grouped, (per_group,), eps=eps).reshape(input.shape)
    if weight is not None:
        y = y * weight.reshape(_bn_shape(input))
    if bias is not None:
        y = y + bias.reshape(_bn_shape(input))
    return y
