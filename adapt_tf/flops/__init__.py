"""Training FLOPs of a sparse GAN: multiply-accumulates per layer, per iteration and per run.

Everything here is counted in multiply-accumulates (MACs), not 2x MACs, and called "FLOPs" as
the paper's Table 3 does. Three steps:

1. `adapt_tf.flops.macs.layer_macs(model, inputs)` measures a built Keras model: one `LayerCost` per
   layer call, the per-sample forward MACs of the kernel (`weight_macs`, at density 1) and of
   the rest (`other_macs`: bias additions, BatchNorm affine, attention matmuls), plus the
   layer's current mask density. This module only does the accounting on those costs.
2. `forward_macs(costs, densities)` sums them per sample: weight MACs scaled by the layer's mask
   density, bias and BatchNorm terms dense.
3. `iteration_flops` / `training_flops` / `FlopsAccumulator` turn per-sample costs into
   per-iteration and per-run totals under a named convention:

* ``"paper"`` reproduces the official counter (`utils.flops_calculator` and `main.py` of
  YiteWang/ADAPT; docs/ALGORITHM.md §10) exactly, so that numbers compare with the paper's Table 3:

  - counted layers: Linear in*out (+out bias), Conv2d cin*cout*kh*kw*Hout*Wout
    (+cout*Hout*Wout bias), BatchNorm with affine 2*C*H*W (2*C on [B, C] inputs). Not counted:
    activations, pooling, embeddings, affine-free BatchNorm and attention matmuls. A layer
    called several times in one forward pass is counted once, for its last call (the hook
    overwrites its entry).
  - per iteration, with g_fwd and d_fwd the per-sample sparse forward MACs:
        G = g_fwd * (d_batch * n_dis * 1 + g_batch * 3)
        D = d_fwd * (d_batch * n_dis * 3 + g_batch * 1)
    (training = forward + 2x backward; only one of the real/fake batches of a D step counted).
  - per run: sum over iterations of G + n_dis * D. The official code accumulates D's cost per
    D step (interval `update_frequency_D * n_critic`), which multiplies D by n_dis a second
    time; the dense reference uses the same convention, and the reported number is
    (sum G + sum D) / (the same for the dense model).
  - not counted: RigL's dense gradients, mask updates, BR passes, evaluation.

* ``"exact"`` counts what this TensorFlow implementation really computes per iteration
  (docs/ALGORITHM.md §1: n_dis D steps, one G step, a BR sample every `br_interval`
  iterations). Masked layers multiply a dense `kernel * mask`, so every kernel costs its dense
  MACs whatever its density; all layer kinds and every call are counted:

  - each D step: G forward on d_batch fakes (1x) + D forward and backward on d_batch real and
    d_batch fake images (3x each; backward = 2x forward: activation and weight gradients);
  - the G step: G forward and backward on g_batch (3x) + D forward and input-gradient backward
    on the same g_batch (2x: D's kernel gradients are not requested, and the compiled train
    step prunes them);
  - a BR sample: G forward on g_batch + D forward on g_batch fakes and d_batch reals, i.e.
    (g_batch * g_fwd + (g_batch + d_batch) * d_fwd) / br_interval per iteration;
  - RigL's dense gradients cost nothing extra: the straight-through mask makes every kernel
    gradient dense anyway, and growth reads the gradient of the last minibatch;
  - each mask update (every `g_update_interval` / `d_update_interval` iterations) is charged
    N * ceil(log2 N) for N masked weights of that network: the comparisons of a global sort
    (a count of operations, not of MACs; tiny next to the passes).

* ``"exact_sparse"`` is the same pass structure on an ideal sparse kernel: weight MACs scaled
  by mask density, plus, at each gradient-growth update (RigL), the dense weight gradient of one
  minibatch that a sparse kernel would not otherwise compute: (1 - d) * weight_macs for each
  sample of the G step's g_batch (G) or the last D step's 2 * d_batch (D).

Per-parameter elementwise work (optimizer updates, EMA, `kernel * mask`, mask constraints) is
counted by no convention: it does not grow with the batch.

This module is layer 1 of docs/INTERNALS.md: plain Python on `LayerCost` records, no TensorFlow.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence, Union

from adapt_tf.checks import positive_int

__all__ = [
    "LayerCost",
    "Schedule",
    "IterationFlops",
    "RunFlops",
    "FlopsAccumulator",
    "CONVENTIONS",
    "forward_macs",
    "dense_forward_macs",
    "iteration_flops",
    "training_flops",
    "flops_table",
]

Densities = Union[None, float, Mapping[str, float]]

_ALL_KINDS = frozenset({"dense", "conv", "batch_norm", "attention"})


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """Per-sample forward cost of one call of one layer, in MACs.

    Attributes:
      name: the layer's name (masked layer names are unique in a model, as topology requires).
      kind: "dense" (Dense), "conv" (Conv2D), "batch_norm" or "attention" (matmuls that
        involve no weights).
      weight_macs: kernel multiply-accumulates at density 1.
      other_macs: bias additions, BatchNorm affine, attention matmuls; never scaled by density.
      masked_params: kernel entries of a masked layer (one with a `mask`), 0 otherwise.
      density: the mask's active fraction when measured, 1.0 for unmasked layers.
      call_index: 0 for the layer's first call in the forward pass, 1 for its second, ...
    """

    name: str
    kind: str
    weight_macs: float
    other_macs: float
    masked_params: int = 0
    density: float = 1.0
    call_index: int = 0


@dataclasses.dataclass(frozen=True)
class Schedule:
    """What one training iteration does (docs/ALGORITHM.md §1), as far as FLOPs are concerned.

    Attributes:
      d_batch: real images per D step (per D step, not per iteration).
      g_batch: latent samples of the G step.
      n_dis: D steps per iteration.
      br_interval: iterations between BR samples (SparseGAN's default 10); None for none.
        Only the "exact" conventions count BR passes.
      g_update_interval: iterations between G mask updates (DST); None for a fixed G mask.
      d_update_interval: iterations between D mask updates (ADAPT / D-DST); None for fixed D.
      g_gradient_growth: G growth ranks by dense gradients (RigL); False for SET.
      d_gradient_growth: D growth ranks by dense gradients (ADAPT's default global gradient).
    """

    d_batch: int
    g_batch: int
    n_dis: int
    br_interval: int | None = 10
    g_update_interval: int | None = None
    d_update_interval: int | None = None
    g_gradient_growth: bool = True
    d_gradient_growth: bool = True

    def __post_init__(self):
        for field in ("d_batch", "g_batch", "n_dis"):
            positive_int(field, getattr(self, field))
        for field in ("br_interval", "g_update_interval", "d_update_interval"):
            if getattr(self, field) is not None:
                positive_int(field, getattr(self, field))

    def without_updates(self) -> Schedule:
        """The same schedule with fixed masks: the dense reference run has no mask updates."""
        return dataclasses.replace(self, g_update_interval=None, d_update_interval=None)


@dataclasses.dataclass(frozen=True)
class IterationFlops:
    """MACs of one training iteration.

    Attributes:
      g: charged to the generator's layers.
      d: charged to the discriminator's layers, once.
      other: mask-update operations ("exact*" conventions).
      d_repeats: how many times a run counts `d` per iteration: n_dis under "paper" (the
        official double count), 1 otherwise.
    """

    g: float
    d: float
    other: float = 0.0
    d_repeats: int = 1

    @property
    def total(self) -> float:
        """What one iteration adds to the run total: g + d_repeats * d + other."""
        return self.g + self.d_repeats * self.d + self.other


@dataclasses.dataclass(frozen=True)
class RunFlops:
    """Training FLOPs of a run and of its dense reference; ratio = total / dense_total."""

    total: float
    dense_total: float

    @property
    def ratio(self) -> float:
        return self.total / self.dense_total if self.dense_total else float("nan")


@dataclasses.dataclass(frozen=True)
class _Convention:
    name: str
    kinds: frozenset
    every_call: bool  # False: a layer's last call only, as the official forward hook.
    sparse_kernels: bool  # False: kernels cost their dense MACs whatever the mask.
    iteration: Callable[..., IterationFlops]


def _check_density(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def _convention(name: str) -> _Convention:
    if name not in CONVENTIONS:
        raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {name!r}")
    return CONVENTIONS[name]


def _selected(costs: Sequence[LayerCost], convention: _Convention) -> list[LayerCost]:
    """The costs a convention counts; for the official hook, each layer's last call only."""
    chosen = [cost for cost in costs if cost.kind in convention.kinds]
    if convention.every_call:
        return chosen
    last: dict[str, LayerCost] = {}
    for cost in chosen:
        if cost.name not in last or cost.call_index >= last[cost.name].call_index:
            last[cost.name] = cost
    return list(last.values())


def _density_of(cost: LayerCost, densities: Densities) -> float:
    if not cost.masked_params:
        return 1.0
    if densities is None:
        return cost.density
    if isinstance(densities, Mapping):
        return _check_density(densities.get(cost.name, cost.density), f"density of {cost.name!r}")
    return _check_density(densities, "density")


def _check_density_names(costs: Sequence[LayerCost], densities: Densities) -> None:
    if not isinstance(densities, Mapping):
        return
    masked = {cost.name for cost in costs if cost.masked_params}
    unknown = sorted(set(densities) - masked)
    if unknown:
        raise ValueError(
            f"densities name layers {unknown} that are not masked layers of these costs; "
            f"use names from {sorted(masked)}")


def forward_macs(costs: Sequence[LayerCost], densities: Densities = None, *,
                 convention: str = "paper") -> float:
    """Per-sample forward MACs of a network.

    Args:
      costs: from `macs.layer_macs`.
      densities: mask densities of the masked layers: None for those measured with the costs,
        a float for every masked layer, or {layer name: density} (missing layers keep their
        measured density). Unmasked layers are always dense.
      convention: "paper", "exact" (dense kernels: densities are ignored) or "exact_sparse".
    """
    conv = _convention(convention)
    _check_density_names(costs, densities)
    total = 0.0
    for cost in _selected(costs, conv):
        density = _density_of(cost, densities) if conv.sparse_kernels else 1.0
        total += cost.weight_macs * density + cost.other_macs
    return total


def dense_forward_macs(costs: Sequence[LayerCost], *, convention: str = "paper") -> float:
    """Per-sample forward MACs with every mask full."""
    return forward_macs(costs, 1.0, convention=convention)


def _paper_iteration(g_costs, d_costs, schedule: Schedule, g_densities, d_densities,
                     convention: str) -> IterationFlops:
    s = schedule
    g_fwd = forward_macs(g_costs, g_densities, convention=convention)
    d_fwd = forward_macs(d_costs, d_densities, convention=convention)
    return IterationFlops(g=g_fwd * (s.d_batch * s.n_dis + 3 * s.g_batch),
                          d=d_fwd * (3 * s.d_batch * s.n_dis + s.g_batch),
                          d_repeats=s.n_dis)


def _missing_weight_macs(costs, densities, convention: str) -> float:
    """Per-sample weight MACs an ideal sparse kernel skips: sum of (1 - d) * weight_macs."""
    return (forward_macs(costs, 1.0, convention=convention)
            - forward_macs(costs, densities, convention=convention))


def _mask_update_ops(costs: Sequence[LayerCost]) -> float:
    """Comparisons of a global sort over a network's masked weights: N * ceil(log2 N)."""
    n = sum(cost.masked_params for cost in _selected(costs, CONVENTIONS["exact"])
            if cost.call_index == 0)
    return float(n * math.ceil(math.log2(n))) if n > 1 else 0.0


def _exact_iteration(g_costs, d_costs, schedule: Schedule, g_densities, d_densities,
                     convention: str) -> IterationFlops:
    s = schedule
    g_fwd = forward_macs(g_costs, g_densities, convention=convention)
    d_fwd = forward_macs(d_costs, d_densities, convention=convention)
    g = g_fwd * (s.n_dis * s.d_batch + 3 * s.g_batch)
    d = d_fwd * (s.n_dis * 3 * 2 * s.d_batch + 2 * s.g_batch)
    if s.br_interval:
        g += g_fwd * s.g_batch / s.br_interval
        d += d_fwd * (s.g_batch + s.d_batch) / s.br_interval
    other = 0.0
    sparse = CONVENTIONS[convention].sparse_kernels
    if s.g_update_interval:
        other += _mask_update_ops(g_costs) / s.g_update_interval
        if sparse and s.g_gradient_growth:
            missing = _missing_weight_macs(g_costs, g_densities, convention)
            g += missing * s.g_batch / s.g_update_interval
    if s.d_update_interval:
        other += _mask_update_ops(d_costs) / s.d_update_interval
        if sparse and s.d_gradient_growth:
            missing = _missing_weight_macs(d_costs, d_densities, convention)
            d += missing * 2 * s.d_batch / s.d_update_interval
    return IterationFlops(g=g, d=d, other=other, d_repeats=1)


CONVENTIONS: dict[str, _Convention] = {
    "paper": _Convention("paper", frozenset({"dense", "conv", "batch_norm"}),
                         every_call=False, sparse_kernels=True, iteration=_paper_iteration),
    "exact": _Convention("exact", _ALL_KINDS, every_call=True, sparse_kernels=False,
                         iteration=_exact_iteration),
    "exact_sparse": _Convention("exact_sparse", _ALL_KINDS, every_call=True,
                                sparse_kernels=True, iteration=_exact_iteration),
}


def iteration_flops(g_costs: Sequence[LayerCost], d_costs: Sequence[LayerCost],
                    schedule: Schedule, *, convention: str = "paper",
                    g_densities: Densities = None,
                    d_densities: Densities = None) -> IterationFlops:
    """MACs of one training iteration at the given mask densities.

    Under "paper": G = g_fwd * (d_batch * n_dis + 3 * g_batch),
    D = d_fwd * (3 * d_batch * n_dis + g_batch), and a run counts n_dis * D per iteration
    (`IterationFlops.d_repeats`). The "exact" conventions are spelled out in the module
    docstring; periodic work (BR samples, mask updates, RigL's dense gradients) is averaged
    over its interval.

    Args:
      g_costs, d_costs: from `macs.layer_macs` on the generator and the discriminator.
      schedule: batch sizes, n_dis and the intervals of periodic work.
      convention: "paper", "exact" or "exact_sparse".
      g_densities, d_densities: as `forward_macs`'s `densities`.
    """
    conv = _convention(convention)
    return conv.iteration(g_costs, d_costs, schedule, g_densities, d_densities, conv.name)


class FlopsAccumulator:
    """Cumulative training FLOPs of a run whose mask densities change, and its dense reference.

    Call `add(iterations, g_densities, d_densities)` with the densities in effect during those
    iterations (e.g. from `adapt_tf.sparse.topology.layer_densities(model)` at each log step). The
    official code adds each interval's FLOPs up front, at the mask change, with the new
    densities; adding them afterwards with the densities that were in effect gives the same
    total. The dense reference is the same schedule with full masks and no mask updates.

    Args:
      g_costs, d_costs: from `macs.layer_macs`.
      schedule: the run's `Schedule`.
      convention: "paper", "exact" or "exact_sparse".
    """

    def __init__(self, g_costs: Sequence[LayerCost], d_costs: Sequence[LayerCost],
                 schedule: Schedule, *, convention: str = "paper"):
        _convention(convention)
        self._g_costs = list(g_costs)
        self._d_costs = list(d_costs)
        self.schedule = schedule
        self.convention = convention
        self._dense_per_iteration = iteration_flops(
            self._g_costs, self._d_costs, schedule.without_updates(), convention=convention,
            g_densities=1.0, d_densities=1.0).total
        self.total = 0.0
        self.dense_total = 0.0
        self.iterations = 0

    def per_iteration(self, g_densities: Densities = None,
                      d_densities: Densities = None) -> IterationFlops:
        """This run's `IterationFlops` at the given densities."""
        return iteration_flops(self._g_costs, self._d_costs, self.schedule,
                               convention=self.convention, g_densities=g_densities,
                               d_densities=d_densities)

    def add(self, iterations: int, g_densities: Densities = None,
            d_densities: Densities = None) -> float:
        """Adds `iterations` iterations at these densities; returns the FLOPs added."""
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
        added = iterations * self.per_iteration(g_densities, d_densities).total
        self.total += added
        self.dense_total += iterations * self._dense_per_iteration
        self.iterations += iterations
        return added

    @property
    def ratio(self) -> float:
        """total / dense_total (the paper's normalised training FLOPs); NaN before any add."""
        return RunFlops(self.total, self.dense_total).ratio

    def state(self) -> dict[str, float]:
        """The accumulated values, for checkpoints."""
        return {"total": self.total, "dense_total": self.dense_total,
                "iterations": self.iterations}

    def restore(self, state: Mapping[str, float]) -> None:
        """Continues from a `state()`."""
        missing = {"total", "dense_total", "iterations"} - set(state)
        if missing:
            raise ValueError(f"state lacks {sorted(missing)}; pass a FlopsAccumulator.state()")
        self.total = float(state["total"])
        self.dense_total = float(state["dense_total"])
        self.iterations = int(state["iterations"])


def training_flops(g_costs: Sequence[LayerCost], d_costs: Sequence[LayerCost],
                   schedule: Schedule, *, iterations: int, convention: str = "paper",
                   g_densities: Densities = None, d_densities: Densities = None) -> RunFlops:
    """Training FLOPs of `iterations` iterations at fixed densities, and of the dense run.

    Under "paper" this is iterations * (G + n_dis * D) against the same for full masks, as the
    official `main.py` reports (docs/ALGORITHM.md §10). Use `FlopsAccumulator` when densities
    change.
    """
    accumulator = FlopsAccumulator(g_costs, d_costs, schedule, convention=convention)
    accumulator.add(iterations, g_densities, d_densities)
    return RunFlops(accumulator.total, accumulator.dense_total)


def flops_table(g_costs: Sequence[LayerCost], d_costs: Sequence[LayerCost],
                schedule: Schedule, settings: Mapping[str, tuple[Densities, Densities]], *,
                iterations: int, convention: str = "paper") -> list[dict[str, Any]]:
    """One row per setting: {"setting", "flops", "dense_flops", "ratio"} at fixed densities.

    Args:
      settings: {label: (g_densities, d_densities)}, e.g. ERK densities from
        `adapt_tf.sparse.topology.erk_densities` for each (d_G, d_D) of the paper's table.
    """
    rows = []
    for label, (g_densities, d_densities) in settings.items():
        run = training_flops(g_costs, d_costs, schedule, iterations=iterations,
                             convention=convention, g_densities=g_densities,
                             d_densities=d_densities)
        rows.append({"setting": label, "flops": run.total, "dense_flops": run.dense_total,
                     "ratio": run.ratio})
    return rows
