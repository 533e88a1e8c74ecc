"""tfds builders that the TFDS catalog lacks; importing this package registers them with tfds.

- `toy_shapes` (`ToyShapes`): adapt_tf's default dataset, drawn locally, no download.
- `tiny_imagenet` (`TinyImagenet`): the official tiny-imagenet-200 archive, downloaded by tfds
  or read from a manual_dir.
"""

from __future__ import annotations

from adapt_tf.data.datasets.tiny_imagenet import TinyImagenet
from adapt_tf.data.datasets.toy_shapes import ToyShapes

__all__ = ["TinyImagenet", "ToyShapes"]
