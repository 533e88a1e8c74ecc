"""Per-iteration cost of adapt_tf's training methods against dense training, on synthetic data.

    python scripts/benchmark.py --quick                  # reduced width, a few minutes
    python scripts/benchmark.py --json bench.json        # full SNGAN-32 (slow on a CPU)
    python scripts/benchmark.py --quick --profile /tmp/adapt_profile
    python scripts/benchmark.py --quickstart /tmp/qs     # start-up of the README's quickstart
    python scripts/benchmark.py --bf16 --quick           # mixed_bfloat16 against float32
    python scripts/benchmark.py --host                   # host time per iteration of fit

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

BR sampling is charged to ADAPT only: the other methods do not take it (`train_lib` builds their
`SparseGAN` with `window_sampling=False`).

Ratios are to the dense model's plain iteration at the same XLA setting; "paired" is the median
over rounds of the same-round ratio, which load drifting between rounds disturbs less. The goals
use the per-round paired ratios (static: plain / dense; ADAPT: the formula above with every part
from the same round) and a 95 % Student-t confidence interval of their geometric mean (on the
logs of the ratios): a ratio goal is met only when the whole interval is within the target,
otherwise it is "not shown". Trace counts of every compiled function are read after the
rounds, i.e. after masks changed: a count above 1 is a retrace. The first call of each variant
minus the median call of the same kind is reported as its tracing cost. `--profile DIR` records
one plain iteration of each non-XLA model with the TensorFlow profiler and prints the self time
by op type.

Measured in the same run, in every round, interleaved with the models above:

* ``torch``: a plain PyTorch implementation of the same dense SNGAN-32 iteration
  (scripts/torch_sngan.py: same layers, hinge loss, Adam, n_dis, batches, spectral norm on D,
  EMA), with as many threads as TensorFlow. Its first iteration runs under torch's
  FlopCounterMode, and the run stops unless the MACs torch executes equal adapt_tf's count
  (`kernel_iteration_macs` on adapt_tf.flops.macs' per-layer MACs) within `MAC_TOLERANCE`. Skipped,
  with a line saying so, when torch (the optional `bench` extra) is not installed.
* ``peak``: a 4096^2 fp32 matmul and the model's largest convolution in TensorFlow (oneDNN when
  on); the best round's GFLOP/s is the machine's measured peak, and the dense iteration's
  FLOP rate (2 x its MACs over its wall time) is reported as a share of it.

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
import math
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# OpenMP threads (torch's) that finish a parallel region sleep instead of spinning. With the
# default (spinning) on this shared 2-core machine at load 11-17, torch's width-32 iteration
# took 9.4-10.6 CPU s and 20-154 s wall against 1.4 CPU s and 2.2 s wall with PASSIVE. Set
# OMP_WAIT_POLICY=ACTIVE in the environment to measure the default on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import adapt_tf  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS and TF_ENABLE_ONEDNN_OPTS)

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from adapt_tf.gan import architectures  # noqa: E402
from adapt_tf import data  # noqa: E402
from adapt_tf.sparse import dst, topology  # noqa: E402
from adapt_tf.flops import macs  # noqa: E402
from adapt_tf.sparse.sparsity import DynamicSparsity  # noqa: E402
from adapt_tf.runs.workdir import Workdir  # noqa: E402
from adapt_tf.balance.controller import ADAPTController  # noqa: E402
from adapt_tf.gan.sparse_gan import SparseGAN  # noqa: E402
from adapt_tf.sparse.layers import (MaskedConv2D, MaskedDense, SNConv2D,  # noqa: E402
                                    SNDense, masked_layers)

# Issue 7's targets: ratios to dense, seconds per update (wall), speed-up over PyTorch (here
# the same-run plain PyTorch baseline of scripts/torch_sngan.py). A ratio goal is met only when
# the upper end of its confidence interval over the rounds is below the bar (the lower end
# above it for the speed-up); the update goals use the slowest round.
GOALS = {"static_ratio": 1.03, "adapt_ratio": 1.08, "g_update_s": 0.2, "d_resize_s": 0.2,
         "retraces": 0, "speedup_vs_torch": 1.25, "tracing_cpu_s": 3.0}
CONFIDENCE = 0.95
# torch's executed MACs (FlopCounterMode) must equal ours (adapt_tf.flops) within this.
MAC_TOLERANCE = 1e-3
# The peak probe: a square fp32 matmul of this size.
MATMUL_SIZE = 4096

KINDS = ("plain", "br", "grads")
_START_LOAD = tuple(round(x, 2) for x in os.getloadavg())  # when the benchmark was imported


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
    graph_optimizer: `SparseGAN.compile`'s Grappler setting for the step functions (None: its
      default: without its passes idle on a CPU-only host).
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
    graph_optimizer: bool | None = None

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


# XLA compiles every train-function variant on top of its tracing: +25-40 CPU s per variant in
# run D (Zen 3, docs/BENCHMARKS.md) and +13-16 CPU s on an Intel Xeon (issue 28's report), more
# than a quick run's tracing without it, so the quick run measures without XLA (add --xla
# both for the XLA rows).
# A quick round takes ~6 s (with PyTorch and the probes). 8 rounds left the static ratio's
# interval at [0.980, 1.034] at load 1-3.5 here, so 16 (the interval narrows as 1/sqrt(n)).
QUICK = dict(g_width=32, d_width=32, iterations=16, warmup=1, xla=(False,))


# ------------------------------------------------------------------------ models under test


@dataclasses.dataclass
class Subject:
    """One thing timed in the rounds.

    A TensorFlow model under test ("dense", "dense_masked", "sparse") has a compiled `SparseGAN`,
    its data and its sparsity callbacks; the PyTorch baseline ("torch") and the peak probe
    ("peak") have `runs` instead: {kind: a call that does one unit of work and waits for it}.
    `info` holds what the report needs about the subject (MAC counts, FLOPs per kind, ...).
    """

    name: str
    xla: bool
    gan: SparseGAN | None = None
    iterator: Any = None
    dynamic: DynamicSparsity | None = None
    controller: ADAPTController | None = None
    runs: dict = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)
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
                jit_compile=xla, graph_optimizer=setup.graph_optimizer)
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


# ------------------------------------------------------- PyTorch baseline, MACs and peak

# Layers whose input is the network's input: the step computes no input gradient for them
# (z and the images are not differentiated; G's fakes are, in the G step, through D's input).
_G_INPUT_LAYERS = ("g_linear",)
_D_INPUT_LAYERS = ("d_block1_conv1", "d_block1_shortcut")


def kernel_iteration_macs(g_layers: dict[str, float], d_layers: dict[str, float], *,
                          d_batch: int, g_batch: int, n_dis: int,
                          g_inputs: tuple[str, ...] = _G_INPUT_LAYERS,
                          d_inputs: tuple[str, ...] = _D_INPUT_LAYERS) -> float:
    """MACs of the convolutions and linear layers of one dense iteration, as it executes.

    g_layers, d_layers: per-sample forward weight MACs by layer name. Each D step: G forward on
    d_batch fakes (no graph); D forward, weight gradients and input gradients (none for the
    `d_inputs` layers) on d_batch reals and d_batch fakes. The G step: G forward, weight and
    input gradients (none for `g_inputs`) on g_batch; D forward and input gradients, without
    D's weight gradients. Bias, BatchNorm, pooling and the spectral-norm power iteration are
    not counted (neither does torch's FlopCounterMode).
    """
    g, d = sum(g_layers.values()), sum(d_layers.values())
    g_in = sum(g_layers[name] for name in g_inputs)
    d_in = sum(d_layers[name] for name in d_inputs)
    d_step = d_batch * g + 2 * d_batch * (3 * d - d_in)
    g_step = g_batch * (3 * g - g_in) + g_batch * 2 * d
    return float(n_dis * d_step + g_step)


def our_macs(setup: Setup) -> dict[str, float]:
    """`kernel_iteration_macs` of adapt_tf's SNGAN-32 at `setup`, per layer from
    adapt_tf.flops.macs."""
    arch = architectures.ARCHITECTURES["sngan32"]
    generator, discriminator = architectures.build_models(
        "sngan32", g_width=setup.g_width, d_width=setup.d_width, seed=setup.seed)
    g_costs = macs.layer_macs(generator, input_shape=[arch.latent_dim])
    d_costs = macs.layer_macs(discriminator, input_shape=[arch.image_size, arch.image_size, 3])

    def kernels(costs):
        return {c.name: c.weight_macs for c in costs if c.kind in ("conv", "dense")}

    g_layers, d_layers = kernels(g_costs), kernels(d_costs)
    return {"total": kernel_iteration_macs(g_layers, d_layers, d_batch=setup.d_batch,
                                           g_batch=setup.g_batch, n_dis=setup.n_dis),
            "g_forward_per_sample": sum(g_layers.values()),
            "d_forward_per_sample": sum(d_layers.values())}


def compare_macs(ours: float, theirs: float, *, tolerance: float = MAC_TOLERANCE) -> float:
    """Relative difference theirs / ours - 1; RuntimeError when it exceeds `tolerance`."""
    difference = theirs / ours - 1.0
    if abs(difference) > tolerance:
        raise RuntimeError(
            f"The PyTorch baseline does {theirs:.6g} MACs per iteration and adapt_tf {ours:.6g} "
            f"({100 * difference:+.3f} %, tolerance {100 * tolerance:.2f} %): they do not do "
            "the same work, so their times do not compare. Fix scripts/torch_sngan.py.")
    return difference


def threads() -> int:
    """TensorFlow's intra-op threads (its default: the cores this process may use)."""
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    if configured:
        return configured
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _torch_module():
    """scripts/torch_sngan.py, or None when torch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import torch_sngan
    return torch_sngan


def build_torch_subject(setup: Setup, ours: dict[str, float], *,
                        log: Callable[[str], None] = print) -> Subject | None:
    """The plain PyTorch dense iteration, its MACs checked against `ours`; None without torch.

    Its first call (untimed, reported) runs under FlopCounterMode, which counts the MACs.
    """
    module = _torch_module()
    if module is None:
        log("torch is not installed: no same-run PyTorch baseline "
            "(pip install -e '.[bench]' adds it)")
        return None
    import torch
    torch.set_num_threads(threads())
    iteration = module.DenseIteration(
        g_width=setup.g_width, d_width=setup.d_width, d_batch=setup.d_batch,
        g_batch=setup.g_batch, n_dis=setup.n_dis, ema_decay=setup.ema_decay, seed=setup.seed)
    counted: dict[str, Any] = {}
    first = _timed(lambda: counted.update(module.counted_macs(iteration)))
    difference = compare_macs(ours["total"], counted["total"])
    log(f"MACs per dense iteration: adapt_tf {ours['total']:.6g}, torch {counted['total']:.6g} "
        f"({100 * difference:+.4f} %, tolerance {100 * MAC_TOLERANCE:.2f} %)")
    subject = Subject("torch", False, runs={"plain": iteration},
                      info={"torch": torch.__version__, "threads": torch.get_num_threads(),
                            "macs": counted["total"], "macs_by_op": counted["by_op"],
                            "mac_difference": difference})
    subject.first_call["plain"] = first
    return subject


def build_peak_subject(setup: Setup) -> Subject:
    """TensorFlow (oneDNN when on) fp32 probes of the machine's peak, timed in every round.

    "matmul": [MATMUL_SIZE]^2 @ [MATMUL_SIZE]^2; "conv": the model's largest convolution, G's
    last-block 3x3 conv, on [g_batch, 32, 32, g_width] -> g_width channels. Each reduces its
    result to a scalar in the same function, so the timing waits for it.
    """
    n, width, batch = MATMUL_SIZE, setup.g_width, setup.g_batch
    a = tf.random.stateless_normal([n, n], [setup.seed, 2])
    b = tf.random.stateless_normal([n, n], [setup.seed, 3])
    x = tf.random.stateless_normal([batch, 32, 32, width], [setup.seed, 4])
    k = tf.random.stateless_normal([3, 3, width, width], [setup.seed, 5])
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    conv = tf.function(lambda: tf.reduce_sum(tf.nn.conv2d(x, k, 1, "SAME")))
    runs = {"matmul": lambda: float(matmul()), "conv": lambda: float(conv())}
    subject = Subject("peak", False, runs=runs, info={
        "flop": {"matmul": 2.0 * n ** 3, "conv": 2.0 * batch * 32 * 32 * width * width * 9},
        "shapes": {"matmul": [n, n, n], "conv": [batch, 32, 32, width, width, 3]}})
    for kind, run in runs.items():
        subject.first_call[kind] = _timed(run)
    return subject


# ------------------------------------------------------------------------ bf16 against fp32

# Batch settings of the bf16 comparison: the paper's SNGAN-32 and the quickstart's (gin_configs/
# quickstart.gin: D and G batch 32, n_dis 1), both at the setup's widths.
BF16_BATCHES = {"paper": dict(d_batch=64, g_batch=128, n_dis=5),
                "quickstart": dict(d_batch=32, g_batch=32, n_dis=1)}
POLICIES = ("float32", "mixed_bfloat16")
# Ops that do the arithmetic of an iteration: their dtype says whether bf16 reached the kernels.
_HEAVY_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MatMul", "_FusedConv2D",
              "_FusedMatMul", "BatchMatMulV2")


def bf16_support(flags: str | None = None) -> dict[str, bool]:
    """The CPU's bf16 instructions from /proc/cpuinfo's flags (or `flags`): AMX tiles
    (`amx_bf16`, Intel Sapphire Rapids and later) and AVX-512 BF16 (`avx512_bf16`: dot products
    and conversions only, e.g. AMD Zen 4 and 5)."""
    if flags is None:
        flags = ""
        if os.path.exists("/proc/cpuinfo"):
            with open("/proc/cpuinfo") as f:
                flags = next((line for line in f if line.startswith("flags")), "")
    names = set(flags.split())
    return {"amx_bf16": "amx_bf16" in names, "avx512_bf16": "avx512_bf16" in names}


def _build_in_policy(setup: Setup, policy: str) -> Subject:
    """The sparse model of `setup` built under the Keras mixed-precision `policy`."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        return build_subject(setup, "sparse", xla=False)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def heavy_op_dtypes(subject: Subject) -> dict[str, int]:
    """{"<op> <dtype>": count} of the convolutions and matmuls in the subject's compiled train
    functions (the outer graphs and the step functions they call)."""
    counts: dict[str, int] = {}
    compiled = subject.gan._compiled
    for run in [*compiled.functions.values(), *compiled.steps.values()]:
        for concrete in run._list_all_concrete_functions():
            graph = concrete.graph.as_graph_def()
            nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
            for node in nodes:
                if node.op in _HEAVY_OPS and "T" in node.attr:
                    key = f"{node.op} {tf.dtypes.as_dtype(node.attr['T'].type).name}"
                    counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def measure_bf16(setup: Setup, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The sparse model's plain iteration in fp32 and mixed_bfloat16, same run, interleaved
    rounds (the order alternating), at each of `BF16_BATCHES`: medians, first calls, the
    per-round fp32 / bf16 CPU-time ratio with its interval, and the heavy ops' dtypes."""
    report: dict[str, Any] = {"cpu": bf16_support()}
    for name, batches in BF16_BATCHES.items():
        batched = dataclasses.replace(setup, **batches)
        subjects = {policy: _build_in_policy(batched, policy) for policy in POLICIES}
        first = {policy: run_iteration(s, "plain", 0) for policy, s in subjects.items()}
        times: dict[str, list] = {policy: [] for policy in POLICIES}
        for round_index in range(1, batched.iterations + 1):
            order = POLICIES if round_index % 2 else POLICIES[::-1]
            for policy in order:
                times[policy].append(run_iteration(subjects[policy], "plain", round_index))
            log(f"  bf16 {name} round {round_index}: " + ", ".join(
                f"{p} {times[p][-1]['cpu_s']:.3f} cpu" for p in POLICIES))
        ratios = [f["cpu_s"] / b["cpu_s"] for f, b in zip(*(times[p] for p in POLICIES))]
        report[name] = {"batches": batches,
                        "first_call": {p: {k: round(v, 3) for k, v in t.items()}
                                       for p, t in first.items()},
                        **{p: _summary(times[p]) for p in POLICIES},
                        "speedup_cpu_s": ratio_interval(ratios),
                        "heavy_ops_bf16_model": heavy_op_dtypes(subjects["mixed_bfloat16"])}
    return report


def format_bf16(report: dict[str, Any]) -> list[str]:
    """The bf16 comparison's lines of the printed report."""
    cpu = report["cpu"]
    lines = [f"bf16 (mixed_bfloat16 vs float32, sparse plain iteration; CPU amx_bf16 "
             f"{cpu['amx_bf16']}, avx512_bf16 {cpu['avx512_bf16']}):"]
    for name in BF16_BATCHES:
        entry = report[name]
        lines.append(
            f"  {name} {entry['batches']}: fp32 {entry['float32']['median_cpu_s']:.3f} CPU s, "
            f"bf16 {entry['mixed_bfloat16']['median_cpu_s']:.3f}; fp32 / bf16 per round "
            f"{_fmt_interval(entry['speedup_cpu_s'])}; first calls fp32 "
            f"{entry['first_call']['float32']['cpu_s']:.1f} / bf16 "
            f"{entry['first_call']['mixed_bfloat16']['cpu_s']:.1f} CPU s")
        lines.append(f"    heavy ops of the bf16 model: {entry['heavy_ops_bf16_model']}")
    return lines


# -------------------------------------------------------------- host time per iteration


class _IterationClock(keras.callbacks.Callback):
    """Times every iteration of `fit` (end of one batch's callbacks to the next's) and the
    train-function call inside it; placed last among the callbacks that do work."""

    _supports_tf_logs = True

    def __init__(self):
        super().__init__()
        self.iteration_s: list[float] = []
        self.call_s: list[float] = []
        self._last: float | None = None

    def on_train_begin(self, logs=None):
        # fit reads `train_function` at every step, so the wrapper times each call.
        inner = self.model.train_function

        def timed(iterator):
            start = time.perf_counter()
            logs = inner(iterator)
            self.call_s.append(time.perf_counter() - start)
            return logs

        self.model.train_function = timed

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is not None:
            self.iteration_s.append(now - self._last)
        self._last = now


def host_time(*, steps: int = 400, skip: int = 50,
              bindings: tuple[str, ...] = ()) -> dict[str, Any]:
    """Steady-state host time per iteration of the quickstart run (gin_configs/quickstart.gin,
    its callbacks at their cadences, evaluation off, `steps` iterations): an iteration's wall
    time in `fit` minus its train-function call, i.e. the callbacks' and Keras' loop's work,
    median over the iterations after the first `skip` (which trace the variants)."""
    import tempfile

    from adapt_tf.runs import configurables

    clock = _IterationClock()
    with tempfile.TemporaryDirectory() as workdir:
        configurables.parse_config(["gin_configs/quickstart.gin"], [
            f"train.total_steps = {steps}", "train.eval_every = None", *bindings])
        configurables.train(workdir=workdir, extra_callbacks=[clock])
    # call_s[i] is iteration i + 1; iteration_s[i] runs from the end of i + 1 to that of i + 2.
    host = [total - call for total, call in zip(clock.iteration_s, clock.call_s[1:])][skip:]
    calls = clock.call_s[skip + 1:]
    return {"steps": steps, "measured": len(host), "host_median_ms": 1e3 * statistics.median(host),
            "host_mean_ms": 1e3 * statistics.fmean(host),
            "call_median_ms": 1e3 * statistics.median(calls),
            "iteration_median_ms": 1e3 * statistics.median(clock.iteration_s[skip:])}


# ------------------------------------------------------------------------------ measuring


def _timed(fn: Callable[[], Any]) -> dict[str, float]:
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "load": load}


def _step_of(kind: str, round_index: int, br_interval: int) -> int:
    """Completed iterations before an iteration whose variant is `kind`: the BR iteration
    completes a multiple of br_interval (`SparseGAN.samples_window`)."""
    base = br_interval * (round_index + 1)
    return base - 1 if kind == "br" else base


class _KeepBothGradients:
    """Declares that every iteration keeps both networks' kernel gradients."""

    @staticmethod
    def needs_gradients(step: int) -> tuple[str, ...]:
        return ("generator", "discriminator")


def run_iteration(subject: Subject, kind: str, round_index: int) -> dict[str, float]:
    """Runs one iteration of `kind` ("plain", "br", "grads") and returns its timing."""
    if subject.runs:
        return _timed(subject.runs[kind])
    gan = subject.gan
    gan.step.assign(_step_of(kind, round_index, gan.br_interval))
    train_function = gan.make_train_function()  # re-reads the host step from gan.step
    # Outside fit, set by hand what fit collects from its callbacks' `needs_gradients` and
    # `SparseGAN.variant` reads (no public way to declare them outside fit).
    gan._gradient_users = (_KeepBothGradients(),) if kind == "grads" else ()

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
    if subject.runs:
        return tuple(subject.runs)
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
            if key != "g_update" and not warmup:  # the round's resize, grow or prune
                subject.times.setdefault("d_resize", []).append(update)
            log(f"  {what} {round_index} {subject.label:18s} {key:9s} cpu "
                f"{update['cpu_s']:8.3f} s  wall {update['wall_s']:8.3f} s  "
                f"load {update['load']:.1f}")


def measure(setup: Setup, *, log: Callable[[str], None] = print, torch: bool = True,
            peak: bool = True) -> list[Subject]:
    """Builds every subject, warms up, and runs the interleaved measured rounds.

    The TensorFlow models, then (with `torch`, when it is installed) the PyTorch baseline and
    (with `peak`) the peak probes; all of them are timed in every round, in rotating order.
    """
    names = ["dense"] + (["dense_masked"] if setup.dense_masked else []) + ["sparse"]
    subjects = []
    for xla in setup.xla:
        for name in names:
            log(f"building {name} (xla={xla})")
            subjects.append(build_subject(setup, name, xla=xla))
    macs = our_macs(setup)
    for subject in subjects:
        subject.info["macs"] = macs
    if torch:
        log("building the PyTorch baseline (its first iteration counts MACs)")
        baseline = build_torch_subject(setup, macs, log=log)
        if baseline is not None:
            subjects.append(baseline)
    if peak:
        log("building the peak probes")
        subjects.append(build_peak_subject(setup))
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
    """Traces of each compiled function of the subject: the one-device iteration's step
    functions by name, a multi-replica variant's key as a string ("train[1, 0, 0]").

    The callbacks' update functions are private `tf.function`s; their tracing counters are
    read here because no public API exposes them.
    """
    counts = {key if isinstance(key, str) else f"train{list(map(int, key))}": count
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
    report = {"kinds": {k: _summary(v) for k, v in subject.times.items()},
              "first_call": {k: {"cpu_s": round(v["cpu_s"], 3), "wall_s": round(v["wall_s"], 3)}
                             for k, v in subject.first_call.items()},
              "info": subject.info}
    if subject.gan is None:
        return report
    report["trace_counts"] = _trace_counts(subject)
    report["masked_weights"] = {net: sum(int(layer.mask.shape.num_elements())
                                         for layer in masked_layers(getattr(subject.gan, net)))
                                for net in ("generator", "discriminator")}
    report["tracing"] = _tracing_cost(report)
    return report


def _tracing_cost(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """First call minus the median measured call of the same kind: tracing (and compiling)."""
    return {kind: {key: max(0.0, first[key] - report["kinds"][kind][f"median_{key}"])
                   for key in ("cpu_s", "wall_s")}
            for kind, first in report["first_call"].items() if kind in KINDS
            and kind in report["kinds"]}


def _cpuinfo_field(*names: str) -> str | None:
    """The first processor's `names` fields of /proc/cpuinfo, joined ("25/17": Zen 4)."""
    values = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in names and key.strip() not in values:
                    values[key.strip()] = value.strip()
    except OSError:
        return None
    return "/".join(values[name] for name in names if name in values) or None


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
            "cpu": model, "cpu_family_model": _cpuinfo_field("cpu family", "model"),
            "cores": os.cpu_count(), "avx2": " avx2" in flags,
            "avx512": " avx512f" in flags, "bf16": bf16_support(flags),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "onednn": _onednn_enabled(),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "threads": threads(), "load_average_start": list(_START_LOAD),
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


def ratio_interval(ratios: list[float], *, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Per-round paired ratios summarised: median, geometric mean and its confidence interval.

    The interval is Student's t on the logs of the ratios (a ratio's spread is multiplicative),
    mapped back: exp(mean +- t_{(1+c)/2, n-1} * sd / sqrt(n)). It assumes the rounds are
    independent samples; `low` and `high` are None with fewer than two rounds.
    """
    from scipy import stats

    if not ratios or any(not r > 0 for r in ratios):
        raise ValueError(f"ratios must be positive and not empty, got {ratios!r}")
    logs = [math.log(r) for r in ratios]
    mean = statistics.fmean(logs)
    result = {"n": len(ratios), "median": statistics.median(ratios), "geomean": math.exp(mean),
              "min": min(ratios), "max": max(ratios), "confidence": confidence,
              "low": None, "high": None}
    if len(ratios) >= 2:
        half = stats.t.ppf((1 + confidence) / 2, len(ratios) - 1) * statistics.stdev(logs) \
            / math.sqrt(len(ratios))
        result["low"], result["high"] = math.exp(mean - half), math.exp(mean + half)
    return result


def paired_series(setup: Setup, dense: list[dict[str, float]], parts: dict[str, list],
                  *, key: str = "cpu_s") -> dict[str, list[float]]:
    """Per-round ratios to the dense iteration of the same round.

    static = plain / dense; ADAPT = (plain (1 - 1/br) + br / br + G update / g + D resize / d)
    / dense, every part from the same round (the issue-7 formula, per round).
    """
    br_every, g_every, d_every = setup.schedule
    plain = [t[key] for t in parts["plain"]]
    dense_values = [t[key] for t in dense]
    series = {"static": [p / d for p, d in zip(plain, dense_values)]}
    if all(name in parts for name in ("br", "g_update", "d_resize")):
        series["adapt"] = [
            (p * (1 - 1 / br_every) + b[key] / br_every + g[key] / g_every + r[key] / d_every) / d
            for p, b, g, r, d in zip(plain, parts["br"], parts["g_update"], parts["d_resize"],
                                     dense_values)]
    return series


def _intervals(setup: Setup, by_label: dict[str, Subject], xla: bool) -> dict[str, Any]:
    dense = by_label[_label("dense", xla)].times["plain"]
    sparse = by_label[_label("sparse", xla)].times
    result = {name: ratio_interval(values)
              for name, values in paired_series(setup, dense, sparse).items()}
    masked = by_label.get(_label("dense_masked", xla))
    if masked is not None:
        result["dense_masked"] = ratio_interval(
            paired_series(setup, dense, masked.times)["static"])
    return result


def _torch_report(by_label: dict[str, Subject], xla: bool) -> dict[str, Any] | None:
    """The same-run PyTorch baseline against the dense model at `xla`: per-round speed-ups."""
    torch_subject = by_label.get("torch")
    if torch_subject is None:
        return None
    dense = by_label[_label("dense", xla)]
    info = torch_subject.info
    result = {"torch": info["torch"], "threads": info["threads"], "xla": xla,
              "macs_torch": info["macs"], "macs_ours": dense.info["macs"]["total"],
              "mac_difference": info["mac_difference"], "macs_by_op": info["macs_by_op"]}
    for key in ("cpu_s", "wall_s"):
        theirs = [t[key] for t in torch_subject.times["plain"]]
        ours = [t[key] for t in dense.times["plain"]]
        result[f"torch_median_{key}"] = statistics.median(theirs)
        result[f"ours_median_{key}"] = statistics.median(ours)
        result[f"speedup_{key}"] = ratio_interval([t / o for t, o in zip(theirs, ours)])
    return result


def _peak_report(by_label: dict[str, Subject], xla: bool) -> dict[str, Any] | None:
    """GFLOP/s of the probes (best round = peak) and the dense iteration's share of it."""
    peak = by_label.get("peak")
    if peak is None:
        return None
    dense = by_label[_label("dense", xla)]
    iteration_flop = 2.0 * dense.info["macs"]["total"]
    result = {"iteration_flop": iteration_flop, "xla": xla, "shapes": peak.info["shapes"]}
    for kind, flop in peak.info["flop"].items():
        rates = [flop / t["wall_s"] / 1e9 for t in peak.times[kind]]
        result[kind] = {"best_gflops": max(rates), "median_gflops": statistics.median(rates),
                        "gflops": [round(r, 2) for r in rates]}
    best = max(result["matmul"]["best_gflops"], result["conv"]["best_gflops"])
    walls = [t["wall_s"] for t in dense.times["plain"]]
    rates = [iteration_flop / w / 1e9 for w in walls]
    # Same-round share: the dense iteration's rate over that round's faster probe.
    flop = peak.info["flop"]
    shares = [r * 1e9 / max(flop["matmul"] / m["wall_s"], flop["conv"] / c["wall_s"])
              for r, m, c in zip(rates, peak.times["matmul"], peak.times["conv"])]
    result.update({"peak_gflops": best, "iteration_best_gflops": max(rates),
                   "iteration_median_gflops": statistics.median(rates),
                   "floor_s": iteration_flop / best / 1e9,
                   "share_best": max(rates) / best,
                   "share_same_round_median": statistics.median(shares)})
    return result


def build_report(setup: Setup, subjects: list[Subject]) -> dict[str, Any]:
    """Medians, paired ratios and their intervals, PyTorch, peak, traces, memory, machine."""
    report: dict[str, Any] = {"setup": dataclasses.asdict(setup), "machine": machine_info(),
                              "subjects": {s.label: _subject_report(s) for s in subjects},
                              "table": [], "br_overhead": {}, "intervals": {}}
    by_label = {s.label: s for s in subjects}
    for xla in setup.xla:
        report["table"] += _setting_rows(setup, report, xla)
        report["br_overhead"][f"xla={xla}"] = _br_overhead(setup, _measured(report, "sparse", xla))
        report["intervals"][f"xla={xla}"] = _intervals(setup, by_label, xla)
    best_xla = min(setup.xla, key=lambda xla: _measured(report, "dense", xla)["plain"][
        "median_cpu_s"])
    report["macs"] = subjects[0].info["macs"]
    report["torch"] = _torch_report(by_label, best_xla)
    report["peak"] = _peak_report(by_label, best_xla)
    report["retraces"] = sum(max(0, (c or 0) - 1) for s in report["subjects"].values()
                             for c in s.get("trace_counts", {}).values())
    report["peak_rss_mb"] = _peak_rss_mb()
    report["machine"]["load_average_end"] = report["machine"].pop("load_average")
    report["goals"] = _goals(report, best_xla)
    return report


def _interval_goal(name: str, interval: dict[str, Any], xla: bool, *,
                   higher_is_better: bool = False) -> dict[str, Any]:
    """Met only when the whole confidence interval is on the right side of the target."""
    target = GOALS[name]
    bound = interval["low"] if higher_is_better else interval["high"]
    met = bound is not None and (bound >= target if higher_is_better else bound <= target)
    return {"target": target, "measured": interval["median"],
            "interval": [interval["low"], interval["high"]], "n": interval["n"], "xla": xla,
            "met": met}


def _goals(report: dict[str, Any], xla: bool) -> dict[str, dict[str, Any]]:
    """Issue 7's goals against this run, at `xla` (the setting with the faster dense iteration).

    Ratios: the median of the per-round paired ratios is "measured"; "met" needs the whole
    confidence interval of their geometric mean within the target. Updates: the slowest
    round's wall time must be within the target ("measured" is the median).
    """
    intervals = report["intervals"][f"xla={xla}"]
    kinds = _measured(report, "sparse", xla)
    goals = {"static_ratio": _interval_goal("static_ratio", intervals["static"], xla)}
    if "adapt" in intervals:
        goals["adapt_ratio"] = _interval_goal("adapt_ratio", intervals["adapt"], xla)
    for name, kind in (("g_update_s", "g_update"), ("d_resize_s", "d_resize")):
        if kind in kinds:
            slowest = max(kinds[kind]["wall_s"])
            goals[name] = {"target": GOALS[name], "measured": kinds[kind]["median_wall_s"],
                           "max": slowest, "xla": xla, "met": slowest <= GOALS[name]}
    goals["retraces"] = {"target": GOALS["retraces"], "measured": report["retraces"],
                         "xla": xla, "met": report["retraces"] <= GOALS["retraces"]}
    # Issue 28: every train-function variant traced in at most 3 CPU s (first call minus
    # the median call of its kind, at the setting measured).
    traced = [cost["cpu_s"] for label, subject in report["subjects"].items()
              if label.endswith("+xla") == xla for cost in subject.get("tracing", {}).values()]
    if traced:
        goals["tracing_cpu_s"] = {"target": GOALS["tracing_cpu_s"],
                                  "measured": statistics.median(traced), "max": max(traced),
                                  "xla": xla, "met": max(traced) <= GOALS["tracing_cpu_s"]}
    if report["torch"]:
        goals["speedup_vs_torch"] = _interval_goal(
            "speedup_vs_torch", report["torch"]["speedup_cpu_s"], xla, higher_is_better=True)
    return goals


def _fmt_interval(interval: dict[str, Any]) -> str:
    if interval["low"] is None:
        return f"median {interval['median']:.3f} (1 round: no interval)"
    return (f"median {interval['median']:.3f}, geomean {interval['geomean']:.3f}, "
            f"{100 * interval['confidence']:.0f} % CI [{interval['low']:.3f}, "
            f"{interval['high']:.3f}], range {interval['min']:.3f}-{interval['max']:.3f}, "
            f"n {interval['n']}")


def _goal_line(name: str, goal: dict[str, Any]) -> str:
    verdict = "met" if goal["met"] else ("NOT met" if "interval" not in goal else "not shown")
    if "interval" in goal:
        low, high = goal["interval"]
        side = f"CI [{low:.3f}, {high:.3f}]" if low is not None else "no CI"
        sign = ">=" if name == "speedup_vs_torch" else "<="
        return (f"  {name}: median {goal['measured']:.3f}, {side}, target {sign} "
                f"{goal['target']}: {verdict}")
    if "max" in goal:
        return (f"  {name}: median {goal['measured']:.3f} s, slowest {goal['max']:.3f} s, "
                f"target <= {goal['target']} s: {verdict}")
    return f"  {name}: {goal['measured']} (target {goal['target']}): {verdict}"


_GRAPPLER = {None: "default (without its passes idle on a CPU-only host)", True: "on",
             False: "off"}


def format_report(report: dict[str, Any]) -> str:
    """The report as plain text (what the CLI prints)."""
    setup, machine = report["setup"], report["machine"]
    lines = [f"SNGAN-32 G width {setup['g_width']}, D width {setup['d_width']}, D batch "
             f"{setup['d_batch']}, G batch {setup['g_batch']}, n_dis {setup['n_dis']}, "
             f"d = {setup['density']} ERK; {setup['iterations']} measured rounds after "
             f"{setup['warmup']} warm-up; Grappler on the step functions: "
             f"{_GRAPPLER[setup.get('graph_optimizer')]}",
             f"TF {machine['tensorflow']} (tf_keras {machine['tf_keras']}), {machine['cpu']} "
             f"(family/model {machine.get('cpu_family_model')}), "
             f"{machine['cores']} cores, AVX2 {machine['avx2']}, AVX-512 {machine['avx512']}, "
             f"oneDNN {machine['onednn']}, {machine['threads']} threads, GPUs "
             f"{machine['gpus'] or 'none'}, load at start {machine['load_average_start']}, "
             f"at end {machine['load_average_end']}",
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
        lines.append(f"{'':18s} first calls: " + ", ".join(
            f"{k} {v['cpu_s']:.1f} cpu / {v['wall_s']:.1f} wall"
            for k, v in subject["first_call"].items()))
        if "tracing" in subject:
            lines.append(f"{'':18s} tracing (first call - median call): " + ", ".join(
                f"{k} {v['cpu_s']:.1f} cpu / {v['wall_s']:.1f} wall"
                for k, v in subject["tracing"].items()))
        if "trace_counts" in subject:
            lines.append(f"{'':18s} traces {subject['trace_counts']}  masked weights "
                         f"{subject['masked_weights']}")
    traced = [v["wall_s"] for s in report["subjects"].values()
              for v in s.get("tracing", {}).values()]
    if traced:
        lines.append(f"tracing, all train-function variants of all models: {sum(traced):.1f} s "
                     f"wall ({len(traced)} variants, {max(traced):.1f} s the slowest)")
    for key, value in report.get("br_overhead", {}).items():
        lines.append(f"BR sample ({key}): +{value['br_minus_plain_cpu_s']:.3f} CPU s "
                     f"({100 * value['fraction_of_plain']:.1f} % of a plain iteration, "
                     f"{100 * value['amortised_fraction']:.2f} % amortised)")
    lines.append("")
    for key, intervals in report["intervals"].items():
        for name, interval in intervals.items():
            lines.append(f"{name} / dense per round ({key}, CPU s): {_fmt_interval(interval)}")
    torch = report.get("torch")
    if torch:
        lines.append(
            f"same-run PyTorch {torch['torch']} ({torch['threads']} threads, plain dense "
            f"SNGAN-32, scripts/torch_sngan.py): MACs per iteration torch "
            f"{torch['macs_torch']:.6g}, adapt_tf {torch['macs_ours']:.6g} "
            f"({100 * torch['mac_difference']:+.4f} %: same work)")
        lines.append(
            f"  torch {torch['torch_median_cpu_s']:.3f} CPU s / {torch['torch_median_wall_s']:.3f}"
            f" wall per iteration, adapt_tf dense (XLA {torch['xla']}) "
            f"{torch['ours_median_cpu_s']:.3f} / {torch['ours_median_wall_s']:.3f}")
        lines.append(f"  torch / adapt_tf per round, CPU s: "
                     f"{_fmt_interval(torch['speedup_cpu_s'])}")
        lines.append(f"  torch / adapt_tf per round, wall s: "
                     f"{_fmt_interval(torch['speedup_wall_s'])}")
    else:
        lines.append("same-run PyTorch: not measured (--no-torch, or torch is not installed: "
                     "pip install -e '.[bench]')")
    peak = report.get("peak")
    if peak:
        lines.append(
            f"measured peak (TF fp32, this run, best round): matmul {peak['shapes']['matmul']} "
            f"{peak['matmul']['best_gflops']:.1f} GFLOP/s (median "
            f"{peak['matmul']['median_gflops']:.1f}), conv {peak['shapes']['conv']} "
            f"{peak['conv']['best_gflops']:.1f} GFLOP/s (median "
            f"{peak['conv']['median_gflops']:.1f})")
        lines.append(
            f"  dense iteration {peak['iteration_flop'] / 1e12:.4g} TFLOP (2 x MACs): best "
            f"{peak['iteration_best_gflops']:.1f} GFLOP/s = {100 * peak['share_best']:.0f} % "
            f"of the peak (floor {peak['floor_s']:.2f} s); same-round share median "
            f"{100 * peak['share_same_round_median']:.0f} %")
    lines.append(f"goals (XLA {next(iter(report['goals'].values()))['xla']}; a ratio goal is met "
                 f"only when its {100 * CONFIDENCE:.0f} % CI is within the target):")
    lines += [_goal_line(name, goal) for name, goal in report["goals"].items()]
    lines.append(f"retraces after the first call: {report['retraces']}; peak RSS "
                 f"{report['peak_rss_mb']:.0f} MB")
    if "profile" in report:
        lines += ["", "profile (self time by op type, one plain iteration):"]
        for label, ops in report["profile"].items():
            lines.append(f"  {label}: " + ", ".join(f"{op} {share:.1f} %" for op, share in
                                                    list(ops["share_percent"].items())[:10]))
    if "input_pipeline" in report:
        lines.append(f"input pipeline: {report['input_pipeline']}")
    if "quickstart" in report:
        lines.append(f"quickstart: {report['quickstart']}")
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


def _metrics_steps(path: str) -> list[int]:
    """The steps of the data rows of a metrics.csv written so far (torn last line ignored)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().split("\n")[1:-1]  # header, complete lines only
    steps = []
    for line in lines:
        head = line.split(",", 1)[0]
        if head.isdigit():
            steps.append(int(head))
    return steps


def quickstart_latency(workdir: str, *, rows: int = 3, timeout_s: float = 1800,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Seconds from launching the README's quickstart to its first logged metrics rows.

    Runs `python -m adapt_tf.train --gin_file=gin_configs/quickstart.gin --workdir=WORKDIR`
    (WORKDIR must not hold an earlier run) and stops it once `rows` rows are in metrics.csv.
    The first row's time is start-up (imports, dataset, model builds, the first train-function
    traces) plus `log_every` iterations. The gap between the last two rows is taken as steady
    iterations: with the quickstart's cadence (log every 50, DST and ADAPT every 100) rows 100
    to 150 hold no mask update and no new trace, while 50 to 100 hold the gradient-copy
    variant's trace and the first updates.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    metrics = Workdir(workdir).metrics
    if os.path.exists(metrics):
        raise ValueError(f"{workdir} already holds a run; pass a fresh workdir")
    command = [sys.executable, "-m", "adapt_tf.train", "--gin_file=gin_configs/quickstart.gin",
               f"--workdir={workdir}"]
    os.makedirs(workdir, exist_ok=True)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    seen: dict[int, float] = {}
    with open(os.path.join(workdir, "benchmark_stdout.txt"), "w") as out:
        process = subprocess.Popen(command, cwd=root, stdout=out, stderr=subprocess.STDOUT)
        try:
            while len(seen) < rows and time.perf_counter() - start < timeout_s:
                if process.poll() is not None:
                    break
                for step in _metrics_steps(metrics):
                    seen.setdefault(step, time.perf_counter() - start)
                time.sleep(0.2)
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
    steps = sorted(seen)
    result: dict[str, Any] = {"command": " ".join(command[1:]), "load_start": round(load, 2),
                              "load_end": round(os.getloadavg()[0], 2),
                              "rows": {str(k): round(seen[k], 2) for k in steps}}
    if len(steps) >= 2:
        per_iteration = (seen[steps[-1]] - seen[steps[-2]]) / (steps[-1] - steps[-2])
        result["steady_s_per_iteration"] = per_iteration
        result["start_up_s"] = seen[steps[0]] - steps[0] * per_iteration
    log(f"quickstart: {result}")
    return result


# ----------------------------------------------------------------------------------- CLI


def run_benchmark(setup: Setup, *, profile_dir: str | None = None, check_pipeline: bool = False,
                  torch: bool = True, peak: bool = True,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measures `setup` and returns the report (see the module docstring)."""
    subjects = measure(setup, log=log, torch=torch, peak=peak)
    report = build_report(setup, subjects)
    if profile_dir:
        report["profile"] = {s.label: profile_iteration(s, profile_dir)
                             for s in subjects if not s.xla and s.gan is not None}
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
    parser.add_argument("--d-batch", type=int, help="D batch (default 64, the paper's)")
    parser.add_argument("--g-batch", type=int, help="G batch (default 128, the paper's)")
    parser.add_argument("--iterations", type=int,
                        help="measured rounds (default 3; 16 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed rounds (default 1)")
    parser.add_argument("--xla", choices=("both", "off", "on"),
                        help="jit_compile settings to measure (default both; off with --quick)")
    parser.add_argument("--no-grad-copies", action="store_true",
                        help="skip the gradient-copy iteration (updates still measured)")
    parser.add_argument("--dense-masked", action="store_true",
                        help="also measure the dense method with masks of ones")
    parser.add_argument("--profile", metavar="DIR", help="profile one plain iteration")
    parser.add_argument("--no-pipeline-check", action="store_true")
    parser.add_argument("--no-torch", action="store_true",
                        help="skip the same-run PyTorch baseline (skipped anyway without torch)")
    parser.add_argument("--no-peak", action="store_true", help="skip the peak probes")
    parser.add_argument("--quickstart", metavar="WORKDIR",
                        help="only time the quickstart's start-up to its first logged rows")
    parser.add_argument("--bf16", action="store_true",
                        help="only compare mixed_bfloat16 with float32 (sparse plain iteration "
                        "at the paper's and the quickstart's batches, the setup's widths)")
    parser.add_argument("--host", action="store_true",
                        help="only measure the quickstart run's host time per iteration "
                        "(callbacks and Keras' loop, beside the train-function call)")
    parser.add_argument("--graph-optimizer", choices=("default", "on", "off"),
                        default="default",
                        help="Grappler on the step functions (SparseGAN.compile's "
                        "graph_optimizer; default: without its passes idle on a CPU-only host)")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")
    return parser.parse_args(argv)


def setup_from_args(args: argparse.Namespace) -> Setup:
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    for name in ("g_width", "d_width", "d_batch", "g_batch", "iterations", "warmup"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.xla is not None:
        values["xla"] = {"both": (False, True), "off": (False,), "on": (True,)}[args.xla]
    values["grad_copies"] = not args.no_grad_copies
    values["dense_masked"] = args.dense_masked
    values["graph_optimizer"] = {"default": None, "on": True, "off": False}[args.graph_optimizer]
    return Setup(**values)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.quickstart or args.bf16 or args.host:
        report = {"machine": machine_info()}
        if args.quickstart:
            report["quickstart"] = quickstart_latency(args.quickstart)
        elif args.host:
            report["host"] = host_time()
            print(f"host time per iteration: {report['host']}")
        else:
            report["bf16"] = measure_bf16(setup_from_args(args),
                                          log=lambda line: print(line, flush=True))
            print("\n".join(format_bf16(report["bf16"])))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
        return report
    setup = setup_from_args(args)
    start = time.perf_counter()
    report = run_benchmark(setup, profile_dir=args.profile,
                           check_pipeline=not args.no_pipeline_check, torch=not args.no_torch,
                           peak=not args.no_peak, log=lambda line: print(line, flush=True))
    report["elapsed_s"] = time.perf_counter() - start
    print(format_report(report))
    print(f"elapsed {report['elapsed_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
