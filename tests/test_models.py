"""The rules of models/: a model file never imports another model file (shared parts
live in modules that are not models, and those import no model); each model file's
train_step is on its first screen, after the docstring; every option has a help text."""
import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
FIRST_SCREEN = 80     # lines after the module docstring


def _is_model(source):
    """A model file is a command: it ends with ``raise SystemExit(run_cli(...))``."""
    return "run_cli(" in source and '__name__ == "__main__"' in source


def _model_files():
    return sorted(p.stem for p in MODELS.glob("*.py") if _is_model(p.read_text()))


def _imported_models(source):
    """The names of the models/ modules that ``source`` imports (models.x, from
    models import x, from models.x import y)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names
                    if a.name.startswith("models.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "models":
                out |= {a.name for a in node.names}
            elif node.module.startswith("models."):
                out.add(node.module.split(".")[1])
    return out


def _import_violations(sources):
    """``sources``: {module name: source}. Every import of a model file by a model
    file, and of a model file by a shared module."""
    models = {name for name, src in sources.items() if _is_model(src)}
    out = []
    for name, src in sorted(sources.items()):
        for imported in sorted(_imported_models(src) & models - {name}):
            kind = "model file" if name in models else "shared module"
            out.append(f"models/{name}.py ({kind}) imports the model file models/{imported}.py")
    return out


def test_no_model_file_imports_another_and_shared_modules_import_no_model():
    sources = {p.stem: p.read_text() for p in MODELS.glob("*.py")}
    assert len(_model_files()) == 8
    violations = _import_violations(sources)
    assert not violations, "move what is shared into models/blocks.py, evaluation.py, " \
        "figures.py, metrics.py or losses.py:\n" + "\n".join(violations)


def test_the_import_rule_checker_can_fail():
    main = 'if __name__ == "__main__":\n    raise SystemExit(run_cli(X))\n'
    sources = {"vae": "from models.autoencoder import draw_rows\n" + main,
               "gan": "import models.vae\n" + main,
               "cvae": "from models import vae, losses\n" + main,
               "autoencoder": "from models.blocks import encoder\n" + main,
               "blocks": "from models.gan import Generator\n",
               "losses": "import minigrad\n"}
    found = "\n".join(_import_violations(sources))
    assert "vae.py (model file) imports the model file models/autoencoder.py" in found
    assert "gan.py (model file) imports the model file models/vae.py" in found
    assert "cvae.py (model file) imports the model file models/vae.py" in found
    assert "blocks.py (shared module) imports the model file models/gan.py" in found
    assert len(found.splitlines()) == 4


@pytest.mark.parametrize("name", _model_files())
def test_train_step_is_on_the_first_screen(name):
    source = (MODELS / f"{name}.py").read_text()
    tree = ast.parse(source)
    doc = tree.body[0]
    assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant), \
        f"models/{name}.py starts with its formula, as a docstring"
    steps = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "train_step"]
    assert len(steps) == 1, f"models/{name}.py defines one train_step"
    after = steps[0].lineno - doc.end_lineno
    assert after <= FIRST_SCREEN, (f"models/{name}.py: train_step starts {after} lines after "
                                   f"the docstring (at most {FIRST_SCREEN})")


def _experiment(name):
    from models.cli import Experiment
    module = importlib.import_module(f"models.{name}")
    (cls,) = [v for v in vars(module).values() if isinstance(v, type)
              and issubclass(v, Experiment) and v is not Experiment and v.__module__ ==
              module.__name__]
    return cls


@pytest.mark.parametrize("name", _model_files())
def test_every_option_says_what_it_does_and_the_description_is_short(name):
    from models.cli import build_parser
    cls = _experiment(name)
    assert cls.name == name
    parser = build_parser(cls)
    no_help = [a.option_strings[-1] for a in parser._actions
               if a.option_strings and not (a.help or "").strip()]
    assert not no_help, f"python -m models.{name}: options without help: {no_help}"
    assert len(parser.description.splitlines()) <= 6      # not the whole module docstring
