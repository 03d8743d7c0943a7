"""Print the package's import structure: modules, arrows, circles, and imports inside functions.

Why: the layout rule (no import circle, no arrow from a lower stage to a higher one, no
project import hidden inside a function unless registration or an optional dependency needs
it) is easy to break silently; this script and ``tests/test_layout.py`` make it visible.

    python scripts/import_graph.py            # figures for the whole package
    python scripts/import_graph.py --edges    # also every arrow
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = "memcollab_eval"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function?, line) for every import of the package's own modules."""
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        found.append((alias.name, in_function, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                if base.split(".")[0] == PACKAGE:
                    for alias in child.names:
                        found.append((f"{base}.{alias.name}", in_function, child.lineno))
            visit(child, nested)

    visit(tree, False)
    return found


def graph(root: Path) -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """Module -> modules it imports at module level; plus imports inside functions (module, target, line)."""
    files = {module_name(root, p): p for p in (root / PACKAGE).rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    inner: list[tuple[str, str, int]] = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        for target, in_function, line in project_imports(tree, module, path.name == "__init__.py"):
            while target not in files and "." in target:  # "pkg.mod.name" -> "pkg.mod"
                target = target.rsplit(".", 1)[0]
            if target == module or target not in files:
                continue
            if in_function:
                inner.append((module, target, line))
            else:
                edges[module].add(target)
    return edges, inner


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


# The stages from the ground floor up. A module may import only from its own floor or below;
# the command aliases (``__main__`` modules and ``build.py``) stand on the top floor.
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("errors", "sample_fields", "jsonl_store", "packaged_data", "adapters", "categorize", "verify")),
    ("memory", ("bank", "embedding", "categorize_llm", "retrieval_llm", "retrieve", "subsets")),
    ("agent protocol and scoring", ("agent", "scoring")),
    ("run configuration", ("config",)),
    ("models and the Hydra runner", ("models", "hydra_app")),
    ("evaluation and construction", ("evaluation", "construct")),
    ("leaderboard and attribution", ("leaderboard",)),
    ("CI commands", ("ci",)),
)
ENTRY_POINTS = ("__main__", "build")  # module names (last part) that only hand over to a command


def floor_of(module: str) -> int:
    """The floor of a module: its first part below the package decides, entry aliases on top."""
    parts = module.split(".")[1:]
    if not parts or parts[-1] in ENTRY_POINTS:
        return len(FLOORS)
    for level, (_, names) in enumerate(FLOORS):
        if parts[0] in names:
            return level
    raise KeyError(f"{module} is on no floor: add it to FLOORS in {__file__}")


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Arrows from a lower floor to a higher one."""
    return sorted((m, t) for m, targets in edges.items() for t in targets if floor_of(t) > floor_of(m))


def packages(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph one level up (``memcollab_eval.<first part>``), command aliases left out:
    ``bank/__main__.py`` hands over to the CI command without making the store depend on it."""
    def top(m: str) -> str:
        return ".".join(m.split(".")[:2])
    out: dict[str, set[str]] = {}
    for m, targets in edges.items():
        if floor_of(m) == len(FLOORS):
            continue
        out.setdefault(top(m), set()).update(top(t) for t in targets if top(t) != top(m))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--edges", action="store_true", help="print every arrow")
    args = parser.parse_args(argv)
    edges, inner = graph(Path(args.root))
    inner = sorted(set(inner))
    found = circles(edges)
    n_edges = sum(len(v) for v in edges.values())
    try:
        up = upward(edges)
    except KeyError as exc:
        print(f"error: {exc.args[0]}")
        return 1
    print(f"modules: {len(edges)}  arrows: {n_edges}  circles: {len(found)}  arrows running back up: {len(up)}  "
          f"imports inside functions: {len(inner)}")
    pk = packages(edges)
    print(f"packages and top-level modules: {len(pk)}  arrows between them: {sum(len(v) for v in pk.values())}  "
          f"circles between them: {len(circles(pk))}  floors: {len(FLOORS) + 1}")
    for component in found:
        print("circle:", " <-> ".join(component))
    for module, target in up:
        print(f"running back up: {module} (floor {floor_of(module)}) -> {target} (floor {floor_of(target)})")
    for module, target, line in inner:
        print(f"inside a function: {module}:{line} -> {target}")
    if args.edges:
        for module in sorted(edges):
            for target in sorted(edges[module]):
                print(f"{module} -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
