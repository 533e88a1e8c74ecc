"""Runs gin_configs/test/tiny.gin through `train_lib.train` and dumps the final state (.npz).

Run by tests/test_distribution.py in subprocesses (the CPU must be split into logical devices,
and MultiWorkerMirroredStrategy configured, before TensorFlow initialises). Not collected by
pytest (the name does not start with test_).

    python tests/_distributed_run.py reference OUT_DIR
        one process, the CPU split into 2 logical devices: a run with strategy "default"
        (OUT_DIR/default.npz) and one with "mirrored" on /cpu:0 and /cpu:1 (mirrored.npz).
    python tests/_distributed_run.py switches OUT_DIR
        the same pair with the official code's trajectory-changing switches (`DECAY`):
        default_decay.npz and mirrored_decay.npz; these runs are also scored (the stand-in
        Inception of tests/inception_stub.py, saved to OUT_DIR/inception) during training and
        by the test-set evaluation at the end (`TEST_EVAL`).
    python tests/_distributed_run.py worker OUT_DIR WORKDIR TOTAL_STEPS
        one MultiWorkerMirroredStrategy worker (TF_CONFIG from the environment) training
        WORKDIR (shared by the workers) to TOTAL_STEPS; writes OUT_DIR/worker_<task>.npz.

The state: every weight of G, D and the EMA generator, the masks, both densities, the BR
window, the iteration, and the d_loss / g_loss / br logged after every iteration.
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
import tf_keras as keras  # noqa: E402

from adapt_tf import _compat  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny ADAPT: the G-DST update and the controller decision both after iteration 4 (of 5), so
# that the train step needs two compiled variants only.
#
# Plain SGD, not Adam: the runs compared differ in the order of their float32 sums (replicas,
# all-reduce, another CPU's kernels), and SGD passes a gradient's round-off into the weights
# linearly (delta w = lr * delta g). Adam divides by the root of the second moment, so a weight
# whose gradient is round-off-sized (the conv biases before BatchNorm, say) moves by about the
# learning rate whichever sign its round-off has: no tolerance below lr * steps could tell a
# reduction order from a bug. The optimizer is not what these runs test (both use the same
# Keras code); the distribution of the losses, gradients, masks and BR is.
SGD_LEARNING_RATE = 5e-4
BINDINGS = ["train.total_steps = 5", "train.n_dis = 1", "train.g_width = 8",
            "train.d_width = 8", "train.log_every = 1", "train.sample_every = 1000",
            "train.num_sample_images = 4", "train.checkpoint_every = 4",
            "method.g_interval = 4", "method.d_interval = 4",
            "train.generator_optimizer = @generator/keras.optimizers.SGD",
            "train.discriminator_optimizer = @discriminator/keras.optimizers.SGD",
            f"generator/keras.optimizers.SGD.learning_rate = {SGD_LEARNING_RATE}",
            f"discriminator/keras.optimizers.SGD.learning_rate = {SGD_LEARNING_RATE}",
            # Switches of the official code that do not change the trajectory, so that every
            # strategy and the workers' resume run them too (lr_decay: see DECAY below).
            "train.ever_active = True", "train.sample_logs = True"]
# The decayed-rate runs, with DiffAugment (its parameters are drawn for the global batch, so
# every replica augments its share as one device would) and the ADA-style criterion (the shares
# of reals above 0 are summed over the replicas) too: 3 iterations, so that no mask changes
# (G-DST and ADAPT act after 4) and no near-tie of magnitudes can flip a mask entry between runs
# whose weights differ by round-off; the rates only shrink, so the tolerance derived from
# SGD_LEARNING_RATE holds.
DECAY = dict(lr_decay=True, total_steps=3, diff_aug="color,translation,cutout",
             balance_criterion="ada")
# FID after every iteration and the final test of the best checkpoint (inception_path is set
# by `reference`).
TEST_EVAL = dict(test_eval=True, eval_metric="fid", eval_every=1, eval_num_samples=20)


class LogRecorder(keras.callbacks.Callback):
    """The per-iteration losses and BR (or ADA r_t) the train step logged."""

    def __init__(self):
        super().__init__()
        self.rows = []
        self.start = {}

    def on_train_begin(self, logs=None):
        from adapt_tf.sparse.layers import masked_layers

        self.start = {"g_masks": [layer.mask.numpy() for layer in
                                  masked_layers(self.model.generator)],
                      "d_density": self.model.density("discriminator"),
                      "weights": _weights(self.model)}

    def on_train_batch_end(self, batch, logs=None):
        window = "ada_rt" if "ada_rt" in logs else "br"  # the runs with balance_criterion ada
        self.rows.append([float(np.asarray(logs[k])) for k in ("d_loss", "g_loss", window)])


class SeedSpectralNorm(keras.callbacks.Callback):
    """Sets every spectral-norm vector `sn_u` from a stateless seed before training.

    `adapt_tf.sparse.layers` draws the initial `sn_u` from an unseeded initializer, so two processes
    would start their power iterations from different vectors; the runs compared here must
    start from identical states (the other weights come from seeded initializers).
    """

    def on_train_begin(self, logs=None):
        networks = [self.model.generator, self.model.discriminator]
        for i, layer in enumerate(candidate for n in networks
                                  for candidate in _compat.flatten_layers(n, include_self=True)
                                  if getattr(candidate, "sn_u", None) is not None):
            layer.sn_u.assign(tf.random.stateless_normal(layer.sn_u.shape, seed=[i, 17]))


def _train(workdir: str, **overrides):
    import gin

    from adapt_tf.runs import configurables

    gin.clear_config()
    configurables.parse_config([os.path.join(ROOT, "gin_configs", "test", "tiny.gin")],
                               BINDINGS)
    recorder = LogRecorder()
    gan = configurables.train(workdir=workdir, extra_callbacks=[SeedSpectralNorm(), recorder],
                              **overrides)
    return gan, recorder


def _weights(gan) -> dict[str, np.ndarray]:
    """Every weight of G, D and the EMA generator, by network, index and name."""
    return {f"{network}/{i}/{weight.name}": np.asarray(weight.numpy())
            for network in ("generator", "discriminator", "ema_generator")
            for i, weight in enumerate(getattr(gan, network).weights)}


def _state(gan, recorder: LogRecorder) -> dict[str, np.ndarray]:
    from adapt_tf.sparse.layers import masked_layers

    g_masks = [layer.mask.numpy() for layer in masked_layers(gan.generator)]
    state = {"step": np.int64(gan.iteration),
             "logs": np.asarray(recorder.rows, np.float64).reshape(-1, 3),
             # What the G-DST update and the controller decision changed during training:
             "g_mask_changes": np.int64(sum(np.sum(a != b) for a, b in zip(
                 g_masks, recorder.start.get("g_masks", g_masks)))),
             "d_density_start": np.float64(recorder.start.get("d_density", np.nan)),
             "g_density": np.float64(gan.density("generator")),
             "d_density": np.float64(gan.density("discriminator")),
             "br_samples": gan.balance.samples.numpy(), "br_count": gan.balance.count.numpy(),
             "br_position": gan.balance.position.numpy(), "br_mean": gan.balance.mean().numpy(),
             "ever_active": np.float64([float(share.numpy()) for share in
                                        gan.sparsity.ever_active_shares.values()]),
             "learning_rates": np.float64([np.asarray(gan.g_optimizer.learning_rate),
                                           np.asarray(gan.d_optimizer.learning_rate)])}
    state.update(_weights(gan))
    # The weights before the first iteration (of this process: a resumed run's restored ones).
    state.update({f"start/{key}": value
                  for key, value in recorder.start.get("weights", {}).items()})
    for network in ("generator", "discriminator"):
        for layer in masked_layers(getattr(gan, network)):
            state[f"mask/{network}/{layer.name}"] = layer.mask.numpy()
    return state


def reference(out_dir: str, mode: str = "reference") -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    mirrored = dict(strategy="mirrored", devices=["/cpu:0", "/cpu:1"])
    switches = dict(**DECAY, **TEST_EVAL)
    if mode == "switches":
        from inception_stub import save_tiny_inception

        switches["inception_path"] = save_tiny_inception(os.path.join(out_dir, "inception"))
    runs = {"reference": (("default", {}), ("mirrored", mirrored)),
            # One MirroredStrategy per process: a second one on the same devices restarts the
            # collective instance keys, which then meet the first one's cached shapes.
            "switches": (("default_decay", switches),
                         ("mirrored_decay", {**switches, **mirrored}))}
    for name, overrides in runs[mode]:
        gan, recorder = _train(os.path.join(out_dir, f"run_{name}"), **overrides)
        np.savez(os.path.join(out_dir, f"{name}.npz"), **_state(gan, recorder))


def worker(out_dir: str, workdir: str, total_steps: int) -> None:
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    gan, recorder = _train(workdir, strategy="multi_worker", total_steps=total_steps)
    np.savez(os.path.join(out_dir, f"worker_{task}.npz"), **_state(gan, recorder))


if __name__ == "__main__":
    if sys.argv[1] in ("reference", "switches"):
        reference(sys.argv[2], sys.argv[1])
    else:
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
