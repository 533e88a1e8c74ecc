"""The paper's four GAN architectures, built from masked layers, and a registry of them.

    from adapt_tf.architectures import ARCHITECTURES, build_models
    generator, discriminator = build_models("sngan32")                       # full size
    generator, discriminator = build_models("biggan32", g_width=4, d_width=4)  # tiny, same graph

Names (ADAPT's four settings, docs/ALGORITHM.md §8):
  * "sngan32"  SNGAN, CIFAR-10 32×32, unconditional (`sngan.py`).
  * "sngan48"  SNGAN, STL-10 48×48, unconditional (`sngan.py`).
  * "biggan32" BigGAN, CIFAR-10 32×32, 10 classes (`biggan.py`).
  * "biggan64" BigGAN (StudioGAN), TinyImageNet 64×64, 200 classes (`biggan.py`).

Call conventions of the returned (built, functional) Keras models:
  * Generator: unconditional `G(z, training=...)`, conditional `G([z, y], training=...)`, with
    z float32 [B, latent_dim] ~ N(0, I) and y int32 [B] in [0, num_classes). Output float32
    [B, image_size, image_size, 3] in [-1, 1] (tanh, computed in float32 under mixed precision).
  * Discriminator: `D(x)` or `D([x, y])` with x float32 [B, image_size, image_size, 3] in
    [-1, 1]; output float32 logits [B].
Each module docstring gives the reference implementation, the deviations and the parameter
counts. Masked weights are the kernels of `adapt_tf.layers.masked_layers(model)`; they start
dense (mask all ones): `adapt_tf.topology.sparsify` draws the masks.

Widths: `g_width` / `d_width` are each model's own channel argument (see `Architecture`); small
values build the same structure at a fraction of the cost (tests, the quickstart).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import tf_keras as keras

from adapt_tf.architectures import biggan, sngan

__all__ = ["Architecture", "ARCHITECTURES", "build_models"]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One of the paper's settings: image size, latent size, builders and default widths.

    build_generator / build_discriminator take keyword arguments `width`, `seed`, and for
    conditional architectures `num_classes`; the generator also takes `latent_dim`.
    g_width / d_width: the default `width` of each (the reference's channel argument:
    SNGAN-32 gf_dim / df_dim; SNGAN-48, BigGAN-32 and BigGAN-64 the base `ch`).
    num_classes: default class count of a conditional architecture, None if unconditional.
    """

    name: str
    image_size: int
    latent_dim: int
    conditional: bool
    build_generator: Callable[..., keras.Model]
    build_discriminator: Callable[..., keras.Model]
    g_width: int
    d_width: int
    num_classes: int | None = None


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("sngan32", 32, 128, False, sngan.build_sngan32_generator,
                     sngan.build_sngan32_discriminator, g_width=256, d_width=128),
        Architecture("sngan48", 48, 128, False, sngan.build_sngan48_generator,
                     sngan.build_sngan48_discriminator, g_width=64, d_width=64),
        Architecture("biggan32", 32, 128, True, biggan.build_biggan32_generator,
                     biggan.build_biggan32_discriminator, g_width=64, d_width=64,
                     num_classes=10),
        Architecture("biggan64", 64, 100, True, biggan.build_biggan64_generator,
                     biggan.build_biggan64_discriminator, g_width=80, d_width=80,
                     num_classes=200),
    )
}


def build_models(name: str, *, num_classes: int | None = None, g_width: int | None = None,
                 d_width: int | None = None, seed: int = 0) -> tuple[keras.Model, keras.Model]:
    """Builds (generator, discriminator) of architecture `name`, weights created, masks dense.

    Args:
      name: a key of `ARCHITECTURES`.
      num_classes: class count of a conditional architecture (default: the dataset's);
        must be None for an unconditional one.
      g_width, d_width: channel widths (default: the paper's, `Architecture.g_width/d_width`).
      seed: initialisation seed (non-negative); the same seed builds identical weights.
    Other builder keywords (`latent_dim`, `shared_dim`): call `Architecture.build_generator` /
    `build_discriminator` directly.
    Raises:
      ValueError: unknown name, num_classes for an unconditional architecture, or a
        non-positive width.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of "
                         f"{sorted(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    g_kwargs = {"width": arch.g_width if g_width is None else g_width, "seed": seed}
    d_kwargs = {"width": arch.d_width if d_width is None else d_width, "seed": seed}
    if arch.conditional:
        classes = arch.num_classes if num_classes is None else num_classes
        g_kwargs["num_classes"] = d_kwargs["num_classes"] = classes
    elif num_classes is not None:
        raise ValueError(f"architecture {name!r} is unconditional; got num_classes="
                         f"{num_classes!r}, pass None or use 'biggan32' / 'biggan64'")
    return arch.build_generator(**g_kwargs), arch.build_discriminator(**d_kwargs)
