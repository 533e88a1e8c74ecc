"""Tests of adapt_tf.callbacks, the re-export of the callbacks under their former common name:
every name resolves to the object of its concept module, and every callback class of those
modules is re-exported. Every adapt_tf callback takes Keras' logs as tensors, so that `fit`
copies nothing to the host in iterations where no callback reads them."""
from __future__ import annotations

import tf_keras as keras

from adapt_tf import (_compat, callbacks, controller, evaluation, flops_logger, gmp,
                      preemption, run_io, sparsity)

HOMES = (sparsity, evaluation, flops_logger, run_io)


def test_every_name_is_the_concept_modules_object():
    for name in callbacks.__all__:
        (home,) = [module for module in HOMES if name in module.__all__]
        assert getattr(callbacks, name) is getattr(home, name), name


def test_every_callback_class_is_re_exported():
    for module in HOMES:
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, keras.callbacks.Callback):
                assert name in callbacks.__all__, name


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_callback_takes_tensor_logs():
    # Keras converts an iteration's logs to NumPy (a device-to-host copy of every value) unless
    # all callbacks with batch hooks declare `_supports_tf_logs`: one adapt_tf callback without
    # it costs every iteration a copy.
    ours = {cls for cls in _subclasses(keras.callbacks.Callback)
            if cls.__module__.startswith("adapt_tf.")}
    assert ours >= {controller.ADAPTController, sparsity.DynamicSparsity,
                    gmp.GradualMagnitudePruning, flops_logger.FlopsLogger, run_io.MetricsLogger,
                    run_io.SampleLogs, run_io.SampleGrid, run_io.Checkpointer,
                    run_io.TerminateOnNaN, preemption.StopOnSignal, evaluation.PeriodicEvaluation}
    for cls in ours - {_compat.Callback}:
        assert issubclass(cls, _compat.Callback), cls.__name__
    callback_list = keras.callbacks.CallbackList([controller.ADAPTController("relaxed",
                                                  total_steps=10, interval=5),
                                                  preemption.StopOnSignal()])
    assert callback_list._batch_hooks_support_tf_logs
