"""Tiny ImageNet (tiny-imagenet-200) as a tfds builder: 64x64 RGB, 200 classes.

Source: the official CS231n archive http://cs231n.stanford.edu/tiny-imagenet-200.zip (~237 MB),
downloaded by tfds or read from a manual_dir holding either the zip or its extracted
`tiny-imagenet-200/` folder (or that folder's contents). Splits:

- `train`: 100,000 images, 500 per class, from `train/<wnid>/images/*.JPEG`;
- `validation`: 10,000 images labelled by `val/val_annotations.txt`.

The archive's `test` images carry no labels and are not included. Labels index the wnids in
sorted order, as torchvision's `ImageFolder` (the official ADAPT loader) numbers them; the
ClassLabel names are the wnids. The few grayscale JPEGs are converted to RGB (as PIL's
`convert("RGB")` in that loader does) and re-encoded as JPEG; the RGB ones are stored as
the archive's original bytes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds
from etils import epath

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ARCHIVE_NAME = "tiny-imagenet-200.zip"
FOLDER_NAME = "tiny-imagenet-200"
IMAGE_SIZE = 64
NUM_CLASSES = 200

MANUAL_INSTRUCTIONS = f"""\
Download {URL} on a machine with internet access and place either the zip itself
({ARCHIVE_NAME}) or its extracted folder ({FOLDER_NAME}/, holding wnids.txt, train/ and val/)
in manual_dir.
"""


def find_local_source(manual_dir: epath.PathLike) -> epath.Path | None:
    """The zip or extracted root (a folder holding wnids.txt) inside `manual_dir`, else None."""
    manual = epath.Path(manual_dir)
    for candidate in (manual / FOLDER_NAME, manual):
        if (candidate / "wnids.txt").exists():
            return candidate
    if (manual / ARCHIVE_NAME).exists():
        return manual / ARCHIVE_NAME
    return None


def _read_wnids(root: epath.Path) -> list[str]:
    return sorted(line.strip() for line in (root / "wnids.txt").read_text().splitlines()
                  if line.strip())


def _train_files(root: epath.Path, wnids: list[str]) -> Iterator[tuple[epath.Path, str]]:
    for wnid in wnids:
        for path in sorted((root / "train" / wnid / "images").iterdir()):
            if path.suffix.upper() == ".JPEG":
                yield path, wnid


def _validation_files(root: epath.Path) -> Iterator[tuple[epath.Path, str]]:
    """Rows of val_annotations.txt: file name, wnid, then four box coordinates (tab-separated)."""
    for line in (root / "val" / "val_annotations.txt").read_text().splitlines():
        if line.strip():
            file_name, wnid = line.split("\t")[:2]
            yield root / "val" / "images" / file_name, wnid


def _encodable_image(path: epath.Path):
    """The JPEG bytes as they are when RGB, else the image converted to an RGB array."""
    data = path.read_bytes()
    with PIL.Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG" and image.mode == "RGB":
            return io.BytesIO(data)
        return np.asarray(image.convert("RGB"))


class TinyImagenet(tfds.core.GeneratorBasedBuilder):
    """Tiny ImageNet 200: 64x64 images of 200 ImageNet classes (100k train, 10k validation)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: train and labelled validation splits."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                                             encoding_format="jpeg"),
                # Names (the wnids) are set from the archive in _split_generators.
                "label": tfds.features.ClassLabel(),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
            homepage="http://cs231n.stanford.edu/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = self._source_root(dl_manager)
        wnids = _read_wnids(root)
        self.info.features["label"].names = wnids
        label_of = {wnid: i for i, wnid in enumerate(wnids)}
        return {
            "train": self._generate_examples(_train_files(root, wnids), label_of),
            "validation": self._generate_examples(_validation_files(root), label_of),
        }

    def _source_root(self, dl_manager: tfds.download.DownloadManager) -> epath.Path:
        """The extracted tiny-imagenet-200 folder: from manual_dir when it has one, else the URL."""
        manual_dir = _manual_dir_or_none(dl_manager)
        if manual_dir is None:
            return dl_manager.download_and_extract(URL) / FOLDER_NAME
        source = find_local_source(manual_dir)
        if source is None:
            raise ValueError(
                f"tiny_imagenet: manual_dir {os.fspath(manual_dir)} holds neither {ARCHIVE_NAME} "
                f"nor {FOLDER_NAME}/wnids.txt. {MANUAL_INSTRUCTIONS}")
        if source.name == ARCHIVE_NAME:
            return dl_manager.extract(source) / FOLDER_NAME
        return source

    def _generate_examples(self, files: Iterator[tuple[epath.Path, str]],
                           label_of: dict[str, int]):
        for path, wnid in files:
            if wnid not in label_of:
                raise ValueError(f"tiny_imagenet: {path} has wnid {wnid!r}, absent from wnids.txt")
            yield path.name, {"image": _encodable_image(path), "label": label_of[wnid],
                              "file_name": path.name}


def _manual_dir_or_none(dl_manager: tfds.download.DownloadManager) -> epath.Path | None:
    """dl_manager.manual_dir, or None when no manual_dir exists (tfds raises then)."""
    try:
        return dl_manager.manual_dir
    except AssertionError:
        return None
