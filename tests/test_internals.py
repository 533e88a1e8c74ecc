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


def _is_code(path: pathlib.Path) -> bool:
    """Whether a file holds more than a docstring (a package whose `__init__` only describes
    it is a folder, not a module of the map)."""
    body = ast.parse(path.read_text()).body
    return not all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                   for node in body)


def _units() -> dict[str, list[pathlib.Path]]:
    """{module name in the map: its files}: dotted paths below adapt_tf (`sparse.layers`), a
    package with code in its `__init__` under its own name (`balance`), the sub-packages of a
    sub-package (`gan.architectures`, `data.datasets`) as one module."""
    units = {}
    for path in sorted(_PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(_PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
            if not parts or not _is_code(path):
                continue  # adapt_tf's lazy public names; a folder's description
        units.setdefault(".".join(parts[:2]), []).append(path)
    return units


def _unit(module: str, units) -> str | None:
    """The unit a dotted module below adapt_tf belongs to (its longest prefix in `units`)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in units:
            return ".".join(parts[:end])
    return None


def _imported(source: str) -> set[str]:
    """The dotted adapt_tf modules a source imports (at any depth), outside `__main__` blocks:
    `from adapt_tf.a import b` names `a.b` (`a` where `b` is not a module, resolved later)."""
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
            found.update(".".join([*inner, alias.name]) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".", 1)[1] for alias in node.names
                         if alias.name.startswith("adapt_tf."))
    return found


def _imports(source: str, units) -> set[str]:
    """The units a source imports; importing `a.b` also runs package `a`'s `__init__`, so a
    package with code counts as imported by whoever imports one of its modules."""
    found = set()
    for module in _imported(source):
        parts = module.split(".")
        for end in range(1, len(parts) + 1):
            unit = _unit(".".join(parts[:end]), units)
            if unit is not None and (end == len(parts) or unit == ".".join(parts[:end])):
                found.add(unit)
    return found


def _package_imports() -> dict[str, set[str]]:
    """{unit: the units it imports}, without the packages that contain it (Python runs those
    first whoever imports it)."""
    units = _units()
    return {unit: {other for other in set().union(*(_imports(path.read_text(), units)
                                                    for path in paths))
                   if not (unit + ".").startswith(other + ".")}
            for unit, paths in units.items()}


def test_the_parser_reads_imports_at_any_depth_but_not_in_main_blocks():
    source = ("from adapt_tf import a, b as c\nimport adapt_tf.d\nfrom adapt_tf.e.f import g\n"
              "def h():\n    from adapt_tf import i\n"
              "if __name__ == '__main__':\n    from adapt_tf import j\n")
    assert _imported(source) == {"a", "b", "d", "e.f.g", "i"}
    units = dict.fromkeys(["a", "b", "d", "e", "e.f", "i", "j"])
    # e.f.g is a name of module e.f; importing e.f runs package e's __init__ first
    assert _imports(source, units) == {"a", "b", "d", "e", "e.f", "i"}


def test_every_module_is_in_the_map_and_imports_nothing_above_its_layer():
    layers = _layer_map((_ROOT / "docs" / "INTERNALS.md").read_text())
    graph = _package_imports()
    assert set(graph) == set(layers), "modules missing from / extra in the map"
    upward = sorted(f"{module} (layer {layers[module]}) imports {other} (layer {layers[other]})"
                    for module, others in graph.items() for other in others
                    if layers[other] > layers[module])
    assert upward == []


@pytest.mark.parametrize("module, forbidden", [("sparse.topology", "sparse.layers"),
                                               ("runs.records", "runs.configurables"),
                                               ("export", "runs.train_lib")])
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


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_callback_takes_tensor_logs():
    import tf_keras as keras

    from adapt_tf import _compat
    from adapt_tf.balance import controller
    from adapt_tf.evaluation import scorers
    from adapt_tf.flops import flops_logger
    from adapt_tf.runs import preemption, writers
    from adapt_tf.sparse import gmp, sparsity

    # Keras converts an iteration's logs to NumPy (a device-to-host copy of every value) unless
    # all callbacks with batch hooks declare `_supports_tf_logs`: one adapt_tf callback without
    # it costs every iteration a copy.
    ours = {cls for cls in _subclasses(keras.callbacks.Callback)
            if cls.__module__.startswith("adapt_tf.")}
    assert ours >= {controller.ADAPTController, sparsity.DynamicSparsity,
                    gmp.GradualMagnitudePruning, flops_logger.FlopsLogger, writers.MetricsLogger,
                    writers.SampleLogs, writers.SampleGrid, writers.Checkpointer,
                    writers.TerminateOnNaN, preemption.StopOnSignal, scorers.PeriodicEvaluation}
    for cls in ours - {_compat.Callback}:
        assert issubclass(cls, _compat.Callback), cls.__name__
    callback_list = keras.callbacks.CallbackList([controller.ADAPTController("relaxed",
                                                  total_steps=10, interval=5),
                                                  preemption.StopOnSignal()])
    assert callback_list._batch_hooks_support_tf_logs


def test_the_public_names_are_the_objects_of_their_modules():
    # `adapt_tf.<name>` is the stable path of the contract's names (README, "Changelog"):
    # each must resolve, lazily, to the object its module defines.
    import importlib

    import adapt_tf

    assert set(adapt_tf.__all__) == set(adapt_tf._LAZY) | {"__version__"}
    for name, module in adapt_tf._LAZY.items():
        assert getattr(adapt_tf, name) is getattr(importlib.import_module(module), name), name
    with pytest.raises(AttributeError, match="no attribute 'layers'"):
        adapt_tf.layers  # noqa: B018  (a module path of 0.1, gone in 0.2)
