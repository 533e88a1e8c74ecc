"""Exports of a trained GAN: TF-Hub style SavedModels of G (and D) and TFLite files.

A gin-free library: `export_gan(gan, output_dir)` writes `output_dir/generator/` (SavedModel),
`output_dir/generator.tflite` and `output_dir/export_info.json` (checkpoint, densities, TFLite
sizes), and with `discriminator=True` `output_dir/discriminator/`. Loading an export needs
TensorFlow only, not adapt_tf. The CLI, which rebuilds a trained run from its workdir first, is
this package's `__main__`:

    python -m adapt_tf.export --workdir=W [--checkpoint=best|last|PATH] [--discriminator]

The generator SavedModel (from the EMA generator when the run keeps one):

* `serving_default(z, [y,] truncation) -> {"images"}`: z float32 [B, latent_dim], y int32 [B]
  in [0, num_classes) (conditional models only: a signature cannot have optional inputs),
  truncation float32 scalar; images float32 [B, H, W, 3] in [-1, 1].
* BatchNorm mode of `serving_default`: **batch statistics** (Keras training mode), the mode in
  which the official code evaluates its EMA generator and in which `SparseGAN.sample` draws
  the sample grids and the FID/IS images. The images of a call therefore depend on the whole
  batch: the same z batch (and y) gives the same images as `gan.sample` gives for that batch
  (grids: one batch; FID: batches of 100). Spectral norms are baked as a training call
  computes them (one power iteration from the stored vector). Serving changes no variable
  (the moving statistics are restored after the call). For per-image outputs independent of
  the batch, call `__call__(inputs, training=False)`, which uses the moving statistics:
  these are G's (the EMA copy carries G's, as in the official code), so they fit the EMA's
  weights only approximately and the images differ from the grids.
* Truncation trick by clipping: z <- clip(z, -t, t) when t > 0, z unchanged when t <= 0. Clipping
  (rather than resampling |z| > t) keeps the output a deterministic function of the z passed in.
* A reusable `__call__(inputs, training=False)` with inputs z or [z, y] (the Keras generator's
  convention), `variables`, `trainable_variables` and an empty `regularization_losses`, so it
  works with `tf.saved_model.load`, `hub.load` and `hub.KerasLayer`. training=False uses
  BatchNorm's moving statistics; training=True is Keras training mode (batch statistics, moving
  statistics updated), for fine-tuning, which does not keep the sparsity.
* Attributes (non-trainable variables): `latent_dim`, `num_classes` (0 = unconditional),
  `image_shape` [3], `density` (active / total over the masked kernels) and `layer_densities`
  {masked layer name: density}.

Masks are baked in: each masked layer becomes a plain Keras `Dense` / `Conv2D` whose kernel is
(kernel * mask), divided by its spectral norm where the layer has one (as the Keras layer
computes it in a training call for the generator SavedModel, in an inference call for the
discriminator and TFLite), so the exported kernels are zero exactly where the masks are zero.
The same holds for tfmot-pruned models (`strip_pruning` is applied first). Weights are
float32 whatever the run's mixed-precision policy.

The discriminator SavedModel: `serving_default(images, [y]) -> {"logits"}` (float32 [B]),
`__call__(images or [images, y], training=False)`, `variables`, `image_shape`, `density`,
`layer_densities`.

TFLite: the generator (fixed batch, no truncation, BatchNorm on the moving statistics and
spectral norms of an inference call, i.e. `__call__(z, training=False)`) converted with
`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`, which stores sparse constant tensors in TFLite's
sparse format; its size is reported next to the size of a plain (dense) conversion.
"""
from __future__ import annotations

import sys

if sys.argv[:1] == ["-m"]:
    # `python -m adapt_tf.export`: runpy imports this package (argv[0] is "-m" meanwhile)
    # before the CLI in __main__, so the CLI's quiet TensorFlow start-up begins here.
    from adapt_tf import cli

    cli.quiet_tensorflow()

import dataclasses
import functools
import json
import os
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from adapt_tf import _compat
from adapt_tf.sparse import layers as masked, topology
from adapt_tf.checks import positive_int
from adapt_tf.sparse.layers import MaskedLayer, masked_layers

__all__ = [
    "TFLiteExport",
    "strip_masks",
    "export_generator",
    "export_discriminator",
    "export_tflite",
    "export_gan",
    "INFO_NAME",
]


# ------------------------------------------------------------------------ plain Keras models


def strip_masks(model: keras.Model, *, power_iteration: bool = False) -> keras.Model:
    """A float32 copy of a functional `model` in plain Keras layers, masks baked into kernels.

    Masked layers become `Dense` / `Conv2D` with kernel = kernel * mask (spectrally normalised
    where the layer has SN); `SNDense`, `SNConv2D`, `SNEmbedding` become `Dense`, `Conv2D`,
    `Embedding` with their normalised weights. Other layers are copied. tfmot pruning wrappers
    are stripped first. Spectral norms are those of an inference call (the stored vector), or
    with `power_iteration` those of a training call (one power iteration from the stored
    vector; the model's vector is not changed). The copy's outputs equal `model(x,
    training=t)` (float32) when called with training=t and `power_iteration=t`.
    """
    if not isinstance(model, keras.Model) or not getattr(model, "_is_graph_network", False):
        raise ValueError(f"strip_masks needs a functional keras.Model, got {model!r}; build "
                         "the network with keras.Input (adapt_tf.gan.architectures do).")
    model = _strip_pruning(model)
    plain = keras.models.clone_model(
        model, clone_function=functools.partial(_plain_layer, power_iteration=power_iteration))
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or isinstance(layer, keras.Model):
            continue  # nested models were stripped (weights included) by _plain_layer
        plain.get_layer(layer.name).set_weights(_baked_weights(layer, power_iteration))
    return plain


def _strip_pruning(model: keras.Model) -> keras.Model:
    if not any(type(layer).__name__ == "PruneLowMagnitude"
               for layer in _compat.flatten_layers(model, include_self=False)):
        return model
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.strip_pruning(model)


_PLAIN = ((masked.MaskedDense, keras.layers.Dense), (masked.MaskedConv2D, keras.layers.Conv2D),
          (masked.SNDense, keras.layers.Dense), (masked.SNConv2D, keras.layers.Conv2D),
          (masked.SNEmbedding, keras.layers.Embedding))


def _plain_layer(layer: keras.layers.Layer, power_iteration: bool) -> keras.layers.Layer:
    if isinstance(layer, keras.Model):
        return strip_masks(layer, power_iteration=power_iteration)
    config = {**layer.get_config(), "dtype": "float32"}
    for source, target in _PLAIN:
        if isinstance(layer, source):
            for key in ("spectral_norm", "sn_eps", "kernel_constraint",
                        "embeddings_constraint"):
                config.pop(key, None)
            return target.from_config(config)
    return layer.__class__.from_config(config)


def _baked_weights(layer: keras.layers.Layer, power_iteration: bool) -> list[np.ndarray]:
    """The layer's weights in order, with its kernel baked and mask / SN vector left out."""
    def bake(weight):
        if not layer.spectral_norm:
            return weight
        return layer.normalized_weight(weight, power_iteration=power_iteration)[0]

    if isinstance(layer, MaskedLayer):
        baked, source = bake(layer.masked_kernel()), layer.kernel
    elif isinstance(layer, (masked.SNDense, masked.SNConv2D)):
        baked, source = bake(masked._float32_value(layer.kernel)), layer.kernel
    elif isinstance(layer, masked.SNEmbedding):
        baked, source = bake(masked._float32_value(layer.embeddings)), layer.embeddings
    else:
        return [np.asarray(w, np.float32) if np.asarray(w).dtype.kind == "f" else np.asarray(w)
                for w in layer.get_weights()]
    skip = {id(getattr(layer, "mask", None)), id(getattr(layer, "sn_u", None))}
    return [np.asarray(baked, np.float32) if w is source else np.asarray(w, np.float32)
            for w in layer.weights if id(w) not in skip]


# ------------------------------------------------------------------------------ SavedModels


def _networks(model, network: str, use_ema: bool):
    """(keras network, SparseGAN or None) from a SparseGAN or a bare Keras network."""
    if hasattr(model, "generator") and hasattr(model, "discriminator"):
        if network == "discriminator":
            return model.discriminator, model
        ema = getattr(model, "ema_generator", None)
        return (ema if use_ema and ema is not None else model.generator), model
    return model, None


def _density_variables(network: keras.Model) -> tuple[tf.Variable, dict[str, tf.Variable]]:
    layers = masked_layers(network)
    per_layer = {layer.name: _constant(layer.density, tf.float32) for layer in layers}
    return _constant(topology.model_density(layers) if layers else 1.0, tf.float32), per_layer


def _constant(value, dtype) -> tf.Variable:
    return tf.Variable(value, dtype=dtype, trainable=False)


def _root(plain: keras.Model, network: keras.Model) -> tf.train.Checkpoint:
    """The exported object: variables in hub's reusable-SavedModel convention, bookkeeping."""
    root = tf.train.Checkpoint()
    root.variables = list(plain.variables)
    root.trainable_variables = list(plain.trainable_variables)
    root.regularization_losses = []
    root.density, root.layer_densities = _density_variables(network)
    return root


def export_generator(model, path: str, *, num_classes: int | None = None,
                     use_ema: bool = True) -> str:
    """Writes the generator as a TF-Hub style SavedModel at `path` (see the module docstring).

    Args:
      model: a `SparseGAN` (its EMA generator when it has one and `use_ema`) or a functional
        Keras generator, z [B, latent_dim] (or [z, y]) -> images [B, H, W, 3] in [-1, 1].
      path: output directory (overwritten).
      num_classes: class count of a bare conditional generator (a SparseGAN knows its own).
      use_ema: export the EMA generator of a SparseGAN rather than the trained one.
    Returns: `path`.
    """
    generator, gan = _networks(model, "generator", use_ema)
    conditional = len(generator.inputs) == 2
    num_classes = _class_count(generator, gan, num_classes, conditional)
    plain = strip_masks(generator, power_iteration=True)
    latent_dim = int(generator.inputs[0].shape[-1])
    image_shape = [int(s) for s in plain.outputs[0].shape[1:]]
    root = _root(plain, generator)
    root.latent_dim = _constant(latent_dim, tf.int32)
    root.num_classes = _constant(num_classes or 0, tf.int32)
    root.image_shape = _constant(image_shape, tf.int32)
    z_spec = tf.TensorSpec([None, latent_dim], tf.float32, name="z")
    call = _traced_call(plain, [z_spec, _Y_SPEC] if conditional else z_spec)
    root.__call__ = call
    serve = _serving_function(plain, call, z_spec, conditional)
    tf.saved_model.save(root, path, signatures={"serving_default": serve})
    return path


_Y_SPEC = tf.TensorSpec([None], tf.int32, name="y")
_TRUNCATION_SPEC = tf.TensorSpec([], tf.float32, name="truncation")


def _class_count(generator: keras.Model, gan, num_classes: int | None,
                 conditional: bool) -> int | None:
    """`export_generator`'s class count: the SparseGAN's own, else `num_classes` checked
    against whether the generator is conditional."""
    if gan is not None:
        num_classes = gan.num_classes
    if conditional and not (isinstance(num_classes, int) and num_classes > 0):
        raise ValueError(f"num_classes={num_classes!r}: a conditional generator (inputs "
                         f"{[i.name for i in generator.inputs]}) needs the class count.")
    if not conditional and num_classes:
        raise ValueError(f"num_classes={num_classes!r} given for an unconditional generator; "
                         "pass None.")
    return num_classes


def _traced_call(plain: keras.Model, call_spec):
    """The SavedModel's `__call__`: `plain` in float32, traced for both `training` values."""

    @tf.function
    def call(inputs, training=False):
        return tf.cast(plain(inputs, training=training), tf.float32)

    for training in (False, True):
        call.get_concrete_function(call_spec, training=training)
    return call


def _truncate(z, truncation):
    return tf.where(truncation > 0.0, tf.clip_by_value(z, -truncation, truncation), z)


def _serving_function(plain: keras.Model, call, z_spec: tf.TensorSpec, conditional: bool):
    """The `serving_default` signature: truncated z (and y) -> {"images"}, in batch statistics."""

    def batch_statistics_call(inputs):
        # As the grids and FID sample: batch statistics; the moving statistics a training
        # call updates are put back, so serving changes no variable.
        state = list(plain.non_trainable_variables)
        saved = [tf.identity(variable) for variable in state]
        images = call(inputs, training=True)
        with tf.control_dependencies([images]):
            restored = [variable.assign(value) for variable, value in zip(state, saved)]
        with tf.control_dependencies(restored):
            return tf.identity(images)

    if conditional:
        @tf.function(input_signature=[z_spec, _Y_SPEC, _TRUNCATION_SPEC])
        def serve(z, y, truncation):
            return {"images": batch_statistics_call([_truncate(z, truncation), y])}
    else:
        @tf.function(input_signature=[z_spec, _TRUNCATION_SPEC])
        def serve(z, truncation):
            return {"images": batch_statistics_call(_truncate(z, truncation))}
    return serve


def export_discriminator(model, path: str) -> str:
    """Writes the discriminator as a SavedModel: serving_default(images[, y]) -> {"logits"}.

    `model`: a `SparseGAN` or a functional Keras discriminator, images [B, H, W, 3] in [-1, 1]
    (and int32 labels [B]) -> logits [B] (or [B, 1], exported as [B]). Returns `path`.
    """
    discriminator, _ = _networks(model, "discriminator", False)
    conditional = len(discriminator.inputs) == 2
    plain = strip_masks(discriminator)
    image_shape = [int(s) for s in discriminator.inputs[0].shape[1:]]
    root = _root(plain, discriminator)
    root.image_shape = _constant(image_shape, tf.int32)

    @tf.function
    def call(inputs, training=False):
        logits = tf.cast(plain(inputs, training=training), tf.float32)
        return tf.reshape(logits, [-1])

    x_spec = tf.TensorSpec([None, *image_shape], tf.float32, name="images")
    y_spec = tf.TensorSpec([None], tf.int32, name="y")
    for training in (False, True):
        call.get_concrete_function([x_spec, y_spec] if conditional else x_spec,
                                   training=training)
    root.__call__ = call
    if conditional:
        @tf.function(input_signature=[x_spec, y_spec])
        def serve(images, y):
            return {"logits": call([images, y], training=False)}
    else:
        @tf.function(input_signature=[x_spec])
        def serve(images):
            return {"logits": call(images, training=False)}
    tf.saved_model.save(root, path, signatures={"serving_default": serve})
    return path


# ---------------------------------------------------------------------------------- TFLite


@dataclasses.dataclass(frozen=True)
class TFLiteExport:
    """A sparse TFLite file and the sizes of the sparse and the dense conversion, in bytes."""

    path: str
    sparse_bytes: int
    dense_bytes: int


def export_tflite(model, path: str, *, batch_size: int = 1, use_ema: bool = True
                  ) -> TFLiteExport:
    """Converts the generator to TFLite at `path`, keeping the sparsity; reports both sizes.

    The TFLite model maps z float32 [batch_size, latent_dim] (and y int32 [batch_size]) to
    images float32 [batch_size, H, W, 3] in [-1, 1], no truncation. `tf.lite.Optimize.
    EXPERIMENTAL_SPARSITY` stores sparse constant tensors in TFLite's sparse format; a plain
    (dense) conversion is made only to report its size. The batch is static: the converter
    leaves convolutions after the nearest upsampling to TF kernels when it is not.

    Args:
      model: a `SparseGAN` (EMA generator if `use_ema` and it has one) or a Keras generator.
      path: the .tflite file to write.
      batch_size: the model's fixed batch.
    """
    positive_int("batch_size", batch_size)
    generator, _ = _networks(model, "generator", use_ema)
    plain = strip_masks(generator)
    specs = [tf.TensorSpec([batch_size, *i.shape[1:]], i.dtype, name=i.name)
             for i in generator.inputs]
    function = tf.function(lambda *inputs: plain(list(inputs) if len(inputs) > 1
                                                 else inputs[0], training=False))
    concrete = function.get_concrete_function(*specs)
    sizes = {}
    for sparse in (True, False):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], plain)
        if sparse:
            converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        flatbuffer = converter.convert()
        sizes[sparse] = len(flatbuffer)
        if sparse:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "wb") as f:
                f.write(flatbuffer)
    return TFLiteExport(path=path, sparse_bytes=sizes[True], dense_bytes=sizes[False])


# ------------------------------------------------------------------------------ a whole GAN


INFO_NAME = "export_info.json"


def export_gan(gan, output_dir: str, *, checkpoint: str | None = None,
               discriminator: bool = False, tflite: bool = True) -> dict[str, Any]:
    """Exports a `SparseGAN`'s generator (EMA if it keeps one) to `output_dir/generator/`, and
    its discriminator to `output_dir/discriminator/` and the TFLite generator to
    `output_dir/generator.tflite` if asked; writes and returns `output_dir/export_info.json`:
    checkpoint (the one `gan` was restored from, as given), iteration, paths, densities and
    TFLite sizes."""
    os.makedirs(output_dir, exist_ok=True)
    generator = gan.ema_generator if gan.ema_generator is not None else gan.generator
    info: dict[str, Any] = {
        "checkpoint": checkpoint, "step": gan.iteration,
        "ema": gan.ema_generator is not None,
        "generator": export_generator(gan, os.path.join(output_dir, "generator")),
        "g_density": gan.density("generator"), "d_density": gan.density("discriminator"),
        "layer_densities": {layer.name: layer.density for layer in masked_layers(generator)},
    }
    if discriminator:
        info["discriminator"] = export_discriminator(
            gan, os.path.join(output_dir, "discriminator"))
    if tflite:
        result = export_tflite(gan, os.path.join(output_dir, "generator.tflite"))
        info["tflite"] = dataclasses.asdict(result)
    with open(os.path.join(output_dir, INFO_NAME), "w") as f:
        json.dump(info, f, indent=2)
    return info
