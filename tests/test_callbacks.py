"""Tests of adapt_tf.callbacks, the re-export of the callbacks under their former common name:
every name resolves to the object of its concept module, and every callback class of those
modules is re-exported."""
from __future__ import annotations

import tf_keras as keras

from adapt_tf import callbacks, evaluation, flops_logger, run_io, sparsity

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
