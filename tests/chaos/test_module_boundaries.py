"""The chaos runner's modules meet through public names: a variant of the run (the cluster's)
extends :class:`~actorstate.chaos.runner.ChaosRun`, never another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import actorstate.chaos

_PACKAGE = Path(actorstate.chaos.__file__).parent


def test_no_chaos_module_imports_a_private_name_of_another() -> None:
    """No module of actorstate.chaos imports a name starting with an underscore from another
    module of the package (the cluster used to subclass the runner's private _Run)."""
    crossing = []
    for path in sorted(_PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                crossing += [
                    f"{path.relative_to(_PACKAGE)}: {alias.name} from {'.' * node.level}{node.module or ''}"
                    for alias in node.names
                    if alias.name.startswith("_") and alias.name != "__future__"
                ]
    assert crossing == []
