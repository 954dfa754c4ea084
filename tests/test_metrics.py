"""models/metrics.py: the Frechet distance against a direct NumPy/SciPy evaluation
and its closed-form properties; the inception score's closed forms."""
import math

import numpy as np  # host-side: references and test data built on the host
import pytest
from scipy import linalg  # host-side: reference matrix square root

import minigrad as mg
from models import metrics as M


def _t(a, dtype="float64"):
    return mg.from_numpy(np.asarray(a, dtype=dtype))


def _reference_fd(a, b):
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


def test_gaussian_fit_matches_numpy(backend_name):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 5)) @ rng.normal(size=(5, 5)) + 3.0
    mu, cov = M.gaussian_fit(_t(a, "float32"))
    np.testing.assert_allclose(mu.numpy(), a.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cov.numpy(), np.cov(a, rowvar=False), rtol=1e-4, atol=1e-4)


def test_frechet_distance_matches_scipy_and_is_symmetric(backend_name):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 6))
    b = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) * 0.7 + 0.4
    ref = _reference_fd(a, b)
    assert ref > 1.0                                  # a case far from 0
    fd_ab = M.frechet_distance(_t(a), _t(b))
    fd_ba = M.frechet_distance(_t(b), _t(a))
    assert fd_ab == pytest.approx(ref, rel=1e-8, abs=1e-9)
    assert fd_ba == pytest.approx(fd_ab, rel=1e-8, abs=1e-9)


def test_frechet_distance_zero_for_identical_sets(backend_name):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(100, 8))
    assert abs(M.frechet_distance(_t(a), _t(a))) < 1e-8
    # a permutation of the same set: identical moments
    assert abs(M.frechet_distance(_t(a), _t(a[::-1]))) < 1e-8


def test_frechet_distance_closed_form_for_shifted_and_scaled_gaussians():
    # N(m1, s1^2 I) vs N(m2, s2^2 I) in d dims: ||m1 - m2||^2 + d (s1 - s2)^2
    d = 4
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    fd = M.frechet_distance_from_stats(mu1, np.eye(d) * 4.0, mu2, np.eye(d) * 1.0)
    assert fd == pytest.approx(d * 0.25 + d * (2.0 - 1.0) ** 2, rel=1e-10)


def test_frechet_distance_singular_covariances():
    # rank-deficient covariances (fewer samples than dimensions) stay finite
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 10)), rng.normal(size=(5, 10))
    fd = M.frechet_distance(_t(a), _t(b))
    assert math.isfinite(fd) and fd > 0


def test_frechet_distance_shape_errors(backend_name):
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 2\)"):
        M.frechet_distance(mg.zeros(4, 3), mg.zeros(4, 2))
    with pytest.raises(ValueError, match=r"\(1, 3\)"):
        M.gaussian_fit(mg.zeros(1, 3))


def test_inception_score_closed_forms(backend_name):
    n_classes = 7
    # confident and evenly spread predictions: IS = n_classes
    one_hot = np.eye(n_classes)[np.arange(70) % n_classes]
    assert M.inception_score_from_probs(_t(one_hot)) == pytest.approx(n_classes, rel=1e-10)
    # uniform predictions: IS = 1
    uniform = np.full((20, n_classes), 1.0 / n_classes)
    assert M.inception_score_from_probs(_t(uniform)) == pytest.approx(1.0, abs=1e-10)
    # every sample confidently the same class: IS = 1 (no diversity)
    same = np.eye(n_classes)[np.zeros(15, dtype=int)]
    assert M.inception_score_from_probs(_t(same)) == pytest.approx(1.0, abs=1e-10)
    # confident over 3 of the classes evenly: IS = 3
    three = np.eye(n_classes)[np.arange(30) % 3]
    assert M.inception_score_from_probs(_t(three)) == pytest.approx(3.0, rel=1e-10)


def test_inception_score_from_logits_matches_numpy(backend_name):
    rng = np.random.default_rng(4)
    logits = rng.normal(scale=3.0, size=(50, 10))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    py = p.mean(0)
    ref = math.exp(np.mean(np.sum(p * (np.log(p) - np.log(py)), axis=1)))
    assert 1.5 < ref < 10
    assert M.inception_score(_t(logits)) == pytest.approx(ref, rel=1e-10)
    assert M.inception_score(_t(logits, "float32")) == pytest.approx(ref, rel=1e-4)


class _ToyClassifier(mg.nn.Module):
    """features = the 784 pixels' 4 quadrant means; logits = a fixed linear map."""

    def __init__(self):
        super().__init__()
        self.head = mg.nn.Linear(4, 3)

    def features(self, x):
        q = x.reshape(x.shape[0], 2, 14, 2, 14).mean(axis=(2, 4))
        return q.reshape(x.shape[0], 4)

    def forward(self, x):
        return self.head(self.features(x))


class _Data:
    def __init__(self, rng):
        self.train_x = rng.uniform(size=(60, 1, 28, 28)).astype(np.float32)
        self.test_x = rng.uniform(size=(40, 1, 28, 28)).astype(np.float32)


class _Run:
    def __init__(self, rng):
        self.data = _Data(rng)

    def tensor(self, a):
        return mg.from_numpy(np.asarray(a))


def test_sample_quality_against_direct_computation(backend_name):
    rng = np.random.default_rng(5)
    run = _Run(rng)
    clf = _ToyClassifier()
    quality = M.SampleQuality(run, n=30, classifier=clf)
    fake = (rng.uniform(size=(30, 1, 28, 28)) ** 2).astype(np.float32)
    scores = quality(fake)
    # direct: features of the first 30 test images vs the fakes, batched the same way
    ref_fd = M.frechet_distance(clf.features(run.tensor(fake)),
                                clf.features(run.tensor(run.data.test_x[:30])))
    assert scores["fid"] == pytest.approx(ref_fd, rel=1e-5)
    assert scores["fid"] > 1e-3
    with mg.no_grad():
        ref_is = M.inception_score(clf(run.tensor(fake)))
    assert scores["inception_score"] == pytest.approx(ref_is, rel=1e-6)
    # mode coverage: the scorer's predicted classes, counted
    with mg.no_grad():
        pred = np.argmax(clf(run.tensor(fake)).numpy(), axis=1)
    counts = np.bincount(pred, minlength=3)
    assert scores["class_histogram"] == counts.tolist() and sum(counts) == 30
    assert scores["rarest_class_share"] == pytest.approx(counts.min() / 30)
    # the real test images against themselves score 0; the floor uses train images
    assert abs(quality(run.data.test_x[:30])["fid"]) < 1e-6
    assert quality.real_floor()["fid"] > 0


def test_in_class_shares_draws_real_digits_of_each_label():
    from benchmarks.scorer_sensitivity import in_class_shares
    from minigrad.data import load_dataset
    data = load_dataset("mnist-10k")
    counts = [3, 0, 1, 0, 0, 0, 0, 0, 0, 2]
    images = in_class_shares(data, counts)
    assert images.shape == (6, 1, 28, 28)
    first_of = {c: np.flatnonzero(data.train_y == c) for c in (0, 2, 9)}
    np.testing.assert_array_equal(images, data.train_x[np.concatenate(
        [first_of[0][:3], first_of[2][:1], first_of[9][:2]])])
    with pytest.raises(ValueError, match="too few"):
        in_class_shares(data, [10 ** 6] + [0] * 9)
