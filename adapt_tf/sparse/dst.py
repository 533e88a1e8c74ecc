"""Dynamic sparse training: drop/grow mask arithmetic, schedules, rules and resizing.

Layer 1 of docs/INTERNALS.md: pure TensorFlow functions over lists of same-shaped tensors
(NumPy arrays and variables are accepted; tf tensors are returned). Every rule returns new
float32 0/1 masks; `assign_masks` is the one function that writes variables (the masks, and the
kernels multiplied by them), so that a caller's `tf.function` holds the whole update.

Provenance: ADAPT's `sparselearning/core.py` (`Masking.truncate_weights`,
`global_magnitude_death`, `global_gradient_growth`, `global_random_growth`, `CosineDecay`),
itself built on ITOP's sparselearning core; see docs/ALGORITHM.md §3, §5 and §12.

Selection is exact. "Drop n" deactivates exactly n active entries and "grow n" activates
exactly n inactive ones (the official code thresholds with `>=`, so ties can move a few extra
weights). Ties are broken deterministically: the entry with the lower flat index (layers in list
order, then row-major within a layer) is taken first. Scores are compared as float32 and must
be finite; -0.0 ranks just below +0.0.

Everything runs inside `tf.function` with counts, fractions and steps given as tensors, without
retracing when their values change. Count checks that cannot be decided while tracing become
`tf.debugging` assertions (`tf.errors.InvalidArgumentError` at run time); eagerly they are
`ValueError`s. Counts are int32, so at most 2**31 - 1 masked entries in one call. The
selection has data-dependent shapes: use a plain `tf.function`, not `jit_compile=True`. One
global RigL or SET update over 4.3 M weights (SNGAN-CIFAR G) takes about 0.06-0.1 s on a 2-core
CPU: two exact radix selections, no sort and no large top_k.

How callers use it:

* G-DST (SDST and ADAPT): when `rule.is_update_step(step, total_steps)`,
  `assign_masks(kernels, masks, rule.update(kernels, masks, grads, step=step,
  total_steps=total_steps))` sets the new masks and multiplies the kernels by them. Weights
  grown at positions that were inactive are therefore exactly 0 (the kernel is 0 outside the
  old mask); a weight dropped and regrown in the same update keeps its value, as in the
  official code. Zero the EMA of G the same way.
* ADAPT density move of D by +-delta: `resize(kernels, masks, target_count(masks, d_new),
  grads=grads)`; shrinking is a global magnitude prune, growing a global |grad| growth.
* Strict-mode D-DST at d_max: `prune_and_regrow(kernels, masks, grads,
  drop_fraction(s, S), growth="gradient")` with s = iteration * n_dis and S = max_iter * n_dis
  (only the ratio s / S matters).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from adapt_tf import checks

SCOPES = ("global", "layer")
GROWTHS = ("gradient", "random")
# SET's growths: global random scores (`global_random`), or after a global drop each layer
# regrowing at random the count it lost (the official `--growth-G random`, that flag's default).
SET_GROWTHS = ("random", "random_per_layer")
SCHEDULES = ("cosine", "linear", "constant")

_DIGITS = 1 << 16  # radix of the two-pass selection over 32-bit keys
_RANDOM_MIN, _RANDOM_MAX = 0.1, 1.1  # official global_random_growth: rand + 0.1


# ----------------------------------------------------------------------------- validation


def _check_choice(value: str, choices: Sequence[str], name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is unknown; use one of {', '.join(choices)}.")


def _check_fraction(value: Any, name: str) -> None:
    static = tf.get_static_value(value)
    if static is None:
        return
    if np.ndim(static) != 0 or not 0.0 <= float(static) <= 1.0:
        raise ValueError(f"{name}={static!r} must be a number in [0, 1].")


def _float64(value: Any) -> tf.Tensor:
    """Python numbers convert straight to float64 (tf.cast would round through float32)."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return tf.cast(value, tf.float64)
    return tf.convert_to_tensor(np.asarray(value, np.float64))


def _tensor_list(values: Sequence[Any], name: str) -> list[tf.Tensor]:
    if isinstance(values, (tf.Tensor, np.ndarray)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a list of tensors (one per layer), got {type(values)}.")
    if not values:
        raise ValueError(f"{name} is empty; pass at least one tensor.")
    tensors = [tf.convert_to_tensor(v) for v in values]
    for i, t in enumerate(tensors):
        if not t.shape.is_fully_defined():
            raise ValueError(f"{name}[{i}] has shape {t.shape}; static shapes are required.")
    return tensors


def _paired(first: Sequence[Any], second: Sequence[Any],
            names: tuple[str, str]) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
    a, b = _tensor_list(first, names[0]), _tensor_list(second, names[1])
    if len(a) != len(b):
        raise ValueError(f"{names[0]} has {len(a)} tensors but {names[1]} has {len(b)}; "
                         "pass one per layer, in the same order.")
    for i, (x, y) in enumerate(zip(a, b)):
        if x.shape != y.shape:
            raise ValueError(f"{names[0]}[{i}] has shape {x.shape} but {names[1]}[{i}] has "
                             f"{y.shape}; they must match.")
    return a, b


def _checked_count(n: Any, available: tf.Tensor, what: str) -> tf.Tensor:
    """n as an int32 scalar, validated against 0 <= n <= available."""
    static = tf.get_static_value(n)
    if static is not None:
        if np.ndim(static) != 0 or not float(static).is_integer():
            raise ValueError(f"n={static!r} must be a whole number of entries to {what}.")
        if static < 0:
            raise ValueError(f"n={static} is negative; the number of entries to {what} "
                             "must be >= 0.")
    n = tf.cast(n, tf.int32)
    static_available = tf.get_static_value(available)
    if static is not None and static_available is not None:
        if static > static_available:
            raise ValueError(f"n={static} exceeds the {static_available} entries available "
                             f"to {what}; lower n.")
        return n
    checks = [tf.debugging.assert_non_negative(n, message=f"n to {what} must be >= 0"),
              tf.debugging.assert_less_equal(
                  n, available, message=f"n to {what} exceeds the entries available")]
    with tf.control_dependencies(checks):
        return tf.identity(n)


def _layer_counts(n: Any, scope: str, num_layers: int) -> list[Any]:
    _check_choice(scope, SCOPES, "scope")
    if scope == "global":
        return [n]
    if isinstance(n, (tf.Tensor, np.ndarray)):
        n = tf.convert_to_tensor(n)
        if n.shape.rank != 1 or n.shape[0] != num_layers:
            raise ValueError(f"n has shape {n.shape}; scope='layer' needs one count per layer, "
                             f"shape [{num_layers}].")
        return tf.unstack(n, num=num_layers)
    if not isinstance(n, Sequence):
        raise ValueError(f"n={n!r} must be a list of per-layer counts for scope='layer'.")
    if len(n) != num_layers:
        raise ValueError(f"n has {len(n)} counts for {num_layers} layers; pass one per layer.")
    return list(n)


# ------------------------------------------------------------------------ exact selection


def _order_keys(scores: tf.Tensor) -> tf.Tensor:
    """[N] float -> [N] int32 whose signed order is the float32 order (-0.0 just below +0.0)."""
    bits = tf.bitcast(tf.cast(scores, tf.float32), tf.int32)
    # Negative floats order by descending magnitude bits: flip all but the sign bit.
    flip = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 31), 0x7FFFFFFF)
    return tf.bitwise.bitwise_xor(bits, flip)


def _radix_pass(digits: tf.Tensor, eligible: tf.Tensor | None,
                k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Digit of the k-th largest eligible entry, and k's rank within that digit's bucket."""
    if eligible is not None:
        digits = tf.where(eligible, digits, _DIGITS)  # bincount skips values >= maxlength
    hist = tf.math.bincount(digits, minlength=_DIGITS, maxlength=_DIGITS)
    at_or_above = tf.cumsum(hist, reverse=True)
    digit = tf.reduce_sum(tf.cast(at_or_above >= k, tf.int32)) - 1
    return digit, k - (at_or_above[digit] - hist[digit])


def _select_largest(keys: tf.Tensor, eligible: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """[N] bool: exactly k eligible entries with the largest keys, ties to the lower index.

    Two 16-bit radix passes find the k-th largest key exactly in O(N) (top_k with k in the
    hundreds of thousands is several times slower on CPU); requires k <= sum(eligible).
    """
    high = tf.bitwise.right_shift(keys, 16)  # arithmetic shift: order kept, in [-2**15, 2**15)
    bucket, k = _radix_pass(high + _DIGITS // 2, eligible, k)
    bucket -= _DIGITS // 2
    candidates = tf.where(eligible & tf.equal(high, bucket))[:, 0]
    low = tf.bitwise.bitwise_and(tf.gather(keys, candidates), _DIGITS - 1)
    low_digit, k = _radix_pass(low, None, k)
    chosen = eligible & (keys > bucket * _DIGITS + low_digit)
    ties = tf.boolean_mask(candidates, tf.equal(low, low_digit))[:k]
    return tf.tensor_scatter_nd_update(chosen, ties[:, None], tf.ones_like(ties, tf.bool))


def _segments(tensors: Sequence[tf.Tensor], scope: str) -> list[tf.Tensor]:
    """Flat 1-D views: one over all layers (scope "global") or one per layer."""
    flat = [tf.reshape(t, [-1]) for t in tensors]
    return [tf.concat(flat, 0)] if scope == "global" else flat


def _unsegment(segments: Sequence[tf.Tensor], like: Sequence[tf.Tensor],
               scope: str) -> list[tf.Tensor]:
    """Inverse of `_segments` for bool segments: float32 0/1 masks shaped like `like`."""
    if scope == "global":
        segments = tf.split(segments[0], [t.shape.num_elements() for t in like])
    return [tf.reshape(tf.cast(x, tf.float32), t.shape) for x, t in zip(segments, like)]


def _move(scores: tf.Tensor, active: tf.Tensor, n: Any, *, grow: bool,
          available: tf.Tensor | None = None) -> tf.Tensor:
    """Flat bool mask after dropping the n lowest active / growing the n highest inactive."""
    eligible = tf.logical_not(active) if grow else active
    if available is None:
        available = tf.reduce_sum(tf.cast(eligible, tf.int32))
    n = _checked_count(n, available, "grow" if grow else "drop")
    keys = _order_keys(scores) if grow else tf.bitwise.invert(_order_keys(scores))
    chosen = _select_largest(keys, eligible, n)
    return active | chosen if grow else active & tf.logical_not(chosen)


def _change(scores, masks, n, scope: str, *, grow: bool) -> list[tf.Tensor]:
    scores, masks = _paired(scores, masks, ("scores", "masks"))
    counts = _layer_counts(n, scope, len(masks))
    new = [_move(s, tf.not_equal(m, 0), count, grow=grow) for s, m, count in
           zip(_segments(scores, scope), _segments(masks, scope), counts)]
    return _unsegment(new, masks, scope)


def drop_lowest(scores: Sequence[Any], masks: Sequence[Any], n: Any, *,
                scope: str = "global") -> list[tf.Tensor]:
    """Deactivates exactly n active entries with the smallest score.

    Args:
      scores: per-layer score tensors (|w| for magnitude pruning), any float dtype.
      masks: per-layer masks of the same shapes; nonzero means active.
      n: scope "global": an int (or int scalar tensor), one threshold over all layers together
        (the official `global_magnitude` death); scope "layer": one count per layer (a list or
        a 1-D tensor). 0 <= n <= active count.
      scope: "global" or "layer".

    Returns:
      New float32 0/1 masks, same shapes; ties go to the lower flat index.
    """
    return _change(scores, masks, n, scope, grow=False)


def grow_highest(scores: Sequence[Any], masks: Sequence[Any], n: Any, *,
                 scope: str = "global") -> list[tf.Tensor]:
    """Activates exactly n inactive entries with the largest score.

    Scores are |grad| for RigL growth and uniform random for SET growth. Candidates are the
    entries inactive in `masks`; pass the masks after the drop so that entries dropped in the
    same update can be regrown (the official code excludes nothing). Same arguments and
    return value as `drop_lowest`, with 0 <= n <= inactive count.
    """
    return _change(scores, masks, n, scope, grow=True)


# ------------------------------------------------------------------------------ schedules


def drop_fraction(step: Any, total_steps: Any, *, initial: float = 0.5, final: float = 0.005,
                  schedule: str = "cosine") -> tf.Tensor:
    """Fraction of active weights to drop at `step` of `total_steps`: float64 scalar tensor.

    cosine: final + (initial - final) * (1 + cos(pi * step / total_steps)) / 2, PyTorch
      `CosineAnnealingLR` with eta_min=final, as the official `CosineDecay` (0.5 -> 0.005).
    linear: initial + (final - initial) * step / total_steps.
    constant: initial.
    step and total_steps may be tensors (no retracing); step should lie in [0, total_steps].
    """
    _check_choice(schedule, SCHEDULES, "schedule")
    _check_fraction(initial, "initial")
    _check_fraction(final, "final")
    static_total, static_step = tf.get_static_value(total_steps), tf.get_static_value(step)
    if static_total is not None and static_total <= 0:
        raise ValueError(f"total_steps={static_total} must be positive.")
    if static_step is not None and static_total is not None \
            and not 0 <= static_step <= static_total:
        raise ValueError(f"step={static_step} must lie in [0, total_steps={static_total}].")
    initial, final = _float64(initial), _float64(final)
    if schedule == "constant":
        return initial
    progress = _float64(step) / _float64(total_steps)
    if schedule == "cosine":
        return final + (initial - final) * (1.0 + tf.cos(math.pi * progress)) / 2.0
    return initial + (final - initial) * progress


# ------------------------------------------------------------------ drop-and-grow and resize


def _random_scores(shapes: Sequence[tf.TensorShape], *, seed: Any, step: Any) -> list[tf.Tensor]:
    """Uniform [0.1, 1.1) per layer, stateless from (seed, layer index, step): replicas agree."""
    scores = []
    for index, shape in enumerate(shapes):
        key = tf.random.experimental.stateless_fold_in(
            tf.stack([tf.cast(seed, tf.int64), tf.constant(index, tf.int64)]),
            tf.cast(step, tf.int64), alg="philox")
        scores.append(tf.random.stateless_uniform(shape, key, _RANDOM_MIN, _RANDOM_MAX,
                                                  alg="philox"))
    return scores


def _growth_scores(grads, masks, growth: str, *, seed: Any, step: Any) -> list[tf.Tensor]:
    _check_choice(growth, GROWTHS, "growth")
    if growth == "random":
        return _random_scores([m.shape for m in masks], seed=seed, step=step)
    if grads is None:
        raise ValueError("grads=None but growth='gradient' ranks inactive weights by |grad|; "
                         "pass the dense gradients or use growth='random'.")
    grads, _ = _paired(grads, masks, ("grads", "masks"))
    return [tf.abs(g) for g in grads]


def prune_and_regrow(kernels: Sequence[Any], masks: Sequence[Any], grads: Sequence[Any] | None,
                     fraction: Any, *, growth: str = "gradient", scope: str = "global",
                     seed: int = 0, step: Any = 0) -> list[tf.Tensor]:
    """Drops floor(fraction * nnz) active weights by |kernel|, regrows as many: nnz kept exactly.

    Args:
      kernels, masks: per-layer tensors of equal shapes; masks nonzero = active.
      grads: per-layer dL/d(kernel * mask), dense; required for growth "gradient", ignored for
        "random".
      fraction: in [0, 1] (float or scalar tensor); nnz is the global active count (scope
        "global", the official code) or each layer's (scope "layer").
      growth: "gradient" (RigL, largest |grad|) or "random" (SET, stateless uniform scores in
        [0.1, 1.1) seeded by (seed, layer index, step)), both ranked over `scope`; or
        "random_per_layer" (the official `--growth-G random`): the same random scores, but
        each layer regrows exactly the count it dropped, so per-layer densities stay. Growth
        ranks the entries inactive after the drop, so just-dropped weights may come back.

    Returns:
      New float32 0/1 masks. This is the strict-mode D-DST at d_max and the body of
      `SET.update` / `RigL.update`.
    """
    kernels, masks = _paired(kernels, masks, ("kernels", "masks"))
    _check_fraction(fraction, "fraction")
    _check_choice(scope, SCOPES, "scope")
    _check_choice(growth, GROWTHS + SET_GROWTHS[1:], "growth")
    per_layer = growth == "random_per_layer"
    scores = _growth_scores(grads, masks, "random" if per_layer else growth, seed=seed,
                            step=step)
    fraction = _float64(fraction)
    if per_layer and scope == "global":
        return _regrow_per_layer(kernels, masks, scores, fraction)
    new = []
    for magnitude, mask, score in zip(_segments([tf.abs(k) for k in kernels], scope),
                                      _segments(masks, scope), _segments(scores, scope)):
        active = tf.not_equal(mask, 0)
        nnz = tf.reduce_sum(tf.cast(active, tf.int32))
        n = tf.cast(tf.floor(fraction * tf.cast(nnz, tf.float64)), tf.int32)
        kept = _move(magnitude, active, n, grow=False, available=nnz)
        inactive = mask.shape.num_elements() - nnz + n
        new.append(_move(score, kept, n, grow=True, available=inactive))
    return _unsegment(new, masks, scope)


def _regrow_per_layer(kernels, masks, scores, fraction: tf.Tensor) -> list[tf.Tensor]:
    """Global magnitude drop of floor(fraction * nnz), then each layer regrows exactly the
    count it lost, by its own scores, among its entries inactive after the drop (the official
    `random_growth` after `global_magnitude` death, with exact counts: docs/ALGORITHM.md §5)."""
    (magnitude,), (active,) = (_segments(t, "global") for t in (
        [tf.abs(k) for k in kernels], [tf.not_equal(m, 0) for m in masks]))
    nnz = tf.reduce_sum(tf.cast(active, tf.int32))
    n = tf.cast(tf.floor(fraction * tf.cast(nnz, tf.float64)), tf.int32)
    kept = _unsegment([_move(magnitude, active, n, grow=False, available=nnz)], masks, "global")
    new = []
    for before, after, score in zip(_segments(masks, "layer"), _segments(kept, "layer"),
                                    _segments(scores, "layer")):
        after = tf.not_equal(after, 0)
        lost = tf.reduce_sum(tf.cast(tf.not_equal(before, 0), tf.int32)) - tf.reduce_sum(
            tf.cast(after, tf.int32))
        new.append(_move(score, after, lost, grow=True))
    return _unsegment(new, masks, "layer")


def target_count(masks: Sequence[Any], density: float) -> int:
    """round(density * total entries of `masks`); density in (0, 1]."""
    density = checks.density("density", density)
    total = sum(t.shape.num_elements() for t in _tensor_list(masks, "masks"))
    return int(round(density * total))


def resize(kernels: Sequence[Any], masks: Sequence[Any], target: Any, *,
           grads: Sequence[Any] | None = None, growth: str = "gradient", seed: int = 0,
           step: Any = 0) -> list[tf.Tensor]:
    """Sets the global active count over all given layers to exactly `target`.

    Shrinking drops the smallest |kernel| globally (official `dynamic_adjust_decrease_density`);
    growing activates the largest |grad| globally (growth "gradient", `global_gradient`) or
    stateless random scores (growth "random", `global_random`). `target` is an int count in
    [0, total] (see `target_count`); grads may be None only when the masks shrink.
    """
    kernels, masks = _paired(kernels, masks, ("kernels", "masks"))
    _check_choice(growth, GROWTHS, "growth")
    total = sum(m.shape.num_elements() for m in masks)
    static = tf.get_static_value(target)
    if static is not None and (np.ndim(static) != 0 or not float(static).is_integer()
                               or not 0 <= static <= total):
        raise ValueError(f"target={static!r} must be a whole count in [0, {total}]; "
                         "convert a density with target_count(masks, density).")
    target = tf.cast(target, tf.int32)
    active = tf.not_equal(_segments(masks, "global")[0], 0)
    nnz = tf.reduce_sum(tf.cast(active, tf.int32))
    n_drop, n_grow = tf.maximum(nnz - target, 0), tf.maximum(target - nnz, 0)
    magnitude = _segments([tf.abs(k) for k in kernels], "global")[0]
    kept = _move(magnitude, active, n_drop, grow=False, available=nnz)
    if growth == "gradient" and grads is None:
        static_grow = tf.get_static_value(n_grow)
        if static_grow is not None and static_grow > 0:
            raise ValueError(f"grads=None but resize must grow {int(static_grow)} weights by "
                             "|grad|; pass the dense gradients or use growth='random'.")
        with tf.control_dependencies([tf.debugging.assert_equal(
                n_grow, 0, message="resize must grow by |grad| but grads is None")]):
            return _unsegment([tf.identity(kept)], masks, "global")
    scores = _segments(_growth_scores(grads, masks, growth, seed=seed, step=step), "global")[0]
    new = _move(scores, kept, n_grow, grow=True, available=total - nnz + n_drop)
    return _unsegment([new], masks, "global")


def changed(old_masks: Sequence[Any], new_masks: Sequence[Any]) -> tuple[tf.Tensor, tf.Tensor]:
    """(n_dropped, n_grown) int32 scalars: entries active only in old / only in new masks."""
    old, new = _paired(old_masks, new_masks, ("old_masks", "new_masks"))
    dropped, grown = [], []
    for o, n in zip(old, new):
        o, n = tf.not_equal(o, 0), tf.not_equal(n, 0)
        dropped.append(tf.reduce_sum(tf.cast(o & tf.logical_not(n), tf.int32)))
        grown.append(tf.reduce_sum(tf.cast(n & tf.logical_not(o), tf.int32)))
    return tf.add_n(dropped), tf.add_n(grown)


def assign_masks(kernels: Sequence[tf.Variable], masks: Sequence[tf.Variable],
                 new_masks: Sequence[Any]) -> tuple[tf.Tensor, tf.Tensor]:
    """masks <- new_masks and kernels <- kernels * new_masks; returns `changed(masks, new_masks)`.

    Regrown entries start at exactly 0 and dropped ones become 0. Inside a `tf.function` (how
    the callbacks call it) the whole update is one graph: no host round trip of any kernel.
    """
    dropped, grown = changed(masks, new_masks)
    with tf.control_dependencies([dropped, grown]):
        for kernel, mask, new in zip(kernels, masks, new_masks):
            mask.assign(tf.cast(new, mask.dtype))
            kernel.assign(kernel * tf.cast(new, kernel.dtype))
    return tf.identity(dropped), tf.identity(grown)


# ---------------------------------------------------------------------------------- rules


def is_update_step(step: int, *, interval: int, total_steps: int) -> bool:
    """The cadence of the between-iteration mask updates (the `DropGrowRule`s of G-DST and
    D-DST, the ADAPT controller): True after `step` completed iterations when `step` is a
    positive multiple of `interval` and not the run's last iteration `total_steps`
    (docs/ALGORITHM.md §3, §5)."""
    step, total_steps = int(step), int(total_steps)
    return step > 0 and step % interval == 0 and step != total_steps


@dataclasses.dataclass(frozen=True)
class DropGrowRule:
    """Magnitude drop plus growth every `interval` iterations; subclasses fix the growth.

    Attributes:
      drop_fraction: initial fraction of active weights dropped (paper: 0.5).
      final_fraction: fraction at the end of training (official eta_min: 0.005).
      schedule: "cosine" (paper), "linear" or "constant"; see `drop_fraction`.
      interval: iterations between updates (paper: 500 for G).
      end_step: last iteration that may update, None = until the end (the paper; RigL stops
        at 75 % of training).
      scope: "global" (paper: one threshold over all layers) or "layer".
      seed: seeds the stateless random growth scores.
      reset_optimizer_slots: whether the train side zeroes optimizer slots (Adam moments) of
        regrown weights; False as in the paper, whose Adam state stays warm.
    """

    growth: ClassVar[str] = "gradient"

    drop_fraction: float = 0.5
    final_fraction: float = 0.005
    schedule: str = "cosine"
    interval: int = 500
    end_step: int | None = None
    scope: str = "global"
    seed: int = 0
    reset_optimizer_slots: bool = False

    def __post_init__(self) -> None:
        _check_fraction(self.drop_fraction, "drop_fraction")
        _check_fraction(self.final_fraction, "final_fraction")
        _check_choice(self.schedule, SCHEDULES, "schedule")
        _check_choice(self.scope, SCOPES, "scope")
        checks.positive_int("interval", self.interval)
        if self.end_step is not None:
            checks.positive_int("end_step", self.end_step)

    def is_update_step(self, step: int, total_steps: int) -> bool:
        """True after `step` completed iterations (1-based) when the masks should change:
        the cadence of `is_update_step` (module function), up to `end_step`."""
        return (is_update_step(step, interval=self.interval, total_steps=total_steps)
                and (self.end_step is None or int(step) <= self.end_step))

    def fraction(self, step: Any, total_steps: Any) -> tf.Tensor:
        """Scheduled drop fraction at `step` (float64 scalar tensor)."""
        return drop_fraction(step, total_steps, initial=self.drop_fraction,
                             final=self.final_fraction, schedule=self.schedule)

    def update(self, kernels: Sequence[Any], masks: Sequence[Any],
               grads: Sequence[Any] | None, *, step: Any, total_steps: Any) -> list[tf.Tensor]:
        """New masks after one drop-and-grow at `step`; the active count is kept exactly."""
        return prune_and_regrow(kernels, masks, grads, self.fraction(step, total_steps),
                                growth=self.growth, scope=self.scope, seed=self.seed, step=step)


@dataclasses.dataclass(frozen=True)
class SET(DropGrowRule):
    """SET (Mocanu et al. 2018): magnitude drop, uniform random growth.

    growth: "random" (the default): regrowth ranked globally, the official `global_random`;
    "random_per_layer": after the global drop each layer regrows at random the count it lost,
    the official `--growth-G random` (that flag's default; which one the paper's SDST-SET rows
    used is not shown; docs/ALGORITHM.md §5).
    """

    growth: str = "random"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice(self.growth, SET_GROWTHS, "growth")


@dataclasses.dataclass(frozen=True)
class RigL(DropGrowRule):
    """RigL (Evci et al. 2020): magnitude drop, largest-|grad| growth (`global_gradient`).

    ADAPT's variant (the defaults): global thresholds, 0.5 -> 0.005 cosine, updates to the end.
    """

    growth: ClassVar[str] = "gradient"
