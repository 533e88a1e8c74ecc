"""`ADAPTController`: moves the discriminator's density so the balance ratio stays in a band.

The paper's ADAPT (Wang et al., NeurIPS 2023), exactly as the official code's
`Masking.dynamic_adjust_density` runs it (docs/ALGORITHM.md §3):

* It acts after iterations ΔT, 2ΔT, ... (never after the last one), and only when the BR
  window is full (official: a full `da_iters // br_freq` queue); otherwise it waits.
* Comparisons are inclusive. With BR the window's mean of per-sample ratios and d the current
  target density of D:
  - BR >= B+ and d < d_max: d <- min(d + Δd, d_max); grow D globally by |grad| (the last D
    step's dense gradient) or at random;
  - BR >= B+ and d == d_max, strict mode: D-DST, i.e. drop a cosine-decayed fraction
    r = 0.005 + (0.5 - 0.005)(1 + cos(pi s / S)) / 2 of D's active weights by global magnitude
    and regrow as many by |grad|;
  - BR <= B-: d <- max(d - Δd, d_min); prune D globally by magnitude;
  - otherwise nothing.
* Relaxed mode caps d at 1 (ΔT = 1000 in the paper), strict mode at d_max = 0.5 (ΔT = 2000).
  The official floor is 0.05, not the poster's 0.

Layer-wise densities are not preserved: growth and pruning are global, as in the official code.
The controller's state (target density and decision log) lives in `controller.state`, which the
checkpoint callback saves, so a resumed run continues exactly.
"""
from __future__ import annotations

import json
import math
from typing import Any

import tensorflow as tf
from absl import logging

from adapt_tf import _compat, balance
from adapt_tf.sparse import dst
from adapt_tf.checks import positive_int

__all__ = ["ADAPTController", "ControllerState", "BAND", "D_MAX"]

# The paper's band [B-, B+] on BR: the default of the controller, of `methods` and of reports.
BAND = (0.45, 0.55)
# The cap on D's density per setting: relaxed lets D become dense, strict keeps every network at
# most 50 % dense (so the strict setting's Strong D is 50 % too, `methods.STRONG_DENSITY`).
D_MAX = {"relaxed": 1.0, "strict": 0.5}
_MODES = {"relaxed": dict(interval=1000, d_max=D_MAX["relaxed"]),
          "strict": dict(interval=2000, d_max=D_MAX["strict"])}
_GROWTHS = ("gradient", "random")
_EPS = 1e-9


class _JSONText(tf.train.experimental.PythonState):
    """A checkpointed string that is not a variable: MultiWorkerMirroredStrategy broadcasts
    every variable's initial value, which it cannot do for strings."""

    def __init__(self, text: str):
        self.text = text

    def serialize(self) -> str:
        return self.text

    def deserialize(self, string_value) -> None:
        self.text = string_value.decode() if isinstance(string_value, bytes) else string_value


class ControllerState(tf.Module):
    """Checkpointable controller state: target density and the JSON decision log."""

    def __init__(self):
        super().__init__(name="adapt_controller")
        kw = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.density = tf.Variable(-1.0, dtype=tf.float64, name="density", **kw)
        self.log_json = _JSONText("[]")


class ADAPTController(_compat.Callback):
    """Keras callback for `SparseGAN.fit` that keeps BR in [b_low, b_high] by resizing D.

    Args:
      mode: "relaxed" (d_D may reach 1) or "strict" (d_D <= d_max, then DST on D).
      total_steps: iterations of the whole run (the controller never acts at the last one, and
        the strict D-DST fraction is cosine-decayed over it).
      b_low, b_high: the band [B-, B+] (paper: 0.45, 0.55). With a GAN whose window samples
        the ADA-style criterion (`SparseGAN(criterion="ada")`), the band applies to that
        share and the directions turn round: at or above b_high D shrinks, at or below b_low
        it grows, and the strict mode never runs D-DST (as the official code).
      delta_d: absolute density step Δd (paper: 0.05).
      interval: ΔT in iterations; default 1000 (relaxed) or 2000 (strict).
      d_min: density floor (official: 0.05).
      d_max: density cap; default 1.0 (relaxed) or 0.5 (strict).
      growth: "gradient" (official `global_gradient`) or "random" (`global_random`).
      dst_drop_fraction, dst_final_fraction: the strict D-DST cosine schedule (0.5 -> 0.005).
      seed: seed of random growth.
    """

    def __init__(self, mode: str = "relaxed", *, total_steps: int, b_low: float = BAND[0],
                 b_high: float = BAND[1], delta_d: float = 0.05, interval: int | None = None,
                 d_min: float = 0.05, d_max: float | None = None, growth: str = "gradient",
                 dst_drop_fraction: float = 0.5, dst_final_fraction: float = 0.005,
                 seed: int = 0):
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode={mode!r}: choose 'relaxed' (d_D up to 1) or 'strict' "
                             "(d_D up to d_max, then DST on D).")
        if growth not in _GROWTHS:
            raise ValueError(f"growth={growth!r}: choose one of {_GROWTHS}.")
        interval = _MODES[mode]["interval"] if interval is None else interval
        d_max = _MODES[mode]["d_max"] if d_max is None else d_max
        for name, value in (("total_steps", total_steps), ("interval", interval)):
            positive_int(name, value)
        if not 0.0 < d_min <= d_max <= 1.0:
            raise ValueError(f"Need 0 < d_min <= d_max <= 1, got d_min={d_min!r}, "
                             f"d_max={d_max!r}.")
        if not b_low < b_high:
            raise ValueError(f"Need b_low < b_high, got b_low={b_low!r}, b_high={b_high!r}.")
        if not 0.0 < delta_d <= 1.0:
            raise ValueError(f"delta_d must be in (0, 1], got {delta_d!r}.")
        self.mode = mode
        self.total_steps = total_steps
        self.b_low, self.b_high = float(b_low), float(b_high)
        self.delta_d = float(delta_d)
        self.interval = interval
        self.d_min, self.d_max = float(d_min), float(d_max)
        self.growth = growth
        self.dst_drop_fraction = dst_drop_fraction
        self.dst_final_fraction = dst_final_fraction
        self.seed = seed
        self.state = ControllerState()
        # What the GAN's window samples (`SparseGAN.criterion`), read at the start of training.
        self.criterion: balance.Criterion = balance.BR

    # ------------------------------------------------------------------------------ state

    @property
    def density(self) -> float:
        """The current target density of D (set from D's masks at the start of training)."""
        return float(self.state.density.numpy())

    @property
    def decisions(self) -> list[dict[str, Any]]:
        """Every decision so far: step, br, old/new density, action."""
        return json.loads(self.state.log_json.text)

    def _record(self, decision: dict[str, Any]) -> None:
        log = self.decisions + [decision]
        self.state.log_json.text = json.dumps(log)
        logging.info("ADAPT step %d: %s=%s d_D %.4f -> %.4f (%s)", decision["step"],
                     self.criterion.label, decision["br"],
                     decision["old_density"], decision["new_density"], decision["action"])

    # -------------------------------------------------------------------------- callbacks

    def on_train_begin(self, logs=None):
        self.criterion = self.model.criterion
        if self.density < 0:  # not restored from a checkpoint
            self.state.density.assign(self.model.density("discriminator"))
        if not self.d_min - _EPS <= self.density <= self.d_max + _EPS:
            # Six digits: exact-count masks leave D a hair off a round density (0.199997).
            raise ValueError(f"The discriminator starts at density {self.density:.6g}, outside "
                             f"[d_min={self.d_min:g}, d_max={self.d_max:g}] of the {self.mode} "
                             "controller: sparsify it into that range first, or move d_min / "
                             "d_max.")

    def needs_gradients(self, step: int) -> tuple[str, ...]:
        """D, at the iterations the controller acts after, when it grows by gradient: the
        iteration that completes `step` keeps D's dense kernel gradients."""
        if self.growth == "gradient" and self._acts_at(step):
            return ("discriminator",)
        return ()

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if self._acts_at(step):
            self.decide(step, logs=logs)

    def _acts_at(self, step: int) -> bool:
        return dst.is_update_step(step, interval=self.interval, total_steps=self.total_steps)

    # --------------------------------------------------------------------------- decisions

    def decide(self, step: int, *, logs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Takes the decision of iteration `step` (ΔT multiple) and applies it to D; a mask
        change goes into the iteration's Keras `logs` if given (`Sparsity.update`)."""
        gan = self.model
        old = self.density
        if not bool(gan.balance.is_full()):
            decision = dict(step=step, br=None, old_density=old, new_density=old,
                            action="wait (BR window not full)")
            self._record(decision)
            return decision
        br = float(gan.balance.mean())
        new, action = self._next_density(br, old)
        if action == "dst":
            fraction = dst.drop_fraction(step, self.total_steps, initial=self.dst_drop_fraction,
                                         final=self.dst_final_fraction)
            self._apply(self._strict_dst, step, fraction, logs)
        elif new != old:
            self._apply(self._resize, step, new, logs)
            self.state.density.assign(new)
        decision = dict(step=step, br=br, old_density=old, new_density=new, action=action)
        self._record(decision)
        return decision

    def _next_density(self, br: float, density: float) -> tuple[float, str]:
        """The decision for window mean `br` at density `density`, in the criterion's
        directions (`Criterion.grows_d_above`; the ADA-style criterion turns them round: D
        scoring many reals above 0 is too strong) and with D-DST at the cap only where it has
        one (`Criterion.dst_at_cap`), as in the official code."""
        if math.isnan(br):
            return density, "keep (BR undefined)"
        above, below = br >= self.b_high, br <= self.b_low
        grow, shrink = (above, below) if self.criterion.grows_d_above else (below, above)
        if grow and density < self.d_max - _EPS:
            return round(min(density + self.delta_d, self.d_max), 6), "increase"
        if grow and self.mode == "strict" and self.criterion.dst_at_cap:
            return density, "dst"
        if grow:
            return density, "keep (at d_max)"
        if shrink and density > self.d_min + _EPS:
            return round(max(density - self.delta_d, self.d_min), 6), "decrease"
        if shrink:
            return density, "keep (at d_min)"
        return density, "keep"

    def _apply(self, fn, step: int, value, logs: dict[str, Any] | None) -> None:
        self.model.sparsity.update("discriminator", fn, tf.constant(step, tf.int64),
                                   tf.constant(value, tf.float64), logs=logs)

    @tf.function
    def _resize(self, kernels, masks, grads, step, density):
        total = sum(m.shape.num_elements() for m in masks)
        target = tf.cast(tf.round(density * total), tf.int32)
        new_masks = dst.resize(kernels, masks, target, grads=grads, growth=self.growth,
                               seed=self.seed, step=step)
        return dst.assign_masks(kernels, masks, new_masks)

    @tf.function
    def _strict_dst(self, kernels, masks, grads, step, fraction):
        new_masks = dst.prune_and_regrow(kernels, masks, grads, fraction, growth=self.growth,
                                         seed=self.seed, step=step)
        return dst.assign_masks(kernels, masks, new_masks)
