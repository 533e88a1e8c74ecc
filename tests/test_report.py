"""Tests of adapt_tf.report on hand-written workdirs (operative config, metrics.csv, eval.json):
the paper-layout tables next to the paper's values, the CSV, the PNGs, workdir expansion."""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import subprocess
import sys
from dataclasses import replace as dataclasses_replace
from pathlib import Path

import numpy as np
import pytest

from adapt_tf import report
from adapt_tf.runs import records as runs_lib

ROOT = Path(__file__).resolve().parent.parent

CONFIG = """DENSITY = {density}
method.name = '{method}'
method.g_density = %DENSITY
{extra}
train.method = @method()
train.architecture = 'sngan32'
train.dataset = 'cifar10'
train.total_steps = 400
"""
FIELDS = ["step", "br", "g_density", "d_density", "train_flops", "train_flops_ratio", "fid"]


def _workdir(root, name, *, method, density, rows, extra="", evaluation=None):
    path = root / name
    path.mkdir(parents=True)
    (path / "operative_config.gin").write_text(
        CONFIG.format(density=density, method=method, extra=extra))
    with open(path / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows([dict(zip(FIELDS, row)) for row in rows])
    if evaluation is not None:
        (path / "eval.json").write_text(json.dumps(evaluation))
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    adapt = _workdir(
        root, "adapt/d10", method="adapt_relaxed", density=0.1,
        rows=[(100, 0.2, 0.1, 0.1, 1e15, 0.30, ""), (200, 0.6, 0.1, 0.15, 2e15, 0.32, 20.0),
              (300, 0.5, 0.1, 0.15, 3e15, 0.34, ""), (400, 0.5, 0.1, 0.15, 4e15, 0.35, 18.0)],
        evaluation={"num_samples": 50000, "checkpoints": {
            "best": {"step": 400, "fid": 14.0, "is_mean": 7.0, "is_std": 0.1},
            "last": {"step": 400, "fid": 14.0, "is_mean": 7.0, "is_std": 0.1}}})
    strong = _workdir(root, "strong/d10", method="static_strong", density=0.1,
                      extra="method.setting = 'strict'",
                      rows=[(100, 0.9, 0.1, 0.5, 2e15, 0.6, ""),
                            (200, 0.8, 0.1, 0.5, 4e15, 0.6, 30.0)])
    dense = _workdir(root, "dense/d100", method="dense", density=0.1,
                     rows=[(200, 0.5, 1.0, 1.0, 9e15, 1.0, 12.0),
                           (400, 0.5, 1.0, 1.0, 1.8e16, 1.0, 11.0)])
    return root, [adapt, strong, dense]


@pytest.fixture(scope="module")
def written(runs):
    root, workdirs = runs
    return report.write_report(workdirs, str(root / "out"))


def test_csv_rows_hold_our_and_the_papers_numbers(written):
    with open(written["csv"]) as f:
        rows = {r["cell"]: r for r in csv.DictReader(f)}
    adapt, strong, dense = (rows["adapt_relaxed"], rows["static_strong_strict"],
                            rows["dense"])
    assert (adapt["setting"], float(adapt["g_density"])) == ("sngan_cifar10", 0.1)
    assert (float(adapt["fid"]), adapt["fid_source"]) == (14.0, "eval.json best checkpoint")
    assert float(adapt["paper_fid"]) == 14.19
    assert float(adapt["train_flops_ratio"]) == 0.35
    assert float(adapt["final_d_density"]) == 0.15
    assert (float(strong["fid"]), strong["fid_source"]) == (30.0, "training (best logged)")
    assert math.isnan(float(strong["paper_fid"]))
    assert (int(strong["steps"]), int(strong["total_steps"])) == (200, 400)
    assert (float(dense["g_density"]), float(dense["fid"]), float(dense["paper_fid"])) == (
        1.0, 11.0, 10.74)


def test_markdown_tables_follow_the_papers_layout(written):
    text = open(written["markdown"]).read()
    assert "## sngan_cifar10: SNGAN on CIFAR-10 (32x32)" in text
    fid_table = text.split("### FID")[1].split("###")[0]
    # Ours from eval.json's 50,000 (the other runs' training FIDs record no count).
    assert "Samples per FID: ours 50,000; the paper's 50,000." in fid_table
    lines = [line for line in fid_table.splitlines() if line.startswith("|")]
    assert lines[0] == "| method | 10% | 20% | 30% | 50% | 100% |"
    # Rows in the paper's order; ours (paper); * = best FID logged during training.
    assert lines[2:] == [
        "| Dense | – | – | – | – | 11.00* (10.74) |",
        "| ADAPT_relax | 14.00 (14.19) | – (13.19) | – (12.38) | – (10.60) | – |",
        "| Static-Strong (strict) | 30.00* (partial) | – | – | – | – |"]
    flops_table = text.split("### Normalised training FLOPs")[1].split("##")[0]
    assert "| ADAPT_relax | 35.00% | – | – | – | – |" in flops_table
    for name in ("comparison.png", "run_adapt_d10.png", "run_strong_d10.png"):
        assert f"]({name})" in text


def test_plots_are_written_as_images(written):
    import matplotlib.image

    names = sorted(os.path.basename(p) for p in written["plots"])
    assert names == ["comparison.png", "run_adapt_d10.png", "run_dense_d100.png",
                     "run_strong_d10.png"]
    for path in written["plots"]:
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[:2] == (850, 1200) and np.std(pixels[..., :3]) > 0.05


def test_workdir_patterns_and_errors(runs, tmp_path, caplog):
    root, workdirs = runs
    assert report.expand_workdirs([str(root / "*" / "d10")]) == sorted(workdirs[:2])
    assert report.expand_workdirs([workdirs[2], workdirs[2]]) == [workdirs[2]]
    # A pattern matching files inside runs (their metrics.csv, eval.json...) selects the runs.
    assert report.expand_workdirs([str(root / "*" / "*" / "*")]) == sorted(workdirs)
    assert report.expand_workdirs([str(root / "adapt" / "d10" / "*.csv")]) == [workdirs[0]]
    # The shell expands `runs/*/*/*` into paths, some in no run (a library script's outputs).
    stray = tmp_path / "library" / "metrics.csv"
    stray.parent.mkdir()
    stray.write_text("step\n")
    inside = os.path.join(workdirs[1], "metrics.csv")
    with caplog.at_level(logging.WARNING):
        assert report.expand_workdirs([inside, str(stray), workdirs[1]]) == [workdirs[1]]
    assert f"Not in a run directory, left out: {stray}" in caplog.messages
    with pytest.raises(ValueError, match="is not a run directory"):
        report.expand_workdirs([str(stray)])
    assert report.default_output_dir(workdirs) == str(root / "report")
    with pytest.raises(ValueError, match="not a run directory"):
        report.expand_workdirs([str(tmp_path)])
    with pytest.raises(ValueError, match="No run directory matches"):
        report.expand_workdirs([str(tmp_path / "*")])
    with pytest.raises(ValueError, match="No workdirs"):
        report.write_report([])


@pytest.mark.parametrize("experiment, cell, setting", [
    ("sngan_cifar10/adapt_strict", "adapt_strict", "strict"),
    ("sngan_cifar10/static_strong_strict", "static_strong_strict", "strict"),
    ("biggan_tinyimagenet/sdst_balance_rigl", "sdst_balance_rigl", "relaxed")])
def test_experiment_configs_map_to_the_papers_cells(experiment, cell, setting):
    from adapt_tf.runs import configurables

    path = ROOT / "gin_configs" / "experiments" / f"{experiment}.gin"
    config = configurables.parse_run_config([str(path)], ["DENSITY = 0.2"])
    assert (config.setting, config.cell, config.method_setting) == (
        experiment.split("/")[0], cell, setting)
    assert config.method.g_density == 0.2


def test_torn_last_metrics_row_is_dropped_not_reported(tmp_path, caplog):
    import logging

    path = _workdir(tmp_path, "torn", method="adapt_relaxed", density=0.1,
                    rows=[(100, 0.2, 0.1, 0.1, 1e15, 0.30, ""),
                          (200, 0.6, 0.1, 0.15, 2e15, 0.32, 20.0)])
    with open(os.path.join(path, "metrics.csv"), "a") as f:
        f.write("400,0.5,0.1,0.1")  # A process killed while writing the next row.
    with caplog.at_level(logging.WARNING):
        record = report.load_run(path)
    assert [row["step"] for row in record.metrics] == [100.0, 200.0]
    assert record.steps == 200 and record.last("d_density") == 0.15
    assert "line 4" in caplog.text and "dropping" in caplog.text


def test_non_utf8_metrics_is_an_error_naming_the_file(tmp_path):
    from adapt_tf.runs import workdir

    path = _workdir(tmp_path, "binary", method="adapt_relaxed", density=0.1, rows=[])
    with open(os.path.join(path, "metrics.csv"), "ab") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(workdir.WorkdirError, match=r"binary/metrics.csv is not UTF-8"):
        report.load_run(path)


def _write_run(path, fields, rows, *, dataset="cifar10"):
    """A workdir of an ADAPT d_G = 20 % run on `dataset` with these metrics rows."""
    path.mkdir()
    (path / "operative_config.gin").write_text(
        CONFIG.format(density=0.2, method="adapt_relaxed", extra="").replace(
            "'cifar10'", f"'{dataset}'"))
    with open(path / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        writer.writerows(rows)
    return path


def test_a_toy_metric_run_reports_its_best_toy_evaluation(tmp_path):
    fields = ["step", "br", "g_density", "d_density", "toy_fid", "toy_fid_floor",
              "class_coverage", "confident_share"]
    rows = [(200, 0.3, 0.2, 0.2, 300.0, 2.06, 4, 0.6), (400, 0.4, 0.2, 0.15, "", "", "", ""),
            (600, 0.5, 0.2, 0.15, 120.5, 2.06, 9, 0.81), (800, 0.5, 0.2, 0.1, 150.0, 2.06, 8, 0.7)]
    path = _write_run(tmp_path / "toy", fields, rows, dataset="toy_shapes")
    record = report.load_run(str(path))
    assert record.score_key == "toy_fid"
    assert record.best_score_row()["step"] == 600
    text = report.markdown([record])
    assert ("toy FID 120.5 (floor 2.06), coverage 9/12, confident 0.81 at iteration 600 "
            "(toy metric, not Inception FID)") in text
    written = report.write_report([str(path)], str(tmp_path / "out"))
    assert all(os.path.getsize(p) > 0 for p in written["plots"])
    # An evaluation of the checkpoints (python -m adapt_tf.evaluate) is what the report shows.
    scores = {"toy_fid": 4.88, "toy_fid_floor": 2.06, "class_coverage": 12,
              "confident_share": 0.97}
    checkpoints = {"best": {"step": 600, **scores},
                   "last": {"step": 800, **scores, "toy_fid": 6.0}}
    (path / "eval.json").write_text(json.dumps({"metric": "toy", "num_samples": 10000,
                                                "checkpoints": checkpoints}))
    assert ("toy FID 4.88 (floor 2.06), coverage 12/12, confident 0.97 (eval.json best "
            "checkpoint, iteration 600, 10000 samples; toy metric, not Inception FID)"
            ) in report.markdown([report.load_run(str(path))])


def test_summary_gives_steps_scores_band_share_density_path_and_files(runs):
    _, workdirs = runs
    record = report.load_run(workdirs[0])
    assert report.summary(record, wall_seconds=3725.4).splitlines() == [
        f"Run {workdirs[0]}: 400/400 iterations in 1:02:05 (this process).",
        "  fid: final 18 (iteration 400), best 18 (iteration 400).",
        "  br in the band [0.45, 0.55]: 2/4 logged window means.",  # 0.5 twice; 0.2, 0.6 out
        "  d_D: 0.10 -> 0.15.",
        f"  Open: {os.path.join(workdirs[0], 'metrics.csv')}"]
    unevaluated = report.load_run(workdirs[1])
    assert "fid: not evaluated" not in report.summary(unevaluated)
    assert report.summary(dataclasses_replace(unevaluated, metrics=[])).splitlines()[1:4] == [
        "  fid: not evaluated (train.eval_every unset; `python -m adapt_tf.evaluate "
        "--workdir=...` scores the checkpoints).",
        "  br in the band [0.45, 0.55]: no window mean logged.", "  d_D: not logged."]


@pytest.mark.parametrize("densities, path", [
    ([], "not logged"), ([0.2, 0.2, 0.15, 0.15, 0.7], "0.20 -> 0.15 -> 0.70"),
    ([0.2, 0.15, 0.2], "0.20 -> 0.15 -> 0.20"),
    ([i / 100 for i in range(12)],
     "0.00 -> 0.01 -> 0.02 -> 0.03 -> ... -> 0.08 -> 0.09 -> 0.10 -> 0.11")])
def test_density_path_keeps_successive_changes_and_elides_long_ones(densities, path):
    assert report.density_path(densities) == path


def test_last_grid_is_the_highest_step_not_the_last_name(tmp_path):
    assert report.last_grid(str(tmp_path)) is None
    for name in ("step_400.png", "step_2400.png", "step_800.png", "step_x.png", "other.png"):
        (tmp_path / name).write_bytes(b"")
    assert report.last_grid(str(tmp_path)) == str(tmp_path / "step_2400.png")


def test_a_classifier_metric_run_plots_its_classifier_fid(tmp_path):
    fields = ["step", "br", "g_density", "d_density", "classifier_fid", "classifier_accuracy"]
    rows = [(200, 0.3, 0.2, 0.2, 30.0, 0.9), (400, 0.4, 0.2, 0.15, 12.5, 0.9)]
    path = _write_run(tmp_path / "cls", fields, rows, dataset="toy_shapes")
    record = report.load_run(str(path))
    assert record.score_key == "classifier_fid"
    assert record.series("classifier_fid")[1] == [30.0, 12.5]


def test_a_classifier_metric_run_reports_its_scores_floor_and_accuracy(tmp_path):
    fields = ["step", "br", "g_density", "d_density", "classifier_fid", "classifier_fid_floor",
              "classifier_accuracy", "class_coverage", "confident_share", "class_agreement"]
    rows = [(600, 0.3, 0.2, 0.2, 30.25, 0.81, 0.9975, 7, 0.6, 0.55),
            (1200, 0.4, 0.2, 0.15, 12.54, 0.81, 0.9975, 11, 0.9, 0.875),
            (1800, 0.5, 0.2, 0.15, 14.0, 0.81, 0.9975, 12, 0.95, 0.9)]
    path = _write_run(tmp_path / "cls", fields, rows, dataset="folder:/data/shapes")
    # The best logged row (iteration 1200); metrics.csv does not say how many classes exist.
    assert ("classifier FID 12.5 (floor 0.81), coverage 11 classes, confident 0.90, class "
            "agreement 0.88, classifier accuracy 0.998 held out at iteration 1200 (classifier "
            "metric, not Inception FID)") in report.markdown([report.load_run(str(path))])
    # eval.json as `python -m adapt_tf.evaluate --metric=classifier` writes it: the best
    # checkpoint's scores, its 12 classes counted by class_counts.
    scores = {"classifier_fid": 3.456, "classifier_fid_floor": 0.812,
              "classifier_accuracy": 0.9975, "confident_share": 0.964, "class_coverage": 12,
              "class_counts": [800] * 12, "class_precision": 0.93, "class_agreement": 0.921,
              "class_precision_per_class": [0.93] * 12}
    evaluation = {"metric": "classifier", "num_samples": 10000, "seed": 0,
                  "classifier": "/cache/c.npz", "real_data": {
                      "classifier_fid_floor": 0.812, "classifier_accuracy": 0.9975,
                      "held_out": "the last 1200 of the train split", "num_classes": 12},
                  "checkpoints": {"best": {"checkpoint": "b", "step": 1200, **scores},
                                  "last": {"checkpoint": "l", "step": 1800, **scores,
                                           "classifier_fid": 5.0}}}
    (path / "eval.json").write_text(json.dumps(evaluation))
    text = report.markdown([report.load_run(str(path))])
    assert ("classifier FID 3.46 (floor 0.81), coverage 12/12, confident 0.96, class agreement "
            "0.92, classifier accuracy 0.998 held out (eval.json best checkpoint, iteration "
            "1200, 10000 samples; classifier metric, not Inception FID)") in text
    # Unconditional samples have no agreement; the class count comes from the header then.
    for entry in evaluation["checkpoints"].values():
        del entry["class_agreement"], entry["class_counts"]
    evaluation["real_data"]["num_classes"] = 13
    (path / "eval.json").write_text(json.dumps(evaluation))
    assert ("coverage 12/13, confident 0.96, classifier accuracy 0.998 held out (eval.json best"
            ) in report.markdown([report.load_run(str(path))])


def test_br_axis_shows_the_band_and_the_central_ninety_percent_and_counts_the_rest():
    band = [(0.45, 0.55)]
    # 21 values: 5th percentile is ordered[1], 95th ordered[19].
    values = [-18.9, -6.0] + [0.5] * 17 + [1.4, 31.0]
    assert report.br_limits(values, band) == (-6.0, 1.4, 2)
    # Values inside the band's margin: the limits are the band -+ 0.5, nothing off the axis.
    assert report.br_limits([0.4, 0.6, 0.7], band) == pytest.approx((-0.05, 1.05, 0), abs=1e-12)
    assert report.br_limits([], band) == pytest.approx((-0.05, 1.05, 0), abs=1e-12)
    # Several bands (runs with different ones): the union.
    assert report.br_limits([0.5], [(0.45, 0.55), (0.3, 0.7)]) == pytest.approx((-0.2, 1.2, 0),
                                                                                abs=1e-12)


def test_a_run_of_the_ada_criterion_plots_its_window_and_its_ever_active_shares(tmp_path):
    fields = ["step", "br", "g_density", "d_density", "ada_rt", "g_ever_active",
              "d_ever_active"]
    rows = [(100, "", 0.2, 0.2, 0.9, 0.2, 0.2), (200, "", 0.2, 0.15, 0.6, 0.3, 0.2)]
    record = report.load_run(str(_write_run(tmp_path / "ada", fields, rows)))
    assert record.window_key == "ada_rt"
    assert record.series("g_ever_active") == ([100, 200], [0.2, 0.3])
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(2, 2)
    report._panels(axes, [record], ["tab:blue"])
    br, density = axes.flat[:2]
    assert br.get_title().startswith("ADA r_t") and list(br.lines[-1].get_ydata()) == [0.9, 0.6]
    assert [list(line.get_ydata()) for line in density.lines[-2:]] == [[0.2, 0.2], [0.2, 0.3]]
    assert density.get_title() == "Densities (solid d_D, dotted d_G; dashed: ever active)"
    plt.close(figure)


# metrics.csv headers as runs before `balance.Criterion` wrote them (the quickstart's, with
# ada_rt after d_density under balance_criterion = 'ada').
OLD_HEADER = ("step,d_loss,g_loss,br,br_skipped,g_density,d_density,train_flops,"
              "train_flops_ratio,toy_fid,toy_fid_floor,class_coverage,confident_share,"
              "best_toy_fid")


@pytest.mark.parametrize("criterion", ["br", "ada"])
def test_an_older_runs_files_still_read_under_its_criterion(tmp_path, criterion):
    from adapt_tf import balance

    header = OLD_HEADER.split(",")
    if criterion == "ada":
        header.insert(header.index("d_density") + 1, "ada_rt")
    values = {"step": 50, "d_loss": 4.27831, "g_loss": 0.901821, "br": 0.413871,
              "br_skipped": 0, "g_density": 0.200003, "d_density": 0.199997, "ada_rt": 0.75}
    if criterion == "ada":
        values["br"] = ""
    rows = [[values.get(key, "") for key in header]]
    path = _write_run(tmp_path / criterion, header, rows)
    samples = {"br": "step,gf,df,dr,ratio,kept\n2,1.5,0.5,2.5,0.5,1\n4,1,1,1,nan,0\n",
               "ada": "step,share\n2,0.75\n4,0.5\n"}[criterion]
    (path / f"{criterion}.csv").write_text(samples)
    record = report.load_run(str(path))
    assert record.criterion is balance.criterion(criterion)
    assert record.window_key == {"br": "br", "ada": "ada_rt"}[criterion]
    assert record.series(record.window_key) == ([50], [{"br": 0.413871, "ada": 0.75}[criterion]])
    assert record.window_samples == {"br": [(2, 0.5)], "ada": [(2, 0.75), (4, 0.5)]}[criterion]
    assert record.series("d_loss") == ([50], [4.27831])


def test_sample_logs_and_the_final_test_reach_the_report(tmp_path):
    fields = ["step", "br", "g_density", "d_density", "fid"]
    rows = [(100, 0.4, 0.2, 0.2, 40.0), (200, 0.5, 0.2, 0.25, 30.0)]
    path = _write_run(tmp_path / "logged", fields, rows)
    (path / "br.csv").write_text("step,gf,df,dr,ratio,kept\n10,1,0,2,0.5,1\n20,0,0,0,nan,0\n"
                                 "30,1,0,4,0.25,1\n")
    (path / "masks.csv").write_text("step,network,dropped,grown,density\n"
                                    "50,generator,7,7,0.2\n100,discriminator,0,30,0.25\n"
                                    "150,generator,5,5,0.2\n")
    (path / "eval.json").write_text(json.dumps({"test": {
        "metric": "fid", "checkpoint_kind": "best", "step": 200, "fid": 30.0, "fid_test": 33.5,
        "test_split": "test", "is_mean": 5.0, "is_std": 0.1,
        "is_logits": "the model's logits output (bias unknown)"}}))
    record = report.load_run(str(path))
    assert record.window_samples == [(10, 0.5), (30, 0.25)]  # the skipped sample is left out
    assert [(c["step"], c["network"], c["grown"]) for c in record.mask_changes] == [
        (50, "generator", 7), (100, "discriminator", 30), (150, "generator", 5)]
    assert report.csv_rows([record])[0]["fid_test"] == 33.5
    assert report.csv_rows([record])[0]["is_logits"] == "the model's logits output (bias unknown)"
    assert "test-split FID 33.50 (test, best checkpoint, iteration 200)" in report.markdown(
        [record])
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(2, 2)
    report._panels(axes, [record], ["tab:blue"])
    br, density = axes.flat[:2]
    assert "dots: samples" in br.get_title()
    assert [list(line.get_xdata()) for line in br.lines[-2:]] == [[10, 30], [100, 200]]
    ticks = {line.get_label(): list(line.get_xdata()) for line in density.lines}
    assert ticks["g mask changes"] == [50, 150] and ticks["d mask changes"] == [100]
    assert density.get_title() == "Densities (solid d_D, dotted d_G)"  # none ever active
    plt.close(figure)
    (path / "br.csv").unlink()  # a run of the ADA criterion logs its shares instead
    (path / "ada.csv").write_text("step,share\n1,0.75\n2,0.5\n")
    assert report.load_run(str(path)).window_samples == [(1, 0.75), (2, 0.5)]


def test_empty_metrics_with_checkpoints_is_reported_with_a_warning(tmp_path, caplog):
    workdir = _workdir(tmp_path, "run", method="adapt_relaxed", density=0.1, rows=[])
    with caplog.at_level(logging.WARNING):
        assert runs_lib.read_metrics(workdir) == []
    assert "has no rows" not in caplog.text  # no checkpoint: a run that logged nothing yet
    os.makedirs(os.path.join(workdir, "checkpoints"))
    for number in (4, 8):
        Path(workdir, "checkpoints", f"ckpt-{number}.index").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert runs_lib.read_metrics(workdir) == []
    assert "metrics.csv has no rows" in caplog.text and "(newest ckpt-8)" in caplog.text


def test_cli_cannot_write_the_report_is_one_line(tmp_path):
    workdir = _workdir(tmp_path, "run", method="adapt_relaxed", density=0.1,
                       rows=[(100, 0.5, 0.1, 0.1, 1e15, 0.3, "")])
    (tmp_path / "file").write_text("")  # the output "directory" cannot be created
    result = subprocess.run(
        [sys.executable, "-m", "adapt_tf.report", workdir,
         f"--output_dir={tmp_path / 'file' / 'report'}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("adapt_tf.report: cannot write the report (") and "--output_dir" in last
