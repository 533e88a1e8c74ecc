"""Mixed precision through train_lib: mixed_float16 (with loss scaling) and mixed_bfloat16 runs
of a tiny ADAPT config train, keep masks, spectral-norm vectors, losses and BR in float32, and
BR stays finite."""
from pathlib import Path

import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from adapt_tf.runs import configurables
from adapt_tf.sparse.layers import masked_layers

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
    # The run's networks keep the policy; models built after it get the caller's again.
    assert keras.mixed_precision.global_policy().name == "float32"
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


# ---------------------------------------------------------------- closeness to float32

# Unit roundoff u (half the machine epsilon) of each compute dtype.
UNIT_ROUNDOFF = {"mixed_float16": 2.0 ** -11, "mixed_bfloat16": 2.0 ** -8}
LATENT, FEATURES, BATCH = 2, 3, 8


def _linear_gan(policy, wg, wd):
    """G(z) = z @ Wg, D(x) = x @ Wd (masked, no bias) built under `policy`."""
    keras.mixed_precision.set_global_policy(policy)
    from adapt_tf.gan.sparse_gan import SparseGAN
    from adapt_tf.sparse.layers import MaskedDense
    generator = keras.Sequential([keras.Input((LATENT,)), MaskedDense(FEATURES, use_bias=False)])
    discriminator = keras.Sequential([keras.Input((FEATURES,)), MaskedDense(1, use_bias=False)])
    for model, kernel in ((generator, wg), (discriminator, wd)):
        layer = masked_layers(model)[0]
        layer.mask.assign(np.ones_like(kernel))
        layer.kernel.assign(kernel)
    gan = SparseGAN(generator, discriminator, latent_dim=LATENT, br_interval=1, br_window=1,
                    seed=5)
    gan.compile(g_optimizer=keras.optimizers.SGD(0.1), d_optimizer=keras.optimizers.SGD(0.1))
    return gan


def _roundings_bound(k, u):
    """Relative error of a product/sum path with k roundings at unit roundoff u (plus the
    float32 run's own k roundings): (1 + u)^k - 1 + k 2^-23."""
    return (1.0 + u) ** k - 1.0 + k * 2.0 ** -23


@pytest.mark.parametrize("policy", sorted(UNIT_ROUNDOFF))
def test_first_discriminator_loss_is_within_the_rounding_bound_of_float32(restore_policy,
                                                                          policy):
    rng = np.random.default_rng(0)
    wg = rng.normal(size=(LATENT, FEATURES)).astype(np.float32)
    wd = rng.normal(size=(FEATURES, 1)).astype(np.float32) * 0.3
    images = rng.normal(size=(BATCH, FEATURES)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(BATCH, drop_remainder=True)
    losses = {}
    for run in ("float32", policy):
        gan = _linear_gan(run, wg, wd)
        losses[run] = gan.fit(dataset, epochs=1, verbose=0).history["d_loss"][0]
    keras.mixed_precision.set_global_policy("float32")

    # The first D step's z, as the iteration draws it (stateless, step 0, phase 0).
    z = tf.random.stateless_normal([BATCH, LATENT], seed=tf.constant([5, 0], tf.int64)).numpy()
    # Roundings per logit, low precision accumulating in the worst case:
    #   real: x, Wd, FEATURES - 1 sums, output = FEATURES + 2;
    #   fake: z, Wg, LATENT - 1 sums, G output, Wd, FEATURES - 1 sums, output
    #         = LATENT + FEATURES + 3.
    # The error of a path is at most that relative bound times the sum of |terms|; hinge is
    # 1-Lipschitz in each logit, and the loss averages real and fake terms per example.
    u = UNIT_ROUNDOFF[policy]
    real_terms = np.abs(images) @ np.abs(wd)
    fake_terms = np.abs(z) @ np.abs(wg) @ np.abs(wd)
    bound = np.mean(_roundings_bound(FEATURES + 2, u) * real_terms
                    + _roundings_bound(LATENT + FEATURES + 3, u) * fake_terms)
    real, fake = images @ wd, z @ wg @ wd
    expected = np.mean(np.maximum(0, 1 - real) + np.maximum(0, 1 + fake))
    assert losses["float32"] == pytest.approx(expected, rel=1e-6)
    # No logit sits within the bound of a hinge kink (where 1-Lipschitz alone would not do).
    assert np.min(np.abs(np.abs(np.concatenate([real, fake])) - 1)) > 10 * bound
    assert abs(losses[policy] - losses["float32"]) <= bound
    assert bound < 0.05 * abs(losses["float32"])  # the bound is not vacuous
