"""BigGAN generators and projection discriminators at 32, 48, 64, 128 and 256 px.

Paper: A. Brock, J. Donahue, K. Simonyan, "Large Scale GAN Training for High Fidelity Natural
Image Synthesis", ICLR 2019; projection discriminator: T. Miyato, M. Koyama, "cGANs with
Projection Discriminator", ICLR 2018; self-attention: H. Zhang et al., "Self-Attention GANs",
ICML 2019. Used by ADAPT (Y. Wang, J. Wu, N. Hovakimyan, R. Sun, "Balanced Training for Sparse
GANs", NeurIPS 2023).

Reference implementations (the official ADAPT repo, YiteWang/ADAPT):
  * BigGAN-32, `--model biggan.32 --condition`: `sparselearning/backbones/biggan.py`
    `Generator32` / `Discriminator32` (GNGAN-PyTorch `models/biggan.py`, after BigGAN-PyTorch's
    CIFAR model), ch = 64.
    G: SN linear z(128) -> 4×4×256; three up-blocks 256 -> 256 with class-conditional BN
    (BN without affine; gain = 1 + Embedding(classes, C), bias = Embedding(classes, C)); BN,
    ReLU, SN conv3×3, tanh. SN (eps 1e-12) on every G conv and linear.
    D: optimized block 3 -> 256, block 256 -> 256 down, two blocks 256 -> 256, ReLU, global sum
    pool, `classifier` linear 256 -> 1 plus projection <SN-Embedding(y), h>. SN on the
    embedding in the model, on every conv and the classifier from `main.py` (eps 1e-12).
    Init N(0, 0.02) for conv, linear and embedding weights (`res32_weights_init`); biases keep
    PyTorch's default U(±1/sqrt(fan_in)). BatchNorm eps 1e-5.
  * BigGAN-64, `--model biggan.64 --img-size 64 --num-classes 200 --condition`:
    `sparselearning/backbones/big_resnet.py` and `backbone_utils/model_ops.py`, i.e.
    PyTorch-StudioGAN `models/big_resnet.py` at 64² (g_conv_dim = d_conv_dim = 80, z_dim 100,
    shared_dim 128, ProjGAN, orthogonal init, SN with eps 1e-6 in G and D, BN eps 1e-4).
    G: hierarchical z: 5 chunks of 20; SN linear(chunk 0) -> 4×4×1280; up-blocks
    1280 -> 640 -> 320 -> 160 -> 80 whose conditional BNs take [shared_embedding(y); chunk i]
    (148-d) through bias-free SN linears (gain = 1 + linear, bias = linear); self-attention
    after the third block (32², 160 channels); BN, ReLU, SN conv3×3, tanh.
    D: optimized block 3 -> 80, self-attention (32², 80 channels), blocks 80 -> 160 -> 320 ->
    640 (down) -> 1280 (no down), ReLU, global sum pool, SN `linear1` 1280 -> 1 plus projection
    <SN-Embedding(y), h>.

Sparsity exclusions (official `Masking.add_module`): the CBN gain/bias embeddings and linears,
the shared embedding, the projection embeddings and BigGAN-32 D's `classifier` are dense
(`keras.layers.Embedding`, `SNEmbedding`, `SNDense`); every other conv and linear kernel is
masked (`MaskedConv2D`, `MaskedDense`), StudioGAN D's `linear1` included.

Parameter counts. "Total" is PyTorch's `sum(p.numel() for p in model.parameters())` and here
the size of `model.trainable_weights`: kernels, biases, BN gamma/beta, embedding tables, the
attention gain (not BN running statistics, SN u vectors or masks). "Masked" is the official
code's masked weights; here the kernels of `adapt_tf.sparse.layers.masked_layers(model)`:
  * BigGAN-32 G 4,304,387 (masked 4,266,752); D 4,207,361 (masked 4,201,984). Equal.
  * BigGAN-64 (200 classes) G 17,335,204 (official masked 16,219,761, here 16,219,760);
    D 30,796,722 (official masked 30,533,281, here 30,533,280). Totals equal. The masked counts
    differ by the one attention gain per network: the official code masks StudioGAN's scalar
    `sigma` (ERK always keeps it dense, so it never changes training); here it is the dense
    scalar `ScaledResidual.gamma`.

Other sizes (`build_biggan_generator` / `build_biggan_discriminator` with resolution 48, 128,
256; not in the paper): BigGAN-64's StudioGAN model with StudioGAN's per-resolution tables
(`g_in_dims_collection`, `d_out_dims_collection`, `d_down`; the same as BigGAN-PyTorch's
`G_arch` / `D_arch` at 128² and 256²). G from 4×4: 128² 16w -> 16 -> 8 -> 4 -> 2 -> 1w;
256² 16w -> 16 -> 8 -> 8 -> 4 -> 2 -> 1w. D: optimized block to w, then 2, 4, 8, 16w (and
16w without downsampling) at 128²; 2, 4, 8, 8, 16w (and 16w) at 256². z has one 20-d chunk
per generator stage (BigGAN's 120-d z at 128², 140-d at 256²). Self-attention at
min(64, R/2)² in both networks: BigGAN-PyTorch's default `G_attn = D_attn = '64'` at 128² and
256², and BigGAN-64's 32² (ADAPT's TinyImageNet setting). 48² (no reference table) is the 64²
table started from a 3×3 linear (48 = 3·2⁴), attention at 24², z 100-d. Trainable weights
at the defaults: BigGAN-48 (ch 80, 10 classes) G 17,122,724 / D 30,553,522; BigGAN-128 (ch
96, 1000 classes) G 70,433,988 / D 87,982,370; BigGAN-256 (ch 96, 1000 classes) G 82,235,844
/ D 99,225,890 (`tests/test_architectures.py` pins them with the masked counts).

Widths: `width` is the reference's `ch`. BigGAN-32 (64): G and D run at 4·width = 256
channels. BigGAN-64 (80): G 16w -> 8w -> 4w -> 2w -> w, D w -> 2w -> 4w -> 8w -> 16w; the
attention needs 2·width >= 8 in G and width >= 8 in D.

Deviations from the PyTorch models (none changes a parameter count):
  * NHWC layout; the first linear is reshaped to [B, 4, 4, C] (see `blocks`).
  * BatchNorm: Keras momentum 0.9 is PyTorch's 0.1; the moving variance is updated with the
    biased batch variance (PyTorch: unbiased).
  * Spectral norm keeps only the persistent u vector (PyTorch also stores v), one power
    iteration per training call; it normalises the masked kernel (`adapt_tf.sparse.layers`).
  * Orthogonal init orthogonalises Keras' [kh·kw·in, out] kernel matrix, the transpose of
    PyTorch's [out, in·kh·kw]: the same distribution.
  * Attention softmax in float32 under mixed precision; nearest upsampling by `tf.repeat`.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf
import tf_keras as keras

from adapt_tf.gan.architectures.blocks import (NORMAL_002, ORTHOGONAL, Initializers,
                                               LayerFactory, discriminator_block,
                                               discriminator_output, generator_block,
                                               generator_output, self_attention)
from adapt_tf.checks import positive_int

__all__ = [
    "build_biggan32_generator",
    "build_biggan32_discriminator",
    "build_biggan64_generator",
    "build_biggan64_discriminator",
    "build_biggan_generator",
    "build_biggan_discriminator",
    "BIGGAN_RESOLUTIONS",
]

_G_STREAM, _D_STREAM = 0, 1
_BIGGAN64_SN_EPS = 1e-6
_BIGGAN64_BN_EPS = 1e-4


@dataclasses.dataclass(frozen=True)
class _Layout:
    """A StudioGAN big_resnet table: G starts at bottom² with g[0]·width channels and has one
    up-block per later entry; D's blocks after the optimized one (width channels) have
    d[i]·width channels and downsample where `down[i]`."""

    bottom: int
    g: tuple[int, ...]
    d: tuple[int, ...]
    down: tuple[bool, ...]

    @property
    def resolution(self) -> int:
        return self.bottom * 2 ** (len(self.g) - 1)

    @property
    def attention(self) -> int:
        """The side at which both networks attend: min(64, R/2)."""
        return min(64, self.resolution // 2)


_LAYOUTS = {
    48: _Layout(3, (16, 8, 4, 2, 1), (2, 4, 8, 16), (True, True, True, False)),
    64: _Layout(4, (16, 8, 4, 2, 1), (2, 4, 8, 16), (True, True, True, False)),
    128: _Layout(4, (16, 16, 8, 4, 2, 1), (2, 4, 8, 16, 16), (True,) * 4 + (False,)),
    256: _Layout(4, (16, 16, 8, 8, 4, 2, 1), (2, 4, 8, 8, 16, 16), (True,) * 5 + (False,)),
}
BIGGAN_RESOLUTIONS = (32, *sorted(_LAYOUTS))
# Per-resolution default z size: one 20-d chunk per generator stage (BigGAN's 120 / 140).
BIGGAN_LATENT_DIMS = {resolution: 20 * len(layout.g) for resolution, layout in _LAYOUTS.items()}


def _inputs(*, latent_dim: int | None = None, image_size: int | None = None):
    """(main input, labels): z float32 [B, latent_dim] or images [B, S, S, 3]; y int32 [B]."""
    if latent_dim is not None:
        main = keras.Input(shape=(latent_dim,), dtype="float32", name="z")
    else:
        main = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="images")
    return main, keras.Input(shape=(), dtype="int32", name="y")


def build_biggan32_generator(*, width: int = 64, num_classes: int = 10, latent_dim: int = 128,
                             seed: int = 0) -> keras.Model:
    """BigGAN-32 generator: [z float32 [B, latent_dim], y int32 [B]] -> [B, 32, 32, 3] in [-1, 1].

    `width` is `ch` (64): every block has 4·width channels; class-conditional BN from
    embeddings; SN on every conv and linear; N(0, 0.02) init.
    """
    channels = 4 * positive_int("width", width)
    num_classes = positive_int("num_classes", num_classes)
    f = LayerFactory(Initializers(NORMAL_002, seed=seed, stream=_G_STREAM), spectral_norm=True)
    z, y = _inputs(latent_dim=positive_int("latent_dim", latent_dim))
    h = f.dense(z, 4 * 4 * channels, name="g_linear")
    h = keras.layers.Reshape((4, 4, channels), name="g_reshape")(h)
    for index in range(1, 4):
        h = generator_block(f, h, channels, cond=y, num_classes=num_classes,
                            name=f"g_block{index}")
    return keras.Model([z, y], generator_output(f, h), name="biggan32_generator")


def build_biggan32_discriminator(*, width: int = 64, num_classes: int = 10,
                                 seed: int = 0) -> keras.Model:
    """BigGAN-32 projection discriminator: [images [B, 32, 32, 3], y int32 [B]] -> logits [B].

    `width` is `ch` (64): 4·width channels throughout; SN everywhere; the final `classifier`
    linear and the projection embedding stay dense.
    """
    channels = 4 * positive_int("width", width)
    num_classes = positive_int("num_classes", num_classes)
    f = LayerFactory(Initializers(NORMAL_002, seed=seed, stream=_D_STREAM), spectral_norm=True)
    images, y = _inputs(image_size=32)
    h = discriminator_block(f, images, channels, name="d_block1", downsample=True, first=True)
    for index, down in enumerate([True, False, False], start=2):
        h = discriminator_block(f, h, channels, name=f"d_block{index}", downsample=down)
    logits = discriminator_output(f, h, pool="sum", masked=False, labels=y,
                                  num_classes=num_classes)
    return keras.Model([images, y], logits, name="biggan32_discriminator")


def _layout(resolution: int) -> _Layout:
    if resolution not in _LAYOUTS:
        raise ValueError(f"the StudioGAN BigGAN builders take resolution 48, 64, 128 or 256, "
                         f"got {resolution!r}; 32 has its own builders")
    return _LAYOUTS[resolution]


def build_biggan_generator(*, resolution: int, width: int = 80, num_classes: int = 200,
                           latent_dim: int | None = None, shared_dim: int = 128,
                           seed: int = 0) -> keras.Model:
    """StudioGAN BigGAN generator at `resolution` (48, 64, 128, 256):
    [z float32 [B, latent_dim], y int32 [B]] -> [B, R, R, 3] in [-1, 1].

    z is split into one equal chunk per stage (latent_dim, default 20 per chunk, must be a
    multiple of the chunk count): chunk 0 feeds the linear, chunk i the conditional BNs of
    block i through [shared_embedding(y); chunk i]. Self-attention at min(64, R/2)²;
    orthogonal init.
    """
    layout = _layout(resolution)
    width = positive_int("width", width)
    num_classes = positive_int("num_classes", num_classes)
    chunks_count = len(layout.g)
    latent_dim = positive_int("latent_dim", 20 * chunks_count if latent_dim is None
                              else latent_dim)
    if latent_dim % chunks_count:
        raise ValueError(f"latent_dim must be a multiple of {chunks_count} (one chunk "
                         f"per generator stage at {resolution}px), got {latent_dim}")
    f = LayerFactory(Initializers(ORTHOGONAL, seed=seed, stream=_G_STREAM), spectral_norm=True,
                     sn_eps=_BIGGAN64_SN_EPS, bn_epsilon=_BIGGAN64_BN_EPS)
    z, y = _inputs(latent_dim=latent_dim)
    shared = f.embedding(y, num_classes, positive_int("shared_dim", shared_dim),
                         name="g_shared_embedding")
    chunks = tf.split(z, chunks_count, axis=1)
    bottom, channels = layout.bottom, [m * width for m in layout.g]
    h = f.dense(chunks[0], bottom * bottom * channels[0], name="g_linear")
    h = keras.layers.Reshape((bottom, bottom, channels[0]), name="g_reshape")(h)
    for index, out_channels in enumerate(channels[1:], start=1):
        cond = keras.layers.Concatenate(name=f"g_block{index}_cond")([shared, chunks[index]])
        h = generator_block(f, h, out_channels, cond=cond, name=f"g_block{index}")
        if bottom * 2 ** index == layout.attention:
            h = self_attention(f, h, name="g_attention")
    return keras.Model([z, y], generator_output(f, h), name=f"biggan{resolution}_generator")


def build_biggan_discriminator(*, resolution: int, width: int = 80, num_classes: int = 200,
                               seed: int = 0) -> keras.Model:
    """StudioGAN BigGAN projection discriminator at `resolution` (48, 64, 128, 256):
    [images [B, R, R, 3], y int32 [B]] -> logits [B].

    Optimized block to `width`, the layout's downsampling blocks (to 3², 4² or 4²), then one
    block without downsampling; self-attention at min(64, R/2)²; SN everywhere; orthogonal
    init.
    """
    layout = _layout(resolution)
    width = positive_int("width", width)
    num_classes = positive_int("num_classes", num_classes)
    f = LayerFactory(Initializers(ORTHOGONAL, seed=seed, stream=_D_STREAM), spectral_norm=True,
                     sn_eps=_BIGGAN64_SN_EPS, bn_epsilon=_BIGGAN64_BN_EPS)
    images, y = _inputs(image_size=resolution)
    h = discriminator_block(f, images, width, name="d_block1", downsample=True, first=True)
    side = resolution // 2
    for index, (multiple, down) in enumerate(zip(layout.d, layout.down), start=2):
        if side == layout.attention:
            h = self_attention(f, h, name="d_attention")
        h = discriminator_block(f, h, multiple * width, name=f"d_block{index}", downsample=down)
        side //= 2 if down else 1
    logits = discriminator_output(f, h, pool="sum", labels=y, num_classes=num_classes)
    return keras.Model([images, y], logits, name=f"biggan{resolution}_discriminator")


def build_biggan64_generator(*, width: int = 80, num_classes: int = 200, latent_dim: int = 100,
                             shared_dim: int = 128, seed: int = 0) -> keras.Model:
    """BigGAN-64 generator: [z float32 [B, latent_dim], y int32 [B]] -> [B, 64, 64, 3] in [-1, 1].

    z is split into 5 equal chunks (latent_dim must be a multiple of 5): chunk 0 feeds the
    linear, chunk i the conditional BNs of block i through [shared_embedding(y); chunk i].
    Channels 16·width -> 8w -> 4w -> 2w -> w, self-attention at 32²; orthogonal init.
    """
    return build_biggan_generator(resolution=64, width=width, num_classes=num_classes,
                                  latent_dim=latent_dim, shared_dim=shared_dim, seed=seed)


def build_biggan64_discriminator(*, width: int = 80, num_classes: int = 200,
                                 seed: int = 0) -> keras.Model:
    """BigGAN-64 projection discriminator: [images [B, 64, 64, 3], y int32 [B]] -> logits [B].

    Channels width -> 2w -> 4w -> 8w -> 16w (64² -> 32² -> 16² -> 8² -> 4² -> 4²),
    self-attention after the first block; SN everywhere; orthogonal init.
    """
    return build_biggan_discriminator(resolution=64, width=width, num_classes=num_classes,
                                      seed=seed)
