"""adapt_tf: balanced dynamic sparse training of GANs (ADAPT, NeurIPS 2023) in TensorFlow/Keras.

Importing the package sets ``TF_USE_LEGACY_KERAS=1`` (unless already set) before TensorFlow is
imported, so that ``tf.keras`` in your process is tf_keras (Keras 2), the Keras that
tensorflow-model-optimization and ``hub.KerasLayer`` support. adapt_tf itself always uses
``import tf_keras as keras``.
"""
from __future__ import annotations

import importlib
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"

_LAZY = {
    "SparseGAN": "adapt_tf.gan",
    "ADAPTController": "adapt_tf.controller",
}

__all__ = list(_LAZY) + ["__version__"]


def __getattr__(name: str):
    # Lazy so that the pure modules (topology, balance, flops) import without TensorFlow.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'adapt_tf' has no attribute {name!r}")
