"""The reader's guide cannot drift from the code: every `path::name` it cites
must name a file that exists and a function/class (or Class.method) defined in it.
The guide's >>> examples themselves run as doctests (pytest's --doctest-glob)."""
import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
REF = re.compile(r"`([\w./-]+\.py)::([\w.]+)`")


def _references():
    refs = []
    for doc in DOCS:
        for m in REF.finditer(doc.read_text()):
            refs.append(pytest.param(doc.name, m.group(1), m.group(2),
                                     id=f"{doc.name}:{m.group(1)}::{m.group(2)}"))
    return refs


def _defined(tree, dotted):
    scope = tree.body
    for part in dotted.split("."):
        found = None
        for node in scope:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and node.name == part:
                found = node
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == part for t in node.targets):
                found = node
        if found is None:
            return False
        scope = getattr(found, "body", [])
    return True


def test_guide_exists_and_cites_code():
    assert DOCS, "docs/guide.md is missing"
    assert len(_references()) >= 20


@pytest.mark.parametrize("doc,path,name", _references())
def test_reference_exists(doc, path, name):
    file = ROOT / path
    assert file.is_file(), f"{doc} cites {path}, which does not exist"
    tree = ast.parse(file.read_text())
    assert _defined(tree, name), f"{doc} cites {path}::{name}, which is not defined there"
