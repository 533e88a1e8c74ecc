"""First-training time and real-data numbers of the classifier metric (`adapt_tf.
classifier_metric`) on `toy_shapes` (through the generic path: 12,000 train images at 32², its
1,200-image test split held out) and on a generated 64² image folder (toy_shapes images
drawn at 64² and written as PNG class folders; no test split: a slice of train is held out).
Each is trained anew in a temporary cache.

    python scripts/classifier_time.py [--per_class 250]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import PIL.Image

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from adapt_tf.evaluation import classifier_metric
from adapt_tf.data.datasets import toy_shapes


def _write_folder(root: str, *, per_class: int, size: int) -> str:
    """toy_shapes train images drawn at `size`², `per_class` of each of its 12 classes."""
    folder = os.path.join(root, "images")
    written = 0
    for images, labels in toy_shapes.draw_examples(0, per_class * len(toy_shapes.CLASS_NAMES),
                                                   size=size):
        for image, label in zip(images, labels):
            path = os.path.join(folder, toy_shapes.CLASS_NAMES[int(label)], f"{written:06d}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            PIL.Image.fromarray(image).save(path)
            written += 1
    return folder


def _timed(dataset: str, *, image_size: int, cache_dir: str) -> dict:
    start = time.perf_counter()
    _, reference = classifier_metric.load_classifier(dataset, image_size=image_size,
                                                     cache_dir=cache_dir)
    return {"dataset": dataset.split("/")[-1], "first_use_seconds": time.perf_counter() - start,
            **reference.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per_class", type=int, default=250,
                        help="images per class of the 64² folder (12 classes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        results = [_timed("toy_shapes", image_size=32, cache_dir=os.path.join(root, "c1"))]
        folder = _write_folder(root, per_class=args.per_class, size=64)
        results.append(_timed(f"folder:{folder}", image_size=64,
                              cache_dir=os.path.join(root, "c2")))
    for result in results:
        print(json.dumps({k: v for k, v in result.items() if k != "classifier"}))


if __name__ == "__main__":
    main()
