"""Building blocks shared by the SNGAN and BigGAN architectures (functional Keras, NHWC).

Every block is a function that wires layers into a functional graph, so every weight-bearing
layer (each masked conv and linear included) is a node of the model: `model.summary()` lists it
and `layer.output_shape` is defined, which FLOPs accounting relies on. The few custom layers here
carry no kernel: nearest upsampling, global sum pooling, the conditional-BN modulation, the
attention mixing and the attention's scalar gain.

Which weights are masked follows the official ADAPT code (`sparselearning/core.py`,
`Masking.add_module`): every conv and linear kernel is a `MaskedConv2D` / `MaskedDense`; biases,
BatchNorm affine parameters, embedding tables and the conditional-BN gain/bias projections are
dense. The attention gain (`sigma` in StudioGAN) is masked by the official code but always left
dense by ERK; here it is a plain scalar weight (`ScaledResidual.gamma`), so each attention block
has one weight fewer in the masked count than the official model.

Conventions taken from PyTorch and converted:
  * BatchNorm momentum 0.1 (weight of the new batch) is Keras momentum 0.9 (`BN_MOMENTUM`).
  * Kernels use the Keras layout (`[kh, kw, in, out]`, `[in, out]`); fan-in is the same product
    as PyTorch's, so variance-scaled initialisers match in distribution.
  * The linear layer that starts a generator is reshaped to `[B, 4, 4, C]` (NHWC) instead of
    PyTorch's `.view(B, C, 4, 4)`: the same function up to a permutation of its output units.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import tensorflow as tf
import tf_keras as keras

from adapt_tf.sparse.layers import MaskedConv2D, MaskedDense, SNDense, SNEmbedding

__all__ = [
    "BN_MOMENTUM",
    "InitScheme",
    "TORCH_DEFAULT",
    "KAIMING_NORMAL",
    "NORMAL_002",
    "ORTHOGONAL",
    "Initializers",
    "LayerFactory",
    "NearestUpsample",
    "GlobalSumPool",
    "ConditionalAffine",
    "AttentionMap",
    "ScaledResidual",
    "Logits",
    "conditional_batch_norm",
    "generator_block",
    "generator_output",
    "discriminator_block",
    "self_attention",
    "discriminator_output",
]

BN_MOMENTUM = 0.9

Initializer = keras.initializers.Initializer


# --------------------------------------------------------------------------- initialisation


@dataclasses.dataclass(frozen=True)
class InitScheme:
    """How one reference implementation initialises weights.

    `kernel(seed)` is for conv and linear kernels, `bias(seed, fan_in)` for their biases,
    `embedding(seed)` for embedding tables. BatchNorm keeps gamma = 1, beta = 0 everywhere.
    """

    name: str
    kernel: Callable[[int], Initializer]
    bias: Callable[[int, int], Initializer]
    embedding: Callable[[int], Initializer]


def _torch_default_bias(seed: int, fan_in: int) -> Initializer:
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound, seed=seed)


def _zeros(seed: int, fan_in: int = 0) -> Initializer:
    del seed, fan_in
    return keras.initializers.Zeros()


# PyTorch's Conv2d/Linear default: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), which is
# VarianceScaling(1/3, fan_in, uniform); bias U(+-1/sqrt(fan_in)); nn.Embedding N(0, 1).
TORCH_DEFAULT = InitScheme(
    name="torch_default",
    kernel=lambda seed: keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform",
                                                           seed=seed),
    bias=_torch_default_bias,
    embedding=lambda seed: keras.initializers.RandomNormal(0.0, 1.0, seed=seed),
)

# GNGAN-PyTorch `models/resnet.py`: init.kaiming_normal_ (std sqrt(2 / fan_in), not truncated)
# and zero biases for every conv and linear.
KAIMING_NORMAL = InitScheme(
    name="kaiming_normal",
    kernel=lambda seed: keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal",
                                                           seed=seed),
    bias=_zeros,
    embedding=lambda seed: keras.initializers.RandomNormal(0.0, 1.0, seed=seed),
)

# GNGAN-PyTorch `models/biggan.py` `res32_weights_init`: N(0, 0.02) for conv, linear and
# embedding weights; its bias reset is commented out, so biases keep PyTorch's default.
NORMAL_002 = InitScheme(
    name="normal_002",
    kernel=lambda seed: keras.initializers.RandomNormal(0.0, 0.02, seed=seed),
    bias=_torch_default_bias,
    embedding=lambda seed: keras.initializers.RandomNormal(0.0, 0.02, seed=seed),
)

# StudioGAN `init_weights(..., "ortho")`: orthogonal conv, linear and embedding weights, zero
# biases. Keras orthogonalises the [kh*kw*in, out] matrix, PyTorch its transpose: same law.
ORTHOGONAL = InitScheme(
    name="orthogonal",
    kernel=lambda seed: keras.initializers.Orthogonal(1.0, seed=seed),
    bias=_zeros,
    embedding=lambda seed: keras.initializers.Orthogonal(1.0, seed=seed),
)


class Initializers:
    """Freshly seeded initialisers of one scheme, deterministic from (seed, stream, call count).

    Each call returns an initialiser with its own seed (a seeded Keras initialiser repeats its
    values), so two builds with the same seed are identical and G (stream 0) and D (stream 1)
    never share a seed.
    """

    def __init__(self, scheme: InitScheme, *, seed: int, stream: int):
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.scheme = scheme
        self._entropy = [int(seed), int(stream)]
        self._count = 0

    def _next_seed(self) -> int:
        self._count += 1
        state = np.random.SeedSequence(self._entropy + [self._count]).generate_state(1)
        return int(state[0] & 0x7FFFFFFF)

    def kernel(self) -> Initializer:
        return self.scheme.kernel(self._next_seed())

    def bias(self, fan_in: int) -> Initializer:
        return self.scheme.bias(self._next_seed(), int(fan_in))

    def embedding(self) -> Initializer:
        return self.scheme.embedding(self._next_seed())


@dataclasses.dataclass
class LayerFactory:
    """Makes one network's layers with its reference's init, spectral norm and BN settings.

    `conv` and `dense` create masked layers (the official code masks every conv and linear
    kernel); `sn_dense` and `embedding` create the dense ones it leaves unmasked.
    """

    init: Initializers
    spectral_norm: bool
    sn_eps: float = 1e-12
    bn_epsilon: float = 1e-5

    def conv(self, x, filters: int, kernel_size: int, *, name: str, use_bias: bool = True):
        """Masked `kernel_size`² conv, stride 1, 'same' padding: [B,H,W,C] -> [B,H,W,filters]."""
        fan_in = int(x.shape[-1]) * kernel_size * kernel_size
        layer = MaskedConv2D(
            filters, kernel_size, padding="same", use_bias=use_bias,
            spectral_norm=self.spectral_norm, sn_eps=self.sn_eps,
            kernel_initializer=self.init.kernel(),
            bias_initializer=self.init.bias(fan_in) if use_bias else "zeros", name=name)
        return layer(x)

    def dense(self, x, units: int, *, name: str, use_bias: bool = True):
        """Masked linear layer: [B, F] -> [B, units]."""
        layer = MaskedDense(
            units, use_bias=use_bias, spectral_norm=self.spectral_norm, sn_eps=self.sn_eps,
            kernel_initializer=self.init.kernel(),
            bias_initializer=self.init.bias(int(x.shape[-1])) if use_bias else "zeros",
            name=name)
        return layer(x)

    def sn_dense(self, x, units: int, *, name: str, use_bias: bool = True):
        """Dense (never masked) linear layer, spectrally normalised if the network is."""
        layer = SNDense(
            units, use_bias=use_bias, spectral_norm=self.spectral_norm, sn_eps=self.sn_eps,
            kernel_initializer=self.init.kernel(),
            bias_initializer=self.init.bias(int(x.shape[-1])) if use_bias else "zeros",
            name=name)
        return layer(x)

    def embedding(self, labels, num_classes: int, dim: int, *, name: str,
                  spectral_norm: bool = False):
        """Dense class embedding: int labels [B] -> [B, dim]."""
        init = self.init.embedding()
        if spectral_norm:
            layer = SNEmbedding(num_classes, dim, sn_eps=self.sn_eps,
                                embeddings_initializer=init, name=name)
        else:
            layer = keras.layers.Embedding(num_classes, dim, embeddings_initializer=init,
                                           name=name)
        return layer(labels)

    def batch_norm(self, x, *, name: str, affine: bool = True):
        """BatchNorm over the channel axis with PyTorch's momentum and this network's eps.

        Built under a strategy with several replicas, the batch statistics are synchronised
        (over the global batch), so that a distributed run computes what one device does.
        """
        synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1
        return keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, epsilon=self.bn_epsilon, center=affine, scale=affine,
            synchronized=synchronized, name=name)(x)


# --------------------------------------------------------------------------- weight-free layers


class NearestUpsample(keras.layers.Layer):
    """Nearest-neighbour ×2 upsampling, [B, H, W, C] -> [B, 2H, 2W, C].

    Each axis is doubled by broadcasting a new axis of 2 and folding it in: `tf.repeat`'s
    values, and a gradient that sums each pair in one reduction as `tf.repeat`'s does (so
    training is bit-identical to it), in a sixth of its graph ops (it builds its shapes at run
    time), which shortens the trace of every step that calls G. Not `UpSampling2D`, whose
    gradient has no XLA CPU kernel.
    """

    def call(self, inputs):
        _, height, width, channels = inputs.shape
        if None in (height, width, channels):  # unknown spatial size: the dynamic form
            return tf.repeat(tf.repeat(inputs, 2, axis=1), 2, axis=2)
        batch = inputs.shape[0] if inputs.shape[0] is not None else tf.shape(inputs)[0]
        rows = tf.broadcast_to(tf.reshape(inputs, [-1, height, 1, width, channels]),
                               [batch, height, 2, width, channels])
        rows = tf.reshape(rows, [-1, 2 * height, width, 1, channels])
        both = tf.broadcast_to(rows, [batch, 2 * height, width, 2, channels])
        return tf.reshape(both, [-1, 2 * height, 2 * width, channels])


class GlobalSumPool(keras.layers.Layer):
    """Sum over the spatial axes, [B, H, W, C] -> [B, C] (SNGAN / BigGAN discriminators)."""

    def call(self, inputs):
        return tf.reduce_sum(inputs, axis=[1, 2])


class ConditionalAffine(keras.layers.Layer):
    """Conditional BN's modulation: ([x, gain, bias]) -> x * (1 + gain) + bias.

    x: [B, H, W, C] (already batch-normalised without affine); gain, bias: [B, C].
    """

    def call(self, inputs):
        x, gain, bias = inputs
        gain = tf.cast(gain, x.dtype)[:, None, None, :]
        bias = tf.cast(bias, x.dtype)[:, None, None, :]
        return x * (1.0 + gain) + bias


def _dim(tensor, axis: int):
    static = tensor.shape[axis]
    return static if static is not None else tf.shape(tensor)[axis]


class AttentionMap(keras.layers.Layer):
    """SAGAN attention mixing: ([theta, phi, g]) -> softmax(theta phi^T) g, back on theta's grid.

    theta: [B, H, W, Ck] queries; phi: [B, H', W', Ck] keys; g: [B, H', W', Cv] values.
    Output [B, H, W, Cv]. The softmax runs in float32 (mixed precision safe).
    """

    def call(self, inputs):
        theta, phi, g = inputs
        batch = tf.shape(theta)[0]
        height, width = _dim(theta, 1), _dim(theta, 2)
        queries = tf.reshape(theta, [batch, -1, theta.shape[-1]])
        keys = tf.reshape(phi, [batch, -1, phi.shape[-1]])
        values = tf.reshape(g, [batch, -1, g.shape[-1]])
        logits = tf.matmul(queries, keys, transpose_b=True)
        weights = tf.cast(tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1), values.dtype)
        return tf.reshape(tf.matmul(weights, values), [batch, height, width, g.shape[-1]])

    def attention_macs(self, input_shapes) -> float:
        """Per-sample MACs of the two matmuls, from the [theta, phi, g] shapes (`macs`)."""
        theta, phi, g = input_shapes
        queries = math.prod(theta[1:-1])
        keys = math.prod(phi[1:-1])
        return float(queries * keys * (theta[-1] + g[-1]))


class ScaledResidual(keras.layers.Layer):
    """([x, o]) -> x + gamma * o with a learnable scalar `gamma` starting at 0.

    The attention gain of SAGAN (StudioGAN's `sigma`): the block starts as the identity.
    """

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="zeros",
                                     trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        x, o = inputs
        return x + tf.cast(self.gamma, x.dtype) * o


class Logits(keras.layers.Layer):
    """Discriminator output: [B, 1] -> float32 [B] (float32 even under mixed precision)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        return tf.squeeze(tf.cast(inputs, tf.float32), axis=-1)


# --------------------------------------------------------------------------- blocks


def conditional_batch_norm(f: LayerFactory, x, cond, *, num_classes: int | None, name: str):
    """BatchNorm without affine, then x * (1 + gain(cond)) + bias(cond); [B,H,W,C] -> same.

    With `num_classes`, `cond` is int labels [B] and gain/bias are embedding tables
    (BigGAN-32, GNGAN `ConditionalBatchNorm2d(linear=False)`). Without it, `cond` is a float
    vector [B, F] and gain/bias are bias-free linears, spectrally normalised if the network is
    (BigGAN-64, StudioGAN `ConditionalBatchNorm2d_for_skip_and_shared`). Both stay dense.
    """
    channels = int(x.shape[-1])
    normalized = f.batch_norm(x, name=f"{name}_bn", affine=False)
    if num_classes is not None:
        gain = f.embedding(cond, num_classes, channels, name=f"{name}_gain")
        bias = f.embedding(cond, num_classes, channels, name=f"{name}_bias")
    else:
        gain = f.sn_dense(cond, channels, name=f"{name}_gain", use_bias=False)
        bias = f.sn_dense(cond, channels, name=f"{name}_bias", use_bias=False)
    return ConditionalAffine(name=f"{name}_affine")([normalized, gain, bias])


def generator_block(f: LayerFactory, x, channels: int, *, name: str, cond=None,
                    num_classes: int | None = None):
    """Up-sampling residual block of SNGAN and BigGAN: [B, H, W, C] -> [B, 2H, 2W, channels].

    residual: BN -> ReLU -> up×2 -> conv3×3 -> BN -> ReLU -> conv3×3;
    shortcut: up×2 -> conv1×1 (learnable, as in every reference: the block always upsamples).
    With `cond` both BNs are conditional (see `conditional_batch_norm`).
    """

    def norm(h, index: int):
        if cond is None:
            return f.batch_norm(h, name=f"{name}_bn{index}")
        return conditional_batch_norm(f, h, cond, num_classes=num_classes,
                                      name=f"{name}_cbn{index}")

    h = keras.layers.ReLU(name=f"{name}_relu1")(norm(x, 1))
    h = NearestUpsample(name=f"{name}_up")(h)
    h = f.conv(h, channels, 3, name=f"{name}_conv1")
    h = keras.layers.ReLU(name=f"{name}_relu2")(norm(h, 2))
    h = f.conv(h, channels, 3, name=f"{name}_conv2")
    shortcut = NearestUpsample(name=f"{name}_shortcut_up")(x)
    shortcut = f.conv(shortcut, channels, 1, name=f"{name}_shortcut")
    return keras.layers.Add(name=f"{name}_add")([h, shortcut])


def generator_output(f: LayerFactory, x, *, name: str = "g_output"):
    """BN -> ReLU -> conv3×3 to RGB -> tanh: [B, H, W, C] -> float32 [B, H, W, 3] in [-1, 1]."""
    h = keras.layers.ReLU(name=f"{name}_relu")(f.batch_norm(x, name=f"{name}_bn"))
    h = f.conv(h, 3, 3, name=f"{name}_conv")
    return keras.layers.Activation("tanh", dtype="float32", name=f"{name}_tanh")(h)


def discriminator_block(f: LayerFactory, x, channels: int, *, name: str, downsample: bool,
                        first: bool = False):
    """Residual block of the SNGAN / BigGAN discriminators: [B,H,W,C] -> [B,H',W',channels].

    first (the "optimized" block, on images): conv3×3 -> ReLU -> conv3×3 -> avgpool, shortcut
    avgpool -> conv1×1; it always downsamples. Otherwise: ReLU -> conv3×3 -> ReLU -> conv3×3
    [-> avgpool], shortcut conv1×1 [-> avgpool] when the channels change or it downsamples,
    else the identity. H' = floor(H / 2) when downsampling.
    """

    def pool(suffix: str):
        return keras.layers.AveragePooling2D(2, name=f"{name}_{suffix}")

    if first:
        h = f.conv(x, channels, 3, name=f"{name}_conv1")
        h = keras.layers.ReLU(name=f"{name}_relu1")(h)
        h = pool("pool")(f.conv(h, channels, 3, name=f"{name}_conv2"))
        shortcut = f.conv(pool("shortcut_pool")(x), channels, 1, name=f"{name}_shortcut")
        return keras.layers.Add(name=f"{name}_add")([h, shortcut])
    h = f.conv(keras.layers.ReLU(name=f"{name}_relu1")(x), channels, 3, name=f"{name}_conv1")
    h = f.conv(keras.layers.ReLU(name=f"{name}_relu2")(h), channels, 3, name=f"{name}_conv2")
    shortcut = x
    if downsample or int(x.shape[-1]) != channels:
        shortcut = f.conv(x, channels, 1, name=f"{name}_shortcut")
    if downsample:
        h = pool("pool")(h)
        shortcut = pool("shortcut_pool")(shortcut)
    return keras.layers.Add(name=f"{name}_add")([h, shortcut])


def self_attention(f: LayerFactory, x, *, name: str):
    """SAGAN self-attention as in StudioGAN `Self_Attn`: [B, H, W, C] -> [B, H, W, C].

    theta = conv1×1(C -> C/8); phi = maxpool(conv1×1(C -> C/8)); g = maxpool(conv1×1(C -> C/2));
    out = x + gamma * conv1×1(softmax(theta phi^T) g, C/2 -> C). All four convs are masked and
    bias-free; gamma is a dense scalar starting at 0. Needs C >= 8 and even H, W.
    """
    channels = int(x.shape[-1])
    if channels < 8:
        raise ValueError(f"self-attention needs at least 8 channels, got {channels}; "
                         "use a larger width")
    theta = f.conv(x, channels // 8, 1, use_bias=False, name=f"{name}_theta")
    phi = f.conv(x, channels // 8, 1, use_bias=False, name=f"{name}_phi")
    phi = keras.layers.MaxPooling2D(2, name=f"{name}_phi_pool")(phi)
    g = f.conv(x, channels // 2, 1, use_bias=False, name=f"{name}_g")
    g = keras.layers.MaxPooling2D(2, name=f"{name}_g_pool")(g)
    attended = AttentionMap(name=f"{name}_map")([theta, phi, g])
    out = f.conv(attended, channels, 1, use_bias=False, name=f"{name}_out")
    return ScaledResidual(name=f"{name}_residual")([x, out])


def discriminator_output(f: LayerFactory, h, *, name: str = "d_output", pool: str = "sum",
                         use_bias: bool = True, masked: bool = True, labels=None,
                         num_classes: int | None = None):
    """ReLU -> global pool -> linear to 1 [+ projection <embed(y), h>] -> float32 logits [B].

    pool: "sum" (SNGAN-32, BigGAN) or "mean" (GNGAN's AdaptiveAvgPool2d, SNGAN-48).
    masked: the final linear is masked (all but BigGAN-32's dense `classifier`).
    labels/num_classes: projection discriminator (Miyato & Koyama, 2018) with a dense
    spectrally normalised class embedding.
    """
    h = keras.layers.ReLU(name=f"{name}_relu")(h)
    if pool == "sum":
        h = GlobalSumPool(name=f"{name}_pool")(h)
    elif pool == "mean":
        h = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(h)
    else:
        raise ValueError(f"pool must be 'sum' or 'mean', got {pool!r}")
    linear = f.dense if masked else f.sn_dense
    out = linear(h, 1, name=f"{name}_linear", use_bias=use_bias)
    if labels is not None:
        embedded = f.embedding(labels, num_classes, int(h.shape[-1]),
                               name=f"{name}_embedding", spectral_norm=f.spectral_norm)
        projection = keras.layers.Dot(axes=1, name=f"{name}_projection")([embedded, h])
        out = keras.layers.Add(name=f"{name}_add")([out, projection])
    return Logits(name=f"{name}_logits")(out)
