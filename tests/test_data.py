"""Tests for adapt_tf.data and the builders in adapt_tf.data.datasets (offline: tfds mock data and
data generated here)."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from adapt_tf import data
from adapt_tf.data import image_folder
from adapt_tf.data.datasets import toy_shapes
from image_data import COLOURS, class_folder, png, store_tfds

MOCK_EXAMPLES = 20


def _batches(ds: tf.data.Dataset, count: int) -> list:
    return list(ds.take(count).as_numpy_iterator())


def _as_uint8(images: np.ndarray) -> np.ndarray:
    """Inverse of the pipeline's uint8 / 127.5 - 1; asserts the values were such a grid."""
    scaled = (images + 1.0) * 127.5
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-3)
    return np.round(scaled).astype(np.uint8)


def _mock_raw_images(name: str, split: str) -> list[bytes]:
    raw = tfds.builder(name).as_dataset(split=split, shuffle_files=False)
    return [example["image"].tobytes() for example in raw.as_numpy_iterator()]


def test_registry_and_unknown_name():
    assert data.DEFAULT_DATASET == "toy_shapes"
    assert set(data.DATASETS) == {"toy_shapes", "cifar10", "stl10", "tinyimagenet"}
    stl = data.dataset_info("stl10")
    assert (stl.tfds_name, stl.split, stl.image_size, stl.num_classes, stl.flip) == (
        "stl10", "unlabelled", 48, None, True)
    assert data.dataset_info("tinyimagenet").num_classes == 200
    with pytest.raises(ValueError, match="cifar10.*stl10.*tinyimagenet.*toy_shapes"):
        data.dataset_info("mnist")


def test_cifar10_mock_batches_are_epoch_permutations():
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        raw = _mock_raw_images("cifar10", "train")
        ds = data.make_dataset("cifar10", batch_size=5, conditional=True, flip=False, seed=7)
        batches = _batches(ds, 8)
    assert len(raw) == MOCK_EXAMPLES
    for images, labels in batches:
        assert images.shape == (5, 32, 32, 3) and images.dtype == np.float32
        assert images.min() >= -1.0 and images.max() <= 1.0
        assert labels.shape == (5,) and labels.dtype == np.int32
        assert labels.min() >= 0 and labels.max() < 10
    index = {image: i for i, image in enumerate(raw)}
    order = [index[img.tobytes()] for images, _ in batches for img in _as_uint8(images)]
    # Steps 0-3 are one epoch, steps 4-7 the next: each a permutation, in a new order.
    assert sorted(order[:20]) == list(range(20)) and sorted(order[20:]) == list(range(20))
    assert order[:20] != order[20:] and order[:20] != list(range(20))


def test_resume_equals_tail_of_uninterrupted_stream():
    # batch_size 6 over 20 examples: batches straddle epochs, and flips are on.
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        def stream(start_step, count, seed=3):
            ds = data.make_dataset("cifar10", batch_size=6, conditional=True, flip=True,
                                   seed=seed, start_step=start_step)
            return _batches(ds, count)

        full, resumed, other_seed = stream(0, 9), stream(5, 4), stream(0, 1, seed=4)
    for (images, labels), (images_r, labels_r) in zip(full[5:], resumed):
        np.testing.assert_array_equal(images, images_r)
        np.testing.assert_array_equal(labels, labels_r)
    assert not np.array_equal(full[0][0], other_seed[0][0])


def test_flips_mirror_half_the_images_deterministically():
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        def first_batches(flip):
            return _batches(data.make_dataset("cifar10", batch_size=20, flip=flip, seed=1), 3)

        plain, flipped, again = first_batches(False), first_batches(True), first_batches(True)
    mirrored = []
    for p, f, a in zip(plain, flipped, again):
        np.testing.assert_array_equal(f, a)
        is_mirror = np.all(f == p[:, :, ::-1], axis=(1, 2, 3))
        assert np.all(is_mirror | np.all(f == p, axis=(1, 2, 3)))
        mirrored.extend(is_mirror)
    assert 15 <= sum(mirrored) <= 45  # 60 fair coins: mean 30, sd 3.9.


def test_stl10_mock_unlabelled_resized_with_antialiasing():
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        raw = np.stack([np.frombuffer(b, np.uint8).reshape(96, 96, 3)
                        for b in _mock_raw_images("stl10", "unlabelled")])
        (images,) = _batches(data.make_dataset("stl10", batch_size=20, flip=False), 1)
        with pytest.raises(ValueError, match="no labels"):
            data.make_dataset("stl10", batch_size=4, conditional=True)
    assert images.shape == (20, 48, 48, 3)
    resized = _as_uint8(images).astype(np.float64)
    # Antialiased bilinear 2x down-sampling filters each axis with taps (1, 3, 3, 1) / 8, so
    # i.i.d. pixel noise keeps sqrt(20 / 64) ** 2 = 0.3125 of its std (nearest would keep 1).
    ratio = resized.std() / raw.astype(np.float64).std()
    assert abs(ratio - 0.3125) < 0.03
    assert abs(resized.mean() - raw.mean()) < 1.0


def test_offline_unprepared_dataset_fails_fast_with_instructions(tmp_path):
    with pytest.raises(data.DatasetNotPreparedError) as error:
        data.make_dataset("cifar10", batch_size=8, data_dir=tmp_path)
    message = str(error.value)
    assert "'cifar10'" in message and "tfds build cifar10" in message
    assert tfds.builder("cifar10", data_dir=tmp_path).data_dir in message  # <root>/cifar10/3.0.2
    assert "data_dir" in message and "download=True" in message
    with pytest.raises(data.DatasetNotPreparedError, match="manual_dir"):
        data.make_dataset("tinyimagenet", batch_size=8, data_dir=tmp_path)


def test_download_offline_fails_fast_without_tfds_retrying(tmp_path, monkeypatch):
    attempts = []

    def unreachable(address, timeout=None):
        attempts.append((address, timeout))
        raise OSError("Network is unreachable")

    def never(*args, **kwargs):
        raise AssertionError("tfds must not start downloading offline")

    monkeypatch.setattr(data.socket, "create_connection", unreachable)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", never)
    with pytest.raises(data.DatasetNotPreparedError,
                       match=r"download=True, but no host .*'cifar10'.*within 10 s .*"
                             r"Network is unreachable.*looks offline"):
        data.make_dataset("cifar10", batch_size=8, data_dir=tmp_path, download=True)
    assert [host for (host, _), _ in attempts] == ["storage.googleapis.com", "www.cs.toronto.edu"]
    assert {timeout for _, timeout in attempts} == {data.ONLINE_PROBE_SECONDS}


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        data.make_dataset("cifar10", batch_size=0)
    with pytest.raises(ValueError, match="image_size must be a positive integer, got 0"):
        data.make_dataset("cifar10", batch_size=4, image_size=0)
    with pytest.raises(ValueError, match="seed=-1"):
        data.make_dataset("cifar10", batch_size=4, seed=-1)
    with pytest.raises(ValueError, match="tinyimagenet"):
        data.make_dataset("cifar10", batch_size=4, manual_dir="/nowhere")


def _jpeg(colour, mode="RGB") -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new(mode, (64, 64), colour).save(buffer, format="JPEG", quality=100)
    return buffer.getvalue()


def _fake_tiny_imagenet_zip(directory) -> None:
    """2 classes x 3 train images (one grayscale) + 1 validation image, official layout."""
    colours = {"n02": (200, 40, 40), "n01": (40, 40, 200)}
    with zipfile.ZipFile(directory / "tiny-imagenet-200.zip", "w") as archive:
        root = "tiny-imagenet-200"
        archive.writestr(f"{root}/wnids.txt", "n02\nn01\n")
        for wnid, colour in colours.items():
            for i in range(3):
                image = _jpeg(128, "L") if wnid == "n01" and i == 0 else _jpeg(colour)
                archive.writestr(f"{root}/train/{wnid}/images/{wnid}_{i}.JPEG", image)
        archive.writestr(f"{root}/val/images/val_0.JPEG", _jpeg(colours["n02"]))
        archive.writestr(f"{root}/val/val_annotations.txt", "val_0.JPEG\tn02\t0\t0\t63\t63\n")


def test_tinyimagenet_prepared_from_manual_zip(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with pytest.raises(ValueError, match="tiny-imagenet-200.zip"):
        data.make_dataset("tinyimagenet", batch_size=6, manual_dir=manual, data_dir=tmp_path)
    _fake_tiny_imagenet_zip(manual)
    ds = data.make_dataset("tinyimagenet", batch_size=6, conditional=True, flip=False,
                           data_dir=tmp_path / "tfds", manual_dir=manual)
    ((images, labels),) = _batches(ds, 1)
    assert images.shape == (6, 64, 64, 3) and sorted(labels) == [0, 0, 0, 1, 1, 1]
    pixels = _as_uint8(images)[:, 32, 32].astype(int)
    grey = np.ptp(pixels, axis=1) < 4
    assert grey.sum() == 1  # The grayscale JPEG, converted to RGB.
    for pixel, label, is_grey in zip(pixels, labels, grey):
        # Labels index the sorted wnids: n01 (blue, and the gray image) = 0, n02 (red) = 1.
        expected = (128, 128, 128) if is_grey else [(40, 40, 200), (200, 40, 40)][label]
        assert label == 0 or not is_grey
        np.testing.assert_allclose(pixel, expected, atol=4)
    builder = tfds.builder("tiny_imagenet", data_dir=tmp_path / "tfds")
    assert builder.info.features["label"].names == ["n01", "n02"]
    (val,) = builder.as_dataset(split="validation").as_numpy_iterator()
    assert val["label"] == 1 and val["file_name"] == b"val_0.JPEG"


def test_toy_shapes_draws_the_labelled_shape():
    images, labels = next(toy_shapes.draw_examples(0, 24, chunk=24))
    prefix = np.concatenate([im for im, _ in toy_shapes.draw_examples(0, 10, chunk=3)])
    np.testing.assert_array_equal(prefix, images[:10])  # example i depends on i only
    assert images.shape == (24, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.arange(24) % 12)
    for image, label in zip(images, labels):
        np.testing.assert_array_equal(image[0, 0], toy_shapes.BACKGROUND)
        pixels = image.reshape(-1, 3)
        colours, counts = np.unique(pixels[np.any(pixels != toy_shapes.BACKGROUND, axis=1)],
                                    axis=0, return_counts=True)
        fill = colours[np.argmax(counts)].astype(int)
        palette = list(toy_shapes.COLOURS.values())[label % 4]
        assert np.all(np.abs(fill - palette) <= 20)
        # Fully covered pixels: between the smallest triangle and the largest disc.
        assert 40 <= counts.max() <= np.pi * 10.5 ** 2


def test_toy_shapes_default_dataset_prepares_locally(tmp_path, monkeypatch):
    # The real builder, on fewer examples (the full 13,200 take seconds more).
    monkeypatch.setattr(toy_shapes, "SPLIT_SIZES", {"train": 240, "test": 24})
    ds = data.make_dataset(data.DEFAULT_DATASET, batch_size=12, conditional=True,
                           data_dir=tmp_path)
    ((images, labels),) = _batches(ds, 1)
    assert images.shape == (12, 32, 32, 3) and labels.dtype == np.int32
    assert -1.0 <= images.min() and images.max() <= 1.0 and labels.max() < 12
    builder = tfds.builder("toy_shapes", data_dir=tmp_path)
    assert builder.is_prepared() and builder.info.splits["train"].num_examples == 240
    assert builder.info.features["label"].names[:2] == ["red_disc", "green_disc"]
    # PNG storage is lossless: the stored images are the drawn ones.
    drawn = {image.tobytes() for image in next(toy_shapes.draw_examples(0, 240, chunk=240))[0]}
    stored = builder.as_dataset(split="train").as_numpy_iterator()
    assert {example["image"].tobytes() for example in stored} == drawn


_MIRRORED_SCRIPT = textwrap.dedent("""
    import contextlib
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tensorflow_datasets as tfds
    from adapt_tf import data
    from adapt_tf.data import image_folder
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    name = sys.argv[1]
    with tfds.testing.mock_data(num_examples=20) if name == "cifar10" else contextlib.nullcontext():
        ds = data.make_dataset(name, batch_size=8, conditional=True, seed=3, image_size=32)
        expected = list(ds.take(2).as_numpy_iterator())
        for (images, labels), (want_images, want_labels) in zip(
                strategy.experimental_distribute_dataset(ds), expected):
            parts = strategy.experimental_local_results(images)
            assert [p.shape[0] for p in parts] == [4, 4], parts
            assert np.array_equal(np.concatenate(parts), want_images)
            assert np.array_equal(np.concatenate(strategy.experimental_local_results(labels)),
                                  want_labels)
    print("OK")
""")


@pytest.mark.parametrize("source", ["cifar10", "folder"])
def test_global_batch_splits_over_two_replicas(tmp_path, source):
    # A subprocess: the CPU must be split into two logical devices before TF initialises.
    name = source if source == "cifar10" else f"folder:{class_folder(tmp_path, size=32)}"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT, name],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]


_PREPARE_SCRIPT = textwrap.dedent("""
    import sys
    from adapt_tf import data
    from adapt_tf.data import image_folder
    ds = data.make_dataset("toy_shapes", batch_size=4, data_dir=sys.argv[1])
    print(ds.take(1).get_single_element().shape)
""")


def test_two_processes_prepare_toy_shapes_at_once_safely(tmp_path):
    """Both start together on an empty data_dir: one prepares, the other waits on the lock and
    reuses the complete copy (without it tfds fails renaming onto the finished folder)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this adapt_tf
    processes = [subprocess.Popen([sys.executable, "-c", _PREPARE_SCRIPT, str(tmp_path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=root)
                 for _ in range(2)]
    for process in processes:
        stdout, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr[-3000:]
        assert "(4, 32, 32, 3)" in stdout
    builder = tfds.builder("toy_shapes", data_dir=tmp_path)
    assert builder.is_prepared() and builder.info.splits["train"].num_examples == 12_000
    assert not [p for p in (tmp_path / "toy_shapes").iterdir() if "incomplete" in p.name]


def test_tests_use_temporary_data_and_cache_dirs_not_home():
    """conftest points tfds, adapt_tf's cache, Keras and TF-Hub into one session temp dir."""
    variables = ("TFDS_DATA_DIR", "ADAPT_TF_CACHE_DIR", "KERAS_HOME", "TFHUB_CACHE_DIR")
    parents = {os.path.dirname(os.environ[v]) for v in variables}
    assert len(parents) == 1 and os.path.basename(parents.pop()).startswith("adapt_tf_tests_")
    assert os.fspath(tfds.builder("toy_shapes").data_dir_root) == os.environ["TFDS_DATA_DIR"]
    from adapt_tf.evaluation import scorers
    cache = scorers.reference_cache_path("toy_shapes", "/x/inception")
    assert cache.startswith(os.path.join(os.environ["ADAPT_TF_CACHE_DIR"], "fid_stats"))


# ---------------------------------------------------------------- datasets by URI

def _decoded_ids(images: np.ndarray) -> tuple[list[int], list[int]]:
    """(example ids, colour classes) of float batches of `class_folder` images."""
    pixels = _as_uint8(images)
    return ([int(p[0, 0, 0]) for p in pixels],
            [COLOURS.index(tuple(int(v) for v in p[1, 1])) for p in pixels])


def test_folder_classes_are_sorted_folders_and_batches_epoch_permutations(tmp_path):
    uri = f"folder:{class_folder(tmp_path)}"
    spec = data.dataset_info(uri)
    assert (spec.source, spec.num_classes, spec.num_examples, spec.image_size) == (
        "folder", 3, 12, 8)
    assert spec.class_names == ("a_cls", "b_cls", "c_cls") and spec.test_split is None
    batches = _batches(data.make_dataset(uri, batch_size=4, conditional=True, seed=3), 6)
    ids, colours, labels = [], [], []
    for images, batch_labels in batches:
        assert images.shape == (4, 8, 8, 3) and batch_labels.dtype == np.int32
        batch_ids, batch_colours = _decoded_ids(images)
        ids += batch_ids
        colours += batch_colours
        labels += batch_labels.tolist()
    assert labels == colours == [i // 4 for i in ids]  # every image carries its folder's label
    assert sorted(ids[:12]) == sorted(ids[12:]) == list(range(12))  # steps 0-2, 3-5: epochs
    assert ids[:12] != ids[12:] and ids[:12] != list(range(12))


def test_folder_stream_equals_the_in_memory_order_and_resumes_exactly(tmp_path):
    """The streamed folder visits examples exactly as the in-memory pipelines do (same
    permutation of the same sorted list), flips included; start_step resumes the stream."""
    folder = class_folder(tmp_path, per_class=5)
    uri = f"folder:{folder}"
    files = sorted(folder.glob("*/*.png"))
    arrays = (np.stack([np.asarray(PIL.Image.open(f)) for f in files]),
              np.repeat(np.arange(3), 5))

    def stream(dataset, start_step, count):
        return _batches(data.make_dataset(dataset, batch_size=4, conditional=True, flip=True,
                                          seed=5, start_step=start_step), count)

    full, resumed, in_memory = stream(uri, 0, 9), stream(uri, 6, 3), stream(arrays, 0, 9)
    for (images, labels), (other_images, other_labels) in zip(full, in_memory):
        np.testing.assert_array_equal(images, other_images)
        np.testing.assert_array_equal(labels, other_labels)
    for (images, labels), (images_r, labels_r) in zip(full[6:], resumed):
        np.testing.assert_array_equal(images, images_r)
        np.testing.assert_array_equal(labels, labels_r)


def test_square_rgb_converts_channels_and_centre_crops():
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
    np.testing.assert_array_equal(image_folder.square_rgb(grey, 4), np.repeat(grey, 3, -1))
    grey_alpha = np.concatenate([grey, np.full_like(grey, 7)], -1)
    np.testing.assert_array_equal(image_folder.square_rgb(grey_alpha, 4),
                                  np.repeat(grey, 3, -1))
    rgba = np.random.default_rng(0).integers(0, 256, (4, 4, 4), dtype=np.uint8)
    np.testing.assert_array_equal(image_folder.square_rgb(rgba, 4), rgba[..., :3])
    wide = np.zeros((4, 8, 3), np.uint8)
    wide[:, 2:6] = 100  # the central 4x4 square
    wide[:, :2], wide[:, 6:] = 7, 9
    np.testing.assert_array_equal(image_folder.square_rgb(wide, 4), wide[:, 2:6])
    tall = np.transpose(wide, (1, 0, 2))
    np.testing.assert_array_equal(image_folder.square_rgb(tall, 4), tall[2:6])
    # Resized only when the side differs: a constant image stays constant at any size.
    np.testing.assert_array_equal(image_folder.square_rgb(wide[:, 2:6], 2),
                                  np.full((2, 2, 3), 100, np.uint8))


def test_flat_folder_of_mixed_formats_and_channels_is_unlabelled_rgb(tmp_path):
    folder = tmp_path / "flat"
    rng = np.random.default_rng(1)
    png(folder / "grey.png", np.full((6, 6), 50, np.uint8))
    png(folder / "rgba.png", np.dstack([np.full((6, 6, 3), 90, np.uint8),
                                        rng.integers(0, 256, (6, 6), dtype=np.uint8)]))
    png(folder / "wide.bmp", np.full((6, 12, 3), 130, np.uint8))
    PIL.Image.fromarray(np.full((6, 6, 3), 170, np.uint8)).save(folder / "photo.JPG",
                                                                quality=100)
    PIL.Image.fromarray(np.full((6, 6, 3), 210, np.uint8)).save(folder / "lossless.webp",
                                                                lossless=True)
    (folder / "notes.txt").write_text("not an image")
    uri = f"folder:{folder}"
    spec = data.dataset_info(uri)
    assert (spec.num_classes, spec.class_names, spec.num_examples) == (None, None, 5)
    assert image_folder.scan(folder).skipped == 1
    with pytest.raises(ValueError, match="has no labels"):
        data.make_dataset(uri, batch_size=5, conditional=True)
    (images,) = _batches(data.make_dataset(uri, batch_size=5, image_size=6), 1)
    pixels = _as_uint8(images).astype(int)
    assert images.shape == (5, 6, 6, 3)
    assert np.all(pixels == pixels[:, :1, :1, :1])  # every image grey-level, all channels
    # JPEG rounds a flat colour by at most a step or two.
    assert np.allclose(sorted(pixels[:, 0, 0, 0]), [50, 90, 130, 170, 210], atol=2)


def test_fingerprint_follows_the_files_and_the_tfds_version(tmp_path):
    folder = class_folder(tmp_path)
    uri = f"folder:{folder}"
    first = data.fingerprint(uri)
    assert first == data.fingerprint(uri) and len(first) == 64
    image = folder / "a_cls" / "000.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = data.fingerprint(uri)
    shutil.copy(image, folder / "a_cls" / "new.png")
    added = data.fingerprint(uri)
    (folder / "c_cls").rename(folder / "d_cls")
    renamed = data.fingerprint(uri)
    assert len({first, touched, added, renamed}) == 4
    from adapt_tf.evaluation import scorers  # FID statistics of a URI are cached by its fingerprint
    cache = scorers.reference_cache_path(uri, "/x/inception", cache_dir=str(tmp_path / "c"))
    assert os.path.dirname(cache) == str(tmp_path / "c")
    assert os.path.basename(cache).startswith(f"data_{renamed[:16]}_train_8px_")
    assert data.fingerprint("toy_shapes") == data.fingerprint("toy_shapes")
    assert data.fingerprint("toy_shapes") != data.fingerprint("cifar10")
    arrays = np.zeros((4, 2, 2, 3), np.uint8)
    changed = arrays.copy()
    changed[0, 0, 0, 0] = 1
    assert data.fingerprint(arrays) != data.fingerprint(changed)
    with pytest.raises(ValueError, match="has no fingerprint"):
        data.fingerprint(tf.data.Dataset.from_tensor_slices(arrays))


def _bad_folder(tmp_path, case: str):
    root = tmp_path / case
    root.mkdir()
    picture = np.zeros((4, 4, 3), np.uint8)
    if case == "corrupt":
        png(root / "fine.png", picture)
        (root / "broken.png").write_text("this is not a PNG")
    elif case == "zero_bytes":
        png(root / "fine.png", picture)
        (root / "empty.jpg").write_bytes(b"")
    elif case == "empty_class":
        png(root / "cats" / "cat.png", picture)
        (root / "dogs" / "deeper").mkdir(parents=True)
        (root / "dogs" / "readme.txt").write_text("")
    elif case == "images_beside_classes":
        png(root / "cats" / "cat.png", picture)
        png(root / "stray.png", picture)
    elif case == "few":
        for k in range(3):
            png(root / f"{k}.png", picture)
    elif case == "only_other_files":
        (root / "a.txt").write_text("")
    return f"folder:{root}"


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist or is not a directory"),
    ("empty", "holds no image files"),
    ("only_other_files", "holds no image files"),
    ("corrupt", "broken.png' is not a PNG, JPEG, BMP or WebP image"),
    ("zero_bytes", "empty.jpg' is not a PNG, JPEG, BMP or WebP image"),
    ("empty_class", "dogs' holds no image files"),
    ("images_beside_classes", "holds 1 image(s) (e.g. 'stray.png') beside class sub-folders"),
    ("few", "holds 3 images, fewer than one batch of 4"),
    ("no_path", "names no folder"),
])
def test_bad_folders_are_refused_naming_the_folder_or_file(tmp_path, case, expected):
    if case == "missing":
        uri = f"folder:{tmp_path / 'nowhere'}"
    elif case == "empty":
        uri = f"folder:{tmp_path}"
    elif case == "no_path":
        uri = "folder:"
    else:
        uri = _bad_folder(tmp_path, case)
    with pytest.raises(ValueError) as error:
        data.make_dataset(uri, batch_size=4)
    assert expected in str(error.value)


def test_tfds_uri_finds_image_and_label_features(tmp_path):
    store_tfds(tmp_path, "tiny_pictures")
    uri = "tfds:tiny_pictures/grey"
    spec = data.dataset_info(uri, data_dir=tmp_path)
    assert (spec.image_key, spec.label_key, spec.num_classes, spec.class_names) == (
        "picture", "digit", 3, ("zero", "one", "two"))
    assert (spec.split, spec.test_split, spec.num_examples, spec.image_size) == (
        "train", "test", 9, 10)
    batches = _batches(data.make_dataset(uri, batch_size=3, conditional=True, seed=2,
                                         data_dir=tmp_path), 3)
    ids = []
    for images, labels in batches:
        pixels = _as_uint8(images)
        assert images.shape == (3, 10, 10, 3) and np.all(pixels == pixels[:, :1, :1, :1])
        ids += [int(p) // 20 for p in pixels[:, 0, 0, 0]]
        assert labels.tolist() == [i % 3 for i in ids[-3:]]
    assert sorted(ids) == list(range(9))
    (test_images, _), = _batches(data.make_dataset(f"{uri}:test", batch_size=3, conditional=True,
                                                   data_dir=tmp_path), 1)
    assert sorted(_as_uint8(test_images)[:, 0, 0, 0] // 20) == [9, 10, 11]
    other = data.fingerprint(f"{uri}:test", data_dir=tmp_path)
    assert data.fingerprint(uri, data_dir=tmp_path) != other


def test_tfds_uri_bad_input(tmp_path):
    store_tfds(tmp_path, "tiny_table", image=False)
    with pytest.raises(ValueError, match=r"'tfds:tiny_table/grey' has no image feature \(feat"):
        data.dataset_info("tfds:tiny_table/grey", data_dir=tmp_path)
    with pytest.raises(data.DatasetNotPreparedError, match="tfds build mnist --data_dir"):
        data.dataset_info("tfds:mnist", data_dir=tmp_path)
    with pytest.raises(ValueError, match="tfds knows no dataset 'no_such_set_23'"):
        data.dataset_info("tfds:no_such_set_23", data_dir=tmp_path)
    for uri in ("tfds:", "tfds:a/b/c", "tfds:mnist:"):
        with pytest.raises(ValueError, match="is not 'tfds:<name>"):
            data.dataset_info(uri)
    store_tfds(tmp_path, "tiny_pictures")
    with pytest.raises(ValueError, match="no split 'valid'"):
        data.dataset_info("tfds:tiny_pictures/grey:valid", data_dir=tmp_path)


def test_tfds_uri_under_mock_data():
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        spec = data.dataset_info("tfds:mnist")
        (images, labels), = _batches(data.make_dataset("tfds:mnist", batch_size=4,
                                                       conditional=True), 1)
    assert (spec.image_key, spec.label_key, spec.num_classes, spec.image_size) == (
        "image", "label", 10, 28)
    assert images.shape == (4, 28, 28, 3) and labels.max() < 10


def _dataset_ops(ds: tf.data.Dataset) -> list:
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(ds._as_serialized_graph().numpy())
    return list(graph.node) + [node for f in graph.library.function for node in f.node_def]


def test_folder_streams_reading_only_the_requested_batches(tmp_path):
    """A 100,000-file list of which only the files of steps 0 and 1 exist: those batches come
    out (so no other file is read for them, and no image but theirs is decoded), and the
    pipeline holds no cache and batches of no more than one step."""
    n, batch_size = 100_000, 8
    names = tuple(f"{i:06d}.png" for i in range(n))
    needed = np.concatenate([data._permuted_indices(
        tf.constant(step, tf.int64), batch_size=batch_size, n=n, seed=4).numpy()
        for step in (0, 1)])
    for i in needed:
        png(tmp_path / names[i], np.full((4, 4, 3), i % 251, np.uint8))
    folder = image_folder.ImageFolder(str(tmp_path), names, None, None, ((0, 0),) * n, 0)
    ds = data._folder_batches(folder, batch_size=batch_size, size=4, seed=4, start_step=0,
                              flip=False)
    batches = _batches(ds.map(lambda images, labels: images), 2)
    got = [int(p) for images in batches for p in _as_uint8(images)[:, 0, 0, 0]]
    assert got == [i % 251 for i in needed]

    def caches(dataset):
        return [node.op for node in _dataset_ops(dataset) if node.op.startswith("CacheDataset")]

    assert not caches(ds)
    streamed = data.make_dataset(f"folder:{class_folder(tmp_path / 'small')}", batch_size=4)
    assert not caches(streamed)
    nodes = {node.name: node for node in _dataset_ops(streamed)}
    buffers = [tf.make_ndarray(nodes[node.input[1]].attr["value"].tensor)
               for node in nodes.values() if node.op == "PrefetchDataset"]
    assert buffers == [data.STREAM_PREFETCH]  # fixed, not autotuned (-1)
    # The in-memory pipelines cache their whole split: the check above would see it.
    assert caches(data.make_dataset(np.zeros((8, 4, 4, 3), np.uint8), batch_size=4))


def test_python_arrays_and_datasets_as_sources():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (10, 6, 6, 3), dtype=np.uint8)
    labels = np.arange(10) % 3
    spec = data.dataset_info((images, labels))
    assert (spec.source, spec.num_classes, spec.num_examples, spec.image_size) == (
        "arrays", 3, 10, 6)
    assert data.dataset_info(images).num_classes is None
    # Resuming is exact for datasets that yield the same sequence at every iteration.
    source = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(
        10, seed=1, reshuffle_each_iteration=False)
    spec = data.dataset_info(source)
    assert (spec.source, spec.num_classes, spec.num_examples) == ("tf.data", 3, 10)

    def stream(start_step, count, flip=True):
        return _batches(data.make_dataset(source, batch_size=4, conditional=True, flip=flip,
                                          seed=2, start_step=start_step), count)

    full, resumed = stream(0, 7), stream(4, 3)
    for (a, la), (b, lb) in zip(full[4:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    # The stream is the dataset's own order, epoch after epoch.
    served = np.concatenate([_as_uint8(b) for b, _ in stream(0, 5, flip=False)])
    epoch = [image for image, _ in source.as_numpy_iterator()]
    np.testing.assert_array_equal(served, np.stack(epoch * 2))


@pytest.mark.parametrize("dataset, expected", [
    (np.zeros((4, 6, 6, 3), np.float32), "must be images uint8 [N, H, W, C]"),
    (np.zeros((4, 6, 6, 5), np.uint8), "must be images uint8 [N, H, W, C]"),
    ((np.zeros((4, 6, 6, 3), np.uint8), np.zeros(3, int)), "labels must be non-negative"),
    ((np.zeros((4, 6, 6, 3), np.uint8), -np.ones(4, int)), "labels must be non-negative"),
    ((np.zeros((4, 6, 6, 3), np.uint8), np.zeros(4), 1), "must be images uint8"),
    (tf.data.Dataset.from_tensor_slices(np.zeros((4, 6, 6, 3), np.uint8)).batch(2),
     "must yield examples `image` uint8 [H, W, C]"),
    (tf.data.Dataset.from_tensor_slices((np.zeros((4, 6, 6, 3), np.uint8), -np.ones(4, int))),
     "labels must be >= 0"),
])
def test_bad_python_sources_are_refused(dataset, expected):
    with pytest.raises(ValueError) as error:
        data.make_dataset(dataset, batch_size=2)
    assert expected in str(error.value)


def _damage(path, kind: str) -> str:
    """Damages an image file past its valid header; returns its path as a str."""
    if kind == "png":  # signature and IHDR chunk (8 + 25 bytes), no image data
        path.write_bytes(path.read_bytes()[:33])
    else:  # a JPEG whose headers are intact up to the scan, then garbage
        buffer = io.BytesIO()
        PIL.Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(buffer, "JPEG")
        jpeg = buffer.getvalue()
        path.write_bytes(jpeg[:jpeg.index(b"\xff\xda")] + b"\xff\xda" + b"\x13\x37" * 40)
    return str(path)


def test_files_damaged_past_a_valid_header_are_named_when_a_batch_fails(tmp_path):
    folder = class_folder(tmp_path, size=8)  # 3 classes of 4 files
    truncated = _damage(folder / "b_cls" / "001.png", "png")
    (folder / "c_cls" / "002.png").unlink()  # replaced by a JPEG: still 12 files
    garbled = _damage(folder / "c_cls" / "002.jpg", "jpeg")
    uri = f"folder:{folder}"
    ds = data.make_dataset(uri, batch_size=4, conditional=True)  # up-front checks pass
    # TensorFlow's own error names no file: what a run stopped with before.
    with pytest.raises(tf.errors.InvalidArgumentError) as raw:
        _batches(ds, 3)  # one epoch: every file once
    assert "001.png" not in str(raw.value) and "002.jpg" not in str(raw.value)
    with pytest.raises(data.DamagedImageError) as error:
        with data.naming_damaged_images(uri, outcome=lambda: " Nothing was saved."):
            _batches(ds, 3)
    message = str(error.value)
    assert message.startswith(f"2 image file(s) of folder {str(folder)!r} cannot be read or "
                              f"decoded past a valid header: {truncated!r} (Invalid PNG")
    assert f"; {garbled!r} (jpeg::Uncompress failed" in message
    assert message.endswith("(a damaged image is refused, never skipped). Nothing was saved.")
    assert "\n" not in message and "Op:" not in message and "{{" not in message
    assert image_folder.undecodable(image_folder.scan(folder)) == [
        (truncated, message.split(f"{truncated!r} (")[1].split(")")[0]),
        (garbled, message.split(f"{garbled!r} (")[1].split(")")[0])]
    # Errors that no damaged file explains pass unchanged, as do other datasets'.
    for source in (f"folder:{class_folder(tmp_path / 'intact')}", "toy_shapes"):
        with pytest.raises(tf.errors.InvalidArgumentError, match="unrelated"):
            with data.naming_damaged_images(source):
                raise tf.errors.InvalidArgumentError(None, None, "unrelated")


def test_a_damaged_first_file_is_named_by_the_up_front_checks(tmp_path):
    folder = class_folder(tmp_path, size=8)
    first = _damage(folder / "a_cls" / "000.png", "png")  # the one decoded for the spec
    with pytest.raises(data.DamagedImageError, match=rf"folder .*: '{re.escape(first)}' \(Inv"):
        data.make_dataset(f"folder:{folder}", batch_size=4)
