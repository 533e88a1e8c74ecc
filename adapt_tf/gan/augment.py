"""DiffAugment (Zhao et al., 2020): differentiable augmentation of D's inputs, as the official
ADAPT code's `--diff_aug` applies it (docs/ALGORITHM.md §1).

The policy is a comma-separated list of "color" (brightness, saturation, contrast),
"translation" (shift by up to 1/8 of the size, zeros shifted in) and "cutout" (a square of half
the size set to 0, centred anywhere). Every operation is a tensor op on NHWC images, so it is
differentiable (G's gradient flows through the augmented fakes) and compiles under XLA.

Randomness is split from the arithmetic: `draw` makes one image's parameters for a whole
batch from a stateless seed, `apply` uses them. `SparseGAN` draws them outside XLA with the
latents, for the global batch, from (seed + 2, iteration * (n_dis + 1) + phase), and every
replica applies its slice, so a run's augmentations do not depend on the devices.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import tensorflow as tf

__all__ = ["POLICY", "OPERATIONS", "parse_policy", "draw", "apply"]

# The official default (`policy = "color,translation,cutout"` in its train loop).
POLICY = "color,translation,cutout"
OPERATIONS = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(policy: str | None) -> tuple[str, ...] | None:
    """("color", ...) from "color,translation,cutout"; None for None or ""."""
    if not policy:
        return None
    if not isinstance(policy, str):
        raise ValueError(f"diff_aug={policy!r} must be a comma-separated policy such as "
                         f"{POLICY!r}, or None.")
    names = tuple(name.strip() for name in policy.split(","))
    unknown = [name for name in names if name not in OPERATIONS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"diff_aug={policy!r}: each of {OPERATIONS} at most once, e.g. "
                         f"{POLICY!r}.")
    return names


def _half_up(size: int, ratio: float) -> int:
    return int(size * ratio + 0.5)


def draw(policy: Sequence[str], batch: int, image_size: tuple[int, int],
         seed) -> dict[str, tf.Tensor]:
    """The parameters of `policy` for `batch` images of `image_size` (H, W), drawn from the
    stateless `seed` (an int64 pair): uniform factors as the official code's `torch.rand`,
    integer shifts and cutout centres as its `torch.randint`."""
    height, width = image_size
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=7)
    uniform = lambda i: tf.random.stateless_uniform([batch], seeds[i])  # noqa: E731
    params = {}
    if "color" in policy:
        params.update(brightness=uniform(0) - 0.5, saturation=uniform(1) * 2.0,
                      contrast=uniform(2) + 0.5)
    if "translation" in policy:
        shift_h, shift_w = _half_up(height, TRANSLATION_RATIO), _half_up(width, TRANSLATION_RATIO)
        params["shift_h"] = tf.random.stateless_uniform(
            [batch], seeds[3], minval=-shift_h, maxval=shift_h + 1, dtype=tf.int32)
        params["shift_w"] = tf.random.stateless_uniform(
            [batch], seeds[4], minval=-shift_w, maxval=shift_w + 1, dtype=tf.int32)
    if "cutout" in policy:
        cut_h, cut_w = _half_up(height, CUTOUT_RATIO), _half_up(width, CUTOUT_RATIO)
        params["cut_h"] = tf.random.stateless_uniform(
            [batch], seeds[5], minval=0, maxval=height + (1 - cut_h % 2), dtype=tf.int32)
        params["cut_w"] = tf.random.stateless_uniform(
            [batch], seeds[6], minval=0, maxval=width + (1 - cut_w % 2), dtype=tf.int32)
    return params


def apply(images: tf.Tensor, params: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """`images` [B, H, W, C] augmented with `params` from `draw` (policy order: color,
    translation, cutout; an operation runs when its parameters are present)."""
    x = images
    if "brightness" in params:
        x = _color(x, params)
    if "shift_h" in params:
        x = _translate(x, params["shift_h"], params["shift_w"])
    if "cut_h" in params:
        x = _cutout(x, params["cut_h"], params["cut_w"])
    return x


def _per_image(values: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    return tf.reshape(tf.cast(values, like.dtype), [-1, 1, 1, 1])


def _color(x: tf.Tensor, params: Mapping[str, tf.Tensor]) -> tf.Tensor:
    x = x + _per_image(params["brightness"], x)
    mean = tf.reduce_mean(x, axis=3, keepdims=True)  # over channels
    x = (x - mean) * _per_image(params["saturation"], x) + mean
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)  # over the whole image
    return (x - mean) * _per_image(params["contrast"], x) + mean


def _translate(x: tf.Tensor, shift_h: tf.Tensor, shift_w: tf.Tensor) -> tf.Tensor:
    """out[b, i, j] = padded[b, clip(i + shift_h[b] + 1), clip(j + shift_w[b] + 1)], with a
    1-pixel zero border: pixels shifted in from outside the image are 0."""
    height, width = x.shape[1], x.shape[2]
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    rows = tf.clip_by_value(tf.range(height)[None, :] + shift_h[:, None] + 1, 0, height + 1)
    cols = tf.clip_by_value(tf.range(width)[None, :] + shift_w[:, None] + 1, 0, width + 1)
    x = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(x, cols, axis=2, batch_dims=1)


def _cutout(x: tf.Tensor, centre_h: tf.Tensor, centre_w: tf.Tensor) -> tf.Tensor:
    """Zeroes rows [c_h - k_h // 2, c_h - k_h // 2 + k_h) x the same in columns of each image,
    k half the size (clipped to the image, as the official index clamping does)."""
    height, width = x.shape[1], x.shape[2]
    cut_h, cut_w = _half_up(height, CUTOUT_RATIO), _half_up(width, CUTOUT_RATIO)
    start_h = centre_h[:, None] - cut_h // 2
    start_w = centre_w[:, None] - cut_w // 2
    rows = tf.range(height)[None, :]
    cols = tf.range(width)[None, :]
    in_rows = (rows >= start_h) & (rows < start_h + cut_h)
    in_cols = (cols >= start_w) & (cols < start_w + cut_w)
    keep = tf.logical_not(in_rows[:, :, None] & in_cols[:, None, :])
    return x * tf.cast(keep, x.dtype)[:, :, :, None]
