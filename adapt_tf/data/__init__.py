"""Input pipelines: tfds datasets as per-step GAN batches, exactly resumable.

One element of `make_dataset(...)` is the real data of one GAN iteration: `batch_size =
n_dis * d_batch` i.i.d. images, float32 NHWC in [-1, 1] (and int32 labels for conditional
models). The train step splits it into n_dis D minibatches by striding (`images[k::n_dis]`).

Datasets (docs/ALGORITHM.md §8): the names below, or a URI:

* `folder:PATH`: a directory of images (`adapt_tf.data.image_folder`: class sub-folders = labels in
  sorted folder-name order, a flat folder = unlabelled). Its files are STREAMED: the file list
  (not the images) is permuted as below and each batch's files are read and decoded when the
  batch is built, so host memory holds a few batches, whatever the folder's size. Images are
  converted to RGB, centre-cropped to their central square when not square, resized
  (bilinear, antialiased) to the image size and scaled to [-1, 1]; no flips by default.
  Its test split is None (a folder has no held-out part).
* `tfds:NAME[/CONFIG][:SPLIT]`: any tfds image dataset prepared in the tfds data_dir (never
  downloaded). The image feature is the one called "image" if there is one, else the first
  `tfds.features.Image` in sorted key order; the label, likewise "label" or the first
  `ClassLabel` (none: unlabelled); both are logged. SPLIT defaults to "train" (else the first
  split), the test split is "test", else "validation", else None. Decoded as folders are, and
  held in host memory like the names below; no flips by default.
* in Python, uint8 arrays or a tf.data.Dataset of examples: see "Datasets given in Python" at
  the end of this module for what they must hold and what resuming guarantees.

| name | tfds name, split | test split | images | labels | flip | source |
|---|---|---|---|---|---|---|
| `toy_shapes` (default) | `toy_shapes`, train | test | 32x32 | 12 | no | ours, drawn locally |
| `cifar10` | `cifar10`, train | test | 32x32 | 10 | yes | TFDS catalog |
| `stl10` | `stl10`, unlabelled | unlabelled | 96 -> 48x48 | none | yes | TFDS catalog |
| `tinyimagenet` | `tiny_imagenet`, train | validation | 64x64 | 200 | yes | ours, official zip |

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

import contextlib
import dataclasses
import hashlib
import json
import numbers
import os
import socket
import time
import types
import urllib.parse
import weakref
from collections.abc import Callable, Mapping
from typing import Union

import filelock
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from adapt_tf.data import image_folder
# Importing adapt_tf.data.datasets registers our builders (toy_shapes, tiny_imagenet) with tfds.
from adapt_tf.checks import positive_int
from adapt_tf.data.datasets import tiny_imagenet, toy_shapes

DEFAULT_DATASET = "toy_shapes"
FOLDER_PREFIX, TFDS_PREFIX = "folder:", "tfds:"
STREAM_PREFETCH = 2  # batches a streamed source decodes ahead of the training step
# What `dataset` may be: a name or URI; in Python also arrays or a tf.data.Dataset (module
# docstring, "Datasets given in Python").
Source = Union[str, np.ndarray, tuple, tf.data.Dataset]

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
      test_split: the split of the test-set FID's reference (see the module docstring), or
        None when the dataset has no held-out part (folders; tfds datasets without one).
      source: "tfds", "folder", "arrays" or "tf.data" (the last two given in Python).
      root: a folder's absolute path; None otherwise.
      class_names: the class names in label order: a labelled folder's class folders, a tfds
        `ClassLabel`'s names, toy_shapes' and CIFAR-10's; None otherwise (Tiny-ImageNet's
        wnids are known only once prepared).
      image_key, label_key: the tfds features read (label_key None: unlabelled).

    `image_size` is None where the images have no common size (a tfds feature of variable
    shape); a folder's is the shorter side of its first file. `tfds_name` is None for folders.
    """

    tfds_name: str | None
    split: str
    image_size: int | None
    num_classes: int | None
    flip: bool
    num_examples: int
    preparation: str
    test_split: str | None
    source: str = "tfds"
    root: str | None = None
    class_names: tuple[str, ...] | None = None
    image_key: str = "image"
    label_key: str | None = "label"


DATASETS: Mapping[str, DatasetSpec] = types.MappingProxyType({
    "toy_shapes": DatasetSpec("toy_shapes", "train", 32, 12, False, 12_000, "local", "test",
                              class_names=toy_shapes.CLASS_NAMES),
    "cifar10": DatasetSpec("cifar10", "train", 32, 10, True, 50_000, "download", "test",
                           class_names=("airplane", "automobile", "bird", "cat", "deer", "dog",
                                        "frog", "horse", "ship", "truck")),
    # Paper: torchvision Resize(48) of the 96x96 images; here bilinear with antialiasing.
    "stl10": DatasetSpec("stl10", "unlabelled", 48, None, True, 100_000, "download",
                         "unlabelled"),
    "tinyimagenet": DatasetSpec("tiny_imagenet", "train", 64, 200, True, 100_000, "manual",
                                "validation"),
})


def dataset_info(dataset: Source, *, data_dir: str | os.PathLike | None = None) -> DatasetSpec:
    """The `DatasetSpec` of a name of DATASETS, a `folder:PATH` or a `tfds:NAME[/CONFIG][:SPLIT]`
    (module docstring). A folder is scanned (`image_folder.scan`: every file listed and its
    first bytes checked, no image decoded but the first); a tfds URI must be prepared in
    `data_dir` (default tfds' own).

    Raises:
      ValueError: unknown name, or a folder or tfds dataset that cannot be used (the message
        names the folder, file or feature and the fix).
      DatasetNotPreparedError: a tfds URI whose data is not in `data_dir`.
    """
    if isinstance(dataset, str) and dataset.startswith(FOLDER_PREFIX):
        return _folder_spec(_scanned(dataset))
    if isinstance(dataset, str) and dataset.startswith(TFDS_PREFIX):
        return _tfds_spec(dataset, _uri_builder(dataset, data_dir))
    if isinstance(dataset, tf.data.Dataset):
        return _stream_spec(dataset)
    if isinstance(dataset, (np.ndarray, tuple, list)):
        return _array_spec(*_arrays(dataset))
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; choose one of {sorted(DATASETS)} "
                         f"(default {DEFAULT_DATASET!r}), 'folder:<directory of images>' or "
                         "'tfds:<name>[/<config>][:<split>]'.")
    return DATASETS[dataset]


def fingerprint(dataset: Source, *, data_dir: str | os.PathLike | None = None) -> str:
    """A stable digest (64 hex) of the data `dataset` names: a folder's file list with sizes,
    mtimes and class names (`image_folder.fingerprint`); for tfds (names and URIs) the builder's
    name, config, version and split; for arrays their shapes and bytes. It changes when the data
    a run reads changes, so a run records it and refuses to resume on other data
    (`train_lib.RunSpec.dataset_fingerprint`). Raises as `dataset_info`, and ValueError for a
    tf.data.Dataset (it cannot be fingerprinted without reading all of it)."""
    spec = dataset_info(dataset, data_dir=data_dir)
    if spec.source == "folder":
        return image_folder.fingerprint(_scanned(dataset))
    if spec.source == "tf.data":
        raise ValueError("A tf.data.Dataset has no fingerprint; leave dataset_fingerprint None "
                         "(a resumed run then trusts that the dataset is the same).")
    if spec.source == "arrays":
        digest = hashlib.sha256()
        for array in _arrays(dataset):
            if array is not None:
                digest.update(f"{array.dtype}{array.shape}".encode())
                digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()
    builder = _builder(spec, data_dir)
    record = {"dataset": dataset, "tfds": builder.info.full_name, "split": spec.split,
              "image": spec.image_key, "label": spec.label_key}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def dataset_name(dataset: Source) -> str:
    """`dataset` if it is a name or URI; "<ndarray>", "<tuple>", "<...Dataset>" for data given
    in Python (for logs and the evaluation, which read data by name)."""
    return dataset if isinstance(dataset, str) else f"<{type(dataset).__name__}>"


class DamagedImageError(ValueError):
    """Files of a folder dataset whose headers are valid cannot be decoded; the message names
    them and the fix."""


@contextlib.contextmanager
def naming_damaged_images(dataset: Source, *, outcome: Callable[[], str] = str):
    """Runs the body; when TensorFlow fails to read or decode an image of the folder `dataset`
    in it (its error names no file), raises one `DamagedImageError` naming every such file
    (`image_folder.undecodable`, which decodes the folder once, on this path only), with
    `outcome()` (e.g. what was saved) appended. Other errors, and errors of other datasets
    or when every file decodes, pass unchanged."""
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        if not (isinstance(dataset, str) and dataset.startswith(FOLDER_PREFIX)):
            raise
        folder = _scanned(dataset)
        started = time.monotonic()
        damaged = image_folder.undecodable(folder)
        logging.info("Decoded the %d files of %s in %.1f s to find the damaged ones: %d.",
                     len(folder.files), folder.root, time.monotonic() - started, len(damaged))
        if not damaged:
            raise
        named = "; ".join(f"{path!r} ({reason})" for path, reason in damaged[:5])
        more = f"; and {len(damaged) - 5} more" if len(damaged) > 5 else ""
        raise DamagedImageError(
            f"{len(damaged)} image file(s) of folder {folder.root!r} cannot be read or decoded "
            f"past a valid header: {named}{more}. Replace each with an intact copy or remove "
            f"it (a damaged image is refused, never skipped).{outcome()}") from None


def _scanned(uri: str) -> image_folder.ImageFolder:
    path = uri[len(FOLDER_PREFIX):]
    if not path:
        raise ValueError(f"Dataset {uri!r} names no folder; pass 'folder:<directory of images>'.")
    return image_folder.scan(os.path.expanduser(path))


def _folder_spec(folder: image_folder.ImageFolder) -> DatasetSpec:
    with naming_damaged_images(FOLDER_PREFIX + folder.root):
        first = tf.io.decode_image(tf.io.read_file(os.path.join(folder.root, folder.files[0])),
                                   expand_animations=False)
    num_classes = None if folder.class_names is None else len(folder.class_names)
    return DatasetSpec(None, "train", int(min(first.shape[:2])), num_classes, False,
                       len(folder.files), "local", None, source="folder", root=folder.root,
                       class_names=folder.class_names, label_key=None)


def _parse_tfds_uri(uri: str) -> tuple[str, str | None]:
    """("NAME[/CONFIG]", SPLIT or None) of "tfds:NAME[/CONFIG][:SPLIT]"."""
    name, _, split = uri[len(TFDS_PREFIX):].partition(":")
    if not name or name.count("/") > 1 or (_ and not split):
        raise ValueError(f"Dataset {uri!r} is not 'tfds:<name>[/<config>][:<split>]', e.g. "
                         "'tfds:mnist' or 'tfds:cifar10:train[:90%]'.")
    return name, split or None


def _uri_builder(uri: str, data_dir) -> tfds.core.DatasetBuilder:
    """The prepared builder of a tfds URI; never downloads."""
    name, _ = _parse_tfds_uri(uri)
    try:
        builder = tfds.builder(name, data_dir=os.fspath(data_dir) if data_dir else None)
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as error:
        raise ValueError(f"Dataset {uri!r}: tfds knows no dataset {name!r} and found none "
                         f"prepared in the data_dir ({' '.join(str(error).split())[:300]}).") \
            from None
    if not (_tfds_is_mocked() or builder.is_prepared()):
        raise DatasetNotPreparedError(
            f"Dataset {uri!r} (tfds {name!r} {builder.version}) is not prepared: tfds looked in "
            f"{builder.data_dir} and found no dataset_info.json; adapt_tf never downloads a "
            f"tfds: URI. Run `tfds build {name} --data_dir=<dir>` (where there is internet) "
            "and pass that <dir> as data_dir (CLI: --gin_bindings=\"train.data_dir = '<dir>'\") "
            "or set TFDS_DATA_DIR.")
    return builder


def _tfds_spec(uri: str, builder: tfds.core.DatasetBuilder) -> DatasetSpec:
    """The spec of a prepared tfds URI: its image and label features and its splits."""
    features, splits = builder.info.features, builder.info.splits
    image_key = _feature_key(features, tfds.features.Image, "image")
    if image_key is None:
        raise ValueError(f"Dataset {uri!r} has no image feature (features: "
                         f"{sorted(features.keys())}); choose a tfds image dataset.")
    label_key = _feature_key(features, tfds.features.ClassLabel, "label")
    split = _parse_tfds_uri(uri)[1] or (sorted(splits)[0] if splits and "train" not in splits
                                        else "train")
    test = next((name for name in ("test", "validation") if name in splits and name != split),
                None)
    height, width = features[image_key].shape[:2]
    labels = features[label_key] if label_key else None
    logging.info("Dataset %s: image feature %r, label feature %r, split %r, test split %r.",
                 uri, image_key, label_key, split, test)
    return DatasetSpec(
        _parse_tfds_uri(uri)[0], split, min(height, width) if height and width else None,
        labels.num_classes if labels else None, False, _split_size(uri, builder, split),
        "download", test, image_key=image_key, label_key=label_key,
        class_names=tuple(labels.names) if labels else None)


def _feature_key(features, kind: type, preferred: str) -> str | None:
    """`preferred` if it is a top-level feature of `kind`, else the first such key, or None."""
    keys = sorted(key for key, feature in features.items() if isinstance(feature, kind))
    return preferred if preferred in keys else (keys[0] if keys else None)


def _split_size(uri: str, builder: tfds.core.DatasetBuilder, split: str) -> int:
    if _tfds_is_mocked() and not builder.info.splits:  # mock_data without split metadata
        return _cardinality(builder.as_dataset(split=split))
    try:
        return int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError) as error:
        raise ValueError(f"Dataset {uri!r} has no split {split!r} (splits: "
                         f"{sorted(builder.info.splits)}): {error}") from None


def make_dataset(dataset: Source, *, batch_size: int, split: str | None = None,
                 image_size: int | None = None, conditional: bool = False,
                 flip: bool | None = None, seed: int = 0, start_step: int = 0,
                 data_dir: str | os.PathLike | None = None,
                 manual_dir: str | os.PathLike | None = None,
                 download: bool = False) -> tf.data.Dataset:
    """Infinite dataset of per-step real batches (see the module docstring for the order).

    Args:
      dataset: a key of DATASETS, 'folder:PATH', 'tfds:NAME[/CONFIG][:SPLIT]', arrays or a
        tf.data.Dataset (module docstring; folders and Datasets are streamed).
      batch_size: GLOBAL images per step, n_dis * d_batch. Under tf.distribute pass the dataset
        to `strategy.experimental_distribute_dataset`, which splits every batch over the
        replicas (`SparseGAN` checks that each replica's share is a multiple of n_dis).
      split: tfds split ("train[:10%]" works); default the spec's. A folder has only "train".
      image_size: side in pixels; default the spec's. Images are made RGB, centre-cropped to a
        square and resized (bilinear, antialiased) to it (`image_folder.square_rgb`).
      conditional: also yield labels (needs a dataset with labels).
      flip: random horizontal flip with probability 1/2 per image; None = the spec's default.
      seed: non-negative int; with `step`, it fixes the order and the flips.
      start_step: the first element is the batch of this step (0-based): pass the number of
        completed iterations when resuming.
      data_dir: tfds data_dir root; None: $TFDS_DATA_DIR or ~/tensorflow_datasets.
      manual_dir: tinyimagenet only: a directory holding tiny-imagenet-200.zip (or extracted).
      download: let tfds download and prepare a missing catalog dataset (needs internet).

    Returns:
      Elements `images` float32 [batch_size, S, S, 3] in [-1, 1], or `(images, labels)` with
      labels int32 [batch_size] in [0, num_classes) when `conditional`.

    Raises:
      DatasetNotPreparedError: the data is not in data_dir and may not be fetched.
      ValueError: unknown name, bad sizes or seeds, conditional without labels, fewer examples
        than one batch, or a folder that cannot be used (`check_dataset`).
    """
    spec = check_dataset(dataset, batch_size=batch_size, conditional=conditional,
                         data_dir=data_dir)
    _check_arguments(dataset, spec, image_size=image_size, split=split, seed=seed,
                     start_step=start_step, manual_dir=manual_dir)
    order, size = dict(batch_size=batch_size, seed=seed, start_step=start_step,
                       flip=spec.flip if flip is None else flip), image_size or spec.image_size
    if spec.source == "tfds":
        builder = _prepared_builder(dataset, spec, data_dir=data_dir, manual_dir=manual_dir,
                                    download=download)
        ds = _step_batches(_decoded_examples(builder, spec, split or spec.split, size), **order)
    else:
        ds = _python_or_folder_batches(dataset, spec, size=size, order=order)
    return _ready(ds, spec, conditional=conditional)


def _ready(ds: tf.data.Dataset, spec: DatasetSpec, *, conditional: bool) -> tf.data.Dataset:
    """`ds` without its labels unless `conditional`, in deterministic order, prefetched.
    Streamed sources keep a fixed 2 batches ready: tf.data's autotuned buffer would grow with
    the host's RAM, not with what the training step needs."""
    if not conditional:
        ds = ds.map(lambda images, labels: images)
    streamed = spec.source in ("folder", "tf.data")
    return _deterministic(ds).prefetch(STREAM_PREFETCH if streamed else tf.data.AUTOTUNE)


def _python_or_folder_batches(dataset: Source, spec: DatasetSpec, *, size: int,
                              order: dict) -> tf.data.Dataset:
    if spec.source == "folder":
        return _folder_batches(_scanned(dataset), size=size, **order)
    if spec.source == "tf.data":
        return _stream_batches(dataset, size=size, **order)
    return _step_batches(_array_examples(*_arrays(dataset), size=size), **order)


def _deterministic(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True
    # Shard by element, never by file: every worker must see the whole split to rebuild it.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def check_dataset(dataset: Source, *, batch_size: int, conditional: bool,
                  data_dir: str | os.PathLike | None = None) -> DatasetSpec:
    """`dataset_info(dataset)` after checking that it serves batches of `batch_size` (it holds
    at least one batch of examples) with labels if `conditional`; ValueError otherwise. A run
    calls it before writing anything (`train_lib.check_arguments`)."""
    positive_int("batch_size", batch_size)
    spec = dataset_info(dataset, data_dir=data_dir)
    if conditional and spec.num_classes is None:
        raise ValueError(f"Dataset {dataset!r} (split {spec.split!r}) has no labels: pass "
                         "conditional=False (an unconditional architecture), or choose a "
                         "labelled dataset (a folder of class sub-folders).")
    if spec.num_examples < batch_size:
        raise ValueError(f"Dataset {dataset!r} holds {spec.num_examples} images, fewer than one "
                         f"batch of {batch_size} (n_dis * d_batch_size): add images or lower "
                         "the batch size.")
    return spec


def _check_arguments(name: Source, spec: DatasetSpec, *, image_size: int | None,
                     split: str | None, seed: int, start_step: int,
                     manual_dir: str | os.PathLike | None) -> None:
    if image_size is not None:
        positive_int("image_size", image_size)
    elif spec.image_size is None:
        raise ValueError(f"Dataset {name!r} has images of varying sizes: pass image_size.")
    for label, value in {"seed": seed, "start_step": start_step}.items():
        if not _is_int(value) or not 0 <= value < 2**62:
            raise ValueError(f"{label}={value!r} must be an int in [0, 2**62).")
    if spec.source != "tfds" and split not in (None, spec.split):
        raise ValueError(f"split={split!r}: a {spec.source} dataset has the one split "
                         f"{spec.split!r}.")
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
               f"  - run `tfds build {tfds_name} --imports=adapt_tf.data.datasets "
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


def _decoded_examples(builder: tfds.core.DatasetBuilder, spec: DatasetSpec, split: str,
                      size: int) -> tf.data.Dataset:
    """(image uint8 [size, size, 3], label int32) pairs in the split's fixed tfds order, the
    images made square RGB as folders' are (`image_folder.square_rgb`).

    The label is -1 where the split has none (STL-10 unlabelled, unlabelled tfds URIs).
    """
    read_config = tfds.ReadConfig(try_autocache=False)  # The whole split is cached once below.
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)

    def decode(example):
        image = image_folder.square_rgb(example[spec.image_key], size)
        label = tf.cast(example[spec.label_key], tf.int32) \
            if spec.label_key in example else tf.constant(-1)
        return image, label

    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _folder_batches(folder: image_folder.ImageFolder, *, batch_size: int, size: int,
                    seed: int, start_step: int, flip: bool) -> tf.data.Dataset:
    """(images float32 [batch_size, S, S, 3] in [-1, 1], labels int32 (-1: unlabelled)) for
    steps start_step..., in the order of `_step_batches`, reading only each batch's files."""
    logging.info("Folder %s: %d images, %s, %d other entries skipped; streamed, each image "
                 "made RGB, centre-cropped to its central square and resized (bilinear, "
                 "antialiased) to %dx%d.", folder.root, len(folder.files),
                 f"classes {list(folder.class_names)}" if folder.class_names else "unlabelled",
                 folder.skipped, size, size)
    paths = tf.constant([os.path.join(folder.root, name) for name in folder.files])
    labels = tf.constant(folder.labels or [-1] * len(folder.files), tf.int32)

    def step_files(step):
        index = _permuted_indices(step, batch_size=batch_size, n=len(folder.files), seed=seed)
        return tf.gather(paths, index), tf.gather(labels, index)

    def load(path, label):
        return image_folder.decode(tf.io.read_file(path), size), label

    images = (tf.data.Dataset.counter(start_step).map(step_files).unbatch()
              .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
              .batch(batch_size, drop_remainder=True))
    return tf.data.Dataset.zip(images, tf.data.Dataset.counter(start_step)).map(
        lambda batch, step: _scaled(batch, step, seed=seed, flip=flip),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _scaled(batch, step: tf.Tensor, *, seed: int, flip: bool):
    """(uint8 images, labels) of `step` -> (float32 images in [-1, 1], flipped if `flip`,
    labels)."""
    images, labels = batch
    images = tf.cast(images, tf.float32) / 127.5 - 1.0
    return (_random_flip(images, step, seed=seed) if flip else images), labels


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
        return _scaled((tf.gather(images, index), tf.gather(labels, index)), step, seed=seed,
                       flip=flip)

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


# ---------------------------------------------------------------- datasets given in Python
# Arrays: `images` uint8 [N, H, W, C] (C 1 to 4, values 0..255), or `(images, labels)` with
# labels integer [N] in [0, K): K = max(labels) + 1 classes. Held in memory and ordered as the
# tfds datasets are: batch `step` is a pure function of (arrays, seed, step), exact resume.
# tf.data.Dataset: a finite dataset of EXAMPLES, each `image` uint8 [H, W, C] (C 1 to 4) or
# `(image, label)` with an integer scalar label in [0, K). It is read once first to count the
# examples and the classes (K = max label + 1), then streamed in its own order, epoch after
# epoch, batched by the run. Resuming at step s skips the first s * batch_size examples of
# that stream (reading them): exact if the dataset yields the same sequence every time it is
# iterated (deterministic ops; a shuffle needs a seed and reshuffle_each_iteration=False, since
# tf.data reshuffles at every new iterator). Replicas get their parts of each global batch.

_STREAM_SPECS: "weakref.WeakKeyDictionary[tf.data.Dataset, DatasetSpec]" = \
    weakref.WeakKeyDictionary()


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """(images uint8 [N, H, W, C], labels int32 [N] or None) of arrays given in Python."""
    images, labels = (dataset, None) if isinstance(dataset, np.ndarray) else (
        tuple(dataset) if len(dataset) == 2 else (None, None))
    images = np.asarray(images) if images is not None else None
    if images is None or images.dtype != np.uint8 or images.ndim != 4 \
            or not 1 <= images.shape[-1] <= 4:
        raise ValueError(
            "Arrays given as a dataset must be images uint8 [N, H, W, C] with C in 1..4, or "
            "(images, labels) with labels integer [N]; got "
            f"{getattr(images, 'dtype', type(dataset).__name__)} "
            f"{getattr(images, 'shape', '')}. Convert with np.asarray(x, np.uint8).")
    if labels is None:
        return images, None
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != images.shape[:1] \
            or (labels.size and labels.min() < 0):
        raise ValueError(f"labels must be non-negative integers [N={len(images)}], got "
                         f"{labels.dtype} {labels.shape}.")
    return images, labels.astype(np.int32)


def _array_spec(images: np.ndarray, labels: np.ndarray | None) -> DatasetSpec:
    num_classes = None if labels is None or not labels.size else int(labels.max()) + 1
    return DatasetSpec(None, "train", int(min(images.shape[1:3])), num_classes, False,
                       len(images), "local", None, source="arrays",
                       label_key=None if labels is None else "label")


def _array_examples(images: np.ndarray, labels: np.ndarray | None, *,
                    size: int) -> tf.data.Dataset:
    labels = np.full(len(images), -1, np.int32) if labels is None else labels
    return tf.data.Dataset.from_tensor_slices((images, labels)).map(
        lambda image, label: (image_folder.square_rgb(image, size), label))


def _stream_spec(dataset: tf.data.Dataset) -> DatasetSpec:
    """The spec of a tf.data.Dataset of examples, read once (and kept while it lives)."""
    if dataset not in _STREAM_SPECS:
        image, labelled = _example_spec(dataset)
        count, low, high = _count_and_label_range(dataset, labelled)
        if labelled and count and low < 0:
            raise ValueError(f"The tf.data.Dataset's labels must be >= 0; one is {low}.")
        height, width = image.shape[:2]
        _STREAM_SPECS[dataset] = DatasetSpec(
            None, "train", min(height, width) if height and width else None,
            high + 1 if labelled and count else None, False, count, "local", None,
            source="tf.data", label_key="label" if labelled else None)
    return _STREAM_SPECS[dataset]


def _count_and_label_range(dataset: tf.data.Dataset, labelled: bool) -> tuple[int, int, int]:
    """(examples, smallest label, largest label) in one pass (labels 0, 0 if unlabelled)."""
    def add(state, example):
        label = tf.cast(example[1], tf.int64) if labelled else tf.constant(0, tf.int64)
        return state[0] + 1, tf.minimum(state[1], label), tf.maximum(state[2], label)

    start = (tf.constant(0, tf.int64), tf.constant(2**62, tf.int64),
             tf.constant(-2**62, tf.int64))
    count, low, high = dataset.reduce(start, add)
    return int(count), int(low), int(high)


def _example_spec(dataset: tf.data.Dataset) -> tuple[tf.TensorSpec, bool]:
    """(the image's spec, whether examples carry labels); ValueError unless the elements are
    `image` uint8 [H, W, C] or `(image, integer label)`."""
    element = dataset.element_spec
    parts = element if isinstance(element, tuple) else (element,)
    image = parts[0]
    good = (len(parts) in (1, 2) and isinstance(image, tf.TensorSpec)
            and image.dtype == tf.uint8 and image.shape.rank == 3
            and image.shape[-1] in (1, 2, 3, 4)
            and (len(parts) == 1 or (isinstance(parts[1], tf.TensorSpec)
                                     and parts[1].dtype.is_integer and parts[1].shape.rank == 0)))
    if not good:
        raise ValueError(f"A tf.data.Dataset given as a dataset must yield examples `image` "
                         f"uint8 [H, W, C] (C 1..4) or `(image, label)` with an integer scalar "
                         f"label (unbatched); it yields {element}.")
    return image, len(parts) == 2


def _stream_batches(source: tf.data.Dataset, *, batch_size: int, size: int, seed: int,
                    start_step: int, flip: bool) -> tf.data.Dataset:
    """The examples of `source` in order, repeated, from example start_step * batch_size on,
    as (images float32 [batch_size, S, S, 3] in [-1, 1], labels int32 (-1: unlabelled))."""
    def example(image, label=None):
        return image_folder.square_rgb(image, size), (
            tf.constant(-1) if label is None else tf.cast(label, tf.int32))

    batches = (source.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
               .repeat().skip(start_step * batch_size).batch(batch_size, drop_remainder=True))
    return tf.data.Dataset.zip(batches, tf.data.Dataset.counter(start_step)).map(
        lambda batch, step: _scaled(batch, step, seed=seed, flip=flip))
