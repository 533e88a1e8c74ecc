"""Tests of scripts/toy_table.py without training: its runs are valid quickstart configs and
its table is computed as its header says (hand-made metrics rows)."""
from __future__ import annotations

import pathlib
import re

import pytest
from script_module import load_script

from adapt_tf.runs import configurables

_ROOT = pathlib.Path(__file__).resolve().parent.parent
_PATH = _ROOT / "scripts" / "toy_table.py"


@pytest.fixture(scope="module")
def toy_table():
    return load_script("toy_table")


def test_the_default_length_is_the_quickstarts(toy_table):
    text = (_ROOT / "gin_configs" / "quickstart.gin").read_text()
    assert toy_table.quickstart_steps() == int(re.search(r"train\.total_steps = (\d+)",
                                                         text).group(1))


def test_every_table_run_is_the_quickstart_with_its_method_density_and_seed(toy_table):
    runs = list(toy_table.table_runs([0.1, 0.2], [0, 1]))
    # Dense once per seed, every other method once per (d_G, seed).
    assert len(runs) == 2 + 4 * 2 * 2
    assert len({name for *_, name, _ in runs}) == len(runs)
    for label, density, seed, name, bindings in runs:
        config = configurables.parse_run_config([str(toy_table.QUICKSTART)], bindings)
        method = config.arguments["method"]
        assert config.arguments["seed"] == seed
        assert config.arguments["balance_diagnostic"] is True  # the BR column of every method
        assert method.g_density == pytest.approx(1.0 if density is None else density)
        assert name == f"{method.name}_d{density or 1.0:g}_s{seed}"
    only = list(toy_table.table_runs([0.1], [0], methods=["adapt_relaxed"]))
    assert [name for *_, name, _ in only] == ["adapt_relaxed_d0.1_s0"]


def _rows(brs, fids, d_density, flops_ratio):
    rows = [{"step": 50.0 * (i + 1), "br": br, "d_density": d_density,
             "train_flops_ratio": flops_ratio} for i, br in enumerate(brs)]
    for row, fid in zip(rows[1::2], fids):
        row.update(toy_fid=fid, toy_fid_floor=2.0, class_coverage=12.0 if fid < 10 else 9.0,
                   confident_share=0.5 + 0.01 * fid)
    return rows


def test_the_table_row_is_the_best_evaluation_and_the_late_br_median(toy_table):
    # BR second half: [0.9, 0.1, 0.4] -> median 0.4 (the first half, with 5.0, is ignored).
    first = {"rows": _rows([5.0, 0.2, 0.3, 0.9, 0.1, 0.4], [30.0, 4.0, 8.0], 0.7, 0.35)}
    assert toy_table._late_br(first["rows"]) == 0.4
    assert toy_table.best_evaluation(first["rows"])["toy_fid"] == 4.0
    table = toy_table.results_table({("ADAPT (relaxed)", 0.2): [first]})
    assert table.splitlines()[2] == ("| ADAPT (relaxed) | 20% | 4.00 | 2.00 | 12.0 | 0.54 | "
                                     "0.40 | 0.70 | 35.0 |")
    # Two seeds: mean ± sample sd (best toy FIDs 4 and 6 -> 5.00 ± 1.41).
    second = {"rows": _rows([0.5, 0.5, 0.5, 0.6, 0.6, 0.6], [6.0, 7.0, 9.0], 0.5, 0.25)}
    row = toy_table.results_table({("ADAPT (relaxed)", 0.2): [first, second]}).splitlines()[2]
    assert row.startswith("| ADAPT (relaxed) | 20% | 5.00 ± 1.41 | 2.00 | 12.0 ± 0.0 | ")
    assert row.endswith("| 0.50 ± 0.14 | 0.60 ± 0.14 | 30.0 ± 7.1 |")
    with pytest.raises(ValueError, match="no toy metric"):
        toy_table.best_evaluation([{"step": 50.0, "br": 0.5}])


def test_the_precision_runs_are_the_quickstart_with_a_seed_and_a_policy(toy_table):
    runs = list(toy_table.precision_runs([0, 1, 2]))
    assert [name for *_, name, _ in runs] == [f"quickstart_{p}_s{s}" for p in ("fp32", "bf16")
                                              for s in (0, 1, 2)]
    for label, seed, _, bindings in runs:
        arguments = configurables.parse_run_config([str(toy_table.QUICKSTART)],
                                                   bindings).arguments
        policy = {"fp32": None, "bf16": "mixed_bfloat16"}[label]
        assert (arguments["seed"], arguments.get("mixed_precision")) == (seed, policy)
        # Nothing else is bound: the README's command with a seed and a policy.
        assert len(bindings) == (1 if label == "fp32" else 2)
    only = ["quickstart_bf16_s1", "quickstart_fp32_s2"]
    assert [name for *_, name, _ in toy_table.precision_runs([0, 1, 2], only)] == [
        "quickstart_fp32_s2", "quickstart_bf16_s1"]


def _record(metrics):
    from adapt_tf import report

    return report.RunRecord(workdir="w", name="w", setting="s", cell="c", g_density=0.2,
                            band=(0.45, 0.55), total_steps=200, flops_convention="paper",
                            metrics=metrics, evaluation=None)


def test_a_runs_scores_are_its_evaluations_last_scores_and_br_windows_in_the_band(toy_table):
    nan = float("nan")
    brs = [0.45, 0.7, nan, 0.55, 0.5, 0.44]  # in the band, ends included: 0.45, 0.55, 0.5
    metrics = [{"step": 50.0 * (i + 1), "br": br, "d_density": d, "toy_fid": nan}
               for i, (br, d) in enumerate(zip(brs, [0.2, 0.2, 0.25, 0.25, 0.2, 0.3]))]
    metrics[1].update(toy_fid=80.0, toy_fid_floor=2.0, class_coverage=9.0, confident_share=0.5)
    metrics[3].update(toy_fid=9.5, toy_fid_floor=2.0, class_coverage=12.0, confident_share=0.9)
    scores = toy_table.run_scores(_record(metrics))
    assert scores == {"toy_fid": {100: 80.0, 200: 9.5}, "floor": 2.0, "coverage": 12.0,
                      "confident_share": 0.9, "in_band": 3, "windows": 5, "final_d": 0.3,
                      "d_path": "0.20 -> 0.25 -> 0.20 -> 0.30"}
    with pytest.raises(ValueError, match="no toy metric in w/metrics.csv"):
        toy_table.run_scores(_record([{"step": 50.0, "br": 0.5, "d_density": 0.2}]))


def _scores(final_fid, in_band, d_density=0.5):
    return {"toy_fid": {600: 10 * final_fid, 1200: final_fid}, "floor": 2.0, "coverage": 12.0,
            "confident_share": 0.9, "in_band": in_band, "windows": 48, "final_d": d_density,
            "d_path": "0.20 -> 0.50"}


def test_the_precision_tables_give_each_run_and_each_precisions_spread(toy_table):
    scores = [("fp32", 0, _scores(4.0, 9)), ("fp32", 1, _scores(6.0, 9)),
              ("fp32", 2, _scores(8.0, 12)), ("bf16", 0, _scores(5.0, 8)),
              ("bf16", 1, _scores(9.0, 10)), ("bf16", 2, _scores(7.0, 12))]
    runs = toy_table.precision_table(scores).splitlines()
    assert runs[0].startswith("| precision | seed | toy FID at 600 / 1200 (floor) |")
    assert runs[2] == "| fp32 | 0 | 40 / 4 (2.00) | 12 | 0.900 | 9 of 48 | 0.20 -> 0.50 |"
    spread = toy_table.spread_table(scores).splitlines()
    # fp32 4, 6, 8: mean 6, sample sd 2; bf16 5, 9, 7: 9 lies outside [4, 8].
    assert spread[2] == "| final toy FID | 6 ± 2 (4–8) | 7 ± 2 (5–9) | 2 of 3 |"
    # In the band: fp32 9, 9, 12 (mean 10, sd 1.73); bf16 8 is below 9, 12 is the top end.
    assert spread[5] == ("| BR window means in the band | 10 ± 1.73 (9–12) | "
                         "10 ± 2 (8–12) | 2 of 3 |")
    with pytest.raises(ValueError, match=r"two precisions, got \['fp32'\]"):
        toy_table.spread_table(scores[:3])
