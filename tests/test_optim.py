"""minigrad.optim: each optimizer against its published update rule (written out
again here in NumPy) on hand-built gradients over several steps, convergence on a
convex problem, parameter groups, state_dict round trips across backends, and
the LR schedulers."""
import math

import numpy as np  # host-side: reference values
import pytest

import minigrad as mg
from minigrad import nn, optim

RNG = np.random.default_rng(11)
STEPS = 5


def t(a, requires_grad=False, dtype="float64"):
    return mg.tensor(np.asarray(a), requires_grad=requires_grad, dtype=dtype)


def grads_sequence(shape, n=STEPS):
    return [RNG.standard_normal(shape) for _ in range(n)]


def run(opt_factory, p0, grads):
    """Apply the optimizer to one float64 parameter with the given gradients."""
    p = t(p0, requires_grad=True)
    opt = opt_factory([p])
    history = []
    for g in grads:
        p.grad = t(g)
        opt.step()
        history.append(np.array(p.numpy(), copy=True))
    return history


# ----------------------------------------------------------------------------- reference rules
def sgd_ref(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p, buf, out = p.copy(), None, []
    for g in grads:
        d = g + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
        out.append(p)
    return out


def adam_ref(p, grads, lr, b1, b2, eps, weight_decay=0.0, decoupled=False, amsgrad=False):
    p, m, v, vmax, out = p.copy(), 0 * p, 0 * p, 0 * p, []
    for k, g in enumerate(grads, start=1):
        if weight_decay and decoupled:
            p = p * (1 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1 ** k)
        v_hat = (vmax if amsgrad else v) / (1 - b2 ** k)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return out


def rmsprop_ref(p, grads, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                centered=False, maximize=False):
    p, v, m, buf, out = p.copy(), 0 * p, 0 * p, 0 * p, []
    for g in grads:
        g = -g if maximize else g
        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        m = alpha * m + (1 - alpha) * g
        d = g / (np.sqrt(v - m * m if centered else v) + eps)
        buf = momentum * buf + d
        p = p - lr * (buf if momentum else d)
        out.append(p)
    return out


def adadelta_ref(p, grads, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    p, v, u, out = p.copy(), 0 * p, 0 * p, []
    for g in grads:
        g = -g if maximize else g
        g = g + weight_decay * p
        v = rho * v + (1 - rho) * g * g
        d = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u = rho * u + (1 - rho) * d * d
        p = p - lr * d
        out.append(p)
    return out


SGD_CASES = [dict(lr=0.1), dict(lr=0.05, weight_decay=0.1), dict(lr=0.1, momentum=0.9),
             dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.01),
             dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)]


@pytest.mark.parametrize("kw", SGD_CASES, ids=[str(k) for k in SGD_CASES])
def test_sgd_matches_update_rule(backend_name, kw):
    p0, grads = RNG.standard_normal((3, 2)), grads_sequence((3, 2))
    got = run(lambda ps: optim.SGD(ps, **kw), p0, grads)
    for k, (a, b) in enumerate(zip(got, sgd_ref(p0, grads, **kw))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"step {k + 1}")


ADAM_CASES = [dict(), dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6), dict(weight_decay=0.1),
              dict(amsgrad=True, lr=0.05)]


@pytest.mark.parametrize("kw", ADAM_CASES, ids=[str(k) for k in ADAM_CASES])
def test_adam_matches_update_rule(backend_name, kw):
    p0, grads = RNG.standard_normal(4), grads_sequence(4)
    grads[2] = grads[2] * 1e-3      # a small gradient after large ones: amsgrad differs
    got = run(lambda ps: optim.Adam(ps, **kw), p0, grads)
    full = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8) | kw
    b1, b2 = full.pop("betas")
    ref = adam_ref(p0, grads, full["lr"], b1, b2, full["eps"], full.get("weight_decay", 0.0),
                   amsgrad=full.get("amsgrad", False))
    for k, (a, b) in enumerate(zip(got, ref)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"step {k + 1}")


RMSPROP_CASES = [dict(), dict(lr=0.05, alpha=0.9, eps=1e-4), dict(weight_decay=0.1, momentum=0.9),
                 dict(centered=True), dict(centered=True, momentum=0.5, maximize=True)]


ADADELTA_CASES = [dict(), dict(lr=0.5, rho=0.95, eps=1e-4), dict(weight_decay=0.1, maximize=True)]
RULE_CASES = [(optim.RMSprop, rmsprop_ref, kw) for kw in RMSPROP_CASES] + \
    [(optim.Adadelta, adadelta_ref, kw) for kw in ADADELTA_CASES]


@pytest.mark.parametrize("cls,ref,kw", RULE_CASES,
                         ids=[f"{c.__name__}-{k}" for c, _, k in RULE_CASES])
def test_rmsprop_and_adadelta_match_update_rules(backend_name, cls, ref, kw):
    p0, grads = RNG.standard_normal((3, 2)), grads_sequence((3, 2))
    got = run(lambda ps: cls(ps, **kw), p0, grads)
    for k, (a, b) in enumerate(zip(got, ref(p0, grads, **kw))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=f"step {k + 1}")


def test_rmsprop_and_adadelta_defaults_state_and_errors(backend_name):
    p = t(np.zeros(3), True)
    assert {k: v for k, v in optim.RMSprop([p]).defaults.items()} == dict(
        lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
        maximize=False)
    assert optim.Adadelta([p]).defaults == dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0,
                                                maximize=False)
    # PyTorch's state names, and only the buffers the options use
    for opt, names in [(optim.RMSprop([p]), ["square_avg", "step"]),
                       (optim.RMSprop([p], momentum=0.9, centered=True),
                        ["grad_avg", "momentum_buffer", "square_avg", "step"]),
                       (optim.Adadelta([p]), ["acc_delta", "square_avg", "step"])]:
        p.grad = t(np.ones(3))
        opt.step()
        opt.step()
        assert sorted(opt.state[p]) == names and opt.state[p]["step"] == 2
        assert all(mg.get_backend(backend_name).is_array(v) for k, v in opt.state[p].items()
                   if k != "step")
    # Adadelta's first step: sqrt(eps) / sqrt((1 - rho) g^2 + eps) * g, whatever lr's units
    q = t(np.zeros(1), True)
    opt = optim.Adadelta([q])
    q.grad = t(np.array([3.0]))
    opt.step()
    np.testing.assert_allclose(q.numpy(), -np.sqrt(1e-6) / np.sqrt(0.1 * 9 + 1e-6) * 3,
                               rtol=1e-12)
    with pytest.raises(ValueError, match="invalid alpha: -0.5"):
        optim.RMSprop([p], alpha=-0.5)
    with pytest.raises(ValueError, match="invalid momentum: -1"):
        optim.RMSprop([p], momentum=-1)
    with pytest.raises(ValueError, match=r"invalid rho: 1.5 \(must be in \[0, 1\]\)"):
        optim.Adadelta([p], rho=1.5)
    with pytest.raises(ValueError, match="invalid eps"):
        optim.Adadelta([p], eps=-1e-6)


def test_rmsprop_param_groups_have_their_own_alpha(backend_name):
    a, b = t(np.zeros(2), True), t(np.zeros(2), True)
    opt = optim.RMSprop([{"params": [a], "alpha": 0.5}, {"params": [b]}], lr=0.1)
    assert [g["alpha"] for g in opt.param_groups] == [0.5, 0.99]
    grads = [np.array([1.0, -2.0])] * 2
    for g in grads:
        a.grad, b.grad = t(g), t(g)
        opt.step()
    np.testing.assert_allclose(a.numpy(), rmsprop_ref(np.zeros(2), grads, 0.1, 0.5)[-1],
                               rtol=1e-12)
    np.testing.assert_allclose(b.numpy(), rmsprop_ref(np.zeros(2), grads, 0.1)[-1], rtol=1e-12)


@pytest.mark.parametrize("wd", [0.0, 0.01, 0.5])
def test_adamw_decouples_weight_decay(backend_name, wd):
    p0, grads = RNG.standard_normal(4) * 3, grads_sequence(4)
    got = run(lambda ps: optim.AdamW(ps, lr=0.02, weight_decay=wd), p0, grads)
    ref = adam_ref(p0, grads, 0.02, 0.9, 0.999, 1e-8, wd, decoupled=True)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    if wd:  # and it is NOT the L2 (Adam) version
        l2 = adam_ref(p0, grads, 0.02, 0.9, 0.999, 1e-8, wd)
        assert not np.allclose(got[-1], l2[-1], rtol=1e-6)
    assert optim.AdamW([t(p0, True)]).param_groups[0]["weight_decay"] == 0.01  # PyTorch default


def test_first_adam_step_is_lr_times_sign(backend_name):
    """With bias correction, the first step is lr * g / (|g| + eps): about lr per element."""
    p = t(np.zeros(3), True)
    opt = optim.Adam([p], lr=0.1)
    p.grad = t(np.array([2.0, -1e-3, 5.0]))
    opt.step()
    np.testing.assert_allclose(p.numpy(), [-0.1, 0.1, -0.1], rtol=1e-4)


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=1.0),
    lambda ps: optim.SGD(ps, lr=0.3, momentum=0.9, nesterov=True),
    lambda ps: optim.Adam(ps, lr=0.1),
    lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=1e-4),
    lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.9),
], ids=["sgd", "nesterov", "adam", "adamw", "rmsprop"])
def test_minimises_a_convex_quadratic(backend_name, make):
    """f(x) = 1/2 (x - c)^T A (x - c) with A positive definite (condition number 10)."""
    q, _ = np.linalg.qr(RNG.standard_normal((5, 5)))
    a_np = q @ np.diag(np.linspace(1, 10, 5)) @ q.T / 10
    c_np = RNG.standard_normal(5)
    a, c = t(a_np), t(c_np)
    x = t(np.zeros(5), True)
    opt = make([x])
    f0 = None
    for _ in range(400):
        opt.zero_grad()
        d = x - c
        f = 0.5 * (d @ (a @ d))
        f0 = f0 if f0 is not None else f.item()
        f.backward()
        opt.step()
    assert f.item() < 1e-8 * f0
    np.testing.assert_allclose(x.numpy(), c_np, atol=1e-4)   # AdamW's decay shifts it ~1e-5


# ----------------------------------------------------------------------------- groups, freezing
def test_param_groups_have_their_own_lr(backend_name):
    trunk, head = nn.Linear(3, 3).double(), nn.Linear(3, 2).double()
    opt = optim.SGD([{"params": trunk.parameters(), "lr": 0.001},
                     {"params": head.parameters()}], lr=0.1, momentum=0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.001, 0.1]
    assert all(g["momentum"] == 0.5 for g in opt.param_groups)
    before = [np.array(p.numpy(), copy=True) for p in (trunk.weight, head.weight)]
    for p in list(trunk.parameters()) + list(head.parameters()):
        p.grad = mg.ones(*p.shape, dtype="float64")
    opt.step()
    np.testing.assert_allclose(before[0] - trunk.weight.numpy(), 0.001, rtol=1e-9)
    np.testing.assert_allclose(before[1] - head.weight.numpy(), 0.1, rtol=1e-9)
    extra = t(np.zeros(2), True)
    opt.add_param_group({"params": [extra], "lr": 1.0})
    assert opt.param_groups[2]["momentum"] == 0.5 and opt.param_groups[2]["lr"] == 1.0
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [head.bias]})


def test_optimizer_argument_errors(backend_name):
    p = t(np.zeros(2), True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.Adam(p)
    with pytest.raises(ValueError, match="leaf tensors"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(ValueError, match="invalid lr"):
        optim.SGD([p], lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(0.9, 1.0))


def test_zero_grad_and_frozen_params_are_skipped(backend_name):
    a, b = t(np.ones(2), True), t(np.ones(2), True)
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = t(np.ones(2))          # b.grad stays None: b is skipped (frozen / unused)
    opt.step()
    assert np.all(a.numpy() < 1) and np.all(b.numpy() == 1)
    assert b not in opt.state or not opt.state[b]
    opt.zero_grad(set_to_none=False)
    assert np.all(a.grad.numpy() == 0) and b.grad is None   # None stays None (PyTorch)
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_updates_stay_on_the_backend_in_place(backend_name):
    lin = nn.Linear(4, 3)
    opt = optim.Adam(lin.parameters(), lr=0.01)
    lin(mg.randn(2, 4)).sum().backward()
    opt.step()
    for p in lin.parameters():
        assert p.backend == backend_name and p.dtype == mg.float32
        st = opt.state[p]
        assert st["step"] == 1
        assert mg.get_backend(backend_name).is_array(st["exp_avg"])


# ----------------------------------------------------------------------------- state_dict
@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01),
    lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True),
    lambda ps: optim.AdamW(ps, lr=0.01),
    lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.9, centered=True),
    lambda ps: optim.Adadelta(ps, weight_decay=0.01),
], ids=["sgd", "adam", "adamw", "rmsprop", "adadelta"])
def test_state_dict_round_trip_across_backends(backend_name, make):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = make(model.parameters())
    x, y = mg.randn(8, 3), mg.randn(8, 1)

    def train(model, opt, x, y, n):
        for _ in range(n):
            opt.zero_grad()
            mg.functional.mse_loss(model(x), y).backward()
            opt.step()

    train(model, opt, x, y, 3)
    sd = opt.state_dict()
    assert sorted(sd) == ["param_groups", "state"] and sorted(sd["state"]) == [0, 1, 2, 3]
    # as if written to a file and read back: host arrays and string keys
    host = {"state": {str(k): {n: (v.numpy() if isinstance(v, mg.Tensor) else np.asarray(v))
                               for n, v in st.items()} for k, st in sd["state"].items()},
            "param_groups": [dict(g, params=list(g["params"])) for g in sd["param_groups"]]}
    for other in ("numpy", "strict"):
        with mg.backend(other):
            clone = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
            clone.load_state_dict(model.state_dict())
            opt2 = make(clone.parameters())
            opt2.load_state_dict(host if other == "numpy" else sd)
            xo, yo = x.to(other), y.to(other)
            train(clone, opt2, xo, yo, 2)
        ref_model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
        ref_model.load_state_dict(model.state_dict())
        ref_opt = make(ref_model.parameters())
        ref_opt.load_state_dict(opt.state_dict())
        train(ref_model, ref_opt, x, y, 2)
        for (k, a), b in zip(clone.state_dict().items(), ref_model.state_dict().values()):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7, err_msg=k)
        for st in opt2.state.values():
            for v in st.values():
                if not isinstance(v, (int, float)):
                    assert mg.get_backend(other).is_array(v)


def test_state_dict_restores_hyperparameters_and_checks_groups(backend_name):
    p, q = t(np.zeros(2), True), t(np.zeros(3), True)
    opt = optim.Adam([{"params": [p], "lr": 0.5}, {"params": [q]}], lr=0.1)
    sd = opt.state_dict()
    fresh = optim.Adam([{"params": [p]}, {"params": [q]}], lr=0.2)
    fresh.load_state_dict(sd)
    assert [g["lr"] for g in fresh.param_groups] == [0.5, 0.1]
    assert fresh.param_groups[0]["params"][0] is p
    with pytest.raises(ValueError, match="2 parameter groups"):
        optim.Adam([p, q]).load_state_dict(sd)
    with pytest.raises(ValueError, match="group 0 has 1 parameters in the saved state, 2 here"):
        optim.Adam([{"params": [p, q]}, {"params": [t(np.zeros(1), True)]}]).load_state_dict(sd)


# ----------------------------------------------------------------------------- schedulers
def test_step_lr_values(backend_name):
    opt = optim.SGD([{"params": [t(np.zeros(1), True)], "lr": 1.0},
                     {"params": [t(np.zeros(1), True)], "lr": 0.5}], lr=0.1)
    sched = optim.StepLR(opt, step_size=3, gamma=0.5)
    seen = []
    for epoch in range(8):
        seen.append(sched.get_last_lr())
        opt.step()
        sched.step()
    assert seen == [[1.0 * 0.5 ** (e // 3), 0.5 * 0.5 ** (e // 3)] for e in range(8)]
    assert opt.param_groups[0]["lr"] == 0.5 ** (8 // 3)
    assert optim.lr_scheduler.StepLR is optim.StepLR


def test_cosine_annealing_values_and_state_dict(backend_name):
    opt = optim.Adam([t(np.zeros(1), True)], lr=0.1)
    sched = optim.CosineAnnealingLR(opt, T_max=10, eta_min=0.001)
    lrs = []
    for _ in range(11):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    ref = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(11)]
    np.testing.assert_allclose(lrs, ref, rtol=1e-12)
    assert lrs[0] == 0.1 and abs(lrs[10] - 0.001) < 1e-15
    # resume: a new scheduler loaded from the state continues the same schedule
    sd = sched.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 11
    opt2 = optim.Adam([t(np.zeros(1), True)], lr=0.1)
    sched2 = optim.CosineAnnealingLR(opt2, T_max=10, eta_min=0.001)
    sched2.load_state_dict(sd)
    sched.step()
    sched2.step()
    assert sched2.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ValueError, match="T_max"):
        optim.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(opt, step_size=0)


# ----------------------------------------------------------------------------- optional oracle
def test_trajectories_match_torch_if_available():
    torch = pytest.importorskip("torch")
    p0 = RNG.standard_normal((3, 4))
    grads = grads_sequence((3, 4), 6)
    cases = [(lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
              lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                         weight_decay=0.01)),
             (lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1, amsgrad=True),
              lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.1, amsgrad=True)),
             (lambda ps: optim.AdamW(ps, lr=0.01), lambda ps: torch.optim.AdamW(ps, lr=0.01))]
    for kw in RMSPROP_CASES + [dict(lr=0.02, momentum=0.9, centered=True, weight_decay=0.05)]:
        cases.append((lambda ps, kw=kw: optim.RMSprop(ps, **kw),
                      lambda ps, kw=kw: torch.optim.RMSprop(ps, **kw)))
    for kw in ADADELTA_CASES:
        cases.append((lambda ps, kw=kw: optim.Adadelta(ps, **kw),
                      lambda ps, kw=kw: torch.optim.Adadelta(ps, **kw)))
    for ours, theirs in cases:
        got = run(ours, p0, grads)
        tp = torch.tensor(p0, requires_grad=True)
        topt = theirs([tp])
        for k, g in enumerate(grads):
            tp.grad = torch.tensor(g)
            topt.step()
            np.testing.assert_allclose(got[k], tp.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_state_follows_the_model_to_another_backend(backend_name):
    """model.to(other) after some steps: the optimizer's state moves on the next step."""
    other = "strict" if backend_name == "numpy" else "numpy"
    p0, grads = RNG.standard_normal((2, 3)), grads_sequence((2, 3), 4)
    ref = adam_ref(p0, grads, 0.01, 0.9, 0.999, 1e-8)
    lin = nn.Linear(3, 2, bias=False).double()
    lin.weight.data = t(p0).data
    opt = optim.Adam(lin.parameters(), lr=0.01)
    for k, g in enumerate(grads):
        if k == 2:
            lin.to(other)
        lin.weight.grad = t(g).to(lin.weight.backend)
        opt.step()
        np.testing.assert_allclose(lin.weight.numpy(), ref[k], rtol=1e-12)
    assert lin.weight.backend == other
    assert all(mg.get_backend(other).is_array(v) for v in opt.state[lin.weight].values()
               if not isinstance(v, int))
    assert sorted(opt.state_dict()["state"][0]) == ["exp_avg", "exp_avg_sq", "step"]
