"""The layering of docs/INTERNALS.md holds in the code: every module is in the module map, and
no module imports one from a higher layer (imports under `if __name__ == "__main__"`, the CLI
trampolines, excepted)."""
from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

import pytest

_ROOT = pathlib.Path(__file__).resolve().parent.parent
_PACKAGE = _ROOT / "adapt_tf"


def _layer_map(text: str) -> dict[str, int]:
    """{module: layer} from the "Module map by layer" table."""
    section = text.split("## Module map by layer", 1)[1].split("\n## ", 1)[0]
    layers = {}
    for match in re.finditer(r"^\| (\d+) \| ([^|]+) \|", section, re.M):
        for name in re.findall(r"`([\w.]+)`", match.group(2)):
            layers[name] = int(match.group(1))
    return layers


def _unit(path: pathlib.Path) -> str:
    """A module's name in the map: subpackages count as one module."""
    parts = path.relative_to(_PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def _imports(source: str) -> set[str]:
    """The adapt_tf modules a source imports (at any depth), outside `__main__` blocks."""
    tree = ast.parse(source)
    skipped = {id(node) for statement in tree.body
               if isinstance(statement, ast.If) and "__main__" in ast.unparse(statement.test)
               for node in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "adapt_tf":
            inner = node.module.split(".")[1:]
            found.update(inner[:1] or [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("adapt_tf."))
    return found


def _package_imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(_PACKAGE.rglob("*.py")):
        if path.parent == _PACKAGE and path.stem == "__init__":
            continue  # the package's lazy re-exports of public names
        unit = _unit(path)
        graph.setdefault(unit, set()).update(_imports(path.read_text()) - {unit})
    return graph


def test_the_parser_reads_imports_at_any_depth_but_not_in_main_blocks():
    source = ("from adapt_tf import a, b as c\nimport adapt_tf.d\nfrom adapt_tf.e.f import g\n"
              "def h():\n    from adapt_tf import i\n"
              "if __name__ == '__main__':\n    from adapt_tf import j\n")
    assert _imports(source) == {"a", "b", "d", "e", "i"}


def test_every_module_is_in_the_map_and_imports_nothing_above_its_layer():
    layers = _layer_map((_ROOT / "docs" / "INTERNALS.md").read_text())
    graph = _package_imports()
    assert set(graph) == set(layers), "modules missing from / extra in the map"
    upward = sorted(f"{module} (layer {layers[module]}) imports {other} (layer {layers[other]})"
                    for module, others in graph.items() for other in others
                    if layers[other] > layers[module])
    assert upward == []


@pytest.mark.parametrize("module, forbidden", [("topology", "layers"), ("runs", "configurables"),
                                               ("export", "train_lib")])
def test_the_known_temptations_stay_out(module, forbidden):
    # topology finds a model's masked layers by duck typing; runs and export are gin-free.
    assert forbidden not in _package_imports()[module]


def _function_lengths() -> dict[str, int]:
    """{module:function: lines from `def` to its last line} of every function in the package."""
    lengths = {}
    for path in sorted(_PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{path.relative_to(_PACKAGE)}:{node.name}:{node.lineno}"
                lengths[name] = node.end_lineno - node.lineno + 1
    return lengths


def test_no_function_is_longer_than_fifty_lines():
    assert {name: n for name, n in _function_lengths().items() if n > 50} == {}


def test_flake8_reports_no_style_warning():
    # CI (.ci/run) runs pytest only: this is what makes a warning under setup.cfg's [flake8]
    # settings fail it. flake8 is in the `test` extra, so a missing flake8 fails here too.
    result = subprocess.run([sys.executable, "-m", "flake8", "adapt_tf", "tests", "scripts"],
                            cwd=_ROOT, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
