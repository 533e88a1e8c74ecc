"""FID and IS of the same samples under the old and the new Inception conventions, side by side
(docs/ALGORITHM.md §9).

    python scripts/inception_change.py --inception_path=DIR --samples=S.npy \
        --reference=R.npy|R.npz [--num_samples=N] [--splits=10]

Old (`metrics.PIPELINE_VERSION` 1): uint8 levels mapped with level / 127.5 - 1, resized, and IS
from the model's own "logits" output. New (version 2, what `adapt_tf.evaluation.metrics`
computes): TF-GAN's (level - 128) / 128 after the resize, IS from pool_3 · W without the bias.

S.npy: images [N, H, W, 3], uint8 levels or float in [-1, 1]. R.npy: reference images (the same
kinds), whose statistics are computed under each convention; R.npz: fixed statistics {mu, sigma}
(e.g. the official fid_stats_cifar10_train.npz, computed with TTUR's (level - 128) / 128), used for
both, which shows what mixing the old input with the official statistics did.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from adapt_tf.evaluation import metrics

import tensorflow as tf


def as_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 levels or float images in [-1, 1] [N, H, W, 3] -> float32 in [-1, 1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 127.5 - 1.0
    return images.astype(np.float32)


def legacy_activations(model: metrics.InceptionModel, images: np.ndarray, *,
                       batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(pool_3 [N, F], logits [N, K]) float64 the pre-version-2 way: quantised levels mapped with
    level / 127.5 - 1, the TF1 bilinear resize, the model's own logits."""
    pools, logits = [], []
    for start in range(0, len(images), batch_size):
        batch = metrics.quantize_images(tf.constant(images[start:start + batch_size]))
        if tuple(batch.shape[1:3]) != model.image_size:
            batch = tf.raw_ops.ResizeBilinear(images=batch, size=model.image_size,
                                              align_corners=False, half_pixel_centers=False)
        pool, logit = model.module_outputs(batch)
        pools.append(pool.numpy().astype(np.float64))
        logits.append(logit.numpy().astype(np.float64))
    return np.concatenate(pools), np.concatenate(logits)


def compare(model: metrics.InceptionModel, samples: np.ndarray, reference: Any, *,
            splits: int = 10, batch_size: int = 100) -> dict[str, dict[str, float]]:
    """{"old": {fid, is_mean, is_std}, "new": {...}, "change": new - old} of `samples` (float32
    [N, H, W, 3] in [-1, 1]) against `reference`: images (the same kind; statistics under each
    convention) or fixed statistics (mu, sigma) used for both."""
    fixed = isinstance(reference, tuple)
    scores = {}
    for name, activations in (("old", legacy_activations), ("new", _new_activations)):
        pool, logits = activations(model, samples, batch_size=batch_size)
        stats = reference if fixed else metrics.statistics(
            activations(model, reference, batch_size=batch_size)[0])
        is_mean, is_std = metrics.inception_score(logits, from_logits=True, splits=splits)
        scores[name] = {"fid": metrics.frechet_distance(*metrics.statistics(pool), *stats),
                        "is_mean": is_mean, "is_std": is_std}
    scores["change"] = {key: scores["new"][key] - scores["old"][key] for key in scores["new"]}
    return scores


def _new_activations(model: metrics.InceptionModel, images: np.ndarray, *,
                     batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    return model.activations(images, batch_size=batch_size)


def _reference(path: str) -> Any:
    if path.endswith(".npz"):
        return metrics.load_statistics(path)
    return as_unit_range(np.load(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inception_path", required=True, help="Inception SavedModel directory")
    parser.add_argument("--samples", required=True, help=".npy images [N, H, W, 3]")
    parser.add_argument("--reference", required=True, help=".npy images or .npz statistics")
    parser.add_argument("--num_samples", type=int, default=None, help="default: all")
    parser.add_argument("--splits", type=int, default=10, help="IS splits (official: 10)")
    args = parser.parse_args()
    model = metrics.load_inception(args.inception_path)
    samples = as_unit_range(np.load(args.samples)[:args.num_samples])
    scores = compare(model, samples, _reference(args.reference), splits=args.splits)
    print(json.dumps({"inception": model.source, "is_logits (new)": model.is_logits,
                      "module_bias": model.module_bias, "num_samples": len(samples),
                      **scores}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
