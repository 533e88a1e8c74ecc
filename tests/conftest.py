"""Shared test setup: quiet TensorFlow, tf_keras as tf.keras, deterministic ops.

Subprocesses started by tests (`python script.py`, `python -m adapt_tf...`) must import the
`adapt_tf` under test, not another copy installed in the environment (an editable install of a
different checkout, or a mutation tester's `mutants/` tree): its parent directory goes first on
PYTHONPATH.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as `import adapt_tf` sets it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import adapt_tf  # noqa: E402  (after the variables above, which it would otherwise set)

_SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(adapt_tf.__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_SOURCE_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
