"""Tests of adapt_tf.balance: per-sample ratio, balance_ratio, the BalanceWindow ring buffer."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from adapt_tf import balance

import tensorflow as tf


def test_sample_ratio_hand_numbers():
    # (gf - df) / (dr - df) = (0.2 - (-1)) / (2 - (-1)) = 1.2 / 3
    assert balance.sample_ratio(0.2, -1.0, 2.0) == pytest.approx(0.4)
    np.testing.assert_allclose(balance.sample_ratio(np.array([1.0, 0.0]), 0.5, 1.5),
                               [0.5, -0.5])
    value = balance.sample_ratio(tf.constant(3.0), tf.constant(1.0), tf.constant(5.0))
    assert float(value) == pytest.approx(0.5)


def test_balance_ratio_is_the_ratio_of_means_of_d_outputs():
    post = [[1.0], [3.0]]       # mean 2
    pre = [0.0, 1.0, 2.0, -3.0]  # mean 0
    real = np.array([4.0, 6.0])  # mean 5
    assert balance.balance_ratio(post, pre, real) == pytest.approx(2.0 / 5.0)
    # G step moves fakes past the real score: BR > 1; moves them away: BR < 0.
    assert balance.balance_ratio([6.0], [0.0], [5.0]) == pytest.approx(1.2)
    assert balance.balance_ratio([-1.0], [0.0], [5.0]) == pytest.approx(-0.2)


def test_balance_ratio_averages_float32_logits_in_float64():
    # 2**24 + 1 is not a float32: a float32 running sum of [2**24, 1, -2**24] gives 0, the
    # exact (float64) sum 1, so mean(post) = 1/3 and BR = (1/3 - 0) / (1 - 0).
    post = np.array([2.0 ** 24, 1.0, -2.0 ** 24], np.float32)
    assert float(np.float32(2.0 ** 24) + np.float32(1.0)) == 2.0 ** 24
    ratio = balance.balance_ratio(post, np.zeros(2, np.float32), np.ones(2, np.float32))
    assert ratio == pytest.approx(1.0 / 3.0, rel=1e-12)


def test_window_is_empty_and_nan_before_any_push():
    window = balance.BalanceWindow(3)
    assert math.isnan(float(window.mean()))
    assert int(window.count.numpy()) == 0
    assert not bool(window.is_full())
    assert window.values().shape == (0,)


def test_window_mean_is_the_mean_of_per_sample_ratios_not_the_ratio_of_means():
    window = balance.BalanceWindow(4)
    samples = [(1.0, 0.0, 2.0), (3.0, 1.0, 2.0)]  # ratios 0.5 and 2.0
    for gf, df, dr in samples:
        assert bool(window.push(gf, df, dr))
    assert float(window.mean()) == pytest.approx(1.25)
    # ratio of means would be (2 - 0.5) / (2 - 0.5) = 1.0
    np.testing.assert_allclose(window.values(), [0.5, 2.0])
    assert not bool(window.is_full())


def test_window_ring_keeps_the_newest_capacity_samples_oldest_first():
    window = balance.BalanceWindow(3)
    ratios = [0.1, 0.2, 0.3, 0.4, 0.5]
    for i, ratio in enumerate(ratios):
        window.push(ratio, 0.0, 1.0)  # (r - 0) / (1 - 0) = r
        kept = ratios[max(0, i - 2):i + 1]
        np.testing.assert_allclose(window.values(), kept, rtol=1e-6)
        assert float(window.mean()) == pytest.approx(np.mean(kept), rel=1e-6)
        assert bool(window.is_full()) == (i >= 2)
    assert int(window.count.numpy()) == 3


def test_degenerate_denominator_is_skipped_and_counted_never_raised():
    window = balance.BalanceWindow(3)
    window.push(1.0, 0.0, 2.0)
    assert not bool(window.push(5.0, 1.0, 1.0))            # dr == df
    assert not bool(window.push(5.0, 1.0, 1.0 + 1e-10))    # |dr - df| below eps
    assert not bool(window.push(float("nan"), 0.0, 1.0))   # non-finite ratio
    assert not bool(window.push(float("inf"), 0.0, 1.0))
    assert int(window.skipped.numpy()) == 4
    assert int(window.count.numpy()) == 1
    np.testing.assert_allclose(window.values(), [0.5])
    assert float(window.mean()) == pytest.approx(0.5)
    # A skipped sample leaves the ring position alone: the next valid one follows the last.
    window.push(0.25, 0.0, 1.0)
    np.testing.assert_allclose(window.values(), [0.5, 0.25])


def test_denominator_equal_to_eps_is_skipped_and_just_above_is_kept():
    eps = 2.0 ** -10  # exact in float32, so dr - df == eps exactly
    window = balance.BalanceWindow(3, eps=eps)
    assert not bool(window.push(1.0, 0.0, eps))
    assert bool(window.push(eps, 0.0, 2 * eps))  # ratio 0.5
    assert int(window.skipped.numpy()) == 1
    np.testing.assert_allclose(window.values(), [0.5])


def test_capacity_one_window_holds_the_newest_sample():
    window = balance.BalanceWindow(1)
    window.push(0.5, 0.0, 1.0)
    window.push(0.25, 0.0, 1.0)
    assert bool(window.is_full()) and float(window.mean()) == 0.25
    np.testing.assert_array_equal(window.values(), [0.25])


def test_window_state_is_non_trainable_int32_counters_kept_by_the_first_replica():
    # Not trainable: optimizers and Model.trainable_weights never see it. ONLY_FIRST_REPLICA:
    # assignable from a replica context under MirroredStrategy (every replica holds the same).
    window = balance.BalanceWindow(4)
    assert window.trainable_variables == ()
    for variable in (window.samples, window.count, window.position, window.skipped):
        assert variable.aggregation == tf.VariableAggregation.ONLY_FIRST_REPLICA
    assert window.samples.dtype == tf.float32
    assert {v.dtype for v in (window.count, window.position, window.skipped)} == {tf.int32}


def test_all_skipped_window_stays_nan():
    window = balance.BalanceWindow(2)
    window.push(3.0, 2.0, 2.0)
    assert math.isnan(float(window.mean()))
    assert int(window.skipped.numpy()) == 1


def test_reset_empties_the_window_and_the_skip_count():
    window = balance.BalanceWindow(2)
    for gf in (0.2, 0.4, 0.6):
        window.push(gf, 0.0, 1.0)
    window.push(1.0, 1.0, 1.0)
    window.reset()
    assert int(window.count.numpy()) == 0
    assert int(window.skipped.numpy()) == 0
    assert math.isnan(float(window.mean()))
    window.push(0.3, 0.0, 1.0)
    np.testing.assert_allclose(window.values(), [0.3], rtol=1e-6)


def test_push_works_inside_tf_function():
    window = balance.BalanceWindow(2)

    @tf.function
    def push(gf, df, dr):
        window.push(gf, df, dr)
        return window.mean()

    push(tf.constant(1.0), tf.constant(0.0), tf.constant(4.0))
    mean = push(tf.constant(2.0), tf.constant(2.0), tf.constant(2.0))  # skipped
    assert float(mean) == pytest.approx(0.25)
    mean = push(tf.constant(3.0), tf.constant(0.0), tf.constant(4.0))
    assert float(mean) == pytest.approx(0.5)
    assert int(window.skipped.numpy()) == 1


@pytest.mark.parametrize("capacity", [0, -1, 2.5, "3", None])
def test_capacity_must_be_a_positive_integer(capacity):
    with pytest.raises(ValueError, match="capacity") as info:
        balance.BalanceWindow(capacity)
    assert "br_window // br_interval" in str(info.value)


def test_numpy_integer_capacity_is_accepted():
    assert balance.BalanceWindow(np.int64(4)).capacity == 4


def test_push_value_stores_a_criterion_sample_as_it_is_and_skips_non_finite_ones():
    window = balance.BalanceWindow(3)
    kept = [bool(window.push_value(v)) for v in (0.25, float("nan"), 0.75, float("inf"), 1.0)]
    assert kept == [True, False, True, False, True]
    np.testing.assert_array_equal(window.values(), np.float32([0.25, 0.75, 1.0]))
    assert int(window.skipped.numpy()) == 2
    assert float(window.mean()) == pytest.approx(2.0 / 3.0, abs=1e-7)
    window.push_value(0.5)  # the ring drops the oldest
    np.testing.assert_array_equal(window.values(), np.float32([0.75, 1.0, 0.5]))


# --------------------------------------------------------------------------------- Criterion


def test_criterion_names_resolve_once_to_their_objects_and_others_are_refused():
    assert balance.criterion("br") is balance.BR and balance.criterion("ada") is balance.ADA
    assert balance.criterion(balance.ADA) is balance.ADA
    assert list(balance.CRITERIA) == ["br", "ada"]  # BR first: the default column readers try
    for bad in ("BR", "fake", None):
        with pytest.raises(ValueError, match=rf"balance_criterion={bad!r}: choose 'br'"):
            balance.criterion(bad, argument="balance_criterion")
    # SparseGAN(criterion=...) passes no argument name: the message names `criterion`, and
    # says what each choice is.
    with pytest.raises(ValueError) as refused:
        balance.criterion("fake")
    assert str(refused.value) == ("criterion='fake': choose 'br' (the balance ratio) or 'ada' "
                                  "(the share of reals D scores above 0).")


def test_criteria_carry_the_directions_and_the_names_runs_have_always_used():
    # BR grows D above B+ and has D-DST at the cap; ADA turns the directions round and has
    # none, and samples from the D steps. Their logs and CSV names are those of older runs.
    assert (balance.BR.grows_d_above, balance.BR.dst_at_cap, balance.BR.from_d_steps) == (
        True, True, False)
    assert (balance.ADA.grows_d_above, balance.ADA.dst_at_cap, balance.ADA.from_d_steps) == (
        False, False, True)
    assert (balance.BR.window_key, balance.ADA.window_key) == ("br", "ada_rt")
    assert balance.BR.log_path("W") == os.path.join("W", "br.csv")
    assert balance.ADA.log_path("W") == os.path.join("W", "ada.csv")
    assert balance.BR.log_columns == ("step", "gf", "df", "dr", "ratio", "kept")
    assert balance.ADA.log_columns == ("step", "share")


def test_a_criterions_log_row_is_the_logged_sample_in_float32():
    logs = {"br_gf": np.float32(0.3), "br_df": np.float32(0.1), "br_dr": np.float32(0.7),
            "br_kept": np.int32(1)}
    row = balance.BR.log_row(10, logs)
    ratio = (np.float32(0.3) - np.float32(0.1)) / (np.float32(0.7) - np.float32(0.1))
    assert row == {"step": 10, "gf": float(np.float32(0.3)), "df": float(np.float32(0.1)),
                   "dr": float(np.float32(0.7)), "ratio": float(ratio), "kept": 1}
    assert float(ratio) != (0.3 - 0.1) / (0.7 - 0.1)  # float32, as the window, not float64
    degenerate = balance.BR.log_row(3, {**logs, "br_dr": np.float32(0.1), "br_kept": 0})
    assert math.isinf(degenerate["ratio"]) and degenerate["kept"] == 0
    assert balance.BR.log_row(10, {"br": 0.5}) is None and balance.BR.log_row(10, None) is None
    assert balance.ADA.log_row(4, {"ada_sample": np.float32(0.3)}) == {
        "step": 4, "share": float(np.float32(0.3))}
    assert balance.ADA.log_row(4, logs) is None
    # Read back: BR keeps the kept samples' ratios, ADA every share.
    rows = [{"step": "10", "ratio": "0.5", "kept": "1"}, {"step": "20", "ratio": "inf",
                                                          "kept": "0"}]
    assert balance.BR.window_values(rows) == [(10, 0.5)]
    assert balance.ADA.window_values([{"step": "4", "share": "0.25"}]) == [(4, 0.25)]


def test_a_window_without_room_is_refused_naming_where_its_capacity_comes_from():
    with pytest.raises(ValueError) as refused:
        balance.BalanceWindow(0)
    assert str(refused.value) == ("BR window capacity (br_window // br_interval) must be a "
                                  "positive integer, got 0.")
