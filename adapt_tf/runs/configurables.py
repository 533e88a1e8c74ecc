"""The composition root: the one place that registers adapt_tf components with gin and parses
gin configs.

Configs bind `train.*` (the fields of `train_lib.RunSpec`, the run `train_lib.train` trains),
choose the method with `train.method = @method()` and `method.name = ...`, and choose
optimizers by reference with scopes, as gin's docs do for GANs:

    train.generator_optimizer = @generator/Adam
    generator/Adam.learning_rate = 2e-4

(no parentheses: the optimizer is created inside the distribution strategy's scope).

A run's configuration is read back here too (`parse_run_config`, `read_run_config` into a gin-free
`records.ParsedConfig`), and checked on resume against the configuration recorded inside the
checkpoints (`record_text`, `recorded_config`, `restore_config_file`, `check_resume`,
`RESUMABLE_CHANGES`); the CLIs (`train`, `evaluate`, `export`, `report`, `flops_cli`) call
these, so that library modules never import gin. Parsing clears gin's global config and leaves
the parsed one in place.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import logging
import os
import tempfile
import tokenize
from pathlib import Path
from typing import Any, Sequence

import gin
import tf_keras as keras
from absl import logging as absl_logging

from adapt_tf import data
from adapt_tf.runs import methods, records, train_lib, storage, workdir as workdir_lib
from adapt_tf.gan.sparse_gan import SparseGAN

__all__ = ["CONFIG_DIR", "RUN_SPEC", "run_spec", "train", "parse_config", "config_bindings",
           "binding_differences", "parse_run_config", "current_run_config", "read_run_config",
           "record_text", "RecordedConfig", "recorded_config", "recorded_bindings",
           "restore_config_file", "check_resume", "RESUMABLE_CHANGES", "bind_dataset_fingerprint"]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "gin_configs"

for _optimizer in (keras.optimizers.Adam, keras.optimizers.SGD, keras.optimizers.RMSprop):
    gin.external_configurable(_optimizer, module="keras.optimizers")
gin.external_configurable(methods.method, name="method", module="adapt_tf.runs.methods")
# The run spec is the configurable `train`, so that configs (and the operative configs of runs
# made before it existed) bind `train.total_steps = ...`.
RUN_SPEC = "adapt_tf.runs.train_lib.train"
run_spec = gin.external_configurable(train_lib.RunSpec, name="train",
                                     module="adapt_tf.runs.train_lib")


def train(**arguments) -> SparseGAN:
    """Trains the run gin's config describes; `arguments` are `train_lib.RunSpec` fields given
    in code (`workdir`, `extra_callbacks`), which override the config."""
    return train_lib.train(run_spec(**arguments))


def parse_config(gin_files, gin_bindings=()) -> None:
    """Parses config files and bindings; unknown names and bad values raise at once.

    Includes resolve against the including file's folder, the working directory and the
    package's `gin_configs/`.
    """
    for path in [CONFIG_DIR, Path.cwd(), *(Path(f).resolve().parent for f in gin_files)]:
        if path.is_dir():
            gin.add_config_file_search_path(str(path))
    missing = [f for f in gin_files if not _findable(f)]
    if missing:
        raise ValueError(f"gin file(s) not found: {missing}; give a path, or a path relative "
                         f"to {CONFIG_DIR}.")
    root = logging.getLogger()
    root.addFilter(_quiet_include_probes)
    try:
        for path in gin_files:
            with _syntax_errors_named(f"gin file {path}"):
                gin.parse_config_file(path)
        with _syntax_errors_named(f"gin bindings {list(gin_bindings)}"):
            gin.parse_config(list(gin_bindings))
        gin.finalize()
    finally:
        root.removeFilter(_quiet_include_probes)


@contextlib.contextmanager
def _syntax_errors_named(source: str):
    """Turns tokenizer errors (an unclosed bracket or string), which name no file, into a
    ValueError naming the file or bindings (gin adds the include chain, if any)."""
    try:
        yield
    except tokenize.TokenError as error:
        args = error.args
        if len(args) == 2 and isinstance(args[1], tuple):  # (message, (line, column))
            detail = f"{args[0]} at line {args[1][0]}"
        else:  # gin re-raised it with the including file and line appended
            detail = " ".join(str(error).split())
        raise ValueError(f"Syntax error in {source}: {detail} (an unclosed bracket, "
                         "parenthesis or quote?)") from None


def config_bindings() -> dict[str, Any]:
    """Every parameter the current gin config binds, as {"scope/name.param": value} (e.g.
    "generator/Adam.learning_rate", "train.total_steps"), with macros resolved (`%DENSITY`
    becomes DENSITY's value). References are kept as their text (e.g.
    "@generator/keras.optimizers.Adam")."""
    bindings: dict[str, Any] = {}
    for (scope, selector), parameters in gin.config._CONFIG.items():  # no public iterator
        if selector.endswith("gin.macro"):
            continue
        short = gin.config._REGISTRY.get_match(selector).name
        name = f"{scope}/{short}" if scope else short
        for parameter, value in parameters.items():
            bindings[f"{name}.{parameter}"] = _resolve(value)
    return bindings


UNSET = "<unset>"


def binding_differences(old: dict[str, Any], new: dict[str, Any]
                        ) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for each parameter whose value differs between two
    `config_bindings()`, a missing binding standing for the parameter's default, so that a
    config and the operative config of the run it made (which lists defaults) compare equal."""
    differences = []
    for key in sorted(set(old) | set(new)):
        default = _default(key)
        before, after = old.get(key, default), new.get(key, default)
        if before != after:
            differences.append((key, before, after))
    return differences


def _default(key: str) -> Any:
    selector, parameter = key.rsplit(".", 1)
    configurable = gin.config._REGISTRY.get_match(selector.rsplit("/", 1)[-1])
    try:
        signature = inspect.signature(configurable.wrapped)
    except (AttributeError, TypeError, ValueError):
        return UNSET
    found = signature.parameters.get(parameter)
    return UNSET if found is None or found.default is inspect.Parameter.empty else found.default


def _resolve(value):
    """Macros to their values, recursively; other references to their text."""
    if isinstance(value, gin.config.ConfigurableReference):
        text = repr(value)  # "%NAME" for macros, "@scope/name" or "@name()" otherwise
        return _resolve(gin.query_parameter(text)) if text.startswith("%") else text
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    return value


def _quiet_include_probes(record: logging.LogRecord) -> bool:
    """Drops gin's 'Path not found' errors, logged for every search path it probes for an
    include before the one that has the file (a missing file still raises)."""
    return not (record.pathname.endswith("resource_reader.py")
                and str(record.msg).startswith("Path not found"))


def _findable(path: str) -> bool:
    return os.path.exists(path) or (CONFIG_DIR / path).exists()


# ------------------------------------------------------------------ a run's config, read back


# Bindings a resumed run may change: when, how often and where it runs, not what it trains.
# total_steps also rescales the method's schedules (e.g. the drop fraction) from then on.
RESUMABLE_CHANGES = ("train.total_steps", "train.log_every", "train.checkpoint_every",
                     "train.sample_every", "train.num_sample_images", "train.eval_every",
                     "train.data_dir", "train.download", "train.strategy", "train.devices",
                     "train.jit_compile", "train.test_eval", "train.test_reference_stats")


def parse_run_config(gin_files: Sequence[str], gin_bindings: Sequence[str] = (), *,
                     with_method: bool = True) -> records.ParsedConfig:
    """Parses gin files and bindings (clearing gin's config first) into a `ParsedConfig`.

    Args:
      gin_files, gin_bindings: as `python -m adapt_tf.train` takes them.
      with_method: build the `methods.Method` (needs `method.name` bound); False for configs
        that only set up a setting (e.g. `gin_configs/settings/*.gin`).
    """
    gin.clear_config()
    parse_config(list(gin_files), list(gin_bindings))
    return current_run_config(with_method=with_method)


def current_run_config(*, with_method: bool = True) -> records.ParsedConfig:
    """The `ParsedConfig` of gin's current config (`parse_run_config` without parsing)."""
    bound = gin.get_bindings(RUN_SPEC, resolve_references=False)
    if not with_method:
        bound.pop("method", None)
    defaults = {field.name: field.default for field in dataclasses.fields(train_lib.RunSpec)
                if field.default is not dataclasses.MISSING}
    # deepcopy resolves gin references: macros to values, @method() to its result.
    arguments = {**defaults, **copy.deepcopy(bound)}
    method_arguments = gin.get_bindings("adapt_tf.runs.methods.method")
    return records.ParsedConfig(arguments, method_arguments)


def read_run_config(workdir: str, *, with_method: bool = True) -> records.ParsedConfig:
    """The `ParsedConfig` of a run: the configuration recorded inside its newest checkpoint
    (`storage.newest_record`), else `workdir/operative_config.gin` (runs saved before records
    existed, or copied without checkpoints), so that a deleted or edited file never
    mislabels a run; arguments["workdir"] is `workdir` (the run may have been moved)."""
    path = workdir_lib.Workdir(workdir).config
    record = storage.newest_record(workdir_lib.Workdir(workdir).checkpoints)
    if record is None and not os.path.isfile(path):
        raise ValueError(f"{workdir!r} has no {workdir_lib.CONFIG_NAME}; pass the workdir of a "
                         "run started with `python -m adapt_tf.train --workdir=...`.")
    with contextlib.nullcontext(path) if record is None else _as_file(record) as source:
        config = parse_run_config([source], with_method=with_method)
    config.arguments["workdir"] = workdir
    return config


@contextlib.contextmanager
def _as_file(text: str):
    """A temporary copy of config `text` as an operative_config.gin file, for gin to parse."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, workdir_lib.CONFIG_NAME)
        Path(path).write_text(text)
        yield path


def record_text() -> str:
    """The configuration a run records inside every checkpoint (`train_lib.RunSpec.record`):
    gin's current config as text, every binding it holds. `recorded_config` reads it back."""
    return gin.config_str()


@dataclasses.dataclass(frozen=True)
class RecordedConfig:
    """The configuration a workdir's checkpoints were trained with.

    Attributes:
      source: where it was read: the newest usable checkpoint, or `W/operative_config.gin`
        for checkpoints saved before records existed.
      bindings: its `config_bindings()`.
      text: the checkpoint's record (None when read from the file).
      file_problem: why `W/operative_config.gin` does not hold it ("is missing", "is
        unreadable", "differs in <keys>"), or None; `restore_config_file` rewrites it then.
    """

    source: str
    bindings: dict[str, Any]
    text: str | None = None
    file_problem: str | None = None


def recorded_config(workdir: str) -> RecordedConfig | None:
    """The configuration recorded in `workdir`'s newest usable checkpoint (None if it has no
    checkpoint); for checkpoints saved before records existed, the one of
    `W/operative_config.gin` (None, with a warning, if that is missing). The file is compared
    with the record, never trusted over it. Clears gin."""
    directory, path = workdir_lib.Workdir(workdir).checkpoints, workdir_lib.Workdir(workdir).config
    if not storage.checkpoint_paths(directory):
        return None
    checkpoint = storage.usable_checkpoint(directory, reject=False)
    text = storage.checkpoint_record(checkpoint)
    if not text:  # saved before records existed, or by a library run that gave none
        return _legacy_recorded_config(workdir, checkpoint)
    recorded = _bindings_of(text, f"the configuration recorded in {checkpoint}")
    if not os.path.isfile(path):
        return RecordedConfig(checkpoint, recorded, text, "is missing")
    try:
        in_file = _bindings_of(Path(path).read_text(), path)
    except workdir_lib.WorkdirError:
        return RecordedConfig(checkpoint, recorded, text, "is unreadable")
    edited = [key for key, _, _ in binding_differences(recorded, in_file)]
    return RecordedConfig(checkpoint, recorded, text,
                          f"differs in {', '.join(edited)}" if edited else None)


def _legacy_recorded_config(workdir: str, checkpoint: str) -> RecordedConfig | None:
    path = workdir_lib.Workdir(workdir).config
    if not os.path.isfile(path):
        absl_logging.warning("%s has checkpoints but no %s, and %s records no configuration "
                             "(saved before records existed, or by train_lib without one): the "
                             "configuration cannot be checked against them.", workdir,
                             workdir_lib.CONFIG_NAME, checkpoint)
        return None
    return RecordedConfig(path, _bindings_of(Path(path).read_text(), path))


def _bindings_of(text: str, source: str) -> dict[str, Any]:
    """`config_bindings()` of config `text`; `WorkdirError` naming `source` if it does not
    parse. Clears gin."""
    gin.clear_config()
    try:
        with _as_file(text) as path:
            parse_config([path])
    except (ValueError, TypeError, KeyError, OSError, SyntaxError) as error:
        raise workdir_lib.WorkdirError(
            f"Cannot read {source} ({error}); restore it from a backup, or use a new "
            "--workdir.") from None
    bindings = config_bindings()
    gin.clear_config()
    return bindings


FINGERPRINT = "train.dataset_fingerprint"


def bind_dataset_fingerprint(recorded: dict[str, Any] | None) -> None:
    """Binds `train.dataset_fingerprint` to `data.fingerprint` of the configured dataset, so
    that the recorded config holds it and `check_resume` refuses a resume on changed data like
    any other changed binding. Nothing is bound when the config binds it already, or when
    resuming a run `recorded` before fingerprints were recorded (it has none to compare)."""
    if recorded is not None and FINGERPRINT not in recorded:
        return
    arguments = current_run_config(with_method=False).arguments
    if arguments["dataset_fingerprint"] is None:
        digest = data.fingerprint(arguments["dataset"], data_dir=arguments["data_dir"])
        with gin.unlock_config():  # parse_config finalized it
            gin.bind_parameter(FINGERPRINT, digest)


def recorded_bindings(workdir: str) -> dict[str, Any] | None:
    """`recorded_config(workdir).bindings`, or None."""
    recorded = recorded_config(workdir)
    return None if recorded is None else recorded.bindings


def restore_config_file(workdir: str, recorded: RecordedConfig | None) -> None:
    """Rewrites `W/operative_config.gin` from the checkpoint's record when it is missing,
    unreadable or edited (`recorded.file_problem`), with one warning line saying so."""
    if recorded is None or recorded.text is None or recorded.file_problem is None:
        return
    path = workdir_lib.Workdir(workdir).config
    storage.write_atomic(path, recorded.text)
    absl_logging.warning("%s %s; restored it from the configuration recorded in %s.",
                         path, recorded.file_problem, recorded.source)


def check_resume(workdir: str, recorded: dict[str, Any] | None,
                 bindings: dict[str, Any], *, source: str | None = None) -> None:
    """Refuses to resume a run with bindings that differ from its `recorded` ones (read from
    `source`, e.g. a checkpoint), except `RESUMABLE_CHANGES`: `WorkdirError` listing each
    differing binding, recorded and new."""
    if recorded is None:
        return
    differences = [(key, old, new) for key, old, new in
                   binding_differences(recorded, bindings)
                   if key not in RESUMABLE_CHANGES]
    if differences:
        listed = "; ".join(f"{key} = {old!r} recorded, {new!r} now"
                           for key, old, new in differences)
        raise workdir_lib.WorkdirError(
            f"{workdir} holds checkpoints of a run with another configuration ({listed}"
            f"{f'; recorded in {source}' if source else ''}). "
            f"Resume it with its recorded configuration ({workdir_lib.Workdir(workdir).config})"
            f", or train the new one in a new --workdir. Only {', '.join(RESUMABLE_CHANGES)} "
            "may change on resume.")
