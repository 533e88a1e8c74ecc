"""Tests for adapt_tf.sparse.dst: exact drop/grow, schedules, SET/RigL, resize, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from adapt_tf.sparse import dst


def _np(masks):
    return [np.asarray(m) for m in masks]


def _count(masks):
    return int(sum(np.count_nonzero(np.asarray(m)) for m in masks))


def _random_layers(seed, shapes=((4, 6), (3, 3, 2, 5), (7,)), density=0.4):
    rng = np.random.default_rng(seed)
    masks = [(rng.random(s) < density).astype(np.float32) for s in shapes]
    kernels = [rng.normal(size=s).astype(np.float32) * m for s, m in zip(shapes, masks)]
    grads = [rng.normal(size=s).astype(np.float32) for s in shapes]
    return kernels, masks, grads


# ------------------------------------------------------------------ mask arithmetic


def test_drop_lowest_global_removes_exactly_the_smallest_magnitudes():
    scores = [np.array([[0.5, 0.1], [0.9, 0.0]], np.float32),
              np.array([0.2, 0.05, 0.7], np.float32)]
    masks = [np.array([[1, 1], [1, 0]], np.float32), np.array([1, 1, 0], np.float32)]
    new = dst.drop_lowest(scores, masks, 3)
    # active scores 0.5, 0.1, 0.9, 0.2, 0.05 -> drop 0.05, 0.1, 0.2 (inactive 0.0 / 0.7 untouched)
    np.testing.assert_array_equal(new[0], [[1, 0], [1, 0]])
    np.testing.assert_array_equal(new[1], [0, 0, 0])
    assert all(isinstance(m, tf.Tensor) and m.dtype == tf.float32 for m in new)
    assert [m.shape for m in new] == [(2, 2), (3,)]


def test_drop_lowest_breaks_ties_by_lower_flat_index():
    scores = [np.array([1.0, 1.0], np.float32), np.array([1.0, 2.0], np.float32)]
    masks = [np.ones(2, np.float32), np.ones(2, np.float32)]
    new = _np(dst.drop_lowest(scores, masks, 2))
    np.testing.assert_array_equal(np.concatenate(new), [0, 0, 1, 1])


def test_drop_lowest_layer_scope_uses_per_layer_counts():
    scores = [np.array([3.0, 1.0, 2.0], np.float32), np.array([0.1, 0.2, 0.3], np.float32)]
    masks = [np.ones(3, np.float32), np.ones(3, np.float32)]
    new = _np(dst.drop_lowest(scores, masks, [2, 1], scope="layer"))
    np.testing.assert_array_equal(new[0], [1, 0, 0])
    np.testing.assert_array_equal(new[1], [0, 1, 1])
    as_tensor = _np(dst.drop_lowest(scores, masks, tf.constant([2, 1]), scope="layer"))
    np.testing.assert_array_equal(np.concatenate(as_tensor), np.concatenate(new))


def test_grow_highest_activates_exactly_the_top_inactive_scores():
    grads = [np.array([[0.9, -0.8], [0.3, -0.7]], np.float32), np.array([0.6, -0.95], np.float32)]
    masks = [np.array([[1, 0], [0, 0]], np.float32), np.array([0, 1], np.float32)]
    new = _np(dst.grow_highest([np.abs(g) for g in grads], masks, 2))
    # inactive |grad|: 0.8, 0.3, 0.7, 0.6 -> grow 0.8 and 0.7; 0.9 / 0.95 are already active
    np.testing.assert_array_equal(new[0], [[1, 1], [0, 1]])
    np.testing.assert_array_equal(new[1], [0, 1])


def test_zero_counts_change_nothing():
    kernels, masks, grads = _random_layers(0)
    for new in (dst.drop_lowest([np.abs(k) for k in kernels], masks, 0),
                dst.grow_highest([np.abs(g) for g in grads], masks, 0)):
        for a, b in zip(new, masks):
            np.testing.assert_array_equal(a, b)


def test_changed_counts_dropped_and_grown_entries():
    old = [np.array([1, 1, 0, 0], np.float32)]
    new = [np.array([0, 1, 1, 1], np.float32)]
    assert [int(x) for x in dst.changed(old, new)] == [1, 2]


@pytest.mark.parametrize("compiled", [False, True])
def test_assign_masks_sets_masks_zeroes_kernels_and_counts_changes(compiled):
    kernels = [tf.Variable([[1.0, 2.0], [3.0, 0.0]]), tf.Variable([5.0, 0.0, 7.0])]
    masks = [tf.Variable([[1.0, 1.0], [1.0, 0.0]]), tf.Variable([1.0, 0.0, 1.0])]
    new = [np.array([[0, 1], [1, 1]], np.float32), np.array([1, 1, 0], np.float32)]
    fn = tf.function(dst.assign_masks) if compiled else dst.assign_masks
    dropped, grown = fn(kernels, masks, [tf.constant(n) for n in new])
    assert (int(dropped), int(grown)) == (2, 2)  # (0,0) and [2] dropped; (1,1) and [1] grown
    for mask, n in zip(masks, new):
        np.testing.assert_array_equal(mask.numpy(), n)
    np.testing.assert_array_equal(kernels[0].numpy(), [[0.0, 2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(kernels[1].numpy(), [5.0, 0.0, 0.0])


# ------------------------------------------------------------------------ schedules


def test_cosine_schedule_matches_hand_values():
    values = [float(dst.drop_fraction(s, 1000)) for s in (0, 500, 1000)]
    np.testing.assert_allclose(values, [0.5, 0.005 + 0.495 / 2, 0.005], rtol=1e-12)
    quarter = 0.005 + 0.495 * (1 + math.cos(math.pi / 4)) / 2
    assert float(dst.drop_fraction(250, 1000)) == pytest.approx(quarter, rel=1e-12)


def test_linear_and_constant_schedules_match_hand_values():
    linear = [float(dst.drop_fraction(s, 100, initial=0.4, final=0.0, schedule="linear"))
              for s in (0, 25, 100)]
    np.testing.assert_allclose(linear, [0.4, 0.3, 0.0], atol=1e-12)
    assert float(dst.drop_fraction(70, 100, initial=0.3, schedule="constant")) == 0.3


def test_is_update_step_follows_interval_last_step_and_end_step():
    rule = dst.RigL(interval=500)
    assert [rule.is_update_step(s, 2000) for s in (0, 499, 500, 1000, 1500, 2000)] == \
        [False, False, True, True, True, False]
    assert not dst.SET(interval=10, end_step=20).is_update_step(30, 100)
    assert dst.SET(interval=10, end_step=20).is_update_step(20, 100)
    # The one cadence rule, which the rules (and the ADAPT controller) use.
    assert [dst.is_update_step(s, interval=500, total_steps=2000)
            for s in (0, 499, 500, 1000, 1500, 2000)] == [False, False, True, True, True, False]


# ----------------------------------------------------------------------------- rules


@pytest.mark.parametrize("rule_cls", [dst.SET, dst.RigL])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_rules_keep_the_active_count_exactly(rule_cls, scope):
    kernels, masks, grads = _random_layers(1)
    rule = rule_cls(scope=scope, schedule="constant", drop_fraction=0.4)
    new = rule.update(kernels, masks, grads, step=500, total_steps=1000)
    if scope == "global":
        assert _count(new) == _count(masks)
    else:
        assert [_count([n]) for n in new] == [_count([m]) for m in masks]
    n_dropped, n_grown = dst.changed(masks, new)
    assert int(n_dropped) == int(n_grown) > 0


@pytest.mark.parametrize("rule_cls", [dst.SET, dst.RigL])
def test_zero_drop_fraction_changes_nothing(rule_cls):
    kernels, masks, grads = _random_layers(2)
    rule = rule_cls(drop_fraction=0.0, final_fraction=0.0)
    for a, b in zip(rule.update(kernels, masks, grads, step=500, total_steps=1000), masks):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("growth", ["gradient", "random"])
def test_growth_only_where_mask_is_zero_after_drop_and_grown_weights_are_zero(growth):
    kernels, masks, grads = _random_layers(3)
    nnz = _count(masks)
    n = math.floor(0.3 * nnz)
    dropped = _np(dst.drop_lowest([np.abs(k) for k in kernels], masks, n))
    new = _np(dst.prune_and_regrow(kernels, masks, grads, 0.3, growth=growth, seed=4, step=7))
    assert all(np.all(b >= a) for a, b in zip(dropped, new))  # growth only adds
    assert _count(new) - _count(dropped) == n
    for kernel, old, mask in zip(kernels, masks, new):
        masked = kernel * mask
        assert np.all(masked[(mask == 1) & (old == 0)] == 0.0)  # newly grown start at 0
        assert np.all(masked[mask == 0] == 0.0)


def test_rigl_drops_floor_fraction_and_grows_top_gradients():
    kernels = [np.array([[0.3, -0.1, 0.0], [0.0, 0.5, 0.0]], np.float32)]
    masks = [np.array([[1, 1, 0], [0, 1, 0]], np.float32)]
    grads = [np.array([[0.0, 0.0, 0.2], [-0.9, 0.0, 0.4]], np.float32)]
    rule = dst.RigL(drop_fraction=0.5, schedule="constant")
    new = _np(rule.update(kernels, masks, grads, step=1, total_steps=10))
    # floor(0.5 * 3) = 1: drop |-0.1|; grow the largest inactive |grad| = 0.9
    np.testing.assert_array_equal(new[0], [[1, 0, 0], [1, 1, 0]])


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_rigl_ranks_by_magnitude_not_by_sign(scope):
    # Large negative weights and gradients: ranking signed values instead of |w| / |grad|
    # drops -0.8 and grows a zero gradient.
    kernels = [np.array([[0.3, -0.8, 0.0], [0.0, 0.5, -0.05]], np.float32),
               np.array([-0.7, 0.0, 0.2, 0.0], np.float32)]
    masks = [np.array([[1, 1, 0], [0, 1, 1]], np.float32), np.array([1, 0, 1, 0], np.float32)]
    grads = [np.array([[0.0, 0.0, -0.9], [0.6, 0.0, 0.0]], np.float32),
             np.array([0.0, -0.85, 0.0, 0.1], np.float32)]
    rule = dst.RigL(drop_fraction=0.5, schedule="constant", scope=scope)
    new = _np(rule.update(kernels, masks, grads, step=1, total_steps=10))
    # Global: floor(0.5 * 6) = 3 dropped, |w| 0.05, 0.2, 0.3; the largest inactive |grad| after
    # the drop are 0.9, 0.85, 0.6 (not 0.1 or the zeros). Per layer, the same entries: layer 0
    # drops 2 (|w| 0.05, 0.3) and grows |grad| 0.9, 0.6; layer 1 drops |w| 0.2, grows 0.85.
    np.testing.assert_array_equal(new[0], [[0, 1, 1], [1, 1, 0]])
    np.testing.assert_array_equal(new[1], [1, 1, 0, 0])


def test_resize_shrinks_by_magnitude_keeping_large_negative_weights():
    kernels = [np.array([0.4, -0.95, 0.0], np.float32),
               np.array([[0.9, -0.05], [-0.3, 0.0]], np.float32)]
    masks = [np.array([1, 1, 0], np.float32), np.array([[1, 1], [1, 0]], np.float32)]
    new = _np(dst.resize(kernels, masks, 3))
    # keep |w| 0.95, 0.9, 0.4; drop -0.05 and -0.3
    np.testing.assert_array_equal(new[0], [1, 1, 0])
    np.testing.assert_array_equal(new[1], [[1, 0], [0, 0]])


def test_just_dropped_weights_can_be_regrown():
    kernels = [np.array([0.1, 0.9, 0.0], np.float32)]
    masks = [np.array([1, 1, 0], np.float32)]
    grads = [np.array([5.0, 0.0, 1.0], np.float32)]
    new = _np(dst.prune_and_regrow(kernels, masks, grads, 0.5, growth="gradient"))
    np.testing.assert_array_equal(new[0], [1, 1, 0])  # 0.1 dropped, regrown by |grad| = 5


def test_set_masks_depend_only_on_seed_and_step():
    kernels, masks, grads = _random_layers(5, shapes=((16, 16), (8, 8)))

    def run(seed, step):
        rule = dst.SET(seed=seed, schedule="constant")
        return np.concatenate([m.numpy().ravel()
                               for m in rule.update(kernels, masks, None, step=step,
                                                    total_steps=1000)])

    np.testing.assert_array_equal(run(0, 500), run(0, 500))
    assert np.any(run(0, 500) != run(1, 500))
    assert np.any(run(0, 500) != run(0, 501))


# ---------------------------------------------------------------------------- resize


def test_resize_shrinks_to_target_keeping_the_largest_magnitudes():
    kernels = [np.array([0.4, -0.2, 0.0], np.float32),
               np.array([[0.9, -0.05], [0.3, 0.0]], np.float32)]
    masks = [np.array([1, 1, 0], np.float32), np.array([[1, 1], [1, 0]], np.float32)]
    new = _np(dst.resize(kernels, masks, 2))
    np.testing.assert_array_equal(new[0], [1, 0, 0])
    np.testing.assert_array_equal(new[1], [[1, 0], [0, 0]])


def test_resize_grows_to_target_by_gradient_or_at_random():
    kernels, masks, grads = _random_layers(6)
    target = dst.target_count(masks, 0.75)
    by_grad = _np(dst.resize(kernels, masks, target, grads=grads))
    assert _count(by_grad) == target
    grown = np.concatenate([(b - m).ravel() for b, m in zip(by_grad, masks)]) == 1
    inactive_grad = np.concatenate([np.abs(g)[m == 0] for g, m in zip(grads, masks)])
    grown_grad = np.concatenate([np.abs(g).ravel() for g in grads])[grown]
    assert grown_grad.min() >= np.sort(inactive_grad)[::-1][grown.sum() - 1]
    at_random = dst.resize(kernels, masks, target, growth="random", seed=3, step=2)
    assert _count(at_random) == target
    assert all(np.all(np.asarray(r) >= m) for r, m in zip(at_random, masks))


def test_resize_shrinks_without_grads_and_target_count_rounds():
    kernels, masks, _ = _random_layers(7)
    assert _count(dst.resize(kernels, masks, 5)) == 5
    total = sum(m.size for m in masks)
    assert dst.target_count(masks, 0.5) == round(0.5 * total)
    assert dst.target_count(masks, 1.0) == total


def test_resize_reaches_both_ends_and_random_growth_defaults_to_seed_and_step_zero():
    kernels, masks, grads = _random_layers(9)
    total = sum(m.size for m in masks)
    assert _count(dst.resize(kernels, masks, 0)) == 0
    assert _count(dst.resize(kernels, masks, total, grads=grads)) == total
    target = _count(masks) + 3
    default = _np(dst.resize(kernels, masks, target, growth="random"))
    explicit = _np(dst.resize(kernels, masks, target, growth="random", seed=0, step=0))
    for a, b in zip(default, explicit):
        np.testing.assert_array_equal(a, b)
    other = _np(dst.resize(kernels, masks, target, growth="random", seed=1, step=0))
    assert any(not np.array_equal(a, b) for a, b in zip(default, other))


def test_compiled_resize_without_grads_fails_when_it_must_grow():
    # With a traced target the count is unknown until run time: a runtime assertion, not a
    # silent shrink-only resize.
    resize = tf.function(lambda target: dst.resize([np.ones(4, np.float32)], _ONE_OF_FOUR,
                                                   target))
    assert _count(resize(tf.constant(1))) == 1
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="resize must grow by \\|grad\\| but grads is None"):
        resize(tf.constant(3))


# -------------------------------------------------------------------------- tf.function


def test_compiled_counts_and_steps_do_not_retrace():
    kernels, masks, grads = _random_layers(8)
    traces = []

    @tf.function
    def drop(n):
        traces.append("drop")
        return dst.drop_lowest([np.abs(k) for k in kernels], masks, n)

    counts = [_count(drop(tf.constant(n))) for n in (1, 4, 9)]
    assert counts == [_count(masks) - n for n in (1, 4, 9)]
    assert traces == ["drop"]

    rule = dst.RigL(interval=10)

    @tf.function
    def update(step):
        traces.append("update")
        return rule.update(kernels, masks, grads, step=step, total_steps=tf.constant(100))

    for step in (10, 20, 30):
        assert _count(update(tf.constant(step))) == _count(masks)
    assert traces == ["drop", "update"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds the entries available"):
        drop(tf.constant(10_000))


# ----------------------------------------------------------------------------- errors


_K = [np.ones((2, 2), np.float32)]  # one dense 2x2 layer: 4 active, 0 inactive
_M = [np.ones((2, 2), np.float32)]
_ONE_OF_FOUR = [np.array([1, 0, 0, 0], np.float32)]

_BAD_INPUTS = {
    "scope": (lambda: dst.drop_lowest(_K, _M, 1, scope="row"),
              "scope='row' is unknown; use one of global, layer"),
    "lengths": (lambda: dst.drop_lowest(_K * 2, _M, 1),
                "scores has 2 tensors but masks has 1; pass one per layer, in the same order\\."),
    "masks_empty": (lambda: dst.drop_lowest(_K, [], 1), "masks is empty"),
    "generator": (lambda: dst.drop_lowest((k for k in _K), _M, 1),
                  "scores must be a list of tensors \\(one per layer\\), got <class 'generator'>"),
    "n_not_scalar": (lambda: dst.drop_lowest(_K, _M, [1]),
                     r"n=\[1\] must be a whole number of entries to drop"),
    "shapes": (lambda: dst.drop_lowest([np.ones(3)], [np.ones(4)], 1),
               r"scores\[0\] has shape \(3,\)"),
    "empty": (lambda: dst.drop_lowest([], [], 1), "scores is empty"),
    "not_list": (lambda: dst.drop_lowest(np.ones(3), np.ones(3), 1), "must be a list of tensors"),
    "negative_n": (lambda: dst.drop_lowest(_K, _M, -1),
                   "n=-1 is negative; the number of entries to drop must be >= 0\\."),
    "unknown_shape": (lambda: tf.function(
        lambda s: dst.drop_lowest([s], [s], 1),
        input_signature=[tf.TensorSpec([None], tf.float32)]).get_concrete_function(),
        r"scores\[0\] has shape \(None,\); static shapes are required"),
    "n_too_large": (lambda: dst.drop_lowest(_K, _M, 5),
                    "n=5 exceeds the 4 entries available to drop"),
    "grow_too_many": (lambda: dst.grow_highest(_K, _M, 1),
                      "n=1 exceeds the 0 entries available to grow"),
    "fractional_n": (lambda: dst.drop_lowest(_K, _M, 1.5), "n=1.5 must be a whole number"),
    "layer_counts": (lambda: dst.drop_lowest(_K, _M, [1, 1], scope="layer"),
                     "n has 2 counts for 1 layers"),
    "schedule": (lambda: dst.drop_fraction(1, 10, schedule="step"),
                 "schedule='step' is unknown; use one of cosine, linear, constant"),
    "initial": (lambda: dst.drop_fraction(1, 10, initial=1.5),
                r"initial=1.5 must be a number in \[0, 1\]"),
    "total_steps": (lambda: dst.drop_fraction(1, 0), "total_steps=0 must be positive"),
    "step": (lambda: dst.drop_fraction(11, 10), r"step=11 must lie in \[0, total_steps=10\]"),
    "fraction": (lambda: dst.prune_and_regrow(_K, _M, None, 1.5),
                 r"fraction=1.5 must be a number in \[0, 1\]"),
    "growth": (lambda: dst.prune_and_regrow(_K, _M, None, 0.5, growth="momentum"),
               "growth='momentum' is unknown"),
    "no_grads": (lambda: dst.prune_and_regrow(_K, _M, None, 0.5),
                 "grads=None but growth='gradient' ranks inactive weights by \\|grad\\|; pass "
                 "the dense gradients or use growth='random'\\."),
    "grads_shapes": (lambda: dst.prune_and_regrow(_K, _M, [np.ones(3)], 0.5),
                     r"grads\[0\] has shape \(3,\) but masks\[0\] has \(2, 2\)"),
    "rigl_no_grads": (lambda: dst.RigL().update(_K, _M, None, step=1, total_steps=2),
                      "grads=None but growth='gradient'"),
    "rule_fraction": (lambda: dst.SET(drop_fraction=-0.1),
                      r"drop_fraction=-0.1 must be a number in \[0, 1\]"),
    "rule_schedule": (lambda: dst.SET(schedule="exp"), "schedule='exp' is unknown"),
    "interval": (lambda: dst.RigL(interval=0), "interval must be a positive integer, got 0"),
    "rule_scope": (lambda: dst.RigL(scope="row"), "scope='row' is unknown"),
    "end_step": (lambda: dst.RigL(end_step=0), "end_step must be a positive integer, got 0"),
    "target_density": (lambda: dst.resize(_K, _M, 0.5),
                       r"target=0.5 must be a whole count in \[0, 4\]; convert a density"),
    "target_large": (lambda: dst.resize(_K, _M, 5), r"target=5 must be a whole count in \[0, 4\]"),
    "resize_no_grads": (lambda: dst.resize([np.ones(4)], _ONE_OF_FOUR, 3),
                        "grads=None but resize must grow 2 weights"),
    "resize_growth": (lambda: dst.resize(_K, _M, 2, growth="momentum"),
                      "growth='momentum' is unknown"),
    "resize_one_without_grads": (lambda: dst.resize([np.ones(4)], _ONE_OF_FOUR, 2),
                                 "grads=None but resize must grow 1 weights by \\|grad\\|; "
                                 "pass the dense gradients or use growth='random'"),
    "target_not_scalar": (lambda: dst.resize(_K, _M, [1, 2]),
                          r"target=\[1, 2\] must be a whole count"),
    "density_above_one": (lambda: dst.target_count(_M, 1.5),
                          r"density must be in \(0, 1\], got 1.5"),
    "resize_shapes": (lambda: dst.resize([np.ones(3)], _M, 1),
                      r"kernels\[0\] has shape \(3,\) but masks\[0\] has \(2, 2\)"),
    "target_count_not_list": (lambda: dst.target_count(np.ones(3), 0.5),
                              "masks must be a list of tensors"),
    "density_zero": (lambda: dst.target_count(_M, 0.0),
                     r"density must be in \(0, 1\], got 0.0"),
    "density_bool": (lambda: dst.target_count(_M, True),
                     r"density must be a real number in \(0, 1\], got True"),
    "changed_shapes": (lambda: dst.changed(_M, [np.ones(3)]),
                       r"old_masks\[0\] has shape \(2, 2\) but new_masks\[0\] has \(3,\)"),
    "layer_counts_shape": (lambda: dst.drop_lowest(_K * 2, _M * 2, np.ones((2, 1), np.int32),
                                                   scope="layer"),
                           r"n has shape \(2, 1\); scope='layer' needs one count per layer, "
                           r"shape \[2\]"),
    "layer_counts_length": (lambda: dst.drop_lowest(_K * 2, _M * 2, tf.constant([1, 1, 1]),
                                                    scope="layer"),
                            r"n has shape \(3,\); scope='layer' needs one count per layer"),
    "layer_counts_scalar": (lambda: dst.drop_lowest(_K, _M, 1, scope="layer"),
                            "n=1 must be a list of per-layer counts for scope='layer'"),
    "rule_final_fraction": (lambda: dst.RigL(final_fraction=1.5),
                            r"final_fraction=1.5 must be a number in \[0, 1\]"),
    "interval_float": (lambda: dst.RigL(interval=1.5),
                       "interval must be a positive integer, got 1.5"),
    "interval_bool": (lambda: dst.SET(interval=True),
                      "interval must be a positive integer, got True"),
    "final": (lambda: dst.drop_fraction(1, 10, final=-0.5),
              r"final=-0.5 must be a number in \[0, 1\]"),
    "regrow_shapes": (lambda: dst.prune_and_regrow([np.ones(3)], _M, None, 0.5, growth="random"),
                      r"kernels\[0\] has shape \(3,\) but masks\[0\] has \(2, 2\)"),
    "fraction_not_scalar": (lambda: dst.prune_and_regrow(_K, _M, None, [0.5], growth="random"),
                            r"fraction=\[0.5\] must be a number in \[0, 1\]"),
    "regrow_scope": (lambda: dst.prune_and_regrow(_K, _M, None, 0.5, growth="random",
                                                  scope="row"),
                     "scope='row' is unknown; use one of global, layer"),
}


@pytest.mark.parametrize("case", sorted(_BAD_INPUTS))
def test_bad_input_raises_value_error_naming_the_value(case):
    call, message = _BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------- references by hand (NumPy)


def _reference_drop_grow(magnitudes, masks, scores, n):
    """Global drop of the n smallest active magnitudes, then growth of the n largest scores
    among the entries inactive after the drop; ties to the lower flat index."""
    mag = np.concatenate([np.ravel(m) for m in magnitudes])
    active = np.concatenate([np.ravel(m) for m in masks]) != 0
    score = np.concatenate([np.ravel(s) for s in scores])
    index = np.arange(mag.size)
    order = np.lexsort((index, mag))  # by magnitude, then index
    drop = [i for i in order if active[i]][:n]
    kept = active.copy()
    kept[drop] = False
    order = np.lexsort((index, -score))  # by score descending, then index
    grow = [i for i in order if not kept[i]][:n]
    kept[grow] = True
    out, start = [], 0
    for m in masks:
        out.append(kept[start:start + np.size(m)].reshape(np.shape(m)).astype(np.float32))
        start += np.size(m)
    return out


def _documented_random_scores(shapes, seed, step):
    """SET's growth scores as prune_and_regrow documents them: uniform in [0.1, 1.1), stateless
    from the Philox key of (seed, layer index) folded with step."""
    scores = []
    for index, shape in enumerate(shapes):
        key = tf.random.experimental.stateless_fold_in(
            tf.constant([seed, index], tf.int64), tf.constant(step, tf.int64), alg="philox")
        scores.append(tf.random.stateless_uniform(shape, key, 0.1, 1.1, alg="philox").numpy())
    return scores


def test_set_grows_the_largest_documented_random_scores():
    kernels, masks, _ = _random_layers(11, shapes=((6, 5), (4, 4)), density=0.5)
    shapes = [m.shape for m in masks]
    scores = _documented_random_scores(shapes, seed=3, step=40)
    assert all(np.all((s >= 0.1) & (s < 1.1)) for s in scores)
    n = math.floor(0.3 * _count(masks))
    expected = _reference_drop_grow([np.abs(k) for k in kernels], masks, scores, n)
    rule = dst.SET(drop_fraction=0.3, schedule="constant", seed=3)
    new = _np(rule.update(kernels, masks, None, step=40, total_steps=100))
    for a, b in zip(new, expected):
        np.testing.assert_array_equal(a, b)


def _reference_drop_then_regrow_per_layer(magnitudes, masks, scores, n):
    """The official `--growth-G random` after a global magnitude death, with exact counts:
    the global drop of `_reference_drop_grow`, then each layer grows, by its own scores
    (largest first, ties to the lower index), exactly as many entries as it lost."""
    mag = np.concatenate([np.ravel(m) for m in magnitudes])
    active = np.concatenate([np.ravel(m) for m in masks]) != 0
    order = np.lexsort((np.arange(mag.size), mag))
    active[[i for i in order if active[i]][:n]] = False
    out, start = [], 0
    for mask, score in zip(masks, scores):
        kept = active[start:start + np.size(mask)].copy()
        lost = np.count_nonzero(mask) - np.count_nonzero(kept)
        order = np.lexsort((np.arange(kept.size), -np.ravel(score)))
        kept[[i for i in order if not kept[i]][:lost]] = True
        out.append(kept.reshape(np.shape(mask)).astype(np.float32))
        start += np.size(mask)
    return out


def test_set_random_per_layer_regrows_in_each_layer_the_count_it_dropped():
    kernels, masks, _ = _random_layers(12, shapes=((6, 5), (4, 4), (9,)), density=0.5)
    scores = _documented_random_scores([m.shape for m in masks], seed=3, step=40)
    n = math.floor(0.4 * _count(masks))
    expected = _reference_drop_then_regrow_per_layer([np.abs(k) for k in kernels], masks,
                                                     scores, n)
    rule = dst.SET(drop_fraction=0.4, schedule="constant", seed=3, growth="random_per_layer")
    new = _np(rule.update(kernels, masks, None, step=40, total_steps=100))
    for a, b, before in zip(new, expected, masks):
        np.testing.assert_array_equal(a, b)
        assert np.count_nonzero(a) == np.count_nonzero(before)  # per-layer counts kept
    # The default (global) growth moves counts between layers on this example.
    default = _np(dst.SET(drop_fraction=0.4, schedule="constant", seed=3).update(
        kernels, masks, None, step=40, total_steps=100))
    assert [np.count_nonzero(m) for m in default] != [np.count_nonzero(m) for m in masks]
    assert dst.SET().growth == "random" and dst.RigL().growth == "gradient"
    with pytest.raises(ValueError, match="growth='gradient' is unknown"):
        dst.SET(growth="gradient")


def test_is_update_step_with_interval_one_updates_from_the_first_iteration():
    rule = dst.RigL(interval=1)
    assert [rule.is_update_step(s, 3) for s in (0, 1, 2, 3)] == [False, True, True, False]


def test_resize_shrinks_a_mostly_dense_mask_far():
    # nnz = 5 of 6 down to 1: the 4 dropped entries outnumber the 1 inactive one. With grads
    # (as the ADAPT callback always passes them) and without.
    kernels = [np.array([[0.5, -0.1, 0.3], [0.0, -0.9, 0.2]], np.float32)]
    masks = [np.array([[1, 1, 1], [0, 1, 1]], np.float32)]
    grads = [np.array([[0.1, 0.2, 0.3], [5.0, 0.4, 0.5]], np.float32)]
    for kwargs in ({}, {"grads": grads}, {"growth": "random"}):
        np.testing.assert_array_equal(_np(dst.resize(kernels, masks, 1, **kwargs))[0],
                                      [[0, 0, 0], [0, 1, 0]])  # keep |-0.9|


def test_end_step_one_allows_only_the_first_update():
    rule = dst.SET(interval=1, end_step=1)
    assert [rule.is_update_step(s, 10) for s in (1, 2)] == [True, False]


def test_rule_fraction_follows_its_own_initial_and_final_fractions():
    rule = dst.RigL(drop_fraction=0.4, final_fraction=0.1)  # cosine
    values = [float(rule.fraction(s, 100)) for s in (0, 50, 100)]
    np.testing.assert_allclose(values, [0.4, 0.25, 0.1], rtol=1e-12)


def test_schedules_over_a_single_step():
    assert float(dst.drop_fraction(0, 1, initial=0.4, final=0.1, schedule="linear")) == 0.4
    assert float(dst.drop_fraction(1, 1, initial=0.4, final=0.1, schedule="linear")) == \
        pytest.approx(0.1, abs=1e-15)
    assert float(dst.drop_fraction(1, 1, initial=0.4, final=0.1)) == pytest.approx(0.1, abs=1e-15)


def test_random_regrowth_defaults_to_seed_and_step_zero():
    kernels, masks, _ = _random_layers(12, shapes=((8, 8),), density=0.5)
    default = _np(dst.prune_and_regrow(kernels, masks, None, 0.5, growth="random"))
    explicit = _np(dst.prune_and_regrow(kernels, masks, None, 0.5, growth="random", seed=0,
                                        step=0))
    np.testing.assert_array_equal(default[0], explicit[0])
    for seed, step in ((1, 0), (0, 1)):
        other = _np(dst.prune_and_regrow(kernels, masks, None, 0.5, growth="random", seed=seed,
                                         step=step))
        assert not np.array_equal(default[0], other[0])


def test_drop_fraction_one_replaces_every_active_weight_by_the_top_gradients():
    kernels, masks, grads = _random_layers(13)
    nnz = _count(masks)
    expected = _reference_drop_grow([np.abs(k) for k in kernels], masks,
                                    [np.abs(g) for g in grads], nnz)
    new = _np(dst.prune_and_regrow(kernels, masks, grads, 1.0))
    for a, b in zip(new, expected):
        np.testing.assert_array_equal(a, b)
    assert _count(new) == nnz


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_integer_fractions_and_steps_give_float64_fractions(schedule):
    # 0 and 1 are fractions too; Python ints must not make int64 tensors.
    value = dst.drop_fraction(5, 10, initial=1, final=0, schedule=schedule)
    assert value.dtype == tf.float64
    assert float(value) == pytest.approx({"cosine": 0.5, "linear": 0.5, "constant": 1.0}[schedule],
                                         abs=1e-15)
    kernels, masks, grads = _random_layers(14)
    assert _count(dst.prune_and_regrow(kernels, masks, grads, 1)) == _count(masks)


def test_signed_scores_rank_in_float_order_with_negative_zero_below_zero():
    # drop_lowest / grow_highest accept any finite scores, not only magnitudes.
    scores = [np.array([-1.0, -2.0, 0.5, -0.25], np.float32)]
    none = [np.zeros(4, np.float32)]
    np.testing.assert_array_equal(_np(dst.grow_highest(scores, none, 2))[0], [0, 0, 1, 1])
    every = [np.ones(4, np.float32)]
    np.testing.assert_array_equal(_np(dst.drop_lowest(scores, every, 2))[0], [0, 0, 1, 1])
    zeros = [np.array([0.0, -0.0, 0.0], np.float32)]
    np.testing.assert_array_equal(_np(dst.drop_lowest(zeros, [np.ones(3, np.float32)], 1))[0],
                                  [1, 0, 1])
    np.testing.assert_array_equal(_np(dst.grow_highest(zeros, [np.zeros(3, np.float32)], 2))[0],
                                  [1, 0, 1])


def test_compiled_counts_are_checked_when_only_the_count_is_static():
    # Masks passed into a tf.function: the active count is known only at run time.
    scores = [np.array([0.3, 0.1, 0.2, 0.4], np.float32)]
    drop = tf.function(lambda mask, n: dst.drop_lowest(scores, [mask], n))
    mask = tf.constant([1.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(drop(mask, 2)[0].numpy(), [0, 0, 0, 1])  # Python count
    with pytest.raises(tf.errors.InvalidArgumentError, match="n to drop exceeds the entries"):
        drop(mask, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="n to drop must be >= 0"):
        drop(mask, tf.constant(-1))
