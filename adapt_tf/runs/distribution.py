"""A `tf.distribute` strategy from a name, for the CLI and gin, and multi-worker file rules.

| name | strategy |
|---|---|
| default | no distribution (one device) |
| mirrored | `MirroredStrategy` on all local GPUs (the CPU if there is none), or on `devices` |
| multi_worker | `MultiWorkerMirroredStrategy` from the `TF_CONFIG` environment variable |
| tpu | `TPUStrategy` on the TPU named by `tpu` (or the one of the environment) |

Batch sizes in adapt_tf's configs are *global*: a step of `n_dis * d_batch` real images and a
generator batch of `g_batch_size` are split evenly over the replicas (each replica gets
`n_dis * d_batch / R` real images and `g_batch_size / R` latents, both must divide), so a
config reproduces the same training whatever the number of devices: each replica draws its
slice of the global z from stateless seeds, losses are divided by the global batch and
gradients summed over replicas, BatchNorm statistics are synchronised over the global batch,
and mask updates run on replicated values.

Multi-worker files: the chief (task "chief", or "worker" 0 of a cluster without a chief)
writes the run's files; every other worker writes its copies (checkpoints must be saved by
every worker) to a private directory inside the target, which it deletes
(`writer_directory`, `remove_writer_directory`). Every worker restores the chief's latest
checkpoint, so a multi-worker run resumes from what the chief wrote.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import tensorflow as tf

__all__ = ["STRATEGIES", "get_strategy", "is_chief", "is_chief_process", "writer_directory",
           "remove_writer_directory"]

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def get_strategy(name: str = "default", *, devices: Sequence[str] | None = None,
                 tpu: str | None = None) -> tf.distribute.Strategy:
    """The strategy called `name` (one of `STRATEGIES`).

    Args:
      name: "default", "mirrored", "multi_worker" or "tpu".
      devices: "mirrored" only: the devices to mirror over, e.g. ["/gpu:0", "/gpu:1"] or
        logical CPUs ["/cpu:0", "/cpu:1"]; None = all local GPUs.
      tpu: "tpu" only: the TPU's name or address; None = from the environment.
    Raises:
      ValueError: unknown name, arguments the strategy does not take, no or bad TF_CONFIG.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; choose one of {list(STRATEGIES)}.")
    if devices is not None and name != "mirrored":
        raise ValueError(f"devices={list(devices)!r} applies to strategy 'mirrored' only, not "
                         f"{name!r}; remove it or use strategy='mirrored'.")
    if tpu is not None and name != "tpu":
        raise ValueError(f"tpu={tpu!r} applies to strategy 'tpu' only, not {name!r}.")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if devices is not None and (isinstance(devices, str) or not list(devices)):
            raise ValueError(f"devices must be a non-empty list of device names such as "
                             f"['/gpu:0', '/gpu:1'], got {devices!r}.")
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if name == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _check_tf_config() -> None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError("strategy 'multi_worker' reads the cluster from the TF_CONFIG "
                         "environment variable, which is not set; see docs/USAGE.md, "
                         "'Many GPUs, many workers, mixed precision'.")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw!r}.") from None
    if not isinstance(config, dict) or "cluster" not in config or "task" not in config:
        raise ValueError("TF_CONFIG needs 'cluster' (e.g. {\"worker\": [\"host1:port\", "
                         "\"host2:port\"]}) and 'task' (e.g. {\"type\": \"worker\", "
                         f"\"index\": 0}}); got {raw!r}.")


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run's files: always, except on non-chief workers.

    `strategy` defaults to the current one (`tf.distribute.get_strategy()`).
    """
    strategy = strategy or tf.distribute.get_strategy()
    return _is_chief_task(getattr(strategy, "cluster_resolver", None))


def is_chief_process() -> bool:
    """`is_chief` before any strategy exists, from $TF_CONFIG (True without one)."""
    if not os.environ.get("TF_CONFIG"):
        return True
    return _is_chief_task(tf.distribute.cluster_resolver.TFConfigClusterResolver())


def _is_chief_task(resolver) -> bool:
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


def writer_directory(directory: str, strategy: tf.distribute.Strategy | None = None) -> str:
    """`directory` on the chief; `directory/.<task type>_<task id>_tmp` on other workers."""
    strategy = strategy or tf.distribute.get_strategy()
    if is_chief(strategy):
        return directory
    resolver = strategy.cluster_resolver
    return os.path.join(directory, f".{resolver.task_type}_{resolver.task_id}_tmp")


def remove_writer_directory(written: str, directory: str) -> None:
    """Deletes a non-chief worker's private copy `written` of `directory` (no-op if equal)."""
    if written != directory and tf.io.gfile.exists(written):
        tf.io.gfile.rmtree(written)
