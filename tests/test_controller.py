"""Tests of adapt_tf.balance.controller.ADAPTController: decisions against hand-chosen BR windows,
the exact active counts they leave, bounds, the strict-mode D-DST, cadence, growth by the gradient
buffers, one short `fit`, checkpointing of the state, and argument errors.

Most tests take decisions without training: the BR window is filled by hand with
`gan.balance.push(gf, 0, 1)` (a sample whose ratio is exactly gf), then `controller.decide`.
The discriminator is a 2 -> 12 -> 1 masked MLP: N = 36 masked kernel entries, so densities map
to counts that need rounding (0.55 -> round(19.8) = 20, 0.45 -> round(16.2) = 16). Its kernels
hold distinct magnitudes and its gradient buffers distinct values, so every prune and growth
has one right answer that the tests compute with NumPy.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from adapt_tf import balance
from adapt_tf.sparse import topology
from adapt_tf.balance.controller import ADAPTController
from adapt_tf.gan.sparse_gan import SparseGAN
from adapt_tf.sparse.layers import MaskedDense

import tensorflow as tf
import tf_keras as keras
from flat_arrays import assign_flat, flat

WIDTH = 12
N_D = 2 * WIDTH + WIDTH  # 36 masked entries in D
WINDOW = 4  # BR samples in the window (br_interval 1, br_window 4)
# A band whose edges float32 represents exactly, so "BR == B-" and "BR == B+" are exact.
EXACT_BAND = dict(b_low=0.375, b_high=0.625)


# ------------------------------------------------------------------------------- helpers


@pytest.fixture
def eager():
    """Runs the controller's tf.functions eagerly: the same arithmetic without seconds of
    tracing per controller instance on this 2-core machine. The D-DST test and the `fit` test
    run them traced."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


def _gan(d_density: float = 0.5, *, seed: int = 0, br_window: int = WINDOW) -> SparseGAN:
    generator = keras.Sequential([keras.Input((2,)), MaskedDense(2, name="g1")])
    discriminator = keras.Sequential([keras.Input((2,)), MaskedDense(WIDTH, name="d1"),
                                      MaskedDense(1, name="d2")])
    topology.sparsify(discriminator, d_density, distribution="uniform", seed=seed)
    gan = SparseGAN(generator, discriminator, latent_dim=2, br_interval=1, br_window=br_window)
    rng = np.random.default_rng(seed)
    magnitudes = (rng.permutation(N_D) + 1.0) / N_D
    signs = rng.choice([-1.0, 1.0], size=N_D)
    grads = (rng.permutation(N_D) + 1.0) * rng.choice([-1.0, 1.0], size=N_D)
    assign_flat([layer.kernel for layer in gan.masked_layers("discriminator")],
                magnitudes * signs * flat(_masks(gan)))
    assign_flat(gan.grad_buffers("discriminator"), grads)
    return gan


def _masks(gan) -> np.ndarray:
    return flat([layer.mask.numpy() for layer in gan.masked_layers("discriminator")])


def _kernels(gan) -> np.ndarray:
    return flat([layer.kernel.numpy() for layer in gan.masked_layers("discriminator")])


def _grads(gan) -> np.ndarray:
    return flat([buffer.numpy() for buffer in gan.grad_buffers("discriminator")])


def _fill(gan, ratios) -> None:
    for ratio in ratios:
        gan.balance.push(ratio, 0.0, 1.0)  # (gf - df) / (dr - df) = ratio, exactly


def _controller(gan, mode: str = "relaxed", **kwargs) -> ADAPTController:
    kwargs = {"total_steps": 100, "interval": 10, **kwargs}
    controller = ADAPTController(mode, **kwargs)
    controller.set_model(gan)
    controller.on_train_begin()
    return controller


def _smallest_active(kernels, masks, n) -> set[int]:
    active = np.flatnonzero(masks)
    return set(active[np.argsort(np.abs(kernels[active]), kind="stable")[:n]].tolist())


def _largest_inactive(grads, masks, n) -> set[int]:
    inactive = np.flatnonzero(masks == 0)
    return set(inactive[np.argsort(-np.abs(grads[inactive]), kind="stable")[:n]].tolist())


# ------------------------------------------------------------------------------ decisions


def test_modes_default_to_the_papers_settings():
    relaxed = ADAPTController("relaxed", total_steps=10)
    strict = ADAPTController("strict", total_steps=10)
    assert (relaxed.interval, relaxed.d_max, strict.interval, strict.d_max) == (1000, 1.0,
                                                                                2000, 0.5)
    for controller in (relaxed, strict):
        assert (controller.b_low, controller.b_high, controller.delta_d, controller.d_min) == (
            0.45, 0.55, 0.05, 0.05)
        assert controller.growth == "gradient" and controller.decisions == []


@pytest.mark.usefixtures("eager")
@pytest.mark.parametrize("ratios, band, action, new_density", [
    ([0.625] * 4, EXACT_BAND, "increase", 0.55),  # BR == B+: inclusive
    ([1.0, 0.25, 0.625, 0.625], EXACT_BAND, "increase", 0.55),  # mean of ratios == B+
    ([0.375] * 4, EXACT_BAND, "decrease", 0.45),  # BR == B-: inclusive
    ([-3.0] * 4, EXACT_BAND, "decrease", 0.45),
    ([0.5] * 4, EXACT_BAND, "keep", 0.5),
    ([0.62] * 4, EXACT_BAND, "keep", 0.5),  # just inside B+
    ([0.38] * 4, EXACT_BAND, "keep", 0.5),  # just inside B-
    ([0.56] * 4, {}, "increase", 0.55),  # the paper's band [0.45, 0.55]
    ([0.44] * 4, {}, "decrease", 0.45),
    ([0.5] * 4, {}, "keep", 0.5),
])
def test_decision_moves_density_as_br_asks_with_exact_counts(ratios, band, action,
                                                             new_density):
    gan = _gan(0.5)
    controller = _controller(gan, **band)
    assert controller.density == 0.5 and int(_masks(gan).sum()) == 18
    masks_before = _masks(gan)
    _fill(gan, ratios)

    logs = {}
    decision = controller.decide(10, logs=logs)

    assert decision["action"] == action
    assert decision["br"] == pytest.approx(np.mean(np.float32(ratios)), abs=1e-7)
    assert (decision["old_density"], decision["new_density"]) == (0.5, new_density)
    assert controller.density == new_density
    assert controller.decisions == [decision]
    assert int(_masks(gan).sum()) == round(new_density * N_D)
    assert gan.density("discriminator") == round(new_density * N_D) / N_D
    if action == "keep":
        np.testing.assert_array_equal(_masks(gan), masks_before)
        assert logs == {}
    else:  # the change reaches the iteration's logs, for masks.csv
        change = round(new_density * N_D) - 18
        assert (logs["d_mask_grown"], logs["d_mask_dropped"]) == (max(change, 0),
                                                                  max(-change, 0))
        assert logs["d_density"] == pytest.approx(round(new_density * N_D) / N_D)


# Pushes, oldest first, into the 4-sample window under EXACT_BAND [0.375, 0.625]. In each, the
# window mean falls on a different side of the band from its median, its newest and its oldest
# sample (and, in the last, from the mean of everything pushed), so a controller reading any
# of those instead of the mean takes another action. All values are exact in float32.
MISLEADING_WINDOWS = [
    # mean 0.75 (above); median 0.25, newest 0.0, oldest 0.0 (all below)
    ([0.0, 0.5, 2.5, 0.0], "increase", 0.55),
    # mean 0.0625 (below); median 0.5 (inside), newest 0.75 (above), oldest 0.5 (inside)
    ([0.5, 0.5, -1.5, 0.75], "decrease", 0.45),
    # mean 0.5 (inside); median 0.25, newest 0.25 (below), oldest 1.5 (above)
    ([1.5, 0.0, 0.25, 0.25], "keep", 0.5),
    # 6 pushes: the ring keeps the last 4 (mean 0.5, inside); the oldest kept sample (1.5) is
    # above, the newest (0.25) below, the mean of all 6 pushes (-3.0) below.
    ([-10.0, -10.0, 1.5, 0.0, 0.25, 0.25], "keep", 0.5),
]


@pytest.mark.usefixtures("eager")
@pytest.mark.parametrize("pushes, action, new_density", MISLEADING_WINDOWS)
def test_decision_follows_the_window_mean_not_its_median_newest_or_oldest(pushes, action,
                                                                          new_density):
    window = np.array(pushes[-WINDOW:])
    low, high = EXACT_BAND["b_low"], EXACT_BAND["b_high"]
    sides = [int(v >= high) - int(v <= low)  # +1 above (inclusive), -1 below, 0 inside
             for v in (window.mean(), np.median(window), window[-1], window[0])]
    assert sides[0] not in sides[1:]  # the case is built as the comment says
    gan = _gan(0.5)
    controller = _controller(gan, **EXACT_BAND)
    _fill(gan, pushes)

    decision = controller.decide(10)

    assert decision["br"] == window.mean()
    assert (decision["action"], decision["new_density"]) == (action, new_density)
    assert int(_masks(gan).sum()) == round(new_density * N_D)


@pytest.mark.usefixtures("eager")
def test_each_decision_is_logged_with_step_br_densities_and_action(caplog):
    gan = _gan(0.5)
    controller = _controller(gan, **EXACT_BAND)
    _fill(gan, [0.75] * WINDOW)
    with caplog.at_level(logging.INFO, logger="absl"):
        controller.decide(10)
    assert "ADAPT step 10: BR=0.75 d_D 0.5000 -> 0.5500 (increase)" in caplog.messages


@pytest.mark.usefixtures("eager")
def test_resize_count_is_round_of_density_times_size_in_float64():
    # D with 2 * 30 + 30 = 90 masked entries: 0.35 * 90 is 31.499999999999996 in float64
    # (31, as dst.target_count) but rounds to 31.5 -> 32 in float32.
    generator = keras.Sequential([keras.Input((2,)), MaskedDense(2)])
    discriminator = keras.Sequential([keras.Input((2,)), MaskedDense(30), MaskedDense(1)])
    topology.sparsify(discriminator, 0.4, distribution="uniform", seed=0)
    gan = SparseGAN(generator, discriminator, latent_dim=2, br_interval=1, br_window=WINDOW)
    controller = _controller(gan)
    assert int(_masks(gan).sum()) == 36 and controller.density == 0.4
    _fill(gan, [0.0] * WINDOW)
    assert controller.decide(10)["new_density"] == 0.35
    assert int(_masks(gan).sum()) == round(0.35 * 90) == 31


@pytest.mark.usefixtures("eager")
@pytest.mark.parametrize("mode, d_density, ratio, action", [
    ("strict", 0.5, 0.625, "dst"),                  # BR == B+ at d_max: inclusive
    ("relaxed", 1.0, 0.625, "keep (at d_max)"),
    ("relaxed", 0.25, 0.375, "keep (at d_min)"),    # BR == B- at d_min: inclusive
])
def test_band_edges_at_the_density_bounds(mode, d_density, ratio, action):
    gan = _gan(d_density)
    controller = _controller(gan, mode, d_min=0.25, **EXACT_BAND)  # starts at d_min: allowed
    _fill(gan, [ratio] * WINDOW)
    decision = controller.decide(10)
    assert (decision["action"], decision["new_density"]) == (action, d_density)


@pytest.mark.usefixtures("eager")
def test_strict_dst_fraction_follows_the_configured_cosine_schedule():
    # r = final + (initial - final)(1 + cos(pi s / S)) / 2 at s = 40 of S = 80:
    # 0.1 + 0.1 * 0.5 = 0.15 of the 18 active weights -> floor(2.7) = 2 swapped.
    gan = _gan(0.5)
    controller = _controller(gan, "strict", total_steps=80, dst_drop_fraction=0.2,
                             dst_final_fraction=0.1)
    masks = _masks(gan)
    _fill(gan, [2.0] * WINDOW)
    assert controller.decide(40)["action"] == "dst"
    new_masks = _masks(gan)
    assert int((masks > new_masks).sum()) == int((new_masks > masks).sum()) == 2


def test_controller_state_is_non_trainable_and_kept_by_the_first_replica():
    state = ADAPTController("relaxed", total_steps=10).state
    assert state.trainable_variables == ()
    assert state.density.aggregation == tf.VariableAggregation.ONLY_FIRST_REPLICA
    assert state.density.dtype == tf.float64


@pytest.mark.usefixtures("eager")
def test_partial_window_waits_and_changes_nothing():
    gan = _gan(0.5)
    controller = _controller(gan)
    masks, kernels = _masks(gan), _kernels(gan)
    _fill(gan, [2.0] * (WINDOW - 1))

    decision = controller.decide(10)

    assert decision["action"].startswith("wait") and decision["br"] is None
    assert decision["old_density"] == decision["new_density"] == controller.density == 0.5
    np.testing.assert_array_equal(_masks(gan), masks)
    np.testing.assert_array_equal(_kernels(gan), kernels)
    _fill(gan, [2.0])  # now full
    assert controller.decide(20)["action"] == "increase"
    assert [d["step"] for d in controller.decisions] == [10, 20]


@pytest.mark.usefixtures("eager")
def test_density_is_clipped_to_d_min_and_d_max_by_hand():
    gan = _gan(0.5)
    controller = _controller(gan, delta_d=0.25)
    expected = [(2.0, 0.75, "increase"), (2.0, 1.0, "increase"),
                (2.0, 1.0, "keep (at d_max)"), (0.0, 0.75, "decrease"),
                (0.0, 0.5, "decrease"), (0.0, 0.25, "decrease"),
                (0.0, 0.05, "decrease"),  # 0.25 - 0.25 = 0 is clipped to the official floor
                (0.0, 0.05, "keep (at d_min)"), (2.0, 0.3, "increase")]
    for i, (ratio, density, action) in enumerate(expected):
        _fill(gan, [ratio] * WINDOW)
        decision = controller.decide(10 * (i + 1))
        assert (decision["action"], decision["new_density"]) == (action, density), i
        assert int(_masks(gan).sum()) == round(density * N_D), i
    assert round(0.05 * N_D) == 2 and int(_masks(gan).sum()) == round(0.3 * N_D) == 11


@pytest.mark.usefixtures("eager")
@pytest.mark.parametrize("mode", ["relaxed", "strict"])
def test_random_br_sequences_never_leave_the_bounds(mode):
    gan = _gan(0.25, seed=3)
    controller = _controller(gan, mode, delta_d=0.1, total_steps=1000)
    rng = np.random.default_rng(7)
    d_max = 1.0 if mode == "relaxed" else 0.5
    for i in range(40):
        _fill(gan, [rng.uniform(-0.2, 1.5)] * WINDOW)  # drifts up: reaches d_max
        before = int(_masks(gan).sum())
        decision = controller.decide(10 * (i + 1))
        d = controller.density
        assert 0.05 <= d <= d_max
        assert int(_masks(gan).sum()) == round(d * N_D)
        if decision["action"] == "dst":
            assert mode == "strict" and d == d_max and int(_masks(gan).sum()) == before
    actions = {d["action"] for d in controller.decisions}
    assert {"increase", "decrease"} <= actions
    assert ("dst" in actions) == (mode == "strict")


# -------------------------------------------------------------------- what changes in D


@pytest.mark.usefixtures("eager")
def test_growth_takes_the_largest_gradients_and_regrown_weights_start_at_zero():
    gan = _gan(0.5)
    controller = _controller(gan)
    masks, kernels, grads = _masks(gan), _kernels(gan), _grads(gan)
    _fill(gan, [1.0] * WINDOW)

    controller.decide(10)  # 0.5 -> 0.55: 18 -> 20 active

    new_masks = _masks(gan)
    grown = set(np.flatnonzero(new_masks > masks).tolist())
    assert grown == _largest_inactive(grads, masks, 2)
    assert np.all(new_masks >= masks)
    assert np.all(_kernels(gan)[sorted(grown)] == 0.0)
    np.testing.assert_array_equal(_kernels(gan)[masks == 1], kernels[masks == 1])


@pytest.mark.usefixtures("eager")
def test_shrinking_prunes_the_smallest_magnitudes():
    gan = _gan(0.5)
    controller = _controller(gan)
    masks, kernels = _masks(gan), _kernels(gan)
    _fill(gan, [0.0] * WINDOW)

    controller.decide(10)  # 0.5 -> 0.45: 18 -> 16 active

    new_masks, new_kernels = _masks(gan), _kernels(gan)
    dropped = set(np.flatnonzero(masks > new_masks).tolist())
    assert dropped == _smallest_active(kernels, masks, 2)
    assert np.all(new_masks <= masks)
    assert np.all(new_kernels[new_masks == 0] == 0.0)
    np.testing.assert_array_equal(new_kernels[new_masks == 1], kernels[new_masks == 1])


def test_strict_mode_runs_d_dst_at_d_max_and_relaxed_keeps():
    gan = _gan(0.5)
    controller = _controller(gan, "strict", total_steps=80)
    masks, kernels = _masks(gan), _kernels(gan)
    # Zero gradient at the weights that will be dropped, so none of them is regrown.
    fraction = 0.005 + (0.5 - 0.005) * (1 + math.cos(math.pi * 40 / 80)) / 2
    n = math.floor(fraction * 18)
    assert n == 4
    dropped = _smallest_active(kernels, masks, n)
    grads = _grads(gan)
    grads[sorted(dropped)] = 0.0
    assign_flat(gan.grad_buffers("discriminator"), grads)
    _fill(gan, [2.0] * WINDOW)

    logs = {}
    decision = controller.decide(40, logs=logs)

    new_masks = _masks(gan)
    assert decision["action"] == "dst" and controller.density == 0.5
    assert (logs["d_mask_dropped"], logs["d_mask_grown"]) == (n, n)
    assert int(new_masks.sum()) == 18  # active count unchanged
    assert set(np.flatnonzero(masks > new_masks).tolist()) == dropped
    assert set(np.flatnonzero(new_masks > masks).tolist()) == _largest_inactive(grads, masks, n)
    assert np.all(_kernels(gan)[new_masks == 0] == 0.0)
    assert np.all(_kernels(gan)[new_masks > masks] == 0.0)

    relaxed_gan = _gan(1.0)
    relaxed = _controller(relaxed_gan)
    _fill(relaxed_gan, [2.0] * WINDOW)
    assert relaxed.decide(40)["action"] == "keep (at d_max)"
    assert int(_masks(relaxed_gan).sum()) == N_D


@pytest.mark.usefixtures("eager")
def test_random_growth_is_exact_and_deterministic_in_the_seed():
    def grown(seed):
        gan = _gan(0.5)
        controller = _controller(gan, growth="random", seed=seed)
        masks = _masks(gan)
        _fill(gan, [1.0] * WINDOW)
        controller.decide(10)
        assert int(_masks(gan).sum()) == 20
        return set(np.flatnonzero(_masks(gan) > masks).tolist())

    assert grown(0) == grown(0)
    assert grown(0) != grown(1)


# -------------------------------------------------------------------------------- cadence


@pytest.mark.usefixtures("eager")
def test_acts_only_every_interval_and_never_at_the_last_iteration():
    gan = _gan(0.5)
    controller = _controller(gan, interval=2, total_steps=6, growth="random")
    _fill(gan, [2.0] * WINDOW)  # a full window of BR = 2: every decision increases d_D
    for step in range(1, 7):
        gan.step.assign(step)  # outside fit, gan.iteration reads gan.step
        controller.on_train_batch_end(step - 1)
    assert [d["step"] for d in controller.decisions] == [2, 4]
    assert controller.density == pytest.approx(0.6)
    assert int(_masks(gan).sum()) == round(0.6 * N_D) == 22
    # Every iteration with interval 1, from the first; still never at the last.
    every = _controller(_gan(0.5), interval=1, total_steps=3, growth="random")
    _fill(every.model, [2.0] * WINDOW)
    for step in range(1, 4):
        every.model.step.assign(step)
        every.on_train_batch_end(step - 1)
    assert [d["step"] for d in every.decisions] == [1, 2]


class _Recorder(keras.callbacks.Callback):
    """Per iteration: D's masks, kernels and gradient buffers, and the controller density."""

    def __init__(self, gan, controller):
        super().__init__()
        self.gan, self.controller = gan, controller
        self.masks, self.kernels, self.grads, self.densities = [], [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.masks.append(_masks(self.gan))
        self.kernels.append(_kernels(self.gan))
        self.grads.append(_grads(self.gan))
        self.densities.append(self.controller.density)


def test_fit_waits_for_a_full_window_grows_by_requested_gradients_and_keeps_counts_exact():
    gan = _gan(0.5, br_window=3)  # the window is full after 3 iterations
    gan.compile(g_optimizer=keras.optimizers.Adam(0.01), d_optimizer=keras.optimizers.Adam(0.01))
    for buffer in gan.grad_buffers("discriminator"):
        buffer.assign(tf.zeros_like(buffer))
    # A band below any finite BR: every full-window decision increases d_D.
    controller = ADAPTController("relaxed", total_steps=6, interval=2, b_low=-2e9, b_high=-1e9)
    recorder = _Recorder(gan, controller)
    images = np.random.default_rng(0).normal(size=(6 * 8, 2)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices(images).batch(8, drop_remainder=True)

    history = gan.fit(data, epochs=1, verbose=0, callbacks=[controller, recorder])

    assert [(d["step"], d["action"]) for d in controller.decisions] == [
        (2, "wait (BR window not full)"), (4, "increase")]
    assert recorder.densities == [0.5] * 3 + [0.55] * 3
    for masks, kernels, density in zip(recorder.masks, recorder.kernels, recorder.densities):
        assert int(masks.sum()) == round(density * N_D)
        assert np.all(kernels[masks == 0] == 0.0)
    # Gradients were copied on iterations 2 and 4 (the ones before a decision) only.
    assert np.all(recorder.grads[0] == 0.0)
    assert np.any(recorder.grads[1] != 0.0)
    np.testing.assert_array_equal(recorder.grads[2], recorder.grads[1])
    assert not np.array_equal(recorder.grads[3], recorder.grads[2])
    np.testing.assert_array_equal(recorder.grads[5], recorder.grads[3])
    grown = set(np.flatnonzero(recorder.masks[3] > recorder.masks[2]).tolist())
    assert grown == _largest_inactive(recorder.grads[3], recorder.masks[2], 2)
    assert history.history["d_density"][-1] == pytest.approx(20 / N_D)


# ---------------------------------------------------------------------------- checkpoints


@pytest.mark.usefixtures("eager")
def test_state_round_trips_through_a_checkpoint(tmp_path):
    gan = _gan(0.5)
    controller = _controller(gan)
    for step, ratio in ((10, 1.0), (20, 0.5), (30, 1.0)):
        _fill(gan, [ratio] * WINDOW)
        controller.decide(step)
    path = tf.train.Checkpoint(gan=gan, controller=controller.state).save(
        str(tmp_path / "ckpt"))

    restored_gan = _gan(0.25, seed=5)
    fresh = ADAPTController("relaxed", total_steps=100, interval=10)
    assert fresh.density == -1.0  # "not set": on_train_begin reads D's masks
    tf.train.Checkpoint(gan=restored_gan, controller=fresh.state).restore(
        path).assert_existing_objects_matched()

    assert fresh.density == controller.density == 0.6
    assert fresh.decisions == controller.decisions
    assert isinstance(fresh.state.log_json.text, str)  # restored bytes decoded
    assert [d["action"] for d in fresh.decisions] == ["increase", "keep", "increase"]
    np.testing.assert_array_equal(_masks(restored_gan), _masks(gan))
    fresh.set_model(restored_gan)
    fresh.on_train_begin()
    assert fresh.density == 0.6
    _fill(restored_gan, [0.0] * WINDOW)
    assert fresh.decide(40)["new_density"] == 0.55
    assert len(fresh.decisions) == 4 and len(controller.decisions) == 3


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="loose"), "mode='loose'"),
    (dict(growth="magnitude"), "growth='magnitude'"),
    (dict(total_steps=0), "total_steps"),
    (dict(interval=0), "interval"),
    (dict(d_min=0.6, d_max=0.5), "d_min <= d_max"),
    (dict(d_max=1.5), "d_max"),
    (dict(b_low=0.6, b_high=0.5), "b_low < b_high"),
    (dict(delta_d=0.0), "delta_d"),
    (dict(delta_d=1.5), "delta_d must be in \\(0, 1\\], got 1.5"),
    (dict(d_min=0.0), "Need 0 < d_min <= d_max <= 1, got d_min=0.0"),
    (dict(b_low=0.5, b_high=0.5), "Need b_low < b_high"),
    (dict(total_steps=True), "total_steps must be a positive integer, got True"),
    (dict(interval=2.5), "interval must be a positive integer, got 2.5"),
])
def test_bad_arguments_raise(kwargs, match):
    kwargs = {"mode": "relaxed", "total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        ADAPTController(kwargs.pop("mode"), **kwargs)


def test_edge_arguments_are_accepted_and_defaults_are_relaxed_with_seed_zero():
    fixed = ADAPTController("strict", total_steps=10, d_min=0.5, d_max=0.5, delta_d=1.0)
    assert (fixed.d_min, fixed.d_max, fixed.delta_d) == (0.5, 0.5, 1.0)
    default = ADAPTController(total_steps=10)
    assert (default.mode, default.interval, default.d_max, default.seed) == (
        "relaxed", 1000, 1.0, 0)


def test_discriminator_outside_the_bounds_is_rejected_at_train_begin():
    controller = ADAPTController("strict", total_steps=10)
    controller.set_model(_gan(0.75))
    with pytest.raises(ValueError) as refused:
        controller.on_train_begin()
    assert str(refused.value) == (
        f"The discriminator starts at density {controller.density:.6g}, outside [d_min=0.05, "
        "d_max=0.5] of the strict controller: sparsify it into that range first, or move "
        "d_min / d_max.")
    # A floor a hair above D's exact-count density: the message shows the digits that differ.
    gan = _gan(0.5)
    density = gan.density("discriminator")
    controller = ADAPTController("relaxed", total_steps=10, d_min=density + 1e-5)
    controller.set_model(gan)
    with pytest.raises(ValueError, match=rf"starts at density {density:.6g}, outside"):
        controller.on_train_begin()


def _ada_gan(d_density: float) -> SparseGAN:
    gan = _gan(d_density)
    gan.criterion = balance.ADA  # the window holds ADA-style shares (SparseGAN(criterion="ada"))
    return gan


@pytest.mark.usefixtures("eager")
@pytest.mark.parametrize("mode, d_density, shares, action, new_density", [
    # The directions turn round: many reals above 0 means D is too strong.
    ("relaxed", 0.5, [0.625] * 4, "decrease", 0.45),           # share == B+: inclusive
    ("relaxed", 0.5, [1.0, 0.25, 0.625, 0.625], "decrease", 0.45),  # mean == B+
    ("relaxed", 0.5, [0.375] * 4, "increase", 0.55),           # share == B-: inclusive
    ("relaxed", 0.5, [0.0, 0.5, 0.25, 0.25], "increase", 0.55),  # mean 0.25, newest inside
    ("relaxed", 0.5, [0.5] * 4, "keep", 0.5),
    ("relaxed", 0.25, [0.75] * 4, "keep (at d_min)", 0.25),
    ("relaxed", 1.0, [0.25] * 4, "keep (at d_max)", 1.0),
    ("strict", 0.5, [0.25] * 4, "keep (at d_max)", 0.5),       # no D-DST with this criterion
])
def test_the_ada_criterion_shrinks_a_strong_d_and_grows_a_weak_one(mode, d_density, shares,
                                                                   action, new_density):
    gan = _ada_gan(d_density)
    controller = _controller(gan, mode, d_min=0.25, **EXACT_BAND)
    assert controller.criterion is balance.ADA
    masks_before = _masks(gan)
    for share in shares:
        gan.balance.push_value(share)
    decision = controller.decide(10)
    assert (decision["action"], decision["new_density"]) == (action, new_density)
    assert decision["br"] == pytest.approx(np.mean(shares), abs=1e-7)
    assert int(_masks(gan).sum()) == round(new_density * N_D)
    if action.startswith("keep"):
        np.testing.assert_array_equal(_masks(gan), masks_before)


def test_an_undefined_window_mean_keeps_the_density_and_says_why():
    controller = _controller(_gan(0.5))
    assert controller._next_density(math.nan, 0.5) == (0.5, "keep (BR undefined)")
