"""mg.viz: the DOT text of a graph (checked without Graphviz) and its rendering."""
import re
import shutil

import pytest

import minigrad as mg


def _parse(dot):
    nodes = dict(re.findall(r'^\s+(n\d+) \[label="([^"]*)"', dot, re.M))
    edges = re.findall(r"^\s+(n\d+) -> (n\d+)", dot, re.M)
    return nodes, [(nodes[a], nodes[b]) for a, b in edges]


def test_one_node_per_function_and_leaf_edges_as_data_flows(backend_name):
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    w = mg.tensor([3.0, 4.0], requires_grad=True)
    y = ((x * w).tanh() + x).sum()
    nodes, edges = _parse(mg.viz.to_dot(y, names={"x": x, "w": w, "y": y}))
    labels = sorted(nodes.values())
    assert labels == sorted(["Add", "Mul", "Tanh", "Sum", "x\\n(2,) float32",
                             "w\\n(2,) float32", "y\\n() float32"])
    assert ("x\\n(2,) float32", "Mul") in edges and ("w\\n(2,) float32", "Mul") in edges
    assert ("Mul", "Tanh") in edges and ("Tanh", "Add") in edges
    assert ("x\\n(2,) float32", "Add") in edges          # x is used twice: two edges, one node
    assert ("Sum", "y\\n() float32") in edges
    assert sum(1 for v in nodes.values() if v.startswith("x")) == 1


def test_constants_show_their_value_and_edges_their_shape(backend_name):
    x = mg.tensor([[1.0, 2.0]], requires_grad=True)
    dot = mg.viz.to_dot(x * 2.0)
    assert '"2\\n() float32"' in dot and 'label="(1, 2) float32"' in dot


def test_backward_graph_is_the_graph_create_graph_builds(backend_name):
    x = mg.tensor(2.0, requires_grad=True)
    y = x * x * x
    nodes, edges = _parse(mg.viz.to_dot(y, names={"x": x, "y": y}, backward=True))
    assert "dy/dx\\n() float32" in nodes.values()
    # the derivative 3x^2 is built from the backward of two Muls: more Muls, and an Add
    assert sum(v == "Mul" for v in nodes.values()) >= 3 and "Add" in nodes.values()
    (g,) = mg.grad(x * x * x, x, create_graph=True)
    assert g.item() == 12.0


def test_a_freed_graph_says_what_to_do(backend_name):
    x = mg.tensor(1.0, requires_grad=True)
    y = x * x
    y.backward()
    with pytest.raises(RuntimeError, match="freed by backward"):
        mg.viz.to_dot(y)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed "
                    "(apt-get install graphviz)")
def test_draw_renders_svg_and_png(tmp_path):
    x = mg.tensor(1.0, requires_grad=True)
    y = (x * 3.0).exp()
    assert "<svg" in open(mg.viz.draw(y, path=tmp_path / "g.svg")).read()
    assert open(mg.viz.draw(y, path=tmp_path / "g.png"), "rb").read(4) == b"\x89PNG"
    with pytest.raises(ValueError, match=r"\.svg, \.png or \.pdf"):
        mg.viz.draw(y, path=tmp_path / "g.gif")


def test_draw_without_graphviz_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        mg.viz.draw(mg.tensor(1.0, requires_grad=True) * 2.0, path=tmp_path / "g.svg")


def test_the_docstring_example_runs():
    import doctest
    failed, attempted = doctest.testmod(mg.viz)
    assert attempted >= 3 and failed == 0
