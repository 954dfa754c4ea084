"""Optimizers and learning-rate schedulers (PyTorch's ``torch.optim``):
``from minigrad import optim``.

Every update is the optimizer's formula on the parameters' backend arrays
(``p.data``, updated in place), outside the autograd graph, with no transfer to
the host: on CuPy the whole step stays on the GPU. (``minigrad/kernels/optim.py``
computes the same updates with fewer temporary arrays.) Parameters whose ``.grad`` is None (frozen with
``requires_grad_(False)``, or unused in the loss) are skipped, as in PyTorch.

Parameter groups: pass a list of dicts, each with ``"params"`` and any
hyperparameter to override for that group (fine-tuning: a small lr for a
pretrained trunk, a larger one for a new head)::

    optim.SGD([{"params": trunk.parameters(), "lr": 1e-4},
               {"params": head.parameters()}], lr=1e-2, momentum=0.9)
"""
from __future__ import annotations

import math

from .tensor import Tensor, no_grad

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adadelta", "LRScheduler", "StepLR",
           "CosineAnnealingLR", "lr_scheduler"]


class Optimizer:
    """Base class: holds ``param_groups`` (list of dicts) and per-parameter ``state``."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}           # Parameter -> dict of arrays / numbers
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params must be an iterable of Tensors or of dicts, got a "
                            "single Tensor (wrap it in a list)")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group):
        """Add a group (dict with "params"); unspecified hyperparameters take the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param group must be a dict, got {type(param_group).__name__}")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got "
                                f"{type(p).__name__}")
            if p._ctx is not None:
                raise ValueError("optimizer can only optimize leaf tensors (got a tensor "
                                 "computed from others; use .detach().requires_grad_())")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group "
                             "(or twice in one)")
        group = dict(param_group)
        group["params"] = params
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        for k in self.defaults:
            if isinstance(group[k], Tensor):     # PyTorch takes a 1-element tensor lr
                if group[k].size != 1:
                    raise ValueError(f"{k} must be a number or a one-element tensor, got a "
                                     f"tensor of shape {group[k].shape}")
                group[k] = group[k].item()
            if k in ("lr", "weight_decay", "eps", "momentum", "dampening", "alpha", "rho") \
                    and not isinstance(group[k], (int, float)):
                raise TypeError(f"{k} must be a number, got {type(group[k]).__name__}")
            if k in ("lr", "weight_decay", "eps", "momentum", "dampening") and group[k] < 0:
                raise ValueError(f"invalid {k}: {group[k]} (must be >= 0)")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's gradient (None, or zeros with ``set_to_none=False``)."""
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad = Tensor._make(p._backend.zeros(p.shape, p.data.dtype),
                                          p._backend, False, None)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            from .tensor import enable_grad
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        state = self.state.setdefault(p, {})
                        if state:
                            _follow_param(p, state)
                        self._update(p, p.grad.data, group, state)
                        p._version += 1     # an in-place change: graphs that saved p see it
        return loss

    def _update(self, p, g, group, state):
        raise NotImplementedError

    # -- state: PyTorch's layout, parameters named by their position across groups
    def state_dict(self):
        """{"state": {index: {name: Tensor | number}}, "param_groups": [{..., "params":
        [indices]}]}: indices number the parameters across groups, in order."""
        index, groups = {}, []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state and self.state[p]:
                    state[index[id(p)]] = {
                        k: Tensor._make(v, p._backend, False, None) if p._backend.is_array(v)
                        else v for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state. State arrays may be Tensors of any backend
        or NumPy arrays; each is copied to its parameter's backend and dtype. Integer
        keys may arrive as strings (from a file)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: the saved state has {len(groups)} parameter "
                             f"groups, this optimizer {len(self.param_groups)}")
        for i, (saved, mine) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(mine["params"]):
                raise ValueError(f"load_state_dict: parameter group {i} has "
                                 f"{len(saved['params'])} parameters in the saved state, "
                                 f"{len(mine['params'])} here")
        by_index = {}
        for saved, mine in zip(groups, self.param_groups):
            for idx, p in zip(saved["params"], mine["params"]):
                by_index[int(idx)] = p
        saved_state = {int(k): v for k, v in state_dict["state"].items()}
        new_state = {}  # parameters without saved state start fresh
        for idx, entry in saved_state.items():
            p = by_index.get(idx)
            if p is None:
                raise ValueError(f"load_state_dict: state for parameter {idx}, which no "
                                 "group lists")
            new_state[p] = {k: _to_param_array(v, p, k) for k, v in entry.items()}
        self.state = new_state
        for saved, mine in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    mine[k] = tuple(v) if isinstance(v, list) else v

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"


def _follow_param(p, state):
    """Move state arrays to p's backend after the model was moved with .to()."""
    be = p._backend
    for k, v in state.items():
        if hasattr(v, "shape") and not be.is_array(v):
            state[k] = _to_param_array(v, p, k)


def _to_param_array(v, p, key):
    """A saved state value as an array on p's backend with p's dtype (numbers pass)."""
    be = p._backend
    if key == "step":  # a count: kept as a Python int, whatever form it arrives in
        return int(v.item()) if hasattr(v, "item") else int(v)
    if not isinstance(v, Tensor) and not hasattr(v, "shape"):
        return v                                    # a number
    arr = be.from_any(v.data if isinstance(v, Tensor) else v)
    if tuple(arr.shape) != p.shape:
        raise ValueError(f"load_state_dict: state {key!r} has shape {tuple(arr.shape)}, its "
                         f"parameter {p.shape}")
    return be.xp.astype(arr, p.data.dtype, copy=True)


class SGD(Optimizer):
    """Stochastic gradient descent (PyTorch's rule), for gradient g of parameter p:

        g = g + weight_decay * p
        b = g (first step),  b = momentum * b + (1 - dampening) * g (later)
        g = g + momentum * b if nesterov else b          (when momentum > 0)
        p = p - lr * g
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, maximize=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _update(self, p, g, group, state):
        if group["maximize"]:
            g = -g
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        mom = group["momentum"]
        if mom:
            buf = state.get("momentum_buffer")
            buf = p._backend.xp.asarray(g, copy=True) if buf is None else \
                mom * buf + (1.0 - group["dampening"]) * g
            state["momentum_buffer"] = buf
            g = g + mom * buf if group["nesterov"] else buf
        p.data -= group["lr"] * g


class Adam(Optimizer):
    """Adam (Kingma & Ba), PyTorch's rule; step t counts from 1:

        g = g + weight_decay * p                      (L2 penalty, Adam only)
        m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``amsgrad=True`` uses the running maximum of v instead of v.
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False):
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    def _update(self, p, g, group, state):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        self._init_state(p, group, state)
        if group["maximize"]:
            g = -g
        if wd and self.decoupled:
            p.data *= 1.0 - lr * wd
        elif wd:
            g = g + wd * p.data
        state["step"] += 1
        t = state["step"]
        m = state["exp_avg"] = b1 * state["exp_avg"] + (1.0 - b1) * g
        v = state["exp_avg_sq"] = b2 * state["exp_avg_sq"] + (1.0 - b2) * (g * g)
        if group["amsgrad"]:
            v = state["max_exp_avg_sq"] = p._backend.xp.maximum(state["max_exp_avg_sq"], v)
        denom = p._backend.xp.sqrt(v) * (1.0 / math.sqrt(1.0 - b2 ** t)) + eps
        p.data -= m / denom * (lr / (1.0 - b1 ** t))

    @staticmethod
    def _init_state(p, group, state):
        """step 0 and zero moments, on the first update of ``p``."""
        if not state:
            xp = p._backend.xp
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = p._backend.xp.zeros_like(p.data)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's rule:

        p = p (1 - lr * weight_decay), then the Adam step without the L2 term.
    Default weight_decay 0.01, as in PyTorch."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


def _signed_l2_gradient(g, p, group):
    """The gradient a rule follows: -g with ``maximize``, plus the L2 term weight_decay * p."""
    if group["maximize"]:
        g = -g
    if group["weight_decay"]:
        g = g + group["weight_decay"] * p.data
    return g


class RMSprop(Optimizer):
    """RMSprop (Hinton, Neural Networks for ML, lecture 6e), PyTorch's rule:

        g = g + weight_decay * p
        v = alpha v + (1 - alpha) g^2                    (square_avg)
        centered: m = alpha m + (1 - alpha) g            (grad_avg), and v - m^2 for v below
        d = g / (sqrt(v) + eps)
        p = p - lr * d,  or with momentum:  b = momentum b + d  (momentum_buffer),  p = p - lr * b

    Each parameter's step is scaled by a running RMS of its own gradients. As in
    PyTorch, eps is added after the square root, and v starts at 0 with no bias
    correction (so the first steps are large: about lr / sqrt(1 - alpha))."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, maximize=False):
        if not alpha >= 0.0:
            raise ValueError(f"invalid alpha: {alpha} (must be >= 0)")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _update(self, p, g, group, state):
        xp = p._backend.xp
        a, mom = group["alpha"], group["momentum"]
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
        if mom > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = xp.zeros_like(p.data)
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = xp.zeros_like(p.data)
        g = _signed_l2_gradient(g, p, group)
        state["step"] += 1
        v = state["square_avg"] = a * state["square_avg"] + (1.0 - a) * (g * g)
        if group["centered"]:
            m = state["grad_avg"] = a * state["grad_avg"] + (1.0 - a) * g
            v = v - m * m
        d = g / (xp.sqrt(v) + group["eps"])
        if mom > 0:
            d = state["momentum_buffer"] = mom * state["momentum_buffer"] + d
        p.data -= group["lr"] * d


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012), PyTorch's rule:

        g = g + weight_decay * p
        v = rho v + (1 - rho) g^2                        (square_avg)
        d = sqrt(u + eps) / sqrt(v + eps) * g             (u: acc_delta, the running mean of d^2)
        u = rho u + (1 - rho) d^2
        p = p - lr * d

    The ratio of two RMS values gives each step the units of the parameter, so
    Zeiler's method needs no learning rate: that is lr = 1, PyTorch's default."""

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"invalid rho: {rho} (must be in [0, 1])")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _update(self, p, g, group, state):
        xp = p._backend.xp
        rho, eps = group["rho"], group["eps"]
        if not state:
            state["step"] = 0
            state["square_avg"] = xp.zeros_like(p.data)
            state["acc_delta"] = xp.zeros_like(p.data)
        g = _signed_l2_gradient(g, p, group)
        state["step"] += 1
        v = state["square_avg"] = rho * state["square_avg"] + (1.0 - rho) * (g * g)
        d = xp.sqrt(state["acc_delta"] + eps) / xp.sqrt(v + eps) * g
        state["acc_delta"] = rho * state["acc_delta"] + (1.0 - rho) * (d * d)
        p.data -= group["lr"] * d


# ----------------------------------------------------------------------------- schedulers
class LRScheduler:
    """Sets each group's lr from its ``initial_lr`` and the epoch count ``last_epoch``.
    Call ``scheduler.step()`` once per epoch, after ``optimizer.step()``."""

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} needs an Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            if last_epoch == -1:
                g.setdefault("initial_lr", g["lr"])
            elif "initial_lr" not in g:
                raise KeyError("resuming a scheduler (last_epoch != -1) needs 'initial_lr' "
                               "in every param group")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, epoch):
        """The lrs of every group at ``epoch`` (closed form)."""
        raise NotImplementedError

    def get_lr(self):
        return self.lr_at(self.last_epoch)

    def step(self):
        self.last_epoch += 1
        lrs = self.get_lr()
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = lr
        self._last_lr = list(lrs)

    def get_last_lr(self):
        """The lrs the last ``step()`` set, one per group."""
        return list(self._last_lr)

    def state_dict(self):
        return {k: (list(v) if isinstance(v, (list, tuple)) else v)
                for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update({k: v for k, v in state_dict.items() if k != "optimizer"})
        self.last_epoch = int(self.last_epoch)


class StepLR(LRScheduler):
    """lr = initial_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if not isinstance(step_size, int) or step_size <= 0:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        return [base * self.gamma ** (epoch // self.step_size) for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (initial_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be positive, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, epoch):
        c = (1 + math.cos(math.pi * epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]


class lr_scheduler:  # noqa: N801  (PyTorch's spelling: optim.lr_scheduler.StepLR)
    """The schedulers under PyTorch's path, ``optim.lr_scheduler.<name>``."""
    LRScheduler = LRScheduler
    StepLR = StepLR
    CosineAnnealingLR = CosineAnnealingLR
