"""Siamese networks: the metric-learning section of models/losses.py (contrastive and
triplet losses, stable and pairwise distances, in-batch triplet miners) against
direct NumPy evaluations, finite differences and hand-built examples; then the
model in models/siamese.py (weight sharing, a short training run, the CLI)."""
import numpy as np  # host-side: references and test data built on the host
import pytest

import minigrad as mg
from models import losses as L


def _t(a, dtype="float64", requires_grad=False):
    """A tensor on the current backend from a host array."""
    t = mg.from_numpy(np.asarray(a, dtype=dtype))
    return t.requires_grad_(True) if requires_grad else t


def _labels(a):
    return mg.from_numpy(np.asarray(a, dtype=np.int64))


def _np_contrastive(x1, x2, y, margin):
    d = np.sqrt(((x1 - x2) ** 2).sum(1))
    return y * d ** 2 + (1 - y) * np.maximum(margin - d, 0) ** 2


def _np_triplet(a, p, n, alpha):
    return np.maximum(((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + alpha, 0)


# ----------------------------------------------------------------------------- contrastive
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_contrastive_matches_numpy_formula(backend_name, reduction):
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(2, 16, 3))
    y = rng.integers(0, 2, size=16)
    want = _np_contrastive(x1, x2, y, margin=2.5)
    want = {"mean": want.mean(), "sum": want.sum(), "none": want}[reduction]
    got = L.contrastive_loss(_t(x1), _t(x2), _labels(y), margin=2.5, reduction=reduction)
    assert np.allclose(got.numpy(), want, rtol=1e-9, atol=1e-9)
    # both terms are present: some pairs are inside the margin, some same-class
    d = np.sqrt(((x1 - x2) ** 2).sum(1))
    assert (y == 1).any() and ((y == 0) & (d < 2.5)).any()


def test_contrastive_label_convention_y1_means_same_class(backend_name):
    """Y = 1 (same class) pulls together: cost D^2. Y = 0 (different classes) pushes
    apart: cost max(m - D, 0)^2. Hadsell et al.'s convention would swap the rows."""
    a = _t([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    b = _t([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.6, 0.8]])     # D = 0, 0, 2, 1
    y = _labels([1, 0, 1, 0])
    got = L.contrastive_loss(a, b, y, margin=1.5, reduction="none").numpy()
    # same pair at D=0: 0; different pair at D=0: m^2; same at D=2: 4; different at D=1: 0.25
    assert np.allclose(got, [0.0, 2.25, 4.0, 0.25], atol=1e-9)
    # a different-class pair beyond the margin costs nothing
    far = L.contrastive_loss(a[:1], b[2:3], _labels([0]), margin=1.5).item()
    assert far == 0.0
    # float 0/1 labels behave like integer ones
    yf = _t([1.0, 0.0, 1.0, 0.0])
    assert np.allclose(L.contrastive_loss(a, b, yf, margin=1.5, reduction="none").numpy(), got)


def test_contrastive_gradcheck_away_from_the_hinge(backend_name):
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(2, 10, 3))
    y = np.array([1, 0] * 5)
    d = np.sqrt(((x1 - x2) ** 2).sum(1))
    margin = 2.0
    keep = np.abs(d - margin) > 0.1
    assert keep.sum() >= 7 and ((y == 0) & (d < margin) & keep).any()
    x1, x2, y = x1[keep], x2[keep], y[keep]
    a, b = _t(x1, requires_grad=True), _t(x2, requires_grad=True)
    assert mg.gradcheck(lambda u, v: L.contrastive_loss(u, v, _labels(y), margin, "none"),
                        (a, b))
    assert mg.gradcheck(lambda u, v: L.contrastive_loss(u, v, _labels(y), margin), (a, b))


def test_contrastive_zero_loss_and_gradient_when_hinge_satisfied(backend_name):
    rng = np.random.default_rng(2)
    x1 = rng.normal(size=(6, 4))
    x2 = x1 + 3.0                           # D = 6 > margin for every pair
    a, b = _t(x1, requires_grad=True), _t(x2, requires_grad=True)
    loss = L.contrastive_loss(a, b, _labels([0] * 6), margin=1.0)
    loss.backward()
    assert loss.item() == 0.0
    assert np.all(a.grad.numpy() == 0) and np.all(b.grad.numpy() == 0)
    # while a same-class pair at the same place has zero loss and zero gradient too
    c = _t(x1, requires_grad=True)
    loss = L.contrastive_loss(c, _t(x1), _labels([1] * 6))
    loss.backward()
    assert loss.item() == 0.0 and np.all(c.grad.numpy() == 0)


def test_contrastive_errors(backend_name):
    with pytest.raises(ValueError, match=r"\(4,\).*\(3,\)"):
        L.contrastive_loss(mg.zeros(4, 2), mg.zeros(4, 2), mg.zeros(3))
    with pytest.raises(ValueError, match=r"\(4, 2\), \(4, 3\)"):
        L.contrastive_loss(mg.zeros(4, 2), mg.zeros(4, 3), mg.zeros(4))
    with pytest.raises(ValueError, match="margin"):
        L.contrastive_loss(mg.zeros(4, 2), mg.zeros(4, 2), mg.zeros(4), margin=0)
    with pytest.raises(ValueError, match="reduction"):
        L.contrastive_loss(mg.zeros(4, 2), mg.zeros(4, 2), mg.zeros(4), reduction="avg")


# ----------------------------------------------------------------------------- stable distances
def test_distance_gradient_at_coincident_points_is_finite(backend_name):
    x = np.array([[0.3, -1.2, 2.0], [1.0, 1.0, 1.0]])
    a, b = _t(x, requires_grad=True), _t(x.copy(), requires_grad=True)
    d = L.euclidean_distance(a, b)
    d.sum().backward()
    assert np.all(np.isfinite(a.grad.numpy())) and np.allclose(a.grad.numpy(), 0)
    assert np.allclose(d.numpy(), 0, atol=1e-5)
    # the naive sqrt(sum of squares) is NaN there: the test above can fail
    a2 = _t(x, requires_grad=True)
    diff = a2 - _t(x)
    with np.errstate(divide="ignore", invalid="ignore"):    # the 0/0 it is about
        (diff * diff).sum(axis=-1).sqrt().sum().backward()
    assert np.isnan(a2.grad.numpy()).any()
    # a different-class pair at D = 0 still gets a finite gradient from the hinge
    c = _t(x, requires_grad=True)
    L.contrastive_loss(c, _t(x), _labels([0, 0]), margin=1.0).backward()
    assert np.all(np.isfinite(c.grad.numpy()))
    # and so does the diagonal of the pairwise-distance matrix
    e = _t(x, requires_grad=True)
    L.pairwise_distances(e).sum().backward()
    assert np.all(np.isfinite(e.grad.numpy()))


def test_euclidean_distance_values_and_gradcheck(backend_name):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 5, 4))
    got = L.euclidean_distance(_t(x), _t(y)).numpy()
    assert np.allclose(got, np.linalg.norm(x - y, axis=1), rtol=1e-9)
    assert mg.gradcheck(L.euclidean_distance, (_t(x, requires_grad=True),
                                               _t(y, requires_grad=True)))


def test_pairwise_distances_match_nested_loops(backend_name):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(7, 3))
    y = rng.normal(size=(5, 3))
    want = np.array([[np.sum((x[i] - y[j]) ** 2) for j in range(5)] for i in range(7)])
    assert np.allclose(L.pairwise_squared_distances(_t(x), _t(y)).numpy(), want, atol=1e-12)
    assert np.allclose(L.pairwise_distances(_t(x), _t(y)).numpy(), np.sqrt(want), atol=1e-9)
    self_d = L.pairwise_squared_distances(_t(x)).numpy()
    assert self_d.shape == (7, 7) and np.all(self_d >= 0)
    assert np.allclose(np.diag(self_d), 0, atol=1e-12)
    # non-contiguous input: a transposed tensor
    xt = _t(np.ascontiguousarray(x.T)).transpose()
    assert np.allclose(L.pairwise_squared_distances(xt, _t(y)).numpy(), want, atol=1e-12)
    a, b = _t(x, requires_grad=True), _t(y, requires_grad=True)
    assert mg.gradcheck(L.pairwise_distances, (a, b))
    assert mg.gradcheck(lambda u: L.pairwise_distances(u)[0:3, 3:7], (a,))
    with pytest.raises(ValueError, match=r"\(7, 3\).*\(5, 2\)"):
        L.pairwise_squared_distances(_t(x), _t(y[:, :2]))


# ----------------------------------------------------------------------------- triplet
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_triplet_matches_numpy_formula(backend_name, reduction):
    rng = np.random.default_rng(5)
    a, p, n = rng.normal(size=(3, 20, 4))
    want = _np_triplet(a, p, n, alpha=0.7)
    assert (want == 0).any() and (want > 0).any()
    want = {"mean": want.mean(), "sum": want.sum(), "none": want}[reduction]
    got = L.triplet_loss(_t(a), _t(p), _t(n), alpha=0.7, reduction=reduction)
    assert np.allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)


def test_triplet_hand_built_margin(backend_name):
    # ||a-p||^2 = 1, ||a-n||^2 = 4
    a, p, n = _t([[0.0, 0.0]]), _t([[1.0, 0.0]]), _t([[0.0, 2.0]])
    assert L.triplet_loss(a, p, n, alpha=0.2).item() == 0.0        # 1 - 4 + 0.2 < 0
    assert np.isclose(L.triplet_loss(a, p, n, alpha=3.5).item(), 0.5)
    assert np.isclose(L.triplet_loss(a, n, p, alpha=0.0).item(), 3.0)   # P and N swapped


def test_triplet_gradcheck_and_zero_gradient_when_satisfied(backend_name):
    rng = np.random.default_rng(6)
    a, p, n = rng.normal(size=(3, 12, 3))
    margin_slack = ((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + 1.0
    keep = np.abs(margin_slack) > 0.1
    ts = [_t(v[keep], requires_grad=True) for v in (a, p, n)]
    assert mg.gradcheck(lambda *u: L.triplet_loss(*u, alpha=1.0, reduction="none"), ts)
    # satisfied triplets: N far away
    ta, tp, tn = (_t(a, requires_grad=True), _t(a + 0.1, requires_grad=True),
                  _t(a + 5.0, requires_grad=True))
    loss = L.triplet_loss(ta, tp, tn, alpha=1.0)
    loss.backward()
    assert loss.item() == 0.0
    for t in (ta, tp, tn):
        assert np.all(t.grad.numpy() == 0)


def test_triplet_errors(backend_name):
    with pytest.raises(ValueError, match="alpha"):
        L.triplet_loss(mg.zeros(3, 2), mg.zeros(3, 2), mg.zeros(3, 2), alpha=-1)
    with pytest.raises(ValueError, match=r"\(3, 2\), \(3, 2\), \(2, 2\)"):
        L.triplet_loss(mg.zeros(3, 2), mg.zeros(3, 2), mg.zeros(2, 2))


# ----------------------------------------------------------------------------- miners
# A 1-D batch: class 0 at 0.0 and 1.2, class 1 at 0.5 and 8.0.
LINE = np.array([[0.0], [1.2], [0.5], [8.0]])
LINE_Y = [0, 0, 1, 1]


def _triplets(a, p, n):
    return sorted(zip(a.numpy().tolist(), p.numpy().tolist(), n.numpy().tolist()))


def test_batch_hard_picks_hardest_positive_and_negative(backend_name):
    got = _triplets(*L.mine_batch_hard(_t(LINE), _labels(LINE_Y)))
    # anchor 0: only positive 1; closest negative 2 (d^2 .25 < 64)
    # anchor 1: positive 0; negatives 2 (.49) and 3 (46.24) -> 2
    # anchor 2: positive 3; negatives 0 (.25) and 1 (.49) -> 0
    # anchor 3: positive 2; negatives 0 (64) and 1 (46.24) -> 1
    assert got == [(0, 1, 2), (1, 0, 2), (2, 3, 0), (3, 2, 1)]


def test_semihard_picks_closest_farther_negative_or_falls_back(backend_name):
    got = _triplets(*L.mine_semihard(_t(LINE), _labels(LINE_Y)))
    # (0,1): d_ap 1.44; negatives .25, 64 -> the one farther than P: 3
    # (1,0): d_ap 1.44; negatives .49, 46.24 -> 3
    # (2,3): d_ap 56.25; negatives .25, .49 are both closer -> fallback: the farthest, 1
    # (3,2): d_ap 56.25; negatives 64 (farther), 46.24 -> 0
    assert got == [(0, 1, 3), (1, 0, 3), (2, 3, 1), (3, 2, 0)]


def test_semihard_negative_lies_inside_the_margin_when_one_exists(backend_name):
    # anchor 0 at 0, positive 1 at 1 (d_ap 1); negatives at 1.1 (1.21), 1.3 (1.69), 3 (9), 0.5 (.25)
    e = np.array([[0.0], [1.0], [1.1], [1.3], [3.0], [0.5]])
    y = [0, 0, 1, 1, 1, 1]
    a, p, n = L.mine_semihard(_t(e), _labels(y))
    trip = dict(((ai, pi), ni) for ai, pi, ni in _triplets(a, p, n))
    assert trip[(0, 1)] == 2                       # 1 < 1.21 < 1 + alpha for alpha = 0.5
    d_ap, d_an = 1.0, 1.21
    assert d_ap < d_an < d_ap + 0.5
    # every anchor of class 1 has one positive per other class-1 member: 4 * 3 pairs + 2
    assert a.shape[0] == 2 + 4 * 3


def _brute_force(e, y, mode):
    """The miners' definitions with nested loops (host reference)."""
    d = ((e[:, None, :] - e[None, :, :]) ** 2).sum(-1)
    out = []
    for a in range(len(y)):
        pos = [p for p in range(len(y)) if y[p] == y[a] and p != a]
        neg = [n for n in range(len(y)) if y[n] != y[a]]
        if not pos or not neg:
            continue
        if mode == "hard":
            out.append((a, max(pos, key=lambda p: d[a, p]), min(neg, key=lambda n: d[a, n])))
            continue
        for p in pos:
            farther = [n for n in neg if d[a, n] > d[a, p]]
            n = min(farther, key=lambda n: d[a, n]) if farther else \
                max(neg, key=lambda n: d[a, n])
            out.append((a, p, n))
    return sorted(out)


@pytest.mark.parametrize("mode", ["hard", "semihard"])
def test_miners_match_brute_force_definitions(backend_name, mode):
    rng = np.random.default_rng(7)
    e = rng.normal(size=(24, 3))
    y = rng.integers(0, 5, size=24)
    y[0] = 9                                  # a class with one example: no positive, skipped
    miner = L.mine_batch_hard if mode == "hard" else L.mine_semihard
    got = _triplets(*miner(_t(e), _labels(y)))
    assert got == _brute_force(e, y, mode)
    assert 0 not in [t[0] for t in got]


def test_random_miner_valid_reproducible_and_uniform(backend_name):
    rng = np.random.default_rng(8)
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])         # class 3 has no positive
    e = _t(rng.normal(size=(10, 2)))
    mg.manual_seed(5)
    first = _triplets(*L.mine_random(e, _labels(y)))
    mg.manual_seed(5)
    assert _triplets(*L.mine_random(e, _labels(y))) == first
    assert [t[0] for t in first] == list(range(9))
    counts = np.zeros((10, 10))
    for _ in range(300):
        for a, p, n in _triplets(*L.mine_random(e, _labels(y))):
            assert y[a] == y[p] and a != p and y[n] != y[a]
            counts[a, p] += 1
    # anchor 5 (class 2) has 3 positives, each drawn about 100 times in 300
    assert np.all(np.abs(counts[5, [6, 7, 8]] - 100) < 40), counts[5]


def test_batch_triplet_loss_matches_mined_formula_and_gradcheck(backend_name):
    rng = np.random.default_rng(9)
    e = rng.normal(size=(12, 3))
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    for mode in ("hard", "semihard"):
        loss, count = L.batch_triplet_loss(_t(e), _labels(y), alpha=0.5, mining=mode)
        trips = np.array(_brute_force(e, y, mode))
        want = _np_triplet(e[trips[:, 0]], e[trips[:, 1]], e[trips[:, 2]], 0.5).mean()
        assert count == len(trips) and np.isclose(loss.item(), want, rtol=1e-9)
    et = _t(e, requires_grad=True)
    assert mg.gradcheck(lambda u: L.batch_triplet_loss(u, _labels(y), 0.5, "hard")[0], (et,))
    with pytest.raises(ValueError, match="mining"):
        L.batch_triplet_loss(et, _labels(y), mining="easy")
    with pytest.raises(ValueError, match="no anchor"):
        L.batch_triplet_loss(_t(e[:3]), _labels([0, 1, 2]))


# ----------------------------------------------------------------------------- the model
from models import evaluation as E  # noqa: E402
from models import figures as FIG  # noqa: E402
from models import siamese as S  # noqa: E402


def _images(rng, n):
    return _t(rng.uniform(size=(n, 1, 28, 28)))


def _grads(net):
    return [p.grad.numpy().copy() for p in net.parameters()]


def test_weight_sharing_both_branches_accumulate_into_one_parameter_set(backend_name):
    rng = np.random.default_rng(10)
    net = S.SiameseNet(embedding_dim=3, width=2, hidden=8).double()
    assert [id(p) for p in net.parameters()] == [id(p) for p in net.encoder.parameters()]
    x1, x2 = _images(rng, 4), _images(rng, 4)
    y = _labels([1, 0, 1, 0])

    def grads_of(make_loss):
        net.zero_grad()
        make_loss().backward()
        return _grads(net)

    both = grads_of(lambda: L.contrastive_loss(*net(x1, x2), y, margin=5.0))
    # each branch alone (the other held constant)
    first = grads_of(lambda: L.contrastive_loss(net(x1), net(x2).detach(), y, margin=5.0))
    second = grads_of(lambda: L.contrastive_loss(net(x1).detach(), net(x2), y, margin=5.0))
    for g, g1, g2 in zip(both, first, second):
        assert np.allclose(g, g1 + g2, rtol=1e-10, atol=1e-12)
    # both branches really contribute, and differently
    assert all(np.abs(g1).max() > 0 and np.abs(g2).max() > 0 for g1, g2 in zip(first, second))
    assert not np.allclose(first[0], second[0])
    # the training path (embed the batch once, index the pairs) is the same computation
    batched = grads_of(lambda: L.contrastive_loss(
        *(lambda e: (e[:4], e[4:]))(net(mg.cat([x1, x2]))), y, margin=5.0))
    for g, gb in zip(both, batched):
        assert np.allclose(g, gb, rtol=1e-10, atol=1e-12)
    # three branches (triplet) share the same parameters too
    a, p, n = net(x1, x2, _images(rng, 4))
    assert a.shape == p.shape == n.shape == (4, 3)


def test_balanced_pairs_in_a_batch(backend_name):
    y = np.array([0, 0, 1, 1, 1, 2, 3, 3, 0, 2])
    mg.manual_seed(3)
    first, second, same = L.balanced_pairs(_labels(y))
    f, s, sm = first.numpy(), second.numpy(), same.numpy()
    assert len(f) == 2 * len(y) and sm.sum() == len(y) == (sm == 0).sum()
    assert np.all((y[f] == y[s]) == (sm == 1)) and np.all(f != s)
    mg.manual_seed(3)
    again = L.balanced_pairs(_labels(y))
    assert np.array_equal(again[1].numpy(), s)
    # a class with one member has no positive partner: it is left out, balance kept
    y2 = np.array([0, 0, 1, 2, 2, 2])
    f2, s2, sm2 = (t.numpy() for t in L.balanced_pairs(_labels(y2)))
    assert 2 not in f2.tolist() and sm2.sum() == (sm2 == 0).sum() == 5


def test_fixed_test_pairs_and_triplets_are_balanced_valid_and_fixed():
    y = np.random.default_rng(11).integers(0, 10, size=500)
    y[7] = 10                                            # a class of one
    first, second, same = E.verification_pairs(y, 300, seed=1)
    assert same.sum() == 300 and len(same) == 600
    assert np.all((y[first] == y[second]) == (same == 1)) and np.all(first != second)
    assert np.array_equal(E.verification_pairs(y, 300, seed=1)[1], second)
    a, p, n = E.verification_triplets(y, 400, seed=2)
    assert np.all(y[a] == y[p]) and np.all(a != p) and np.all(y[a] != y[n])
    assert np.array_equal(E.verification_triplets(y, 400, seed=2)[2], n)


def test_roc_auc_and_best_threshold_match_brute_force():
    rng = np.random.default_rng(12)
    same = rng.integers(0, 2, size=200)
    dist = np.round(rng.normal(size=200) + 1.5 * (1 - same), 1)      # rounded: ties
    pos, neg = -dist[same == 1], -dist[same == 0]
    want_auc = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert np.isclose(E.roc_auc(-dist, same), want_auc, rtol=1e-12)
    cands = np.r_[dist.min() - 1, np.unique(dist)]
    want_acc = max(np.mean((dist <= t) == (same == 1)) for t in cands)
    acc, t = E.best_threshold_accuracy(dist, same)
    assert np.isclose(acc, want_acc) and np.isclose(np.mean((dist <= t) == (same == 1)), acc)
    assert E.roc_auc([0.0, 1.0], [0, 1]) == 1.0 and E.roc_auc([1.0, 0.0], [0, 1]) == 0.0


def test_knn_matches_brute_force(backend_name):
    rng = np.random.default_rng(13)
    train, query = rng.normal(size=(60, 3)), rng.normal(size=(25, 3))
    train_y = rng.integers(0, 4, size=60)
    d = ((query[:, None] - train[None]) ** 2).sum(-1)
    for k in (1, 5):
        want = []
        for row in d:
            nn_lab = train_y[np.argsort(row)[:k]]
            votes = np.bincount(nn_lab, minlength=4) + 0.5 * (np.arange(4) == nn_lab[0])
            want.append(np.argmax(votes))
        got = E.knn_predict(_t(train), _labels(train_y), _t(query), k=k, n_classes=4, chunk=7)
        assert np.array_equal(got.numpy(), want)
    acc = E.knn_accuracy(_t(train), _labels(train_y), _t(train), _labels(train_y), 1, 4)
    assert acc == 1.0                                    # every point is its own neighbour


def test_lda_projection_matches_the_textbook_solution_and_separates_classes():
    """Fisher's discriminant directions are the top eigenvectors of Sw^-1 Sb; on three
    classes that differ along a low-variance axis, LDA separates what PCA would not."""
    rng = np.random.default_rng(14)
    means = np.zeros((3, 5))
    means[:, 4] = [-1.0, 0.0, 1.0]                        # the classes differ along axis 4
    y = np.repeat(np.arange(3), 200)
    x = means[y] + rng.normal(size=(600, 5)) * np.array([5.0, 3.0, 2.0, 1.0, 0.1])
    got = FIG.lda_projection(x, y, x, dims=2)
    mean = x.mean(0)
    sw = sum((x[y == c] - x[y == c].mean(0)).T @ (x[y == c] - x[y == c].mean(0)) for c in range(3))
    sb = sum(200 * np.outer(x[y == c].mean(0) - mean, x[y == c].mean(0) - mean) for c in range(3))
    w, v = np.linalg.eig(np.linalg.solve(sw, sb))
    top = np.real(v[:, np.argsort(-np.real(w))[:2]])
    want = (x - mean) @ top
    for i in range(2):       # the same directions, up to scale and sign
        assert abs(np.corrcoef(got[:, i], want[:, i])[0, 1]) > 0.999
    # class means far apart on the first axis, relative to the spread in a class
    m = [got[y == c, 0].mean() for c in range(3)]
    assert min(abs(m[0] - m[1]), abs(m[1] - m[2])) > 3 * got[y == 0, 0].std()


# ----------------------------------------------------------------------------- training and the CLI
import json  # noqa: E402

from minigrad import optim  # noqa: E402
from minigrad.data import load_dataset  # noqa: E402
from models.cli import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    """600 training and 300 held-out digits of the bundled sample (host arrays)."""
    d = load_dataset("mnist-10k")
    return d.train_x[:600], d.train_y[:600], d.test_x[:300], d.test_y[:300]


def _knn1(net, train_x, train_y, test_x, test_y):
    with mg.no_grad():
        net.eval()
        tr, te = net(mg.from_numpy(train_x)), net(mg.from_numpy(test_x))
        net.train()
    return E.knn_accuracy(tr, _labels(train_y), te, _labels(test_y), k=1)


@pytest.mark.parametrize("loss", ["contrastive", "triplet"])
def test_short_training_improves_held_out_1nn_over_the_untrained_encoder(backend_name, digits,
                                                                         loss):
    train_x, train_y, test_x, test_y = digits
    mg.manual_seed(0)
    net = S.SiameseNet(embedding_dim=8, width=4, hidden=32)
    opt = optim.Adam(net.parameters(), lr=3e-3)
    before = _knn1(net, *digits)
    rng = np.random.default_rng(0)
    for epoch in range(3):
        order = rng.permutation(len(train_x))
        for s in range(0, len(order), 100):
            b = order[s:s + 100]
            x, y = mg.from_numpy(train_x[b]), _labels(train_y[b])
            e = net(x)
            if loss == "contrastive":
                first, second, same = L.balanced_pairs(y)
                value = L.contrastive_loss(e[first], e[second], same, margin=1.0)
            else:
                value, _ = L.batch_triplet_loss(e, y, alpha=1.0, mining="semihard")
            opt.zero_grad()
            value.backward()
            opt.step()
    after = _knn1(net, *digits)
    assert after > before + 0.12, (before, after)


def _cli(tmp_path, *argv, backend="numpy"):
    return run_cli(S.Siamese, ["--backend", backend, "--limit", "200", "--epochs", "1",
                               "--batch-size", "50", "--width", "2", "--hidden", "8", "--quiet",
                               "--out", str(tmp_path), *argv])


def _records(tmp_path):
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


FIGURES = ("siamese_embedding.png", "siamese_distances.png", "siamese_loss.png",
           "siamese_retrieval.png")


def test_cli_writes_metrics_and_figures_and_resumes(tmp_path):
    assert _cli(tmp_path) == 0
    recs = _records(tmp_path)
    assert [r.get("final", False) for r in recs] == [False, True]
    final = recs[-1]
    for key in ("roc_auc", "pair_acc", "knn1_acc", "knn5_acc", "raw_pixel_knn1_acc"):
        assert 0.0 <= final[key] <= 1.0, key
    assert "triplet_margin_frac" not in final and "loss" in recs[0] and "test_loss" in recs[0]
    # the raw-pixel baseline on 200 training digits is far above chance
    assert final["raw_pixel_knn1_acc"] > 0.6
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 1000, name
    ckpt = tmp_path / "checkpoint.npz"
    assert _cli(tmp_path, "--resume", str(ckpt), "--epochs", "2") == 0
    recs = _records(tmp_path)
    assert [r["epoch"] for r in recs] == [1, 2, 2] and recs[0]["loss"] == recs[0]["loss"]
    # resuming reproduces the uninterrupted run's second epoch
    straight = tmp_path / "straight"
    assert _cli(straight, "--epochs", "2") == 0
    assert np.isclose(_records(straight)[1]["loss"], recs[1]["loss"], rtol=1e-6)


def test_cli_skips_a_batch_without_pairs_and_tiny_test_splits_exit_2(tmp_path, capsys):
    # 201 examples in batches of 50: the last batch has one example, no pair
    assert _cli(tmp_path, "--limit", "201") == 0
    assert _records(tmp_path)[0]["loss"] > 0
    assert _cli(tmp_path / "tiny", "--limit", "1") == 2
    assert "raise --limit" in capsys.readouterr().err


def test_cli_triplet_on_the_strict_backend(tmp_path):
    assert _cli(tmp_path, "--loss", "triplet", "--mining", "semihard", "--embedding-dim", "4",
                backend="strict") == 0
    final = _records(tmp_path)[-1]
    assert 0.0 <= final["triplet_margin_frac"] <= final["triplet_order_frac"] <= 1.0
    for name in FIGURES:
        assert (tmp_path / name).exists(), name


@pytest.mark.parametrize("argv", [["--loss", "siamese"], ["--mining", "hardest"],
                                  ["--embedding-dim", "0"], ["--margin", "0"],
                                  ["--alpha", "-1"], ["--embedding-dim", "two"],
                                  ["--batch-size", "1"]])
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv):
    assert _cli(tmp_path, *argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err and "Traceback" not in err


def test_cli_help_states_the_label_convention(capsys):
    assert run_cli(S.Siamese, ["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Y=1 for a SAME-class pair" in out and "Hadsell" in out
    assert "--mining {random,semihard,hard}" in out and "--embedding-dim" in out


def test_one_triplet_margin_default_for_the_loss_and_the_cli(capsys):
    """FaceNet's alpha = 0.2 in triplet_loss, batch_triplet_loss and --alpha."""
    import inspect
    from models.cli import build_parser
    assert L.TRIPLET_ALPHA == 0.2
    for fn in (L.triplet_loss, L.batch_triplet_loss):
        assert inspect.signature(fn).parameters["alpha"].default == L.TRIPLET_ALPHA
    (alpha,) = [a for a in build_parser(S.Siamese)._actions if a.dest == "alpha"]
    assert alpha.default == L.TRIPLET_ALPHA and "FaceNet" in alpha.help


def test_normalize_puts_the_embeddings_on_the_unit_sphere(backend_name):
    mg.manual_seed(0)
    x = mg.rand(5, 1, 28, 28)
    plain = S.SiameseNet(4, 2, 8)
    unit = S.SiameseNet(4, 2, 8, normalize=True)
    unit.load_state_dict(plain.state_dict())
    e, u = plain(x).numpy(), unit(x).numpy()
    assert np.allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-6)
    assert np.allclose(u, e / np.linalg.norm(e, axis=1, keepdims=True), atol=1e-6)
    # the gradient goes through the normalisation (float64 gradcheck of F's last layer)
    w = mg.from_numpy(np.random.default_rng(0).normal(size=(3, 4))).requires_grad_(True)
    h = mg.from_numpy(np.random.default_rng(1).normal(size=(6, 3)))

    def loss(w):
        e = mg.functional.normalize(h @ w, dim=1)
        return L.triplet_loss(e[0:2], e[2:4], e[4:6], alpha=4.5)     # > 4: every hinge active
    assert loss(w).item() > 0 and mg.gradcheck(loss, (w,))


def test_cli_triplet_with_normalized_embeddings(tmp_path):
    assert _cli(tmp_path, "--loss", "triplet", "--normalize", "--embedding-dim", "4") == 0
    final = _records(tmp_path)[-1]
    assert 0.0 <= final["triplet_margin_frac"] <= final["triplet_order_frac"] <= 1.0
    assert final["threshold"] <= 2.0 + 1e-6          # unit vectors are at most 2 apart
