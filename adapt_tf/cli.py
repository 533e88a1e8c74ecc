"""What the command-line programs share: a quiet TensorFlow start-up and a truthful `--help`.

TensorFlow's C++ start-up lines (oneDNN, CUDA stubs, cuInit, CPU features) and its runtime
log lines (grappler's remapper, NodeDef attributes) say nothing a user of a CLI can act on and
bury its own output. `quiet_tensorflow` hides them before TensorFlow is imported, unless the
command line has `--verbose` or the user set `TF_CPP_MIN_LOG_LEVEL` (then nothing changes).
gin's INFO lines (every config file it looks up, every binding: the run's operative_config.gin
holds the result) are hidden the same way by `run`; its warnings and errors always show.
Only the CLI entry points call these; importing adapt_tf as a library changes no logging.

`run(main, ...)` is `absl.app.run(main)` with the `--verbose` flag defined and the flags of the
modules named listed by `--help`, which shows only the main module's own flags (so
`python -m adapt_tf.export --help` lists the flags defined in `export_cli`).
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
from types import ModuleType
from typing import Callable, Iterator, Sequence

from absl import app, flags

__all__ = ["HideInfoFrom", "quiet_tensorflow", "run", "verbose"]

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "3"  # C++ FATAL only: cuInit and remapper messages are logged as errors
_FALSE = ("false", "0", "no", "f", "n")


def verbose(argv: Sequence[str]) -> bool:
    """Whether `argv` turns `--verbose` on (absl's spellings: --verbose, --verbose=true|1;
    --noverbose and --verbose=false|0 turn it off; the last one counts)."""
    state = False
    for arg in argv:
        if arg in ("--verbose", "-verbose"):
            state = True
        elif arg in ("--noverbose", "-noverbose"):
            state = False
        elif arg.startswith(("--verbose=", "-verbose=")):
            state = arg.split("=", 1)[1].lower() not in _FALSE
    return state


def quiet_tensorflow(argv: Sequence[str] | None = None) -> bool:
    """Sets `TF_CPP_MIN_LOG_LEVEL=3` and imports TensorFlow with file descriptor 2 pointed at
    /dev/null (its static initialisers log before they read the variable), unless `argv`
    (default `sys.argv`) has `--verbose` or the variable is already set. Call it before
    anything imports TensorFlow. Returns whether it quietened TensorFlow."""
    argv = sys.argv if argv is None else argv
    if verbose(argv) or LOG_LEVEL_VARIABLE in os.environ or "tensorflow" in sys.modules:
        return False
    os.environ[LOG_LEVEL_VARIABLE] = QUIET_LEVEL
    with _stderr_to_devnull():
        import tensorflow  # noqa: F401
    return True


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """Points file descriptor 2 (where C++ logs go) at /dev/null for the block; a Python error
    raised inside still prints its traceback after the block, on the restored stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class HideInfoFrom(logging.Filter):
    """Drops log records below WARNING whose source file lies under `directory`."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = os.path.join(os.path.realpath(directory), "")

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.levelno >= logging.WARNING
                or not os.path.realpath(record.pathname).startswith(self.directory))


def _hide_gin_info() -> None:
    """Adds `HideInfoFrom(gin's package directory)` to the root logger, which gin logs
    through (`logging.info`)."""
    spec = importlib.util.find_spec("gin")
    if spec is not None and spec.submodule_search_locations:
        logging.getLogger().addFilter(
            HideInfoFrom(list(spec.submodule_search_locations)[0]))


def run(main: Callable[[list[str]], object], *, flags_of: Sequence[ModuleType] = ()) -> None:
    """`app.run(main)` after defining `--verbose` and making the flags defined in the
    `flags_of` modules key flags of the main program, so that `--help` lists them; without
    `--verbose`, gin's INFO lines are hidden."""
    program = sys.argv[0]  # the name absl files the main module's flags under
    flags.DEFINE_bool("verbose", False, "Show TensorFlow's C++ log lines (start-up, grappler); "
                      f"hidden unless {LOG_LEVEL_VARIABLE} is set.", module_name=program)
    for module in flags_of:
        for flag in flags.FLAGS.get_key_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(program, flag)

    def main_after_flags(argv: list[str]) -> object:
        if not flags.FLAGS.verbose:
            _hide_gin_info()
        return main(argv)

    app.run(main_after_flags)
