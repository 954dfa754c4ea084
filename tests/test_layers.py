"""The layers of minigrad, enforced on the source: each module imports only the
layers below it (or its own), found by parsing every import, lazy ones included.

    1. backend, dtypes         import nothing of minigrad
    2. tensor                  imports only layer 1
    3. ops, conv, factories    import layers 1-3
    4. functional, nn, optim, data, serialization, gradcheck, viz    layers 1-4
    kernels                    layers 1-4 and itself; imported only by minigrad/__init__.py
    testing                    anything of minigrad; imported by no module of minigrad
    5. models                  minigrad; never tests

and no file in minigrad/ imports models/ or tests/.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

LAYERS = {
    "minigrad.backend": 1, "minigrad.dtypes": 1,
    "minigrad.tensor": 2,
    "minigrad.ops": 3, "minigrad.conv": 3, "minigrad.factories": 3,
    "minigrad.functional": 4, "minigrad.nn": 4, "minigrad.optim": 4, "minigrad.data": 4,
    "minigrad.serialization": 4, "minigrad.gradcheck": 4, "minigrad.viz": 4,
}


def _module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path, source):
    """Absolute names of everything ``source`` (the text of ``path``) imports,
    relative imports resolved."""
    tree = ast.parse(source)
    package = _module_name(path) if path.name == "__init__.py" else \
        _module_name(path).rsplit(".", 1)[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            submodules = [f"{mod}.{a.name}" for a in node.names if _is_module(f"{mod}.{a.name}")]
            names += submodules or [mod]          # "from . import ops" imports minigrad.ops
    return names


def _unit(name):
    """minigrad.nn.layers -> minigrad.nn; minigrad.kernels.conv -> minigrad.kernels."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def _is_module(name):
    parts = name.split(".")
    return (ROOT.joinpath(*parts).with_suffix(".py").exists()
            or ROOT.joinpath(*parts, "__init__.py").exists())


def violations(files, sources=None):
    """Every import that breaks the rules; ``sources`` may stand in for file texts."""
    out = []
    for path in files:
        me = _module_name(path)
        unit = _unit(me)
        source = (sources or {}).get(path) or path.read_text()
        for name in imports_of(path, source):
            if not name.startswith(("minigrad", "models", "tests")) or not _is_module(name):
                continue
            dep = _unit(name)
            rel = f"{path.relative_to(ROOT)} imports {name}"
            if me.startswith("minigrad") and dep.split(".")[0] in ("models", "tests"):
                out.append(f"{rel}: the engine never imports models/ or tests/")
            elif me.startswith("models") and dep.startswith("tests"):
                out.append(f"{rel}: models never import tests/")
            elif dep == "minigrad.kernels" and unit not in ("minigrad", "minigrad.kernels"):
                out.append(f"{rel}: kernels are imported only by minigrad/__init__.py, "
                           "which registers them")
            elif dep == "minigrad.testing" and me.startswith("minigrad") and \
                    unit != "minigrad.testing":
                out.append(f"{rel}: the engine does not depend on its test harness")
            elif unit in LAYERS and dep in LAYERS and LAYERS[dep] > LAYERS[unit]:
                out.append(f"{rel}: layer {LAYERS[unit]} may not import layer {LAYERS[dep]}")
            elif unit in LAYERS and dep in ("minigrad", "minigrad.kernels", "minigrad.testing"):
                out.append(f"{rel}: a layer imports the modules below it, not the package "
                           "or the kernels")
            elif unit in LAYERS and LAYERS[unit] == 1 and dep != unit:
                out.append(f"{rel}: layer 1 imports nothing of minigrad")
            elif unit in LAYERS and LAYERS[unit] <= 2 and dep not in LAYERS:
                out.append(f"{rel}: layer {LAYERS[unit]} imports nothing but layer 1")
            elif unit == "minigrad.kernels" and dep in ("minigrad", "minigrad.testing"):
                out.append(f"{rel}: kernels build on layers 1-4 only")
    return out


def _files(*folders):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_every_module_imports_only_the_layers_below_it():
    found = violations(_files("minigrad", "models"))
    assert not found, "\n".join(found)


def test_every_engine_module_has_a_layer():
    for path in _files("minigrad"):
        unit = _unit(_module_name(path))
        assert unit in LAYERS or unit in ("minigrad", "minigrad.kernels", "minigrad.testing"), \
            f"{path.relative_to(ROOT)} is in no layer: add it to LAYERS here and in the README"


def test_the_layer_checker_can_fail():
    bad = {
        "minigrad/backend.py": "from .tensor import Tensor\n",
        "minigrad/dtypes.py": "import minigrad.backend\n",
        "minigrad/tensor.py": "def f():\n    from . import ops\n",
        "minigrad/ops.py": "from .functional import linear\n",
        "minigrad/conv.py": "import minigrad.kernels\n",
        "minigrad/optim.py": "from models import cli\n",
        "minigrad/functional.py": "from .testing import check_function\n",
        "minigrad/nn/layers.py": "from ... import tests\nfrom tests import conftest\n",
        "minigrad/kernels/conv.py": "from ..testing import strategies\n",
        "models/cli.py": "import tests.conftest\n",
    }
    for rel, source in bad.items():
        path = ROOT / rel
        assert violations([path], {path: source}), f"{rel}: {source!r} was not flagged"
    ok = ROOT / "minigrad/conv.py"
    assert not violations([ok], {ok: "from .ops import sum\nfrom .tensor import Function\n"})
