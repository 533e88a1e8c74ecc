"""Shared test setup: quiet TensorFlow, tf_keras as tf.keras, deterministic ops, and hermetic
data and cache dirs.

Tests never touch the user's home: before anything imports tensorflow_datasets, Keras or
adapt_tf, the tfds data dir, adapt_tf's cache (FID statistics), Keras' and TF-Hub's homes point
into one temporary directory of this test session (subprocesses inherit them).
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
