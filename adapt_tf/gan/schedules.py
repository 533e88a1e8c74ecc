"""Learning-rate schedules keyed to the GAN iteration (docs/ALGORITHM.md §1, "Optimiser").

`LinearDecay` is the official code's `--lr-decay`: a `LambdaLR` with factor
1 - iteration / total_steps, stepped once after every iteration, so all n_dis discriminator
steps and the generator step of iteration i use initial * (1 - i / total_steps). Keras asks a
schedule with the optimizer's own step count, which counts D steps n_dis times per iteration
(and not at all on steps a loss-scale optimizer skips); this schedule reads the iteration from
the `SparseGAN.step` variable instead, which checkpoints restore, so a resumed run continues on
exactly the same rates.
"""
from __future__ import annotations

import numbers

import tensorflow as tf
import tf_keras as keras

from adapt_tf.checks import positive_int

__all__ = ["LinearDecay", "with_linear_decay"]


class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """initial_learning_rate * (1 - step / total_steps), `step` being the iteration variable."""

    def __init__(self, initial_learning_rate: float, total_steps: int, step: tf.Variable):
        super().__init__()
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = positive_int("total_steps", total_steps)
        self.step = step

    def __call__(self, optimizer_step=None):
        done = tf.cast(self.step, tf.float32) / float(self.total_steps)
        return self.initial_learning_rate * (1.0 - tf.minimum(done, 1.0))

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "total_steps": self.total_steps}


def with_linear_decay(optimizer: keras.optimizers.Optimizer, *, total_steps: int,
                      step: tf.Variable) -> keras.optimizers.Optimizer:
    """A new optimizer of `optimizer`'s class and configuration whose constant learning rate
    decays linearly to 0 over `total_steps` iterations of `step` (`LinearDecay`). Call it
    before the optimizer has been used (its slots are not copied)."""
    config = optimizer.get_config()
    rate = config.get("learning_rate")
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise ValueError(f"lr_decay needs an optimizer with a constant learning rate, got "
                         f"{rate!r}; remove the schedule or train.lr_decay.")
    config["learning_rate"] = LinearDecay(float(rate), total_steps, step)
    return type(optimizer).from_config(config)
