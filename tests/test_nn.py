"""minigrad.nn: the Module tree, state dicts, moving and freezing, every layer against
its defining NumPy expression, float64 gradient checks wrt input and parameters,
BatchNorm/Dropout modes, and PyTorch's default initialisations."""
import math

import numpy as np  # host-side: reference values
import pytest
import scipy.special

import minigrad as mg
from minigrad import nn
from minigrad.nn import init

RNG = np.random.default_rng(7)


def t(a, requires_grad=False, dtype=None):
    a = np.asarray(a)
    if dtype is None and a.dtype.kind == "f":
        dtype = "float64"
    return mg.tensor(a, requires_grad=requires_grad, dtype=dtype)


def randn(*shape):
    return RNG.standard_normal(shape)


def params_np(m):
    return {k: np.array(v.numpy(), copy=True) for k, v in m.state_dict().items()}


def _owner(module, dotted):
    *path, leaf = dotted.split(".")
    for p in path:
        module = getattr(module, p)
    return module, leaf


def check_module_grads(module, x, seed=None, gradgrad=False):
    """gradcheck of module(x) wrt x and every parameter, in float64. The parameters
    are swapped for gradcheck's perturbed copies inside the function."""
    module.double()
    names = [n for n, _ in module.named_parameters()]
    params = [p for _, p in module.named_parameters()]

    def fn(x, *ps):
        saved = []
        for name, p in zip(names, ps):
            owner, leaf = _owner(module, name)
            saved.append((owner, leaf, owner._parameters[leaf]))
            owner._parameters[leaf] = p
        try:
            if seed is not None:
                mg.manual_seed(seed)
            return module(x)
        finally:
            for owner, leaf, p in saved:
                owner._parameters[leaf] = p
    assert mg.gradcheck(fn, (x, *params))
    if gradgrad:
        assert mg.gradgradcheck(fn, (x, *params))


# ----------------------------------------------------------------------------- Module tree
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.scale = nn.Parameter(mg.ones(4))
        self.register_buffer("steps", mg.zeros(1))
        self.register_buffer("cache", mg.zeros(2), persistent=False)

    def forward(self, x):
        return self.bn(self.fc(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))
        self.shared = self.head[1]      # the same module twice: its params appear once

    def forward(self, x):
        return self.head(self.block(x))


def test_parameter_is_a_tensor_and_shares_data(backend_name):
    base = mg.randn(3, 2)
    p = nn.Parameter(base)
    assert isinstance(p, nn.Parameter) and isinstance(p, mg.Tensor)
    assert p.requires_grad and p.is_leaf and p.data is base.data
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert not nn.Parameter(base, requires_grad=False).requires_grad
    assert not isinstance(p * 2, nn.Parameter)  # ops return plain tensors


def test_named_parameters_buffers_children_modules(backend_name):
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["block.scale", "block.fc.weight", "block.fc.bias", "block.bn.weight",
                     "block.bn.bias", "head.1.weight", "head.1.bias"]
    assert len(list(net.parameters())) == 7
    assert [n for n, _ in net.named_buffers()] == [
        "block.steps", "block.cache", "block.bn.running_mean", "block.bn.running_var",
        "block.bn.num_batches_tracked"]
    assert [n for n, _ in net.named_children()] == ["block", "head", "shared"]
    assert [type(m).__name__ for m in net.modules()] == [
        "Net", "Block", "Linear", "BatchNorm1d", "Sequential", "ReLU", "Linear"]
    assert list(net.block.parameters(recurse=False)) == [net.block.scale]
    visited = []
    net.apply(lambda m: visited.append(type(m).__name__))
    assert visited[-1] == "Net" and visited[0] == "Linear"


def test_attribute_rules(backend_name):
    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(mg.ones(2))
    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first"):
        Early()
    lin = nn.Linear(2, 3)
    with pytest.raises(TypeError, match="cannot assign Tensor as parameter 'weight'"):
        lin.weight = mg.ones(3, 2)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        lin.nope
    lin.weight = nn.Parameter(mg.ones(3, 2))      # a new Parameter replaces it
    np.testing.assert_array_equal(lin.weight.numpy(), 1.0)
    del lin.bias
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    with pytest.raises(TypeError, match="must be a Tensor"):
        lin.register_buffer("b", 3.0)


def test_train_eval_zero_grad(backend_name):
    net = Net()
    assert net.training and net.block.bn.training
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net(mg.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad.numpy() == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_freezing_leaves_grads_none(backend_name):
    net = Net()
    net.block.requires_grad_(False)
    net(mg.randn(5, 3)).sum().backward()
    for name, p in net.named_parameters():
        assert (p.grad is None) == name.startswith("block."), name
    opt = mg.optim.SGD(net.parameters(), lr=0.1)
    before = params_np(net)
    opt.step()
    after = params_np(net)
    for k in before:
        changed = not np.array_equal(before[k], after[k])
        assert changed == k.startswith("head.1."), k
    net.block.requires_grad_(True)
    assert all(p.requires_grad for p in net.parameters())


def test_repr_tree():
    net = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Sequential(nn.Dropout(0.2),
                                                                       nn.Flatten()))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Linear(in_features=784, out_features=400, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Dropout(p=0.2)\n"
        "    (1): Flatten(start_dim=1, end_dim=-1)\n"
        "  )\n"
        ")")
    assert repr(nn.Conv2d(1, 8, 3, padding=1, bias=False)) == \
        "Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)"


def test_sequential_container(backend_name):
    a, b, c = nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c and list(seq) == [a, b, c]
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c]
    with pytest.raises(IndexError, match="out of range"):
        seq[3]
    x = mg.randn(5, 3)
    np.testing.assert_allclose(seq(x).numpy(), c(b(a(x))).numpy())
    seq.append(nn.Sigmoid())
    assert len(seq) == 4
    from collections import OrderedDict
    named = nn.Sequential(OrderedDict(enc=nn.Linear(2, 2), act=nn.ReLU()))
    assert [n for n, _ in named.named_parameters()] == ["enc.weight", "enc.bias"]
    with pytest.raises(TypeError, match="not an nn.Module"):
        nn.Sequential(nn.ReLU(), lambda x: x)
    ml = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    assert len(list(ml.parameters())) == 4 and len(ml) == 2


def test_replacing_a_child_or_parameter_keeps_its_place(backend_name):
    """As in PyTorch (a dict assignment): seq[0] = layer replaces layer 0 where it is,
    so forward still runs it first, and state_dict keeps its order."""
    seq = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    first = nn.Linear(3, 4)
    seq[0] = first
    assert list(seq._modules) == ["0", "1", "2"] and seq[0] is first
    x = mg.randn(5, 3)
    np.testing.assert_allclose(seq(x).numpy(), seq[2](seq[1](first(x))).numpy())
    seq.add_module("1", nn.ReLU())
    assert list(seq._modules) == ["0", "1", "2"] and isinstance(seq[1], nn.ReLU)
    d = nn.ModuleDict({"a": nn.ReLU(), "b": nn.Tanh()})
    d["a"] = nn.Sigmoid()
    assert list(d) == ["a", "b"]
    lin = nn.Linear(2, 2)
    lin.weight = nn.Parameter(mg.zeros(2, 2))
    lin.register_parameter("bias", nn.Parameter(mg.ones(2)))
    assert list(lin.state_dict()) == ["weight", "bias"]
    np.testing.assert_array_equal(lin(mg.randn(1, 2)).numpy(), [[1.0, 1.0]])
    bn = nn.BatchNorm1d(2)
    keys = list(bn.state_dict())
    bn.register_buffer("running_mean", mg.ones(2))
    assert list(bn.state_dict()) == keys
    bn.register_buffer("running_var", mg.ones(2), persistent=False)
    assert "running_var" not in bn.state_dict()
    bn.register_buffer("running_var", mg.ones(2))
    assert list(bn.state_dict()) == keys


# ----------------------------------------------------------------------------- moving
def test_to_backend_and_dtype_keeps_parameter_objects(backend_name):
    net = Net()
    params = list(net.parameters())
    other = "numpy" if backend_name != "numpy" else "strict"
    x = mg.randn(5, 3)
    y = net(x).numpy()
    net.to(other)
    assert all(p.backend == other for p in net.parameters())
    assert all(b.backend == other for b in net.buffers())
    assert list(net.parameters())[0] is params[0]
    np.testing.assert_allclose(net(x.to(other)).numpy(), y, rtol=1e-6)
    net.to(backend_name).double()
    assert all(p.dtype == mg.float64 for p in net.parameters())
    assert net.block.bn.num_batches_tracked.dtype == mg.int64   # integers are not cast
    np.testing.assert_allclose(net(x.double()).numpy(), y, rtol=1e-5)


# ----------------------------------------------------------------------------- state_dict
def test_state_dict_round_trip_across_backends(backend_name):
    mg.manual_seed(0)
    src = Net()
    src(mg.randn(6, 3))       # moves the BatchNorm running stats away from their init
    sd = src.state_dict()
    assert list(sd) == ["block.scale", "block.steps", "block.fc.weight", "block.fc.bias",
                        "block.bn.weight", "block.bn.bias", "block.bn.running_mean",
                        "block.bn.running_var", "block.bn.num_batches_tracked",
                        "head.1.weight", "head.1.bias"]  # non-persistent 'cache' left out
    for other in ("numpy", "strict"):
        with mg.backend(other):
            mg.manual_seed(1)
            dst = Net()
            assert not np.allclose(dst.block.fc.weight.numpy(), src.block.fc.weight.numpy())
            result = dst.load_state_dict(sd)
            assert result.missing_keys == [] and result.unexpected_keys == []
            for k, v in dst.state_dict().items():
                np.testing.assert_array_equal(v.numpy(), sd[k].numpy(), err_msg=k)
                assert v.backend == other
            # host (NumPy) arrays load too, e.g. from a checkpoint file
            dst.load_state_dict({k: v.numpy() for k, v in sd.items()})
            x = np.asarray(RNG.standard_normal((4, 3)), dtype=np.float32)
            src.eval()
            dst.eval()
            np.testing.assert_allclose(dst(mg.tensor(x)).numpy(),
                                       src(mg.tensor(x, backend=src.block.fc.weight.backend))
                                       .numpy(), rtol=1e-6)
            src.train()


def test_loaded_state_is_a_copy(backend_name):
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    b.load_state_dict(a.state_dict())
    with mg.no_grad():
        a.weight.data = a.weight.data * 2
    assert not np.allclose(a.weight.numpy(), b.weight.numpy())


def test_load_state_dict_errors_name_every_key(backend_name):
    net = Net()
    sd = dict(net.state_dict())
    del sd["head.1.bias"]
    sd["head.2.weight"] = mg.zeros(2)
    sd["block.fc.weight"] = mg.zeros(3, 4)
    before = params_np(net)
    with pytest.raises(nn.StateDictError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    assert 'Missing key(s) in state_dict: "head.1.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "head.2.weight"' in msg
    assert ("size mismatch for block.fc.weight: copying a param with shape (3, 4) from "
            "checkpoint, the shape in current model is (4, 3)") in msg
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)
    after = params_np(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing changed
    del sd["block.fc.weight"]
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["block.fc.weight", "head.1.bias"]
    assert result.unexpected_keys == ["head.2.weight"]
    with pytest.raises(TypeError, match="expected a dict"):
        net.load_state_dict([1, 2])


# ----------------------------------------------------------------------------- layers
def test_linear_layer_forward_and_grads(backend_name):
    lin = nn.Linear(5, 3)
    x = randn(4, 5)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    np.testing.assert_allclose(lin(mg.tensor(x, dtype="float32")).numpy(), x @ w.T + b,
                               rtol=1e-5, atol=1e-6)
    check_module_grads(lin, t(randn(2, 5), True), gradgrad=True)
    no_bias = nn.Linear(5, 3, bias=False)
    assert no_bias.bias is None and len(list(no_bias.parameters())) == 1
    check_module_grads(no_bias, t(randn(2, 3, 5), True))


def np_conv2d(x, w, b, stride, padding, dilation=1, groups=1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, o, ho, wo))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(ho):
            for j in range(wo):
                patch = xp[:, g * cg:(g + 1) * cg,
                           i * stride:i * stride + dilation * (kh - 1) + 1:dilation,
                           j * stride:j * stride + dilation * (kw - 1) + 1:dilation]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    return out + (0 if b is None else b.reshape(1, -1, 1, 1))


def np_conv_transpose2d(x, w, b, stride, padding, output_padding=0):
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    hf = (h - 1) * stride + kh
    wf = (wd - 1) * stride + kw
    full = np.zeros((n, o, hf + output_padding, wf + output_padding))
    for i in range(h):
        for j in range(wd):
            full[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += \
                np.einsum("nc,cokl->nokl", x[:, :, i, j], w)
    ho = (h - 1) * stride - 2 * padding + kh + output_padding
    wo = (wd - 1) * stride - 2 * padding + kw + output_padding
    out = full[:, :, padding:padding + ho, padding:padding + wo]
    return out + b.reshape(1, -1, 1, 1)


def test_conv2d_layer_forward_and_grads(backend_name):
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1)
    assert conv.weight.shape == (4, 2, 3, 3) and conv.bias.shape == (4,)
    conv.double()
    x = randn(2, 2, 5, 6)
    ref = np_conv2d(x, conv.weight.numpy(), conv.bias.numpy(), 2, 1)
    np.testing.assert_allclose(conv(t(x)).numpy(), ref, rtol=1e-10, atol=1e-12)
    check_module_grads(conv, t(randn(1, 2, 5, 4), True))
    grouped = nn.Conv2d(4, 2, (2, 2), groups=2, bias=False).double()
    x = randn(1, 4, 3, 3)
    np.testing.assert_allclose(grouped(t(x)).numpy(),
                               np_conv2d(x, grouped.weight.numpy(), None, 1, 0, groups=2),
                               rtol=1e-10, atol=1e-12)


def test_conv_transpose2d_layer_forward_and_grads(backend_name):
    deconv = nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1)
    assert deconv.weight.shape == (3, 2, 4, 4)
    deconv.double()
    x = randn(2, 3, 3, 3)
    ref = np_conv_transpose2d(x, deconv.weight.numpy(), deconv.bias.numpy(), 2, 1)
    out = deconv(t(x))
    assert out.shape == (2, 2, 6, 6)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-12)
    check_module_grads(deconv, t(randn(1, 3, 2, 2), True))
    op = nn.ConvTranspose2d(2, 1, 3, stride=2, output_padding=1).double()
    x = randn(1, 2, 2, 2)
    np.testing.assert_allclose(op(t(x)).numpy(),
                               np_conv_transpose2d(x, op.weight.numpy(), op.bias.numpy(), 2, 0,
                                                   output_padding=1), rtol=1e-10, atol=1e-12)


def np_bn_train(x, w, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    s = (1, -1) + (1,) * (x.ndim - 2)
    m, v = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w.reshape(s) + b.reshape(s)


@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm1d, (8, 3)), (nn.BatchNorm1d, (4, 3, 5)),
                                       (nn.BatchNorm2d, (4, 3, 2, 3)),
                                       (nn.BatchNorm2d, (5, 3, 1, 1))])
def test_batchnorm_running_stats_and_modes(backend_name, cls, shape):
    bn = cls(3, momentum=0.3).double()
    np.testing.assert_array_equal(bn.weight.numpy(), 1.0)
    np.testing.assert_array_equal(bn.bias.numpy(), 0.0)
    with mg.no_grad():
        bn.weight.data = bn.weight.data * 0 + t(randn(3)).data
        bn.bias.data = bn.bias.data * 0 + t(randn(3)).data
    w, b = bn.weight.numpy(), bn.bias.numpy()
    rm, rv = np.zeros(3), np.ones(3)
    axes = (0,) + tuple(range(2, len(shape)))
    n = int(np.prod(shape)) // 3
    for _ in range(3):
        x = randn(*shape) * 2 + 0.5
        y = bn(t(x))
        np.testing.assert_allclose(y.numpy(), np_bn_train(x, w, b), rtol=1e-10, atol=1e-12)
        rm = 0.7 * rm + 0.3 * x.mean(axis=axes)
        rv = 0.7 * rv + 0.3 * x.var(axis=axes) * n / (n - 1)   # unbiased running variance
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.numpy(), rv, rtol=1e-12)
    assert int(bn.num_batches_tracked.item()) == 3
    # still a 0-d int64 tensor of the backend (a NumPy scalar could not be copied into)
    assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked.dtype == mg.int64
    other = cls(3)
    bn.num_batches_tracked.copy_(other.num_batches_tracked)      # written into in place
    assert int(bn.num_batches_tracked.item()) == 0
    bn.num_batches_tracked.fill_(3)
    bn.eval()
    x = randn(*shape)
    s = (1, -1) + (1,) * (len(shape) - 2)
    ref = (x - rm.reshape(s)) / np.sqrt(rv.reshape(s) + 1e-5) * w.reshape(s) + b.reshape(s)
    np.testing.assert_allclose(bn(t(x)).numpy(), ref, rtol=1e-10)
    np.testing.assert_allclose(bn.running_mean.numpy(), rm, rtol=1e-12)  # eval: no update
    assert int(bn.num_batches_tracked.item()) == 3
    check_module_grads(bn, t(randn(*shape), True))
    bn.train()
    check_module_grads(bn, t(randn(*shape), True), gradgrad=len(shape) == 2)


def test_batchnorm_cumulative_average_and_no_tracking(backend_name):
    bn = nn.BatchNorm1d(2, momentum=None).double()
    xs = [randn(5, 2) for _ in range(3)]
    for x in xs:
        bn(t(x))
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean([x.mean(0) for x in xs], 0),
                               rtol=1e-12)
    free = nn.BatchNorm2d(2, affine=False, track_running_stats=False).double()
    assert list(free.parameters()) == [] and list(free.buffers()) == []
    free.eval()   # no running stats: batch statistics even in eval mode
    x = randn(3, 2, 2, 2)
    np.testing.assert_allclose(free(t(x)).numpy(), np_bn_train(x, np.ones(2), np.zeros(2)),
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(2\): input has 3 channels"):
        free(t(randn(2, 3, 2, 2)))
    with pytest.raises(ValueError, match="expected a 4-D input"):
        free(t(randn(2, 2)))


def test_dropout_module_modes(backend_name):
    mg.manual_seed(0)
    d = nn.Dropout(0.25)
    x = mg.ones(100, 400)
    y = d(x).numpy()
    assert abs((y == 0).mean() - 0.25) < 0.01 and abs(y.mean() - 1) < 0.02
    d.eval()
    assert d(x) is x
    check_module_grads(nn.Dropout(0.3).train(), t(randn(3, 4), True), seed=5)
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(-0.1)


def test_embedding_layer(backend_name):
    mg.manual_seed(0)
    emb = nn.Embedding(300, 100)
    w = emb.weight.numpy()
    assert abs(w.mean()) < 0.03 and abs(w.std() - 1) < 0.03     # N(0, 1), 30k draws: 5 sd
    idx = np.array([[1, 5], [5, 299]])
    np.testing.assert_array_equal(emb(t(idx)).numpy(), w[idx])
    padded = nn.Embedding(4, 3, padding_idx=-1)
    assert padded.padding_idx == 3
    np.testing.assert_array_equal(padded.weight.numpy()[3], 0.0)
    small = nn.Embedding(4, 2).double()
    assert mg.gradcheck(lambda w: mg.functional.embedding(t(np.array([0, 3, 3])), w),
                        (small.weight,))


ACTIVATIONS = [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (nn.ELU(0.7), lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1))),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.Tanh(), np.tanh),
    (nn.Softplus(), lambda x: np.log1p(np.exp(x))),
    (nn.Softplus(beta=2.0), lambda x: np.log1p(np.exp(2 * x)) / 2),
    (nn.Softmax(dim=1), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    (nn.LogSoftmax(dim=1), lambda x: x - np.log(np.exp(x).sum(1, keepdims=True))),
    (nn.Identity(54, unused=1), lambda x: x),
    (nn.GELU(), lambda x: x * scipy.special.ndtr(x)),
    (nn.GELU(approximate="tanh"),
     lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))),
    (nn.SiLU(), lambda x: x / (1 + np.exp(-x))),
]


@pytest.mark.parametrize("module,ref", ACTIVATIONS, ids=[type(m).__name__ + str(i)
                                                         for i, (m, _) in
                                                         enumerate(ACTIVATIONS)])
def test_activation_modules(backend_name, module, ref):
    x = randn(4, 5) * 2
    x[np.abs(x) < 1e-3] = 0.5   # keep finite differences away from kinks
    np.testing.assert_allclose(module(t(x)).numpy(), ref(x), rtol=1e-10, atol=1e-12)
    assert mg.gradcheck(module, (t(x, True),))


def test_flatten_unflatten(backend_name):
    x = randn(2, 3, 4, 5)
    np.testing.assert_array_equal(nn.Flatten()(t(x)).numpy(), x.reshape(2, -1))
    np.testing.assert_array_equal(nn.Flatten(0, 1)(t(x)).numpy(), x.reshape(6, 4, 5))
    u = nn.Unflatten(1, (3, 20))
    np.testing.assert_array_equal(u(t(x.reshape(2, 60))).numpy(), x.reshape(2, 3, 20))
    assert nn.Unflatten(-1, (1, 28, 28))(mg.zeros(3, 784)).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match=r"cannot split axis 1 of size 60 into \(7, 8\)"):
        nn.Unflatten(1, (7, 8))(t(x.reshape(2, 60)))
    assert mg.gradcheck(lambda a: nn.Unflatten(1, (3, 20))(nn.Flatten()(a)), (t(x, True),))


def test_pool_and_upsample_layers(backend_name):
    x = randn(2, 3, 4, 6)
    mx = nn.MaxPool2d(2)(t(x)).numpy()
    np.testing.assert_array_equal(mx, x.reshape(2, 3, 2, 2, 3, 2).max(axis=(3, 5)))
    av = nn.AvgPool2d(2)(t(x)).numpy()
    np.testing.assert_allclose(av, x.reshape(2, 3, 2, 2, 3, 2).mean(axis=(3, 5)), rtol=1e-12)
    up = nn.Upsample(scale_factor=2)(t(x)).numpy()
    np.testing.assert_array_equal(up, x.repeat(2, axis=2).repeat(2, axis=3))
    np.testing.assert_array_equal(nn.Upsample(size=(8, 12))(t(x)).numpy(), up)
    ada = nn.AdaptiveAvgPool2d((2, 3))(t(x)).numpy()
    np.testing.assert_allclose(ada, x.reshape(2, 3, 2, 2, 3, 2).mean(axis=(3, 5)), rtol=1e-12)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        nn.Upsample()
    for m in (nn.MaxPool2d(2), nn.AvgPool2d(2, stride=1), nn.Upsample(scale_factor=2),
              nn.AdaptiveAvgPool2d(2)):
        assert mg.gradcheck(m, (t(randn(1, 2, 4, 4), True),))
    assert repr(nn.MaxPool2d(2)) == ("MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, "
                                      "ceil_mode=False)")  # PyTorch's repr


def test_loss_modules_match_functional(backend_name):
    x, y = mg.randn(6, 4), mg.randint(0, 4, (6,))
    F = mg.functional
    np.testing.assert_allclose(nn.CrossEntropyLoss()(x, y).numpy(), F.cross_entropy(x, y).numpy())
    np.testing.assert_allclose(nn.NLLLoss(reduction="sum")(x.log_softmax(1), y).numpy(),
                               F.nll_loss(x.log_softmax(1), y, reduction="sum").numpy())
    p = mg.rand(6, 4)
    np.testing.assert_allclose(nn.BCELoss()(x.sigmoid(), p).numpy(),
                               F.binary_cross_entropy(x.sigmoid(), p).numpy(), rtol=1e-6)
    np.testing.assert_allclose(nn.BCEWithLogitsLoss()(x, p).numpy(),
                               F.binary_cross_entropy_with_logits(x, p).numpy())
    np.testing.assert_allclose(nn.MSELoss()(x, p).numpy(), F.mse_loss(x, p).numpy())
    np.testing.assert_allclose(nn.L1Loss(reduction="none")(x, p).numpy(),
                               F.l1_loss(x, p, reduction="none").numpy())
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")


def test_mlp_gradcheck_and_gradgradcheck(backend_name):
    """A small MLP through the Module API, differentiated twice (WGAN-GP needs it)."""
    mlp = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2), nn.Softplus())
    check_module_grads(mlp, t(randn(4, 3), True), gradgrad=True)


# ----------------------------------------------------------------------------- init
def test_default_inits_follow_pytorch(backend_name):
    mg.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound      # U(-a, a): sd a/sqrt(3)
    assert np.abs(b).max() <= bound and np.abs(b).max() > 0.95 * bound
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 9)
    assert np.abs(conv.weight.numpy()).max() <= bound
    assert np.abs(conv.weight.numpy()).max() > 0.99 * bound
    assert np.abs(conv.bias.numpy()).max() <= bound
    # weight (in, out, k, k): PyTorch's fan_in = weight.shape[1] * k * k = 64 * 16, not the
    # in_channels * k * k = 16 * 16 of a Conv2d (whose bound would be twice as wide)
    deconv = nn.ConvTranspose2d(16, 64, 4)
    bound = 1 / math.sqrt(64 * 16)
    assert np.abs(deconv.weight.numpy()).max() <= bound
    assert np.abs(deconv.weight.numpy()).max() > 0.99 * bound
    assert np.abs(deconv.bias.numpy()).max() <= bound
    assert np.abs(deconv.bias.numpy()).max() > 0.6 * bound


def test_init_functions_statistics(backend_name):
    mg.manual_seed(0)
    w = mg.zeros(500, 200)
    init.kaiming_uniform_(w, nonlinearity="relu")
    bound = math.sqrt(2) * math.sqrt(3 / 200)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.99 * bound
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 500)) < 0.01 * math.sqrt(2 / 500)
    init.xavier_uniform_(w, gain=2.0)
    a = 2.0 * math.sqrt(6 / 700)
    assert np.abs(w.numpy()).max() <= a and np.abs(w.numpy()).max() > 0.99 * a
    init.xavier_normal_(w)
    assert abs(w.numpy().std() - math.sqrt(2 / 700)) < 0.01 * math.sqrt(2 / 700)
    init.normal_(w, 3.0, 0.5)
    assert abs(w.numpy().mean() - 3) < 0.01 and abs(w.numpy().std() - 0.5) < 0.01
    init.uniform_(w, -2, 1)
    assert w.numpy().min() >= -2 and w.numpy().max() < 1 and abs(w.numpy().mean() + 0.5) < 0.02
    init.trunc_normal_(w, std=1.0, a=-1.0, b=1.0)
    assert np.abs(w.numpy()).max() <= 1.0
    assert w.dtype == mg.float32 and w.backend == backend_name
    init.zeros_(w)
    assert np.all(w.numpy() == 0)
    init.ones_(w)
    assert np.all(w.numpy() == 1)
    init.constant_(w, 0.25)
    assert np.all(w.numpy() == 0.25)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(mg.zeros(5))
    with pytest.raises(ValueError, match="mode must be"):
        init.kaiming_uniform_(w, mode="fan_avg")


def test_calculate_gain():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")


def test_init_is_reproducible_from_manual_seed(backend_name):
    mg.manual_seed(42)
    a = [p.numpy() for p in Net().parameters()]
    mg.manual_seed(42)
    b = [p.numpy() for p in Net().parameters()]
    mg.manual_seed(43)
    c = [p.numpy() for p in Net().parameters()]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_default_init_bounds_match_torch_if_available():
    torch = pytest.importorskip("torch")
    for ours, theirs in ((nn.Linear(30, 7), torch.nn.Linear(30, 7)),
                         (nn.Conv2d(6, 4, 3, groups=2), torch.nn.Conv2d(6, 4, 3, groups=2)),
                         (nn.ConvTranspose2d(5, 6, 4, groups=1),
                          torch.nn.ConvTranspose2d(5, 6, 4))):
        for (name, p), (tname, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
            assert name == tname and p.shape == tuple(tp.shape)
            fan_in = tp.shape[1] * int(np.prod(tp.shape[2:])) if tp.ndim > 1 else \
                theirs.weight.shape[1] * int(np.prod(theirs.weight.shape[2:]))
            bound = 1 / math.sqrt(fan_in)
            assert np.abs(p.numpy()).max() <= bound
            assert tp.detach().abs().max().item() <= bound


def test_deepcopy_makes_an_independent_model(backend_name):
    import copy
    net = Net()
    net(mg.randn(4, 3)).sum().backward()
    twin = copy.deepcopy(net)
    assert type(twin) is Net and isinstance(twin.block.fc.weight, nn.Parameter)
    assert twin.shared is twin.head[1]                     # sharing is preserved
    assert twin.block.fc.weight is not net.block.fc.weight
    assert twin.block.fc.weight._backend is net.block.fc.weight._backend
    for (k, a), b in zip(net.state_dict().items(), twin.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    np.testing.assert_array_equal(twin.block.fc.weight.grad.numpy(),
                                  net.block.fc.weight.grad.numpy())
    with mg.no_grad():
        twin.block.fc.weight.data = twin.block.fc.weight.data * 0
    assert not np.all(net.block.fc.weight.numpy() == 0)
    x = mg.randn(4, 3)
    twin(x).sum().backward()    # the copy trains on its own


def test_clip_grad_norm_and_value(backend_name):
    a, b = t(np.zeros(3), True), t(np.zeros(2), True)
    ga, gb = np.array([3.0, 0.0, 4.0]), np.array([12.0, 0.0])   # joint norm 13
    a.grad, b.grad = t(ga), t(gb)
    shared = a.grad.data
    total = nn.utils.clip_grad_norm_([a, b], max_norm=1.3)
    assert total.item() == pytest.approx(13.0)
    np.testing.assert_allclose(a.grad.numpy(), ga / 10, rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), gb / 10, rtol=1e-6)
    assert mg.get_backend(backend_name).to_numpy(shared)[0] == 3.0   # not scaled in place
    nn.utils.clip_grad_norm_([a, b], max_norm=100.0)                # below the limit: kept
    np.testing.assert_allclose(a.grad.numpy(), ga / 10, rtol=1e-6)
    a.grad = t(ga)
    assert nn.utils.clip_grad_norm_(a, 1.0, norm_type=math.inf).item() == 4.0
    np.testing.assert_allclose(a.grad.numpy(), ga / 4, rtol=1e-5)
    a.grad = t(np.array([-5.0, 0.5, 2.0]))
    nn.utils.clip_grad_value_([a], 1.0)
    np.testing.assert_array_equal(a.grad.numpy(), [-1.0, 0.5, 1.0])
    assert nn.functional is mg.functional


def test_small_mlp_learns_xor_blobs(backend_name):
    """Module + Linear + BatchNorm + Dropout + cross_entropy + Adam end to end: a
    problem no linear model solves (XOR of two signs) is learned to > 95%."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 2)).astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1),
                          nn.Linear(32, 2))
    opt = mg.optim.Adam(model.parameters(), lr=0.03)
    xt, yt = mg.tensor(x), mg.tensor(y)
    for _ in range(150):
        opt.zero_grad()
        loss = mg.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    model.eval()
    with mg.no_grad():
        acc = (model(xt).argmax(1).numpy() == y).mean()
    assert acc > 0.95, acc     # a linear classifier gets about 0.5


@pytest.mark.parametrize("shape,norm", [((4, 6), (6,)), ((2, 3, 4, 5), (4, 5)),
                                        ((2, 3, 4, 5), (3, 4, 5))])
def test_layer_norm_matches_numpy_and_gradchecks(backend_name, shape, norm):
    ln = nn.LayerNorm(norm).double()
    np.testing.assert_array_equal(ln.weight.numpy(), 1.0)
    with mg.no_grad():
        ln.weight.data = t(randn(*norm)).data
        ln.bias.data = t(randn(*norm)).data
    x = randn(*shape) * 3 + 1
    axes = tuple(range(len(shape) - len(norm), len(shape)))
    m, v = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    ref = (x - m) / np.sqrt(v + 1e-5) * ln.weight.numpy() + ln.bias.numpy()
    np.testing.assert_allclose(ln(t(x)).numpy(), ref, rtol=1e-10, atol=1e-12)
    small = (2,) + shape[1:] if len(shape) > 2 else shape
    check_module_grads(ln, t(randn(*small), True), gradgrad=len(shape) == 2)
    with pytest.raises(ValueError, match="does not end with normalized_shape"):
        ln(t(randn(3, 7)))
    assert repr(nn.LayerNorm(8)) == "LayerNorm((8,), eps=1e-05, elementwise_affine=True)"


def test_batchnorm_matches_torch_if_available():
    torch = pytest.importorskip("torch")
    for momentum in (0.1, None):
        ours = nn.BatchNorm2d(3, momentum=momentum).double()
        theirs = torch.nn.BatchNorm2d(3, momentum=momentum).double()
        for _ in range(3):
            x = randn(4, 3, 2, 5) * 2 + 1
            np.testing.assert_allclose(ours(t(x)).numpy(),
                                       theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10,
                                       atol=1e-12)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            np.testing.assert_allclose(getattr(ours, name).numpy(),
                                       getattr(theirs, name).numpy(), rtol=1e-12, err_msg=name)
        ours.eval()
        theirs.eval()
        x = randn(2, 3, 2, 2)
        np.testing.assert_allclose(ours(t(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(),
                                   rtol=1e-10)
        # the state_dict keys are PyTorch's
        assert list(ours.state_dict()) == list(theirs.state_dict())


# ----------------------------------------------------------------------------- GELU ... GroupNorm
def test_hardtanh_module(backend_name):
    x = np.array([[-3.0, -0.5, 0.25], [0.69, 1.5, 2.0]])
    m = nn.Hardtanh(-0.5, 0.7)
    np.testing.assert_array_equal(m(t(x)).numpy(), np.clip(x, -0.5, 0.7))
    inside = t(np.array([[-0.4, 0.1], [0.3, 0.6]]), True)
    assert mg.gradcheck(m, (inside,)) and mg.gradgradcheck(m, (inside,))
    np.testing.assert_array_equal(nn.Hardtanh()(t(x)).numpy(), np.clip(x, -1, 1))
    assert repr(m) == "Hardtanh(min_val=-0.5, max_val=0.7)"
    with pytest.raises(ValueError, match=r"max_val \(1.0\) must be greater than min_val \(1.0\)"):
        nn.Hardtanh(1.0, 1.0)


def test_group_norm_module(backend_name):
    gn = nn.GroupNorm(2, 6)
    assert list(gn.state_dict()) == ["weight", "bias"]
    np.testing.assert_array_equal(gn.weight.numpy(), 1.0)
    np.testing.assert_array_equal(gn.bias.numpy(), 0.0)
    assert gn.weight.dtype == mg.float32 and gn.weight.backend == backend_name
    gn.double()
    with mg.no_grad():
        gn.weight.data = t(randn(6)).data
        gn.bias.data = t(randn(6)).data
    x = randn(3, 6, 2, 3) * 2 + 1
    g = x.reshape(3, 2, -1)
    xhat = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-5))
    ref = xhat.reshape(x.shape) * gn.weight.numpy()[:, None, None] + \
        gn.bias.numpy()[:, None, None]
    np.testing.assert_allclose(gn(t(x)).numpy(), ref, rtol=1e-10, atol=1e-12)
    gn.eval()     # no running statistics: eval mode gives the same
    np.testing.assert_allclose(gn(t(x)).numpy(), ref, rtol=1e-10, atol=1e-12)
    check_module_grads(gn, t(randn(2, 6, 2, 1), True), gradgrad=True)
    assert list(nn.GroupNorm(3, 6, affine=False).state_dict()) == []
    assert list(nn.GroupNorm(3, 6, bias=False).state_dict()) == ["weight"]
    assert repr(nn.GroupNorm(3, 6)) == "GroupNorm(3, 6, eps=1e-05, affine=True, bias=True)"
    with pytest.raises(ValueError, match=r"num_channels \(6\) must be divisible by num_groups "
                                         r"\(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="num_groups must be a positive int"):
        nn.GroupNorm(0, 6)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 6, ...\), got \(2, 4\)"):
        gn(t(randn(2, 4)))


def test_new_loss_and_similarity_modules_match_functional(backend_name):
    F = mg.functional
    x, y = mg.randn(6, 4), mg.randn(6, 4)
    logq, p = x.log_softmax(1), y.softmax(1)
    for module, expected in [
            (nn.SmoothL1Loss(), F.smooth_l1_loss(x, y)),
            (nn.SmoothL1Loss(reduction="sum", beta=0.5), F.smooth_l1_loss(x, y, "sum", 0.5)),
            (nn.HuberLoss(delta=2.0), F.huber_loss(x, y, delta=2.0)),
            (nn.HuberLoss(reduction="none"), F.huber_loss(x, y, "none")),
            (nn.CosineSimilarity(), F.cosine_similarity(x, y)),
            (nn.CosineSimilarity(dim=0, eps=1e-3), F.cosine_similarity(x, y, 0, 1e-3))]:
        np.testing.assert_array_equal(module(x, y).numpy(), expected.numpy())
    np.testing.assert_array_equal(nn.KLDivLoss(reduction="batchmean")(logq, p).numpy(),
                                  F.kl_div(logq, p, "batchmean").numpy())
    np.testing.assert_array_equal(
        nn.KLDivLoss(reduction="sum", log_target=True)(logq, p.log()).numpy(),
        F.kl_div(logq, p.log(), "sum", log_target=True).numpy())
    with pytest.warns(UserWarning, match="batchmean"):
        nn.KLDivLoss()(logq, p)
    assert repr(nn.KLDivLoss(reduction="batchmean")) == "KLDivLoss(reduction='batchmean')"
    with pytest.raises(ValueError, match="KLDivLoss: reduction must be one of"):
        nn.KLDivLoss(reduction="avg")
    with pytest.raises(ValueError, match="HuberLoss: reduction must be one of"):
        nn.HuberLoss(reduction="batchmean")     # only kl_div has batchmean


def test_new_modules_match_torch_if_available():
    torch = pytest.importorskip("torch")
    x, y = randn(4, 6, 3), randn(4, 6, 3)
    for ours, theirs, inputs in [
            (nn.GELU(), torch.nn.GELU(), [x]),
            (nn.GELU("tanh"), torch.nn.GELU("tanh"), [x]),
            (nn.SiLU(), torch.nn.SiLU(), [x]),
            (nn.Hardtanh(-0.3, 0.4), torch.nn.Hardtanh(-0.3, 0.4), [x]),
            (nn.GroupNorm(3, 6, eps=1e-3), torch.nn.GroupNorm(3, 6, eps=1e-3), [x]),
            (nn.SmoothL1Loss(beta=0.3), torch.nn.SmoothL1Loss(beta=0.3), [x, y]),
            (nn.HuberLoss(delta=0.3), torch.nn.HuberLoss(delta=0.3), [x, y]),
            (nn.KLDivLoss(reduction="batchmean", log_target=True),
             torch.nn.KLDivLoss(reduction="batchmean", log_target=True), [x, y]),
            (nn.CosineSimilarity(dim=2), torch.nn.CosineSimilarity(dim=2), [x, y])]:
        ours.double()
        theirs.double()
        if not hasattr(ours, "reduction"):   # loss modules show a non-default reduction
            assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for v in theirs.state_dict().values():     # random affine parameters, copied over
            v.copy_(torch.tensor(randn(*v.shape)))
        ours.load_state_dict({k: t(v.numpy()) for k, v in theirs.state_dict().items()})
        mine = [t(a, True) for a in inputs]
        ref_in = [torch.tensor(a, requires_grad=True) for a in inputs]
        out, ref = ours(*mine), theirs(*ref_in)
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=repr(ours))
        out.sum().backward()
        ref.sum().backward()
        for a, b in zip(mine, ref_in):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-9, atol=1e-10,
                                       err_msg=repr(ours))
