"""Tests of scripts/toy_table.py without training: its runs are valid quickstart configs and
its table is computed as its header says (hand-made metrics rows)."""
from __future__ import annotations

import pathlib
import re

import pytest
from script_module import load_script

from adapt_tf import configurables

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
