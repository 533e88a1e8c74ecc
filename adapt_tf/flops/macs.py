"""Per-sample forward MACs of every layer call of a built Keras model (`flops.LayerCost`s).

`layer_macs(model, inputs)` runs the model eagerly with each layer's `call` replaced, on the
instance and for that one forward pass, by a wrapper that records input and output shapes;
this works for functional and subclassed models alike. `adapt_tf.flops` turns the costs into
per-iteration and per-run training FLOPs.

Counted: `Dense` (and `MaskedDense`), `Conv2D` (and `MaskedConv2D`), `BatchNormalization`,
and any layer defining `attention_macs(input_shapes) -> float` (the per-sample MACs of its
weight-free matmuls, e.g. `architectures.blocks.AttentionMap`). These are what the paper's
architectures use; a layer holding another kind of kernel (transposed or 1D/3D convolutions,
EinsumDense, ...) raises ValueError rather than being miscounted.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import tensorflow as tf
import tf_keras as keras

from adapt_tf.sparse import topology
from adapt_tf.flops import LayerCost

__all__ = ["layer_macs"]

_WEIGHT_ATTRIBUTES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def layer_macs(model, inputs: Any = None, *, input_shape: Sequence[int] | None = None,
               **call_kwargs) -> list[LayerCost]:
    """Per-sample forward MACs of every counted layer call of a built Keras model.

    Runs `model(inputs, training=False, **call_kwargs)` eagerly twice: once to build it, once
    with each layer's `call` wrapped (on the instance, removed afterwards) to record shapes.
    No variable changes: `training=False` leaves BatchNorm statistics and spectral-norm
    vectors alone. `attention_macs` receives the shapes (lists of ints, batch dimension first)
    of the layer's first call argument, nested as that argument is ([theta, phi, g] -> three
    shapes).

    Args:
      model: a tf_keras model (functional or subclassed) or layer.
      inputs: what the model is called with; per-sample costs do not depend on the batch size.
      input_shape: instead of inputs, a per-sample shape: inputs = zeros [1, *input_shape].
      **call_kwargs: more arguments of the call, e.g. class labels.

    Returns:
      One `flops.LayerCost` per layer call, in call order.
    """
    if (inputs is None) == (input_shape is None):
        raise ValueError("pass exactly one of inputs and input_shape, got "
                         f"inputs={inputs!r}, input_shape={input_shape!r}")
    if input_shape is not None:
        inputs = tf.zeros([1, *input_shape], tf.float32)
    model(inputs, training=False, **call_kwargs)
    layers = [m for m in model.submodules if isinstance(m, keras.layers.Layer)]
    if not isinstance(model, keras.Model):
        layers.append(model)
    records: list[tuple[Any, str, tuple, Any]] = []
    # (layer, its own instance `call` or None): each wrapped layer gets back exactly what it
    # had. Layers may own an instance `call` (tf_keras' TFOpLambda, e.g. BigGAN-64's tf.split
    # of z), which deleting would turn into the identity.
    wrapped = [(layer, kind, layer.__dict__.get("call")) for layer in layers
               if (kind := _classify(layer)) is not None]
    for layer, kind, _ in wrapped:
        layer.call = _recording_call(layer, kind, records)
    try:
        model(inputs, training=False, **call_kwargs)
    finally:
        for layer, _, own in wrapped:
            if own is None:
                del layer.call
            else:
                layer.call = own
    return _costs_from_records(records)


def _classify(layer) -> str | None:
    """The cost kind of a layer; None for layers that cost nothing here; ValueError for
    layers with kernels this module cannot count."""
    kinds = keras.layers
    if isinstance(layer, kinds.Conv2D) and not isinstance(layer, kinds.Conv2DTranspose):
        return "conv"
    if isinstance(layer, kinds.Dense):
        return "dense"
    if isinstance(layer, (kinds.BatchNormalization, kinds.experimental.SyncBatchNormalization)):
        return "batch_norm"
    if hasattr(layer, "attention_macs"):
        return "attention"
    if isinstance(layer, keras.Model):
        return None
    if any(getattr(layer, attribute, None) is not None for attribute in _WEIGHT_ATTRIBUTES):
        raise ValueError(
            f"layer {layer.name!r} ({type(layer).__name__}) has a kernel macs cannot count; "
            "subclass keras.layers.Dense/Conv2D, or compose such layers")
    return None


def _recording_call(layer, kind: str, records: list) -> Callable:
    original = layer.call

    def call(*args, **kwargs):
        output = original(*args, **kwargs)
        first = output[0] if isinstance(output, (tuple, list)) else output
        records.append((layer, kind, args, first))
        return output

    return call


def _costs_from_records(records) -> list[LayerCost]:
    costs, calls, names = [], {}, {}
    for layer, kind, args, output in records:
        if names.setdefault(layer.name, id(layer)) != id(layer):
            raise ValueError(f"two layers are named {layer.name!r}; pass a distinct name= to "
                             "each so that costs and densities can be matched by name")
        index = calls[id(layer)] = calls.get(id(layer), -1) + 1
        weight, other = _call_cost(layer, kind, args, output)
        params, density = _mask_info(layer)
        costs.append(LayerCost(layer.name, kind, weight, other, params, density, index))
    return costs


def _call_cost(layer, kind: str, args: tuple, output) -> tuple[float, float]:
    """(weight MACs at density 1, other MACs) of one call, per sample."""
    if kind == "attention":
        return 0.0, float(layer.attention_macs(_shapes(args[0]) if args else None))
    in_shape, out_shape = _shape(args[0]), _shape(output)
    if kind == "dense":
        fan_in, units = (int(d) for d in layer.kernel.shape)
        positions = _prod(in_shape[1:-1])
        return float(positions * fan_in * units), float(positions * units if layer.use_bias
                                                        else 0)
    if kind == "conv":
        out_positions = _prod(_spatial(layer, out_shape))
        bias = layer.filters * out_positions if layer.use_bias else 0
        return float(_prod(layer.kernel.shape) * out_positions), float(bias)
    affine = int(bool(layer.scale)) + int(bool(layer.center))  # batch_norm
    return 0.0, float(affine * _prod(out_shape[1:]))


def _spatial(layer, shape) -> list[int]:
    channels_first = getattr(layer, "data_format", "channels_last") == "channels_first"
    return shape[2:] if channels_first else shape[1:-1]


def _mask_info(layer) -> tuple[int, float]:
    if getattr(layer, "mask", None) is None:
        return 0, 1.0
    active, total = topology.count_active([layer])
    return total, active / total


def _prod(values) -> int:
    return int(math.prod(int(v) for v in values))


def _shape(value) -> list[int] | None:
    shape = getattr(value, "shape", None)
    if shape is None:
        return None
    dims = list(shape)
    if any(d is None for d in dims):
        raise ValueError(f"layer_macs needs static shapes, got {dims}; pass concrete inputs")
    return [int(d) for d in dims]


def _shapes(value):
    """The shape (list of ints) of a tensor, or the same nested structure of shapes."""
    if isinstance(value, (list, tuple)):
        return [_shapes(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _shapes(item) for key, item in value.items()}
    return _shape(value)
