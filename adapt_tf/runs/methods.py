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
dense-to-sparse baseline; `adapt_tf.sparse.gmp` says how.

`PRESETS` is the one table of these methods: `method` builds from it, `adapt_tf.runs.paper` reads
the paper's cells from it and `scripts/paper_grid.py` the experiment configs. A new method is
one row (and, for a new G rule or D controller, the component it names).

"setting" is the table: "relaxed" (Table 1, Strong D dense) or "strict" (Table 2, every
network at most 50 % dense, Strong D = d_max = 50 %).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from adapt_tf import checks
from adapt_tf.sparse import dst
from adapt_tf.balance.controller import BAND, D_MAX, ADAPTController
from adapt_tf.sparse.sparsity import DynamicSparsity

__all__ = ["Preset", "PRESETS", "METHODS", "STRONG_DENSITY", "Method", "method"]

# Strong D's density per setting: the setting's cap on D (dense relaxed, 50 % strict).
STRONG_DENSITY = D_MAX
_DENSITIES = ("dense", "balance", "strong", "pruned")


@dataclasses.dataclass(frozen=True)
class Preset:
    """One method as data: what `method` builds, and where it stands in the paper's tables.

    Attributes:
      label: the row label in the paper's tables; None for a method the paper has no row for.
      densities: "dense" (G and D dense), "balance" (d_D = d_G), "strong" (d_D = the
        setting's Strong D, `STRONG_DENSITY`) or "pruned" (GMP: both dense, pruned to d_G).
      g_rule: the G-DST rule class (`dst.SET` / `dst.RigL`); None = fixed G mask.
      controller: `ADAPTController` keywords of the method (mode, and where the method is not
        ADAPT its own band and ΔT); None = fixed D mask.
      tables: the paper's tables with a row for it: 1 (relaxed), 2 (strict). A "strong"
        preset's Table 2 row is the cell "<name>_strict" (`paper.cell_name`).
      grid: (table, note) of its experiment configs' header (`scripts/paper_grid.py`); None
        for a method outside the paper's grid.
    """

    label: str | None
    densities: str = "balance"
    g_rule: type[dst.DropGrowRule] | None = None
    controller: Mapping[str, Any] | None = None
    tables: tuple[int, ...] = ()
    grid: tuple[str, str] | None = None

    def __post_init__(self):
        if self.densities not in _DENSITIES:
            raise ValueError(f"densities={self.densities!r}: choose one of {_DENSITIES}.")


# In the order of the paper's tables (Table 1, then the rows only Table 2 has).
PRESETS: dict[str, Preset] = {
    "dense": Preset("Dense", "dense", tables=(1, 2),
                    grid=("Tables 1-2, dense baseline", "dense G and D")),
    "static_balance": Preset("Static-Balance", tables=(1, 2),
                             grid=("Tables 1-2, Static-Balance", "fixed masks, d_D = d_G")),
    "static_strong": Preset("Static-Strong", "strong", tables=(1, 2),
                            grid=("Table 1, Static-Strong", "fixed masks, dense D")),
    "sdst_balance_set": Preset("SDST-Balance-SET", g_rule=dst.SET, tables=(1, 2),
                               grid=("Tables 1-2, SDST-Balance-SET", "")),
    "sdst_strong_set": Preset("SDST-Strong-SET", "strong", dst.SET, tables=(1, 2),
                              grid=("Table 1, SDST-Strong-SET", "dense D")),
    "sdst_balance_rigl": Preset("SDST-Balance-RigL", g_rule=dst.RigL, tables=(1, 2),
                                grid=("Tables 1-2, SDST-Balance-RigL", "")),
    "sdst_strong_rigl": Preset("SDST-Strong-RigL", "strong", dst.RigL, tables=(1, 2),
                               grid=("Table 1, SDST-Strong-RigL", "dense D")),
    # DDA (official baseline2.sh): G fixed, D moved by BR in its own band every 2000 iterations.
    "dda": Preset("DDA", controller=dict(mode="relaxed", interval=2000, b_low=0.50,
                                         b_high=0.65), tables=(1,)),
    "adapt_relaxed": Preset("ADAPT_relax", g_rule=dst.RigL, controller=dict(mode="relaxed"),
                            tables=(1,), grid=("Table 1, ADAPT_relax", "")),
    "adapt_strict": Preset("ADAPT_strict", g_rule=dst.RigL, controller=dict(mode="strict"),
                           tables=(2,), grid=("Table 2, ADAPT_strict", "d_max = 50 %")),
    "gmp": Preset(None, "pruned"),
}
METHODS = tuple(PRESETS)


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
        callbacks = []
        if self.g_rule is not None:
            callbacks.append(DynamicSparsity("generator", self.g_rule, total_steps=total_steps))
        if self.controller is not None:
            callbacks.append(ADAPTController(total_steps=total_steps, **self.controller))
        if self.pruning is not None:
            callbacks.extend(self._pruning_callbacks(total_steps))
        return callbacks

    def _pruning_callbacks(self, total_steps: int) -> list:
        from adapt_tf.sparse.gmp import GradualMagnitudePruning

        begin = int(round(self.pruning["begin"] * total_steps))
        end = max(int(round(self.pruning["end"] * total_steps)), begin + 1)
        return [GradualMagnitudePruning(network, target_density=self.pruning[network],
                                        begin_step=begin, end_step=end,
                                        frequency=self.pruning["frequency"])
                for network in ("generator", "discriminator")]


def method(name: str, *, g_density: float = 1.0, setting: str = "relaxed",
           g_interval: int = 500, drop_fraction: float = 0.5, d_interval: int | None = None,
           b_low: float | None = None, b_high: float | None = None, delta_d: float = 0.05,
           d_min: float = 0.05, growth: str = "gradient", seed: int = 0,
           prune_begin: float = 0.0, prune_end: float = 0.75, prune_frequency: int | None = None,
           g_growth: str | None = None) -> Method:
    """The preset `name` at generator density `g_density` in `setting`.

    Args:
      name: one of `METHODS`.
      g_density: d_G in (0, 1]; also the Balance D's density and ADAPT's initial d_D.
      setting: "relaxed" (Strong D dense) or "strict" (Strong D and ADAPT's d_max = 0.5).
      g_interval, drop_fraction: G-DST ΔT (paper 500) and initial drop fraction (0.5, cosine).
      d_interval: ADAPT's ΔT (default 1000 relaxed / 2000 strict; 2000 for dda).
      b_low, b_high: BR band (default 0.45 / 0.55; 0.50 / 0.65 for dda).
      delta_d: ADAPT's density step.
      d_min: ADAPT's density floor of D (official and default 0.05).
      growth: D growth of ADAPT ("gradient" or "random").
      seed: seed of the random growth of SET and ADAPT.
      prune_begin, prune_end: gmp: first and last pruning iteration as fractions of the run
        (the target density is reached at prune_end; the rest of the run fine-tunes).
      prune_frequency: gmp: iterations between pruning steps (default g_interval).
      g_growth: the SET methods' G growth (`dst.SET.growth`): "random" (the default, ranked
        globally, official `global_random`) or "random_per_layer" (each layer regrows the
        count it dropped, official `--growth-G random`); None = the rule's default.
    """
    preset = _preset(name)
    if setting not in STRONG_DENSITY:
        raise ValueError(f"Unknown setting {setting!r}; choose 'relaxed' (Table 1, Strong D "
                         "dense) or 'strict' (Table 2, Strong D at 50 %).")
    checks.density("g_density", g_density)
    if preset.densities == "dense":
        return Method(name, 1.0, 1.0)
    if preset.densities == "pruned":
        return Method(name, g_density, g_density, pruning=_pruning(
            g_density, prune_begin, prune_end,
            frequency=g_interval if prune_frequency is None else prune_frequency))
    d_density = STRONG_DENSITY[setting] if preset.densities == "strong" else g_density
    rule = None if preset.g_rule is None else preset.g_rule(
        drop_fraction=drop_fraction, interval=g_interval, seed=seed,
        **_g_growth(name, preset, g_growth))
    controller = None
    if preset.controller is not None:
        controller = {"delta_d": delta_d, "d_min": d_min, "growth": growth, "seed": seed,
                      "b_low": BAND[0], "b_high": BAND[1], **preset.controller}
        given = dict(interval=d_interval, b_low=b_low, b_high=b_high)
        controller.update({key: value for key, value in given.items() if value is not None})
        _check_strict_cap(name, controller["mode"], g_density)
    return Method(name, g_density, d_density, g_rule=rule, controller=controller)


def _g_growth(name: str, preset: Preset, g_growth: str | None) -> dict[str, str]:
    if g_growth is None:
        return {}
    if preset.g_rule is not dst.SET:
        raise ValueError(f"g_growth={g_growth!r} chooses SET's G growth, but {name!r} has no "
                         "SET rule; use it with sdst_balance_set or sdst_strong_set.")
    return {"growth": g_growth}


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"Unknown method {name!r}; choose one of {list(METHODS)}.")
    return PRESETS[name]


def _pruning(density: float, begin: float, end: float, *, frequency: int) -> dict[str, Any]:
    if not 0.0 <= begin < end <= 1.0:
        raise ValueError(f"Need 0 <= prune_begin < prune_end <= 1 (fractions of the run), "
                         f"got prune_begin={begin!r}, prune_end={end!r}.")
    return dict(generator=density, discriminator=density, begin=begin, end=end,
                frequency=frequency)


def _check_strict_cap(name: str, mode: str, g_density: float) -> None:
    """ADAPT strict starts D at d_G, and its D may not exceed the strict cap."""
    cap = STRONG_DENSITY["strict"]
    if mode == "strict" and g_density > cap:
        raise ValueError(f"{name} keeps every network at most {cap * 100:g} % dense; g_density="
                         f"{g_density} is above it.")
