"""ToyShapes: adapt_tf's default dataset, drawn locally (no download).

32x32 RGB images, each one filled shape (disc, square or upward triangle) in one of four colours
(red, green, blue, yellow) on a plain dark background. Label = shape * 4 + colour (12 balanced
classes, names like "red_disc"). Size (disc radius 6-10 px), position (centre within +-5 px of
the image centre) and tint (+-20 per channel) vary per image; edges are anti-aliased. Example i
of a split is a pure function of (DRAW_SEED, split, i), so every machine builds the same data,
in a few seconds: train 12,000 and test 1,200 images.

Why it exists: the paper's datasets cannot be fetched offline and take hours of GPU to learn.
A small SNGAN on a CPU learns these images in minutes, and a person can judge a sample grid at a
glance (sharp shapes, right colours, no smears, every class present). It is not from the paper.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

IMAGE_SIZE = 32
SHAPES = ("disc", "square", "triangle")
COLOURS = {
    "red": (220, 50, 50),
    "green": (60, 190, 75),
    "blue": (60, 110, 230),
    "yellow": (235, 205, 60),
}
CLASS_NAMES = tuple(f"{colour}_{shape}" for shape in SHAPES for colour in COLOURS)
BACKGROUND = (28, 28, 34)
SPLIT_SIZES = {"train": 12_000, "test": 1_200}
DRAW_SEED = 20230
_RADIUS_RANGE = (6.0, 10.0)      # disc radius in pixels; the other shapes scale from it
_MAX_SHIFT = 5.0                 # largest centre offset from the image centre, pixels
_COLOUR_JITTER = 20              # +- per channel, uint8 units
_SQUARE_HALF_SIDE = 0.886        # sqrt(pi) / 2: a square of the disc's area
_TRIANGLE_CIRCUMRADIUS = 1.3     # a triangle of about 0.85x the disc's area that still fits


def _signed_distance(shape: np.ndarray, dx: np.ndarray, dy: np.ndarray,
                     r: np.ndarray) -> np.ndarray:
    """Signed distance in pixels from offsets (dx, dy) to the edge of the shape; < 0 inside.

    shape, r: [N, 1, 1]; dx, dy: [N, S, S] offsets from the shapes' centres. Exact inside every
    shape and outside the disc; off the corners of the square and triangle it is slightly too
    large, which only touches the anti-aliasing there.
    """
    disc = np.sqrt(dx ** 2 + dy ** 2) - r
    square = np.maximum(np.abs(dx), np.abs(dy)) - _SQUARE_HALF_SIDE * r
    # Equilateral triangle, apex up (image y grows downwards): outward edge normals at 90, 210
    # and 330 degrees; its inradius is half its circumradius.
    half_root3 = np.sqrt(3.0) / 2.0
    edges = np.maximum(dy, np.maximum(-half_root3 * dx - 0.5 * dy, half_root3 * dx - 0.5 * dy))
    triangle = edges - _TRIANGLE_CIRCUMRADIUS * r / 2.0
    return np.choose(shape, [disc, square, triangle])


def _draw(labels: np.ndarray, uniforms: np.ndarray, size: int) -> np.ndarray:
    """Images [N, size, size, 3] uint8 from labels [N] and per-example uniforms [N, 6]."""
    scale = size / IMAGE_SIZE
    shape = (labels // len(COLOURS))[:, None, None]
    palette = np.asarray(list(COLOURS.values()), np.float64)[labels % len(COLOURS)]
    jitter = np.floor(uniforms[:, :3] * (2 * _COLOUR_JITTER + 1)) - _COLOUR_JITTER
    colour = np.clip(palette + jitter, 0, 255)[:, None, None, :]
    low, high = _RADIUS_RANGE
    r = ((low + (high - low) * uniforms[:, 3]) * scale)[:, None, None]
    cx, cy = (size / 2.0 + (2.0 * uniforms[:, 4:6] - 1.0) * _MAX_SHIFT * scale).T
    coords = np.arange(size, dtype=np.float64) + 0.5  # pixel centres
    dx = coords[None, None, :] - cx[:, None, None]
    dy = coords[None, :, None] - cy[:, None, None]
    # Anti-aliasing: coverage falls linearly across the pixel straddling the edge.
    alpha = np.clip(0.5 - _signed_distance(shape, dx, dy, r), 0.0, 1.0)[..., None]
    image = np.asarray(BACKGROUND, np.float64) * (1.0 - alpha) + colour * alpha
    return np.round(image).astype(np.uint8)


def draw_examples(split_index: int, num_examples: int, *, seed: int = DRAW_SEED,
                  size: int = IMAGE_SIZE,
                  chunk: int = 1024) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Draws examples 0..num_examples-1 of split number `split_index`, `chunk` at a time.

    Example i depends only on (seed, split_index, i): its six uniforms are row i of one
    [num_examples, 6] draw, filled row by row, so any prefix of the split is the same.

    Yields:
      images [k, size, size, 3] uint8 and labels [k] int64 in [0, 12): label = i % 12 (shape *
      4 + colour), so every class has the same count up to one.
    """
    uniforms = np.random.default_rng([seed, split_index]).random((num_examples, 6))
    labels = np.arange(num_examples) % len(CLASS_NAMES)
    for start in range(0, num_examples, chunk):
        stop = min(start + chunk, num_examples)
        yield _draw(labels[start:stop], uniforms[start:stop], size), labels[start:stop]


class ToyShapes(tfds.core.GeneratorBasedBuilder):
    """Coloured discs, squares and triangles on a plain background, 32x32, 12 classes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: 12,000 train and 1,200 test images."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
                "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Everything is drawn locally.
        return {
            name: self._generate_examples(split_index=i, num_examples=n)
            for i, (name, n) in enumerate(SPLIT_SIZES.items())
        }

    def _generate_examples(self, split_index: int, num_examples: int):
        index = 0
        for images, labels in draw_examples(split_index, num_examples):
            for image, label in zip(images, labels):
                # PIL's PNG encoder is several times faster than the TF op tfds would call.
                png = io.BytesIO()
                PIL.Image.fromarray(image).save(png, format="PNG", compress_level=1)
                png.seek(0)
                yield index, {"image": png, "label": int(label)}
                index += 1
