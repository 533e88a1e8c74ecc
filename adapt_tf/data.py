"""Input pipelines: tfds datasets as per-step GAN batches, exactly resumable.

One element of `make_dataset(...)` is the real data of one GAN iteration: `batch_size =
n_dis * d_batch` i.i.d. images, float32 NHWC in [-1, 1] (and int32 labels for conditional
models). The train step splits it into n_dis D minibatches by striding (`images[k::n_dis]`).

Datasets (docs/ALGORITHM.md §8):

| name | tfds name, split | test split | images | labels | flip | source |
|---|---|---|---|---|---|---|
| `toy_shapes` (default) | `toy_shapes`, train | test | 32x32 | 12 | no | ours, drawn locally |
| `cifar10` | `cifar10`, train | test | 32x32 | 10 | yes | TFDS catalog |
| `stl10` | `stl10`, unlabelled | unlabelled | 96 -> 48x48 | none | yes | TFDS catalog |
| `tinyimagenet` | `tiny_imagenet`, train | validation | 64x64 | 200 | yes | ours, official archive |

The test split is the reference of the test-set FID at the end of a run (`train.test_eval`):
CIFAR-10 test and Tiny-ImageNet val, as the official code reports it; STL-10 has no held-out
reference there, so its "test" FID is against the unlabelled split again.

Order of examples (exact resume): the stream of images is epochs 0, 1, 2, ... of the split,
epoch e a permutation of the split drawn statelessly from (seed, e); batch number `step` is
images [step * batch_size, (step + 1) * batch_size) of that stream (batches may straddle
epochs), and its random horizontal flips are drawn from (seed, step). So batch `step` is a pure
function of (dataset, seed, step): `make_dataset(..., start_step=s)` yields exactly what an
uninterrupted run yields from step s on, at no cost for s. To make that possible the decoded
split is held in host memory as one uint8 tensor (CIFAR-10 150 MB, STL-10 at 48x48 690 MB,
TinyImageNet 1.2 GB, toy_shapes 37 MB), read and decoded once per `make_dataset` dataset.

Offline first: catalog datasets are never downloaded unless `download=True`. If a dataset is
not prepared, `make_dataset` raises `DatasetNotPreparedError` at once (tfds itself would retry
the download for minutes offline) naming the directory tfds looked in and how to prepare it;
with `download=True`, one connection to the hosts tfds downloads from is tried first
(`ONLINE_PROBE_SECONDS` each), and the same error, saying the machine looks offline, comes if
none answers.
`toy_shapes` is prepared on demand (a few seconds, no network); `tinyimagenet` is prepared
from a local copy of the official archive given as `manual_dir`. Preparation holds a file lock
(`<data_dir>/<tfds name>.lock`): processes preparing the same dataset at once do it once.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import socket
import types
import urllib.parse
from collections.abc import Mapping

import filelock
import tensorflow as tf
import tensorflow_datasets as tfds

# Importing adapt_tf.datasets registers our builders (toy_shapes, tiny_imagenet) with tfds.
from adapt_tf.checks import positive_int
from adapt_tf.datasets import tiny_imagenet

DEFAULT_DATASET = "toy_shapes"

# Salts keep the permutation and flip random streams apart for one user seed.
_PERMUTATION_SALT = 0x5EED
_FLIP_SALT = 0xF11B


class DatasetNotPreparedError(ValueError):
    """The dataset's files are not in the tfds data_dir; the message says how to prepare them."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How adapt_tf reads one dataset.

    Attributes:
      tfds_name: name of the tfds builder.
      split: default split (the paper's training split).
      image_size: default side of the square images fed to the GAN, pixels.
      num_classes: number of labels for conditional models; None when the default split has no
        labels (STL-10 unlabelled), so only unconditional models can use it.
      flip: whether random horizontal flips are on by default (the paper's datasets: yes).
      num_examples: examples in the default split.
      preparation: "download" (TFDS catalog: `tfds build` on a machine with internet),
        "manual" (ours: from the official archive in a manual_dir, or downloaded), or
        "local" (ours: drawn on this machine when first used).
      test_split: the split of the test-set FID's reference (see the module docstring).
    """

    tfds_name: str
    split: str
    image_size: int
    num_classes: int | None
    flip: bool
    num_examples: int
    preparation: str
    test_split: str


DATASETS: Mapping[str, DatasetSpec] = types.MappingProxyType({
    "toy_shapes": DatasetSpec("toy_shapes", "train", 32, 12, False, 12_000, "local", "test"),
    "cifar10": DatasetSpec("cifar10", "train", 32, 10, True, 50_000, "download", "test"),
    # Paper: torchvision Resize(48) of the 96x96 images; here bilinear with antialiasing.
    "stl10": DatasetSpec("stl10", "unlabelled", 48, None, True, 100_000, "download",
                         "unlabelled"),
    "tinyimagenet": DatasetSpec("tiny_imagenet", "train", 64, 200, True, 100_000, "manual",
                                "validation"),
})


def dataset_info(name: str) -> DatasetSpec:
    """The registry entry for `name`; ValueError listing the known names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)} "
                         f"(default {DEFAULT_DATASET!r}).")
    return DATASETS[name]


def make_dataset(name: str, *, batch_size: int, split: str | None = None,
                 image_size: int | None = None, conditional: bool = False,
                 flip: bool | None = None, seed: int = 0, start_step: int = 0,
                 data_dir: str | os.PathLike | None = None,
                 manual_dir: str | os.PathLike | None = None,
                 download: bool = False) -> tf.data.Dataset:
    """Infinite dataset of per-step real batches (see the module docstring for the order).

    Args:
      name: a key of DATASETS.
      batch_size: GLOBAL images per step, n_dis * d_batch. Under tf.distribute pass the dataset
        to `strategy.experimental_distribute_dataset`, which splits every batch over the
        replicas (`SparseGAN` checks that each replica's share is a multiple of n_dis).
      split: tfds split (slicing such as "train[:10%]" works); default the spec's split.
      image_size: side in pixels; default the spec's. Other sizes are resized bilinearly with
        antialiasing (`tf.image.resize(..., antialias=True)`), then rounded to uint8.
      conditional: also yield labels (needs a dataset with labels).
      flip: random horizontal flip with probability 1/2 per image; None = the spec's default.
      seed: non-negative int; with `step`, it fixes the order and the flips.
      start_step: the first element is the batch of this step (0-based): pass the number of
        completed iterations when resuming.
      data_dir: tfds data_dir root; None = tfds' default ($TFDS_DATA_DIR or
        ~/tensorflow_datasets).
      manual_dir: tinyimagenet only: a directory holding tiny-imagenet-200.zip or its extracted
        folder, converted locally (no network) if the dataset is not prepared yet.
      download: let tfds download and prepare a missing catalog dataset (needs internet).

    Returns:
      Elements `images` float32 [batch_size, S, S, 3] in [-1, 1], or `(images, labels)` with
      labels int32 [batch_size] in [0, num_classes) when `conditional`.

    Raises:
      DatasetNotPreparedError: the data is not in data_dir and may not be fetched.
      ValueError: unknown name, bad sizes or seeds, or conditional without labels.
    """
    spec = dataset_info(name)
    _check_arguments(name, spec, batch_size=batch_size, image_size=image_size,
                     conditional=conditional, seed=seed, start_step=start_step,
                     manual_dir=manual_dir)
    builder = _prepared_builder(name, spec, data_dir=data_dir, manual_dir=manual_dir,
                                download=download)
    examples = _decoded_examples(builder, split or spec.split, image_size or spec.image_size)
    ds = _step_batches(examples, batch_size=batch_size, seed=seed, start_step=start_step,
                       flip=spec.flip if flip is None else flip)
    if not conditional:
        ds = ds.map(lambda images, labels: images)
    return _deterministic(ds).prefetch(tf.data.AUTOTUNE)


def _deterministic(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True
    # Shard by element, never by file: every worker must see the whole split to rebuild it.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _check_arguments(name: str, spec: DatasetSpec, *, batch_size: int, image_size: int | None,
                     conditional: bool, seed: int, start_step: int,
                     manual_dir: str | os.PathLike | None) -> None:
    sizes = {"batch_size": batch_size}
    if image_size is not None:
        sizes["image_size"] = image_size
    for label, value in sizes.items():
        positive_int(label, value)
    for label, value in {"seed": seed, "start_step": start_step}.items():
        if not _is_int(value) or not 0 <= value < 2**62:
            raise ValueError(f"{label}={value!r} must be an int in [0, 2**62).")
    if conditional and spec.num_classes is None:
        raise ValueError(f"Dataset {name!r} (split {spec.split!r}) has no labels: pass "
                         "conditional=False, or choose a labelled dataset.")
    if manual_dir is not None and spec.preparation != "manual":
        raise ValueError(f"manual_dir={os.fspath(manual_dir)!r} is only used by datasets "
                         f"prepared from a local archive (tinyimagenet), not {name!r}.")
    if manual_dir is not None and tiny_imagenet.find_local_source(manual_dir) is None:
        raise ValueError(
            f"manual_dir={os.fspath(manual_dir)!r} holds neither {tiny_imagenet.ARCHIVE_NAME} "
            f"nor {tiny_imagenet.FOLDER_NAME}/wnids.txt. "
            f"{tiny_imagenet.MANUAL_INSTRUCTIONS}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _tfds_is_mocked() -> bool:
    """True inside `tfds.testing.mock_data`, which serves random examples without any files."""
    as_dataset = tfds.core.DatasetBuilder.as_dataset
    return getattr(as_dataset, "__module__", "").startswith("tensorflow_datasets.testing")


def _prepared_builder(name: str, spec: DatasetSpec, *, data_dir, manual_dir,
                      download: bool) -> tfds.core.DatasetBuilder:
    """The tfds builder, its data prepared; fails fast rather than download unasked."""
    builder = _builder(spec, data_dir)
    if _tfds_is_mocked() or builder.is_prepared():
        return builder
    if not (spec.preparation == "local" or manual_dir is not None or download):
        raise DatasetNotPreparedError(_not_prepared_message(name, spec, builder))
    if download and manual_dir is None and spec.preparation != "local":
        _check_online(name, spec, builder)
    return _prepare_once(spec, data_dir, manual_dir=manual_dir, download=download)


# tfds downloads a catalog dataset from its GCS mirror or from the dataset's own site.
TFDS_MIRROR_HOST = "storage.googleapis.com"
ONLINE_PROBE_SECONDS = 10.0


def _check_online(name: str, spec: DatasetSpec, builder: tfds.core.DatasetBuilder) -> None:
    """Fails fast (one HTTPS connection attempt per host, `ONLINE_PROBE_SECONDS` each) when
    neither host tfds would download from can be reached, instead of tfds retrying for
    minutes offline: `DatasetNotPreparedError` naming the hosts and how to prepare the data."""
    hosts = [TFDS_MIRROR_HOST, urllib.parse.urlparse(builder.info.homepage or "").hostname]
    problem = None
    for host in filter(None, hosts):
        try:
            socket.create_connection((host, 443), timeout=ONLINE_PROBE_SECONDS).close()
            return
        except OSError as error:
            problem = f"{host}: {error}"
    raise DatasetNotPreparedError(
        f"download=True, but no host to download {name!r} from could be reached within "
        f"{ONLINE_PROBE_SECONDS:g} s ({problem}); this machine looks offline. "
        + _not_prepared_message(name, spec, builder))


def _builder(spec: DatasetSpec, data_dir) -> tfds.core.DatasetBuilder:
    return tfds.builder(spec.tfds_name, data_dir=os.fspath(data_dir) if data_dir else None)


def _prepare_once(spec: DatasetSpec, data_dir, *, manual_dir,
                  download: bool) -> tfds.core.DatasetBuilder:
    """Prepares the dataset under a file lock beside it, so that processes preparing it at the
    same time do it once: the others wait, then reuse the complete copy (tfds alone fails
    renaming its incomplete folder onto the one another process finished)."""
    root = os.fspath(_builder(spec, data_dir).data_dir_root)
    os.makedirs(root, exist_ok=True)
    with filelock.FileLock(os.path.join(root, f"{spec.tfds_name}.lock")):
        builder = _builder(spec, data_dir)  # Sees a copy another process finished meanwhile.
        if not builder.is_prepared():
            config = tfds.download.DownloadConfig(manual_dir=manual_dir,
                                                  try_download_gcs=download)
            builder.download_and_prepare(download_config=config)
    return builder


def _not_prepared_message(name: str, spec: DatasetSpec, builder) -> str:
    root = os.fspath(builder.data_dir_root)
    tfds_name = spec.tfds_name
    head = (f"Dataset {name!r} (tfds {tfds_name!r} {builder.version}) is not prepared: tfds "
            f"looked in {builder.data_dir} and found no dataset_info.json. adapt_tf does not "
            "download unasked (offline, tfds would retry for minutes). To prepare it:\n")
    if spec.preparation == "manual":
        how = (f"  - get {tiny_imagenet.URL} on any machine, put the zip (or its extracted "
               f"{tiny_imagenet.FOLDER_NAME}/ folder) in a directory here and pass "
               "manual_dir=<that directory>: it is converted locally, no network; or\n"
               f"  - run `tfds build {tfds_name} --imports=adapt_tf.datasets "
               f"--manual_dir=<that directory> --data_dir={root}`;\n")
    else:
        how = (f"  - on a machine with internet access run `tfds build {tfds_name} "
               f"--data_dir=<dir>` (or in Python: tfds.builder({tfds_name!r}, "
               "data_dir=<dir>).download_and_prepare()), then copy <dir>/"
               f"{tfds_name} to {root}/{tfds_name} here;\n")
    return (head + how
            + "  - data already prepared elsewhere on this machine: pass data_dir=<its root> (the "
              f"folder that contains {tfds_name}/; CLI: --gin_bindings=\"train.data_dir = "
              "'<its root>'\"), or set TFDS_DATA_DIR;\n"
              "  - with internet access here: pass download=True (CLI: "
              "--gin_bindings=\"train.download = True\").")


def _decoded_examples(builder: tfds.core.DatasetBuilder, split: str,
                      size: int) -> tf.data.Dataset:
    """(image uint8 [size, size, 3], label int32) pairs in the split's fixed tfds order.

    The label is -1 where the split has none (STL-10 unlabelled).
    """
    read_config = tfds.ReadConfig(try_autocache=False)  # The whole split is cached once below.
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)

    def decode(example):
        image = example["image"]
        if image.shape[-1] != 3:
            raise ValueError(f"{builder.name}: images have shape {image.shape}, need RGB.")
        if tuple(image.shape[:2]) != (size, size):
            image = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        label = tf.cast(example["label"], tf.int32) if "label" in example else tf.constant(-1)
        return image, label

    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _step_batches(examples: tf.data.Dataset, *, batch_size: int, seed: int, start_step: int,
                  flip: bool) -> tf.data.Dataset:
    """(images float32 [batch_size, S, S, 3] in [-1, 1], labels int32) for steps start_step..."""
    n = _cardinality(examples)
    # One element: the whole split; cached, so repeat() re-serves it without a copy.
    split = examples.batch(n, drop_remainder=True).cache().repeat()
    steps = tf.data.Dataset.counter(start_step)

    def step_batch(whole, step):
        images, labels = whole
        index = _permuted_indices(step, batch_size=batch_size, n=n, seed=seed)
        batch = tf.cast(tf.gather(images, index), tf.float32) / 127.5 - 1.0
        if flip:
            batch = _random_flip(batch, step, seed=seed)
        return batch, tf.gather(labels, index)

    return tf.data.Dataset.zip(split, steps).map(
        step_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _cardinality(examples: tf.data.Dataset) -> int:
    n = int(examples.cardinality())
    if n < 0:
        n = int(examples.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))
    if n == 0:
        raise ValueError("The requested split is empty; choose a split with examples.")
    return n


def _permuted_indices(step: tf.Tensor, *, batch_size: int, n: int, seed: int) -> tf.Tensor:
    """int64 [batch_size]: example indices of batch `step` in the epoch-permuted stream."""
    position = step * batch_size + tf.range(batch_size, dtype=tf.int64)
    epoch, within = position // n, position % n
    seeds = tf.stack([tf.fill([batch_size], tf.constant(_PERMUTATION_SALT, tf.int64)),
                      tf.fill([batch_size], tf.constant(seed, tf.int64)), epoch], axis=1)
    # The raw op: tf.random.experimental.index_shuffle pads [n, 2] seeds along the wrong axis
    # (TF 2.21), and a batch may straddle two epochs, so each position carries its own seed.
    return tf.raw_ops.RandomIndexShuffle(index=within, seed=seeds,
                                         max_index=tf.constant(n - 1, tf.int64), rounds=4)


def _random_flip(images: tf.Tensor, step: tf.Tensor, *, seed: int) -> tf.Tensor:
    """Mirrors each image left-right with probability 1/2, drawn from (seed, step)."""
    key = tf.random.experimental.stateless_fold_in(
        tf.constant([seed, _FLIP_SALT], tf.int64), step)
    mirror = tf.random.stateless_uniform([tf.shape(images)[0]], seed=key) < 0.5
    return tf.where(mirror[:, None, None, None], tf.reverse(images, axis=[2]), images)
