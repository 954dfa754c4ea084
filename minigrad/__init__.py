"""minigrad: a small, readable reverse-mode autodiff engine on NumPy or CuPy.

>>> import minigrad as mg
>>> x = mg.tensor(2.0, requires_grad=True)
>>> y = x ** 3
>>> y.backward()
>>> x.grad.item()
12.0
"""
from .backend import (BackendError, available_backends, backend, get_backend,  # noqa: F401
                      set_backend)
from .dtypes import DTYPES as _DTYPES, DType  # noqa: F401
from .tensor import (Function, Tensor, enable_grad, grad, is_grad_enabled,  # noqa: F401
                     no_grad, set_grad_enabled, tensor)
from .ops import (abs, add, amax, amin, argmax, argmin, bmm, broadcast_to, cat,  # noqa: F401
                  ceil, chunk, clamp, clamp_max, clamp_min, clip, clone, concat, concatenate,
                  cos, cumsum, div, elu, eq, erf, exp, expand, expm1, flatten, flip, floor,
                  gather, ge, gt, index_select, isfinite, isinf, isnan, le, leaky_relu, log,
                  log1p, log_softmax, logsumexp, lt, masked_fill, matmul, max, maximum, mean,
                  min, minimum, mm, mul, ne, neg, norm, ones_like, pad, permute, pow, prod,
                  reciprocal, relu, repeat, reshape, result_type, round, rsqrt, sigmoid, sign,
                  sin, softmax, softplus, split, sqrt, square, squeeze, stack, std, sub, sum,
                  sum_to, swapaxes, take_along_dim, tanh, transpose, tril, triu, trunc,
                  unsqueeze, var, view, where, zeros_like)
from .dtypes import promote_types  # noqa: F401
from .factories import (arange, empty, empty_like, eye, full, full_like, linspace,  # noqa: F401
                        ones, rand, rand_like, randint, randn, randn_like, zeros, from_numpy)
from .backend import manual_seed  # noqa: F401
from .gradcheck import gradcheck, gradgradcheck  # noqa: F401

float32 = _DTYPES["float32"]
float64 = _DTYPES["float64"]
int8 = _DTYPES["int8"]
int16 = _DTYPES["int16"]
int32 = _DTYPES["int32"]
int64 = _DTYPES["int64"]
uint8 = _DTYPES["uint8"]
bool = _DTYPES["bool"]

__version__ = "0.1.0"

from . import functional, nn, optim  # noqa: E402,F401  (they import the core above)
from .serialization import load, save  # noqa: E402,F401
from . import data, viz  # noqa: E402,F401

# Last: registering the fast paths (minigrad/kernels/) replaces reference functions
# of the modules above where a kernel applies; MINIGRAD_KERNELS=off leaves them alone.
from . import kernels  # noqa: E402,F401
