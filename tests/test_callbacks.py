"""Tests of adapt_tf.callbacks, the re-export of the callbacks under their former common name:
every name resolves to the object of its concept module."""
from __future__ import annotations

from adapt_tf import callbacks, evaluation, flops_logger, run_io, sparsity


def test_every_name_is_the_concept_modules_object():
    homes = (sparsity, evaluation, flops_logger, run_io)
    for name in callbacks.__all__:
        (home,) = [module for module in homes if name in module.__all__]
        assert getattr(callbacks, name) is getattr(home, name), name
    assert set(callbacks.__all__) == {name for module in homes for name in module.__all__}
