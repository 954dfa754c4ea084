"""Shared test set-up: hypothesis profiles and the backend parametrisation.

Profiles: ``ci`` (derandomised, bounded, no deadline; the default under CI=true)
and ``thorough`` (many more examples): ``HYPOTHESIS_PROFILE=thorough pytest``.
"""
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
def tiny_classifier(tmp_path, monkeypatch):
    """An untrained width-4 toolkit classifier on disk (``$MINIGRAD_CLASSIFIER_DIR``),
    so that the sample-quality metrics and label fidelity never train one, nor read or
    write ``runs/`` in the working directory."""
    from models.blocks import ConvNet
    folder = tmp_path / "clf"
    folder.mkdir()
    with mg.backend("numpy"):
        mg.manual_seed(0)
        model = ConvNet(10, 4)
        mg.save({"dataset": "mnist-10k", "width": 4, "state": model.state_dict()},
                folder / "classifier-mnist-10k.npz")
    monkeypatch.setenv("MINIGRAD_CLASSIFIER_DIR", str(folder))
    return folder
