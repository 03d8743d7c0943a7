"""The layout rules of issue 14, checked on the source tree: no import circle, no arrow from a
lower floor to a higher one, project imports inside functions only where registration needs
them, and no folder named ``build`` inside the package (linters and pytest skip it)."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import import_graph  # noqa: E402

# (module, imported module): why the import must wait until the function runs
ALLOWED_INSIDE_FUNCTIONS = {
    ("memcollab_eval.agent.agent_lm", "memcollab_eval.models"): "registers llama_cpp when a wrapper is built",
    ("memcollab_eval.agent.agent_lm", "memcollab_eval.models.scripted"): "registers the scripted double",
    ("memcollab_eval.models", "memcollab_eval.models.embedded"): "lazy re-export (runpy warns otherwise)",
    ("memcollab_eval.models", "memcollab_eval.models.llamacpp_lm"): "llama-cpp-python is the optional cpu extra",
}


@pytest.fixture(scope="module")
def graph():
    return import_graph.graph(REPO)


def test_no_import_circle(graph):
    edges, _ = graph
    assert import_graph.circles(edges) == []
    assert import_graph.circles(import_graph.packages(edges)) == []


def test_no_arrow_runs_back_up(graph):
    edges, _ = graph
    assert import_graph.upward(edges) == []


def test_every_module_stands_on_a_floor(graph):
    edges, _ = graph
    for module in edges:
        import_graph.floor_of(module)  # raises KeyError naming the module


def test_project_imports_inside_functions_are_the_allowed_ones(graph):
    _, inner = graph
    found = {(m, t) for m, t, _ in inner}
    assert found <= set(ALLOWED_INSIDE_FUNCTIONS), sorted(found - set(ALLOWED_INSIDE_FUNCTIONS))


def test_the_upward_arrow_detector_can_fail():
    edges = {"memcollab_eval.verify.code_exec": {"memcollab_eval.leaderboard.board"},
             "memcollab_eval.leaderboard.board": set()}
    assert import_graph.upward(edges) == [("memcollab_eval.verify.code_exec", "memcollab_eval.leaderboard.board")]
    assert import_graph.circles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]


def test_no_folder_named_build_in_the_package():
    assert not [p for p in (REPO / "memcollab_eval").rglob("build") if p.is_dir()]


@pytest.mark.parametrize("name", ["load_bank", "MemoryEntry", "Retriever", "RetrievalConfig", "check_answer",
                                  "run_code", "Verdict", "evaluate", "build_bank", "build_leaderboard",
                                  "UsageError"])
def test_public_api_names_resolve(name):
    package = importlib.import_module("memcollab_eval")
    assert name in package.__all__
    assert getattr(package, name) is not None


def test_importing_the_package_loads_no_stage():
    code = "import sys, memcollab_eval; print(sorted(m for m in sys.modules if m.startswith('memcollab_eval')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['memcollab_eval']"
