"""`train(...)`: the typed, gin-free composition root of an adapt_tf run.

It builds the strategy, the models (sparsified as the method says), the `SparseGAN`, the data
pipeline and the callbacks, restores the latest checkpoint of `workdir` if there is one, and
runs `fit` to `total_steps`. `build_run` builds the same run without data or training (for
evaluation of a finished run). Both take one frozen `RunSpec`, which `adapt_tf.runs.configurables`
registers with gin as `train`; `python -m adapt_tf.train` is the CLI.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
from typing import Callable, Iterator, Sequence

import tensorflow as tf
import tf_keras as keras
from absl import logging

from adapt_tf.gan import architectures, augment, schedules
from adapt_tf import balance, data
from adapt_tf.runs import distribution, methods, preemption, storage, workdir as workdir_lib
from adapt_tf.sparse import topology
from adapt_tf.checks import positive_int
from adapt_tf.evaluation.scorers import (COLUMNS, FIDState, PeriodicEvaluation, Scorer,
                                         evaluation_metric, final_test_record,
                                         score_checkpoints, scorer)
from adapt_tf.flops.flops_logger import FlopsLogger, FlopsState, training_schedule
from adapt_tf.gan.sparse_gan import SparseGAN
from adapt_tf.runs.writers import (Checkpointer, MetricsLogger, SampleGrid, SampleLogs,
                                   TerminateOnNaN)

__all__ = ["RunSpec", "train", "build_run", "check_arguments", "samples_window", "BuiltRun",
           "TrainingDiverged"]

OptimizerFactory = Callable[[], keras.optimizers.Optimizer]
# The train step's ever-active shares, logged with `ever_active` (after the densities).
EVER_ACTIVE_FIELDS = ("g_ever_active", "d_ever_active")


class TrainingDiverged(RuntimeError):
    """Losses or model values became NaN or infinite; the message names the iteration and the
    newest (finite) checkpoint."""


def _adam(learning_rate: float = 2e-4, beta_1: float = 0.0, beta_2: float = 0.9):
    return keras.optimizers.Adam(learning_rate, beta_1=beta_1, beta_2=beta_2)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run: what `train` trains and `build_run` builds. `adapt_tf.runs.configurables` registers
    it with gin under the name `train`, so configs bind its fields as `train.total_steps = ...`.

    Attributes:
      workdir: the run directory (`workdir.Workdir` names its files): `metrics.csv` (with
        cumulative `train_flops` and `train_flops_ratio` under `flops_convention`),
        `tensorboard/`, `samples/step_N.png`, `checkpoints/`, `checkpoints_best/`.
      total_steps: GAN iterations to train to.
      method: from `adapt_tf.runs.methods.method(...)`.
      architecture, g_width, d_width: an `architectures.ARCHITECTURES` name; the widths
        override the architecture's.
      image_size: side of the images the run trains on, pixels: the architecture's family at
        that size (`architectures.architecture`: 32, 48, 64, 128 or 256), the dataset resized
        to it. None (default): the architecture's own size.
      dataset: a `data.DATASETS` name, 'folder:PATH' or 'tfds:NAME[/CONFIG][:SPLIT]'; in Python
        also uint8 arrays or a tf.data.Dataset of examples (`data.make_dataset` says what they
        must hold and what resuming guarantees). A conditional architecture takes the
        dataset's class count.
      dataset_fingerprint: `data.fingerprint(dataset)` when the run was configured (the CLI
        records it); a run whose data's fingerprint now differs is refused. None: unchecked.
      d_batch_size, g_batch_size, n_dis: global batch sizes and D steps per iteration.
      generator_optimizer, discriminator_optimizer: factories, called inside the strategy scope
        (e.g. `functools.partial(Adam, 2e-4)`).
      loss, ema_decay, br_interval, br_window, seed: of `SparseGAN`; sparse_init: the
        `topology.sparsify` distribution.
      log_every, checkpoint_every, sample_every, num_sample_images: logging cadences.
      strategy, devices: a `distribution.get_strategy` name and the devices of "mirrored"
        (default: all local GPUs); under "multi_worker" only the chief writes to `workdir`.
      jit_compile, mixed_precision: XLA for the train step; a Keras mixed-precision policy.
      data_dir, download: the tfds data directory; `download` lets tfds download a catalog
        dataset that is not prepared (needs internet).
      extra_callbacks: Keras callbacks run after the run's own.
      flops_convention: of the logged training FLOPs (`adapt_tf.flops`).
      lr_decay: both learning rates decay linearly to 0 over `total_steps` iterations
        (`schedules.LinearDecay`, the official `--lr-decay`); off by default, as in the paper.
      ever_active: log the share of each network's kernel entries that have been active at
        least once (`g_ever_active`, `d_ever_active`; `SparseGAN(ever_active=True)`).
      sample_logs: append every BR sample to `br.csv` (every ADA-criterion sample to
        `ada.csv`) and every mask change to `masks.csv`
        (`writers.SampleLogs`).
      balance_criterion: what the window samples and ADAPT reads: "br" (the balance ratio) or
        "ada" (the official `--da-criterion ADA`, logged as `ada_rt`): the name of a
        `balance.Criterion`, resolved by the `criterion` property (`SparseGAN.criterion`).
      diff_aug: a DiffAugment policy such as "color,translation,cutout" (`adapt_tf.gan.augment`,
        the official `--diff_aug`), or None.
      balance_diagnostic: take window samples (BR or the ADA share, logged) also when the
        method has no D controller to read them. Off by default: as in the official static,
        SDST and BigGAN runs, those methods take no BR passes (docs/ALGORITHM.md §2;
        `SparseGAN(window_sampling=...)`).
      eval_every, eval_num_samples, eval_metric, inception_path, reference_stats: with
        `eval_every` (a multiple of `log_every`), `eval_num_samples` EMA samples are scored every
        `eval_every` iterations and at the end, the best checkpoint kept in
        `checkpoints_best/`. `eval_metric` (`scorers.evaluation_metric`; default "toy" for
        toy_shapes, "classifier" for other labelled data without `inception_path`, else
        "fid"): "fid" is FID and IS, Inception from `inception_path` (default TF-Hub),
        reference statistics from `reference_stats` (.npz) or computed from `dataset`
        (`scorers.fid_reference`); "toy" is the offline toy_shapes metric
        (`adapt_tf.evaluation.toy_metric`); "classifier" the offline metric of any labelled dataset
        (`adapt_tf.evaluation.classifier_metric`), refused before training when its classifier's
        held-out accuracy is too low. Their classifiers are trained at first use and cached.
      test_eval: after the last iteration, score the best checkpoint (the last without
        `eval_every`) on `eval_num_samples` images against the training reference and the
        dataset's test split (CIFAR-10 test, Tiny-ImageNet validation; the official final
        test), into `eval.json`'s "test" entry (`scorers.final_test_record`). A finished run
        rerun with it on only adds that entry. Off by default.
      test_reference_stats: with `test_eval` and the "fid" metric, the test split's statistics
        (.npz, e.g. the official fid_stats_cifar10_test.npz); default computed from the
        dataset's test split and cached beside the reference.
      record: text saved inside every checkpoint (`writers.Checkpointer`): the CLI records the
        run's gin configuration there and checks a resumed run against it
        (`configurables.recorded_bindings`).
    """

    workdir: str
    total_steps: int
    method: methods.Method
    architecture: str = "sngan32"
    dataset: data.Source = data.DEFAULT_DATASET
    dataset_fingerprint: str | None = None
    image_size: int | None = None
    g_width: int | None = None
    d_width: int | None = None
    d_batch_size: int = 64
    g_batch_size: int = 128
    n_dis: int = 5
    generator_optimizer: OptimizerFactory = _adam
    discriminator_optimizer: OptimizerFactory = _adam
    loss: str = "hinge"
    ema_decay: float | None = 0.999
    br_interval: int = 10
    br_window: int = 1000
    sparse_init: str = "erk"
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 1000
    sample_every: int = 1000
    num_sample_images: int = 64
    strategy: str = "default"
    devices: Sequence[str] | None = None
    jit_compile: bool = False
    mixed_precision: str | None = None
    data_dir: str | None = None
    download: bool = False
    extra_callbacks: Sequence[keras.callbacks.Callback] = ()
    flops_convention: str = "paper"
    lr_decay: bool = False
    ever_active: bool = False
    sample_logs: bool = False
    balance_criterion: str = "br"
    diff_aug: str | None = None
    balance_diagnostic: bool = False
    eval_every: int | None = None
    eval_num_samples: int = 10000
    eval_metric: str | None = None
    inception_path: str | None = None
    reference_stats: str | None = None
    test_eval: bool = False
    test_reference_stats: str | None = None
    record: str | None = None

    @property
    def criterion(self) -> balance.Criterion:
        """The `balance.Criterion` named by `balance_criterion` (the string gin binds, 'br' or
        'ada'), resolved here for everything the run builds; ValueError for another name."""
        return balance.criterion(self.balance_criterion, argument="balance_criterion")


def _check_spec(spec) -> None:
    if not isinstance(spec, RunSpec):
        raise TypeError(f"train and build_run take one RunSpec (train_lib.RunSpec(workdir=..., "
                        f"...)), got {type(spec).__name__}.")


def train(spec: RunSpec, /) -> SparseGAN:
    """Trains (or resumes) the run `spec` describes; returns the trained `SparseGAN`.

    (`dataclasses.replace(spec, seed=1)` is the same run with another field.) The workdir is
    locked for the run
    (`storage.lock`) and checked writable first; it resumes from the newest usable checkpoint
    (`storage.usable_checkpoint`); non-finite state is never saved. See docs/RELIABILITY.md.

    Raises:
      TrainingDiverged: losses or model values became non-finite (nothing non-finite saved).
      preemption.TrainingInterrupted: SIGTERM/SIGINT; the state was saved first.
      workdir.WorkdirError: the workdir is in use, not writable, has no usable checkpoint,
        holds more than `total_steps` iterations, or a checkpoint cannot be saved (disk full).
    """
    _check_spec(spec)
    check_arguments(spec)
    strategy = distribution.get_strategy(spec.strategy, devices=spec.devices)
    # Workers of a multi-worker run share the workdir; the chief owns it.
    chief = distribution.is_chief(strategy)
    with storage.lock(spec.workdir) if chief else contextlib.nullcontext():
        storage.check_writable(spec.workdir)
        with strategy.scope():
            run = build_run(spec)
            start = run.checkpointer.restore()
        if start > spec.total_steps:
            raise workdir_lib.WorkdirError(
                f"{spec.workdir} holds a run trained to iteration {start}, beyond "
                f"total_steps={spec.total_steps}; a checkpoint cannot be untrained. Rerun with "
                f"total_steps >= {start}, or train the shorter run in a new --workdir.")
        if start == 0 and chief:
            storage.set_aside_previous_run(spec.workdir)
        # Built first so that a missing Inception or test split fails before training.
        testing = _test_scorer(spec, trained=max(start, spec.total_steps)) \
            if spec.test_eval and chief else None
        # The training evaluation shares the test's Inception model and reference.
        scoring = (testing or _scorer(spec, test=False)) if spec.eval_every is not None else None
        if start >= spec.total_steps:
            logging.info("%s already holds a run of %d >= %d iterations; nothing to do.",
                         spec.workdir, start, spec.total_steps)
        else:
            images = data.make_dataset(
                spec.dataset, batch_size=spec.n_dis * spec.d_batch_size,
                image_size=run.architecture.image_size, conditional=run.architecture.conditional,
                seed=spec.seed, start_step=start, data_dir=spec.data_dir, download=spec.download)
            _fit(run, images, spec, start=start, strategy=strategy, scoring=scoring)
        if testing is not None:
            with strategy.scope():
                _test_evaluation(run, spec, testing)
        return run.gan


def check_arguments(spec: RunSpec) -> None:
    """The checks of a run spec that need no model or data (the CLI runs them before it
    writes operative_config.gin): ValueError naming the value and the fix."""
    for name in ("total_steps", "log_every", "checkpoint_every", "sample_every",
                 "num_sample_images", "eval_num_samples", "d_batch_size", "g_batch_size",
                 "n_dis", "br_interval", "br_window"):
        positive_int(name, getattr(spec, name))
    for name in ("lr_decay", "ever_active", "sample_logs", "test_eval", "balance_diagnostic"):
        if not isinstance(getattr(spec, name), bool):
            raise ValueError(f"{name}={getattr(spec, name)!r} must be True or False.")
    augment.parse_policy(spec.diff_aug)
    spec.criterion  # resolving the name checks it (ValueError for another)
    eval_every, log_every = spec.eval_every, spec.log_every
    if eval_every is not None and (not isinstance(eval_every, int) or eval_every < 1
                                   or eval_every % log_every):
        raise ValueError(f"eval_every={eval_every!r} must be None or a positive multiple of "
                         f"log_every={log_every}, so that FID lands on its own metrics row.")
    _check_data(spec)
    metric = _metric(spec)
    if spec.test_reference_stats is not None and not (spec.test_eval and metric == "fid"):
        raise ValueError(f"test_reference_stats={spec.test_reference_stats!r} is read only by "
                         "the test-set evaluation with the 'fid' metric; set test_eval = True "
                         f"(metric now {metric!r}), or drop it.")
    _num_classes(_architecture(spec), spec, data.dataset_info(spec.dataset, data_dir=spec.data_dir))


def _check_data(spec: RunSpec) -> None:
    """The dataset serves the run's batches (`data.check_dataset`) and is the data the run was
    configured with (`dataset_fingerprint`), else ValueError naming the change."""
    arch = _architecture(spec)
    data.check_dataset(spec.dataset, batch_size=spec.n_dis * spec.d_batch_size,
                       conditional=arch.conditional, data_dir=spec.data_dir)
    if spec.dataset_fingerprint is not None:
        now = data.fingerprint(spec.dataset, data_dir=spec.data_dir)
        if now != spec.dataset_fingerprint:
            raise ValueError(
                f"The data of dataset {data.dataset_name(spec.dataset)!r} changed since the run "
                f"was configured (fingerprint {spec.dataset_fingerprint[:12]}... recorded, "
                f"{now[:12]}... now: files added, removed or modified). Restore the data, or "
                "train on the new data in a new workdir.")
    if (not isinstance(spec.dataset, str) and spec.eval_every is not None
            and spec.reference_stats is None and _metric(spec) == "fid"):
        raise ValueError("A dataset given as arrays or a tf.data.Dataset has no cached FID "
                         "reference: pass reference_stats (.npz of its Inception statistics), "
                         "or eval_every=None.")


def _num_classes(arch: architectures.Architecture, spec: RunSpec,
                 dataset: data.DatasetSpec) -> int | None:
    """The class count the run's networks take: the `dataset`'s if `arch` is conditional."""
    num_classes = dataset.num_classes
    if arch.conditional and num_classes is None:
        raise ValueError(f"Architecture {spec.architecture!r} is class-conditional but dataset "
                         f"{data.dataset_name(spec.dataset)!r} has no labels; use an "
                         "unconditional architecture.")
    return num_classes if arch.conditional else None


def _logged_fields(spec: RunSpec) -> tuple[str, ...]:
    """The train step's columns beyond `MetricsLogger.FIELDS` that the spec switches on: the
    window mean's (`ada_rt`; `br` is one of the FIELDS) and the ever-active shares."""
    return (spec.criterion.window_key,) + (EVER_ACTIVE_FIELDS if spec.ever_active else ())


def _architecture(spec: RunSpec) -> architectures.Architecture:
    """The run's architecture at `spec.image_size` (ValueError naming the supported sizes)."""
    if spec.image_size is not None:
        positive_int("image_size", spec.image_size)
    return architectures.architecture(spec.architecture, image_size=spec.image_size)


def _fit(run: BuiltRun, images: tf.data.Dataset, spec: RunSpec, *, start: int,
         strategy: tf.distribute.Strategy, scoring: Scorer | None) -> SparseGAN:
    """Runs `fit` from iteration `start` with the run's callbacks; raises on divergence or a
    stop signal (after the final save)."""
    # Non-chief workers of a multi-worker run write logs and samples to a private copy.
    log_dir = distribution.writer_directory(spec.workdir, strategy)
    logger = MetricsLogger(
        log_dir, every=spec.log_every, total_steps=spec.total_steps,
        extra_fields=_logged_fields(spec) + FlopsLogger.FIELDS + COLUMNS[_metric(spec)].fields)
    schedule = training_schedule(  # a sample from the D steps costs no extra forward passes
        run.method_callbacks, d_batch=spec.d_batch_size, g_batch=spec.g_batch_size,
        n_dis=spec.n_dis, br_interval=spec.br_interval if (
            not spec.criterion.from_d_steps and samples_window(spec)) else None)
    evaluations = [] if scoring is None else [_evaluation_callback(
        run, scoring=scoring, workdir=spec.workdir, total_steps=spec.total_steps,
        every=spec.eval_every, num_samples=spec.eval_num_samples)]
    # The NaN guard reads the device when the logger does (Checkpointer before each save).
    nan_guard, stop = TerminateOnNaN(every=spec.log_every), preemption.StopOnSignal()
    # Callbacks talk through Keras `logs`: those that add entries (FLOPs, scores) precede the
    # logger that writes them; the method callbacks change masks before FLOPs are counted.
    run_callbacks = [*run.method_callbacks,
                     *([SampleLogs(log_dir)] if spec.sample_logs else []),
                     FlopsLogger(schedule, convention=spec.flops_convention,
                                 state=run.flops_state),
                     *evaluations, logger,
                     SampleGrid(log_dir, every=spec.sample_every,
                                num_images=spec.num_sample_images,
                                total_steps=spec.total_steps,
                                class_names=run.dataset.class_names),
                     nan_guard, run.checkpointer, *spec.extra_callbacks, stop]
    method = spec.method
    logging.info("Training %s (%s, d_G=%.3f, d_D=%.3f) for iterations %d..%d in %s.",
                 method.name, run.architecture.name, method.g_density, method.d_density,
                 start + 1, spec.total_steps, spec.workdir)
    with _disk_full_is_one_error(spec.workdir, run.checkpointer), data.naming_damaged_images(
            spec.dataset, outcome=lambda: _kept_before_damaged(run.checkpointer)):
        run.gan.fit(images, epochs=1, steps_per_epoch=spec.total_steps - start,
                    callbacks=run_callbacks, verbose=0)
    distribution.remove_writer_directory(log_dir, spec.workdir)
    _raise_if_stopped(run, nan_guard, stop)
    return run.gan


@contextlib.contextmanager
def _disk_full_is_one_error(workdir: str, checkpointer: Checkpointer):
    """Turns a full disk met by any writer of the run (metrics, samples, TensorBoard, a
    checkpoint) into one `WorkdirError` naming the newest checkpoint, which a failed save never
    replaces (TF writes a checkpoint beside it, then renames it into place)."""
    try:
        yield
    except (OSError, tf.errors.OpError) as error:
        text = " ".join(str(error).split())
        if not (getattr(error, "errno", None) == errno.ENOSPC
                or isinstance(error, tf.errors.ResourceExhaustedError)
                or "No space left on device" in text):
            raise
        latest = tf.train.latest_checkpoint(checkpointer.directory)
        raise workdir_lib.WorkdirError(
            f"No space left on the device of {workdir} ({text[:200]}); the newest checkpoint, "
            f"{latest or 'none yet'}, is intact. Free space, then rerun to resume from it.") \
            from None


def _kept_before_damaged(checkpointer: Checkpointer) -> str:
    """What a run stopped by a damaged image keeps: its newest checkpoint. The failed
    iteration is not saved: reading its batch failed while other ops of the step (e.g. the
    iteration counter's increment) may have run."""
    latest = tf.train.latest_checkpoint(checkpointer.directory)
    return (f" Training stopped; the newest checkpoint, {latest or 'none yet'}, is intact "
            "(evaluate and export read it). Repaired images are other data, which a run does "
            "not resume on (train.dataset_fingerprint): train the repaired folder in a new "
            "--workdir.")


def _raise_if_stopped(run: BuiltRun, nan_guard: TerminateOnNaN,
                      stop: preemption.StopOnSignal) -> None:
    checkpointer, iteration = run.checkpointer, run.gan.iteration
    latest = tf.train.latest_checkpoint(checkpointer.directory)
    if nan_guard.bad_step is not None or checkpointer.refused_step is not None:
        where = nan_guard.bad_step if nan_guard.bad_step is not None else iteration
        newest = f"is {latest}" if latest else "does not exist (none was saved)"
        raise TrainingDiverged(
            f"Training diverged at iteration {where} (losses {nan_guard.bad_logs or 'finite'}"
            f", model values {'non-finite' if checkpointer.refused_step else 'finite'}); "
            f"nothing non-finite was saved and the newest finite checkpoint {newest}. Start a "
            "new --workdir with lower learning rates (or mixed_precision=None); rerunning this "
            "one resumes from that checkpoint with the same configuration.")
    if stop.received is not None:
        name = os.path.basename(latest) if latest else "no checkpoint"
        raise preemption.TrainingInterrupted(
            f"saved {name} at iteration {iteration}; rerun to resume", signum=stop.received)


def _test_scorer(spec: RunSpec, *, trained: int) -> Scorer | None:
    """The scorer of `test_eval` (`scorers.scorer` with the test reference), or None when
    eval.json holds the test entry of a run trained to iteration `trained` already."""
    previous = storage.read_json(workdir_lib.Workdir(spec.workdir).eval).get("test", {})
    return None if previous.get("trained_steps") == trained else _scorer(spec, test=True)


def _metric(spec: RunSpec) -> str:
    """`scorers.evaluation_metric` of the run: its `eval_metric`, else the default for its
    dataset (labelled or not) and `inception_path`."""
    labelled = data.dataset_info(spec.dataset, data_dir=spec.data_dir).num_classes is not None
    return evaluation_metric(spec.eval_metric, data.dataset_name(spec.dataset),
                             labelled=labelled, inception_path=spec.inception_path)


def _scorer(spec: RunSpec, *, test: bool) -> Scorer:
    """`scorers.scorer` of the run's metric, files and data (with the test reference if
    `test`): one Inception model (or classifier) for the training evaluation and the final
    test."""
    metric = _metric(spec)
    # The classifier reads the data itself (arrays too); FID references go by name.
    dataset = spec.dataset if metric == "classifier" else data.dataset_name(spec.dataset)
    return scorer(metric, dataset=dataset, inception_path=spec.inception_path,
                  reference_stats=spec.reference_stats, test=test,
                  test_reference_stats=spec.test_reference_stats if test else None,
                  data_dir=spec.data_dir, image_size=_architecture(spec).image_size)


def _test_evaluation(run: BuiltRun, spec: RunSpec, testing: Scorer) -> None:
    """The official final test: restores the best checkpoint (the last if none was kept),
    scores it with `testing`, writes eval.json's "test" entry, and restores the latest
    checkpoint again, so the returned model is the trained one."""
    directory = workdir_lib.Workdir(spec.workdir)
    trained = run.gan.iteration
    best = storage.usable_checkpoint(directory.best_checkpoints, reject=False)
    paths = {"best": best} if best else {
        "last": storage.usable_checkpoint(directory.checkpoints, reject=False)}
    checkpoints = score_checkpoints(run.gan, run.checkpointer, paths, testing.score,
                                    num_samples=spec.eval_num_samples)
    run.checkpointer.restore()
    entry = final_test_record(checkpoints, testing, trained_steps=trained,
                              num_samples=spec.eval_num_samples, seed=0)
    storage.update_json(directory.eval, lambda record: {**record, "test": entry})
    logging.info("Test-set evaluation of the %s checkpoint (iteration %d of %d): %s",
                 entry["checkpoint_kind"], entry["step"], trained, entry)


@dataclasses.dataclass(frozen=True)
class BuiltRun:
    """A run as `build_run` makes it: the compiled `SparseGAN`, the method's callbacks, the
    checkpointed FLOPs and FID states, the checkpointer of `workdir/checkpoints` (which
    also restores `workdir/checkpoints_best/` paths), and the dataset's `data.DatasetSpec`
    (read once: a folder's is a scan of every file)."""

    gan: SparseGAN
    architecture: architectures.Architecture
    method_callbacks: list
    flops_state: FlopsState
    fid_state: FIDState
    checkpointer: Checkpointer
    dataset: data.DatasetSpec


def build_run(spec: RunSpec, /) -> BuiltRun:
    """Builds `train`'s run of `spec` in the current strategy scope, without data, restoring
    or training (`adapt_tf.evaluate` and the export rebuild a finished run from its recorded
    spec, then restore its checkpoints)."""
    _check_spec(spec)
    arch = _architecture(spec)
    dataset = data.dataset_info(spec.dataset, data_dir=spec.data_dir)
    with _global_policy(spec.mixed_precision):
        gan = _build_gan(arch, spec, num_classes=_num_classes(arch, spec, dataset))
    g_optimizer, d_optimizer = spec.generator_optimizer(), spec.discriminator_optimizer()
    if spec.lr_decay:
        g_optimizer, d_optimizer = (
            schedules.with_linear_decay(optimizer, total_steps=spec.total_steps, step=gan.step)
            for optimizer in (g_optimizer, d_optimizer))
    if spec.mixed_precision == "mixed_float16":
        g_optimizer = keras.mixed_precision.LossScaleOptimizer(g_optimizer)
        d_optimizer = keras.mixed_precision.LossScaleOptimizer(d_optimizer)
    gan.compile(g_optimizer=g_optimizer, d_optimizer=d_optimizer, loss=spec.loss,
                jit_compile=spec.jit_compile)
    method_callbacks = spec.method.callbacks(total_steps=spec.total_steps)
    states = {f"callback_{i}": c.state for i, c in enumerate(method_callbacks)
              if hasattr(c, "state")}
    flops_state, fid_state = FlopsState(), FIDState()
    checkpointer = Checkpointer(workdir_lib.Workdir(spec.workdir).checkpoints, gan,
                                every=spec.checkpoint_every,
                                extra={**states, "flops": flops_state, "fid": fid_state},
                                record=spec.record)
    return BuiltRun(gan, arch, method_callbacks, flops_state, fid_state, checkpointer, dataset)


@contextlib.contextmanager
def _global_policy(name: str | None) -> Iterator[None]:
    """Keras' global dtype policy `name` (None: unchanged) while the run's networks are built;
    their layers keep it, and the caller's policy is restored after, so that models built
    later in the process (the next run, a user's own) are not built in mixed precision."""
    if not name:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _evaluation_callback(run: BuiltRun, *, scoring: Scorer, workdir: str, every: int,
                         num_samples: int, total_steps: int) -> PeriodicEvaluation:
    """The run's `PeriodicEvaluation` with `scoring` (`scorers.scorer`), its best score in
    the run's checkpointed state."""
    return PeriodicEvaluation(
        scoring, every=every, num_samples=num_samples, total_steps=total_steps,
        checkpoint=run.checkpointer.checkpoint, state=run.fid_state,
        best_directory=workdir_lib.Workdir(workdir).best_checkpoints)


def _build_gan(arch: architectures.Architecture, spec: RunSpec, *,
               num_classes: int | None) -> SparseGAN:
    generator, discriminator = architectures.build_models(
        arch.name, num_classes=num_classes, g_width=spec.g_width, d_width=spec.d_width,
        seed=spec.seed)
    g_start, d_start = spec.method.initial_densities
    if g_start < 1.0:
        topology.sparsify(generator, g_start, distribution=spec.sparse_init, seed=spec.seed)
    if d_start < 1.0:
        topology.sparsify(discriminator, d_start, distribution=spec.sparse_init,
                          seed=spec.seed + 1)
    return SparseGAN(generator, discriminator, latent_dim=arch.latent_dim, n_dis=spec.n_dis,
                     g_batch_size=spec.g_batch_size, num_classes=num_classes,
                     br_interval=spec.br_interval, br_window=spec.br_window,
                     ema_decay=spec.ema_decay, seed=spec.seed, ever_active=spec.ever_active,
                     criterion=spec.criterion, diff_aug=spec.diff_aug,
                     window_sampling=samples_window(spec), loss_mean_every=spec.log_every)


def samples_window(spec: RunSpec) -> bool:
    """Whether the run's iterations take window samples: its method has a D controller that
    reads them (ADAPT, DDA), or `balance_diagnostic` asks for them."""
    return spec.method.controller is not None or spec.balance_diagnostic
