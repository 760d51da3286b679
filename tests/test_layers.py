"""Data flows one way: a module never imports from a layer above its own.

Every module of the package is parsed (not imported) and each `import`/`from ... import`,
including those inside functions, is checked against the layers below. Same-layer imports are
allowed; cycles inside a layer would show up as import errors in the rest of the suite.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mgctag

PACKAGE = Path(mgctag.__file__).parent

# Bottom-up. A module may import from its own layer and the ones before it.
LAYERS: list[set[str]] = [
    {"errors", "config", "options", "data", "atomicio", "jsonable"},
    {"audio", "library", "models", "separate", "tags", "genres", "content", "segments", "export"},
    {"journal", "undo", "writes", "similar", "libmap", "explain", "auralise", "explain_report"},
    {"pipeline", "engine_ray"},
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


def test_no_module_imports_a_higher_layer() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        own = _layer(_own_top(path))
        for line, module in _imports(path):
            top = _top(module)
            if top is not None and _layer(top) > own:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert wrong == []


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
