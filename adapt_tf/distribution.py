"""A `tf.distribute` strategy from a name, for the CLI and gin.

| name | strategy |
|---|---|
| default | no distribution (one device) |
| mirrored | `MirroredStrategy` on all local GPUs, or on `devices` |
| multi_worker | `MultiWorkerMirroredStrategy` from the `TF_CONFIG` environment variable |
| tpu | `TPUStrategy` on the TPU named by `tpu` (or the one of the environment) |

Batch sizes in adapt_tf's configs are *global*: a step of `n_dis * d_batch` real images and a
generator batch of `g_batch_size` are split evenly over the replicas, so a config reproduces
the same training whatever the number of devices (each replica draws its slice of the global
z from stateless seeds).
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import tensorflow as tf

__all__ = ["STRATEGIES", "get_strategy"]

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def get_strategy(name: str = "default", *, devices: Sequence[str] | None = None,
                 tpu: str | None = None) -> tf.distribute.Strategy:
    """The strategy called `name` (one of `STRATEGIES`)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multi_worker' reads the cluster from the TF_CONFIG "
                             "environment variable, which is not set; see the README's "
                             "'Many GPUs, many workers' section.")
        json.loads(os.environ["TF_CONFIG"])  # a clear JSON error beats a cryptic one later
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}; choose one of {list(STRATEGIES)}.")
