"""Shared test setup: quiet TensorFlow, tf_keras as tf.keras, deterministic ops, hermetic
data and cache dirs, and subprocesses that import the adapt_tf under test.

Tests never touch the user's home: before anything imports tensorflow_datasets, Keras or
adapt_tf, the tfds data dir, adapt_tf's cache (FID statistics, the toy classifier), Keras' and
TF-Hub's homes point into one temporary directory of this test session (subprocesses inherit
them).

Subprocesses started by tests (`python script.py`, `python -m adapt_tf...`) must import the
`adapt_tf` under test, not another copy installed in the environment (an editable install of a
different checkout, or a mutation tester's `mutants/` tree): its parent directory goes first on
PYTHONPATH.
"""
import atexit
import os
import shutil
import tempfile

_SESSION_DIR = tempfile.mkdtemp(prefix="adapt_tf_tests_")
atexit.register(shutil.rmtree, _SESSION_DIR, ignore_errors=True)
HERMETIC_DIRS = {"TFDS_DATA_DIR": "tensorflow_datasets", "ADAPT_TF_CACHE_DIR": "adapt_tf_cache",
                 "KERAS_HOME": "keras", "TFHUB_CACHE_DIR": "tfhub"}
for _variable, _name in HERMETIC_DIRS.items():
    os.environ[_variable] = os.path.join(_SESSION_DIR, _name)

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as `import adapt_tf` sets it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import adapt_tf  # noqa: E402  (after the variables above, which it would otherwise set)

_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(adapt_tf.__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_SOURCE_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
