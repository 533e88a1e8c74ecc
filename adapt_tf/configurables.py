"""The one place that registers adapt_tf components with gin.

Configs bind `train.*` (the typed `train_lib.train`), choose the method with
`train.method = @method()` and `method.name = ...`, and choose optimizers by reference with
scopes, as gin's docs do for GANs:

    train.generator_optimizer = @generator/Adam
    generator/Adam.learning_rate = 2e-4

(no parentheses: the optimizer is created inside the distribution strategy's scope).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import gin
import tf_keras as keras

from adapt_tf import methods, train_lib

__all__ = ["CONFIG_DIR", "parse_config"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "gin_configs"

for _optimizer in (keras.optimizers.Adam, keras.optimizers.SGD, keras.optimizers.RMSprop):
    gin.external_configurable(_optimizer, module="keras.optimizers")
gin.external_configurable(methods.method, name="method", module="adapt_tf.methods")
train = gin.external_configurable(train_lib.train, name="train", module="adapt_tf.train_lib")


def parse_config(gin_files, gin_bindings=()) -> None:
    """Parses config files and bindings; unknown names and bad values raise at once.

    Includes resolve against the including file's folder, the working directory and the
    package's `gin_configs/`.
    """
    for path in [CONFIG_DIR, Path.cwd(), *(Path(f).resolve().parent for f in gin_files)]:
        if path.is_dir():
            gin.add_config_file_search_path(str(path))
    missing = [f for f in gin_files if not _findable(f)]
    if missing:
        raise ValueError(f"gin file(s) not found: {missing}; give a path, or a path relative "
                         f"to {CONFIG_DIR}.")
    root = logging.getLogger()
    root.addFilter(_quiet_include_probes)
    try:
        gin.parse_config_files_and_bindings(list(gin_files), list(gin_bindings),
                                            finalize_config=True)
    finally:
        root.removeFilter(_quiet_include_probes)


def _quiet_include_probes(record: logging.LogRecord) -> bool:
    """Drops gin's 'Path not found' errors, logged for every search path it probes for an
    include before the one that has the file (a missing file still raises)."""
    return not (record.pathname.endswith("resource_reader.py")
                and str(record.msg).startswith("Path not found"))


def _findable(path: str) -> bool:
    return os.path.exists(path) or (CONFIG_DIR / path).exists()
