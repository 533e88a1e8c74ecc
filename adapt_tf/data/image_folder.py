"""A directory of images as a dataset: its file list and classes, its fingerprint, and the
decoding of one file to a square RGB image (docs/ALGORITHM.md §8).

Layout (`scan`):
  * class sub-folders: every sub-folder of the root is a class, labels 0, 1, ... in the
    sorted order of the folder names (`class_names`); a class holds the image files anywhere
    below its folder. Images directly in the root beside class folders are refused (which
    class would they be?).
  * flat: the image files directly in the root, unlabelled (unconditional models only).
  * image files: .png, .jpg, .jpeg, .bmp, .webp (any case). Hidden entries (".name") and other
    files are skipped and counted (`skipped`, logged by `adapt_tf.data`), never read.
  * the file list is sorted (class by class): example i is the same file on every machine
    that holds the same folder.

Bad files are refused at `scan`, before anything trains or is written, with one ValueError
naming the file: an unreadable file, or one whose first bytes are not the PNG, JPEG, BMP or
WebP signature (an empty or truncated-to-nothing file, a text file renamed .png). A file
whose header is valid but whose data is damaged further on (e.g. a PNG truncated after its
header) passes these checks: checking it would mean decoding the whole folder first. Its
batch's decode fails later, with TensorFlow's error, which names no file; only then
`undecodable` decodes every file of the folder on the host to find it, and the reader
(`adapt_tf.data.naming_damaged_images`) raises one ValueError naming it.

Decoding (`decode`): the first frame, converted to RGB (grey is repeated over the three
channels, grey+alpha keeps its grey, RGBA drops its alpha channel), then, when the image is
not square, centre-cropped to its central square of side min(H, W) (never stretched), then
resized to the target side bilinearly with antialiasing when its side differs (as the tfds
datasets are) and rounded to uint8.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow as tf

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "scan", "fingerprint", "decode", "square_rgb",
           "undecodable"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# First bytes of each supported format (WebP: "RIFF", 4 size bytes, "WEBP").
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", 0), (b"\xff\xd8\xff", 0), (b"BM", 0), (b"WEBP", 8))


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """One scanned folder.

    Attributes:
      root: the folder, absolute.
      files: image paths relative to `root`, sorted class by class.
      labels: int label of each file (index into `class_names`), or None for a flat folder.
      class_names: the class folders' names in label order, or None for a flat folder.
      stats: (size in bytes, mtime in ns) of each file, for the fingerprint.
      skipped: entries that are neither image files nor class folders (hidden or other files).
    """

    root: str
    files: tuple[str, ...]
    labels: tuple[int, ...] | None
    class_names: tuple[str, ...] | None
    stats: tuple[tuple[int, int], ...]
    skipped: int


def scan(root: str | os.PathLike) -> ImageFolder:
    """The images of `root` (see the module docstring); ValueError naming the folder or the file
    and the fix when it is missing, empty, mixes images with class folders, has a class folder
    without images, or holds a file that is not a readable image."""
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise ValueError(f"Image folder {root!r} does not exist or is not a directory; pass "
                         "train.dataset = 'folder:<a directory of images>'.")
    images, classes, skipped = _entries(root)
    if classes and images:
        raise ValueError(
            f"Image folder {root!r} holds {len(images)} image(s) (e.g. {images[0]!r}) beside "
            f"class sub-folders {classes[:3]}: move them into a class folder, or the class "
            "folders' images into the root for an unlabelled folder.")
    if not classes:
        files, labels, names = images, None, None
    else:
        files, labels, names, skipped = _class_files(root, classes, skipped)
    if not files:
        raise ValueError(f"Image folder {root!r} holds no image files "
                         f"({'/'.join(IMAGE_EXTENSIONS)}); put images there.")
    stats = tuple(_checked_stat(root, name) for name in files)
    return ImageFolder(root, tuple(files), labels, names, stats, skipped)


def _entries(directory: str) -> tuple[list[str], list[str], int]:
    """(sorted image file names, sorted visible sub-folder names, other entries) of one
    directory."""
    images, folders, skipped = [], [], 0
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name.startswith("."):
            skipped += 1
        elif entry.is_dir():
            folders.append(entry.name)
        elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
            images.append(entry.name)
        else:
            skipped += 1
    return images, folders, skipped


def _class_files(root: str, classes: list[str], skipped: int):
    """(files, labels, class names, skipped) of a folder of class sub-folders."""
    files, labels = [], []
    for label, name in enumerate(classes):
        found, skipped = _images_below(os.path.join(root, name), name, skipped)
        if not found:
            raise ValueError(f"Class folder {os.path.join(root, name)!r} holds no image files "
                             f"({'/'.join(IMAGE_EXTENSIONS)}); add images or remove it.")
        files += found
        labels += [label] * len(found)
    return files, tuple(labels), tuple(classes), skipped


def _images_below(directory: str, prefix: str, skipped: int) -> tuple[list[str], int]:
    """Image paths (relative, starting with `prefix`) anywhere below `directory`, sorted."""
    images, folders, more = _entries(directory)
    found = [os.path.join(prefix, name) for name in images]
    for folder in folders:
        below, more = _images_below(os.path.join(directory, folder),
                                    os.path.join(prefix, folder), more)
        found += below
    return sorted(found), skipped + more


# Files whose signature this process checked, with the (size, mtime_ns) they had: a run scans
# its folder several times (checks, model, pipeline, fingerprint), reading each header once.
_CHECKED: dict[str, tuple[int, int]] = {}


def _checked_stat(root: str, name: str) -> tuple[int, int]:
    """(size, mtime_ns) of an image file whose first bytes are a supported signature."""
    path = os.path.join(root, name)
    with contextlib.suppress(OSError):
        stat = os.stat(path)
        if _CHECKED.get(path) == (stat.st_size, stat.st_mtime_ns):
            return _CHECKED[path]
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            stat = os.fstat(f.fileno())
    except OSError as error:
        raise ValueError(f"Image file {path!r} cannot be read ({error.strerror or error}); fix "
                         "its permissions or remove it from the folder.") from None
    if not any(head[offset:offset + len(magic)] == magic for magic, offset in _SIGNATURES):
        raise ValueError(f"Image file {path!r} is not a PNG, JPEG, BMP or WebP image (its "
                         f"first bytes are {head[:8]!r}); replace or remove it.")
    _CHECKED[path] = stat.st_size, stat.st_mtime_ns
    return _CHECKED[path]


def fingerprint(folder: ImageFolder) -> str:
    """SHA-256 (hex) of the folder's file list with each file's size and mtime, and its class
    names: any added, removed, renamed, rewritten or touched image changes it."""
    digest = hashlib.sha256()
    digest.update(repr(folder.class_names).encode())
    for name, (size, mtime) in zip(folder.files, folder.stats):
        digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def decode(contents: tf.Tensor, size: int) -> tf.Tensor:
    """uint8 [size, size, 3] from the encoded bytes of one image file (module docstring)."""
    return square_rgb(_decoded(contents), size)


def _decoded(contents: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, C] of the first frame; InvalidArgumentError if the data is damaged."""
    return tf.io.decode_image(contents, channels=0, expand_animations=False)


def undecodable(folder: ImageFolder) -> list[tuple[str, str]]:
    """(path, TensorFlow's reason) of every file of `folder` that cannot be read or decoded,
    in file order. Decodes the whole folder (in parallel, in a tf.data pipeline that drops the
    failures and keeps the indices of the rest): for an error path, never per batch."""
    paths = [os.path.join(folder.root, name) for name in folder.files]
    indices = (tf.data.Dataset.from_tensor_slices((tf.range(len(paths)), paths))
               .map(lambda index, path: (index, tf.shape(_decoded(tf.io.read_file(path)))),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
               .ignore_errors().map(lambda index, shape: index).batch(4096))
    read = np.zeros(len(paths), bool)
    for batch in indices:
        read[batch.numpy()] = True
    failures = [(paths[i], _failure(paths[i])) for i in np.flatnonzero(~read)]
    return [(path, reason) for path, reason in failures if reason is not None]


def _failure(path: str) -> str | None:
    """Why TensorFlow cannot read or decode one file (its message without the op's name), or
    None if it can now."""
    try:
        _decoded(tf.io.read_file(path))
    except tf.errors.OpError as error:
        text = re.sub(r"\{\{.*?\}\}|\[Op:\w+\].*", "", error.message)
        return " ".join(text.split())
    return None


def square_rgb(image: tf.Tensor, size: int) -> tf.Tensor:
    """uint8 [size, size, 3] from uint8 [H, W, C], C in 1..4: RGB, the central square, resized
    (bilinear, antialiased) only when its side is not `size`."""
    channels = tf.shape(image)[-1]
    image = tf.cond(channels < 3, lambda: tf.repeat(image[..., :1], 3, axis=-1),
                    lambda: image[..., :3])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    image = tf.image.crop_to_bounding_box(image, (height - side) // 2, (width - side) // 2,
                                          side, side)

    def resized():
        scaled = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(scaled), 0.0, 255.0), tf.uint8)

    image = tf.cond(side == size, lambda: tf.cast(image, tf.uint8), resized)
    return tf.ensure_shape(image, [size, size, 3])
