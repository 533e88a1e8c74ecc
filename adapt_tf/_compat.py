"""The private tf_keras and TensorFlow APIs adapt_tf relies on, each wrapped here once, with
the reason no public route serves. Check these first when upgrading tf_keras or TensorFlow.

(tfmot's `pruning_impl.Pruning` is private too; it stays in `adapt_tf.sparse.gmp`, whose docstring
says why, and mixed precision's `AutoCastVariable` in `adapt_tf.sparse.layers`.)
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import tensorflow as tf
import tf_keras as keras
from tensorflow.core.protobuf import rewriter_config_pb2
from tensorflow.python.eager import context

__all__ = ["Callback", "flatten_layers", "slot_variables", "CallOptions"]

_SLOT_LISTS = ("_momentums", "_velocities", "_velocity_hats")


def flatten_layers(layer: keras.layers.Layer, *,
                   include_self: bool) -> Iterable[keras.layers.Layer]:
    """Every layer inside `layer`, nested ones included, depth-first in Keras' tracking order
    (the order the layers were assigned).

    Private `Layer._flatten_layers`: the public `tf.Module.submodules` orders by attribute
    name instead, which would reorder the masked layers and so their mask seeds.
    """
    return layer._flatten_layers(include_self=include_self, recursive=True)


def slot_variables(optimizer: keras.optimizers.Optimizer,
                   variable: tf.Variable) -> list[tf.Variable]:
    """The optimizer's slot variables of `variable` (Adam's m and v, AMSGrad's v-hat).

    Private `_index_dict` / `_var_key` and the slot lists: tf_keras' optimizers have no
    public accessor for a variable's slots (the legacy optimizers' `get_slot` is gone).
    """
    index = optimizer._index_dict[optimizer._var_key(variable)]
    return [slots[index] for slots in (getattr(optimizer, name, None) for name in _SLOT_LISTS)
            if slots]


class Callback(keras.callbacks.Callback):
    """A Keras callback that takes `logs` as tensors: the base of every adapt_tf callback.

    Private `_supports_tf_logs` (set by `Callback.__init__`, so a class attribute would not
    do): unless every callback with batch hooks sets it, Keras copies all of an iteration's
    logs to the host before the hooks run, a device-to-host read per iteration (on a GPU, a
    pipeline stall) whether or not a callback looks at them. adapt_tf's callbacks read the
    tensors they need at their own cadences.
    """

    def __init__(self):
        super().__init__()
        self._supports_tf_logs = True


class CallOptions:
    """The options this thread's `tf.function` calls run with, with Grappler (TensorFlow's
    graph optimizer) trimmed or off: `with options.applied():` around calls makes their first
    call optimise the function's graph that way.

    `off=False` keeps the Grappler passes that decide the numbers (the arithmetic optimizer,
    common-subexpression elimination, pruning, two rounds) and skips `CPU_IDLE_PASSES` and the
    memory optimizer, which change neither the numbers nor the speed of these steps on a
    CPU-only host (the layout, loop, constant-folding, remapping, dependency, shape and
    function passes: the quickstart's weights and scores and the SNGAN-32 hashes equal the
    full Grappler's, its window samples to the 6th digit; docs/BENCHMARKS.md, "The first
    call"). `off=True` skips Grappler whole.

    Private `context.function_call_options`: the public `tf.config.optimizer` options are
    process-wide, and would change Grappler for the user's own functions too. A traced
    function is optimised once, at its first call, with that call's options.
    """

    CPU_IDLE_PASSES = ("layout_optimizer", "loop_optimization", "implementation_selector",
                       "constant_folding", "remapping", "dependency_optimization",
                       "shape_optimization", "function_optimization")

    def __init__(self, *, off: bool):
        default = context.context().function_call_options
        config = tf.compat.v1.ConfigProto()
        config.ParseFromString(default.config_proto_serialized)
        rewrite = config.graph_options.rewrite_options
        if off:
            rewrite.disable_meta_optimizer = True
        else:
            for name in self.CPU_IDLE_PASSES:
                setattr(rewrite, name, rewriter_config_pb2.RewriterConfig.OFF)
            rewrite.memory_optimization = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
        self.options = context.FunctionCallOptions(executor_type=default.executor_type,
                                                   config_proto=config)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        ctx = context.context()
        saved = ctx.function_call_options
        ctx.function_call_options = self.options
        try:
            yield
        finally:
            ctx.function_call_options = saved
