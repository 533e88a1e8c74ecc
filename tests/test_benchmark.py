"""Tests of scripts/benchmark.py: the report's structure on a tiny SNGAN-32, no timing asserts.

One measurement at width 4, batches of 2, n_dis 1, no XLA, no EMA, 2 measured rounds after a
warm-up, without the PyTorch baseline and the peak probes: every model, iteration kind and
forced update is reported; method costs are composed from the measured parts by the documented
formulas; nothing retraces after the first call although the G masks and D density changed;
the forced D resizes moved D's density by exactly +-0.05. Most of its time is the step
functions' first traces; the rounds themselves take 0.2 s.

The pure pieces are tested on made-up numbers: the confidence interval of per-round ratios,
the goal verdicts built on it, the per-round composition, the PyTorch and peak reports, the
MAC count of an iteration and its comparison. The PyTorch baseline's executed MACs are checked
against adapt_tf's count at width 4 (skipped without torch, the optional `bench` extra).
"""
from __future__ import annotations

import json
import math
import pathlib

import pytest
from script_module import load_script

_PATH = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def benchmark():
    return load_script("benchmark")


@pytest.fixture(scope="module")
def measured(benchmark):
    setup = benchmark.Setup(g_width=4, d_width=4, d_batch=2, g_batch=2, n_dis=1, iterations=2,
                            warmup=1, xla=(False,), grad_copies=False, ema_decay=None)
    subjects = benchmark.measure(setup, log=lambda line: None, torch=False, peak=False)
    return setup, subjects, benchmark.build_report(setup, subjects)


def test_every_kind_and_update_is_measured(measured):
    setup, _, report = measured
    assert set(report["subjects"]) == {"dense", "sparse"}
    dense, sparse = report["subjects"]["dense"], report["subjects"]["sparse"]
    assert set(dense["kinds"]) == {"plain"}
    # Round 1 prunes D, round 2 grows it (round 0, the warm-up, grew it).
    assert set(sparse["kinds"]) == {"plain", "br", "g_update", "d_prune", "d_grow", "d_resize"}
    for kinds in (dense["kinds"], sparse["kinds"]):
        for name, summary in kinds.items():
            expected = 1 if name in ("d_prune", "d_grow") else setup.iterations
            assert len(summary["cpu_s"]) == len(summary["wall_s"]) == expected, name
            assert summary["median_cpu_s"] >= 0 and summary["median_wall_s"] > 0
    assert set(sparse["first_call"]) == {"plain", "br", "g_update", "d_grow"}
    assert dense["masked_weights"] == {"generator": 0, "discriminator": 0}
    assert sparse["masked_weights"]["generator"] > sparse["masked_weights"]["discriminator"] > 0


def test_no_retracing_after_masks_change(measured):
    _, _, report = measured
    sparse = report["subjects"]["sparse"]["trace_counts"]
    steps = {"_begin": 1, "_discriminator_step": 1, "_generator_step": 1, "_finish": 1}
    assert sparse == {**steps, "_window_sample": 1, "g_update": 1, "d_resize": 1}
    assert report["subjects"]["dense"]["trace_counts"] == steps
    assert report["retraces"] == 0


def test_forced_resizes_move_d_density_by_delta(measured):
    setup, subjects, _ = measured
    sparse = next(s for s in subjects if s.name == "sparse")
    decisions = sparse.controller.decisions
    assert [d["action"] for d in decisions] == ["increase", "decrease", "increase"]
    assert [d["new_density"] - d["old_density"] for d in decisions] == pytest.approx(
        [0.05, -0.05, 0.05], abs=1e-4)
    assert sparse.gan.density("discriminator") == pytest.approx(setup.density + 0.05, abs=1e-3)
    assert [event["step"] for event in sparse.dynamic.history] == [500, 1000, 1500]


def test_bf16_support_reads_the_cpu_flags(benchmark):
    flags = "flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni"
    assert benchmark.bf16_support(flags) == {"amx_bf16": False, "avx512_bf16": True}
    assert benchmark.bf16_support("flags : avx512f amx_tile amx_bf16 amx_int8") == {
        "amx_bf16": True, "avx512_bf16": False}
    # A prefix is not the flag: avx512_bf16x does not exist, avx512f alone has no bf16.
    assert benchmark.bf16_support("flags : avx512f avx512_bf16x") == {
        "amx_bf16": False, "avx512_bf16": False}


def test_heavy_op_dtypes_are_float32_under_the_float32_policy(measured, benchmark):
    _, subjects, _ = measured
    sparse = next(s for s in subjects if s.name == "sparse")
    counts = benchmark.heavy_op_dtypes(sparse)
    # The convolutions live in the D- and G-step functions the train functions call: they must
    # be found there, forward and both backward passes, and all float32 under this policy.
    assert counts and all(key.endswith(" float32") for key in counts), counts
    assert {"Conv2D float32", "Conv2DBackpropInput float32",
            "Conv2DBackpropFilter float32"} <= set(counts)


def test_methods_are_composed_by_the_schedule(measured):
    setup, _, report = measured
    sparse = report["subjects"]["sparse"]["kinds"]
    plain, br = sparse["plain"]["median_cpu_s"], sparse["br"]["median_cpu_s"]
    g_update, d_resize = sparse["g_update"]["median_cpu_s"], sparse["d_resize"]["median_cpu_s"]
    dense = report["subjects"]["dense"]["kinds"]["plain"]["median_cpu_s"]
    rows = {row["method"]: row for row in report["table"]}
    assert list(rows) == ["dense (no masks)", "static (d = 0.1)", "SDST-RigL", "ADAPT relaxed"]
    assert rows["dense (no masks)"]["ratio_to_dense"] == 1.0
    assert rows["static (d = 0.1)"]["cpu_s"] == plain
    per_round = [s / d for s, d in zip(sparse["plain"]["cpu_s"],
                                       report["subjects"]["dense"]["kinds"]["plain"]["cpu_s"])]
    assert rows["static (d = 0.1)"]["paired_ratio"] == pytest.approx(
        sorted(per_round)[0] / 2 + sorted(per_round)[1] / 2)  # median of two rounds
    adapt = plain * 0.9 + br / 10 + g_update / 500 + d_resize / 1000
    assert rows["ADAPT relaxed"]["cpu_s"] == pytest.approx(adapt)
    assert rows["ADAPT relaxed"]["ratio_to_dense"] == pytest.approx(adapt / dense)
    sdst = plain * (1 - 1 / 500) + plain / 500 + g_update / 500  # no gradient-copy iteration
    assert rows["SDST-RigL"]["cpu_s"] == pytest.approx(sdst)
    overhead = report["br_overhead"]["xla=False"]
    assert overhead["br_minus_plain_cpu_s"] == pytest.approx(br - plain)
    assert overhead["amortised_fraction"] == pytest.approx((br / plain - 1) / 10)


def test_report_is_json_and_prints(benchmark, measured):
    setup, _, report = measured
    assert report["torch"] is None and report["peak"] is None  # not measured here
    assert report["peak_rss_mb"] > 0
    assert report["machine"]["cores"] >= 1 and "tensorflow" in report["machine"]
    assert json.loads(json.dumps(report))["setup"]["g_width"] == setup.g_width
    goals = report["goals"]
    assert set(goals) == {"static_ratio", "adapt_ratio", "g_update_s", "d_resize_s", "retraces",
                          "tracing_cpu_s"}
    tracing = [cost["cpu_s"] for subject in report["subjects"].values()
               for cost in subject["tracing"].values()]
    assert goals["tracing_cpu_s"]["max"] == max(tracing)
    assert goals["tracing_cpu_s"]["met"] == (max(tracing) <= 3.0)
    assert goals["retraces"] == {"target": 0, "measured": 0, "xla": False, "met": True}
    rows = {row["method"]: row for row in report["table"]}
    static = rows["static (d = 0.1)"]
    # paired_ratio is the median of the rounded per-round ratios, the goal's of the raw ones.
    assert goals["static_ratio"]["measured"] == pytest.approx(static["paired_ratio"], rel=1e-2)
    sparse = report["subjects"]["sparse"]["kinds"]
    dense = report["subjects"]["dense"]["kinds"]["plain"]["cpu_s"]
    adapt = [(p * 0.9 + b / 10 + g / 500 + r / 1000) / d for p, b, g, r, d in zip(
        sparse["plain"]["cpu_s"], sparse["br"]["cpu_s"], sparse["g_update"]["cpu_s"],
        sparse["d_resize"]["cpu_s"], dense)]
    assert goals["adapt_ratio"]["measured"] == pytest.approx(sorted(adapt)[0] / 2
                                                             + sorted(adapt)[1] / 2, rel=1e-2)
    assert goals["adapt_ratio"]["met"] == (goals["adapt_ratio"]["interval"][1] <= 1.08)
    assert goals["g_update_s"]["met"] == (goals["g_update_s"]["max"] <= 0.2)
    text = benchmark.format_report(report)
    for needle in ("ADAPT relaxed", "static (d = 0.1)", "retraces after the first call: 0",
                   "BR sample", "same-run PyTorch: not measured", "static / dense per round",
                   "tracing (first call - median call)"):
        assert needle in text
    assert all(math.isfinite(row["ratio_to_dense"]) for row in report["table"])


def test_setup_rejects_bad_values(benchmark):
    with pytest.raises(ValueError, match="iterations"):
        benchmark.Setup(iterations=0)
    with pytest.raises(ValueError, match="density"):
        benchmark.Setup(density=1.0)
    with pytest.raises(ValueError, match="xla"):
        benchmark.Setup(xla=())


# ------------------------------------------------------------------------ pure pieces


def test_ratio_interval_is_a_t_interval_on_logs(benchmark):
    from scipy import stats

    ratios = [0.98, 1.02, 1.05, 0.99]
    interval = benchmark.ratio_interval(ratios, confidence=0.9)
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
    half = stats.t.ppf(0.95, 3) * sd / 2
    assert interval["geomean"] == pytest.approx(math.exp(mean))
    assert interval["low"] == pytest.approx(math.exp(mean - half))
    assert interval["high"] == pytest.approx(math.exp(mean + half))
    assert interval["median"] == pytest.approx(1.005)
    assert (interval["n"], interval["min"], interval["max"]) == (4, 0.98, 1.05)
    # Identical rounds: no spread, a point interval; one round: no interval at all.
    same = benchmark.ratio_interval([1.02, 1.02, 1.02])
    assert same["low"] == pytest.approx(1.02) and same["high"] == pytest.approx(1.02)
    single = benchmark.ratio_interval([1.1])
    assert single["low"] is None and single["high"] is None and single["median"] == 1.1
    # More confidence, wider interval.
    wide = benchmark.ratio_interval(ratios, confidence=0.99)
    assert wide["low"] < interval["low"] and wide["high"] > interval["high"]
    with pytest.raises(ValueError, match="positive"):
        benchmark.ratio_interval([1.0, 0.0])
    with pytest.raises(ValueError, match="positive"):
        benchmark.ratio_interval([])


def test_goal_is_met_only_with_the_whole_interval(benchmark):
    def interval(low, high, median=1.0):
        return {"low": low, "high": high, "median": median, "n": 5}

    assert benchmark._interval_goal("static_ratio", interval(0.98, 1.029), False)["met"]
    # The median under the bar is not enough: the interval reaches over it.
    goal = benchmark._interval_goal("static_ratio", interval(0.99, 1.031, 1.02), False)
    assert not goal["met"] and goal["measured"] == 1.02 and goal["interval"] == [0.99, 1.031]
    assert not benchmark._interval_goal("static_ratio", interval(None, None), False)["met"]
    assert benchmark._interval_goal("speedup_vs_torch", interval(1.26, 2.0), False,
                                    higher_is_better=True)["met"]
    assert not benchmark._interval_goal("speedup_vs_torch", interval(1.2, 2.0), False,
                                        higher_is_better=True)["met"]
    assert "not shown" in benchmark._goal_line("static_ratio", goal)


def _timings(values, key="cpu_s"):
    return [{key: v, "wall_s": v, "load": 1.0} for v in values]


def test_paired_series_composes_each_round(benchmark):
    setup = benchmark.Setup(g_width=4, d_width=4, schedule=(10, 500, 1000))
    dense = _timings([10.0, 20.0])
    parts = {"plain": _timings([11.0, 20.0]), "br": _timings([21.0, 30.0]),
             "g_update": _timings([5.0, 0.0]), "d_resize": _timings([10.0, 0.0])}
    series = benchmark.paired_series(setup, dense, parts)
    assert series["static"] == pytest.approx([1.1, 1.0])
    assert series["adapt"] == pytest.approx([(11 * 0.9 + 2.1 + 0.01 + 0.01) / 10,
                                             (20 * 0.9 + 3.0) / 20])
    assert set(benchmark.paired_series(setup, dense, {"plain": parts["plain"]})) == {"static"}


def test_kernel_iteration_macs_counts_the_executed_passes(benchmark):
    g = {"g_linear": 1.0, "g_conv": 10.0}
    d = {"d_block1_conv1": 2.0, "d_block1_shortcut": 0.0, "d_conv": 20.0}
    macs = benchmark.kernel_iteration_macs(g, d, d_batch=3, g_batch=5, n_dis=2)
    # Per D step: G forward on 3 fakes (11 each); D forward + weight grads on 6 images (22 + 22
    # each), input grads on all but the input layers (20 each). G step: G forward + weight grads
    # (11 + 11) + input grads but the linear's (10) on 5; D forward + input grads (22 + 22).
    d_step = 3 * 11 + 6 * (22 + 22 + 20)
    g_step = 5 * (11 + 11 + 10) + 5 * (22 + 22)
    assert macs == 2 * d_step + g_step


def test_compare_macs_fails_loudly_outside_the_tolerance(benchmark):
    assert benchmark.compare_macs(1e9, 1e9) == 0.0
    assert benchmark.compare_macs(1e9, 1.0005e9) == pytest.approx(5e-4)
    with pytest.raises(RuntimeError, match="same work"):
        benchmark.compare_macs(1e9, 1.01e9)


def test_torch_and_peak_reports(benchmark):
    macs = {"total": 1e9}
    dense = benchmark.Subject("dense", False, info={"macs": macs},
                              times={"plain": _timings([2.0, 4.0])})
    torch = benchmark.Subject("torch", False, info={
        "torch": "x", "threads": 2, "macs": 1e9, "macs_by_op": {}, "mac_difference": 0.0},
        times={"plain": _timings([4.0, 10.0])})
    peak = benchmark.Subject("peak", False, info={
        "flop": {"matmul": 100e9, "conv": 50e9}, "shapes": {"matmul": [1], "conv": [1]}},
        times={"matmul": _timings([1.0, 2.0]), "conv": _timings([1.0, 0.5])})
    by_label = {"dense": dense, "torch": torch, "peak": peak}
    report = benchmark._torch_report(by_label, False)
    assert report["speedup_cpu_s"]["median"] == pytest.approx(2.25)
    assert report["speedup_cpu_s"]["geomean"] == pytest.approx(math.sqrt(2 * 2.5))
    assert report["torch_median_wall_s"] == 7.0 and report["ours_median_cpu_s"] == 3.0
    peak_report = benchmark._peak_report(by_label, False)
    assert peak_report["matmul"]["best_gflops"] == pytest.approx(100.0)
    assert peak_report["conv"]["best_gflops"] == pytest.approx(100.0)
    assert peak_report["peak_gflops"] == pytest.approx(100.0)
    assert peak_report["iteration_flop"] == 2e9
    assert peak_report["iteration_best_gflops"] == pytest.approx(1.0)  # 2 GFLOP in 2 s
    assert peak_report["share_best"] == pytest.approx(0.01)
    assert peak_report["floor_s"] == pytest.approx(0.02)
    # Round 1: 1 GFLOP/s against max(100, 50); round 2: 0.5 against max(50, 100).
    assert peak_report["share_same_round_median"] == pytest.approx(0.0075)
    assert benchmark._torch_report({"dense": dense}, False) is None
    assert benchmark._peak_report({"dense": dense}, False) is None


def test_torch_baseline_does_our_macs(benchmark):
    pytest.importorskip("torch")
    setup = benchmark.Setup(g_width=4, d_width=8, d_batch=2, g_batch=3, n_dis=2, ema_decay=0.9)
    ours = benchmark.our_macs(setup)
    module = benchmark._torch_module()
    iteration = module.DenseIteration(g_width=4, d_width=8, d_batch=2, g_batch=3, n_dis=2,
                                      ema_decay=0.9)
    counted = module.counted_macs(iteration)
    assert counted["total"] == pytest.approx(ours["total"], rel=1e-9)
    generator = sum(p.numel() for p in iteration.generator.parameters())
    discriminator = sum(p.numel() for p in iteration.discriminator.parameters())
    from adapt_tf.gan import architectures

    g, d = architectures.build_models("sngan32", g_width=4, d_width=8, seed=0)
    assert generator == sum(int(w.shape.num_elements()) for w in g.trainable_weights)
    assert discriminator == sum(int(w.shape.num_elements()) for w in d.trainable_weights)
