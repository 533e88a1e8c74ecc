"""SNGAN generators and discriminators: CIFAR-10 32×32 and STL-10 48×48, unconditional.

Paper: T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida, "Spectral Normalization for Generative
Adversarial Networks", ICLR 2018 (ResNet architectures of its appendix), as used by ADAPT
(Y. Wang, J. Wu, N. Hovakimyan, R. Sun, "Balanced Training for Sparse GANs", NeurIPS 2023).

Reference implementations (the official ADAPT repo, YiteWang/ADAPT):
  * SNGAN-32, `--model lottery`: `sparselearning/backbones/lottery_sngan.py` (GAN-LTH's copy of
    AutoGAN's `sngan_cifar10`). G: linear z(128) -> 4×4×256, three up-blocks 256 -> 256,
    BN-ReLU-conv3×3-tanh; no SN. D: optimized block 3 -> 128, block 128 -> 128 down, two
    blocks 128 -> 128, ReLU, global *sum* pool, linear 128 -> 1 without bias. PyTorch's default
    init (the `--init-type` flag is unused).
  * SNGAN-48, `--model resnet.48`: `sparselearning/backbones/resnet.py` (GNGAN-PyTorch
    `models/resnet.py`). G: linear z(128) -> 6×6×512, up-blocks 512 -> 256 -> 128 -> 64,
    BN-ReLU-conv3×3-tanh. D: optimized block 3 -> 64, down-blocks 64 -> 128 -> 256 -> 512 and
    ADAPT's extra 512 -> 1024 ("Add one more block"), ReLU, global *mean* pool
    (AdaptiveAvgPool2d), linear 1024 -> 1 with bias. Kaiming-normal init, zero biases.
  * Both: SN on every D conv and linear, added by `main.py` (`--d-norm SN`,
    `torch.nn.utils.spectral_norm`, eps 1e-12); BatchNorm eps 1e-5.

Parameter counts. "Total" is what PyTorch's `sum(p.numel() for p in model.parameters())` counts
and what `model.trainable_weights` holds here: conv/linear kernels and biases, BN gamma/beta
(not BN running statistics, SN u vectors or masks). "Masked" is the kernels the official code
masks, here the kernels of `adapt_tf.layers.masked_layers(model)`:
  * SNGAN-32 G 4,276,739 (masked 4,266,752); D 1,053,824 (masked 1,052,544).
  * SNGAN-48 G 4,878,083 (masked 4,855,488); D 19,542,721 (masked 19,536,768).
All four equal the official models'.

Widths: `width` is the reference's channel argument. SNGAN-32: G `gf_dim` (256), D `df_dim`
(128), constant through the network. SNGAN-48: the base `ch` (64) of both networks; G runs
8ch -> 4ch -> 2ch -> ch, D ch -> 2ch -> 4ch -> 8ch -> 16ch.

Deviations from the PyTorch models (none changes a parameter count):
  * NHWC layout; the first linear is reshaped to [B, w, w, C] (see `blocks`).
  * BatchNorm: Keras momentum 0.9 is PyTorch's 0.1; Keras updates the moving variance with the
    biased batch variance, PyTorch with the unbiased one.
  * Spectral norm keeps only the persistent u vector and recomputes v from it at inference
    (PyTorch stores both), one power iteration per training call as in PyTorch; the masked
    kernel is what is normalised (`adapt_tf.layers`).
  * Nearest upsampling by `tf.repeat` (XLA-compilable gradient).
"""
from __future__ import annotations

import tf_keras as keras

from adapt_tf.architectures.blocks import (
    KAIMING_NORMAL,
    TORCH_DEFAULT,
    Initializers,
    InitScheme,
    LayerFactory,
    discriminator_block,
    discriminator_output,
    generator_block,
    generator_output,
)
from adapt_tf.checks import positive_int

__all__ = [
    "build_sngan32_generator",
    "build_sngan32_discriminator",
    "build_sngan48_generator",
    "build_sngan48_discriminator",
]

_G_STREAM, _D_STREAM = 0, 1


def _resnet_generator(*, channels: list[int], bottom: int, latent_dim: int, scheme: InitScheme,
                      seed: int, name: str) -> keras.Model:
    """linear z -> [bottom, bottom, channels[0]], up-blocks to channels[1:], RGB output."""
    f = LayerFactory(Initializers(scheme, seed=seed, stream=_G_STREAM), spectral_norm=False)
    z = keras.Input(shape=(latent_dim,), dtype="float32", name="z")
    h = f.dense(z, bottom * bottom * channels[0], name="g_linear")
    h = keras.layers.Reshape((bottom, bottom, channels[0]), name="g_reshape")(h)
    for index, out_channels in enumerate(channels[1:], start=1):
        h = generator_block(f, h, out_channels, name=f"g_block{index}")
    return keras.Model(z, generator_output(f, h), name=name)


def _resnet_discriminator(*, channels: list[int], downsample: list[bool], image_size: int,
                          pool: str, use_bias: bool, scheme: InitScheme, seed: int,
                          name: str) -> keras.Model:
    """Optimized block to channels[0], blocks to channels[1:], ReLU-pool-linear logits."""
    f = LayerFactory(Initializers(scheme, seed=seed, stream=_D_STREAM), spectral_norm=True)
    images = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="images")
    h = discriminator_block(f, images, channels[0], name="d_block1", downsample=True,
                            first=True)
    for index, (out_channels, down) in enumerate(zip(channels[1:], downsample), start=2):
        h = discriminator_block(f, h, out_channels, name=f"d_block{index}", downsample=down)
    logits = discriminator_output(f, h, pool=pool, use_bias=use_bias)
    return keras.Model(images, logits, name=name)


def build_sngan32_generator(*, width: int = 256, latent_dim: int = 128,
                            seed: int = 0) -> keras.Model:
    """SNGAN-32 generator: z float32 [B, latent_dim] -> images float32 [B, 32, 32, 3] in [-1, 1].

    `width` is `gf_dim` (256 in the paper's setting); PyTorch default init; no SN.
    """
    width = positive_int("width", width)
    return _resnet_generator(channels=[width] * 4, bottom=4,
                             latent_dim=positive_int("latent_dim", latent_dim),
                             scheme=TORCH_DEFAULT, seed=seed, name="sngan32_generator")


def build_sngan32_discriminator(*, width: int = 128, seed: int = 0) -> keras.Model:
    """SNGAN-32 discriminator: images [B, 32, 32, 3] -> float32 logits [B].

    `width` is `df_dim` (128); SN on every conv and linear; global sum pool; no final bias.
    """
    width = positive_int("width", width)
    return _resnet_discriminator(channels=[width] * 4, downsample=[True, False, False],
                                 image_size=32, pool="sum", use_bias=False,
                                 scheme=TORCH_DEFAULT, seed=seed, name="sngan32_discriminator")


def build_sngan48_generator(*, width: int = 64, latent_dim: int = 128,
                            seed: int = 0) -> keras.Model:
    """SNGAN-48 generator: z float32 [B, latent_dim] -> images float32 [B, 48, 48, 3] in [-1, 1].

    Channels 8·width -> 4·width -> 2·width -> width (512 -> 256 -> 128 -> 64) from 6×6;
    kaiming-normal init; no SN.
    """
    width = positive_int("width", width)
    return _resnet_generator(channels=[8 * width, 4 * width, 2 * width, width], bottom=6,
                             latent_dim=positive_int("latent_dim", latent_dim),
                             scheme=KAIMING_NORMAL, seed=seed, name="sngan48_generator")


def build_sngan48_discriminator(*, width: int = 64, seed: int = 0) -> keras.Model:
    """SNGAN-48 discriminator (ADAPT's 5-block D): images [B, 48, 48, 3] -> float32 logits [B].

    Channels width -> 2·width -> 4·width -> 8·width -> 16·width (64 -> ... -> 1024), every
    block downsampling (48 -> 24 -> 12 -> 6 -> 3 -> 1); SN; global mean pool; final bias.
    """
    width = positive_int("width", width)
    return _resnet_discriminator(channels=[width, 2 * width, 4 * width, 8 * width, 16 * width],
                                 downsample=[True] * 4, image_size=48, pool="mean",
                                 use_bias=True, scheme=KAIMING_NORMAL, seed=seed,
                                 name="sngan48_discriminator")
