"""SparseGAN under MirroredStrategy on 2 logical CPUs vs one device; prints one JSON line.

Run by tests/test_gan.py in a subprocess, because the CPU must be split into logical devices
before TensorFlow initialises. Not collected by pytest (the name does not start with test_).

Both runs use the same initial weights, data (global batch) and seeds. Phases:
  one_iteration: fit on 1 batch; two_iterations: fit on the next 2 batches (one epoch);
  after_mask_change: new masks drawn from outside (cross-replica context, `sparsify` through
  `gan.sparsity.update`), then 1 iteration;
  mask_change_in_callback: 2 iterations, masks redrawn by a callback before the second (as DST
  callbacks do, in fit's cross-replica context).
Every iteration samples BR and fills both gradient buffers, so each run uses one variant
(`trace_counts` per phase: the one-device step functions once each, the mirrored step
function once per replica, once).
Per phase: the logs and BR window of both runs, the largest difference between the two runs'
weights (mirrored: replica 0), and the variables whose replicas disagree.

With a JSON argument (test_gan.py's linear toy: kernels, masks, images, n_dis, g_batch,
learning rate, seed), the report also holds "linear_toy": that toy trained by SGD under the
mirrored strategy alone, with its BR window and final kernels, for the caller to compare with
its own hand computation.
"""
from __future__ import annotations

import json
import os
import sys

import adapt_tf  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS and TF_ENABLE_ONEDNN_OPTS)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _CPU, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import tf_keras as keras  # noqa: E402

from adapt_tf.sparse import topology  # noqa: E402
from adapt_tf.gan.sparse_gan import SparseGAN  # noqa: E402
from adapt_tf.sparse.layers import MaskedDense, masked_layers  # noqa: E402

LATENT, FEATURES, N_DIS, D_BATCH, G_BATCH = 4, 3, 2, 4, 6


def _models():
    z = keras.Input((LATENT,))
    h = MaskedDense(8, activation="relu", name="g1")(z)
    generator = keras.Model(z, MaskedDense(FEATURES, activation="tanh", name="g2")(h))
    x = keras.Input((FEATURES,))
    h = keras.layers.LeakyReLU(0.1)(MaskedDense(8, spectral_norm=True, name="d1")(x))
    discriminator = keras.Model(x, MaskedDense(1, name="d2")(h))
    return generator, discriminator


def _initial_weights():
    generator, discriminator = _models()
    topology.sparsify(generator, 0.5, distribution="uniform", seed=1)
    topology.sparsify(discriminator, 0.5, distribution="uniform", seed=2)
    return generator.get_weights(), discriminator.get_weights()


def _gan(weights):
    generator, discriminator = _models()
    generator.set_weights(weights[0])
    discriminator.set_weights(weights[1])
    gan = SparseGAN(generator, discriminator, latent_dim=LATENT, n_dis=N_DIS,
                    g_batch_size=G_BATCH, br_interval=1, br_window=8, ema_decay=0.5, seed=4)
    # Plain SGD: a gradient's round-off reaches the weights linearly, so the two runs (other
    # summation orders) stay within the 1e-4 the test allows on any CPU; Adam would turn a
    # round-off-sized gradient into an lr-sized step of either sign.
    gan.compile(g_optimizer=keras.optimizers.SGD(0.1), d_optimizer=keras.optimizers.SGD(0.1))
    return gan


class _KeepGradients(keras.callbacks.Callback):
    """Declares both gradients at every iteration; optionally redraws masks before one."""

    def __init__(self, gan, change_masks_at=None):
        super().__init__()
        self.gan = gan
        self.change_masks_at = change_masks_at

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.change_masks_at:
            _change_masks(self.gan, seed=11, density=0.6)

    def needs_gradients(self, step):
        return ("generator", "discriminator")


def _fit(gan, images, change_masks_at=None):
    return gan.fit(_dataset(images), epochs=1, verbose=0,
                   callbacks=[_KeepGradients(gan, change_masks_at)])


def _dataset(images):
    return tf.data.Dataset.from_tensor_slices(images).batch(N_DIS * D_BATCH,
                                                            drop_remainder=True)


def _tracked(gan):
    """(name, variable) of every variable that must agree across replicas."""
    variables = []
    for model in (gan.generator, gan.discriminator, gan.ema_generator):
        variables += [(f"{model.name}/{v.name}", v) for v in model.weights]
    for label, optimizer in (("g_opt", gan.g_optimizer), ("d_opt", gan.d_optimizer)):
        variables += [(f"{label}/{v.name}", v) for v in optimizer.variables]
    window = gan.balance
    variables += [(f"balance/{v.name}", v) for v in (window.samples, window.count,
                                                     window.position, window.skipped)]
    for network in ("generator", "discriminator"):
        variables += [(f"grad/{v.name}", v) for v in gan.grad_buffers(network)]
    variables.append(("step", gan.step))
    return variables


def _components(variable):
    return [np.asarray(v.numpy()) for v in getattr(variable, "values", (variable,))]


def _summary(gan, history):
    logs = {key: float(values[-1]) for key, values in history.history.items()}
    logs["br_values"] = gan.balance.values().tolist()
    return logs


def _phase(single, mirrored, fit):
    history_single, history_mirrored = fit(single), fit(mirrored)
    weight_difference, disagreements = 0.0, []
    for (name, a), (_, b) in zip(_tracked(single), _tracked(mirrored)):
        components = _components(b)
        if len(components) != 2:
            disagreements.append(f"{name}: {len(components)} components")
        if any(not np.array_equal(components[0], c) for c in components[1:]):
            disagreements.append(name)
        weight_difference = max(weight_difference, float(np.max(
            np.abs(_components(a)[0].astype(np.float64) - components[0]), initial=0.0)))
    return {"single": _summary(single, history_single),
            "mirrored": _summary(mirrored, history_mirrored),
            "max_weight_difference": weight_difference,
            "trace_counts": {"single": list(single.trace_counts.values()),
                             "mirrored": list(mirrored.trace_counts.values())},
            "replica_disagreements": disagreements}


def _change_masks(gan, *, seed, density):
    for network, d, s in (("generator", density, seed),
                          ("discriminator", density + 0.1, seed + 1)):
        gan.sparsity.update(network, lambda *_, model=getattr(gan, network), d=d, s=s:
                            topology.sparsify(model, d, distribution="uniform", seed=s))


def _kernel_outside_mask(gan):
    worst = 0.0
    for layer in masked_layers([gan.generator, gan.discriminator, gan.ema_generator]):
        for kernel, mask in zip(_components(layer.kernel), _components(layer.mask)):
            worst = max(worst, float(np.max(np.abs(kernel[mask == 0]), initial=0.0)))
    return worst


def _linear_toy(spec):
    """test_gan.py's linear G(z) = z @ Wg, D(x) = x @ Wd, built from the spec's arrays."""
    kernels = {name: np.asarray(spec[name], np.float32) for name in ("wg", "mg", "wd", "md")}
    generator = keras.Sequential([keras.Input((kernels["wg"].shape[0],)),
                                  MaskedDense(kernels["wg"].shape[1], use_bias=False)])
    discriminator = keras.Sequential([keras.Input((kernels["wd"].shape[0],)),
                                      MaskedDense(1, use_bias=False)])
    for model, kernel, mask in ((generator, kernels["wg"], kernels["mg"]),
                                (discriminator, kernels["wd"], kernels["md"])):
        layer = masked_layers(model)[0]
        layer.mask.assign(mask)
        layer.kernel.assign(kernel * mask)
    return generator, discriminator


def _linear_toy_run(strategy, spec):
    with strategy.scope():
        generator, discriminator = _linear_toy(spec)
        gan = SparseGAN(generator, discriminator, latent_dim=generator.input_shape[-1],
                        n_dis=spec["n_dis"], g_batch_size=spec["g_batch"], br_interval=1,
                        br_window=spec["iterations"], seed=spec["seed"])
        gan.compile(g_optimizer=keras.optimizers.SGD(spec["lr"]),
                    d_optimizer=keras.optimizers.SGD(spec["lr"]))
    images = np.asarray(spec["images"], np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(
        spec["n_dis"] * spec["d_batch"], drop_remainder=True)
    gan.fit(dataset, epochs=1, verbose=0)
    kernels = [_components(masked_layers(model)[0].kernel)[0].tolist()
               for model in (gan.generator, gan.discriminator)]
    return {"br_values": gan.balance.values().tolist(), "wg": kernels[0], "wd": kernels[1],
            "step": int(gan.step.numpy())}


def main() -> None:
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    weights = _initial_weights()
    images = np.random.default_rng(0).uniform(-1, 1, (6 * N_DIS * D_BATCH, FEATURES))
    images = images.astype(np.float32)
    batch = N_DIS * D_BATCH
    single = _gan(weights)
    with strategy.scope():
        mirrored = _gan(weights)

    report = {"replicas": strategy.num_replicas_in_sync}
    report["one_iteration"] = _phase(single, mirrored, lambda gan: _fit(gan, images[:batch]))
    report["two_iterations"] = _phase(single, mirrored,
                                      lambda gan: _fit(gan, images[batch:3 * batch]))
    _change_masks(single, seed=7, density=0.3)
    with strategy.scope():
        _change_masks(mirrored, seed=7, density=0.3)
    report["after_mask_change"] = _phase(single, mirrored,
                                         lambda gan: _fit(gan, images[3 * batch:4 * batch]))
    report["mask_change_in_callback"] = _phase(
        single, mirrored, lambda gan: _fit(gan, images[4 * batch:], change_masks_at=1))
    for phase in ("after_mask_change", "mask_change_in_callback"):
        report[phase]["kernel_outside_mask"] = max(
            _kernel_outside_mask(single), _kernel_outside_mask(mirrored))
    report["grad_buffer_norms"] = [
        float(np.linalg.norm(_components(buffer)[0]))
        for network in ("generator", "discriminator") for buffer in mirrored.grad_buffers(network)]
    if len(sys.argv) > 1:
        report["linear_toy"] = _linear_toy_run(strategy, json.loads(sys.argv[1]))
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
