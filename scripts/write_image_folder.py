"""Writes a dataset's training split as a folder of PNG images, one sub-folder per class (its
names), so that it can be trained on through the `folder:` route (`train.dataset = 'folder:OUT'`).

    python scripts/write_image_folder.py --dataset toy_shapes --out /tmp/toy_shapes_png
    python scripts/write_image_folder.py --dataset toy_shapes --out /tmp/toy64 --image_size 64

The images pass through `adapt_tf.data` (RGB, centre-cropped, resized to --image_size), in the
split's order; an unlabelled split is written flat. Refuses a non-empty --out.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import PIL.Image
import tensorflow as tf


def write_folder(dataset: str, out: str, *, image_size: int | None = None,
                 data_dir: str | None = None) -> int:
    """Writes every example of the training split under `out` (class folders named by the
    dataset's class names, or flat); returns the count."""
    import tensorflow_datasets as tfds

    from adapt_tf import data

    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"--out {out!r} is not empty; choose a new directory.")
    spec = data.dataset_info(dataset, data_dir=data_dir)
    ds = data.make_dataset(dataset, batch_size=1, image_size=image_size, flip=False,
                           conditional=spec.num_classes is not None, data_dir=data_dir)
    names = spec.class_names
    if names is None and spec.num_classes is not None:  # a registry name: tfds' label names
        names = tfds.builder(spec.tfds_name, data_dir=data_dir).info.features[
            spec.label_key].names
    # The first epoch of the permuted stream visits every example once.
    for index, element in enumerate(ds.take(spec.num_examples)):
        images, labels = element if isinstance(element, tuple) else (element, None)
        folder = out if labels is None else os.path.join(out, names[int(labels[0])])
        os.makedirs(folder, exist_ok=True)
        pixels = np.rint((images[0].numpy() + 1.0) * 127.5).astype(np.uint8)
        PIL.Image.fromarray(pixels).save(os.path.join(folder, f"{index:07d}.png"))
    return index + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="toy_shapes")
    parser.add_argument("--out", required=True)
    parser.add_argument("--image_size", type=int, default=None)
    parser.add_argument("--data_dir", default=None)
    arguments = parser.parse_args()
    tf.config.set_visible_devices([], "GPU")
    count = write_folder(arguments.dataset, arguments.out, image_size=arguments.image_size,
                         data_dir=arguments.data_dir)
    print(f"Wrote {count} images to {arguments.out}")


if __name__ == "__main__":
    main()
