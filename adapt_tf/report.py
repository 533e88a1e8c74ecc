"""`python -m adapt_tf.report W1 W2 ... [--output_dir=D]` (workdirs or glob patterns).

Writes, for the runs in the given workdirs (see `adapt_tf.runs.records`):

* `D/report.md`: per setting (e.g. sngan_cifar10), the paper's layout (methods x d_G) for FID
  and for normalised training FLOPs, each of our values next to the paper's where
  `adapt_tf.runs.paper` holds it ("ours (paper)"); then the plots.
* `D/report.csv`: one row per run (setting, cell, d_G, FID and where it came from, the paper's
  FID, final d_D, training FLOPs and their ratio to dense, progress).
* `D/run_<name>.png` per run and `D/comparison.png` for all runs side by side, each with four
  panels: BR over training with the [B-, B+] band (the paper's Fig. 2 style), d_D (and d_G)
  over training, FID over training, and FID against cumulative training FLOPs.

Our FID is the best checkpoint's from `eval.json` (`python -m adapt_tf.evaluate`), else the
best FID logged during training (marked *), as the paper reports the best FID over training.
FLOPs are the last `train_flops_ratio` of metrics.csv (cumulative up to the last logged
iteration, under the run's `train.flops_convention`). D defaults to W/report for one workdir and
<their common parent>/report for several.
"""
from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow loads: its C++ log lines need --verbose
    from adapt_tf import cli

    cli.quiet_tensorflow()

import csv
import dataclasses
import glob
import math
import os
import re
import sys
from typing import Any, Mapping, Sequence

from absl import flags, logging

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from adapt_tf import balance
from adapt_tf.runs import paper
from adapt_tf.runs.workdir import Workdir

__all__ = ["RunRecord", "load_run", "expand_workdirs", "csv_rows", "markdown", "plot_runs",
           "summary", "density_path", "last_grid", "default_output_dir", "write_report",
           "define_flags", "main"]

_CSV_FIELDS = ("setting", "cell", "method", "g_density", "fid", "fid_source", "fid_samples",
               "fid_last", "inception_score", "is_logits", "fid_test", "paper_fid",
               "final_d_density", "train_flops",
               "train_flops_ratio", "flops_convention", "steps",
               "total_steps", "workdir")


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What the report shows of one run.

    Attributes:
      workdir, name: the run directory and a short unique name for it (file names, legends).
      setting, cell, g_density: its place in the paper's grid (`adapt_tf.runs.paper`).
      band: the BR band [B-, B+] of its method (ADAPT/DDA's; the paper's default otherwise).
      total_steps, flops_convention: from its operative config.
      metrics: metrics.csv rows (floats, NaN where empty).
      evaluation: eval.json, or None.
      window_samples: (step, value) of every window sample of `train.sample_logs` (br.csv's
        kept ratios or ada.csv's shares); mask_changes: masks.csv's rows.
    """

    workdir: str
    name: str
    setting: str
    cell: str
    g_density: float
    band: tuple[float, float]
    total_steps: int
    flops_convention: str
    metrics: list[dict[str, float]]
    evaluation: dict[str, Any] | None
    window_samples: Sequence[tuple[int, float]] = ()
    mask_changes: Sequence[Mapping[str, Any]] = ()

    @property
    def label(self) -> str:
        return f"{paper.CELLS.get(self.cell, self.cell)} d_G={_percent(self.g_density)}"

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(steps, values) of a metrics.csv column, rows where it is finite."""
        pairs = [(row["step"], row[key]) for row in self.metrics
                 if math.isfinite(row.get(key, math.nan))]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def last(self, key: str) -> float:
        _, values = self.series(key)
        return values[-1] if values else math.nan

    @property
    def criterion(self) -> balance.Criterion:
        """What the run's window sampled: the first `balance.CRITERIA` whose window mean
        metrics.csv holds (BR if none does)."""
        return next((c for c in balance.CRITERIA.values() if self.series(c.window_key)[1]),
                    balance.BR)

    @property
    def window_key(self) -> str:
        """The logged window mean: "br", or "ada_rt" for a run of the ADA-style criterion."""
        return self.criterion.window_key

    @property
    def score_key(self) -> str:
        """The logged quality column: "fid", or "toy_fid" / "classifier_fid" for a run scored
        by the toy_shapes or a dataset's own classifier (`adapt_tf.evaluation.toy_metric`,
        `adapt_tf.evaluation.classifier_metric`; not comparable with Inception FID)."""
        logged = [key for key in ("fid", "toy_fid", "classifier_fid") if self.series(key)[1]]
        return logged[0] if logged else "fid"

    def best_score_row(self) -> dict[str, float] | None:
        """The metrics.csv row of the lowest logged `score_key` value, or None."""
        key = self.score_key
        rows = [row for row in self.metrics if math.isfinite(row.get(key, math.nan))]
        return min(rows, key=lambda row: row[key]) if rows else None

    @property
    def steps(self) -> int:
        return int(self.metrics[-1]["step"]) if self.metrics else 0

    def fid(self) -> tuple[float, str, float]:
        """(best FID, where it comes from, samples it used); NaN if never evaluated."""
        best = (self.evaluation or {}).get("checkpoints", {}).get("best")
        if best is not None and "fid" in best:  # not a toy-metric eval.json
            return best["fid"], "eval.json best checkpoint", self.evaluation["num_samples"]
        _, fids = self.series("fid")
        if fids:
            return min(fids), "training (best logged)", math.nan
        return math.nan, "", math.nan


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def expand_workdirs(patterns: Sequence[str]) -> list[str]:
    """The runs that paths and glob patterns select: each path, and each match of a pattern,
    selects the run it is or lies in, so `runs/*/*/*` (expanded by the shell or here) selects
    `runs/quickstart` through `runs/quickstart/checkpoints/checkpoint`. Paths in no run are
    named in a warning; ValueError if an argument selects no run at all."""
    workdirs: list[str] = []
    outside: list[str] = []
    for pattern in patterns:
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        runs = [_enclosing_run(path) for path in paths]
        if glob.has_magic(pattern) and not any(runs):
            raise ValueError(f"No run directory matches {pattern!r}.")
        outside += [path for path, run in zip(paths, runs) if run is None]
        workdirs += [run for run in runs if run is not None]
    if outside and not workdirs:
        raise ValueError(f"{outside[0]!r} is not a run directory (no operative_config.gin) "
                         "and lies in none; pass workdirs written by `python -m "
                         "adapt_tf.train`.")
    if outside:
        logging.warning("Not in a run directory, left out: %s", ", ".join(outside))
    return list(dict.fromkeys(workdirs))


def _enclosing_run(path: str) -> str | None:
    """`path` or its nearest parent holding an operative_config.gin; None if none does."""
    path = os.path.normpath(path)
    while not os.path.isfile(Workdir(path).config):
        parent = os.path.dirname(path)
        if parent == path or not parent:
            return None
        path = parent
    return path


def load_run(workdir: str, *, name: str | None = None) -> RunRecord:
    """Reads one run's config, metrics.csv and eval.json."""
    from adapt_tf.runs import configurables, records
    from adapt_tf.balance.controller import BAND

    config = configurables.read_run_config(workdir)
    method = config.method
    controller = method.controller or {}
    band = (controller.get("b_low", BAND[0]), controller.get("b_high", BAND[1]))
    return RunRecord(workdir=workdir, name=name or os.path.basename(os.path.normpath(workdir)),
                     setting=config.setting, cell=config.cell, g_density=method.g_density,
                     band=band, total_steps=config.arguments["total_steps"],
                     flops_convention=config.arguments.get("flops_convention", "paper"),
                     metrics=records.read_metrics(workdir), evaluation=records.read_eval(workdir),
                     window_samples=records.read_window_samples(workdir),
                     mask_changes=records.read_mask_changes(workdir))


def _names(workdirs: Sequence[str]) -> list[str]:
    """Short unique names: paths relative to the common parent, as file-name-safe strings."""
    if len(workdirs) == 1:
        relative = [os.path.basename(os.path.abspath(workdirs[0]))]
    else:
        parent = os.path.commonpath([os.path.abspath(w) for w in workdirs])
        relative = [os.path.relpath(os.path.abspath(w), parent) for w in workdirs]
    return [re.sub(r"[^A-Za-z0-9._-]+", "_", r).strip("_") or "run" for r in relative]


# ------------------------------------------------------------------------------------ tables


def csv_rows(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per run, `_CSV_FIELDS` (NaN where unknown)."""
    rows = []
    for record in records:
        fid, source, samples = record.fid()
        last = (record.evaluation or {}).get("checkpoints", {}).get("last", {})
        test = (record.evaluation or {}).get("test", {})
        rows.append({
            "setting": record.setting, "cell": record.cell,
            "method": paper.CELLS.get(record.cell, record.cell), "g_density": record.g_density,
            "fid": fid, "fid_source": source, "fid_samples": samples,
            "fid_last": last.get("fid", math.nan),
            "inception_score": last.get("is_mean", record.last("inception_score")),
            # What the IS logits were (metrics.InceptionModel.is_logits), when eval.json says.
            "is_logits": (record.evaluation or {}).get("is_logits", test.get("is_logits", "")),
            "fid_test": test.get("fid_test", math.nan),
            "paper_fid": _or_nan(paper.paper_fid(record.setting, record.cell,
                                                 record.g_density)),
            "final_d_density": record.last("d_density"),
            "train_flops": record.last("train_flops"),
            "train_flops_ratio": record.last("train_flops_ratio"),
            "flops_convention": record.flops_convention,
            "steps": record.steps, "total_steps": record.total_steps,
            "workdir": record.workdir})
    return rows


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _fmt(value: float, kind: str) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.2%}" if kind == "ratio" else f"{value:.2f}"


def _grid_table(rows: Sequence[dict[str, Any]], setting: str, *, value: str,
                theirs: Mapping[tuple[str, str], Mapping[float, float]],
                kind: str) -> list[str]:
    """Markdown lines: rows = cells in the paper's order, columns = d_G."""
    mine = [row for row in rows if row["setting"] == setting]
    densities = sorted(set(paper.DENSITIES) | {row["g_density"] for row in mine})
    cells = sorted({row["cell"] for row in mine},
                   key=lambda c: (list(paper.CELLS).index(c) if c in paper.CELLS
                                  else len(paper.CELLS), c))
    lines = ["| method | " + " | ".join(_percent(d) for d in densities) + " |",
             "|---|" + "---:|" * len(densities)]
    for cell in cells:
        entries = []
        for density in densities:
            runs = [r for r in mine if r["cell"] == cell and math.isclose(r["g_density"],
                                                                          density)]
            ours = ", ".join(_fmt(r[value], kind) + ("*" if value == "fid" and
                                                     r["fid_source"].startswith("training")
                                                     else "")
                             + ("" if r["steps"] >= r["total_steps"] else " (partial)")
                             for r in runs) or "–"
            known = theirs.get((setting, cell), {}).get(round(density, 4))
            entries.append(ours if known is None else f"{ours} ({_fmt(known, kind)})")
        lines.append(f"| {paper.CELLS.get(cell, cell)} | " + " | ".join(entries) + " |")
    return lines


def _score_text(record: RunRecord, row: dict[str, Any]) -> str:
    evaluated = _evaluated_by_classifier(record)
    if evaluated is not None:
        kind, key, scores = evaluated
        return (f"{_classifier_scores(key, scores, record, digits=2)} (eval.json {kind} "
                f"checkpoint, iteration {scores['step']}, {record.evaluation['num_samples']} "
                f"samples; {_CLASSIFIER_SCORES[key][1]}, not Inception FID)")
    logged = record.best_score_row()
    if record.score_key in _CLASSIFIER_SCORES and logged is not None:
        return (f"{_classifier_scores(record.score_key, logged, record, digits=1)} at "
                f"iteration {logged['step']:.0f} ({_CLASSIFIER_SCORES[record.score_key][1]}, "
                "not Inception FID)")
    text = f"{_fmt(row['fid'], 'fid')} ({row['fid_source'] or 'not evaluated'})"
    test = (record.evaluation or {}).get("test", {})
    if "fid_test" in test:
        text += (f"; test-split FID {test['fid_test']:.2f} ({test['test_split']}, "
                 f"{test['checkpoint_kind']} checkpoint, iteration {test['step']})")
    return text


# Scores of a classifier of the data's classes (`adapt_tf.evaluation.toy_metric`,
# `adapt_tf.evaluation.classifier_metric`): their key -> (name, metric), in the order they
# are looked for.
_CLASSIFIER_SCORES = {"toy_fid": ("toy FID", "toy metric"),
                      "classifier_fid": ("classifier FID", "classifier metric")}
_TOY_CLASSES = 12  # toy_shapes' classes
# Scores only the classifier metric gives (class agreement: conditional samples only).
_OPTIONAL_SCORES = (("class_agreement", "class agreement {:.2f}"),
                    ("classifier_accuracy", "classifier accuracy {:.3f} held out"))


def _classifier_scores(key: str, scores: Mapping[str, Any], record: RunRecord, *,
                       digits: int) -> str:
    """"classifier FID 3.10 (floor 0.85), coverage 12/12, confident 0.97[, class agreement
    0.93][, classifier accuracy 0.998 held out]" from eval.json scores or a metrics.csv row."""
    text = (f"{_CLASSIFIER_SCORES[key][0]} {scores[key]:.{digits}f} (floor "
            f"{scores[key + '_floor']:.2f}), coverage {scores['class_coverage']:.0f}"
            f"{_of_classes(key, scores, record)}, confident {scores['confident_share']:.2f}")
    for name, shown in _OPTIONAL_SCORES:
        value = scores.get(name)
        if isinstance(value, (int, float)) and math.isfinite(value):
            text += ", " + shown.format(value)
    return text


def _of_classes(key: str, scores: Mapping[str, Any], record: RunRecord) -> str:
    """"/K" of the coverage: K from the scores' class counts, eval.json's classifier or
    toy_shapes'; " classes" when unknown (a classifier metric's metrics.csv row alone)."""
    real = (record.evaluation or {}).get("real_data", {})
    classes = (len(scores["class_counts"]) if "class_counts" in scores
               else real.get("num_classes", _TOY_CLASSES if key == "toy_fid" else None))
    return " classes" if classes is None else f"/{classes}"


def _samples_line(rows: Sequence[dict[str, Any]], setting: str) -> str:
    """How many samples the FIDs of a setting's table come from, ours and the paper's: FIDs
    of different sample counts differ systematically (fewer samples, higher FID)."""
    counts = sorted({int(r["fid_samples"]) for r in rows
                     if r["setting"] == setting and math.isfinite(r["fid_samples"])})
    ours = ", ".join(f"{n:,}" for n in counts) or "not recorded (FIDs logged during training)"
    theirs = paper.PAPER_NUM_SAMPLES.get(setting)
    return (f"Samples per FID: ours {ours}; the paper's "
            + (f"{theirs:,}." if theirs else "– (not one of the paper's settings)."))


def _evaluated_by_classifier(record: RunRecord
                             ) -> tuple[str, str, Mapping[str, Any]] | None:
    """("best" or "last", the score's key, its scores) from an eval.json of the toy or the
    classifier metric (`python -m adapt_tf.evaluate`): the best checkpoint's, else the last
    one's; None without one."""
    checkpoints = (record.evaluation or {}).get("checkpoints", {})
    for kind in ("best", "last"):
        for key in _CLASSIFIER_SCORES:
            if key in checkpoints.get(kind, {}):
                return kind, key, checkpoints[kind]
    return None


def markdown(records: Sequence[RunRecord], *, plots: Sequence[str] = ()) -> str:
    """The report's Markdown: per setting, the FID and the FLOPs tables, then the plots."""
    rows = csv_rows(records)
    lines = ["# adapt_tf report", "",
             f"{len(records)} run(s). Each cell: ours (paper). Ours = FID of the best "
             "checkpoint from eval.json, else the best FID logged during training (*); the "
             "paper's = the paper's FID (adapt_tf/paper.py) where known; – = none. "
             "(partial) = the run has not reached its total_steps. Normalised FLOPs = "
             "cumulative training FLOPs / the same schedule with dense masks (the run's "
             "flops_convention; 'paper' as Table 3); the paper's Table 3 values are not in "
             "adapt_tf/paper.py.", ""]
    for setting in dict.fromkeys(row["setting"] for row in rows):
        title = paper.SETTINGS.get(setting, "not one of the paper's settings")
        lines += [f"## {setting}: {title}", "", "### FID", "", _samples_line(rows, setting), ""]
        lines += _grid_table(rows, setting, value="fid", theirs=paper.PAPER_FID, kind="fid")
        lines += ["", "### Normalised training FLOPs", ""]
        lines += _grid_table(rows, setting, value="train_flops_ratio",
                             theirs={}, kind="ratio")
        lines.append("")

    lines += ["## Runs", "", "| run | method | d_G | steps | final d_D | FID, toy or "
              "classifier metric (source) | workdir |",
              "|---|---|---:|---:|---:|---|---|"]
    for record, row in zip(records, rows):
        lines.append(f"| {record.name} | {row['method']} | {_percent(record.g_density)} | "
                     f"{row['steps']}/{row['total_steps']} | {_fmt(row['final_d_density'], 'fid')}"
                     f" | {_score_text(record, row)} | {record.workdir} |")
    lines.append("")
    for plot in plots:
        lines += [f"![{os.path.basename(plot)}]({os.path.basename(plot)})", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------ end-of-run summary


def summary(record: RunRecord, *, wall_seconds: float | None = None) -> str:
    """The lines `python -m adapt_tf.train` prints at the end of a run: iterations and wall
    time, the final and best logged score, the share of logged window means inside the band,
    d_D's path, and the files to open."""
    files = Workdir(record.workdir)
    wall = "" if wall_seconds is None else f" in {_duration(wall_seconds)} (this process)"
    low, high = record.band
    _, window = record.series(record.window_key)
    inside = sum(low <= value <= high for value in window)
    share = f"{inside}/{len(window)} logged window means" if window else "no window mean logged"
    lines = [f"Run {record.workdir}: {record.steps}/{record.total_steps} iterations{wall}.",
             f"  {_score_summary(record)}",
             f"  {record.window_key} in the band [{low}, {high}]: {share}.",
             f"  d_D: {density_path(record.series('d_density')[1])}.",
             "  Open: " + ", ".join(p for p in (files.training_plot, last_grid(files.samples),
                                                files.metrics, files.tensorboard)
                                    if p and os.path.exists(p))]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    from adapt_tf.runs.writers import duration  # writers loads tf_keras, which reports need not

    return duration(seconds)


def _score_summary(record: RunRecord) -> str:
    """"toy_fid: final 5.59 (iteration 2400), best 5.59 (iteration 2400)", or how to evaluate."""
    steps, values = record.series(record.score_key)
    if not values:
        return (f"{record.score_key}: not evaluated (train.eval_every unset; "
                "`python -m adapt_tf.evaluate --workdir=...` scores the checkpoints).")
    best = min(range(len(values)), key=values.__getitem__)
    return (f"{record.score_key}: final {values[-1]:.4g} (iteration {steps[-1]:.0f}), best "
            f"{values[best]:.4g} (iteration {steps[best]:.0f}).")


def density_path(densities: Sequence[float], *, most: int = 9) -> str:
    """The distinct successive values of a density, "0.20 -> 0.15 -> 0.70"; past `most`
    values, the first and last ones around "..."."""
    path = [f"{value:.2f}" for value in densities]
    path = [value for i, value in enumerate(path) if i == 0 or value != path[i - 1]]
    if len(path) > most:
        path = path[:most // 2] + ["..."] + path[-(most - most // 2 - 1):]
    return " -> ".join(path) if path else "not logged"


def last_grid(directory: str) -> str | None:
    """The sample grid `step_N.png` of the highest N in `directory`, or None."""
    grids = glob.glob(os.path.join(glob.escape(directory), "step_*.png"))
    numbered = [(int(m.group(1)), path) for path in grids
                if (m := re.fullmatch(r"step_(\d+)\.png", os.path.basename(path)))]
    return max(numbered)[1] if numbered else None


# ------------------------------------------------------------------------------------- plots


def br_limits(values: Sequence[float], bands) -> tuple[float, float, int]:
    """(low, high, outside): BR axis limits that show every band with a margin of 0.5 and the
    central 90 % of `values` (5th to 95th percentile), and how many values fall outside them.
    A few window means far from the band (BR's denominator can come close to 0) would
    otherwise squeeze the band into one line."""
    ordered = sorted(values)
    last = len(ordered) - 1
    central = [ordered[int(0.05 * last)], ordered[int(0.95 * last)]] if ordered else []
    low = min([band[0] - 0.5 for band in bands] + central)
    high = max([band[1] + 0.5 for band in bands] + central)
    return low, high, sum(not low <= v <= high for v in ordered)


def _panels(axes, records: Sequence[RunRecord], colors) -> None:
    br, density, fid, fid_flops = axes.flat
    bands = {record.band for record in records}
    for low, high in bands:
        br.axhspan(low, high, color="tab:green", alpha=0.12, lw=0)
        for bound in (low, high):
            br.axhline(bound, color="tab:green", lw=0.8, ls="--")
    for record, color in zip(records, colors):
        _plot_record(axes, record, color, several=len(records) > 1)
    low, high, outside = br_limits([v for r in records for v in r.series(r.window_key)[1]],
                                   bands)
    clipped = f"; {outside} window means off the axis" if outside else ""
    criteria = {r.criterion for r in records}
    window = (criteria.pop() if len(criteria) == 1 else balance.BR).title
    dots = "; dots: samples" if any(r.window_samples for r in records) else ""
    br.set(title=f"{window} (band [B-, B+]{clipped}{dots})", xlabel="iteration", ylabel=window,
           ylim=(low, high))
    ever = any(r.series(column)[1] for r in records
               for column in ("d_ever_active", "g_ever_active"))
    dashed = "; dashed: ever active" if ever else ""
    density.set(title=f"Densities (solid d_D, dotted d_G{dashed})", xlabel="iteration",
                ylabel="density", ylim=(0, 1.05))
    names = {"toy_fid": "toy FID", "classifier_fid": "classifier FID"}
    keys = {r.score_key for r in records}
    name = names.get(next(iter(keys)), "FID") if len(keys) == 1 else "FID"
    fid.set(title=f"{name} over training (* best)", xlabel="iteration", ylabel=name)
    fid_flops.set(title=f"{name} vs cumulative training FLOPs", xlabel="training FLOPs (MACs)",
                  ylabel=name)
    scores = [v for r in records for v in r.series(r.score_key)[1]]
    if scores and min(scores) > 0 and max(scores) > 20 * min(scores):
        for axis in (fid, fid_flops):  # early scores would flatten the late ones
            axis.set_yscale("log")
    for axis, empty in ((fid, "no FID evaluated\n(set train.eval_every)"),
                        (fid_flops, "no FID evaluated\n(set train.eval_every)")):
        if not axis.lines:
            axis.text(0.5, 0.5, empty, ha="center", va="center", transform=axis.transAxes,
                      color="0.4")
    for axis in axes.flat:
        axis.grid(alpha=0.3)


def _plot_record(axes, record: RunRecord, color, *, several: bool) -> None:
    """One run's lines on the four panels (labelled by run name when `several`)."""
    br, density, fid, fid_flops = axes.flat
    label = record.label if not several else f"{record.label} ({record.name})"
    if record.window_samples:  # train.sample_logs: every sample behind the window means
        br.plot(*zip(*record.window_samples), color=color, marker=".", ms=2, ls="none",
                alpha=0.25)
    br.plot(*record.series(record.window_key), color=color, lw=1.2, label=label)
    for network, marker, height in (("generator", "|", 0.03), ("discriminator", "x", 0.07)):
        steps = [change["step"] for change in record.mask_changes
                 if change["network"] == network]
        if steps:  # train.sample_logs: each mask change of the network, along the bottom
            density.plot(steps, [height] * len(steps), color=color, marker=marker, ms=8,
                         ls="none", label=None if several else f"{network[0]} mask changes")
    density.plot(*record.series("d_density"), color=color, lw=1.5,
                 label=label if several else "d_D")
    density.plot(*record.series("g_density"), color=color, lw=1.0, ls=":",
                 label=None if several else "d_G")
    for column, style in (("d_ever_active", "--"), ("g_ever_active", "-.")):
        steps, shares = record.series(column)
        if shares:  # runs with train.ever_active: the share ever active
            density.plot(steps, shares, color=color, lw=1.0, ls=style,
                         label=None if several else f"{column[0]} ever active")
    steps, fids = record.series(record.score_key)
    if fids:
        fid.plot(steps, fids, color=color, marker="o", ms=3, lw=1.2, label=label)
        best = min(range(len(fids)), key=fids.__getitem__)
        fid.plot(steps[best], fids[best], color=color, marker="*", ms=12, ls="none")
    at_fid = dict(zip(*record.series("train_flops")))
    pairs = [(at_fid[s], f) for s, f in zip(steps, fids) if s in at_fid]
    if pairs:
        fid_flops.plot(*zip(*pairs), color=color, marker="o", ms=3, lw=1.2, label=label)


def plot_runs(records: Sequence[RunRecord], path: str, *, title: str) -> str:
    """Writes the four-panel PNG of one or several runs (overlaid, one colour each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab10" if len(records) <= 10 else "tab20").colors
    colors = [colors[i % len(colors)] for i in range(len(records))]
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    _panels(axes, records, colors)
    if len(records) > 1:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="lower center", ncol=min(3, len(records)),
                      fontsize="small", frameon=False)
        bottom = 0.06 + 0.03 * math.ceil(len(records) / 3)
    else:
        for axis in axes.flat[1:2]:
            axis.legend(fontsize="small", loc="best")
        bottom = 0.04
    figure.suptitle(title)
    figure.tight_layout(rect=(0, bottom, 1, 0.97))
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# ------------------------------------------------------------------------------------ driver


def default_output_dir(workdirs: Sequence[str]) -> str:
    if len(workdirs) == 1:
        return Workdir(workdirs[0]).report
    return Workdir(os.path.commonpath([os.path.abspath(w) for w in workdirs])).report


def write_report(workdirs: Sequence[str], output_dir: str | None = None) -> dict[str, Any]:
    """Writes report.md, report.csv and the PNGs for these workdirs; returns their paths
    {"markdown", "csv", "plots": [...]}."""
    if not workdirs:
        raise ValueError("No workdirs given; pass run directories or glob patterns.")
    output_dir = output_dir or default_output_dir(workdirs)
    os.makedirs(output_dir, exist_ok=True)
    records = [load_run(w, name=n) for w, n in zip(workdirs, _names(workdirs))]
    plots = []
    if len(records) > 1:
        plots.append(plot_runs(records, os.path.join(output_dir, "comparison.png"),
                               title=f"{len(records)} runs"))
    for record in records:
        plots.append(plot_runs([record], os.path.join(output_dir, f"run_{record.name}.png"),
                               title=f"{record.label} on {record.setting} ({record.workdir})"))
    csv_path = os.path.join(output_dir, "report.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(records))
    markdown_path = os.path.join(output_dir, "report.md")
    with open(markdown_path, "w") as f:
        f.write(markdown(records, plots=plots))
    return {"markdown": markdown_path, "csv": csv_path, "plots": plots}


def define_flags() -> None:
    """Defines the CLI's flags (only when run as a program; see `adapt_tf.evaluate`)."""
    flags.DEFINE_string("output_dir", None, "Where to write report.md, report.csv and the PNGs "
                        "(default: W/report for one workdir, <common parent>/report for more).")


def main(argv):
    try:
        workdirs = expand_workdirs(argv[1:])
        paths = write_report(workdirs, flags.FLAGS.output_dir)
    except ValueError as error:
        sys.exit(f"adapt_tf.report: {error}")
    except OSError as error:  # e.g. a read-only workdir: the report goes elsewhere
        sys.exit(f"adapt_tf.report: cannot write the report ({error}); pass "
                 "--output_dir=<a writable directory>.")
    logging.info("Wrote %s", paths)
    print(f"{paths['markdown']}\n{paths['csv']}\n" + "\n".join(paths["plots"]))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
