"""The house holds its drawing (docs/architecture.md): imports only point down the layers, the package's
import graph has no cycle, and nothing below the CLI parses arguments or prints."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "varattn"

# Lowest first; a module may import from its own layer or any layer below it, never above.
LAYERS = {
    "latent": 0,
    "errors": 1, "memory": 1, "stopping": 1,
    "device": 1,
    "config": 2,
    "data": 3,
    "modules": 4,
    "models": 5,
    "decoding": 6,  # beam search over any model; a task's validation may decode
    "tasks": 7,
    "training": 8,
    "analysis": 9,
    "api": 10,
    "export": 10,
    "serve": 11,
    "cli": 12,
    "__main__": 13,
    "__init__": 13,  # the package root only re-exports the API, lazily
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> str:
    parts = name.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def resolve(target: str, names: list[str], known: dict[str, Path]) -> list[str]:
    """The package modules an ``import``/``from target import names`` statement loads."""
    found = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
    if len(found) < len(names) and target in known:
        found.append(target)
    return found


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported package module, line) for every import in the file, at any depth (lazy ones too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import — write it absolute"
            if (node.module or "").split(".")[0] == "varattn" and [a.name for a in node.names] != ["__version__"]:
                edges += [(m, node.lineno) for m in resolve(node.module, [a.name for a in node.names], known)]
        elif isinstance(node, ast.Import):
            edges += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "varattn"]
    return edges


def test_every_module_has_a_layer():
    unknown = {layer_of(name) for name in modules()} - set(LAYERS)
    assert not unknown, f"modules outside the drawing: {unknown} — add them to docs/architecture.md and LAYERS"


def test_imports_point_down():
    known = modules()
    upward = []
    for name, path in known.items():
        mine = LAYERS[layer_of(name)]
        for target, line in imports(path, known):
            if LAYERS[layer_of(target)] > mine:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert not upward, "\n".join(upward)


CAPABILITY_HOLDERS = ("model", "task", "run", "loaded")


def test_capabilities_are_types_not_attribute_probes():
    """A model's or task's capabilities are asked by type (models/protocol.py, tasks/base.py), never by
    ``hasattr``/``getattr`` on the object: a probe silently takes the fallback when a name is misspelt."""
    probes = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr") \
                    and node.args:
                probed = ast.unparse(node.args[0]).split(".")[-1]
                if probed in CAPABILITY_HOLDERS or probed.endswith("_model"):
                    probes.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert not probes, "\n".join(probes)


def test_latent_core_imports_nothing_else_of_the_package():
    known = modules()
    for name, path in known.items():
        if layer_of(name) == "latent":
            assert all(layer_of(t) == "latent" for t, _ in imports(path, known)), name


def test_import_graph_has_no_cycle():
    known = modules()
    graph = {name: sorted({t for t, _ in imports(path, known) if t != name}) for name, path in known.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)


@pytest.mark.parametrize("forbidden", ["argparse"])
def test_nothing_below_the_cli_parses_arguments(forbidden):
    for name, path in modules().items():
        if LAYERS[layer_of(name)] >= LAYERS["cli"]:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name != forbidden for a in node.names), f"{name}:{node.lineno} imports {forbidden}"
            if isinstance(node, ast.ImportFrom):
                assert node.module != forbidden, f"{name}:{node.lineno} imports from {forbidden}"


def test_nothing_below_the_cli_prints():
    offenders = []
    for name, path in modules().items():
        if LAYERS[layer_of(name)] >= LAYERS["cli"]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, "print() below the CLI: " + ", ".join(offenders)


def test_every_mode_has_a_record_and_an_objective():
    """One list of modes: each record carries its objective, and objective() runs each by its name."""
    from varattn.latent import MODE_RECORDS, MODES, objectives

    assert tuple(MODE_RECORDS) == MODES == objectives.MODES
    assert all(callable(record.loss) and record.name == name for name, record in MODE_RECORDS.items())


def test_mode_names_live_in_the_core_only():
    """Outside latent/, no code compares a mode's name with a literal: it asks the record."""
    names = set(__import__("varattn.latent", fromlist=["MODES"]).MODES) - {"soft"}
    offenders = []
    for name, path in modules().items():
        if layer_of(name) in ("latent", "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    if isinstance(side, ast.Constant) and side.value in names | {"soft"}:
                        offenders.append(f"{name}:{node.lineno} compares with {side.value!r}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "startswith" and node.args
                    and isinstance(node.args[0], ast.Constant) and node.args[0].value == "vae-"):
                offenders.append(f"{name}:{node.lineno} tests the 'vae-' prefix")
    assert not offenders, "\n".join(offenders)
