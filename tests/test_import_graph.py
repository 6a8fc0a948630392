"""No import cycle inside the package: every module of bkdattr/ is parsed (not imported), every import of a
bkdattr module (at module level and inside functions, relative and absolute) is an edge, and the strongly
connected components of that graph must all be single modules without a self-edge."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bkdattr"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = ("bkdattr",) + path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of `from <level dots><module> import ...` written in `importer`."""
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _known(name: str, modules: set[str]) -> str | None:
    """The longest bkdattr module `name` names or lies inside (an imported attribute maps to its module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                # `from . import x` / `from .pkg import mod` import submodules; `from .mod import f` the module
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
                targets = [t for t in targets if t != base] or [base]
                targets = [t if t in modules else base for t in targets]
            for target in targets:
                found = _known(target, modules)
                if found is not None and found != name:
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_package_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles inside bkdattr/: " + "; ".join(" <-> ".join(c) for c in found)


def test_a_cycle_through_a_function_level_relative_import_is_found(tmp_path):
    root = tmp_path / "bkdattr"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("from .sub import b\n")
    (root / "sub" / "b.py").write_text("def f():\n    import bkdattr.c\n")
    (root / "c.py").write_text("def g():\n    from .a import h\n")
    (root / "d.py").write_text("from . import a\n")
    graph = import_graph(root)
    assert graph["bkdattr.a"] == {"bkdattr.sub.b"} and graph["bkdattr.d"] == {"bkdattr.a"}
    assert cycles(graph) == [["bkdattr.a", "bkdattr.c", "bkdattr.sub.b"]]


def test_the_package_docstring_maps_every_module():
    """bkdattr/__init__.py's map names each top-level module and sub-package once, and nothing that is gone."""
    import bkdattr

    listed = {line.split()[0] for line in bkdattr.__doc__.splitlines()
              if line.startswith("  ") and len(line.split()) > 2 and line.split()[1] == "--"}
    present = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {
        p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert listed == present, (sorted(present - listed), sorted(listed - present))


MAX_FUNCTION_LINES = 60
MAX_SCRIPT_LINES = 25


def test_no_function_in_the_package_is_over_60_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def test_no_workflow_script_is_over_25_lines():
    scripts = sorted((PACKAGE.parent / "workflow_scripts").glob("*.py"))
    assert scripts
    long = [f"{p.name} ({n} lines)" for p in scripts
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_SCRIPT_LINES]
    assert not long, long


def silent_function_imports(root: Path = PACKAGE) -> list[str]:
    """Imports inside functions with no comment on their line or on a line of the function above them."""
    silent = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)) and not any(
                        "#" in line for line in lines[node.lineno - 1:inner.lineno]):
                    silent.append(f"{path.relative_to(root.parent)}:{inner.lineno} {lines[inner.lineno - 1].strip()}")
    return silent


def test_every_import_inside_a_function_says_why():
    """An import inside a function hides an edge of the import graph: each one left says why, on its line or
    above its run of imports (typically: it keeps torch out of the torch-free plots env)."""
    assert not silent_function_imports()
