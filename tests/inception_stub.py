"""A tiny stand-in for TF-GAN's Inception, for tests: the same interface and output keys
(pool_3, logits) at small sizes, saved as a SavedModel that `metrics.load_inception` reads.
Its logits layer has a non-zero bias, as the 2015 graph's `softmax/logits` does, so tests can
tell the official bias-free IS logits (pool_3 · W) from the module's. No network."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

FEATURES, CLASSES, SIZE = 8, 5, 8


class TinyInception(tf.Module):
    """images [B, 8, 8, 3] in [-1, 1] -> {"pool_3": [B, 1, 1, 8], "logits": [B, 5]}, with
    logits = pool_3 · v + b (b = `bias`, non-zero)."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.normal(size=(SIZE * SIZE * 3, FEATURES)).astype(np.float32) / 8)
        self.v = tf.Variable(rng.normal(size=(FEATURES, CLASSES)).astype(np.float32))
        self.b = tf.Variable(bias())

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def __call__(self, images):
        pool = tf.tanh(tf.reshape(images, [-1, SIZE * SIZE * 3]) @ self.w)
        return {"pool_3": tf.reshape(pool, [-1, 1, 1, FEATURES]),
                "logits": pool @ self.v + self.b}


def bias() -> np.ndarray:
    """The stand-in's logits bias [CLASSES], float32: large and uneven, so it moves the IS."""
    return np.linspace(-2.0, 3.0, CLASSES).astype(np.float32)


def save_tiny_inception(path) -> str:
    """Writes a `TinyInception` SavedModel (signature "default") to `path`; returns the path."""
    module = TinyInception()
    tf.saved_model.save(module, str(path), signatures={"default": module.__call__})
    return str(path)
