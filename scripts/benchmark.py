"""Per-iteration cost of adapt_tf's training methods against dense training, on synthetic data.

    python scripts/benchmark.py --quick                  # reduced width, a few minutes
    python scripts/benchmark.py --json bench.json        # full SNGAN-32 (slow on a CPU)
    python scripts/benchmark.py --quick --profile /tmp/adapt_profile

Setting: SNGAN-32 (CIFAR-10), the paper's batch sizes (D 64, G 128, n_dis 5), ERK masks at
d = 0.1 on both networks, Adam(2e-4, 0, 0.9), EMA generator (0.999), hinge loss, one process.

What runs. TensorFlow multiplies a masked kernel densely, so a static, an SDST and an ADAPT
iteration at the same densities run the same compiled graph. The benchmark therefore builds
three kinds of models per XLA setting (`jit_compile` off / on):

* ``dense``: the same networks with plain (unmasked) spectrally normalised layers: the dense
  baseline, as the official PyTorch code runs it (no mask, no constraint);
* ``dense_masked`` (``--dense-masked``): adapt_tf's "dense" method, masks of ones;
* ``sparse``: d = 0.1 ERK on G and D, with a `DynamicSparsity` RigL callback on G and a
  relaxed `ADAPTController` on D attached.

It warms each model up (every train-function variant traced and run once, untimed but
reported), then measures in interleaved rounds (the model order rotates each round) the
iteration kinds: ``plain`` (no BR sample), ``br`` (with the BR sample), ``grads`` (plain plus
the dense-gradient copies a G update and a D resize need), and after ``grads`` one forced G
mask update (global RigL over all of G's masked weights) and one forced D resize (the
controller's decision with its BR window filled high or low: +0.05 grown by |grad|, -0.05
pruned by magnitude, alternately). Each measurement records CPU seconds of the process, wall
seconds and the load average: on a shared machine CPU time is the robust number.

Methods are composed from the measured parts over the paper's schedule (BR every 10, G DST
every 500, controller every 1000):

* static = plain; SDST-RigL = plain (1 - 1/500) + grads / 500 + G update / 500;
* ADAPT relaxed = plain (1 - 1/10) + br / 10 + G update / 500 + D resize / 1000 (the issue's
  formula); "ADAPT relaxed + grad copies" also charges the gradient-copy iterations.

BR sampling is charged to ADAPT only: the other methods do not need it (a `SparseGAN` samples BR
every `br_interval` iterations whatever the method; a large `br_interval` turns it off).

Ratios are to the dense model's plain iteration at the same XLA setting; "paired" is the median
over rounds of the same-round ratio, which load drifting between rounds disturbs less. Trace
counts of every compiled function are read after the rounds, i.e. after masks changed: a count
above 1 is a retrace. `--profile DIR` records one plain iteration of each non-XLA model with the
TensorFlow profiler and prints the self time by op type.

`import adapt_tf` turns TensorFlow's oneDNN CPU kernels on (TensorFlow itself enables them only
on CPUs with AVX-512 VNNI/BF16/AMX); run with `TF_ENABLE_ONEDNN_OPTS=0` in the environment to
measure TensorFlow's default Eigen kernels instead (the report says which ran).
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import adapt_tf  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS and TF_ENABLE_ONEDNN_OPTS)

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from adapt_tf import architectures, data, dst, topology  # noqa: E402
from adapt_tf.callbacks import DynamicSparsity  # noqa: E402
from adapt_tf.controller import ADAPTController  # noqa: E402
from adapt_tf.gan import SparseGAN  # noqa: E402
from adapt_tf.layers import (MaskedConv2D, MaskedDense, SNConv2D, SNDense,  # noqa: E402
                             masked_layers)

# Measured on this 2-core AVX2 machine with the official PyTorch code (torch 2.13 CPU, 2
# threads, SNGAN-32, D batch 64, G batch 128, n_dis 5, d = 0.1 ERK); see docs/BENCHMARKS.md.
TORCH_REFERENCE = {"dense_iteration_s": (41.0, 43.0), "d_step_s": 4.9, "g_step_s": 16.0,
                   "br_sample_s": 7.0, "g_mask_update_s": (0.17, 0.31), "threads": 2}
# Arithmetic of the official full-width iteration (issue 7; ours, without D's weight gradients
# in the G step, is 3.56 TFLOP by adapt_tf.flops "exact") and the fp32 peak of the 2 cores at
# base clock (2 x 2.45 GHz x 32 FLOP/cycle, AVX2 FMA).
FULL_ITERATION_FLOP = 3.6e12
PEAK_FLOPS = 157e9
# Issue 7's targets: ratios to dense, seconds per update (wall), speed-up over PyTorch.
GOALS = {"static_ratio": 1.03, "adapt_ratio": 1.08, "g_update_s": 0.2, "d_resize_s": 0.2,
         "retraces": 0, "speedup_vs_torch": 1.25}

KINDS = ("plain", "br", "grads")


@dataclasses.dataclass(frozen=True)
class Setup:
    """What to measure. Defaults: the paper's SNGAN-32 setting at full width.

    g_width, d_width: `gf_dim` / `df_dim` (paper 256 / 128).
    xla: the jit_compile settings to measure, each a separate set of models.
    iterations: measured rounds; warmup: untimed rounds (the first traces and compiles).
    grad_copies: measure the gradient-copy iteration (RigL / ADAPT growth needs it).
    dense_masked: also measure adapt_tf's dense method (masks of ones).
    ema_decay: the EMA generator's decay (paper 0.999 for SNGAN), None for no EMA.
    schedule: (br_interval, g_interval, d_interval) of the amortisation; total_steps: the run
      length the DST drop fraction is scheduled over.
    """

    g_width: int = 256
    d_width: int = 128
    d_batch: int = 64
    g_batch: int = 128
    n_dis: int = 5
    density: float = 0.1
    xla: tuple[bool, ...] = (False, True)
    iterations: int = 3
    warmup: int = 1
    grad_copies: bool = True
    dense_masked: bool = False
    ema_decay: float | None = 0.999
    schedule: tuple[int, int, int] = (10, 500, 1000)
    total_steps: int = 100_000
    seed: int = 0

    def __post_init__(self):
        for name in ("g_width", "d_width", "d_batch", "g_batch", "n_dis", "iterations",
                     "warmup", "total_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not 0.0 < self.density < 1.0:
            raise ValueError(f"density must be in (0, 1) for the sparse model, got "
                             f"{self.density!r}.")
        if not self.xla:
            raise ValueError("xla is empty; pass (False,), (True,) or (False, True).")

    @property
    def full_width(self) -> bool:
        arch = architectures.ARCHITECTURES["sngan32"]
        return (self.g_width, self.d_width) == (arch.g_width, arch.d_width)


# Tracing a train-function variant costs ~30 CPU s and an XLA compile ~65 CPU s whatever the
# width, so the quick run measures without XLA (add --xla both for the XLA rows, ~11 min here).
# A quick round takes ~5 s, so 8 of them (paired ratios need several under drifting load).
QUICK = dict(g_width=32, d_width=32, iterations=8, warmup=1, xla=(False,))


# ------------------------------------------------------------------------ models under test


@dataclasses.dataclass
class Subject:
    """One model under test: a compiled `SparseGAN`, its data and its sparsity callbacks."""

    name: str
    xla: bool
    gan: SparseGAN
    iterator: Any
    dynamic: DynamicSparsity | None = None
    controller: ADAPTController | None = None
    times: dict = dataclasses.field(default_factory=dict)
    first_call: dict = dataclasses.field(default_factory=dict)

    @property
    def label(self) -> str:
        return _label(self.name, self.xla)


def _label(name: str, xla: bool) -> str:
    """A model's key in the report: "dense", "sparse+xla", ..."""
    return f"{name}+xla" if xla else name


def _measured(report: dict[str, Any], name: str, xla: bool) -> dict[str, Any]:
    """The measured iteration kinds and updates of one model of the report."""
    return report["subjects"][_label(name, xla)]["kinds"]


def _unmasked(model: keras.Model) -> keras.Model:
    """The same network with every masked layer replaced by its unmasked SN counterpart."""

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, MaskedConv2D):
            return SNConv2D.from_config(config)
        if isinstance(layer, MaskedDense):
            return SNDense.from_config(config)
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def _optimizer() -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(2e-4, beta_1=0.0, beta_2=0.9)


def build_subject(setup: Setup, name: str, *, xla: bool) -> Subject:
    """Builds, sparsifies and compiles one model under test ("dense", "dense_masked", "sparse")."""
    if name not in ("dense", "dense_masked", "sparse"):
        raise ValueError(f"name={name!r}: choose 'dense', 'dense_masked' or 'sparse'.")
    arch = architectures.ARCHITECTURES["sngan32"]
    generator, discriminator = architectures.build_models(
        "sngan32", g_width=setup.g_width, d_width=setup.d_width, seed=setup.seed)
    if name == "dense":
        generator, discriminator = _unmasked(generator), _unmasked(discriminator)
    elif name == "sparse":
        topology.sparsify(generator, setup.density, seed=setup.seed)
        topology.sparsify(discriminator, setup.density, seed=setup.seed + 1)
    br_interval, g_interval, d_interval = setup.schedule
    gan = SparseGAN(generator, discriminator, latent_dim=arch.latent_dim, n_dis=setup.n_dis,
                    g_batch_size=setup.g_batch, br_interval=br_interval,
                    br_window=max(br_interval, 1000), ema_decay=setup.ema_decay,
                    seed=setup.seed)
    gan.compile(g_optimizer=_optimizer(), d_optimizer=_optimizer(), loss="hinge",
                jit_compile=xla)
    images = tf.random.stateless_uniform(
        [setup.n_dis * setup.d_batch, arch.image_size, arch.image_size, 3], [setup.seed, 1],
        -1.0, 1.0)
    dataset = tf.data.Dataset.from_tensors(images).repeat().prefetch(tf.data.AUTOTUNE)
    subject = Subject(name, xla, gan, iter(dataset))
    if name == "sparse":
        subject.dynamic = DynamicSparsity("generator", dst.RigL(interval=g_interval),
                                          total_steps=setup.total_steps)
        subject.controller = ADAPTController("relaxed", total_steps=setup.total_steps,
                                             interval=d_interval)
        for callback in (subject.dynamic, subject.controller):
            callback.set_model(gan)
        subject.controller.on_train_begin()
    return subject


# ------------------------------------------------------------------------------ measuring


def _timed(fn: Callable[[], Any]) -> dict[str, float]:
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "load": load}


def _step_of(kind: str, round_index: int, br_interval: int) -> int:
    """An iteration number whose variant is `kind`: BR steps are multiples of br_interval."""
    base = br_interval * (round_index + 1)
    return base if kind == "br" else base + 1


def run_iteration(subject: Subject, kind: str, round_index: int) -> dict[str, float]:
    """Runs one iteration of `kind` ("plain", "br", "grads") and returns its timing."""
    gan = subject.gan
    gan.step.assign(_step_of(kind, round_index, gan.br_interval))
    train_function = gan.make_train_function()  # re-reads the host step from gan.step
    if kind == "grads":
        gan.request_gradients("generator")
        gan.request_gradients("discriminator")

    def call():
        logs = train_function(subject.iterator)
        float(logs["d_loss"])  # the step has finished

    return _timed(call)


def _fill_window(gan: SparseGAN, ratio: float) -> None:
    window = gan.balance
    window.samples.assign(tf.fill([window.capacity], ratio))
    window.count.assign(window.capacity)
    window.position.assign(0)


def run_updates(setup: Setup, subject: Subject,
                round_index: int) -> dict[str, dict[str, float]]:
    """One forced G mask update and one forced D resize (grow on even rounds, else prune)."""
    _, g_interval, d_interval = setup.schedule
    grow = round_index % 2 == 0
    _fill_window(subject.gan, 1.0 if grow else 0.0)  # BR >= B+ grows D, BR <= B- prunes it
    g_time = _timed(lambda: subject.dynamic.update(g_interval * (round_index + 1)))
    d_time = _timed(lambda: subject.controller.decide(d_interval * (round_index + 1)))
    return {"g_update": g_time, "d_grow" if grow else "d_prune": d_time}


def _kinds(setup: Setup, subject: Subject) -> tuple[str, ...]:
    if subject.name != "sparse":
        return ("plain",)
    return KINDS if setup.grad_copies else ("plain", "br")


def _keep(store: dict, key: str, timing: dict[str, float], *, warmup: bool,
          first_call: dict) -> None:
    """Measured timings go to `store`; a warm-up keeps only the first call of each key."""
    if not warmup:
        store.setdefault(key, []).append(timing)
    elif key not in first_call:
        first_call[key] = timing


def _round(setup: Setup, subjects: list[Subject], round_index: int, *, warmup: bool,
           log: Callable[[str], None]) -> None:
    shift = round_index % len(subjects)
    what = "warm-up" if warmup else "round"
    for subject in subjects[shift:] + subjects[:shift]:
        kinds = _kinds(setup, subject)
        for kind in kinds:
            timing = run_iteration(subject, kind, round_index)
            _keep(subject.times, kind, timing, warmup=warmup, first_call=subject.first_call)
            log(f"  {what} {round_index} {subject.label:18s} {kind:9s} cpu "
                f"{timing['cpu_s']:8.2f} s  wall {timing['wall_s']:8.2f} s  "
                f"load {timing['load']:.1f}")
        if subject.name != "sparse":
            continue
        for key, update in run_updates(setup, subject, round_index).items():
            _keep(subject.times, key, update, warmup=warmup, first_call=subject.first_call)
            log(f"  {what} {round_index} {subject.label:18s} {key:9s} cpu "
                f"{update['cpu_s']:8.3f} s  wall {update['wall_s']:8.3f} s  "
                f"load {update['load']:.1f}")


def measure(setup: Setup, *, log: Callable[[str], None] = print) -> list[Subject]:
    """Builds every model, warms up, and runs the interleaved measured rounds."""
    names = ["dense"] + (["dense_masked"] if setup.dense_masked else []) + ["sparse"]
    subjects = []
    for xla in setup.xla:
        for name in names:
            log(f"building {name} (xla={xla})")
            subjects.append(build_subject(setup, name, xla=xla))
    for round_index in range(setup.warmup):
        _round(setup, subjects, round_index, warmup=True, log=log)
    for round_index in range(setup.warmup, setup.warmup + setup.iterations):
        _round(setup, subjects, round_index, warmup=False, log=log)
    return subjects


# -------------------------------------------------------------------------------- report


def _median(timings: list[dict[str, float]] | None, key: str = "cpu_s") -> float | None:
    if not timings:
        return None
    return statistics.median(t[key] for t in timings)


def _summary(timings: list[dict[str, float]]) -> dict[str, Any]:
    return {"median_cpu_s": _median(timings), "median_wall_s": _median(timings, "wall_s"),
            "min_wall_s": min(t["wall_s"] for t in timings),
            "cpu_s": [round(t["cpu_s"], 4) for t in timings],
            "wall_s": [round(t["wall_s"], 4) for t in timings],
            "load": [round(t["load"], 2) for t in timings]}


def _trace_counts(subject: Subject) -> dict[str, int | None]:
    """Traces of each compiled function of the subject (variant keys as strings).

    The callbacks' update functions are private `tf.function`s; their tracing counters are
    read here because no public API exposes them.
    """
    counts = {f"train{list(map(int, key))}": count
              for key, count in subject.gan.trace_counts.items()}
    if subject.dynamic is not None:
        counts["g_update"] = _tracing_count(subject.dynamic._update)
        counts["d_resize"] = _tracing_count(subject.controller._resize)
    return counts


def _tracing_count(function) -> int | None:
    getter = getattr(function, "experimental_get_tracing_count", None)
    return getter() if getter is not None else None


def _methods(setup: Setup, dense: float, parts: dict[str, float | None]) -> list[dict]:
    """Per-iteration cost of each method, composed from the measured parts (CPU seconds)."""
    br_every, g_every, d_every = setup.schedule
    plain, br, grads = parts["plain"], parts["br"], parts.get("grads")
    g_update, d_resize = parts.get("g_update"), parts.get("d_resize")
    rows = [("static (d = 0.1)", plain)]
    if g_update is not None:
        copy = grads if grads is not None else plain
        rows.append(("SDST-RigL", plain * (1 - 1 / g_every) + copy / g_every
                     + g_update / g_every))
    if br is not None and g_update is not None and d_resize is not None:
        adapt = plain * (1 - 1 / br_every) + br / br_every + g_update / g_every \
            + d_resize / d_every
        rows.append(("ADAPT relaxed", adapt))
        if grads is not None:
            extra = (grads - plain) * (1 / g_every + 1 / d_every)
            rows.append(("ADAPT relaxed + grad copies", adapt + extra))
    return [{"method": name, "cpu_s": value, "ratio_to_dense": value / dense}
            for name, value in rows]


def _subject_report(subject: Subject) -> dict[str, Any]:
    times = dict(subject.times)
    resizes = times.get("d_grow", []) + times.get("d_prune", [])
    if resizes:
        times["d_resize"] = resizes
    return {"kinds": {k: _summary(v) for k, v in times.items()},
            "first_call": {k: {"cpu_s": round(v["cpu_s"], 3), "wall_s": round(v["wall_s"], 3)}
                           for k, v in subject.first_call.items()},
            "trace_counts": _trace_counts(subject),
            "masked_weights": {net: sum(int(layer.mask.shape.num_elements())
                                        for layer in masked_layers(getattr(subject.gan, net)))
                               for net in ("generator", "discriminator")}}


def _torch_comparison(setup: Setup, dense: dict[str, Any]) -> dict[str, Any] | None:
    if not setup.full_width or (setup.d_batch, setup.g_batch, setup.n_dis) != (64, 128, 5):
        return None
    cpu, wall = dense["median_cpu_s"], dense["min_wall_s"]
    idle = cpu / TORCH_REFERENCE["threads"]
    torch_mid = sum(TORCH_REFERENCE["dense_iteration_s"]) / 2
    return {"torch_dense_iteration_s": TORCH_REFERENCE["dense_iteration_s"],
            "ours_cpu_s": cpu, "ours_best_wall_s": wall,
            "ours_idle_estimate_s": idle, "speedup_idle_estimate": torch_mid / idle,
            "speedup_best_wall": torch_mid / wall,
            "arithmetic_floor_s": FULL_ITERATION_FLOP / PEAK_FLOPS,
            "floor_fraction_idle_estimate": FULL_ITERATION_FLOP / PEAK_FLOPS / idle}


def machine_info() -> dict[str, Any]:
    """TensorFlow, CPU and GPU this process runs on, and the current load."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    return {"tensorflow": tf.__version__, "tf_keras": keras.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu": model, "cores": os.cpu_count(), "avx2": " avx2" in flags,
            "avx512": " avx512f" in flags,
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "onednn": _onednn_enabled(),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _onednn_enabled() -> bool | None:
    """Whether TensorFlow's oneDNN ops are on (set TF_ENABLE_ONEDNN_OPTS before importing TF)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def _paired_ratio(sparse: dict[str, Any], dense: dict[str, Any]) -> float:
    """Median over rounds of (sparse plain / dense plain) CPU time of the same round.

    Robust to load that drifts between rounds: both models of a ratio ran minutes apart.
    """
    return statistics.median(s / d for s, d in zip(sparse["cpu_s"], dense["cpu_s"]))


def _setting_rows(setup: Setup, report: dict[str, Any], xla: bool) -> list[dict[str, Any]]:
    """The table rows of one XLA setting: dense, (dense with masks), composed methods."""
    dense = _measured(report, "dense", xla)["plain"]
    sparse = _measured(report, "sparse", xla)
    rows = [{"method": "dense (no masks)", "cpu_s": dense["median_cpu_s"],
             "ratio_to_dense": 1.0}]
    masked = report["subjects"].get(_label("dense_masked", xla))
    if masked:
        value = masked["kinds"]["plain"]
        rows.append({"method": "dense (masks of ones)", "cpu_s": value["median_cpu_s"],
                     "ratio_to_dense": value["median_cpu_s"] / dense["median_cpu_s"],
                     "paired_ratio": _paired_ratio(value, dense)})
    methods = _methods(setup, dense["median_cpu_s"],
                       {k: v["median_cpu_s"] for k, v in sparse.items()})
    methods[0]["paired_ratio"] = _paired_ratio(sparse["plain"], dense)
    return [{**row, "xla": xla} for row in rows + methods]


def _br_overhead(setup: Setup, sparse: dict[str, Any]) -> dict[str, float]:
    plain, br = sparse["plain"]["median_cpu_s"], sparse["br"]["median_cpu_s"]
    return {"br_minus_plain_cpu_s": br - plain, "fraction_of_plain": br / plain - 1,
            "amortised_fraction": (br / plain - 1) / setup.schedule[0]}


def build_report(setup: Setup, subjects: list[Subject]) -> dict[str, Any]:
    """Medians, ratios to dense, composed method costs, traces, memory, machine."""
    report: dict[str, Any] = {"setup": dataclasses.asdict(setup), "machine": machine_info(),
                              "subjects": {s.label: _subject_report(s) for s in subjects},
                              "table": [], "br_overhead": {}}
    for xla in setup.xla:
        report["table"] += _setting_rows(setup, report, xla)
        report["br_overhead"][f"xla={xla}"] = _br_overhead(setup, _measured(report, "sparse", xla))
    best_xla = min(setup.xla, key=lambda xla: _measured(report, "dense", xla)["plain"][
        "median_cpu_s"])
    report["torch"] = _torch_comparison(setup, _measured(report, "dense", best_xla)["plain"])
    report["retraces"] = sum(max(0, (c or 0) - 1) for s in report["subjects"].values()
                             for c in s["trace_counts"].values())
    report["peak_rss_mb"] = _peak_rss_mb()
    report["machine"]["load_average_end"] = report["machine"].pop("load_average")
    report["goals"] = _goals(report, best_xla)
    return report


def _goals(report: dict[str, Any], xla: bool) -> dict[str, dict[str, Any]]:
    """Issue 7's goals against this run, at `xla` (the setting with the faster dense iteration).

    The ratios are the paired ones: static = the median same-round ratio to dense, ADAPT =
    that times ADAPT's composed cost over static's (both from the sparse model's own medians).
    """
    rows = {row["method"]: row for row in report["table"] if row["xla"] == xla}
    kinds = _measured(report, "sparse", xla)
    static = rows["static (d = 0.1)"]
    measured = {"static_ratio": static["paired_ratio"],
                "adapt_ratio": static["paired_ratio"] * rows["ADAPT relaxed"]["cpu_s"]
                / static["cpu_s"],
                "g_update_s": kinds["g_update"]["median_wall_s"],
                "d_resize_s": kinds["d_resize"]["median_wall_s"],
                "retraces": report["retraces"]}
    if report["torch"]:
        measured["speedup_vs_torch"] = report["torch"]["speedup_best_wall"]
    return {name: {"target": GOALS[name], "measured": value, "xla": xla,
                   "met": value >= GOALS[name] if name == "speedup_vs_torch"
                   else value <= GOALS[name]}
            for name, value in measured.items()}


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table (what the CLI prints)."""
    setup, machine = report["setup"], report["machine"]
    lines = [f"SNGAN-32 G width {setup['g_width']}, D width {setup['d_width']}, D batch "
             f"{setup['d_batch']}, G batch {setup['g_batch']}, n_dis {setup['n_dis']}, "
             f"d = {setup['density']} ERK; {setup['iterations']} measured rounds after "
             f"{setup['warmup']} warm-up",
             f"TF {machine['tensorflow']} (tf_keras {machine['tf_keras']}), {machine['cpu']}, "
             f"{machine['cores']} cores, AVX2 {machine['avx2']}, oneDNN {machine['onednn']}, "
             f"GPUs {machine['gpus'] or 'none'}, load at end {machine['load_average_end']}",
             "", f"{'method':30s} {'XLA':5s} {'CPU s/it':>10s} {'/ dense':>8s} {'paired':>7s}"]
    for row in report["table"]:
        paired = f"{row['paired_ratio']:7.3f}" if "paired_ratio" in row else ""
        lines.append(f"{row['method']:30s} {str(row['xla']):5s} {row['cpu_s']:10.3f} "
                     f"{row['ratio_to_dense']:8.3f} {paired}")
    lines.append("")
    for label, subject in report["subjects"].items():
        kinds = ", ".join(f"{k} {v['median_cpu_s']:.3f} cpu ({min(v['cpu_s']):.3f}-"
                          f"{max(v['cpu_s']):.3f}) / {v['median_wall_s']:.3f} wall"
                          for k, v in subject["kinds"].items())
        lines.append(f"{label:18s} {kinds}")
        lines.append(f"{'':18s} first calls (trace/compile): " + ", ".join(
            f"{k} {v['cpu_s']:.1f} cpu / {v['wall_s']:.1f} wall"
            for k, v in subject["first_call"].items()))
        lines.append(f"{'':18s} traces {subject['trace_counts']}  masked weights "
                     f"{subject['masked_weights']}")
    for key, value in report.get("br_overhead", {}).items():
        lines.append(f"BR sample ({key}): +{value['br_minus_plain_cpu_s']:.3f} CPU s "
                     f"({100 * value['fraction_of_plain']:.1f} % of a plain iteration, "
                     f"{100 * value['amortised_fraction']:.2f} % amortised)")
    goals = report["goals"]
    lines.append(f"goals (XLA {next(iter(goals.values()))['xla']}): " + ", ".join(
        f"{name} {goal['measured']:.3f} vs {goal['target']} {'met' if goal['met'] else 'NOT met'}"
        for name, goal in goals.items()))
    lines.append(f"retraces after the first call: {report['retraces']}; peak RSS "
                 f"{report['peak_rss_mb']:.0f} MB")
    torch = report.get("torch")
    if torch:
        lines.append(
            f"vs official PyTorch ({torch['torch_dense_iteration_s']} s/it, 2 threads): ours "
            f"{torch['ours_cpu_s']:.1f} CPU s = {torch['ours_idle_estimate_s']:.1f} s on 2 idle "
            f"cores (x{torch['speedup_idle_estimate']:.2f}); best wall "
            f"{torch['ours_best_wall_s']:.1f} s (x{torch['speedup_best_wall']:.2f}); "
            f"arithmetic floor {torch['arithmetic_floor_s']:.1f} s")
    if "profile" in report:
        lines += ["", "profile (self time by op type, one plain iteration):"]
        for label, ops in report["profile"].items():
            lines.append(f"  {label}: " + ", ".join(f"{op} {share:.1f} %" for op, share in
                                                     list(ops["share_percent"].items())[:10]))
    if "input_pipeline" in report:
        lines.append(f"input pipeline: {report['input_pipeline']}")
    return "\n".join(lines)


# ------------------------------------------------------------------- profile and pipeline


def profile_iteration(subject: Subject, directory: str, *, top: int = 15) -> dict[str, Any]:
    """Self time by op type of one plain iteration, from the TensorFlow profiler."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    run_iteration(subject, "plain", 10_000)  # untimed: the profiler must not see a trace
    logdir = os.path.join(directory, subject.label)
    tf.profiler.experimental.start(logdir)
    run_iteration(subject, "plain", 10_001)
    tf.profiler.experimental.stop()
    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    raw, _ = plugin.xspace_to_tools_data(paths[-1:], "framework_op_stats", {})
    table = json.loads(raw)[0]
    columns = [c["id"] for c in table["cols"]]
    by_type: dict[str, float] = {}
    for row in table["rows"]:
        values = dict(zip(columns, (cell["v"] if cell else None for cell in row["c"])))
        if values["host_or_device"] == "Host":
            by_type[values["type"]] = by_type.get(values["type"], 0.0) + \
                values["total_self_time"]
    idle = by_type.pop("IDLE", 0.0)  # thread-pool time with nothing to run
    total = sum(by_type.values())
    ranked = sorted(by_type.items(), key=lambda item: -item[1])
    return {"busy_self_time_s": total / 1e6, "idle_s": idle / 1e6, "logdir": logdir,
            "share_percent": {op: 100 * t / total for op, t in ranked[:top]}}


def pipeline_throughput(setup: Setup, *, batches: int = 20) -> dict[str, Any]:
    """Seconds per batch of the synthetic pipeline and of adapt_tf's toy_shapes pipeline."""
    arch = architectures.ARCHITECTURES["sngan32"]
    size = setup.n_dis * setup.d_batch
    result = {}
    synthetic = tf.data.Dataset.from_tensors(
        tf.zeros([size, arch.image_size, arch.image_size, 3])).repeat().prefetch(2)
    candidates = {"synthetic": lambda: synthetic}
    candidates["toy_shapes"] = lambda: data.make_dataset("toy_shapes", batch_size=size,
                                                        image_size=arch.image_size)
    for name, make in candidates.items():
        try:
            iterator = iter(make())
        except (ValueError, OSError) as error:  # not prepared here: say so, do not fail
            result[name] = f"unavailable ({type(error).__name__})"
            continue
        next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        result[name] = {"s_per_batch": (time.perf_counter() - start) / batches}
    return result


# ----------------------------------------------------------------------------------- CLI


def run_benchmark(setup: Setup, *, profile_dir: str | None = None, check_pipeline: bool = False,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measures `setup` and returns the report (see the module docstring)."""
    subjects = measure(setup, log=log)
    report = build_report(setup, subjects)
    if profile_dir:
        report["profile"] = {s.label: profile_iteration(s, profile_dir)
                             for s in subjects if not s.xla}
    if check_pipeline:
        report["input_pipeline"] = pipeline_throughput(setup)
    return report


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"reduced width ({QUICK['g_width']}/{QUICK['d_width']}), same "
                        "batch sizes and n_dis")
    parser.add_argument("--g-width", type=int)
    parser.add_argument("--d-width", type=int)
    parser.add_argument("--iterations", type=int,
                        help="measured rounds (default 3; 8 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed rounds (default 1)")
    parser.add_argument("--xla", choices=("both", "off", "on"),
                        help="jit_compile settings to measure (default both; off with --quick)")
    parser.add_argument("--no-grad-copies", action="store_true",
                        help="skip the gradient-copy iteration (updates still measured)")
    parser.add_argument("--dense-masked", action="store_true",
                        help="also measure the dense method with masks of ones")
    parser.add_argument("--profile", metavar="DIR", help="profile one plain iteration")
    parser.add_argument("--no-pipeline-check", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")
    return parser.parse_args(argv)


def setup_from_args(args: argparse.Namespace) -> Setup:
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    for name in ("g_width", "d_width", "iterations", "warmup"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.xla is not None:
        values["xla"] = {"both": (False, True), "off": (False,), "on": (True,)}[args.xla]
    values["grad_copies"] = not args.no_grad_copies
    values["dense_masked"] = args.dense_masked
    return Setup(**values)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(sys.argv[1:] if argv is None else argv)
    setup = setup_from_args(args)
    start = time.perf_counter()
    report = run_benchmark(setup, profile_dir=args.profile,
                           check_pipeline=not args.no_pipeline_check,
                           log=lambda line: print(line, flush=True))
    report["elapsed_s"] = time.perf_counter() - start
    print(format_report(report))
    print(f"elapsed {report['elapsed_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
