"""Layer-wise densities, exact-count masks and density bookkeeping.

Layer 1 of docs/INTERNALS.md, NumPy on kernel shapes. TensorFlow is never imported here; the
model-level helpers (`sparsify`, `model_density`, `layer_densities`, `count_active`) are
duck-typed on "masked layers": objects with `.name`, `.kernel` and `.mask` (variables or arrays
of the same shape, with `.assign` for `sparsify`). A Keras model is resolved to its masked
layers here (`masked_layers`: the layers with a `masked_kernel` method, as
`adapt_tf.sparse.layers.MaskedLayer` has), so that the result does not depend on which modules
were imported before and this level imports nothing above it; `_compat` (and so TensorFlow)
only once a Keras model is passed.

Provenance (docs/ALGORITHM.md §4):
- ERK follows the official ADAPT code, inherited from ITOP (`Masking.init`, `density ==
  'ERK'`): raw score (sum of dims / product of dims) ** power_scale per masked tensor, one
  global epsilon so the active count equals d * N, and while the largest eps * score exceeds 1
  every layer with the maximal raw score is made dense and epsilon is re-solved.
- The official code samples masks per element (Bernoulli with the layer density); that is
  `sampling="bernoulli"`. The default `sampling="exact"` draws exactly the counts from
  `layer_counts`, as the original RigL code does, so the total is exactly round(d * N).

Kernels follow Keras layout (Dense [in, out], Conv2D [kh, kw, in, out]); sums and products of
dims do not depend on the order, so scores equal the PyTorch ones for the same layer.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from adapt_tf import checks

Seed = int | Sequence[int]

_VALID_SAMPLING = ("exact", "bernoulli")


def _check_shape(shape: Any, *, name: str = "shape") -> tuple[int, ...]:
    """Returns `shape` as a tuple of positive ints, or raises ValueError naming it."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise ValueError(
            f"{name} must be a sequence of positive ints such as [3, 3, 64, 128], "
            f"got {shape!r}.")
    dims = tuple(shape)
    if not dims:
        raise ValueError(
            f"{name} must have at least one dimension, got {shape!r}; pass the kernel shape, "
            "e.g. [in, out] for Dense or [kh, kw, in, out] for Conv2D.")
    for dim in dims:
        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral):
            raise ValueError(f"{name} must contain ints, got {shape!r}; "
                             "pass the kernel shape as ints.")
        if dim <= 0:
            raise ValueError(
                f"{name} {shape!r} has a non-positive dimension {int(dim)}; every kernel "
                "dimension must be >= 1 (a layer with no weights cannot be masked).")
    return tuple(int(dim) for dim in dims)


def _check_shapes(shapes: Any) -> dict[str, tuple[int, ...]]:
    """Validates a {name: kernel shape} mapping; keeps its order."""
    if not isinstance(shapes, Mapping):
        raise ValueError(
            f"shapes must be a mapping {{layer name: kernel shape}}, got {type(shapes).__name__}.")
    if not shapes:
        raise ValueError(
            "shapes is empty: there are no masked kernels to sparsify; build the network from "
            "adapt_tf.sparse.layers.MaskedDense/MaskedConv2D.")
    return {name: _check_shape(shape, name=f"shape of {name!r}") for name, shape in shapes.items()}


def _check_seed(seed: Any) -> int | tuple[int, ...]:
    """Accepts a non-negative int or a non-empty sequence of them (np.random.SeedSequence)."""
    parts = seed if isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, str) \
        else (seed,)
    ok = len(parts) > 0 and all(
        isinstance(p, numbers.Integral) and not isinstance(p, (bool, np.bool_)) and p >= 0
        for p in parts)
    if not ok:
        raise ValueError(
            f"seed must be a non-negative int or a sequence of them such as (seed, layer_index), "
            f"got {seed!r}.")
    if isinstance(seed, (Sequence, np.ndarray)):
        return tuple(int(p) for p in parts)
    return int(seed)


def uniform_densities(shapes: Mapping[str, Sequence[int]], density: float) -> dict[str, float]:
    """Every masked kernel gets the same density.

    Args:
      shapes: {layer name: kernel shape}, in a stable order; all dims >= 1.
      density: target fraction of active weights, in (0, 1].

    Returns:
      {layer name: density}, same keys and order as `shapes`.
    """
    density = checks.density("density", density)
    return {name: density for name in _check_shapes(shapes)}


def erk_densities(shapes: Mapping[str, Sequence[int]], density: float, *,
                  power_scale: float = 1.0) -> dict[str, float]:
    """Erdős–Rényi-kernel layer densities, exactly as the official ADAPT/ITOP code.

    Layer l (n_l weights) gets density eps * s_l with s_l = (sum(shape) / prod(shape)) **
    power_scale; for a Keras conv kernel [k, k, c_in, c_out] at power 1 that is
    (c_out + c_in + k + k) / (c_out * c_in * k * k). eps solves
    sum_{l sparse} eps * s_l * n_l = density * N - sum_{l dense} n_l. While max eps * s_l > 1,
    every layer whose raw score equals the maximum joins the dense set (one maximum per round,
    as ITOP's loop does) and eps is re-solved.

    Args:
      shapes: {layer name: kernel shape}; all dims >= 1.
      density: overall target fraction of active weights, in (0, 1].
      power_scale: exponent on the raw score, finite and >= 0 (ITOP's `erk_power_scale`;
        0 gives uniform densities).

    Returns:
      {layer name: density in (0, 1]}, same keys and order as `shapes`;
      sum(d_l * n_l) == density * N up to float rounding.
    """
    density = checks.density("density", density)
    shapes = _check_shapes(shapes)
    if isinstance(power_scale, bool) or not isinstance(power_scale, numbers.Real) \
            or not math.isfinite(power_scale) or power_scale < 0:
        raise ValueError(
            f"power_scale must be a finite real >= 0, got {power_scale!r}; the official "
            "value is 1.0.")
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    scores = {name: (sum(shape) / sizes[name]) ** float(power_scale)
              for name, shape in shapes.items()}
    total = sum(sizes.values())
    dense: set[str] = set()
    while True:
        sparse = [name for name in shapes if name not in dense]
        if not sparse:  # Only reachable at density 1 with float noise.
            epsilon = 0.0
            break
        budget = density * total - sum(sizes[name] for name in dense)
        epsilon = budget / sum(scores[name] * sizes[name] for name in sparse)
        max_score = max(scores[name] for name in sparse)
        if max_score * epsilon <= 1.0:
            break
        dense.update(name for name in sparse if scores[name] == max_score)
    return {name: 1.0 if name in dense else min(1.0, epsilon * scores[name]) for name in shapes}


def _round(x: float) -> int:
    """Python's round (half to even): the one rounding used for counts in adapt_tf."""
    return int(round(x))


def layer_counts(shapes: Mapping[str, Sequence[int]], densities: Mapping[str, float],
                 density: float) -> dict[str, int]:
    """Exact active-weight counts per layer with a total of exactly round(density * N).

    Each layer starts at round(d_l * n_l) (dense layers, d_l >= 1, at n_l and never changed);
    the remaining difference to round(density * N) is closed by +1 on the layers with the
    largest remainders d_l * n_l - count_l (or -1 on the smallest), at most once per layer,
    ties broken by layer order. Counts stay in [0, n_l].

    Args:
      shapes: {layer name: kernel shape}.
      densities: {layer name: density in (0, 1]} for the same names, e.g. from
        `erk_densities(shapes, density)`.
      density: the overall density the layer densities were computed for, in (0, 1].

    Returns:
      {layer name: active count}, same keys and order as `shapes`.

    Raises:
      ValueError: if the names differ, or the densities disagree with `density` by more than
        one weight per layer (they were computed for another density).
    """
    density = checks.density("density", density)
    shapes = _check_shapes(shapes)
    if set(densities) != set(shapes):
        raise ValueError(
            f"densities has layers {sorted(densities)} but shapes has {sorted(shapes)}; "
            "compute densities from the same shapes (erk_densities or uniform_densities).")
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    exact = {name: checks.density(f"density of {name!r}", densities[name]) * sizes[name]
             for name in shapes}
    counts = {name: sizes[name] if exact[name] >= sizes[name] else _round(exact[name])
              for name in shapes}
    return _close_gap(counts, exact, sizes, target=_round(density * sum(sizes.values())),
                      density=density)


def _close_gap(counts: dict[str, int], exact: Mapping[str, float], sizes: Mapping[str, int],
               *, target: int, density: float) -> dict[str, int]:
    """`layer_counts`' last step: +1 (or -1) on the layers with the largest (smallest)
    remainders exact - count, at most once per layer, until the counts sum to `target`."""
    gap = target - sum(counts.values())
    if gap == 0:
        return counts
    step = 1 if gap > 0 else -1
    candidates = [name for name in counts  # layer order
                  if exact[name] < sizes[name] and 0 <= counts[name] + step <= sizes[name]]
    candidates.sort(key=lambda name: -step * (exact[name] - counts[name]))  # stable: layer order
    if len(candidates) < abs(gap):
        raise ValueError(
            f"densities give {sum(counts.values())} active weights but density={density!r} "
            f"asks for {target} of {sum(sizes.values())}; +-1 per layer cannot close a gap of "
            f"{gap}. Compute densities for the same density "
            "(e.g. erk_densities(shapes, density)).")
    for name in candidates[:abs(gap)]:
        counts[name] += step
    return counts


def random_mask(shape: Sequence[int], n_active: int, *, seed: Seed) -> np.ndarray:
    """A 0/1 mask with exactly `n_active` ones at uniformly random positions.

    Args:
      shape: kernel shape, all dims >= 1.
      n_active: number of ones, in [0, prod(shape)].
      seed: non-negative int or sequence of ints, e.g. (seed, layer_index); the same seed
        gives the same mask (np.random.default_rng).

    Returns:
      float32 array of `shape` with values in {0, 1} and sum == n_active.
    """
    shape = _check_shape(shape)
    size = math.prod(shape)
    if isinstance(n_active, (bool, np.bool_)) or not isinstance(n_active, numbers.Integral) \
            or not 0 <= n_active <= size:
        raise ValueError(
            f"n_active must be an int in [0, {size}] for shape {shape}, got {n_active!r}.")
    rng = np.random.default_rng(_check_seed(seed))
    flat = np.zeros(size, dtype=np.float32)
    flat[rng.choice(size, size=int(n_active), replace=False, shuffle=False)] = 1.0
    return flat.reshape(shape)


def bernoulli_mask(shape: Sequence[int], density: float, *, seed: Seed) -> np.ndarray:
    """Per-element Bernoulli(density) mask, as the official code samples its ERK masks.

    The realised count is Binomial(prod(shape), density), not exact (docs/ALGORITHM.md §4); use it
    for fidelity checks against the official code.

    Args:
      shape: kernel shape, all dims >= 1.
      density: per-element keep probability, in (0, 1].
      seed: non-negative int or sequence of ints, e.g. (seed, layer_index).

    Returns:
      float32 array of `shape` with values in {0, 1}.
    """
    shape = _check_shape(shape)
    density = checks.density("density", density)
    rng = np.random.default_rng(_check_seed(seed))
    return (rng.random(shape) < density).astype(np.float32)


_DISTRIBUTIONS: dict[str, Callable[..., dict[str, float]]] = {
    "erk": erk_densities,
    "uniform": uniform_densities,
}


def _is_masked(layer: Any) -> bool:
    """A masked layer is one with a `masked_kernel` method (every
    `adapt_tf.sparse.layers.MaskedLayer`,
    built or not): duck-typed, so that this level needs no import of the layer classes."""
    return callable(getattr(layer, "masked_kernel", None))


def _flattened(root: Any) -> Sequence[Any]:
    """A Keras layer or model and every layer inside it, depth-first in Keras' tracking order
    (which fixes layer i's mask seed); anything else as itself."""
    keras = sys.modules.get("tf_keras")  # A Keras object exists only once tf_keras is loaded.
    if keras is None or not isinstance(root, keras.layers.Layer):
        return [root]
    from adapt_tf import _compat  # Here: the pure uses of this module never load TensorFlow.
    return list(_compat.flatten_layers(root, include_self=True))


def masked_layers(model: Any) -> list[Any]:
    """The masked layers of a model (or layer, or list of either), in a stable order.

    Depth-first in Keras' tracking order (the order layers were assigned), nested models and
    layers included, each layer once. Found by their `masked_kernel` method, never by variable
    name.
    """
    roots = model if isinstance(model, (list, tuple)) else [model]
    found: list[Any] = []
    seen: set[int] = set()
    for root in roots:
        for layer in _flattened(root):
            if _is_masked(layer) and id(layer) not in seen:
                seen.add(id(layer))
                found.append(layer)
    return found


def _resolve_layers(model_or_layers: Any) -> list[Any]:
    """A given list of masked layers as is; a model via `masked_layers`."""
    is_list = isinstance(model_or_layers, (list, tuple))
    if is_list and all(hasattr(layer, "mask") for layer in model_or_layers):
        layers = list(model_or_layers)
    else:
        layers = masked_layers(model_or_layers)
    if not layers:
        raise ValueError(
            f"{model_or_layers!r} has no masked layers; build it from "
            "adapt_tf.sparse.layers.MaskedDense/MaskedConv2D (or pass a list of masked layers).")
    names = [getattr(layer, "name", None) for layer in layers]
    for layer, name in zip(layers, names):
        if getattr(layer, "kernel", None) is None or getattr(layer, "mask", None) is None:
            raise ValueError(
                f"layer {name!r} has no kernel/mask yet; build the model first "
                "(call it once on a batch or use model.build(input_shape)).")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"masked layer names must be unique, found duplicates {duplicates}; pass a distinct "
            "name= to each masked layer.")
    return layers


def _value(variable: Any) -> np.ndarray:
    """A variable's (or array's) value as NumPy; `.numpy()` also covers distributed and
    mixed-precision variables."""
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)


def _kernel_shape(layer: Any) -> tuple[int, ...]:
    shape = tuple(int(dim) for dim in layer.kernel.shape)
    mask_shape = tuple(int(dim) for dim in layer.mask.shape)
    if shape != mask_shape:
        raise ValueError(
            f"layer {layer.name!r} has kernel shape {shape} but mask shape {mask_shape}; the "
            "mask must have the kernel's shape.")
    return _check_shape(shape, name=f"kernel shape of {layer.name!r}")


def sparsify(model_or_layers: Any, density: float, *, distribution: str = "erk", seed: Seed = 0,
             sampling: str = "exact") -> dict[str, float]:
    """Draws fresh masks for every masked layer and zeroes the pruned kernel entries.

    Layer densities come from `distribution` ("erk" or "uniform") on the kernel shapes. With
    sampling="exact" layer i gets exactly `layer_counts(...)[name]` ones drawn by
    `random_mask(shape, count, seed=(seed, i))`, so the model's overall density is exactly
    round(density * N) / N; with sampling="bernoulli" it gets `bernoulli_mask(shape, d_i,
    seed=(seed, i))` (the official code's sampling). Then `mask.assign(mask)` and
    `kernel.assign(kernel * mask)`.

    Args:
      model_or_layers: a Keras model or list of models (their `sparse.layers.masked_layers`)
        or a list of built masked layers (`.name`, `.kernel`, `.mask`, variables with
        `.assign`); layer names must be unique.
      density: overall target density over all masked kernels, in (0, 1].
      distribution: "erk" (official default) or "uniform".
      seed: non-negative int (or tuple of them); layer i's mask is a deterministic function
        of (seed, i).
      sampling: "exact" (default) or "bernoulli".

    Returns:
      {layer name: realised density (active / size) of the new mask}.
    """
    density = checks.density("density", density)
    key = distribution.lower() if isinstance(distribution, str) else distribution
    if key not in _DISTRIBUTIONS:
        raise ValueError(
            f"unknown distribution {distribution!r}; valid names: {sorted(_DISTRIBUTIONS)}.")
    if sampling not in _VALID_SAMPLING:
        raise ValueError(
            f"unknown sampling {sampling!r}; valid names: {list(_VALID_SAMPLING)}.")
    seed_value = _check_seed(seed)
    base_seed = seed_value if isinstance(seed_value, tuple) else (seed_value,)
    layers = _resolve_layers(model_or_layers)
    shapes = {layer.name: _kernel_shape(layer) for layer in layers}
    densities = _DISTRIBUTIONS[key](shapes, density)
    counts = layer_counts(shapes, densities, density) if sampling == "exact" else None
    realised = {}
    for index, layer in enumerate(layers):
        shape = shapes[layer.name]
        if counts is not None:
            mask = random_mask(shape, counts[layer.name], seed=(*base_seed, index))
        else:
            mask = bernoulli_mask(shape, densities[layer.name], seed=(*base_seed, index))
        layer.mask.assign(mask)
        kernel = _value(layer.kernel)
        layer.kernel.assign(kernel * mask.astype(kernel.dtype))
        realised[layer.name] = float(mask.sum()) / mask.size
    return realised


def count_active(model_or_layers: Any) -> tuple[int, int]:
    """(active mask entries, total mask entries) over all masked kernels."""
    layers = _resolve_layers(model_or_layers)
    active = sum(int(np.count_nonzero(_value(layer.mask))) for layer in layers)
    total = sum(math.prod(_kernel_shape(layer)) for layer in layers)
    return active, total


def model_density(model_or_layers: Any) -> float:
    """Active / total over all masked kernels, in [0, 1]."""
    active, total = count_active(model_or_layers)
    return active / total


def layer_densities(model_or_layers: Any) -> dict[str, float]:
    """{layer name: active / size of its mask}, in masked-layer order."""
    layers = _resolve_layers(model_or_layers)
    return {layer.name: int(np.count_nonzero(_value(layer.mask)))
            / math.prod(_kernel_shape(layer)) for layer in layers}
