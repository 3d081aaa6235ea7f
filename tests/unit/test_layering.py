"""The layers of factory/ (docs/architecture.md): each sub-package imports only from the ones before it in
bin/layoutdoc.py's ORDER; cli.py and __main__.py, the entry points, may import anything; context.py (the run
context) sits between the data sources and the stages that use it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests import bintools

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "factory"


def _order() -> list[str]:
    order = list(bintools.load("layoutdoc").ORDER)
    order.insert(order.index("ops"), "context")  # imports adapters, spec and oci; publish takes it
    return order


def _layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def imports_between_layers() -> dict[tuple[str, str], list[str]]:
    """(importing layer, imported layer) -> the files where it happens."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _layer_of(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "factory":
                names = [node.module] if node.module != "factory" else [f"factory.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.split(".")[0] == "factory"]
            for name in names:
                parts = name.split(".")
                if len(parts) > 1 and parts[1] != source and parts[1] != "__version__":
                    found.setdefault((source, parts[1]), []).append(str(path.relative_to(ROOT)))
    return found


def violations(order: list[str]) -> list[str]:
    rank = {layer: i for i, layer in enumerate(order)}
    out = []
    for (source, target), files in sorted(imports_between_layers().items()):
        if source in ("cli", "__main__"):
            continue
        if source not in rank or target not in rank:
            out.append(f"{source} -> {target}: a layer not in bin/layoutdoc.py's ORDER ({files[0]})")
        elif rank[target] >= rank[source]:
            out.append(f"{source} imports {target}, a later layer ({', '.join(sorted(set(files)))})")
    return out


def test_every_sub_package_imports_only_earlier_layers():
    assert violations(_order()) == []


def test_an_import_of_a_later_layer_is_found():
    order = _order()
    # render imports core; with core placed after render in the order, that import is a violation
    swapped = [layer for layer in order if layer != "core"] + ["core"]
    assert any(v.startswith("render imports core") for v in violations(swapped))
