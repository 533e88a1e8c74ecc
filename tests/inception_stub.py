"""A tiny stand-in for TF-GAN's Inception, for tests: the same interface and output keys
(pool_3, logits) at small sizes, saved as a SavedModel that `metrics.load_inception` reads.
No network."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

FEATURES, CLASSES, SIZE = 8, 5, 8


class TinyInception(tf.Module):
    """images [B, 8, 8, 3] in [-1, 1] -> {"pool_3": [B, 1, 1, 8], "logits": [B, 5]}."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.normal(size=(SIZE * SIZE * 3, FEATURES)).astype(np.float32) / 8)
        self.v = tf.Variable(rng.normal(size=(FEATURES, CLASSES)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def __call__(self, images):
        pool = tf.tanh(tf.reshape(images, [-1, SIZE * SIZE * 3]) @ self.w)
        return {"pool_3": tf.reshape(pool, [-1, 1, 1, FEATURES]), "logits": pool @ self.v}


def save_tiny_inception(path) -> str:
    """Writes a `TinyInception` SavedModel (signature "default") to `path`; returns the path."""
    module = TinyInception()
    tf.saved_model.save(module, str(path), signatures={"default": module.__call__})
    return str(path)
