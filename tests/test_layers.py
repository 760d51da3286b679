"""Data flows one way: a package never imports from its own layer's neighbours or from above,
and no module imports itself back through others.

Every module of the package is parsed (not imported) and each `import`/`from ... import`,
including those inside functions, is checked: against the layer order (per top-level package or
module), and for cycles between modules (inside a package too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import mgctag

PACKAGE = Path(mgctag.__file__).parent

# Bottom-up. A package may import only from the layers before its own (not from a neighbour in
# its own layer): the foundations, the library's inputs (tags, audio) and the library itself,
# separation, the models, the features (writes, segments, search; explain draws with search's
# figures), the analysis stage, the Ray engine, the pipeline, training, the command line.
LAYERS: list[set[str]] = [
    {"errors"},
    {"options"},
    {"config"},
    {"jsonable", "atomicio", "data"},
    {"tags"},
    {"audio"},
    {"library"},
    {"content", "genres"},
    {"separate"},
    {"models"},
    {"writes", "segments", "search"},
    {"explain"},
    {"analysis"},
    {"engine_ray"},
    {"pipeline"},
    {"train"},
    {"cli", "__main__"},
]


def _layer(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"mgctag.{top} is in no layer: add it to LAYERS in {__file__}")


def _top(module: str) -> str | None:
    """`mgctag.models.tagger` -> `models`; None for anything outside the package."""
    parts = module.split(".")
    return parts[1] if parts[0] == "mgctag" and len(parts) > 1 else None


def _imports(path: Path, root: Path = PACKAGE.parent) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved."""
    rel = path.relative_to(root).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "mgctag":  # from mgctag import pipeline (not: import __version__)
                found += [
                    (node.lineno, f"mgctag.{alias.name}")
                    for alias in node.names
                    if (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file()
                ]
            else:
                found.append((node.lineno, module))
    return found


def _own_top(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_no_package_imports_its_layer_or_above() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        own_top = _own_top(path)
        own = _layer(own_top)
        for line, module in _imports(path):
            top = _top(module)
            if top is not None and top != own_top and _layer(top) >= own:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert wrong == []


def _import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in it): `from a import b` names the
    module a.b when b is one, else a itself."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        package = list(rel.parts[:-1])
        found = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    found.add(sub if sub in paths else module)
        graph[name] = (found & set(paths)) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_no_import_cycle_between_modules_even_inside_functions() -> None:
    """Wherever the import statement sits (at the top, in a function, under TYPE_CHECKING)."""
    assert _cycles(_import_graph()) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """The walk must find imports inside functions and `from mgctag import x` forms."""
    source = "def f():\n    from mgctag import pipeline\n    import mgctag.cli.app\n"
    path = tmp_path / "mgctag" / "audio" / "_layer_probe.py"  # a copy of the layout: the
    path.parent.mkdir(parents=True)  # package folder may not be writable (an ordinary user)
    path.write_text(source, "utf-8")
    tops = [_top(m) for _, m in _imports(path, root=tmp_path)]
    assert tops == ["pipeline", "cli"]
    assert all(_layer(t) > _layer("audio") for t in tops)


def test_the_low_layers_do_not_import_torch_at_module_level() -> None:
    """errors/config/options are read by `mgctag --help`: they must stay cheap to import."""
    for name in ("errors", "config", "options"):
        tree = ast.parse((PACKAGE / f"{name}.py").read_text("utf-8"))
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        modules = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)]
        assert not any(m.split(".")[0] in ("torch", "numpy", "librosa") for m in modules), name


def test_the_package_never_imports_the_tools() -> None:
    """tools/ (benchmarks, converters, experiments) sits above everything: it may import mgctag,
    mgctag never imports it (it is not installed with the package)."""
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, module in _imports(path)
        if module.split(".")[0] == "tools"
    ]
    assert wrong == []
