"""`SparseGAN`: one Keras training step = one GAN iteration, with the balance ratio.

An iteration (docs/ALGORITHM.md §1 and §2, as the official ADAPT code runs it):

1. `n_dis` discriminator steps. The step's real batch of `n_dis * d_batch` images is split by
   striding, D step k taking `images[k::n_dis]`; each D step draws fresh z, generates fakes
   with G in training mode (no gradient) and applies one hinge (or non-saturating) update.
2. One generator step on `g_batch_size` fresh z (and uniform random labels for conditional
   models). The G-loss forward also gives DF = mean D(G_pre(z)).
3. Every `br_interval` iterations (the iterations numbered br_interval, 2 br_interval, ... from
   1, as the official `(iter + 1) % br_freq`; none when `window_sampling` is off), the
   balance-ratio sample: GF = mean D(G_post(z)) with the
   same z, DR = mean D(x) on the last D step's real minibatch, both with D after its update.
   The ratio (GF - DF) / (DR - DF) goes into a sliding window of `br_window // br_interval`
   samples; the logged `br` is the window's mean of per-sample ratios.
4. The EMA generator (if `ema_decay`) is updated: ema <- decay * ema + (1 - decay) * w for
   the trainable weights; BatchNorm moving statistics and spectral-norm vectors are copied.

Sparsity updates (DST on G, ADAPT on D) happen between iterations in callbacks, through
`gan.sparsity.update` (`adapt_tf.sparse.sparsity.Sparsity`, the one path by which masks change). The
kernel gradients they need (dL/d(kernel * mask), dense) are copied into `grad_buffers` by the
iterations that the callbacks of `fit` declare as `NeedsGradients` (below).

Distribution: z and labels are drawn for the *global* batch from stateless seeds
(seed, iteration, phase) and each replica takes its slice, so a run on R replicas sees exactly
the samples of a one-device run with the same global batch. Per-replica losses are divided by
the global batch; gradients and BR means are summed over replicas explicitly.

Compilation: `fit` calls `train_step` once per batch, and `train_step(data)` is one iteration,
`_iteration`. An iteration has variants (`Variant`: with or without the window sample, with or
without each network's gradient copies), chosen per iteration on the host by
`SparseGAN.variant(step)` from the completed iterations and the `NeedsGradients` callbacks.
On one device (the default strategy) `make_train_function` returns a host function that calls
`train_step` on the next batch, and `_iteration` calls five step functions shared by every
variant (`_VariantCache.step`: `_begin` splits the batch and draws the latents, outside XLA,
n_dis calls of the D step, the G step, the window sample when one is taken, `_finish`); which
gradients are kept is a boolean tensor input. Each step is traced and optimised once per model
(and per `jit_compile`), so a run's first iteration pays for them and a new variant costs at
most the window sample's trace, where a variant traced and optimised as one graph paid its own
copy of both steps (docs/BENCHMARKS.md, "Tracing"). Under a multi-replica strategy the train
function runs each variant as its own `tf.function` (`_replicated`; a `tf.cond` cannot hold
the synchronisation points these branches need under `MirroredStrategy`): it draws the global
latents outside XLA and runs `_iteration` on every replica with the steps as plain methods.
"""
from __future__ import annotations

from typing import Literal, NamedTuple, Protocol, runtime_checkable

import tensorflow as tf
import tf_keras as keras

from adapt_tf import _compat, balance
from adapt_tf.gan import augment, losses
from adapt_tf.checks import positive_int
from adapt_tf.gan.ema import EMAGenerator
from adapt_tf.sparse.sparsity import NETWORKS, Sparsity, check_network

__all__ = ["SparseGAN", "Variant", "NeedsGradients", "LogsSamples"]


class Variant(NamedTuple):
    """What an iteration does besides its D and G steps (`SparseGAN.variant`): take a window
    sample, copy G's / D's dense kernel gradients into `SparseGAN.grad_buffers`."""

    sample_window: bool
    keep_g_grads: bool
    keep_d_grads: bool


@runtime_checkable
class NeedsGradients(Protocol):
    """A callback of `SparseGAN.fit` whose mask updates rank growth by dense kernel gradients
    (`sparsity.DynamicSparsity` with RigL, `ADAPTController` growing by gradient).

    `needs_gradients(step)` names the networks ("generator", "discriminator") whose
    dL/d(kernel * mask) the iteration that completes `step` (completed iterations after it)
    copies into `gan.grad_buffers(network)`; `fit` asks before every iteration, so the others
    pay nothing. Any object with this method is one (no base class needed).
    """

    def needs_gradients(self, step: int) -> tuple[str, ...]: ...


@runtime_checkable
class LogsSamples(Protocol):
    """A callback of `SparseGAN.fit` that reads each window sample from the Keras `logs` of the
    iteration that takes it (`writers.SampleLogs`): it declares the class (or instance)
    attribute `logs_samples = True`, and those iterations' logs then hold the sample's parts
    (`br_gf`, `br_df`, `br_dr`, `br_kept`, or `ada_sample`). Other runs' logs stay without
    them, since they are not means a progress bar or `History` could average."""

    logs_samples: Literal[True]


def _all_sum(value):
    """Sum over replicas (identity without a strategy)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def _check_arguments(generator: keras.Model, discriminator: keras.Model, *, latent_dim: int,
                     n_dis: int, g_batch_size: int | None, num_classes: int | None,
                     br_interval: int, br_window: int, ema_decay: float | None,
                     loss_mean_every: int | None, ever_active: bool) -> None:
    """`SparseGAN.__init__`'s argument checks: ValueError naming the value and the fix."""
    positive_int("latent_dim", latent_dim)
    positive_int("n_dis", n_dis)
    positive_int("br_interval", br_interval)
    positive_int("br_window", br_window)
    if g_batch_size is not None:
        positive_int("g_batch_size", g_batch_size)
    if num_classes is not None:
        positive_int("num_classes", num_classes)
    if loss_mean_every is not None:
        positive_int("loss_mean_every", loss_mean_every)
    if br_window < br_interval:
        raise ValueError(f"br_window ({br_window}) must be >= br_interval ({br_interval}).")
    if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1) or None, got {ema_decay!r}.")
    if not isinstance(ever_active, bool):
        raise ValueError(f"ever_active={ever_active!r} must be True or False.")
    for network, model in (("generator", generator), ("discriminator", discriminator)):
        if not model.built:
            raise ValueError(f"The {network} must be built (call it once, or build it from "
                             "keras.Input) before SparseGAN wraps it.")


class SparseGAN(keras.Model):
    """A GAN of sparse (masked) generator and discriminator, trained with `fit`.

    Args:
      generator: Keras model, z [B, latent_dim] (and labels [B] int32 if conditional: called as
        `G([z, y])`) -> images [B, H, W, C] in [-1, 1]. Built.
      discriminator: Keras model, images (and labels: `D([x, y])`) -> logits [B] or [B, 1].
        Built.
      latent_dim: size of z ~ N(0, I).
      n_dis: discriminator steps per iteration (paper: 5 for SNGAN, 4 BigGAN-32, 1 BigGAN-64).
      g_batch_size: global batch of the generator step (default: the D batch).
      num_classes: None for unconditional models, else the number of classes.
      br_interval: iterations between BR samples (paper: 10). The iteration that completes
        the k·br_interval-th iteration samples (docs/ALGORITHM.md §2), so a decision taken
        after it includes its sample.
      br_window: iterations the BR window covers (paper: 1000), so it holds
        `br_window // br_interval` samples.
      ema_decay: decay of the EMA generator (paper: 0.999 SNGAN, 0.9999 BigGAN); None = off.
        `ema` is an `ema.EMAGenerator` and `ema_generator` its Keras model, a copy of G
        that no optimizer sees: its trainable weights are averaged after every iteration,
        and the rest (BatchNorm moving statistics, spectral-norm vectors) are copied from G,
        as the official code's EMA shares G's buffers.
      seed: seed of z and fake-label sampling.
      criterion: what the window samples every `br_interval` iterations and the controller
        reads, a `balance.Criterion` or its name: "br" (`balance.BR`), the balance ratio, or
        "ada" (`balance.ADA`), the official `--da-criterion ADA`: the mean
        over the iteration's D steps of the share of real images D scores above 0 (logged as
        `ada_rt` instead of `br`).
      diff_aug: a DiffAugment policy (`augment.POLICY`: "color,translation,cutout") or None:
        D's real and fake inputs in every D step, the fakes of the G step and of the BR sample
        are augmented, the reals and fakes of one D step alike, with parameters drawn per
        (seed, iteration, phase) like the latents (the official `--diff_aug`).
      window_sampling: whether iterations take window samples at all. Methods whose D density
        no controller moves (static, SDST, dense, GMP) take none in the official code, so
        `train_lib` turns it off for them unless `train.balance_diagnostic` asks for BR as a
        logged diagnostic; off, the window stays empty and `br` is NaN.
      ever_active: track the kernel entries of each network that have ever been active
        (`Sparsity.ever_active`) and log their share as `g_ever_active` / `d_ever_active`.
      loss_mean_every: the logged `d_loss` / `g_loss` are the means over the iterations since
        the last multiple of this many completed iterations (the rows of a
        `writers.MetricsLogger` with that `every`): the model resets its loss trackers there
        only, so the means continue across epochs, `fit` calls and a resumed checkpoint.
        None: over the iterations of the running epoch, as Keras (it resets them when an
        epoch starts).

    The dataset yields `images` [n_dis * d_batch, H, W, C] float32 in [-1, 1], or
    `(images, labels)` for conditional models; batch sizes are global.

    `sparsity` (`adapt_tf.sparse.sparsity.Sparsity`) holds the masked layers, the dense gradient
    buffers and the logged densities, and is the one path by which masks change.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, *, latent_dim: int,
                 n_dis: int = 1, g_batch_size: int | None = None,
                 num_classes: int | None = None, br_interval: int = 10, br_window: int = 1000,
                 ema_decay: float | None = None, seed: int = 0, ever_active: bool = False,
                 criterion: str | balance.Criterion = "br", diff_aug: str | None = None,
                 window_sampling: bool = True, loss_mean_every: int | None = None,
                 name: str = "sparse_gan", **kwargs):
        super().__init__(name=name, **kwargs)
        _check_arguments(generator, discriminator, latent_dim=latent_dim, n_dis=n_dis,
                         g_batch_size=g_batch_size, num_classes=num_classes,
                         br_interval=br_interval, br_window=br_window, ema_decay=ema_decay,
                         loss_mean_every=loss_mean_every, ever_active=ever_active)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim)
        self.n_dis = int(n_dis)
        self.g_batch_size = g_batch_size
        self.num_classes = num_classes
        self.br_interval = int(br_interval)
        self.br_window = int(br_window)
        self.ema_decay = ema_decay
        self.seed = int(seed)

        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.balance = balance.BalanceWindow(self.br_window // self.br_interval)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.ema = EMAGenerator(generator, ema_decay) if ema_decay is not None else None
        self.ema_generator = None if self.ema is None else self.ema.model
        self.criterion = balance.criterion(criterion)
        if not isinstance(window_sampling, bool):
            raise ValueError(f"window_sampling={window_sampling!r} must be True or False.")
        self.window_sampling = window_sampling
        self.loss_mean_every = loss_mean_every
        self.diff_aug = augment.parse_policy(diff_aug)
        self.sparsity = Sparsity({"generator": generator, "discriminator": discriminator},
                                 ema=self.ema, ever_active=ever_active)
        # Tracked under the names checkpoints have always used, so older runs resume.
        self._density = self.sparsity.densities
        self._grad_buffers = self.sparsity.grad_buffers
        if ever_active:  # only then: checkpoints of runs without it keep their layout
            self._ever_active = self.sparsity.ever_active
            self._ever_active_shares = self.sparsity.ever_active_shares
        # A tuple, not a list: Keras would track a list attribute into the checkpoint.
        self._gradient_users: tuple = ()
        self._host_step: int | None = None
        self._nonfinite = _NonfiniteRecord()
        self._compiled = _VariantCache()
        self._step_options, self._fitting = None, False  # `compile`'s call options; in `fit`

    # ----------------------------------------------------------------------------- setup

    def compile(self, *, g_optimizer, d_optimizer, loss: str | losses.GANLoss = "hinge",
                graph_optimizer: bool | None = None, **kwargs):
        """Sets the two optimizers and the GAN loss ("hinge" or "non_saturating").

        graph_optimizer: how Grappler, TensorFlow's graph optimizer, optimises the step
          functions of the one-device route at their first call. None (the default): in full
          when the host has a GPU or TPU; on a CPU-only host with only the passes that decide
          the numbers (`_compat.CallOptions`): the same weights for less start-up. True: in
          full. False: not at all, the shortest start on a CPU, but a graph computed without
          Grappler's rewrites can round differently (the quickstart then trains along another
          path; docs/BENCHMARKS.md, "The first call"). Multi-replica strategies always use it
          in full.

        Other keyword arguments go to `keras.Model.compile` (e.g. `jit_compile=True`);
        `steps_per_execution` must stay 1, since sparsity callbacks act between iterations.
        """
        if kwargs.get("steps_per_execution", 1) != 1:
            raise ValueError("SparseGAN needs steps_per_execution=1 (one GAN iteration per "
                             f"step, callbacks between them); got {kwargs['steps_per_execution']}.")
        if graph_optimizer not in (None, True, False):
            raise ValueError(f"graph_optimizer must be True, False or None (without the passes "
                             f"idle on a CPU-only host), got {graph_optimizer!r}.")
        accelerated = bool(tf.config.list_logical_devices("GPU")
                           or tf.config.list_logical_devices("TPU"))
        self._step_options = (None if graph_optimizer or (graph_optimizer is None and accelerated)
                              else _compat.CallOptions(off=graph_optimizer is False))
        super().compile(**kwargs)
        self.g_optimizer = keras.optimizers.get(g_optimizer)
        self.d_optimizer = keras.optimizers.get(d_optimizer)
        self.loss_fn = losses.get(loss)
        # Build the optimizers' slots now, so a train-function variant is traced only once.
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self._compiled = _VariantCache()

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    # ----------------------------------------------------------------- sparsity bookkeeping

    def masked_layers(self, network: str):
        """The masked layers of "generator" or "discriminator" (`sparsity.layers`)."""
        return self.sparsity.layers[check_network(network)]

    def grad_buffers(self, network: str) -> list[tf.Variable]:
        """Dense kernel gradients of the network's masked layers, from the last iteration that
        kept them (`sparsity.grad_buffers`). For D, the gradient of the last discriminator step
        of that iteration (official code)."""
        return self.sparsity.grad_buffers[check_network(network)]

    def density(self, network: str) -> float:
        """Overall kernel density (active / total over masked kernels) of the network."""
        return self.sparsity.density(network)

    def variant(self, step: int) -> Variant:
        """The variant of the iteration run after `step` completed ones: whether it takes a
        window sample (`samples_window(step)`) and which networks' dense kernel gradients it
        copies into `grad_buffers`, those the `NeedsGradients` callbacks of the running `fit`
        name for `step + 1` (none outside `fit`). `train_step` asks with `iteration`."""
        wanted = {net for user in self._gradient_users for net in user.needs_gradients(step + 1)}
        return Variant(self.samples_window(step), *(net in wanted for net in NETWORKS))

    @property
    def trace_counts(self) -> dict:
        """Traces of the train function: on one device, per step function (name: traces,
        with and without XLA together); under a multi-replica strategy, per `Variant`."""
        counts = dict(self._compiled.traces)
        for (name, _), function in self._compiled.steps.items():
            counts[name] = counts.get(name, 0) + function.experimental_get_tracing_count()
        return counts

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, max_queue_size=10, workers=1,
            use_multiprocessing=False):
        """`keras.Model.fit` (same signature); its `callbacks` that are `NeedsGradients` make
        the iterations they name keep dense kernel gradients, and one that is `LogsSamples`
        makes the iterations that sample the window add the sample's parts to their logs."""
        self._gradient_users = _declaring(callbacks, NeedsGradients)
        logs_samples = bool(_declaring(callbacks, LogsSamples))
        if logs_samples != self._compiled.logs_samples:  # the variants' outputs differ
            self._compiled = _VariantCache(logs_samples=logs_samples)
        self._nonfinite.variable.assign(0)
        self._fitting = True
        try:
            return super().fit(
                x=x, y=y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                callbacks=callbacks, validation_split=validation_split,
                validation_data=validation_data, shuffle=shuffle, class_weight=class_weight,
                sample_weight=sample_weight, initial_epoch=initial_epoch,
                steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
                validation_batch_size=validation_batch_size, validation_freq=validation_freq,
                max_queue_size=max_queue_size, workers=workers,
                use_multiprocessing=use_multiprocessing)
        finally:
            self._host_step = None  # outside fit, `iteration` reads `step` again
            self._gradient_users = ()
            self._fitting = False

    def reset_metrics(self):
        """Keras' reset of the loss means, except the one `fit` does when an epoch starts while
        `loss_mean_every` is set: the means then run from the last multiple of
        `loss_mean_every` across epochs, `fit` calls and resumed checkpoints (which hold the
        trackers), so a run stopped and resumed between two log rows logs what an
        uninterrupted one does."""
        if self._fitting and self.loss_mean_every:
            return
        super().reset_metrics()

    def samples_window(self, step: int) -> bool:
        """Whether the iteration run after `step` completed ones takes a window sample: the
        official `(iteration + 1) % br_freq == 0`, i.e. iterations br_interval, 2 br_interval,
        ... counted from 1 (docs/ALGORITHM.md §2)."""
        return self.window_sampling and (step + 1) % self.br_interval == 0

    @property
    def first_nonfinite(self) -> int | None:
        """The first iteration of the current (or last) `fit` whose d_loss or g_loss was NaN or
        infinite, counted like `iteration`, or None: one device-to-host read of a scalar."""
        return int(self._nonfinite.variable.numpy()) or None

    @property
    def iteration(self) -> int:
        """Completed iterations (host-side, no device sync during fit)."""
        if self._host_step is None:
            return int(self.step.numpy())
        return self._host_step

    # ------------------------------------------------------------------ the training step

    def make_train_function(self, force: bool = False):
        """Keras' train function, run by `fit` once per batch. On one device a host function
        that calls `train_step` on the iterator's next batch; under a multi-replica strategy it
        runs the iteration's variant (`variant`) as its own compiled function
        (`_replicated`). Module docstring, "Compilation"."""
        self._host_step = int(self.step.numpy())
        if self.train_function is not None and not force:
            return self.train_function
        one_device = _one_device(self.distribute_strategy)
        checked = [None]  # the iterator whose batch size was checked: Keras passes one per fit

        def train_function(iterator):
            if one_device:
                if iterator is not checked[0]:
                    self._static_batch(iterator.element_spec)
                    checked[0] = iterator
                logs = self.train_step(next(iterator))
            else:
                logs = self._replicated(self.variant(self._host_step))(iterator)
            self._host_step += 1
            if self.loss_mean_every and self._host_step % self.loss_mean_every == 0:
                keras.Model.reset_metrics(self)  # `logs` hold the means; the next start afresh
            return logs

        self.train_function = train_function
        return train_function

    def train_step(self, data):
        """One GAN iteration on the batch `data` (`images` [n_dis * d_batch, H, W, C], or
        `(images, labels)`); returns its logs. `fit` calls it once per batch on one device;
        called directly it runs the same iteration. Its variant is `variant(iteration)`: inside
        `fit`, where the callbacks declare gradients; outside, the window sample follows
        `step` and no gradients are kept."""
        shared = tf.distribute.get_replica_context().num_replicas_in_sync == 1
        if shared and self._step_options is not None:
            with self._step_options.applied():
                return self._iteration(data, self.variant(self.iteration), shared=True)
        return self._iteration(data, self.variant(self.iteration), shared=shared)

    def _static_batch(self, element_spec) -> None:
        """ValueError unless the dataset's batches have a static size, a multiple of n_dis
        (`_local_d_batch`): one device reads every batch eagerly, where a smaller last batch
        would pass unseen and be trained on."""
        images = element_spec[0] if isinstance(element_spec, (tuple, list)) else element_spec
        self._local_d_batch(images.shape[0])

    def _replicated(self, variant: Variant):
        """The compiled function of `variant` under a multi-replica strategy, made at its first
        use: it draws the latents outside XLA (whose stateless RNG gives other numbers) and runs
        `_iteration` on every replica, its steps plain methods (a nested `tf.function` cannot
        hold the gradient and optimizer merge calls), compiled with XLA under `jit_compile`."""
        jit = bool(self._jit_compile)
        if (variant, jit) in self._compiled.functions:
            return self._compiled.functions[(variant, jit)]
        strategy, traces = self.distribute_strategy, self._compiled.traces
        traces.setdefault(variant, 0)

        def iteration(data, drawn):
            traces[variant] += 1  # Python side effect: runs once per trace
            return self._iteration(data, variant, shared=False, drawn=drawn)

        # No autograph: the step's control flow is Python (n_dis, the variant's booleans), and
        # converting every called function was a third of the trace.
        step_fn = tf.function(iteration, jit_compile=jit, reduce_retracing=True, autograph=False)

        @tf.function(reduce_retracing=True, autograph=False)
        def run(iterator):
            data = next(iterator)
            images = data[0] if isinstance(data, (tuple, list)) else data
            shape = strategy.experimental_local_results(images)[0].shape
            global_d = self._local_d_batch(shape[0]) * strategy.num_replicas_in_sync
            drawn = _draw_latents(self, self.step.read_value(), global_d, tuple(shape[1:3]))
            outputs = strategy.run(step_fn, args=(data, drawn))
            # Every replica holds the same values (losses and BR are reduced in the step).
            return tf.nest.map_structure(
                lambda value: strategy.experimental_local_results(value)[0], outputs)

        self._compiled.functions[(variant, jit)] = run
        return run

    def _iteration(self, data, variant: Variant, *, shared: bool, drawn=None):
        """One GAN iteration on this replica's `data`, the one body of both routes: the batch
        split with its latents (`_begin`), n_dis D steps, the G step, the window sample if
        `variant.sample_window`, then the EMA and counters (`_finish`); returns the logs.

        `shared` (one device, from `train_step`): every step is a `tf.function` that all
        variants share (`_VariantCache.step`) and the kept gradients are boolean tensors, so no
        variant has a trace of its own. Otherwise (a replica's body in `_replicated`) the steps
        are plain methods, `drawn` holds the iteration's global draws and the kept gradients
        are Python booleans."""
        jit = bool(self._jit_compile)

        def step(method, xla=True):
            return self._compiled.step(method, jit_compile=jit and xla, shared=shared)

        flag = self._compiled.flag if shared else bool
        # Never under XLA, whose stateless RNG gives other numbers: on one device `_begin` draws
        # the latents; a replica gets them drawn before the compiled body (`_replicated`).
        phases, (z, labels, augmentation) = step(self._begin, xla=False)(data, drawn)
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        global_d, g_batch = int(phases[0][0].shape[0]) * replicas, int(z.shape[0]) * replicas
        positives = []
        for k, d_inputs in enumerate(phases):
            # Counted in every iteration of an "ada" run, so one D-step trace serves all.
            d_loss, positive = step(self._discriminator_step)(
                *d_inputs, global_d=global_d, count_positive=self.criterion.from_d_steps,
                keep_grads=flag(variant.keep_d_grads and k == self.n_dis - 1))
            positives.append(positive)
        g_loss, df = step(self._generator_step)(
            z, labels, augmentation, g_batch=g_batch, keep_grads=flag(variant.keep_g_grads))
        sample = {}
        if variant.sample_window:  # the last D step's (augmented) reals, the G step's z
            real, real_labels = phases[-1][2:4]
            sample = step(self._window_sample)(positives, z, labels, df, real, real_labels,
                                               augmentation, g_batch=g_batch, d_batch=global_d)
        logs = step(self._finish)(d_loss, g_loss)
        return {**logs, **(sample if self._compiled.logs_samples else {})}

    def _begin(self, data, drawn=None):
        """This replica's batch split and augmented for the D steps, with the latents of every
        phase: ([(z, fake labels, reals, their labels, DiffAugment parameters)] per D step,
        (z, labels, DiffAugment parameters) of the G step). `drawn`: the iteration's global
        draws (`_draw_latents`); None (one device): drawn here."""
        images, labels = self._unpack(data)
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        local_d = self._local_d_batch(images.shape[0])
        self._global_g_batch(local_d, replicas)  # ValueError unless it splits over replicas
        if drawn is None:
            drawn = _draw_latents(self, self.step.read_value(), local_d * replicas,
                                  tuple(images.shape[1:3]))
        sampler = _Sampler(drawn, context.replica_id_in_sync_group, replicas)
        phases = [self._d_inputs(images, labels, sampler, k) for k in range(self.n_dis)]
        return phases, (*sampler.latents(self.n_dis), sampler.augmentation(self.n_dis))

    def _window_sample(self, positives, z, labels, df, real, real_labels, augmentation, *,
                       g_batch: int, d_batch: int):
        """Pushes the iteration's window sample and returns its parts for the logs: for "ada"
        the mean over the D steps of the share of reals D scored above 0 (official: one
        sample per iteration), else the BR sample (`_balance_sample`)."""
        if self.criterion.from_d_steps:
            value = tf.add_n(positives) / self.n_dis
            self.balance.push_value(value)
            return {"ada_sample": value}
        return self._balance_sample(z, labels, df, real, real_labels, g_batch, d_batch,
                                    augmentation)

    def _finish(self, d_loss, g_loss):
        """The iteration's end: EMA update, loss means, step + 1; returns the logs."""
        if self.ema is not None:
            self.ema.update()
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.step.assign_add(1)
        first = self._nonfinite.variable
        finite = tf.logical_and(tf.math.is_finite(d_loss), tf.math.is_finite(g_loss))
        first.assign(tf.where(tf.logical_or(finite, first > 0), first, self.step.read_value()))
        return {"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result(),
                self.criterion.window_key: self.balance.mean(),
                "br_skipped": self.balance.skipped.read_value(),
                "g_density": self.sparsity.densities["generator"].read_value(),
                "d_density": self.sparsity.densities["discriminator"].read_value(),
                **{f"{network[0]}_ever_active": share.read_value()
                   for network, share in self.sparsity.ever_active_shares.items()}}

    def _d_inputs(self, images, labels, sampler: _Sampler, k: int):
        """D step k's (z, fake labels, reals images[k::n_dis] augmented, their labels,
        DiffAugment parameters) on this replica."""
        augmentation = sampler.augmentation(k)
        real = self._augment(images[k::self.n_dis], augmentation)
        real_labels = None if labels is None else labels[k::self.n_dis]
        z, fake_labels = sampler.latents(k)
        return z, fake_labels, real, real_labels, augmentation

    def _global_g_batch(self, local_d: int, replicas: int) -> int:
        g_batch = self.g_batch_size or local_d * replicas
        if g_batch % replicas:
            raise ValueError(f"g_batch_size={g_batch} must be divisible by the number of "
                             f"replicas ({replicas}).")
        return g_batch

    def _local_d_batch(self, local_batch) -> int:
        if local_batch is None or local_batch % self.n_dis:
            raise ValueError(f"The per-replica batch ({local_batch}) must be a static "
                             f"multiple of n_dis={self.n_dis}: batch the dataset with "
                             "drop_remainder=True and n_dis * d_batch images per step.")
        return local_batch // self.n_dis

    def _unpack(self, data):
        if isinstance(data, (tuple, list)):
            if len(data) != 2:
                raise ValueError("Expected dataset elements `images` or `(images, labels)`, got "
                                 f"a tuple of {len(data)}.")
            images, labels = data
        else:
            images, labels = data, None
        if (labels is None) != (self.num_classes is None):
            raise ValueError("Conditional models (num_classes set) need `(images, labels)` "
                             "elements and unconditional ones plain `images`; got "
                             f"num_classes={self.num_classes} and "
                             f"{'no labels' if labels is None else 'labels'}.")
        return images, labels

    def _call_g(self, z, labels, training=True):
        inputs = z if labels is None else [z, labels]
        return self.generator(inputs, training=training)

    def _call_d(self, images, labels, training=True):
        inputs = images if labels is None else [images, labels]
        logits = tf.cast(self.discriminator(inputs, training=training), tf.float32)
        return tf.reshape(logits, [-1])

    def _discriminator_step(self, z, fake_labels, real, real_labels, augmentation, *,
                            global_d: int, keep_grads: bool, count_positive: bool):
        """One D step on this replica's (augmented) reals and the fakes of its latents z; returns
        (its loss, the share of the global real batch D scored above 0 before the step, or None
        unless `count_positive`). Tensors in, so one trace serves every D step."""
        fake = self._augment(tf.stop_gradient(self._call_g(z, fake_labels, training=True)),
                             augmentation)
        with tf.GradientTape() as tape:
            real_logits = self._call_d(real, real_labels)
            fake_logits = self._call_d(fake, fake_labels)
            loss = tf.reduce_sum(self.loss_fn.discriminator(real_logits, fake_logits)) / global_d
        self._update("discriminator", self.d_optimizer, tape, loss, keep_grads=keep_grads)
        positive = None
        if count_positive:
            above = tf.reduce_sum(tf.cast(real_logits > 0.0, tf.float32))
            positive = _all_sum(above) / global_d
        return _all_sum(loss), positive

    def _generator_step(self, z, labels, augmentation, *, g_batch: int, keep_grads: bool):
        with tf.GradientTape() as tape:
            fakes = self._augment(self._call_g(z, labels, training=True), augmentation)
            fake_logits = self._call_d(fakes, labels)
            loss = tf.reduce_sum(self.loss_fn.generator(fake_logits)) / g_batch
        self._update("generator", self.g_optimizer, tape, loss, keep_grads=keep_grads)
        df = _all_sum(tf.reduce_sum(fake_logits)) / g_batch
        return _all_sum(loss), df

    def _update(self, network: str, optimizer, tape, loss, *, keep_grads) -> None:
        """One optimizer step of `network` on the replica-summed gradient of `loss` (scaled and
        unscaled by a `LossScaleOptimizer`); with `keep_grads` (a bool, or a boolean tensor)
        the masked kernels' gradients are also copied into the network's dense gradient
        buffers."""
        variables = getattr(self, network).trainable_variables
        with tape:
            scaled = _scale_loss(optimizer, loss)
        grads = _all_sum(_unscale(optimizer, tape.gradient(scaled, variables)))
        optimizer.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)
        if isinstance(keep_grads, bool):
            if keep_grads:
                self._keep_gradients(network, grads, variables)
        else:  # a boolean tensor (one device): one trace copies or not at run time
            tf.cond(keep_grads, lambda: self._keep_gradients(network, grads, variables),
                    lambda: None)

    def _augment(self, images, augmentation):
        """DiffAugment with this phase's parameters (`augment.apply`), or `images` without."""
        return augment.apply(images, augmentation) if augmentation else images

    def _balance_sample(self, z, labels, df, real, real_labels, g_batch, d_batch,
                        augmentation=None):
        """Pushes one BR sample into the window; returns its parts for the iteration's logs
        (`br_gf`, `br_df`, `br_dr`, and `br_kept`: 0 if the window skipped it)."""
        # Official code: same z, G after its update, D after its update, train mode.
        fakes = self._augment(self._call_g(z, labels), augmentation)
        gf = _all_sum(tf.reduce_sum(self._call_d(fakes, labels))) / g_batch
        dr = _all_sum(tf.reduce_sum(self._call_d(real, real_labels))) / d_batch
        kept = self.balance.push(gf, df, dr)
        return {"br_gf": gf, "br_df": df, "br_dr": dr, "br_kept": tf.cast(kept, tf.int32)}

    def _keep_gradients(self, network, grads, variables):
        by_ref = {v.ref(): g for g, v in zip(grads, variables)}
        pairs = [(buffer, by_ref[layer.kernel.ref()])
                 for buffer, layer in zip(self.sparsity.grad_buffers[network],
                                          self.sparsity.layers[network])
                 if layer.kernel.ref() in by_ref]
        for buffer, grad in pairs:
            buffer.assign(tf.cast(grad, tf.float32))

    # ---------------------------------------------------------------------------- sampling

    def sample(self, num: int, *, seed: int = 0, labels=None, use_ema: bool = True,
               training: bool = True, batch_size: int = 256) -> tf.Tensor:
        """num images [num, H, W, C] in [-1, 1] from the (EMA) generator, deterministic in seed.

        z_i is row i of stateless_normal([num, latent_dim], seed=[seed, 7919]); labels default
        to uniform random classes for conditional models. `training=True` (default) uses batch
        statistics in BatchNorm, as the official evaluation does, so an image depends on the
        other images of its batch (rows [k * batch_size, (k + 1) * batch_size)). Sampling
        changes no variable: what a training-mode call updates (BatchNorm moving statistics,
        spectral-norm vectors) is restored after every batch, so samples never perturb
        training and every batch is computed from the same state.
        """
        generator = self.ema_generator if use_ema and self.ema_generator is not None \
            else self.generator
        z = tf.random.stateless_normal([num, self.latent_dim], seed=[seed, 7919])
        if self.num_classes is not None and labels is None:
            labels = tf.random.stateless_uniform([num], seed=[seed, 104729], minval=0,
                                                 maxval=self.num_classes, dtype=tf.int32)
        state = self._call_state(generator)
        outputs = []
        for start in range(0, num, batch_size):
            batch_z = z[start:start + batch_size]
            inputs = batch_z if labels is None else [
                batch_z, tf.cast(labels[start:start + batch_size], tf.int32)]
            saved = [tf.identity(variable) for variable in state]
            try:
                outputs.append(tf.cast(generator(inputs, training=training), tf.float32))
            finally:
                for variable, value in zip(state, saved):
                    variable.assign(value)
        return tf.concat(outputs, axis=0)

    def _call_state(self, generator: keras.Model) -> list[tf.Variable]:
        """The variables a training-mode call of `generator` updates (all but weights, masks)."""
        if generator is self.ema_generator:
            return self.ema.call_state
        masks = {layer.mask.ref() for layer in self.sparsity.layers["generator"]}
        return [w for w in generator.weights if not w.trainable and w.ref() not in masks]

    def get_config(self):
        return {"latent_dim": self.latent_dim, "n_dis": self.n_dis,
                "g_batch_size": self.g_batch_size, "num_classes": self.num_classes,
                "br_interval": self.br_interval, "br_window": self.br_window,
                "ema_decay": self.ema_decay, "seed": self.seed,
                "ever_active": bool(self.sparsity.ever_active), "criterion": self.criterion.name,
                "diff_aug": ",".join(self.diff_aug) if self.diff_aug else None,
                "window_sampling": self.window_sampling, "loss_mean_every": self.loss_mean_every}


def _declaring(callbacks, protocol) -> tuple:
    """The callbacks (a list, a `CallbackList` or None) that are `protocol`; ValueError for a
    `LogsSamples` whose `logs_samples` is not True (declared but switched off is ambiguous)."""
    found = tuple(c for c in callbacks or () if isinstance(c, protocol))
    if protocol is LogsSamples:
        for callback in found:
            if callback.logs_samples is not True:
                raise ValueError(
                    f"{type(callback).__name__}.logs_samples={callback.logs_samples!r}: a "
                    "callback that reads window samples from the logs sets it to True; "
                    "one that does not must not define it.")
    if protocol is NeedsGradients:
        for callback in found:
            if not callable(callback.needs_gradients):
                raise ValueError(f"{type(callback).__name__}.needs_gradients must be a method "
                                 "(step) -> networks, got a "
                                 f"{type(callback.needs_gradients).__name__}.")
    return found


class _NonfiniteRecord:
    """`variable`: the first iteration of the current `fit` whose d_loss or g_loss was not
    finite (0: none), written by every iteration on the device so that
    `writers.TerminateOnNaN` reads one scalar at its cadence instead of the losses every
    iteration. Held here, where Keras does not track it: not a weight, not in checkpoints
    (none is written after a non-finite loss)."""

    def __init__(self):
        self.variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="first_nonfinite",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class _VariantCache:
    """The train function's compiled parts and their trace counts (kept out of Keras tracking):
    the one-device route's step functions and the multi-replica route's variants."""

    def __init__(self, logs_samples: bool = False):
        self.functions: dict = {}  # (Variant, jit_compile): a multi-replica variant's function
        self.traces: dict = {}  # Variant: its traces
        self.logs_samples = logs_samples  # the iterations return the window sample's parts
        self.steps: dict = {}  # (method name, jit_compile): a one-device step function
        self._flags: dict = {}

    def flag(self, value: bool) -> tf.Tensor:
        """`value` as a boolean tensor, made once: a step function's runtime choice."""
        if value not in self._flags:
            self._flags[value] = tf.constant(value)
        return self._flags[value]

    def step(self, method, *, jit_compile: bool, shared: bool = True):
        """`method` (a step of `SparseGAN`) as `_iteration` calls it. `shared`: a
        `tf.function` called from the host, traced and optimised once for every variant since
        its Python arguments are the same in all of them, made again when `jit_compile`
        changes; else the plain method (a replica's body, compiled with its variant). No
        autograph: the steps' control flow is Python (n_dis, the model's settings)."""
        if not shared:
            return method
        key = (method.__name__, jit_compile)
        if key not in self.steps:
            self.steps[key] = tf.function(method, jit_compile=jit_compile, autograph=False)
        return self.steps[key]


class _Sampler:
    """This replica's slice of an iteration's global draws (`_draw_latents`), so R replicas
    see the samples of one device. Phase k < n_dis is D step k; phase n_dis the generator step
    (and its window sample)."""

    def __init__(self, drawn, replica, replicas: int):
        self.drawn = drawn
        self.replica = replica
        self.replicas = replicas

    def augmentation(self, phase: int) -> dict:
        """This replica's DiffAugment parameters of the phase ({} without `diff_aug`)."""
        return {key: self._slice(value) for key, value in self.drawn[phase][2].items()}

    def latents(self, phase: int):
        """This replica's (z [local batch, latent_dim], fake labels [local batch] or None)."""
        z, labels = self.drawn[phase][:2]
        return self._slice(z), None if labels is None else self._slice(labels)

    def _slice(self, values):
        if self.replicas == 1:
            return values
        local = int(values.shape[0]) // self.replicas
        start = tf.cast(self.replica, tf.int32) * local
        return values[start:start + local]


def _one_device(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` is the default (no) strategy: one device, the replica context of
    the host, so `train_step` can be called directly and call its step functions."""
    with strategy.scope():
        return not tf.distribute.has_strategy()


def _phase_seed(gan: SparseGAN, step, phase: int, stream: int) -> tf.Tensor:
    """The stateless seed of a phase's draws: (seed + stream, iteration * (n_dis + 1) + phase),
    stream 0 for z, 1 for fake labels, 2 for DiffAugment parameters."""
    base = tf.cast(step, tf.int64) * (gan.n_dis + 1) + phase
    return tf.stack([tf.constant(gan.seed + stream, tf.int64), base])


def _global_latents(gan: SparseGAN, step, phase: int, global_batch: int):
    z = tf.random.stateless_normal([global_batch, gan.latent_dim],
                                   seed=_phase_seed(gan, step, phase, 0))
    labels = None
    if gan.num_classes is not None:
        labels = tf.random.stateless_uniform(
            [global_batch], seed=_phase_seed(gan, step, phase, 1),
            minval=0, maxval=gan.num_classes, dtype=tf.int32)
    return z, labels


def _global_augmentation(gan: SparseGAN, step, phase: int, global_batch: int, image_size):
    """DiffAugment parameters of the phase for the global batch (`_phase_seed` stream 2)."""
    return augment.draw(gan.diff_aug, global_batch, image_size,
                        _phase_seed(gan, step, phase, 2))


def _draw_latents(gan: SparseGAN, step, global_d: int, image_size=None):
    """Global (z, labels, DiffAugment parameters or {}) of every phase of an iteration: the D
    steps, then the G step."""
    batches = [global_d] * gan.n_dis + [gan.g_batch_size or global_d]
    return [(*_global_latents(gan, step, phase, batch),
             {} if gan.diff_aug is None else
             _global_augmentation(gan, step, phase, batch, image_size))
            for phase, batch in enumerate(batches)]


def _scale_loss(optimizer, loss):
    if isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
        return optimizer.get_scaled_loss(loss)
    return loss


def _unscale(optimizer, grads):
    if isinstance(optimizer, keras.mixed_precision.LossScaleOptimizer):
        return optimizer.get_unscaled_gradients(grads)
    return grads
