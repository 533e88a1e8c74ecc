"""SNGAN generators and discriminators at 32, 48, 64, 128 and 256 px, unconditional.

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
masks, here the kernels of `adapt_tf.sparse.layers.masked_layers(model)`:
  * SNGAN-32 G 4,276,739 (masked 4,266,752); D 1,053,824 (masked 1,052,544).
  * SNGAN-48 G 4,878,083 (masked 4,855,488); D 19,542,721 (masked 19,536,768).
All four equal the official models'.

Larger sizes (`build_sngan_generator` / `build_sngan_discriminator` with resolution 64, 128,
256; not in the paper): the block tables of the SNGAN paper's ImageNet ResNets as Mimicry
(`torch_mimicry/nets/sngan/sngan_64.py`, `sngan_128.py`) writes them, with `width` = ch and
Mimicry's ngf = ndf = 16·ch (1024 at ch = 64). G from 4×4: 64² 16ch -> 8 -> 4 -> 2 -> 1ch;
128² 16ch -> 16 -> 8 -> 4 -> 2 -> 1ch. D: optimized block 3 -> ch, then 2, 4, 8, 16ch
downsampling (64²), and a last 16ch block without downsampling at 128². Mimicry has no 256²
SNGAN; here 256² inserts one more 8ch stage in G and D, as BigGAN-PyTorch's 256² table does
over its 128² one. Everything else follows SNGAN-48 (the official repo's ResNet module):
kaiming-normal init, zero biases, global mean pool, final bias, SN in D only. At the default
width (ch = 64) the trainable weights are: SNGAN-64 G 12,220,675 / D 19,542,721; SNGAN-128
G 32,150,787 / D 38,419,137; SNGAN-256 G 37,135,107 / D 43,401,409
(`tests/test_architectures.py` pins them with the masked counts).

Widths: `width` is the reference's channel argument. SNGAN-32: G `gf_dim` (256), D `df_dim`
(128), constant through the network. SNGAN-48: the base `ch` (64) of both networks; G runs
8ch -> 4ch -> 2ch -> ch, D ch -> 2ch -> 4ch -> 8ch -> 16ch.

Deviations from the PyTorch models (none changes a parameter count):
  * NHWC layout; the first linear is reshaped to [B, w, w, C] (see `blocks`).
  * BatchNorm: Keras momentum 0.9 is PyTorch's 0.1; Keras updates the moving variance with the
    biased batch variance, PyTorch with the unbiased one.
  * Spectral norm keeps only the persistent u vector and recomputes v from it at inference
    (PyTorch stores both), one power iteration per training call as in PyTorch; the masked
    kernel is what is normalised (`adapt_tf.sparse.layers`).
  * Nearest upsampling by `tf.repeat` (XLA-compilable gradient).
"""
from __future__ import annotations

import tf_keras as keras

from adapt_tf.gan.architectures.blocks import (KAIMING_NORMAL, TORCH_DEFAULT, Initializers,
                                               InitScheme, LayerFactory, discriminator_block,
                                               discriminator_output, generator_block,
                                               generator_output)
from adapt_tf.checks import positive_int

__all__ = [
    "build_sngan32_generator",
    "build_sngan32_discriminator",
    "build_sngan48_generator",
    "build_sngan48_discriminator",
    "build_sngan_generator",
    "build_sngan_discriminator",
    "SNGAN_RESOLUTIONS",
]

_G_STREAM, _D_STREAM = 0, 1

# The deeper SNGANs, per resolution: (G channel multiples of `width`, from the 4×4 linear
# on; D channel multiples after the optimized block; which of those D blocks downsample).
_DEEP_LAYOUTS = {
    64: ([16, 8, 4, 2, 1], [2, 4, 8, 16], [True, True, True, True]),
    128: ([16, 16, 8, 4, 2, 1], [2, 4, 8, 16, 16], [True, True, True, True, False]),
    256: ([16, 16, 8, 8, 4, 2, 1], [2, 4, 8, 8, 16, 16], [True] * 5 + [False]),
}
SNGAN_RESOLUTIONS = (32, 48, *_DEEP_LAYOUTS)


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


def _deep_layout(resolution: int):
    if resolution not in _DEEP_LAYOUTS:
        raise ValueError(f"the deep SNGAN builders take resolution 64, 128 or 256, got "
                         f"{resolution!r}; 32 and 48 have their own builders")
    return _DEEP_LAYOUTS[resolution]


def build_sngan_generator(*, resolution: int, width: int = 64, latent_dim: int = 128,
                          seed: int = 0) -> keras.Model:
    """SNGAN generator at `resolution` (64, 128, 256): z [B, latent_dim] -> [B, R, R, 3] in [-1, 1].

    4×4 linear, then one up-block per doubling; channels from `_DEEP_LAYOUTS` × `width`.
    """
    width = positive_int("width", width)
    multiples = _deep_layout(resolution)[0]
    return _resnet_generator(channels=[m * width for m in multiples], bottom=4,
                             latent_dim=positive_int("latent_dim", latent_dim),
                             scheme=KAIMING_NORMAL, seed=seed,
                             name=f"sngan{resolution}_generator")


def build_sngan_discriminator(*, resolution: int, width: int = 64,
                              seed: int = 0) -> keras.Model:
    """SNGAN discriminator at `resolution` (64, 128, 256): images [B, R, R, 3] -> logits [B].

    Optimized block to `width`, then the `_DEEP_LAYOUTS` blocks down to 4×4 (or 2×2 at 64²);
    SN; global mean pool; final bias.
    """
    width = positive_int("width", width)
    _, multiples, downsample = _deep_layout(resolution)
    return _resnet_discriminator(channels=[width] + [m * width for m in multiples],
                                 downsample=downsample, image_size=resolution, pool="mean",
                                 use_bias=True, scheme=KAIMING_NORMAL, seed=seed,
                                 name=f"sngan{resolution}_discriminator")
