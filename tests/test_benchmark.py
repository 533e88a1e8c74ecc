"""Tests of scripts/benchmark.py: the report's structure on a tiny SNGAN-32, no timing asserts.

One measurement at width 4, batches of 2, n_dis 1, no XLA, no EMA, 2 measured rounds after a
warm-up: every model, iteration kind and forced update is reported; method costs are composed
from the measured parts by the documented formulas; nothing retraces after the first call
although the G masks and D density changed; the forced D resizes moved D's density by exactly
+-0.05. The ~30 s are three train-function traces; the rounds themselves take 0.2 s.
"""
from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import sys

import pytest

_PATH = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("adapt_benchmark", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def measured(benchmark):
    setup = benchmark.Setup(g_width=4, d_width=4, d_batch=2, g_batch=2, n_dis=1, iterations=2,
                            warmup=1, xla=(False,), grad_copies=False, ema_decay=None)
    subjects = benchmark.measure(setup, log=lambda line: None)
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
    assert sparse == {"train[0, 0, 0]": 1, "train[1, 0, 0]": 1, "g_update": 1, "d_resize": 1}
    assert report["subjects"]["dense"]["trace_counts"] == {"train[0, 0, 0]": 1}
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
    assert report["torch"] is None  # only the full-width setting compares with PyTorch
    assert report["peak_rss_mb"] > 0
    assert report["machine"]["cores"] >= 1 and "tensorflow" in report["machine"]
    assert json.loads(json.dumps(report))["setup"]["g_width"] == setup.g_width
    goals = report["goals"]
    assert set(goals) == {"static_ratio", "adapt_ratio", "g_update_s", "d_resize_s", "retraces"}
    assert goals["retraces"] == {"target": 0, "measured": 0, "xla": False, "met": True}
    rows = {row["method"]: row for row in report["table"]}
    static = rows["static (d = 0.1)"]
    assert goals["static_ratio"]["measured"] == static["paired_ratio"]
    assert goals["adapt_ratio"]["measured"] == pytest.approx(
        static["paired_ratio"] * rows["ADAPT relaxed"]["cpu_s"] / static["cpu_s"])
    assert goals["adapt_ratio"]["met"] == (goals["adapt_ratio"]["measured"] <= 1.08)
    text = benchmark.format_report(report)
    for needle in ("ADAPT relaxed", "static (d = 0.1)", "retraces after the first call: 0",
                   "BR sample"):
        assert needle in text
    assert all(math.isfinite(row["ratio_to_dense"]) for row in report["table"])


def test_setup_rejects_bad_values(benchmark):
    with pytest.raises(ValueError, match="iterations"):
        benchmark.Setup(iterations=0)
    with pytest.raises(ValueError, match="density"):
        benchmark.Setup(density=1.0)
    with pytest.raises(ValueError, match="xla"):
        benchmark.Setup(xla=())
