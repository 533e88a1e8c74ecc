"""Tests for adapt_tf.data and the builders in adapt_tf.datasets (offline: tfds mock data and
data generated here)."""

from __future__ import annotations

import io
import os
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
from adapt_tf.datasets import toy_shapes

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
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tensorflow_datasets as tfds
    from adapt_tf import data
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with tfds.testing.mock_data(num_examples=20):
        ds = data.make_dataset("cifar10", batch_size=8, conditional=True, seed=3)
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


def test_global_batch_splits_over_two_replicas():
    # A subprocess: the CPU must be split into two logical devices before TF initialises.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stderr[-3000:]


_PREPARE_SCRIPT = textwrap.dedent("""
    import sys
    from adapt_tf import data
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
    from adapt_tf import evaluation
    cache = evaluation.reference_cache_path("toy_shapes", "/x/inception")
    assert cache.startswith(os.path.join(os.environ["ADAPT_TF_CACHE_DIR"], "fid_stats"))
