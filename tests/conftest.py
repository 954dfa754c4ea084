"""Shared test set-up: hypothesis profiles, the backend parametrisation, and the
kernels-on / kernels-off runs.

Profiles: ``ci`` (derandomised, bounded, no deadline; the default under CI=true)
and ``thorough`` (many more examples): ``HYPOTHESIS_PROFILE=thorough pytest``.

The op registry tests (tests/test_ops.py) and the tests that run a model
command (``run_cli``) run twice: with the kernels of minigrad/kernels/ on, and on
the reading path alone. ``MINIGRAD_KERNELS=off python -m pytest`` runs the whole
suite on the reading path.
"""
import inspect
import os

import pytest
from hypothesis import HealthCheck, settings

import minigrad as mg
from minigrad.backend import BackendError, get_backend

settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("dev", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE",
                                     "ci" if os.environ.get("CI") else "dev"))


def _runs_both_ways(metafunc):
    """test_ops.py, and the tests that run a model command: they write to tmp_path in a
    module that calls run_cli."""
    if metafunc.module.__name__.rsplit(".", 1)[-1] == "test_ops":
        return "spec" in metafunc.fixturenames          # the registry's checks
    if not getattr(metafunc.module, "RUN_BOTH_WAYS", True):
        return False
    try:
        calls_cli = "run_cli(" in inspect.getsource(metafunc.module)
    except (OSError, TypeError):
        return False
    return calls_cli and "tmp_path" in metafunc.fixturenames


def pytest_generate_tests(metafunc):
    if _runs_both_ways(metafunc) and mg.kernels.is_enabled():
        metafunc.fixturenames.append("kernel_mode")
        metafunc.parametrize("kernel_mode", ["kernels", "reference"], indirect=True)


@pytest.fixture
def kernel_mode(request):
    """"kernels": the registered kernels on; "reference": the reading path alone."""
    with mg.kernels.set_enabled(request.param == "kernels"):
        yield request.param


def _backend_params():
    params = []
    for name in ("numpy", "strict", "cupy"):
        try:
            get_backend(name)
            params.append(pytest.param(name, id=name))
        except BackendError as e:
            params.append(pytest.param(name, id=name, marks=pytest.mark.skip(
                reason=f"{name} backend unavailable here: {e}")))
    return params


BACKENDS = _backend_params()


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    """Run the test once per backend (numpy, strict, and cupy where a GPU is present),
    with that backend current."""
    with mg.backend(request.param):
        mg.manual_seed(0)
        yield request.param


@pytest.fixture
def shipped_scorer(tmp_path, monkeypatch):
    """The scorer shipped in the package, which every sample metric uses; the test runs
    in tmp_path (so nothing lands in ``runs/`` of the working directory), and the
    scorer's file must be unchanged afterwards."""
    from models.evaluation import SCORER_PATH
    before = SCORER_PATH.read_bytes()
    monkeypatch.chdir(tmp_path)
    yield SCORER_PATH
    assert SCORER_PATH.read_bytes() == before, "a run changed the shipped scorer"


@pytest.fixture
def tiny_classifier(shipped_scorer):
    """``shipped_scorer`` under its name from before the scorer shipped (issue 18)."""
    return shipped_scorer
