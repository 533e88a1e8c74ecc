"""Tests of adapt_tf.sparse.sparsity: `Sparsity.update`, the one path by which masks change
(densities and the EMA generator follow), and `DynamicSparsity`:
one drop-and-grow against a NumPy reference, SET's seeded random growth, and a short `fit`
with RigL on G and SET on D that checks the cadence (every ΔT, never at the last iteration),
gradient requests, exact active counts, regrown weights at zero, the sparse EMA generator and
the optimizer-slot reset.

Toy: G is a 2 -> 12 -> 2 masked MLP (48 masked entries), D a 2 -> 12 -> 1 one (36), both at
density 0.5 with uniform exact-count masks. For the hand-checked update the kernels hold
distinct magnitudes and the gradient buffers distinct values, so the drop and the growth have
one right answer.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from adapt_tf import _compat
from adapt_tf.sparse import dst, topology
from adapt_tf.sparse.sparsity import DynamicSparsity
from adapt_tf.gan.sparse_gan import SparseGAN
from adapt_tf.sparse.layers import MaskedDense, masked_layers

import tensorflow as tf
import tf_keras as keras
from flat_arrays import assign_flat, flat

SIZES = {"generator": 48, "discriminator": 36}


@pytest.fixture
def eager():
    """Runs the callback's tf.function eagerly: same arithmetic, no seconds of tracing per
    instance on this 2-core machine (the `fit` test runs it traced)."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


def _gan(*, ema_decay: float | None = None, seed: int = 0) -> SparseGAN:
    generator = keras.Sequential([keras.Input((2,)),
                                  MaskedDense(12, activation="relu", name="g1"),
                                  MaskedDense(2, name="g2")])
    discriminator = keras.Sequential([keras.Input((2,)),
                                      MaskedDense(12, activation="relu", name="d1"),
                                      MaskedDense(1, name="d2")])
    topology.sparsify(generator, 0.5, distribution="uniform", seed=seed)
    topology.sparsify(discriminator, 0.5, distribution="uniform", seed=seed + 1)
    return SparseGAN(generator, discriminator, latent_dim=2, br_interval=1, br_window=2,
                     ema_decay=ema_decay)


def _state(gan, network: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat (masks, kernels, gradient buffers) of the network's masked layers."""
    layers = gan.masked_layers(network)
    return (flat([layer.mask.numpy() for layer in layers]),
            flat([layer.kernel.numpy() for layer in layers]),
            flat([buffer.numpy() for buffer in gan.grad_buffers(network)]))


def _distinct_values(gan, network: str, seed: int = 0) -> None:
    """Kernels with distinct magnitudes (0 outside the masks), distinct gradients."""
    n = SIZES[network]
    rng = np.random.default_rng(seed)
    masks = _state(gan, network)[0]
    layers = gan.masked_layers(network)
    signs = rng.choice([-1.0, 1.0], size=n)
    assign_flat([layer.kernel for layer in layers], (rng.permutation(n) + 1.0) / n * signs * masks)
    assign_flat(gan.grad_buffers(network), (rng.permutation(n) + 1.0) * signs)


def _reference(masks, kernels, grads, fraction) -> tuple[np.ndarray, set[int], set[int]]:
    """NumPy global drop-and-grow: new masks, dropped and grown positions."""
    active = np.flatnonzero(masks)
    n = math.floor(fraction * len(active))
    dropped = active[np.argsort(np.abs(kernels[active]), kind="stable")[:n]]
    kept = masks.copy()
    kept[dropped] = 0.0
    candidates = np.flatnonzero(kept == 0)
    grown = candidates[np.argsort(-np.abs(grads[candidates]), kind="stable")[:n]]
    new = kept.copy()
    new[grown] = 1.0
    return new, set(np.flatnonzero(masks > new)), set(np.flatnonzero(new > masks))


# ------------------------------------------------------------------------- one update


@pytest.mark.usefixtures("eager")
@pytest.mark.parametrize("network", ["generator", "discriminator"])
def test_rigl_update_drops_smallest_magnitudes_and_grows_largest_gradients(network):
    gan = _gan()
    _distinct_values(gan, network)
    other = "discriminator" if network == "generator" else "generator"
    other_masks = _state(gan, other)[0]
    masks, kernels, grads = _state(gan, network)
    callback = DynamicSparsity(network, dst.RigL(interval=2), total_steps=8)
    callback.set_model(gan)
    fraction = 0.005 + (0.5 - 0.005) * (1 + math.cos(math.pi * 2 / 8)) / 2
    n = math.floor(fraction * SIZES[network] / 2)
    # Zero gradient at the n weights to drop, so that none of them is regrown.
    active = np.flatnonzero(masks)
    grads[active[np.argsort(np.abs(kernels[active]))[:n]]] = 0.0
    assign_flat(gan.grad_buffers(network), grads)

    event = callback.update(2)

    new_masks, new_kernels, _ = _state(gan, network)
    expected, dropped, grown = _reference(masks, kernels, grads, fraction)
    assert len(dropped) == len(grown) == n > 0
    np.testing.assert_array_equal(new_masks, expected)
    assert event == dict(step=2, network=network, dropped=n, grown=n,
                         fraction=pytest.approx(fraction))
    assert callback.history == [event]
    assert int(new_masks.sum()) == SIZES[network] // 2  # active count unchanged
    assert np.all(new_kernels[new_masks == 0] == 0.0)
    assert np.all(new_kernels[sorted(grown)] == 0.0)  # regrown weights start at 0
    kept = (new_masks == 1) & (masks == 1)
    np.testing.assert_array_equal(new_kernels[kept], kernels[kept])
    np.testing.assert_array_equal(_state(gan, other)[0], other_masks)
    assert gan.density(network) == 0.5


@pytest.mark.usefixtures("eager")
def test_set_growth_is_random_exact_and_deterministic_in_the_seed():
    def grown(seed):
        gan = _gan()
        _distinct_values(gan, "generator")
        for buffer in gan.grad_buffers("generator"):
            buffer.assign(tf.zeros_like(buffer))  # SET does not need gradients
        masks, kernels, _ = _state(gan, "generator")
        callback = DynamicSparsity("generator", dst.SET(interval=2, seed=seed), total_steps=8)
        callback.set_model(gan)
        event = callback.update(2)
        new_masks = _state(gan, "generator")[0]
        assert int(new_masks.sum()) == 24 and event["dropped"] == event["grown"]
        # The drop is still the smallest magnitudes.
        n = math.floor(float(callback.rule.fraction(2, 8)) * 24)
        active = np.flatnonzero(masks)
        smallest = set(active[np.argsort(np.abs(kernels[active]))[:n]])
        assert {i for i in smallest if new_masks[i] == 0} == set(
            np.flatnonzero(masks > new_masks))
        return set(np.flatnonzero(new_masks > masks))

    assert grown(0) == grown(0)
    assert grown(0) != grown(1)


# ---------------------------------------------------------------------------- in a fit


def _adam_slots(optimizer, layers) -> list[np.ndarray]:
    """Flat Adam (m, v) of the layers' kernels, where tf_keras keeps them."""
    per_layer = [_compat.slot_variables(optimizer, layer.kernel) for layer in layers]
    return [flat([slots[k].numpy() for slots in per_layer]) for k in (0, 1)]


class _Snapshot(keras.callbacks.Callback):
    """Per iteration: masks, kernels, gradient buffers and Adam slots of both networks, plus
    the EMA generator's masks and kernels. Placed before and after the DST callbacks."""

    def __init__(self, gan):
        super().__init__()
        self.gan = gan
        self.records = []

    def on_train_batch_end(self, batch, logs=None):
        gan, record = self.gan, {"step": self.gan.iteration}
        for network, optimizer in (("generator", gan.g_optimizer),
                                   ("discriminator", gan.d_optimizer)):
            masks, kernels, grads = _state(gan, network)
            record[network] = dict(masks=masks, kernels=kernels, grads=grads,
                                   slots=_adam_slots(optimizer, gan.masked_layers(network)))
        ema = masked_layers(gan.ema_generator)
        record["ema"] = dict(masks=flat([layer.mask.numpy() for layer in ema]),
                             kernels=flat([layer.kernel.numpy() for layer in ema]))
        self.records.append(record)


def test_fit_updates_every_interval_never_at_the_end_with_exact_counts():
    keras.utils.set_random_seed(1)  # kernel initialisation: the updates below regrow weights
    gan = _gan(ema_decay=0.5)
    gan.compile(g_optimizer=keras.optimizers.Adam(0.01), d_optimizer=keras.optimizers.Adam(0.01))
    total = 6
    rigl = DynamicSparsity("generator", dst.RigL(interval=2, reset_optimizer_slots=True),
                           total_steps=total)
    set_d = DynamicSparsity("discriminator", dst.SET(interval=3, seed=4), total_steps=total)
    before, after = _Snapshot(gan), _Snapshot(gan)
    images = np.random.default_rng(0).normal(size=(total * 8, 2)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices(images).batch(8, drop_remainder=True)

    history = gan.fit(data, epochs=1, verbose=0, callbacks=[before, rigl, set_d, after])

    assert [e["step"] for e in rigl.history] == [2, 4]  # not 6, the last iteration
    assert [e["step"] for e in set_d.history] == [3]  # not 6
    assert [r["step"] for r in after.records] == list(range(1, total + 1))
    g = [(b["generator"], a["generator"]) for b, a in zip(before.records, after.records)]
    d = [(b["discriminator"], a["discriminator"]) for b, a in zip(before.records,
                                                                  after.records)]
    for step, ((g_pre, g_post), (d_pre, d_post), record) in enumerate(
            zip(g, d, after.records), start=1):
        # Off the update iterations nothing moves. (On them the masks may also come out
        # unchanged: RigL may regrow exactly what it dropped, e.g. weights grown at step 2 that
        # are still small at step 4 but have large gradients.)
        if step not in (2, 4):
            np.testing.assert_array_equal(g_post["masks"], g_pre["masks"])
        if step != 3:
            np.testing.assert_array_equal(d_post["masks"], d_pre["masks"])
        assert int(g_post["masks"].sum()) == 24 and int(d_post["masks"].sum()) == 18, step
        for post in (g_post, d_post):
            assert np.all(post["kernels"][post["masks"] == 0] == 0.0), step
        # Sparse EMA: same masks as G, zero outside them.
        np.testing.assert_array_equal(record["ema"]["masks"], g_post["masks"])
        assert np.all(record["ema"]["kernels"][g_post["masks"] == 0] == 0.0), step
    for step in (2, 4):
        pre, post = g[step - 1]
        fraction = float(dst.drop_fraction(step, total))
        expected, _, grown = _reference(pre["masks"], pre["kernels"], pre["grads"], fraction)
        np.testing.assert_array_equal(post["masks"], expected)
        assert np.all(post["kernels"][sorted(grown)] == 0.0)
        regrown = (post["masks"] == 1) & (pre["masks"] == 0)
        for slot_pre, slot_post in zip(pre["slots"], post["slots"]):
            assert np.all(slot_post[regrown] == 0.0)
            np.testing.assert_array_equal(slot_post[~regrown], slot_pre[~regrown])
    # The seed makes the step-2 update regrow weights whose Adam slots were warm.
    pre, post = g[1]
    regrown = (post["masks"] == 1) & (pre["masks"] == 0)
    assert regrown.any() and all(np.any(slot[regrown] != 0.0) for slot in pre["slots"])
    assert (d[2][1]["masks"] != d[2][0]["masks"]).any()  # SET moved D at step 3
    # D keeps warm Adam slots (the paper's default, reset_optimizer_slots=False).
    d_pre, d_post = d[2]
    for slot_pre, slot_post in zip(d_pre["slots"], d_post["slots"]):
        np.testing.assert_array_equal(slot_post, slot_pre)
    # RigL asked for G's gradients on iterations 2 and 4 only; SET never asked for D's.
    grads = [r["generator"]["grads"] for r in after.records]
    assert np.all(grads[0] == 0.0) and np.any(grads[1] != 0.0)
    np.testing.assert_array_equal(grads[2], grads[1])
    assert not np.array_equal(grads[3], grads[2])
    np.testing.assert_array_equal(grads[5], grads[3])
    assert all(np.all(r["discriminator"]["grads"] == 0.0) for r in after.records)
    assert history.history["g_density"][-1] == history.history["d_density"][-1] == 0.5


# ----------------------------------------------------------------- the one mask writer


def test_update_writes_masks_then_densities_and_the_ema_generator_follow():
    gan = _gan(ema_decay=0.5)
    sparsity = gan.sparsity
    g_layers, ema_layers = gan.masked_layers("generator"), masked_layers(gan.ema_generator)
    for layer in ema_layers:  # an EMA kernel that is nonzero everywhere
        layer.kernel.assign(tf.ones_like(layer.kernel))
    new = [np.ones(layer.mask.shape, np.float32) for layer in g_layers]
    new[0][0, :] = 0.0  # G's first layer loses its first input row: 12 of 48 entries
    seen = []

    def fn(kernels, masks, grads, scale):
        seen.append((kernels, masks, grads, scale))
        return dst.assign_masks(kernels, masks, new)

    dropped, grown = sparsity.update("generator", fn, 7)
    (kernels, masks, grads, scale), = seen
    assert [m.ref() for m in masks] == [layer.mask.ref() for layer in g_layers]
    assert [k.ref() for k in kernels] == [layer.kernel.ref() for layer in g_layers]
    assert grads is sparsity.grad_buffers["generator"] and scale == 7
    assert int(grown) - int(dropped) == 48 - 12 - 24
    assert float(sparsity.densities["generator"].numpy()) == pytest.approx(36 / 48)
    assert gan.density("generator") == pytest.approx(36 / 48)
    for ema_layer, layer, mask in zip(ema_layers, g_layers, new):
        np.testing.assert_array_equal(ema_layer.mask.numpy(), mask)
        np.testing.assert_array_equal(ema_layer.kernel.numpy(), mask)  # ones * mask
        assert np.all(layer.kernel.numpy()[mask == 0] == 0.0)
    ema_masks = [layer.mask.numpy().copy() for layer in ema_layers]
    d_masks = [np.zeros(layer.mask.shape, np.float32) for layer in gan.masked_layers(
        "discriminator")]
    d_masks[0][0, 0] = 1.0
    sparsity.assign("discriminator", d_masks)  # D's masks: G's EMA is untouched
    assert float(sparsity.densities["discriminator"].numpy()) == pytest.approx(1 / 36)
    for ema_layer, mask in zip(ema_layers, ema_masks):
        np.testing.assert_array_equal(ema_layer.mask.numpy(), mask)
    with pytest.raises(ValueError, match="network must be one of"):
        sparsity.update("critic", fn)


def test_an_update_given_the_iterations_logs_adds_its_change_to_them():
    # The counts come from the masks before and after (fn returns nothing, as GMP's), so any
    # update, not only dst.assign_masks, reaches the loggers through the logs.
    gan = _gan()
    layers = gan.masked_layers("generator")
    old = [layer.mask.numpy().copy() for layer in layers]
    new = [np.ones(mask.shape, np.float32) for mask in old]
    new[0][0, :] = 0.0

    def fn(kernels, masks, grads):
        dst.assign_masks(kernels, masks, new)

    logs = {"g_density": np.float32(0.0)}
    assert gan.sparsity.update("generator", fn, logs=logs) is None
    dropped = sum(int(np.sum((o != 0) & (n == 0))) for o, n in zip(old, new))
    grown = sum(int(np.sum((o == 0) & (n != 0))) for o, n in zip(old, new))
    assert dropped > 0 and grown > 0
    assert logs == {"g_mask_dropped": dropped, "g_mask_grown": grown,
                    "g_density": pytest.approx(gan.density("generator"))}


def test_gradient_growth_declares_its_update_iterations_only():
    rigl = DynamicSparsity("discriminator", dst.RigL(interval=2), total_steps=6)
    set_g = DynamicSparsity("generator", dst.SET(interval=2), total_steps=6)
    assert [rigl.needs_gradients(step) for step in range(7)] == [
        (), (), ("discriminator",), (), ("discriminator",), (), ()]
    assert all(set_g.needs_gradients(step) == () for step in range(7))


# ---------------------------------------------------------------------------- bad input


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="network must be 'generator' or 'discriminator'"):
        DynamicSparsity("critic", dst.RigL(), total_steps=10)
    with pytest.raises(ValueError, match="dst.SET or dst.RigL"):
        DynamicSparsity("generator", "rigl", total_steps=10)
    for total_steps in (0, True, 2.5):
        with pytest.raises(ValueError, match="total_steps"):
            DynamicSparsity("generator", dst.RigL(), total_steps=total_steps)
    assert DynamicSparsity("generator", dst.RigL(), total_steps=1).total_steps == 1


def test_bookkeeping_variables_are_never_trained_and_follow_the_first_replica():
    # No optimizer may see the gradient buffers or the logged densities (a trainable one
    # would join `gan.trainable_variables`), and under a distribution strategy the train
    # step writes them in replica context, which a variable without ONLY_FIRST_REPLICA
    # aggregation refuses.
    gan = _gan()
    variables = [*gan.sparsity.densities.values(),
                 *(b for buffers in gan.sparsity.grad_buffers.values() for b in buffers)]
    assert len(variables) == 2 + 4
    for variable in variables:
        assert not variable.trainable
        assert variable.aggregation == tf.VariableAggregation.ONLY_FIRST_REPLICA
    own = {v.ref() for v in gan.generator.trainable_variables
           + gan.discriminator.trainable_variables}
    assert {v.ref() for v in gan.trainable_variables} == own


def test_a_network_without_masks_has_density_one():
    dense_d = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    gan = SparseGAN(_gan().generator, dense_d, latent_dim=2)
    assert gan.sparsity.density("discriminator") == 1.0
    assert float(gan.sparsity.densities["discriminator"].numpy()) == 1.0


@pytest.mark.usefixtures("eager")
def test_a_discriminator_update_resets_the_discriminators_slots_and_logs_its_counts(caplog):
    keras.utils.set_random_seed(2)
    gan = _gan()
    gan.compile(g_optimizer=keras.optimizers.Adam(0.01), d_optimizer=keras.optimizers.Adam(0.01))
    images = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    images = tf.data.Dataset.from_tensor_slices(images).batch(8, drop_remainder=True)
    gan.fit(images, epochs=1, verbose=0)
    rigl = DynamicSparsity("discriminator", dst.RigL(interval=1, reset_optimizer_slots=True),
                           total_steps=4)
    rigl.set_model(gan)
    _distinct_values(gan, "discriminator")
    layers = gan.masked_layers("discriminator")
    before = flat([layer.mask.numpy() for layer in layers])
    slots = [_compat.slot_variables(gan.d_optimizer, layer.kernel) for layer in layers]
    g_slots = [s.numpy().copy() for layer in gan.masked_layers("generator")
               for s in _compat.slot_variables(gan.g_optimizer, layer.kernel)]
    for layer_slots in slots:
        for slot in layer_slots:
            slot.assign(tf.ones_like(slot))
    with caplog.at_level("INFO", logger="absl"):
        event = rigl.update(2)
    after = flat([layer.mask.numpy() for layer in layers])
    regrown = (after == 1) & (before == 0)
    assert regrown.any() and event["grown"] == int(regrown.sum())
    for k in range(2):  # Adam's m and v of each D layer
        values = flat([layer_slots[k].numpy() for layer_slots in slots])
        assert np.all(values[regrown] == 0.0) and np.all(values[~regrown] == 1.0)
    for slot, kept in zip((s for layer in gan.masked_layers("generator")
                           for s in _compat.slot_variables(gan.g_optimizer, layer.kernel)),
                          g_slots):
        np.testing.assert_array_equal(slot.numpy(), kept)  # G's optimizer is not D's
    assert (f"DST discriminator at step 2: dropped {event['dropped']}, grew {event['grown']} "
            f"(fraction {event['fraction']:.4f})") in caplog.messages


@pytest.mark.usefixtures("eager")
def test_ever_active_is_the_union_of_every_mask_and_its_share():
    gan = SparseGAN(*(_gan().generator, _gan(seed=3).discriminator), latent_dim=2,
                    ever_active=True)
    sparsity = gan.sparsity
    g_layers = gan.masked_layers("generator")
    start = flat([layer.mask.numpy() for layer in g_layers])
    np.testing.assert_array_equal(flat([v.numpy() for v in sparsity.ever_active["generator"]]),
                                  start)
    assert float(sparsity.ever_active_shares["generator"].numpy()) == 0.5  # 24 of 48
    # Two updates: each moves 4 weights off and 4 on; the union grows by what is new.
    rng = np.random.default_rng(0)
    union = start.copy()
    for _ in range(2):
        masks = flat([layer.mask.numpy() for layer in g_layers])
        on, off = np.flatnonzero(masks), np.flatnonzero(masks == 0)
        new = masks.copy()
        new[rng.choice(on, 4, replace=False)] = 0.0
        new[rng.choice(off, 4, replace=False)] = 1.0
        arrays = []
        offset = 0
        for layer in g_layers:
            size = int(np.prod(layer.mask.shape))
            arrays.append(new[offset:offset + size].reshape(layer.mask.shape))
            offset += size
        sparsity.assign("generator", arrays)
        union = np.maximum(union, new)
        np.testing.assert_array_equal(
            flat([v.numpy() for v in sparsity.ever_active["generator"]]), union)
        assert float(sparsity.ever_active_shares["generator"].numpy()) == pytest.approx(
            union.sum() / 48, abs=1e-7)
    assert union.sum() > start.sum()  # new weights were tried
    # D was not touched: its share is its starting density; without the switch, nothing.
    assert float(sparsity.ever_active_shares["discriminator"].numpy()) == 0.5
    assert _gan().sparsity.ever_active == {} and _gan().sparsity.ever_active_shares == {}
    with pytest.raises(ValueError, match="ever_active=1 must be True or False"):
        SparseGAN(_gan().generator, _gan().discriminator, latent_dim=2, ever_active=1)
