"""Tests for adapt_tf.sparse.topology: ERK/uniform densities, exact counts, masks, sparsify."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from adapt_tf.sparse import topology


def _sngan32_generator_shapes() -> dict[str, list[int]]:
    """Masked kernels of the SNGAN CIFAR-10 G (docs/ALGORITHM.md §8), Keras layout."""
    shapes = {"l1": [128, 4 * 4 * 256]}
    for block in range(3):
        shapes[f"block{block}/c1"] = [3, 3, 256, 256]
        shapes[f"block{block}/c2"] = [3, 3, 256, 256]
        shapes[f"block{block}/shortcut"] = [1, 1, 256, 256]
    shapes["out"] = [3, 3, 256, 3]
    return shapes


def _sngan32_discriminator_shapes() -> dict[str, list[int]]:
    """Masked kernels of the SNGAN CIFAR-10 D (docs/ALGORITHM.md §8), Keras layout."""
    shapes = {
        "block1/c1": [3, 3, 3, 128],
        "block1/c2": [3, 3, 128, 128],
        "block1/shortcut": [1, 1, 3, 128],
        "block2/c1": [3, 3, 128, 128],
        "block2/c2": [3, 3, 128, 128],
        "block2/shortcut": [1, 1, 128, 128],
    }
    for block in (3, 4):
        shapes[f"block{block}/c1"] = [3, 3, 128, 128]
        shapes[f"block{block}/c2"] = [3, 3, 128, 128]
    shapes["linear"] = [128, 1]
    return shapes


def _total(shapes) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


# ERK densities of SNGAN-CIFAR (G 256, D 128 channels) from the official code's formula
# (docs/ALGORITHM.md §4), two significant digits: d -> (G: l1, 3x3, 1x1 sc, out; D: first
# 3x3, first 1x1 sc, 3x3, block2 1x1 sc, linear).
_PAPER_TABLE = {
    0.1: (0.38, 0.042, 0.37, 1.0, 1.0, 1.0, 0.086, 0.76, 1.0),
    0.3: (1.0, 0.156, 1.0, 1.0, 1.0, 1.0, 0.286, 1.0, 1.0),
    0.5: (1.0, 0.397, 1.0, 1.0, 1.0, 1.0, 0.49, 1.0, 1.0),
}


def test_sngan32_masked_totals():
    assert _total(_sngan32_generator_shapes()) == 4_266_752
    assert _total(_sngan32_discriminator_shapes()) == 1_052_544


@pytest.mark.parametrize("density", sorted(_PAPER_TABLE))
def test_erk_reproduces_paper_notes_table_and_budget(density):
    g_shapes, d_shapes = _sngan32_generator_shapes(), _sngan32_discriminator_shapes()
    g, d = topology.erk_densities(g_shapes, density), topology.erk_densities(d_shapes, density)
    expected = _PAPER_TABLE[density]
    got = (g["l1"], g["block0/c1"], g["block0/shortcut"], g["out"],
           d["block1/c1"], d["block1/shortcut"], d["block1/c2"], d["block2/shortcut"],
           d["linear"])
    for want, have in zip(expected, got):
        if want == 1.0:
            assert have == 1.0
        else:  # The table prints 2-3 significant digits.
            decimals = len(repr(want).split(".")[1])
            assert have == pytest.approx(want, abs=0.5 * 10 ** -decimals)
    # Same-shape layers share a density; every layer of a 3x3 kind equals the table's column.
    assert {g[f"block{b}/{c}"] for b in range(3) for c in ("c1", "c2")} == {g["block0/c1"]}
    assert {d[f"block{b}/{c}"] for b in (2, 3, 4) for c in ("c1", "c2")} == {d["block1/c2"]}
    for shapes, densities in ((g_shapes, g), (d_shapes, d)):
        assert all(0.0 < value <= 1.0 for value in densities.values())
        active = sum(densities[n] * math.prod(s) for n, s in shapes.items())
        assert active == pytest.approx(density * _total(shapes), rel=1e-12)
        counts = topology.layer_counts(shapes, densities, density)
        assert sum(counts.values()) == round(density * _total(shapes))


def _official_erk(shapes, density, erk_power_scale=1.0):
    """The ITOP / official ADAPT `Masking.init` ERK loop, transcribed in its own form:
    rhs counts ones of sparse layers minus zeros of dense ones, one round per maximum."""
    dense_layers = set()
    while True:
        divisor, rhs, raw_probabilities = 0.0, 0.0, {}
        for name, shape in shapes.items():
            n_param = np.prod(shape)
            n_zeros, n_ones = n_param * (1 - density), n_param * density
            if name in dense_layers:
                rhs -= n_zeros
            else:
                rhs += n_ones
                raw_probabilities[name] = (np.sum(shape) / np.prod(shape)) ** erk_power_scale
                divisor += raw_probabilities[name] * n_param
        epsilon = rhs / divisor
        max_prob = np.max(list(raw_probabilities.values()))
        if max_prob * epsilon <= 1:
            break
        dense_layers.update(name for name, raw in raw_probabilities.items() if raw == max_prob)
    return {name: 1.0 if name in dense_layers else epsilon * raw_probabilities[name]
            for name in shapes}


@pytest.mark.parametrize("density", [0.05, 0.1, 0.2, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("network", ["generator", "discriminator"])
def test_erk_equals_the_official_loop_on_sngan32_shapes(network, density):
    shapes = (_sngan32_generator_shapes() if network == "generator"
              else _sngan32_discriminator_shapes())
    expected = _official_erk(shapes, density)
    got = topology.erk_densities(shapes, density)
    assert list(got) == list(shapes)
    for name in shapes:
        # Same arithmetic in another summation order: float64 agrees to ~1e-15.
        assert got[name] == pytest.approx(expected[name], abs=1e-9, rel=0), name


def test_erk_hand_computed_two_layers():
    # Scores: a [2, 2] -> 4/4 = 1, b [10, 10] -> 20/100 = 0.2. N = 104, d = 0.5 -> 52 active.
    # eps = 52 / (1 * 4 + 0.2 * 100) = 52 / 24 > 1, so a is dense; then
    # eps = (52 - 4) / 20 = 2.4 and b gets 0.48.
    shapes = {"a": [2, 2], "b": [10, 10]}
    densities = topology.erk_densities(shapes, 0.5)
    assert densities == {"a": 1.0, "b": pytest.approx(0.48)}
    assert list(densities) == ["a", "b"]


def test_erk_power_scale_zero_is_uniform_and_density_one_is_dense():
    shapes = {"a": [3, 3, 4, 8], "b": [16, 2]}
    assert topology.erk_densities(shapes, 0.3, power_scale=0.0) == pytest.approx(
        {"a": 0.3, "b": 0.3})
    assert topology.erk_densities(shapes, 1.0) == {"a": 1.0, "b": 1.0}
    # One layer at density 1: eps * score = (1 / (11/36)) * (11/36) rounds to 1 + 2^-52 > 1,
    # so every layer joins the dense set; still all 1.
    assert topology.erk_densities({"x": [2, 3, 6]}, 1.0) == {"x": 1.0}


def test_uniform_densities():
    shapes = {"x": [3, 5], "y": [1, 1, 2, 7]}
    assert topology.uniform_densities(shapes, 0.25) == {"x": 0.25, "y": 0.25}


def test_layer_counts_hit_exact_total_with_at_most_one_adjustment():
    # 7 layers of 3 weights at d = 0.5: each rounds 1.5 -> 2 (half to even), total 14 > 10.5 ->
    # round(10.5) = 10; so four layers drop one weight each.
    shapes = {f"l{i}": [3] for i in range(7)}
    densities = topology.uniform_densities(shapes, 0.5)
    counts = topology.layer_counts(shapes, densities, 0.5)
    assert sum(counts.values()) == 10
    assert all(abs(counts[n] - 1.5) <= 0.5 for n in shapes)
    # Dense layers keep every weight; the others absorb the rounding.
    shapes = {"dense": [2, 2], "b": [10, 10]}
    counts = topology.layer_counts(shapes, {"dense": 1.0, "b": 0.483}, 0.5)
    assert counts == {"dense": 4, "b": 48}


# (shapes, densities, density, counts): the rounding gap closed on the largest remainders
# d_l n_l - count_l (+1) or the smallest (-1), ties by layer order, dense layers untouched.
_COUNT_CASES = [
    # round: 1, 2, 3, 4 (4.5 half to even), 3, 10 = 23; round(25.25) = 25: +1 on the two
    # largest remainders, d (0.5) and e (0.45, reaching its size 4); f has the largest
    # d_l n_l + count_l but a small remainder.
    ({"a": [10], "b": [10], "c": [10], "d": [10], "e": [4], "f": [20]},
     {"a": 0.14, "b": 0.23, "c": 0.34, "d": 0.45, "e": 0.8625, "f": 0.51}, 25.25 / 64,
     {"a": 1, "b": 2, "c": 3, "d": 5, "e": 4, "f": 10}),
    # counts 4 + 3 + 3 + 1 = 11, target 9: -1 on the two smallest remainders, c (-0.4) and
    # g (-0.4, down to 0), not e (+0.2).
    ({"dense": [4], "c": [10], "e": [10], "g": [10]},
     {"dense": 1.0, "c": 0.26, "e": 0.32, "g": 0.06}, 9 / 34,
     {"dense": 4, "c": 2, "e": 3, "g": 0}),
    # -1 on both sparse layers (as many candidates as the gap); the dense layer's remainder
    # (0) would come before e's (+0.2) but it is never a candidate.
    ({"dense": [4], "c": [10], "e": [10]}, {"dense": 1.0, "c": 0.26, "e": 0.32}, 8 / 24,
     {"dense": 4, "c": 2, "e": 2}),
    # a rounds up to its size (9.6 -> 10) and has the smallest remainder: it gives one back.
    ({"a": [10], "b": [10]}, {"a": 0.96, "b": 0.37}, 13.3 / 20, {"a": 9, "b": 4}),
]


@pytest.mark.parametrize("shapes, densities, density, expected", _COUNT_CASES)
def test_layer_counts_close_the_gap_on_the_largest_remainders(shapes, densities, density,
                                                              expected):
    counts = topology.layer_counts(shapes, densities, density)
    assert counts == expected
    assert sum(counts.values()) == round(density * _total(shapes))


def test_layer_counts_rejects_mismatched_inputs():
    shapes = {"a": [10], "b": [10]}
    with pytest.raises(ValueError, match="cannot close a gap"):
        topology.layer_counts(shapes, {"a": 0.1, "b": 0.1}, 0.9)
    with pytest.raises(ValueError, match="same shapes"):
        topology.layer_counts(shapes, {"a": 0.1}, 0.1)


def test_random_mask_exact_count_and_seeding():
    mask = topology.random_mask([3, 3, 4, 5], 17, seed=(0, 2))
    assert mask.dtype == np.float32 and mask.shape == (3, 3, 4, 5)
    assert set(np.unique(mask)) <= {0.0, 1.0} and mask.sum() == 17
    np.testing.assert_array_equal(mask, topology.random_mask([3, 3, 4, 5], 17, seed=(0, 2)))
    assert not np.array_equal(mask, topology.random_mask([3, 3, 4, 5], 17, seed=(0, 3)))
    assert not np.array_equal(mask, topology.random_mask([3, 3, 4, 5], 17, seed=1))
    assert topology.random_mask([4], 0, seed=0).sum() == 0
    assert topology.random_mask([4], 4, seed=0).sum() == 4


def test_bernoulli_mask_density_close_to_target():
    mask = topology.bernoulli_mask([100, 200], 0.3, seed=(5, 0))
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
    # Binomial(20000, 0.3): std of the mean is 0.0032; 5 sigma.
    assert abs(mask.mean() - 0.3) < 0.016
    np.testing.assert_array_equal(mask, topology.bernoulli_mask([100, 200], 0.3, seed=(5, 0)))
    assert topology.bernoulli_mask([7, 3], 1.0, seed=0).sum() == 21


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), True, "0.3", None])
def test_bad_density_raises(bad):
    with pytest.raises(ValueError, match=r"density must be .*\(0, 1\]"):
        topology.erk_densities({"a": [2, 2]}, bad)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        topology.uniform_densities({"a": [2, 2]}, bad)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="MaskedDense/MaskedConv2D"):
        topology.erk_densities({}, 0.5)
    with pytest.raises(ValueError, match=r"non-positive dimension 0"):
        topology.erk_densities({"a": [3, 0]}, 0.5)
    with pytest.raises(ValueError, match="at least one dimension"):
        topology.uniform_densities({"a": []}, 0.5)
    with pytest.raises(ValueError, match="n_active must be an int in \\[0, 6\\]"):
        topology.random_mask([2, 3], 7, seed=0)
    with pytest.raises(ValueError, match="non-negative dimension|non-positive dimension -1"):
        topology.random_mask([2, -1], 1, seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        topology.random_mask([2, 3], 1, seed=-1)
    with pytest.raises(ValueError, match="power_scale"):
        topology.erk_densities({"a": [2, 2]}, 0.5, power_scale=float("inf"))


# Whole messages of the errors a user meets first: what was wrong, the value, and the fix.
_FULL_MESSAGES = [
    (lambda: topology.erk_densities({"a": [2, 2]}, "0.3"),
     "density must be a real number in (0, 1], got '0.3' (str); pass e.g. 0.3 for 30% "
     "active weights."),
    (lambda: topology.erk_densities({"a": [2, 2]}, 1.5),
     "density must be in (0, 1], got 1.5; pass the fraction of active weights, e.g. 0.3 for "
     "30% (1.0 is dense)."),
    (lambda: topology.random_mask(5, 1, seed=0),
     "shape must be a sequence of positive ints such as [3, 3, 64, 128], got 5."),
    (lambda: topology.random_mask([], 0, seed=0),
     "shape must have at least one dimension, got []; pass the kernel shape, e.g. [in, out] "
     "for Dense or [kh, kw, in, out] for Conv2D."),
    (lambda: topology.erk_densities({"a": [2, 0.5]}, 0.5),
     "shape of 'a' must contain ints, got [2, 0.5]; pass the kernel shape as ints."),
    (lambda: topology.erk_densities({"a": [3, 0]}, 0.5),
     "shape of 'a' [3, 0] has a non-positive dimension 0; every kernel dimension must be >= 1 "
     "(a layer with no weights cannot be masked)."),
    (lambda: topology.erk_densities([[2, 2]], 0.5),
     "shapes must be a mapping {layer name: kernel shape}, got list."),
    (lambda: topology.erk_densities({}, 0.5),
     "shapes is empty: there are no masked kernels to sparsify; build the network from "
     "adapt_tf.sparse.layers.MaskedDense/MaskedConv2D."),
    (lambda: topology.erk_densities({"a": [2, 2]}, 0.5, power_scale=-1.0),
     "power_scale must be a finite real >= 0, got -1.0; the official value is 1.0."),
    (lambda: topology.layer_counts({"a": [10]}, {"a": 2.0}, 0.5),
     "density of 'a' must be in (0, 1], got 2.0; pass the fraction of active weights, e.g. "
     "0.3 for 30% (1.0 is dense)."),
    (lambda: topology.layer_counts({"a": [10]}, {"b": 0.5}, 0.5),
     "densities has layers ['b'] but shapes has ['a']; compute densities from the same "
     "shapes (erk_densities or uniform_densities)."),
]


@pytest.mark.parametrize("index", range(len(_FULL_MESSAGES)))
def test_error_messages_in_full(index):
    call, message = _FULL_MESSAGES[index]
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


class _FakeVariable:
    """Holds an array and supports the variable surface topology uses (.shape, .assign)."""

    def __init__(self, value):
        self.value = np.asarray(value, dtype=np.float32)

    @property
    def shape(self):
        return self.value.shape

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)

    def assign(self, value):
        assert np.shape(value) == self.value.shape
        self.value = np.asarray(value, dtype=np.float32)


class _FakeLayer:
    def __init__(self, name, shape, seed):
        self.name = name
        self.kernel = _FakeVariable(np.random.default_rng(seed).normal(size=shape) + 3.0)
        self.mask = _FakeVariable(np.ones(shape))


def _fake_layers():
    return [_FakeLayer("dense_in", [6, 40], 0), _FakeLayer("conv", [3, 3, 8, 16], 1),
            _FakeLayer("dense_out", [16, 1], 2)]


@pytest.mark.parametrize("distribution", ["erk", "uniform"])
def test_sparsify_fake_layers_exact_count_and_zeroed_kernels(distribution):
    layers = _fake_layers()
    total = 6 * 40 + 3 * 3 * 8 * 16 + 16
    realised = topology.sparsify(layers, 0.2, distribution=distribution, seed=3)
    active, n = topology.count_active(layers)
    assert (active, n) == (round(0.2 * total), total)
    assert topology.model_density(layers) == round(0.2 * total) / total
    assert topology.layer_densities(layers) == realised
    for layer in layers:
        kernel, mask = np.asarray(layer.kernel), np.asarray(layer.mask)
        assert np.all(kernel[mask == 0] == 0) and np.all(kernel[mask == 1] != 0)
    if distribution == "erk":
        shapes = {layer.name: layer.mask.shape for layer in layers}
        densities = topology.erk_densities(shapes, 0.2)
        counts = topology.layer_counts(shapes, densities, 0.2)
        assert realised == {name: counts[name] / math.prod(shapes[name]) for name in shapes}
        assert realised["dense_out"] == 1.0  # ERK makes the small final layer dense.


def test_sparsify_is_deterministic_in_seed_and_bernoulli_is_approximate():
    first, second, third = _fake_layers(), _fake_layers(), _fake_layers()
    topology.sparsify(first, 0.3, seed=7)
    topology.sparsify(second, 0.3, seed=7)
    topology.sparsify(third, 0.3, seed=8)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(np.asarray(a.mask), np.asarray(b.mask))
    assert any(not np.array_equal(np.asarray(a.mask), np.asarray(c.mask))
               for a, c in zip(first, third))
    # Layer i is drawn from (seed, i): reproducible outside sparsify; (7,) is the same as 7.
    shapes = {layer.name: layer.mask.shape for layer in first}
    counts = topology.layer_counts(shapes, topology.erk_densities(shapes, 0.3), 0.3)
    np.testing.assert_array_equal(
        np.asarray(first[1].mask), topology.random_mask([3, 3, 8, 16], counts["conv"], seed=(7, 1)))
    tupled = _fake_layers()
    topology.sparsify(tupled, 0.3, seed=(7,))
    for a, b in zip(first, tupled):
        np.testing.assert_array_equal(np.asarray(a.mask), np.asarray(b.mask))
    layers = _fake_layers()
    topology.sparsify(layers, 0.3, seed=7, sampling="bernoulli")
    assert abs(topology.model_density(layers) - 0.3) < 0.08
    for layer in layers:
        assert np.all(np.asarray(layer.kernel)[np.asarray(layer.mask) == 0] == 0)


def test_sparsify_defaults_case_and_bernoulli_sampling():
    default, explicit, upper = _fake_layers(), _fake_layers(), _fake_layers()
    topology.sparsify(default, 0.3)
    topology.sparsify(explicit, 0.3, distribution="erk", seed=0, sampling="exact")
    topology.sparsify(upper, 0.3, distribution="ERK")  # names are case-insensitive
    for a, b, c in zip(default, explicit, upper):
        np.testing.assert_array_equal(np.asarray(a.mask), np.asarray(b.mask))
        np.testing.assert_array_equal(np.asarray(a.mask), np.asarray(c.mask))
    # Bernoulli sampling draws bernoulli_mask(shape, d_l, seed=(seed, l)), not exact counts.
    layers = _fake_layers()
    topology.sparsify(layers, 0.3, seed=7, sampling="bernoulli")
    shapes = {layer.name: layer.mask.shape for layer in layers}
    densities = topology.erk_densities(shapes, 0.3)
    for index, layer in enumerate(layers):
        np.testing.assert_array_equal(np.asarray(layer.mask), topology.bernoulli_mask(
            shapes[layer.name], densities[layer.name], seed=(7, index)))
    with pytest.raises(ValueError, match="unknown distribution None"):
        topology.sparsify(_fake_layers(), 0.3, distribution=None)


@pytest.mark.parametrize("call, match", [
    (lambda: topology.random_mask([4], 2, seed=()), r"seed must be .* got \(\)"),
    (lambda: topology.random_mask([4], 2.0, seed=0), r"n_active must be an int .* got 2.0"),
    (lambda: topology.random_mask([4], True, seed=0), r"n_active must be an int .* got True"),
    (lambda: topology.erk_densities({"a": 5}, 0.5), r"sequence of positive ints .* got 5"),
    (lambda: topology.erk_densities({"a": [2, 2.5]}, 0.5), r"must contain ints"),
    (lambda: topology.erk_densities({"a": [2, True]}, 0.5), r"must contain ints"),
    (lambda: topology.erk_densities({"a": [2, 2]}, 0.5, power_scale=True),
     r"power_scale must be a finite real >= 0, got True"),
])
def test_more_bad_inputs_raise_value_errors_naming_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_sparsify_errors():
    with pytest.raises(ValueError, match=r"unknown distribution 'gaussian'.*\['erk', 'uniform'\]"):
        topology.sparsify(_fake_layers(), 0.5, distribution="gaussian")
    with pytest.raises(ValueError, match=r"unknown sampling 'poisson'.*\['exact', 'bernoulli'\]"):
        topology.sparsify(_fake_layers(), 0.5, sampling="poisson")
    with pytest.raises(ValueError, match=r"density must be in \(0, 1\], got 0"):
        topology.sparsify(_fake_layers(), 0)
    with pytest.raises(ValueError, match="MaskedDense/MaskedConv2D"):
        topology.sparsify([], 0.5)
    with pytest.raises(ValueError, match="MaskedDense/MaskedConv2D"):
        topology.model_density([])
    layers = _fake_layers()
    layers[1].name = "dense_in"
    with pytest.raises(ValueError, match=r"duplicates \['dense_in'\]"):
        topology.sparsify(layers, 0.5)
    layers = _fake_layers()
    layers[0].mask = _FakeVariable(np.ones([40, 6]))
    with pytest.raises(ValueError, match="mask must have the kernel's shape"):
        topology.sparsify(layers, 0.5)
    layers = _fake_layers()
    layers[2].kernel = None
    with pytest.raises(ValueError, match="build the model first"):
        topology.model_density(layers)


def _layers_with(index, **attributes):
    layers = _fake_layers()
    for name, value in attributes.items():
        setattr(layers[index], name, value)
    return layers


@pytest.mark.parametrize("call, message", [
    (lambda: topology.model_density(_layers_with(2, kernel=None)),
     "layer 'dense_out' has no kernel/mask yet; build the model first (call it once on a "
     "batch or use model.build(input_shape))."),
    (lambda: topology.sparsify(_layers_with(1, name="dense_in"), 0.5),
     "masked layer names must be unique, found duplicates ['dense_in']; pass a distinct "
     "name= to each masked layer."),
    (lambda: topology.layer_counts({"a": [10], "b": [10]}, {"a": 0.1, "b": 0.1}, 0.9),
     "densities give 2 active weights but density=0.9 asks for 18 of 20; +-1 per layer "
     "cannot close a gap of 16. Compute densities for the same density (e.g. "
     "erk_densities(shapes, density))."),
])
def test_model_level_error_messages_in_full(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def _tiny_masked_model():
    import tf_keras as keras

    from adapt_tf.sparse.layers import MaskedConv2D, MaskedDense

    inputs = keras.Input([6, 6, 3])
    x = MaskedConv2D(8, 3, padding="same", name="conv1")(inputs)
    x = MaskedConv2D(8, 1, spectral_norm=True, name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(4, name="dense_unmasked")(x)  # Not masked: must be ignored.
    outputs = MaskedDense(1, name="head")(x)
    return keras.Model(inputs, outputs)


def test_sparsify_real_keras_model():
    import tensorflow as tf

    model = _tiny_masked_model()
    total = 3 * 3 * 3 * 8 + 1 * 1 * 8 * 8 + 4 * 1
    dense_before = model.get_layer("dense_unmasked").kernel.numpy().copy()
    realised = topology.sparsify(model, 0.25, seed=11)
    assert list(realised) == ["conv1", "conv2", "head"]
    assert topology.count_active(model) == (round(0.25 * total), total)
    assert topology.model_density(model) == round(0.25 * total) / total
    assert topology.layer_densities(model) == realised
    for name in realised:
        layer = model.get_layer(name)
        mask = layer.mask.numpy()
        assert layer.density == pytest.approx(realised[name])
        assert np.all(layer.kernel.numpy()[mask == 0] == 0)
    np.testing.assert_array_equal(model.get_layer("dense_unmasked").kernel.numpy(), dense_before)
    # The same seed on a fresh model gives the same masks; a list of models is accepted too.
    again = _tiny_masked_model()
    topology.sparsify([again], 0.25, seed=11)
    for name in realised:
        np.testing.assert_array_equal(model.get_layer(name).mask.numpy(),
                                      again.get_layer(name).mask.numpy())
    # The forward pass sees only the active weights.
    images = tf.random.stateless_normal([2, 6, 6, 3], seed=[1, 2])
    assert model(images).shape == (2, 1)


def test_model_without_masked_layers_raises():
    import tf_keras as keras

    model = keras.Sequential([keras.Input([3]), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="build it from adapt_tf.sparse.layers.MaskedDense"):
        topology.sparsify(model, 0.5)
    from adapt_tf.sparse.layers import MaskedDense

    unbuilt = keras.Sequential([MaskedDense(2)])
    with pytest.raises(ValueError, match="build the model first"):
        topology.model_density(unbuilt)


@pytest.mark.parametrize("name, width", [("biggan128", 4), ("sngan128", 1), ("sngan256", 1)])
def test_erk_sparsify_of_the_larger_architectures_at_tiny_width(name, width):
    # Mask bookkeeping beyond the paper's sizes: ERK's budget is met exactly over every masked
    # kernel, each layer gets its ERK count, and masked-out kernel entries are zero.
    from adapt_tf.gan import architectures
    from adapt_tf.sparse.layers import masked_layers

    arch = architectures.architecture(name)
    models = architectures.build_models(name, g_width=width, d_width=8,
                                        num_classes=3 if arch.conditional else None)
    for seed, model in enumerate(models):
        layers = masked_layers(model)
        shapes = {layer.name: tuple(layer.kernel.shape) for layer in layers}
        counts = topology.layer_counts(shapes, topology.erk_densities(shapes, 0.2), density=0.2)
        topology.sparsify(model, 0.2, seed=seed)
        assert topology.count_active(model) == (sum(counts.values()), _total(shapes))
        assert sum(counts.values()) == round(0.2 * _total(shapes))
        for layer in layers:
            mask = layer.mask.numpy()
            assert int(mask.sum()) == counts[layer.name]
            assert not np.any(layer.kernel.numpy()[mask == 0])


_DUCK_MODEL = '''
import sys
from adapt_tf.sparse import topology
import tf_keras as keras

class Masked(keras.layers.Layer):
    def build(self, input_shape):
        shape = [int(input_shape[-1]), 5]
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="ones")
        self.mask = self.add_weight(name="mask", shape=shape, initializer="ones",
                                    trainable=False)

    def masked_kernel(self):
        return self.kernel * self.mask

    def call(self, x):
        return x @ self.masked_kernel()

model = keras.Sequential([keras.Input([4]), Masked(name="a"), keras.layers.Dense(3),
                          Masked(name="b")])
realised = topology.sparsify(model, 0.5, seed=3)
print(list(realised), topology.count_active(model), "adapt_tf.sparse.layers" in sys.modules)
'''


def test_a_model_is_resolved_whether_or_not_adapt_tf_layers_was_imported():
    # Masked layers are found by their `masked_kernel` method, so a model's masks do not depend
    # on which modules were imported before. Only a fresh process can show it: this one has
    # imported adapt_tf.sparse.layers. Kernels [4, 5] and [3, 5], the Dense ignored: round(0.5 * 35)
    # = 18 active, the layers in tracking order.
    result = subprocess.run([sys.executable, "-c", _DUCK_MODEL], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "['a', 'b'] (18, 35) False"
