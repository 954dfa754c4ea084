"""Weight initialisation (PyTorch's ``torch.nn.init``), in place, from the tensor's
backend generator: ``mg.manual_seed(n)`` makes every initialisation reproducible.

Each function replaces ``tensor.data`` with a fresh array of the same shape,
dtype and backend and returns the tensor. Fans follow PyTorch: for a weight of
shape (d0, d1, k...), ``fan_in = d1 * prod(k)`` and ``fan_out = d0 * prod(k)``.
"""
from __future__ import annotations

import math

from ..tensor import Tensor, no_grad

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "trunc_normal_"]


def calculate_gain(nonlinearity, param=None):
    """The factor by which a nonlinearity shrinks the variance (PyTorch's table):
    1 for linear/conv/sigmoid, 5/3 for tanh, sqrt(2) for relu,
    sqrt(2 / (1 + a^2)) for leaky_relu with slope a (default 0.01), 3/4 for selu."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
              "conv_transpose2d", "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dimensions, "
                         f"got shape {tensor.shape}")
    receptive = 1
    for s in tensor.shape[2:]:
        receptive *= s
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _check(tensor, name):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nn.init.{name}: expected a Tensor, got {type(tensor).__name__}")
    if not tensor.dtype.is_floating_point:
        raise TypeError(f"nn.init.{name}: needs a floating-point tensor, got {tensor.dtype.name}")


def _fill(tensor, values):
    """Write ``values`` into the tensor in place (its array stays the same object, as
    PyTorch's init keeps the storage), counting a version."""
    with no_grad():
        tensor.copy_(values)


def uniform_(tensor, a=0.0, b=1.0):
    """Fill with U(a, b)."""
    _check(tensor, "uniform_")
    with no_grad():
        _fill(tensor, tensor._backend.uniform(tensor.shape, float(a), float(b),
                                              dtype=tensor.data.dtype))
    return tensor


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with N(mean, std^2)."""
    _check(tensor, "normal_")
    with no_grad():
        z = tensor._backend.normal(tensor.shape, dtype=tensor.data.dtype)
        _fill(tensor, z * std + mean if (mean, std) != (0.0, 1.0) else z)
    return tensor


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """Fill with N(mean, std^2) truncated to [a, b], by redrawing the samples outside."""
    _check(tensor, "trunc_normal_")
    be = tensor._backend
    xp = be.xp
    with no_grad():
        out = be.normal(tensor.shape, dtype=tensor.data.dtype) * std + mean
        for _ in range(100):
            bad = (out < a) | (out > b)
            if not bool(be.to_numpy(xp.any(bad))):
                break
            out = xp.where(bad, be.normal(tensor.shape, dtype=tensor.data.dtype) * std + mean,
                           out)
        _fill(tensor, xp.clip(out, a, b))
    return tensor


def constant_(tensor, val):
    """Fill with the constant ``val``."""
    _check(tensor, "constant_")
    _fill(tensor, tensor._backend.full(tensor.shape, float(val), dtype=tensor.data.dtype))
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0):
    """Glorot: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    """Glorot: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He: U(-bound, bound) with bound = gain * sqrt(3 / fan), gain = calculate_gain
    (nonlinearity, a). PyTorch's Linear/Conv default is a = sqrt(5), which gives
    bound = 1 / sqrt(fan_in)."""
    fan = _fan(tensor, mode)
    if fan == 0:
        return tensor
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He: N(0, std^2) with std = gain / sqrt(fan)."""
    fan = _fan(tensor, mode)
    if fan == 0:
        return tensor
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan))
