"""The paper's four GAN architectures, their families at other sizes, and a registry of them.

    from adapt_tf.gan.architectures import ARCHITECTURES, build_models
    generator, discriminator = build_models("sngan32")                       # full size
    generator, discriminator = build_models("biggan32", g_width=4, d_width=4)  # tiny, same graph
    generator, discriminator = build_models("biggan64", image_size=128)      # BigGAN at 128²

Names (ADAPT's four settings, docs/ALGORITHM.md §8):
  * "sngan32"  SNGAN, CIFAR-10 32×32, unconditional (`sngan.py`).
  * "sngan48"  SNGAN, STL-10 48×48, unconditional (`sngan.py`).
  * "biggan32" BigGAN, CIFAR-10 32×32, 10 classes (`biggan.py`).
  * "biggan64" BigGAN (StudioGAN), TinyImageNet 64×64, 200 classes (`biggan.py`).

Families at any supported size (`architecture(name, image_size=...)`, `RESOLUTIONS`): each
name belongs to a family, "sngan" or "biggan", defined at 32, 48, 64, 128 and 256 px; asking
a name for another size gives its family's architecture there, named `<family><size>`
("sngan32" at 128 is "sngan128"). The sizes outside the paper derive their blocks from the
resolution as the reference code does (Mimicry's SNGAN-64/128, StudioGAN's BigGAN tables; see
`sngan.py`, `biggan.py`); `train.image_size` selects them.

Call conventions of the returned (built, functional) Keras models:
  * Generator: unconditional `G(z, training=...)`, conditional `G([z, y], training=...)`, with
    z float32 [B, latent_dim] ~ N(0, I) and y int32 [B] in [0, num_classes). Output float32
    [B, image_size, image_size, 3] in [-1, 1] (tanh, computed in float32 under mixed precision).
  * Discriminator: `D(x)` or `D([x, y])` with x float32 [B, image_size, image_size, 3] in
    [-1, 1]; output float32 logits [B].
Each module docstring gives the reference implementation, the deviations and the parameter
counts. Masked weights are the kernels of `adapt_tf.sparse.layers.masked_layers(model)`; they start
dense (mask all ones): `adapt_tf.sparse.topology.sparsify` draws the masks.

Widths: `g_width` / `d_width` are each model's own channel argument (see `Architecture`); small
values build the same structure at a fraction of the cost (tests, the quickstart).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import tf_keras as keras

from adapt_tf.gan.architectures import biggan, sngan

__all__ = ["Architecture", "ARCHITECTURES", "RESOLUTIONS", "architecture", "build_models"]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One of the paper's settings: image size, latent size, builders and default widths.

    build_generator / build_discriminator take keyword arguments `width`, `seed`, and for
    conditional architectures `num_classes`; the generator also takes `latent_dim`.
    g_width / d_width: the default `width` of each (the reference's channel argument:
    SNGAN-32 gf_dim / df_dim; SNGAN-48, BigGAN-32 and BigGAN-64 the base `ch`).
    num_classes: default class count of a conditional architecture, None if unconditional.
    family: "sngan" or "biggan": the architectures of one family at other sizes
      (`architecture(name, image_size=...)`).
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
    family: str = ""


# The paper's four settings (docs/ALGORITHM.md §8); `_FAMILY` adds the other sizes.
ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("sngan32", 32, 128, False, sngan.build_sngan32_generator,
                     sngan.build_sngan32_discriminator, g_width=256, d_width=128,
                     family="sngan"),
        Architecture("sngan48", 48, 128, False, sngan.build_sngan48_generator,
                     sngan.build_sngan48_discriminator, g_width=64, d_width=64,
                     family="sngan"),
        Architecture("biggan32", 32, 128, True, biggan.build_biggan32_generator,
                     biggan.build_biggan32_discriminator, g_width=64, d_width=64,
                     num_classes=10, family="biggan"),
        Architecture("biggan64", 64, 100, True, biggan.build_biggan64_generator,
                     biggan.build_biggan64_discriminator, g_width=80, d_width=80,
                     num_classes=200, family="biggan"),
    )
}
RESOLUTIONS = (32, 48, 64, 128, 256)


def _sngan(size: int) -> Architecture:
    """Mimicry's SNGAN-64/128 tables (and 256): width = ch, 64 (ngf = 1024)."""
    return Architecture(f"sngan{size}", size, 128, False,
                        functools.partial(sngan.build_sngan_generator, resolution=size),
                        functools.partial(sngan.build_sngan_discriminator, resolution=size),
                        g_width=64, d_width=64, family="sngan")


def _biggan(size: int, *, width: int, num_classes: int) -> Architecture:
    """StudioGAN's BigGAN tables at `size` with its default width and class count."""
    return Architecture(f"biggan{size}", size, biggan.BIGGAN_LATENT_DIMS[size], True,
                        functools.partial(biggan.build_biggan_generator, resolution=size),
                        functools.partial(biggan.build_biggan_discriminator, resolution=size),
                        g_width=width, d_width=width, num_classes=num_classes,
                        family="biggan")


# Every family member by name: the paper's four and the sizes they were not run at (BigGAN at
# 128² / 256² with BigGAN's ch = 96 and ImageNet's 1000 classes; at 48² as BigGAN-64).
_FAMILY: dict[str, Architecture] = {
    **ARCHITECTURES,
    **{f"sngan{size}": _sngan(size) for size in (64, 128, 256)},
    "biggan48": _biggan(48, width=80, num_classes=10),
    "biggan128": _biggan(128, width=96, num_classes=1000),
    "biggan256": _biggan(256, width=96, num_classes=1000),
}


def architecture(name: str, *, image_size: int | None = None) -> Architecture:
    """The architecture `name` (a key of `ARCHITECTURES` or `<family><size>`) at `image_size`
    pixels (default: its own): the same family's architecture at that size.

    Raises:
      ValueError: unknown name, or a size its family does not define (naming the sizes).
    """
    if name not in _FAMILY:
        raise ValueError(f"unknown architecture {name!r}; choose one of "
                         f"{sorted(ARCHITECTURES)} (or a family member such as 'biggan128'; "
                         f"sizes {list(RESOLUTIONS)})")
    arch = _FAMILY[name]
    if image_size is None or image_size == arch.image_size:
        return arch
    member = f"{arch.family}{image_size}"
    if member not in _FAMILY:
        raise ValueError(f"image_size={image_size!r}: the {arch.family} family of architecture "
                         f"{name!r} is defined at {list(RESOLUTIONS)} px; set train.image_size "
                         "to one of them (images are resized to it)")
    return _FAMILY[member]


def build_models(name: str, *, num_classes: int | None = None, g_width: int | None = None,
                 d_width: int | None = None, seed: int = 0,
                 image_size: int | None = None) -> tuple[keras.Model, keras.Model]:
    """Builds (generator, discriminator) of architecture `name`, weights created, masks dense.

    Args:
      name: a key of `ARCHITECTURES` or a family member (`architecture`).
      num_classes: class count of a conditional architecture (default: the dataset's);
        must be None for an unconditional one.
      g_width, d_width: channel widths (default: the paper's, `Architecture.g_width/d_width`).
      seed: initialisation seed (non-negative); the same seed builds identical weights.
      image_size: side of the images in pixels (default: the architecture's own): `name`'s
        family at that size (`architecture`).
    Other builder keywords (`latent_dim`, `shared_dim`): call `Architecture.build_generator` /
    `build_discriminator` directly.
    Raises:
      ValueError: unknown name or size, num_classes for an unconditional architecture, or a
        non-positive width.
    """
    arch = architecture(name, image_size=image_size)
    g_kwargs = {"width": arch.g_width if g_width is None else g_width, "seed": seed}
    d_kwargs = {"width": arch.d_width if d_width is None else d_width, "seed": seed}
    if arch.conditional:
        classes = arch.num_classes if num_classes is None else num_classes
        g_kwargs["num_classes"] = d_kwargs["num_classes"] = classes
    elif num_classes is not None:
        raise ValueError(f"architecture {name!r} is unconditional; got num_classes="
                         f"{num_classes!r}, pass None or use a 'biggan' architecture")
    return arch.build_generator(**g_kwargs), arch.build_discriminator(**d_kwargs)
