"""Test helpers: image folders and tfds datasets made on the spot (adapt_tf.data's URIs)."""
from __future__ import annotations

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

COLOURS = ((220, 20, 20), (20, 220, 20), (20, 20, 220))


def png(path, array: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(array).save(path)
    return path


def class_folder(root, *, per_class: int = 4, size: int = 8,
                 names=("b_cls", "a_cls", "c_cls")):
    """Class folders made out of sorted order. The image of example id = label * per_class + k
    is COLOURS[label] with pixel [0, 0] = (id, id, id): batches can be read back exactly."""
    folder = root / "images"
    for name in names:
        label = sorted(names).index(name)
        for k in range(per_class):
            image = np.empty((size, size, 3), np.uint8)
            image[:] = COLOURS[label]
            image[0, 0] = label * per_class + k
            png(folder / name / f"{k:03d}.png", image)
    return folder


def store_tfds(data_dir, name: str, *, image: bool = True):
    """A tfds dataset made here: 9 train and 3 test examples; example i is a grey 12x10 image
    of value 20 * i ("picture") with the class label i % 3 ("digit")."""
    def examples(start, stop):
        return [(i, {**({"picture": np.full((12, 10, 1), 20 * i, np.uint8)} if image else {}),
                     "digit": i % 3, "id": i}) for i in range(start, stop)]

    features = tfds.features.FeaturesDict({
        **({"picture": tfds.features.Image(shape=(12, 10, 1))} if image else {}),
        "digit": tfds.features.ClassLabel(names=["zero", "one", "two"]), "id": np.int32})
    tfds.dataset_builders.store_as_tfds_dataset(
        name=name, version="1.0.0", features=features, config="grey", data_dir=str(data_dir),
        split_datasets={"train": examples(0, 9), "test": examples(9, 12)})
