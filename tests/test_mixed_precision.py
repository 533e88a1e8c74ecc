"""Mixed precision through train_lib: mixed_float16 (with loss scaling) and mixed_bfloat16 runs
of a tiny ADAPT config train, keep masks, spectral-norm vectors, losses and BR in float32, and
BR stays finite."""
from pathlib import Path

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from adapt_tf import configurables
from adapt_tf.layers import masked_layers

TINY_GIN = str(Path(__file__).resolve().parent.parent / "gin_configs" / "test" / "tiny.gin")

# Two iterations of tiny.gin's ADAPT run (no mask update yet: one compiled train variant).
BINDINGS = ["train.total_steps = 2", "train.n_dis = 1", "train.g_width = 8",
            "train.d_width = 8", "train.log_every = 1", "train.sample_every = 1000",
            "train.num_sample_images = 4", "train.checkpoint_every = 1000"]


class _Logs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rows = []

    def on_train_batch_end(self, batch, logs=None):
        self.rows.append({k: np.asarray(v) for k, v in logs.items()})


@pytest.fixture
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy, compute_dtype", [("mixed_float16", tf.float16),
                                                   ("mixed_bfloat16", tf.bfloat16)])
def test_mixed_precision_run(tmp_path, restore_policy, policy, compute_dtype):
    gin.clear_config()
    configurables.parse_config([TINY_GIN], BINDINGS + [f"train.mixed_precision = '{policy}'"])
    logs = _Logs()
    gan = configurables.train(workdir=str(tmp_path), extra_callbacks=[logs])

    assert gan.iteration == 2 and len(logs.rows) == 2
    scaled = isinstance(gan.g_optimizer, keras.mixed_precision.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    assert isinstance(gan.d_optimizer, keras.mixed_precision.LossScaleOptimizer) == scaled
    for row in logs.rows:
        for key in ("d_loss", "g_loss", "br"):
            assert np.isfinite(row[key]), (key, row)
    # Losses and BR are computed from logits cast to float32, and kept in float32.
    assert gan.d_loss_tracker.result().dtype == gan.g_loss_tracker.result().dtype == tf.float32
    assert gan.balance.samples.dtype == tf.float32 and gan.balance.mean().dtype == tf.float32
    assert np.all(np.isfinite(gan.balance.values()))
    layers = masked_layers([gan.generator, gan.discriminator])
    assert layers and all(layer.compute_dtype == compute_dtype for layer in layers)
    for layer in layers:
        assert layer.mask.dtype == tf.float32 and layer.kernel.dtype == tf.float32
        kernel, mask = layer.kernel.numpy(), layer.mask.numpy()
        assert np.all(kernel[mask == 0] == 0)
        if layer.sn_u is not None:
            assert layer.sn_u.dtype == tf.float32 and np.all(np.isfinite(layer.sn_u.numpy()))
    # The spectrally normalised kernel is computed in float32, cast only for the matmul.
    sn_layer = next(layer for layer in layers if layer.spectral_norm)
    normalized = sn_layer._normalize(sn_layer.masked_kernel(), False)
    assert normalized.dtype == tf.float32
    assert sn_layer.effective_kernel(False).dtype == compute_dtype
