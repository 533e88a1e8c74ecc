"""Imports a file of scripts/ as a module, for the tests of the scripts' functions."""
from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

SCRIPTS = pathlib.Path(__file__).resolve().parent.parent / "scripts"


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as the module `adapt_<name>`, registered in sys.modules (dataclasses
    resolve their module by name)."""
    spec = importlib.util.spec_from_file_location(f"adapt_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
