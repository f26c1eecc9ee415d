"""The layering the plug-in design depends on (ARCHITECTURE.md), checked on the source:

- imports only run downwards: leaf modules (tiling, conditioning, symmetry) → config → io, data, metrics,
  nets, diffusion → methods → tasks → presets → engine → cli;
- engine/ and cli/ never name a method or a task: no string in their code (docstrings aside)
  is a registered method or task name, so adding one never edits them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import irctl
from irctl.methods import METHODS
from irctl.tasks import TASKS

PACKAGE = Path(irctl.__file__).parent

LAYERS = {
    "tiling": 0,
    "conditioning": 0,
    "symmetry": 0,
    "config": 1,
    "io": 2,
    "data": 2,
    "metrics": 2,
    "nets": 2,
    "diffusion": 2,
    "methods": 3,
    "tasks": 4,
    "presets": 5,
    "engine": 6,
    "cli": 7,
    "__main__": 8,
}


def _layer(module: str) -> int:
    parts = module.split(".")
    return 0 if len(parts) == 1 else LAYERS[parts[1]]


def _modules() -> list[tuple[str, Path]]:
    return [
        (".".join(("irctl", *path.relative_to(PACKAGE).with_suffix("").parts)), path)
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def test_every_package_module_has_a_layer() -> None:
    for module, _path in _modules():
        _layer(module.removesuffix(".__init__"))


def test_imports_only_run_downwards() -> None:
    upward = []
    for module, path in _modules():
        mine = _layer(module.removesuffix(".__init__"))
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("irctl.") and _layer(name) > mine:
                    upward.append(f"{module} imports {name}")
    assert upward == []


def _code_strings(tree: ast.AST) -> list[str]:
    """String constants that are code, not docstrings."""
    docstrings = {
        id(body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and (body := node.body)
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_engine_and_cli_never_name_a_method_or_a_task() -> None:
    names = set(METHODS) | set(TASKS)
    found = []
    for module, path in _modules():
        if module.split(".")[1] not in ("engine", "cli"):
            continue
        found += [
            f"{module}: {s!r}" for s in _code_strings(ast.parse(path.read_text())) if s in names
        ]
    assert found == []


def test_only_the_safe_reader_touches_pickles() -> None:
    """Restore, train and benchmark read safetensors only: no module but the safe reader
    (irctl/io/torch_pickle.py) imports pickle or calls torch.load, and only an importer may
    import that reader."""
    offenders = []
    for module, path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            imported = []
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported = [node.module]
            called = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("torch", "pickle")
            )
            if module != "irctl.io.torch_pickle" and ("pickle" in imported or called):
                offenders.append(f"{module} unpickles")
            if "irctl.io.torch_pickle" in imported and "import" not in module:
                offenders.append(f"{module} imports the pickle reader")
    assert offenders == []
