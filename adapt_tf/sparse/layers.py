"""Masked and spectrally normalised Keras layers.

Every sparse weight of adapt_tf lives in a masked layer: `MaskedDense` or `MaskedConv2D`. The
layer owns a non-trainable float32 0/1 `mask` of its kernel's shape and computes its forward
pass with `kernel * mask`. Two details follow the official ADAPT code (PyTorch, `sparselearning`):

* The gradient reaching `kernel` is the *dense* gradient dL/d(kernel * mask): the official code
  multiplies the weights by the mask after each optimizer step, so its Adam sees dense
  gradients, and RigL-style growth ranks inactive weights by that same gradient. We get it
  without a second pass through a straight-through mask (`masked_kernel`).
* Entries of `kernel` outside the mask are exactly 0 after every optimizer step: a kernel
  constraint (applied by every tf_keras optimizer right after its update) multiplies by the
  mask, composed with any constraint the user passes.

With `spectral_norm=True` the *masked* kernel is divided by its largest singular value, estimated
by one power iteration per training call with a persistent vector `sn_u`, as
`torch.nn.utils.spectral_norm` does (Miyato et al., 2018). Spectral norm runs in float32 under
mixed precision.

`SNDense`, `SNConv2D` and `SNEmbedding` are the dense (unmasked) spectrally normalised layers for
the weights the official code leaves dense: BigGAN's conditional-BN gain/bias linears, class
embeddings and the BigGAN-32 discriminator's classifier.
"""
from __future__ import annotations

from typing import Iterable

import tensorflow as tf
import tf_keras as keras
# Private: mixed precision's variable wrapper is not exported, and reading it in a layer's call
# casts to the compute dtype; `_float32_value` needs the float32 variable underneath.
from tf_keras.src.mixed_precision.autocast_variable import AutoCastVariable

from adapt_tf.sparse import topology

__all__ = [
    "MaskedLayer",
    "MaskedDense",
    "MaskedConv2D",
    "SNDense",
    "SNConv2D",
    "SNEmbedding",
    "masked_layers",
    "apply_masks",
]


_SN_U_SEED = 1234


def _straight_through_mask(kernel: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """kernel * mask whose gradient w.r.t. kernel is the dense upstream gradient (none to the
    mask). The value is exact: kernel + (kernel * mask - kernel) is kernel where the mask is 1
    and 0 where it is 0, as x - x and x + 0 are exact in floating point. Written with
    `stop_gradient`, not `tf.custom_gradient`, whose wrapper and zero mask gradient took a
    tenth of the masked steps' graphs."""
    return kernel + tf.stop_gradient(kernel * mask - kernel)


def _float32_value(variable) -> tf.Tensor:
    """The float32 value of a variable, unwrapping mixed precision's AutoCastVariable."""
    if isinstance(variable, AutoCastVariable):
        variable = variable._variable
    return tf.convert_to_tensor(variable)


class _SpectralNorm:
    """Spectral normalisation of a weight, shared by the SN-capable layers.

    The weight is viewed as a matrix [prod(shape[:-1]), shape[-1]]; `sn_u` ([1, shape[-1]],
    non-trainable, float32) is the persistent left singular vector estimate. Training calls run
    one power iteration and store the new `sn_u`; inference calls reuse it.
    """

    spectral_norm: bool
    sn_eps: float

    def _build_spectral_norm(self, weight_shape) -> None:
        self.sn_u = None
        if not self.spectral_norm:
            return
        self.sn_u = self.add_weight(
            name="sn_u",
            shape=(1, int(weight_shape[-1])),
            # Seeded, so that a model built twice starts its power iteration identically
            # (PyTorch draws u at random; any u not orthogonal to the top singular vector works).
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=_SN_U_SEED),
            trainable=False,
            dtype=tf.float32,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            experimental_autocast=False,
        )

    def _normalize(self, weight: tf.Tensor, training) -> tf.Tensor:
        if not self.spectral_norm:
            return weight
        normalized, u = self.normalized_weight(weight, power_iteration=bool(training))
        if training:
            self.sn_u.assign(u)
        return normalized

    def normalized_weight(self, weight: tf.Tensor, *, power_iteration: bool
                          ) -> tuple[tf.Tensor, tf.Tensor]:
        """(weight / sigma, u) without assigning `sn_u`: sigma as a training call (one power
        iteration from `sn_u`, whose result is u) or an inference call (u = `sn_u`) computes
        it. Exports use it to bake kernels."""
        matrix = tf.reshape(weight, [-1, weight.shape[-1]])
        u = tf.math.l2_normalize(tf.convert_to_tensor(self.sn_u), axis=1, epsilon=self.sn_eps)
        v = tf.math.l2_normalize(tf.matmul(u, matrix, transpose_b=True), axis=1,
                                 epsilon=self.sn_eps)
        if power_iteration:
            u = tf.math.l2_normalize(tf.matmul(v, matrix), axis=1, epsilon=self.sn_eps)
            u = tf.stop_gradient(u)
            v = tf.stop_gradient(v)
        sigma = tf.reduce_sum(tf.matmul(v, matrix) * u)
        return weight / sigma, u


class _MaskConstraint(keras.constraints.Constraint):
    """Keeps kernel entries outside the layer's mask at exactly 0 (after a user constraint)."""

    def __init__(self, layer: "MaskedLayer", user_constraint=None):
        self._layer = layer
        self.user_constraint = user_constraint

    def __call__(self, kernel):
        if self.user_constraint is not None:
            kernel = self.user_constraint(kernel)
        return kernel * tf.cast(_float32_value(self._layer.mask), kernel.dtype)

    def get_config(self):
        return keras.constraints.serialize(self.user_constraint) if self.user_constraint else {}


class MaskedLayer(_SpectralNorm):
    """Mixin of every masked layer: a kernel, a 0/1 `mask` of its shape, optional SN.

    Subclasses call `_wrap_kernel_constraint()` before building the kernel and
    `_build_mask()` after it, and use `effective_kernel(training)` in `call`.
    """

    kernel: tf.Variable
    mask: tf.Variable

    def _wrap_kernel_constraint(self) -> None:
        self._user_kernel_constraint = self.kernel_constraint
        self.kernel_constraint = _MaskConstraint(self, self._user_kernel_constraint)

    def _build_mask(self) -> None:
        self.mask = self.add_weight(
            name="mask",
            shape=self.kernel.shape,
            initializer="ones",
            trainable=False,
            dtype=tf.float32,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            experimental_autocast=False,
        )
        self._build_spectral_norm(self.kernel.shape)

    def masked_kernel(self) -> tf.Tensor:
        """kernel * mask in float32, with the dense (straight-through) gradient to kernel."""
        return _straight_through_mask(_float32_value(self.kernel), tf.convert_to_tensor(self.mask))

    def effective_kernel(self, training=None) -> tf.Tensor:
        """The kernel the forward pass uses, cast to the layer's compute dtype."""
        kernel = self._normalize(self.masked_kernel(), training)
        return tf.cast(kernel, self.compute_dtype)

    @property
    def density(self) -> float:
        """Fraction of active kernel entries (eager; `topology.layer_densities` computes it)."""
        return topology.layer_densities([self])[self.name]

    def get_prunable_weights(self) -> list:
        """tfmot's `PrunableLayer` interface: the kernel is the prunable weight."""
        return [self.kernel]

    def _masked_config(self, config: dict) -> dict:
        config["kernel_constraint"] = keras.constraints.serialize(self._user_kernel_constraint)
        config["spectral_norm"] = self.spectral_norm
        config["sn_eps"] = self.sn_eps
        return config


def _check_sn_eps(sn_eps: float) -> float:
    if not sn_eps > 0:
        raise ValueError(f"sn_eps must be > 0, got {sn_eps!r}")
    return float(sn_eps)


class MaskedDense(MaskedLayer, keras.layers.Dense):
    """`keras.layers.Dense` whose kernel [in, units] is multiplied by a 0/1 `mask`.

    Args:
      units: output size.
      spectral_norm: divide the masked kernel by its spectral norm (power iteration).
      sn_eps: epsilon of the power iteration's normalisations (PyTorch default 1e-12).
      **dense_kwargs: any `keras.layers.Dense` argument.
    """

    def __init__(self, units: int, *, spectral_norm: bool = False, sn_eps: float = 1e-12,
                 **dense_kwargs):
        super().__init__(units, **dense_kwargs)
        self.spectral_norm = bool(spectral_norm)
        self.sn_eps = _check_sn_eps(sn_eps)
        self._wrap_kernel_constraint()

    def build(self, input_shape):
        super().build(input_shape)
        self._build_mask()

    def call(self, inputs, training=None):
        inputs = tf.cast(inputs, self.compute_dtype)
        kernel = self.effective_kernel(training)
        if inputs.shape.rank == 2:
            outputs = tf.matmul(inputs, kernel)
        else:
            outputs = tf.tensordot(inputs, kernel, [[inputs.shape.rank - 1], [0]])
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        return self._masked_config(super().get_config())


class MaskedConv2D(MaskedLayer, keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose kernel [kh, kw, in, out] is multiplied by a 0/1 `mask`.

    Args:
      filters, kernel_size: as `keras.layers.Conv2D`.
      spectral_norm: divide the masked kernel by its spectral norm (power iteration).
      sn_eps: epsilon of the power iteration's normalisations.
      **conv_kwargs: any `keras.layers.Conv2D` argument.
    """

    def __init__(self, filters: int, kernel_size, *, spectral_norm: bool = False,
                 sn_eps: float = 1e-12, **conv_kwargs):
        super().__init__(filters, kernel_size, **conv_kwargs)
        self.spectral_norm = bool(spectral_norm)
        self.sn_eps = _check_sn_eps(sn_eps)
        self._wrap_kernel_constraint()

    def build(self, input_shape):
        super().build(input_shape)
        self._build_mask()

    def call(self, inputs, training=None):
        inputs = tf.cast(inputs, self.compute_dtype)
        outputs = self.convolution_op(inputs, self.effective_kernel(training))
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias,
                                     data_format=self._tf_data_format)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        return self._masked_config(super().get_config())


class _DenseSpectralNorm(_SpectralNorm):
    """Spectral norm for a dense (unmasked) kernel, built after the Keras layer's kernel."""

    def build(self, input_shape):
        super().build(input_shape)
        self._build_spectral_norm(self.kernel.shape)

    def effective_kernel(self, training=None) -> tf.Tensor:
        kernel = self._normalize(_float32_value(self.kernel), training)
        return tf.cast(kernel, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "spectral_norm": self.spectral_norm,
                "sn_eps": self.sn_eps}


class SNDense(_DenseSpectralNorm, keras.layers.Dense):
    """Dense, unmasked `keras.layers.Dense` with spectral normalisation (on by default)."""

    def __init__(self, units: int, *, spectral_norm: bool = True, sn_eps: float = 1e-12,
                 **dense_kwargs):
        super().__init__(units, **dense_kwargs)
        self.spectral_norm = bool(spectral_norm)
        self.sn_eps = _check_sn_eps(sn_eps)

    call = MaskedDense.call


class SNConv2D(_DenseSpectralNorm, keras.layers.Conv2D):
    """Dense, unmasked `keras.layers.Conv2D` with spectral normalisation (on by default)."""

    def __init__(self, filters: int, kernel_size, *, spectral_norm: bool = True,
                 sn_eps: float = 1e-12, **conv_kwargs):
        super().__init__(filters, kernel_size, **conv_kwargs)
        self.spectral_norm = bool(spectral_norm)
        self.sn_eps = _check_sn_eps(sn_eps)

    call = MaskedConv2D.call


class SNEmbedding(_SpectralNorm, keras.layers.Embedding):
    """`keras.layers.Embedding` whose table [input_dim, output_dim] is spectrally normalised.

    Used by projection discriminators (BigGAN): the official models apply SN to the class
    embedding. Embeddings are never masked (the official code leaves them dense).
    """

    def __init__(self, input_dim: int, output_dim: int, *, spectral_norm: bool = True,
                 sn_eps: float = 1e-12, **embedding_kwargs):
        super().__init__(input_dim, output_dim, **embedding_kwargs)
        self.spectral_norm = bool(spectral_norm)
        self.sn_eps = _check_sn_eps(sn_eps)

    def build(self, input_shape=None):
        super().build(input_shape)
        self._build_spectral_norm(self.embeddings.shape)

    def call(self, inputs, training=None):
        table = self._normalize(_float32_value(self.embeddings), training)
        return tf.cast(tf.nn.embedding_lookup(table, tf.cast(inputs, tf.int32)),
                       self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "spectral_norm": self.spectral_norm,
                "sn_eps": self.sn_eps}


def masked_layers(model) -> list[MaskedLayer]:
    """The masked layers of a model (or layer, or list of either), in a stable order:
    depth-first in Keras' tracking order, nested ones included, each once
    (`topology.masked_layers`, which the model-level density helpers use too)."""
    return topology.masked_layers(model)


def apply_masks(layers: Iterable[MaskedLayer]) -> None:
    """kernel <- kernel * mask for each layer (zeroes entries a mask change deactivated)."""
    for layer in layers:
        layer.kernel.assign(layer.kernel * tf.cast(layer.mask, layer.kernel.dtype))
