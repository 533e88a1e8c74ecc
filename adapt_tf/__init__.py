"""adapt_tf: balanced dynamic sparse training of GANs (ADAPT, NeurIPS 2023) in TensorFlow/Keras.

Importing the package sets ``TF_USE_LEGACY_KERAS=1`` (unless already set) before TensorFlow is
imported, so that ``tf.keras`` in your process is tf_keras (Keras 2), the Keras that
tensorflow-model-optimization and ``hub.KerasLayer`` support. adapt_tf itself always uses
``import tf_keras as keras``.

It also sets ``TF_ENABLE_ONEDNN_OPTS=1`` (unless already set): TensorFlow's oneDNN CPU kernels,
which TensorFlow enables by default only on CPUs with AVX-512 VNNI/BF16/AMX. On the 2-core AVX2
machine of docs/BENCHMARKS.md they make a full SNGAN-32 iteration about a quarter cheaper; GPU
kernels are unaffected. Set ``TF_ENABLE_ONEDNN_OPTS=0`` before importing adapt_tf to opt out.
Both variables only take effect if adapt_tf is imported before TensorFlow.
"""
from __future__ import annotations

import importlib
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

# The contract's names (docs/USAGE.md), importable from the package whatever its layout.
_LAZY = {
    "SparseGAN": "adapt_tf.gan.sparse_gan",
    "ADAPTController": "adapt_tf.balance.controller",
    "MaskedDense": "adapt_tf.sparse.layers",
    "MaskedConv2D": "adapt_tf.sparse.layers",
    "masked_layers": "adapt_tf.sparse.layers",
    "erk_densities": "adapt_tf.sparse.topology",
    "uniform_densities": "adapt_tf.sparse.topology",
    "sparsify": "adapt_tf.sparse.topology",
    "model_density": "adapt_tf.sparse.topology",
    "SET": "adapt_tf.sparse.dst",
    "RigL": "adapt_tf.sparse.dst",
    "balance_ratio": "adapt_tf.balance",
    "training_flops": "adapt_tf.flops",
    "export_generator": "adapt_tf.export",
}

__all__ = list(_LAZY) + ["__version__"]


def __getattr__(name: str):
    # Lazy, so that `import adapt_tf` stays cheap and sets the environment before TensorFlow.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'adapt_tf' has no attribute {name!r}")
