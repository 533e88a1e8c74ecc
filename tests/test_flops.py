"""Tests of adapt_tf.flops: densities applied to measured costs, the official (paper) formula,
the exact conventions and the accumulator (costs measured with adapt_tf.flops.macs)."""
from __future__ import annotations

import numpy as np
import pytest

from adapt_tf import flops
from adapt_tf.flops import macs
from adapt_tf.sparse import layers as L

import tf_keras as keras


def _set_density(layer, n_active):
    mask = np.zeros(layer.mask.shape, np.float32).ravel()
    mask[:n_active] = 1.0
    layer.mask.assign(mask.reshape(layer.mask.shape))


def _only(costs):
    assert len(costs) == 1
    return costs[0]


def test_masked_layer_at_density_d():
    layer = L.MaskedDense(6)
    layer.build((None, 4))
    _set_density(layer, 6)  # 6 of 24 weights: d = 0.25
    cost = _only(macs.layer_macs(layer, input_shape=[4]))
    assert (cost.masked_params, cost.density) == (24, 0.25)
    assert flops.forward_macs([cost]) == 0.25 * 24 + 6  # bias stays dense
    assert flops.forward_macs([cost], {cost.name: 0.5}) == 0.5 * 24 + 6
    assert flops.forward_macs([cost], 1.0) == flops.dense_forward_macs([cost]) == 30
    assert flops.forward_macs([cost], convention="exact") == 30  # TF multiplies dense kernels
    assert flops.forward_macs([cost], convention="exact_sparse") == 12
    with pytest.raises(ValueError, match="not masked layers"):
        flops.forward_macs([cost], {"no_such_layer": 0.5})


def test_masked_conv_density_scales_weight_term_only():
    layer = L.MaskedConv2D(2, 3, padding="same")
    layer.build((None, 4, 4, 3))
    _set_density(layer, 27)  # of 54: d = 0.5
    cost = _only(macs.layer_macs(layer, input_shape=[4, 4, 3]))
    assert flops.forward_macs([cost]) == 0.5 * (3 * 2 * 9 * 16) + 2 * 16


def _tiny_gan():
    """G: z[4] -> MaskedDense 8 -> BN -> MaskedDense 12 -> [2, 2, 3];
    D: [2, 2, 3] -> MaskedConv2D 5 (2x2 valid) -> MaskedDense 1. Densities .5/.25 and .5/1."""
    z = keras.Input((4,))
    h = L.MaskedDense(8, name="g1")(z)
    h = keras.layers.BatchNormalization(name="g_bn")(h)
    h = L.MaskedDense(12, name="g2")(h)
    g = keras.Model(z, keras.layers.Reshape((2, 2, 3))(h))
    x = keras.Input((2, 2, 3))
    h = L.MaskedConv2D(5, 2, name="d1")(x)
    d = keras.Model(x, L.MaskedDense(1, name="d2")(keras.layers.Flatten()(h)))
    _set_density(g.get_layer("g1"), 16)
    _set_density(g.get_layer("g2"), 24)
    _set_density(d.get_layer("d1"), 30)
    return macs.layer_macs(g, input_shape=[4]), macs.layer_macs(d, input_shape=[2, 2, 3])


# Hand counts of _tiny_gan, per sample:
#   G sparse = .5*32 + 8 (g1) + 2*8 (BN) + .25*96 + 12 (g2) = 76;   G dense = 164
#   D sparse = .5*60 + 5 (d1) + 5 + 1 (d2) = 41;                      D dense = 71
G_SPARSE, G_DENSE, D_SPARSE, D_DENSE = 76, 164, 41, 71


def test_paper_convention_matches_hand_computation_of_the_official_formula():
    g_costs, d_costs = _tiny_gan()
    assert flops.forward_macs(g_costs) == G_SPARSE and flops.forward_macs(d_costs) == D_SPARSE
    schedule = flops.Schedule(d_batch=64, g_batch=128, n_dis=5)
    it = flops.iteration_flops(g_costs, d_costs, schedule)
    assert it.g == 76 * (64 * 5 * 1 + 128 * 3) == 53504
    assert it.d == 41 * (64 * 5 * 3 + 128 * 1) == 44608
    run = flops.training_flops(g_costs, d_costs, schedule, iterations=1000)
    # Official accumulation: G * iterations + D * iterations * n_dis.
    assert run.total == 1000 * 53504 + 1000 * 5 * 44608 == 276_544_000
    assert run.dense_total == 1000 * 164 * 704 + 1000 * 5 * 71 * 1088 == 501_696_000
    assert run.ratio == pytest.approx(276_544_000 / 501_696_000, rel=1e-12)


def test_accumulator_reproduces_official_interval_accumulation():
    """main.py adds iter_flops * interval at every mask change (D's interval counted in D
    steps); adding the same intervals afterwards gives the same totals."""
    g_costs, d_costs = _tiny_gan()
    schedule = flops.Schedule(d_batch=4, g_batch=8, n_dis=2)
    acc = flops.FlopsAccumulator(g_costs, d_costs, schedule)
    phases = [(500, {"g1": 0.5}, {"d1": 0.5}), (500, {"g1": 0.75}, {"d1": 0.25})]
    official_g = official_d = 0.0
    for iterations, g_dens, d_dens in phases:
        acc.add(iterations, g_dens, d_dens)
        g_fwd = flops.forward_macs(g_costs, g_dens)
        d_fwd = flops.forward_macs(d_costs, d_dens)
        official_g += g_fwd * (4 * 2 + 3 * 8) * iterations
        official_d += d_fwd * (3 * 4 * 2 + 8) * (iterations * 2)
    assert acc.total == pytest.approx(official_g + official_d, rel=1e-12)
    dense = G_DENSE * 32 * 1000 + D_DENSE * 32 * 2000
    assert acc.dense_total == pytest.approx(dense, rel=1e-12)
    assert acc.ratio == pytest.approx((official_g + official_d) / dense, rel=1e-12)
    resumed = flops.FlopsAccumulator(g_costs, d_costs, schedule)
    resumed.restore(acc.state())
    assert (resumed.total, resumed.dense_total, resumed.iterations) == (
        acc.total, acc.dense_total, 1000)


def test_exact_conventions_hand_computation():
    g_costs, d_costs = _tiny_gan()
    schedule = flops.Schedule(d_batch=64, g_batch=128, n_dis=5, br_interval=10,
                              g_update_interval=500, d_update_interval=1000)
    # Mask updates: G has 32 + 96 = 128 masked weights, D 60 + 5 = 65; N * ceil(log2 N) each.
    other = 128 * 7 / 500 + 65 * 7 / 1000
    exact = flops.iteration_flops(g_costs, d_costs, schedule, convention="exact")
    # D steps: G fwd on fakes + D fwd/bwd on real and fake; G step: G 3x, D fwd + input bwd;
    # BR every 10 iterations: G fwd on g_batch, D fwd on g_batch fakes and d_batch reals.
    assert exact.g == pytest.approx(164 * (5 * 64 + 3 * 128) + 164 * 128 / 10, rel=1e-12)
    assert exact.d == pytest.approx(71 * (5 * 3 * 2 * 64 + 2 * 128) + 71 * 192 / 10, rel=1e-12)
    assert exact.other == pytest.approx(other, rel=1e-12)
    assert exact.total == pytest.approx(exact.g + exact.d + exact.other, rel=1e-12)
    ideal = flops.iteration_flops(g_costs, d_costs, schedule, convention="exact_sparse")
    # Plus RigL's dense weight gradient at update steps: (dense - sparse) weight MACs.
    assert ideal.g == pytest.approx(
        76 * (5 * 64 + 3 * 128) + 76 * 128 / 10 + (164 - 76) * 128 / 500, rel=1e-12)
    assert ideal.d == pytest.approx(
        41 * (5 * 3 * 2 * 64 + 2 * 128) + 41 * 192 / 10 + (71 - 41) * 2 * 64 / 1000, rel=1e-12)
    run = flops.training_flops(g_costs, d_costs, schedule, iterations=10,
                               convention="exact_sparse")
    dense = flops.iteration_flops(g_costs, d_costs, schedule.without_updates(),
                                  convention="exact_sparse", g_densities=1.0, d_densities=1.0)
    assert run.ratio == pytest.approx(ideal.total / dense.total, rel=1e-12)
    assert dense.total == pytest.approx(exact.total - other, rel=1e-12)


def test_flops_table_rows_and_bad_input():
    g_costs, d_costs = _tiny_gan()
    schedule = flops.Schedule(d_batch=2, g_batch=2, n_dis=1)
    rows = flops.flops_table(g_costs, d_costs, schedule,
                             {"dense": (1.0, 1.0), "sparse": (None, None)}, iterations=3)
    assert [row["setting"] for row in rows] == ["dense", "sparse"]
    assert rows[0]["ratio"] == 1.0 and 0 < rows[1]["ratio"] < 1
    with pytest.raises(ValueError, match="convention"):
        flops.iteration_flops(g_costs, d_costs, schedule, convention="official")
    with pytest.raises(ValueError, match="n_dis"):
        flops.Schedule(d_batch=2, g_batch=2, n_dis=0)
