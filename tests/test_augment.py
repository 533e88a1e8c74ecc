"""Tests of adapt_tf.gan.augment (DiffAugment) against a NumPy transcription of the official
PyTorch operations (NCHW index arithmetic, loops), on parameters drawn by `draw`."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from adapt_tf.gan import augment

B, H, W, C = 6, 8, 10, 3


def _official(x_nhwc: np.ndarray, p: dict) -> np.ndarray:
    """The official DiffAugment with given random draws, in NCHW like its code."""
    x = np.transpose(x_nhwc, (0, 3, 1, 2)).astype(np.float64)
    if "brightness" in p:
        x = x + p["brightness"][:, None, None, None]
        mean = x.mean(axis=1, keepdims=True)
        x = (x - mean) * p["saturation"][:, None, None, None] + mean
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * p["contrast"][:, None, None, None] + mean
    if "shift_h" in p:
        padded = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
        out = np.empty_like(x)
        for b in range(B):
            for i in range(H):
                for j in range(W):
                    gi = min(max(i + p["shift_h"][b] + 1, 0), H + 1)
                    gj = min(max(j + p["shift_w"][b] + 1, 0), W + 1)
                    out[b, :, i, j] = padded[b, :, gi, gj]
        x = out
    if "cut_h" in p:
        ch, cw = int(H * 0.5 + 0.5), int(W * 0.5 + 0.5)
        mask = np.ones((B, H, W))
        for b in range(B):
            for t in range(ch):
                for u in range(cw):
                    gi = min(max(t + p["cut_h"][b] - ch // 2, 0), H - 1)
                    gj = min(max(u + p["cut_w"][b] - cw // 2, 0), W - 1)
                    mask[b, gi, gj] = 0
        x = x * mask[:, None]
    return np.transpose(x, (0, 2, 3, 1))


def _images(seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(B, H, W, C)).astype(np.float32)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", augment.POLICY])
def test_apply_matches_the_official_operations(policy):
    names = augment.parse_policy(policy)
    images = _images()
    for seed in range(5):  # several draws: shifts both ways, cutouts at the borders
        params = augment.draw(names, B, (H, W), [7, seed])
        ours = augment.apply(tf.constant(images), params).numpy()
        reference = _official(images, {k: v.numpy() for k, v in params.items()})
        # Color averages in float32 here and float64 there: a few ulps of values in [-3, 3].
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)


def test_draws_are_in_the_official_ranges_deterministic_and_seeded():
    names = augment.parse_policy(augment.POLICY)
    params = {k: v.numpy() for k, v in augment.draw(names, 4096, (H, W), [1, 2]).items()}
    assert set(params) == {"brightness", "saturation", "contrast", "shift_h", "shift_w",
                           "cut_h", "cut_w"}
    for key, (low, high) in {"brightness": (-0.5, 0.5), "saturation": (0, 2),
                             "contrast": (0.5, 1.5)}.items():
        assert low <= params[key].min() and params[key].max() < high
    # 1/8 of 8 is 1 pixel, of 10 rounds to 1; cutout centres in [0, H + 1 - ch % 2).
    assert set(params["shift_h"]) == {-1, 0, 1} and set(params["shift_w"]) == {-1, 0, 1}
    assert set(params["cut_h"]) == set(range(H + 1)) and set(params["cut_w"]) == set(range(W))
    again = augment.draw(names, 4096, (H, W), [1, 2])
    other = augment.draw(names, 4096, (H, W), [1, 3])
    assert all(np.array_equal(params[k], again[k].numpy()) for k in params)
    assert not np.array_equal(params["brightness"], other["brightness"].numpy())


def test_apply_compiles_under_xla_and_is_differentiable():
    names = augment.parse_policy(augment.POLICY)
    params = augment.draw(names, B, (H, W), [3, 4])
    images = tf.constant(_images(1))
    compiled = tf.function(augment.apply, jit_compile=True)
    np.testing.assert_allclose(compiled(images, params).numpy(),
                               augment.apply(images, params).numpy(), atol=1e-5)
    with tf.GradientTape() as tape:
        tape.watch(images)
        total = tf.reduce_sum(augment.apply(images, params) ** 2)
    grad = tape.gradient(total, images).numpy()
    assert np.isfinite(grad).all() and np.any(grad != 0)
    cut = augment.draw(("cutout",), B, (H, W), [3, 4])
    with tf.GradientTape() as tape:
        tape.watch(images)
        kept = augment.apply(images, cut)
        total = tf.reduce_sum(kept)
    grad = tape.gradient(total, images).numpy()  # 1 where a pixel is kept, 0 where cut out
    np.testing.assert_array_equal(grad, (kept.numpy() != 0).astype(np.float32))
    assert 0 < grad.mean() < 1


@pytest.mark.parametrize("policy, expected", [
    (None, None), ("", None), ("color", ("color",)),
    ("color, cutout", ("color", "cutout"))])
def test_policies_parse(policy, expected):
    assert augment.parse_policy(policy) == expected


@pytest.mark.parametrize("policy", ["colour", "color,color", 3])
def test_bad_policies_name_the_value_and_the_choices(policy):
    with pytest.raises(ValueError, match="diff_aug="):
        augment.parse_policy(policy)
