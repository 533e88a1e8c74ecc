"""The balance ratio (BR) between a sparse generator and discriminator.

BR = E_z[D(G_post(z)) - D(G_pre(z))] / (E_x[D(x)] - E_z[D(G_pre(z))])

with D the discriminator *after* its update in the iteration, G_pre / G_post the generator
before / after its update, and the same z for both (paper: Wang et al., "Balanced Training for
Sparse GANs", NeurIPS 2023; official code `gan_functions.calculate_br`). The numerator is how
far one G step moves the fake score, the denominator how well D separates real from fake: a
stronger D gives a smaller BR.

The quantity ADAPT controls is the *mean of per-sample ratios* over a sliding window of the last
`capacity` samples (official: `da_iters // br_freq` = 1000 // 10 = 100), not the ratio of means.
`BalanceWindow` keeps that window in variables, so it is checkpointed with the model and
updated inside compiled train steps.

What the window samples is a `Criterion`: `BR` (the above), or `ADA`, the official
`--da-criterion ADA` (the share of real images D scores above 0). `criterion(name)` resolves
the configuration's string ('br', 'ada') to it once; the train step, the controller and the
logs then ask the object for its sample, directions and names.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from adapt_tf.runs import workdir as workdir_lib
from adapt_tf.checks import positive_int

__all__ = ["balance_ratio", "sample_ratio", "BalanceWindow", "Criterion", "BR", "ADA",
           "CRITERIA", "criterion"]


def sample_ratio(gf, df, dr):
    """(gf - df) / (dr - df) for mean scores gf = E D(G_post z), df = E D(G_pre z), dr = E D(x).

    Plain arithmetic: works on Python floats, NumPy and TensorFlow values.
    """
    return (gf - df) / (dr - df)


def balance_ratio(d_fake_post, d_fake_pre, d_real) -> float:
    """BR of one sample from discriminator outputs:
    (mean(post) - mean(pre)) / (mean(real) - mean(pre)).

    Args:
      d_fake_post: D(G_post(z)) logits, any shape.
      d_fake_pre: D(G_pre(z)) logits for the same z.
      d_real: D(x) logits of a real minibatch.
    """
    means = [float(np.mean(np.asarray(v, dtype=np.float64)))
             for v in (d_fake_post, d_fake_pre, d_real)]
    return float(sample_ratio(*means))


class BalanceWindow(tf.Module):
    """Sliding window of per-sample balance ratios, in variables.

    A ring buffer of `capacity` ratios. `push` ignores (and counts in `skipped`) a sample whose
    denominator |dr - df| is at most `eps` or whose ratio is not finite, so a degenerate
    discriminator never raises inside a train step. `mean()` is NaN while the window is empty.
    All updates are branch-free tensor ops: safe inside `tf.function`, XLA and replica context.
    """

    def __init__(self, capacity: int, *, eps: float = 1e-8, name: str = "balance_window"):
        super().__init__(name=name)
        self.capacity = positive_int("BR window capacity (br_window // br_interval)", capacity)
        self.eps = float(eps)
        kw = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        with self.name_scope:
            self.samples = tf.Variable(tf.zeros([self.capacity]), name="samples", **kw)
            self.count = tf.Variable(0, dtype=tf.int32, name="count", **kw)
            self.position = tf.Variable(0, dtype=tf.int32, name="position", **kw)
            self.skipped = tf.Variable(0, dtype=tf.int32, name="skipped", **kw)

    def push(self, gf, df, dr) -> tf.Tensor:
        """Adds the sample (gf - df) / (dr - df); returns whether it was kept."""
        gf, df, dr = (tf.cast(v, tf.float32) for v in (gf, df, dr))
        denominator = dr - df
        safe = tf.where(tf.abs(denominator) > self.eps, denominator, tf.ones_like(denominator))
        ratio = (gf - df) / safe
        valid = tf.logical_and(tf.abs(denominator) > self.eps, tf.math.is_finite(ratio))
        return self._store(ratio, valid)

    def push_value(self, value) -> tf.Tensor:
        """Adds a sample of another criterion as it is (e.g. the ADA-style share of real
        images D scores above 0); a non-finite one is skipped. Returns whether it was kept."""
        value = tf.cast(value, tf.float32)
        return self._store(value, tf.math.is_finite(value))

    def _store(self, ratio: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
        position = self.position.read_value()
        updated = tf.tensor_scatter_nd_update(self.samples, [[position]], [ratio])
        self.samples.assign(tf.where(valid, updated, self.samples))
        valid_int = tf.cast(valid, tf.int32)
        self.position.assign((position + valid_int) % self.capacity)
        self.count.assign(tf.minimum(self.count + valid_int, self.capacity))
        self.skipped.assign_add(1 - valid_int)
        return valid

    def mean(self) -> tf.Tensor:
        """Mean of the stored per-sample ratios; NaN when empty."""
        count = self.count.read_value()
        stored = tf.range(self.capacity) < count
        total = tf.reduce_sum(tf.where(stored, self.samples, tf.zeros_like(self.samples)))
        return total / tf.cast(count, tf.float32)

    def is_full(self) -> tf.Tensor:
        return self.count >= self.capacity

    def values(self) -> np.ndarray:
        """The stored ratios, oldest first (eager)."""
        count, position = int(self.count.numpy()), int(self.position.numpy())
        samples = self.samples.numpy()
        if count < self.capacity:
            return samples[:count].copy()
        return np.concatenate([samples[position:], samples[:position]])

    def reset(self) -> None:
        for variable in (self.samples, self.count, self.position, self.skipped):
            variable.assign(tf.zeros_like(variable))


def _float32(value) -> np.float32:
    """A logged scalar (tensor, array or number) as the float32 the train step computed."""
    return np.float32(np.asarray(value).item())


def _br_row(logs: Mapping[str, Any]) -> dict[str, Any]:
    gf, df, dr = (_float32(logs[f"br_{key}"]) for key in ("gf", "df", "dr"))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sample_ratio(gf, df, dr)  # in float32, as the window
    return {"gf": float(gf), "df": float(df), "dr": float(dr), "ratio": float(ratio),
            "kept": int(np.asarray(logs["br_kept"]).item())}


def _ada_row(logs: Mapping[str, Any]) -> dict[str, Any]:
    return {"share": float(_float32(logs["ada_sample"]))}


@dataclasses.dataclass(frozen=True)
class Criterion:
    """What the balance window samples, how ADAPT reads it, and the names it is logged under.

    Attributes:
      name: its configuration value (`train.balance_criterion`, `SparseGAN(criterion=...)`).
      from_d_steps: the sample is the mean over the iteration's D steps of the share of the
        real batch D scores above 0 before its update (ADA), counted in the D steps' own
        forward passes; else the BR sample after the G step (`SparseGAN._balance_sample`),
        whose extra forward passes the training FLOPs count.
      grows_d_above: the controller grows D when the window mean is at or above B+ (BR: G
        moves the fake score far, D is weak) and shrinks it at or below B-; False turns the
        directions round (ADA: many reals above 0, D is strong, so D shrinks above B+).
      dst_at_cap: strict mode runs D-DST when D should grow but sits at d_max (BR only, as
        the official code).
      window_key: the logs key and metrics.csv column of the window mean.
      label, title: its name in log lines and on plots.
      sample_fields: the logs keys of one sample (for a `sparse_gan.LogsSamples` callback).
      log_name, log_columns, log_value: the per-sample CSV of `train.sample_logs` in the
        workdir (a `workdir` name), its columns, and the column that holds the window's value.
    """

    name: str
    from_d_steps: bool
    grows_d_above: bool
    dst_at_cap: bool
    window_key: str
    label: str
    title: str
    sample_fields: tuple[str, ...]
    log_name: str
    log_columns: tuple[str, ...]
    log_value: str
    _row: Callable[[Mapping[str, Any]], dict[str, Any]] = dataclasses.field(repr=False)

    def log_path(self, workdir: str) -> str:
        """Its per-sample CSV in `workdir`."""
        return os.path.join(workdir, self.log_name)

    def log_row(self, step: int, logs: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The CSV row of the sample the iteration that completed `step` logged, None if it
        took none. BR's ratio is recomputed in float32, as the window computes it."""
        if not logs or self.sample_fields[0] not in logs:
            return None
        return {"step": step, **self._row(logs)}

    def window_values(self, rows) -> list[tuple[int, float]]:
        """(step, value) of the samples the window kept, from its CSV's rows (text)."""
        return [(int(row["step"]), float(row[self.log_value])) for row in rows
                if row.get("kept", "1") == "1"]


BR = Criterion("br", from_d_steps=False, grows_d_above=True, dst_at_cap=True, window_key="br",
               label="BR", title="Balance ratio", sample_fields=("br_gf", "br_df", "br_dr",
                                                                 "br_kept"),
               log_name=workdir_lib.BR_LOG_NAME,
               log_columns=("step", "gf", "df", "dr", "ratio", "kept"), log_value="ratio",
               _row=_br_row)
ADA = Criterion("ada", from_d_steps=True, grows_d_above=False, dst_at_cap=False,
                window_key="ada_rt", label="ADA r_t", title="ADA r_t",
                sample_fields=("ada_sample",), log_name=workdir_lib.ADA_LOG_NAME,
                log_columns=("step", "share"), log_value="share", _row=_ada_row)
# Every criterion by its configuration name, BR first (the default, and the column readers
# of older runs look for first).
CRITERIA = {c.name: c for c in (BR, ADA)}


def criterion(value: str | Criterion, *, argument: str = "criterion") -> Criterion:
    """The `Criterion` named `value` ('br' or 'ada'; a `Criterion` is returned as it is);
    ValueError naming `argument` otherwise."""
    if isinstance(value, Criterion):
        return value
    if isinstance(value, str) and value in CRITERIA:
        return CRITERIA[value]
    raise ValueError(f"{argument}={value!r}: choose 'br' (the balance ratio) or 'ada' (the "
                     "share of reals D scores above 0).")
