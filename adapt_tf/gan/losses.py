"""GAN losses with one return contract: per-example losses, reduced by the caller.

Every loss returns a float32 vector of per-example values; the train step sums it and divides
by the *global* batch size, so the same code is correct on one device and under any
`tf.distribute` strategy. Logits are raw discriminator outputs (no sigmoid).

* `hinge` (the paper's loss, official code): D: relu(1 - D(x)) + relu(1 + D(G(z)));
  G: -D(G(z)).
* `non_saturating` (Goodfellow et al., 2014): D: softplus(-D(x)) + softplus(D(G(z)));
  G: softplus(-D(G(z))).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import tensorflow as tf

__all__ = ["GANLoss", "HINGE", "NON_SATURATING", "LOSSES", "get"]


@dataclasses.dataclass(frozen=True)
class GANLoss:
    """A pair of per-example loss functions.

    discriminator(real_logits [B], fake_logits [B]) -> [B]; generator(fake_logits [B]) -> [B].
    For the discriminator, example i pairs real i with fake i (equal batch sizes), so the sum of
    the vector over the batch is the sum of the real and the fake terms.
    """

    name: str
    discriminator: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    generator: Callable[[tf.Tensor], tf.Tensor]


def _f32(x):
    return tf.cast(x, tf.float32)


HINGE = GANLoss(
    name="hinge",
    discriminator=lambda real, fake: tf.nn.relu(1.0 - _f32(real)) + tf.nn.relu(1.0 + _f32(fake)),
    generator=lambda fake: -_f32(fake),
)

NON_SATURATING = GANLoss(
    name="non_saturating",
    discriminator=lambda real, fake: tf.nn.softplus(-_f32(real)) + tf.nn.softplus(_f32(fake)),
    generator=lambda fake: tf.nn.softplus(-_f32(fake)),
)

LOSSES: dict[str, GANLoss] = {loss.name: loss for loss in (HINGE, NON_SATURATING)}


def get(loss: str | GANLoss) -> GANLoss:
    """A `GANLoss` from its name ("hinge", "non_saturating") or itself."""
    if isinstance(loss, GANLoss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"Unknown GAN loss {loss!r}; choose one of {sorted(LOSSES)} "
                         "or pass a GANLoss.")
    return LOSSES[loss]
