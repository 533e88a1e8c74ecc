"""Every training method of the paper as a preset: densities, rules and callbacks.

Names (docs/ALGORITHM.md §7; Tables 1-2 of the paper):

| name | G | D |
|---|---|---|
| dense | dense | dense |
| static_balance | fixed ERK mask, d_G | fixed ERK mask, d_D = d_G |
| static_strong | fixed ERK mask, d_G | Strong: dense (relaxed) / 50 % (strict) |
| sdst_balance_set, sdst_balance_rigl | SET / RigL DST, d_G | fixed, d_D = d_G |
| sdst_strong_set, sdst_strong_rigl | SET / RigL DST, d_G | fixed, Strong |
| adapt_relaxed | RigL DST, d_G | starts at d_G, ADAPT relaxed (d_D <= 1) |
| adapt_strict | RigL DST, d_G | starts at d_G, ADAPT strict (d_D <= 0.5, then D-DST) |
| dda | fixed, d_G | starts at d_G, density moved by BR with B± = [0.50, 0.65], ΔT = 2000 |
| gmp | dense, pruned to d_G (GMP) | dense, pruned to d_G (GMP) |

"gmp" is not in the paper: gradual magnitude pruning (Zhu & Gupta, 2017) through tfmot, the
dense-to-sparse baseline; `adapt_tf.gmp` says how.

"setting" is the table: "relaxed" (Table 1, Strong D dense) or "strict" (Table 2, every
network at most 50 % dense, Strong D = d_max = 50 %).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from adapt_tf import dst

__all__ = ["Method", "METHODS", "method"]

METHODS = ("dense", "static_balance", "static_strong", "sdst_balance_set", "sdst_strong_set",
           "sdst_balance_rigl", "sdst_strong_rigl", "adapt_relaxed", "adapt_strict", "dda",
           "gmp")
_SETTINGS = {"relaxed": 1.0, "strict": 0.5}


@dataclasses.dataclass(frozen=True)
class Method:
    """What a method trains: densities, the G rule and the D controller settings.

    g_density, d_density: the run's d_G and d_D; the networks start there (`initial_densities`),
    except with `pruning`, where they start dense and end there.

    g_rule: a `dst.SET`/`dst.RigL` applied to G (None = fixed G mask).
    controller: keyword arguments of `ADAPTController` (None = fixed D mask).
    pruning: GMP of both networks (None = off): target densities "generator" and
      "discriminator", "begin" and "end" as fractions of the run, "frequency" in iterations.
    """

    name: str
    g_density: float
    d_density: float
    g_rule: dst.DropGrowRule | None = None
    controller: Mapping[str, Any] | None = None
    pruning: Mapping[str, Any] | None = None

    @property
    def initial_densities(self) -> tuple[float, float]:
        """(G, D) densities the run starts from: dense for GMP (dense-to-sparse)."""
        if self.pruning is not None:
            return 1.0, 1.0
        return self.g_density, self.d_density

    def callbacks(self, *, total_steps: int) -> list:
        """The Keras callbacks that implement the method in `SparseGAN.fit`."""
        from adapt_tf.callbacks import DynamicSparsity
        from adapt_tf.controller import ADAPTController

        callbacks = []
        if self.g_rule is not None:
            callbacks.append(DynamicSparsity("generator", self.g_rule, total_steps=total_steps))
        if self.controller is not None:
            callbacks.append(ADAPTController(total_steps=total_steps, **self.controller))
        if self.pruning is not None:
            callbacks.extend(self._pruning_callbacks(total_steps))
        return callbacks

    def _pruning_callbacks(self, total_steps: int) -> list:
        from adapt_tf.gmp import GradualMagnitudePruning

        begin = int(round(self.pruning["begin"] * total_steps))
        end = max(int(round(self.pruning["end"] * total_steps)), begin + 1)
        return [GradualMagnitudePruning(network, target_density=self.pruning[network],
                                        begin_step=begin, end_step=end,
                                        frequency=self.pruning["frequency"])
                for network in ("generator", "discriminator")]


def method(name: str, *, g_density: float = 1.0, setting: str = "relaxed",
           g_interval: int = 500, drop_fraction: float = 0.5, d_interval: int | None = None,
           b_low: float | None = None, b_high: float | None = None, delta_d: float = 0.05,
           growth: str = "gradient", seed: int = 0, prune_begin: float = 0.0,
           prune_end: float = 0.75, prune_frequency: int | None = None) -> Method:
    """The preset `name` at generator density `g_density` in `setting`.

    Args:
      name: one of `METHODS`.
      g_density: d_G in (0, 1]; also the Balance D's density and ADAPT's initial d_D.
      setting: "relaxed" (Strong D dense) or "strict" (Strong D and ADAPT's d_max = 0.5).
      g_interval, drop_fraction: G-DST ΔT (paper 500) and initial drop fraction (0.5, cosine).
      d_interval: ADAPT's ΔT (default 1000 relaxed / 2000 strict; 2000 for dda).
      b_low, b_high: BR band (default 0.45 / 0.55; 0.50 / 0.65 for dda).
      delta_d: ADAPT's density step.
      growth: D growth of ADAPT ("gradient" or "random").
      seed: seed of the random growth of SET and ADAPT.
      prune_begin, prune_end: gmp: first and last pruning iteration as fractions of the run
        (the target density is reached at prune_end; the rest of the run fine-tunes).
      prune_frequency: gmp: iterations between pruning steps (default g_interval).
    """
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; choose one of {list(METHODS)}.")
    if setting not in _SETTINGS:
        raise ValueError(f"Unknown setting {setting!r}; choose 'relaxed' (Table 1, Strong D "
                         "dense) or 'strict' (Table 2, Strong D at 50 %).")
    if isinstance(g_density, bool) or not isinstance(g_density, (int, float)) \
            or not 0.0 < g_density <= 1.0:
        raise ValueError(f"g_density={g_density!r} must be in (0, 1].")
    strong = _SETTINGS[setting]
    if name == "dense":
        return Method(name, 1.0, 1.0)
    if name == "gmp":
        if not 0.0 <= prune_begin < prune_end <= 1.0:
            raise ValueError(f"Need 0 <= prune_begin < prune_end <= 1 (fractions of the run), "
                             f"got prune_begin={prune_begin!r}, prune_end={prune_end!r}.")
        return Method(name, g_density, g_density, pruning=dict(
            generator=g_density, discriminator=g_density, begin=prune_begin, end=prune_end,
            frequency=g_interval if prune_frequency is None else prune_frequency))
    if name.startswith(("static", "sdst")):
        d_density = g_density if "_balance" in name else strong
        rule = None
        if name.startswith("sdst"):
            rule_cls = dst.SET if name.endswith("_set") else dst.RigL
            rule = rule_cls(drop_fraction=drop_fraction, interval=g_interval, seed=seed)
        return Method(name, g_density, d_density, g_rule=rule)
    controller = dict(delta_d=delta_d, growth=growth, seed=seed)
    if name == "dda":
        controller.update(mode="relaxed", interval=2000 if d_interval is None else d_interval,
                          b_low=0.50 if b_low is None else b_low,
                          b_high=0.65 if b_high is None else b_high)
        return Method(name, g_density, g_density, controller=controller)
    mode = "relaxed" if name == "adapt_relaxed" else "strict"
    if mode == "strict" and g_density > 0.5:
        raise ValueError(f"adapt_strict keeps every network at most 50 % dense; g_density="
                         f"{g_density} is above it.")
    controller.update(mode=mode, b_low=0.45 if b_low is None else b_low,
                      b_high=0.55 if b_high is None else b_high)
    if d_interval is not None:
        controller["interval"] = d_interval
    rule = dst.RigL(drop_fraction=drop_fraction, interval=g_interval, seed=seed)
    return Method(name, g_density, g_density, g_rule=rule, controller=controller)
