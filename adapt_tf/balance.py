"""The balance ratio (BR) between a sparse generator and discriminator.

BR = E_z[D(G_post(z)) - D(G_pre(z))] / (E_x[D(x)] - E_z[D(G_pre(z))])

with D the discriminator *after* its update in the iteration, G_pre / G_post the generator
before / after its update, and the same z for both (paper: Wang et al., "Balanced Training for
Sparse GANs", NeurIPS 2023; official code `gan_functions.calculate_br`). The numerator is how
far one G step moves the fake score, the denominator how well D separates real from fake: a
stronger D gives a smaller BR.

The quantity ADAPT controls is the *mean of per-sample ratios* over a sliding window of the last
`capacity` samples (official: `da_iters // br_freq` = 1000 // 10 = 100), not the ratio of means.
`BalanceWindow` keeps that window in variables, so it is checkpointed with the model and
updated inside compiled train steps.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from adapt_tf.checks import positive_int

__all__ = ["balance_ratio", "sample_ratio", "BalanceWindow"]


def sample_ratio(gf, df, dr):
    """(gf - df) / (dr - df) for mean scores gf = E D(G_post z), df = E D(G_pre z), dr = E D(x).

    Plain arithmetic: works on Python floats, NumPy and TensorFlow values.
    """
    return (gf - df) / (dr - df)


def balance_ratio(d_fake_post, d_fake_pre, d_real) -> float:
    """BR of one sample from discriminator outputs:
    (mean(post) - mean(pre)) / (mean(real) - mean(pre)).

    Args:
      d_fake_post: D(G_post(z)) logits, any shape.
      d_fake_pre: D(G_pre(z)) logits for the same z.
      d_real: D(x) logits of a real minibatch.
    """
    means = [float(np.mean(np.asarray(v, dtype=np.float64)))
             for v in (d_fake_post, d_fake_pre, d_real)]
    return float(sample_ratio(*means))


class BalanceWindow(tf.Module):
    """Sliding window of per-sample balance ratios, in variables.

    A ring buffer of `capacity` ratios. `push` ignores (and counts in `skipped`) a sample whose
    denominator |dr - df| is at most `eps` or whose ratio is not finite, so a degenerate
    discriminator never raises inside a train step. `mean()` is NaN while the window is empty.
    All updates are branch-free tensor ops: safe inside `tf.function`, XLA and replica context.
    """

    def __init__(self, capacity: int, *, eps: float = 1e-8, name: str = "balance_window"):
        super().__init__(name=name)
        self.capacity = positive_int("BR window capacity (br_window // br_interval)", capacity)
        self.eps = float(eps)
        kw = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        with self.name_scope:
            self.samples = tf.Variable(tf.zeros([self.capacity]), name="samples", **kw)
            self.count = tf.Variable(0, dtype=tf.int32, name="count", **kw)
            self.position = tf.Variable(0, dtype=tf.int32, name="position", **kw)
            self.skipped = tf.Variable(0, dtype=tf.int32, name="skipped", **kw)

    def push(self, gf, df, dr) -> tf.Tensor:
        """Adds the sample (gf - df) / (dr - df); returns whether it was kept."""
        gf, df, dr = (tf.cast(v, tf.float32) for v in (gf, df, dr))
        denominator = dr - df
        safe = tf.where(tf.abs(denominator) > self.eps, denominator, tf.ones_like(denominator))
        ratio = (gf - df) / safe
        valid = tf.logical_and(tf.abs(denominator) > self.eps, tf.math.is_finite(ratio))
        return self._store(ratio, valid)

    def push_value(self, value) -> tf.Tensor:
        """Adds a sample of another criterion as it is (e.g. the ADA-style share of real
        images D scores above 0); a non-finite one is skipped. Returns whether it was kept."""
        value = tf.cast(value, tf.float32)
        return self._store(value, tf.math.is_finite(value))

    def _store(self, ratio: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
        position = self.position.read_value()
        updated = tf.tensor_scatter_nd_update(self.samples, [[position]], [ratio])
        self.samples.assign(tf.where(valid, updated, self.samples))
        valid_int = tf.cast(valid, tf.int32)
        self.position.assign((position + valid_int) % self.capacity)
        self.count.assign(tf.minimum(self.count + valid_int, self.capacity))
        self.skipped.assign_add(1 - valid_int)
        return valid

    def mean(self) -> tf.Tensor:
        """Mean of the stored per-sample ratios; NaN when empty."""
        count = self.count.read_value()
        stored = tf.range(self.capacity) < count
        total = tf.reduce_sum(tf.where(stored, self.samples, tf.zeros_like(self.samples)))
        return total / tf.cast(count, tf.float32)

    def is_full(self) -> tf.Tensor:
        return self.count >= self.capacity

    def values(self) -> np.ndarray:
        """The stored ratios, oldest first (eager)."""
        count, position = int(self.count.numpy()), int(self.position.numpy())
        samples = self.samples.numpy()
        if count < self.capacity:
            return samples[:count].copy()
        return np.concatenate([samples[position:], samples[:position]])

    def reset(self) -> None:
        for variable in (self.samples, self.count, self.position, self.skipped):
            variable.assign(tf.zeros_like(variable))
