"""The quickstart's setting on `toy_shapes`, run many ways: a Table-1-style table and a BR probe.

    python scripts/toy_table.py [--seeds 1] [--densities 0.1 0.2]   # the table (~2 h on 2 cores)
    python scripts/toy_table.py --probe [--steps 400]               # why is BR where it is?
    python scripts/toy_table.py --calibrate                         # what a toy FID means
    python scripts/toy_table.py --precision --seeds 3               # fp32 against bf16

Every run is `python -m adapt_tf.train --gin_file=gin_configs/quickstart.gin` with extra gin
bindings, in its own workdir under --out (reused: a finished run is read back, not retrained).

The table trains Dense, Static-Balance, SDST-RigL-Balance, SDST-RigL-Strong and ADAPT (relaxed)
at each d_G (Dense once), with the quickstart's widths and schedule, and prints a Markdown table
of the toy metric at the best evaluation (toy FID, its real-vs-real floor, class coverage and
confident share, `adapt_tf.evaluation.toy_metric`; mean +- sd over seeds) and of the training FLOPs
normalised to dense (paper convention); it writes `table.md` and `traces.png` (BR with the
band, d_D and d_G over iterations, one colour per run: `adapt_tf.report.plot_runs`) to --out.

--probe trains short runs that differ from a baseline (the quickstart with the paper's learning
rate 2e-4, `PROBE_BASE`) in one thing each (dense nets, a static D, width, learning rate, n_dis,
density) and prints, per run, the BR window mean over
the second half of the run (the median of the logged window means), its range, and d_D at the
end: what moves BR towards the paper's band [0.45, 0.55], measured rather than guessed.

--precision trains the quickstart itself (the README's command, `train.seed` bound) at each
seed in float32 and under Keras' `mixed_bfloat16` policy, and prints one row per run (the toy
FID at every evaluation with its floor; class coverage and confident share at the last one; how
many logged BR window means lie inside the band; d_D's path) and, per metric, each precision's
mean +- sd and range over seeds with how many bf16 seeds lie inside the float32 range; it
writes both tables to `precision.md` under --out/precision.

--calibrate scores real train images, as they are and with known defects (blur, pixel noise,
a dimmer palette, classes left out), with the cached toy classifier: the scale against which a
generator's toy FID, coverage and confident share can be read.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "gin_configs", "quickstart.gin")

# The probe's baseline: the quickstart as it was before the probe chose its learning rate and
# cadence (the paper's 2e-4, ADAPT every 200 iterations on a 200-iteration window), without
# evaluation. Each probe below changes this baseline in one respect.
PROBE_BASE = ("generator/keras.optimizers.Adam.learning_rate = 2e-4",
              "discriminator/keras.optimizers.Adam.learning_rate = 2e-4",
              "method.d_interval = 200", "train.br_window = 200", "train.eval_every = None")
# (name, gin bindings applied after PROBE_BASE).
PROBES = (
    ("quickstart", ()),
    ("static_balance", ("method.name = 'static_balance'",)),
    ("dense", ("method.name = 'dense'",)),
    ("width_64", ("train.g_width = 64", "train.d_width = 64")),
    ("lr_1e-3", ("generator/keras.optimizers.Adam.learning_rate = 1e-3",
                 "discriminator/keras.optimizers.Adam.learning_rate = 1e-3")),
    ("g_lr_1e-3", ("generator/keras.optimizers.Adam.learning_rate = 1e-3",)),
    ("n_dis_2", ("train.n_dis = 2",)),
    ("density_0.5", ("DENSITY = 0.5",)),
    ("lr_2e-3", ("generator/keras.optimizers.Adam.learning_rate = 2e-3",
                 "discriminator/keras.optimizers.Adam.learning_rate = 2e-3")),
    ("lr_1e-3_static", ("method.name = 'static_balance'",
                        "generator/keras.optimizers.Adam.learning_rate = 1e-3",
                        "discriminator/keras.optimizers.Adam.learning_rate = 1e-3")),
    ("lr_1e-3_dense", ("method.name = 'dense'",
                       "generator/keras.optimizers.Adam.learning_rate = 1e-3",
                       "discriminator/keras.optimizers.Adam.learning_rate = 1e-3")),
)


def quickstart_steps() -> int:
    """The quickstart's `train.total_steps`."""
    from adapt_tf.runs import configurables

    config = configurables.parse_run_config([QUICKSTART], with_method=False)
    return config.arguments["total_steps"]


def run(name: str, bindings, *, out: str, steps: int) -> dict:
    """Trains (or reads back) one run; returns its metrics rows and wall time."""
    from adapt_tf.runs.workdir import Workdir

    workdir = os.path.join(out, name)
    metrics = Workdir(workdir).metrics
    started = time.time()
    if not _finished(metrics, steps):
        argv = [sys.executable, "-m", "adapt_tf.train", f"--gin_file={QUICKSTART}",
                f"--workdir={workdir}", f"--gin_bindings=train.total_steps = {steps}",
                *(f"--gin_bindings={b}" for b in bindings)]
        subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    with open(metrics) as f:
        rows = [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(f)]
    return {"name": name, "bindings": bindings, "rows": rows, "workdir": workdir,
            "seconds": time.time() - started}


def _finished(metrics: str, steps: int) -> bool:
    if not os.path.exists(metrics):
        return False
    with open(metrics) as f:
        steps_logged = [int(float(row["step"])) for row in csv.DictReader(f)]
    return bool(steps_logged) and steps_logged[-1] >= steps


# (label, preset) of the table's rows; Dense does not depend on d_G and is trained once.
TABLE_METHODS = (("Dense", "dense"), ("Static-Balance", "static_balance"),
                 ("SDST-RigL-Balance", "sdst_balance_rigl"),
                 ("SDST-RigL-Strong", "sdst_strong_rigl"), ("ADAPT (relaxed)", "adapt_relaxed"))


def table_runs(densities, seeds, methods=None):
    """(label, d_G or None, seed, run name, bindings) of every run of the table."""
    for label, preset in TABLE_METHODS:
        if methods and preset not in methods:
            continue
        for density in (None,) if preset == "dense" else densities:
            for seed in seeds:
                name = f"{preset}_d{density or 1.0:g}_s{seed}"
                # The BR column compares every method, so those without a D controller
                # (which take no BR passes by default) sample it as a diagnostic.
                bindings = (f"method.name = '{preset}'", f"train.seed = {seed}",
                            "train.balance_diagnostic = True")
                if density is not None:
                    bindings += (f"DENSITY = {density}",)
                yield label, density, seed, name, bindings


def best_evaluation(rows) -> dict:
    """The metrics row of the lowest toy FID."""
    evaluated = [row for row in rows if "toy_fid" in row]
    if not evaluated:
        raise ValueError("no toy metric in metrics.csv (train.eval_every unset?)")
    return min(evaluated, key=lambda row: row["toy_fid"])


def _late_br(rows) -> float:
    """The median of the logged BR window means over the second half of the run."""
    values = [row["br"] for row in rows if "br" in row]
    return statistics.median(values[len(values) // 2:])


def _mean_sd(values, fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def results_table(groups) -> str:
    """groups: {(label, d_G): [run result, ...]} -> Markdown."""
    lines = ["| method | d_G | toy FID (best) | floor | coverage (of 12) | confident share | "
             "BR (median, 2nd half) | final d_D | train FLOPs (% of dense) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (label, density), results in groups.items():
        best = [best_evaluation(r["rows"]) for r in results]
        last = [r["rows"][-1] for r in results]
        lines.append(
            f"| {label} | {'100%' if density is None else f'{density:.0%}'} | "
            f"{_mean_sd([b['toy_fid'] for b in best], '.2f')} | "
            f"{best[0]['toy_fid_floor']:.2f} | "
            f"{_mean_sd([b['class_coverage'] for b in best], '.1f')} | "
            f"{_mean_sd([b['confident_share'] for b in best], '.2f')} | "
            f"{_mean_sd([_late_br(r['rows']) for r in results], '.2f')} | "
            f"{_mean_sd([row['d_density'] for row in last], '.2f')} | "
            f"{_mean_sd([100 * row['train_flops_ratio'] for row in last], '.1f')} |")
    return "\n".join(lines)


def write_table(args) -> None:
    from adapt_tf import report

    groups: dict = {}
    for label, density, seed, name, bindings in table_runs(args.densities, args.seeds,
                                                           args.methods):
        result = run(name, bindings, out=args.out, steps=args.steps)
        groups.setdefault((label, density), []).append(result)
        print(f"{name}: {result['seconds']:.0f} s", flush=True)
    table = results_table(groups)
    print(table)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    records = [report.load_run(r["workdir"], name=r["name"])
               for results in groups.values() for r in results if r["name"].endswith("_s0")
               or len(args.seeds) == 1]
    path = report.plot_runs(records, os.path.join(args.out, "traces.png"),
                            title=f"toy_shapes, quickstart setting: BR and densities "
                                  f"(seed {args.seeds[0]})")
    print(f"wrote {path}")


def probe_table(results) -> str:
    lines = ["| run | bindings | BR (median of window means, 2nd half) | BR range | "
             "d_D at end | s |", "|---|---|---|---|---|---|"]
    for r in results:
        rows = r["rows"]
        half = [row["br"] for row in rows[len(rows) // 2:] if "br" in row]
        lines.append(
            f"| {r['name']} | {'; '.join(r['bindings'][len(PROBE_BASE):]) or '-'} | "
            f"{_late_br(rows):.3f} | {min(half):.3f} .. {max(half):.3f} | "
            f"{rows[-1]['d_density']:.2f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


# (label, extra gin bindings) of --precision: the README's quickstart in float32, and under
# Keras' mixed_bfloat16 policy (bf16 convolutions and matmuls on float32 variables).
PRECISIONS = (("fp32", ()), ("bf16", ("train.mixed_precision = 'mixed_bfloat16'",)))


def precision_runs(seeds, only=None):
    """(precision, seed, run name, bindings) of every run of --precision (with `only`: of those
    run names only)."""
    for label, extra in PRECISIONS:
        for seed in seeds:
            name = f"quickstart_{label}_s{seed}"
            if not only or name in only:
                yield label, seed, name, (f"train.seed = {seed}",) + extra


def run_scores(record) -> dict:
    """What --precision reports of one run (an `adapt_tf.report.RunRecord`): the toy FID at
    every evaluation ({iteration: value}) and its floor; class coverage (0-12) and confident
    share (0-1) at the last evaluation; how many of the logged BR window means lie inside the
    band ("in_band" of "windows", counted as the end-of-run summary counts them); d_D at the
    end and its path."""
    from adapt_tf import report

    steps, fids = record.series("toy_fid")
    if not fids:
        raise ValueError(f"no toy metric in {record.workdir}/metrics.csv (train.eval_every "
                         "unset?)")
    last = next(row for row in record.metrics if row["step"] == steps[-1])
    _, windows = record.series("br")
    densities = record.series("d_density")[1]
    return {"toy_fid": dict(zip(map(int, steps), fids)), "floor": last["toy_fid_floor"],
            "coverage": last["class_coverage"], "confident_share": last["confident_share"],
            "in_band": sum(record.band[0] <= w <= record.band[1] for w in windows),
            "windows": len(windows), "final_d": densities[-1],
            "d_path": report.density_path(densities)}


def precision_table(scores) -> str:
    """scores: [(precision, seed, `run_scores`)] -> Markdown, one row per run."""
    steps = sorted({step for *_, s in scores for step in s["toy_fid"]})
    lines = [f"| precision | seed | toy FID at {' / '.join(map(str, steps))} (floor) | "
             "coverage (of 12) | confident share | BR window means in the band | d_D: path |",
             "|---|---:|---|---:|---:|---:|---|"]
    for label, seed, s in scores:
        fids = " / ".join(format(s["toy_fid"][step], ".3g") if step in s["toy_fid"] else "-"
                          for step in steps)
        lines.append(f"| {label} | {seed} | {fids} ({s['floor']:.2f}) | {s['coverage']:.0f} | "
                     f"{s['confident_share']:.3f} | {s['in_band']} of {s['windows']} | "
                     f"{s['d_path']} |")
    return "\n".join(lines)


# (metric, its value in `run_scores`, format) of the --precision spread table.
SPREAD_METRICS = (
    ("final toy FID", lambda s: s["toy_fid"][max(s["toy_fid"])], ".3g"),
    ("coverage (of 12)", lambda s: s["coverage"], ".3g"),
    ("confident share", lambda s: s["confident_share"], ".3f"),
    ("BR window means in the band", lambda s: s["in_band"], ".3g"),
    ("final d_D", lambda s: s["final_d"], ".2f"))


def spread_table(scores) -> str:
    """Per metric of `SPREAD_METRICS`: each precision's mean ± sample sd and range over its
    seeds, and how many runs of the second precision lie inside the first one's range (ends
    included)."""
    labels = list(dict.fromkeys(label for label, *_ in scores))
    if len(labels) != 2:
        raise ValueError(f"the spread table compares two precisions, got {labels}")
    lines = [f"| metric | {' | '.join(f'{x}: mean ± sd (range)' for x in labels)} | "
             f"{labels[1]} runs inside the {labels[0]} range |", "|---|---|---|---:|"]
    for metric, value, fmt in SPREAD_METRICS:
        values = [[value(s) for label, _, s in scores if label == x] for x in labels]
        cells = [f"{_mean_sd(v, fmt)} ({format(min(v), fmt)}–{format(max(v), fmt)})"
                 for v in values]
        inside = sum(min(values[0]) <= v <= max(values[0]) for v in values[1])
        lines.append(f"| {metric} | {' | '.join(cells)} | {inside} of {len(values[1])} |")
    return "\n".join(lines)


def write_precision(args) -> None:
    from adapt_tf import report

    out = os.path.join(args.out, "precision")
    scores = []
    for label, seed, name, bindings in precision_runs(args.seeds, args.only):
        result = run(name, bindings, out=out, steps=args.steps)
        scores.append((label, seed, run_scores(report.load_run(result["workdir"]))))
        print(f"{name}: {result['seconds']:.0f} s", flush=True)
    tables = f"{precision_table(scores)}\n\n{spread_table(scores)}"
    print(tables)
    with open(os.path.join(out, "precision.md"), "w") as f:
        f.write(tables + "\n")


def calibration_rows(num_images: int = 5000) -> list[tuple[str, dict]]:
    """(defect, toy scores) of real train images with known defects (see --calibrate)."""
    import numpy as np
    from scipy import ndimage

    import adapt_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
    from adapt_tf.evaluation import toy_metric
    from adapt_tf.data.datasets import toy_shapes

    classifier, reference = toy_metric.load_classifier()
    images, labels = map(np.concatenate, zip(*toy_shapes.draw_examples(0, num_images)))
    images = images.astype(np.float32) / 127.5 - 1.0
    noise = np.random.default_rng(0).standard_normal(images.shape).astype(np.float32)

    def classes(keep: int):
        """The images of the first `keep` classes only, repeated up to num_images."""
        return images[np.resize(np.flatnonzero(labels < keep), num_images)]

    defects = [("none (real train images)", images)]
    defects += [(f"blur, std {s} px",
                 ndimage.gaussian_filter(images, sigma=(0, s, s, 0), mode="reflect"))
                for s in (0.5, 0.75, 1.0)]
    defects += [(f"pixel noise, std {s}", np.clip(images + s * noise, -1, 1))
                for s in (0.1, 0.2)]
    defects += [("colours 10 % darker", (images + 1) * 0.9 - 1)]
    defects += [(f"only {k} of the 12 classes", classes(k)) for k in (11, 9, 6)]
    return [(name, toy_metric.toy_scores(x, classifier=classifier,
                                         reference=(reference.mu, reference.sigma)))
            for name, x in defects]


def calibration_table(rows) -> str:
    lines = ["| real train images, defect | toy FID | coverage (of 12) | confident share |",
             "|---|---:|---:|---:|"]
    lines += [f"| {name} | {s['toy_fid']:.1f} | {s['class_coverage']} | "
              f"{s['confident_share']:.3f} |" for name, s in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probe", action="store_true", help="the BR probe (see above)")
    parser.add_argument("--precision", action="store_true",
                        help="the quickstart in float32 and bf16 at --seeds (see above)")
    parser.add_argument("--calibrate", action="store_true",
                        help="toy scores of real images with known defects (see above)")
    parser.add_argument("--steps", type=int, default=None,
                        help="iterations per run (default: the quickstart's; probe 400)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1 per table cell")
    parser.add_argument("--densities", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--only", nargs="*",
                        help="run only these probe names or --precision run names")
    parser.add_argument("--methods", nargs="*", help="table: only these presets (e.g. to "
                        "train parts in parallel into one --out, then read all back)")
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "toy_table"))
    args = parser.parse_args()
    if args.calibrate:
        print(calibration_table(calibration_rows()))
        return
    if args.precision:
        args.steps = args.steps or quickstart_steps()
        args.seeds = list(range(args.seeds))
        write_precision(args)
        return
    if not args.probe:
        args.steps = args.steps or quickstart_steps()
        args.seeds = list(range(args.seeds))
        write_table(args)
        return
    args.steps = args.steps or 400
    probes = [p for p in PROBES if not args.only or p[0] in args.only]
    results = []
    for name, bindings in probes:
        results.append(run(name, PROBE_BASE + bindings, out=os.path.join(args.out, "probe"),
                           steps=args.steps))
        print(probe_table(results[-1:]).splitlines()[-1], flush=True)
    print(probe_table(results))


if __name__ == "__main__":
    main()
