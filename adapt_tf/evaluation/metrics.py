"""Inception features, FID and Inception Score (docs/ALGORITHM.md §9).

`FeatureModel` is the interface the feature, statistics and FID functions below use; the
Inception model is one, `adapt_tf.evaluation.toy_metric.ToyClassifier` (the offline metric of
`toy_shapes`) another.

The paper's numbers come from the TTUR TensorFlow FID (pool_3 of the 2015 Inception graph) and
the OpenAI improved-GAN Inception Score (softmax of the same graph's 1008 logits, 10 splits),
on 50,000 samples written to PNG and read back. Here the model is, by default, TF-GAN's TF-Hub
export of that Inception graph (`DEFAULT_INCEPTION_HANDLE`): called on float32
[B, 299, 299, 3] images in [-1, 1], it returns {"pool_3": [B, 2048], "logits": [B, 1008]}.
`load_inception` also takes a local SavedModel directory with the same interface (a
`__call__` or a signature returning those two keys); feature and class counts and the input
size are read from the model, not assumed.

Image pipeline, as the reference pipelines do it (docs/ALGORITHM.md §9): images in [-1, 1] are
quantised to the 256 levels of a uint8 PNG (x * 127.5 + 127.5, truncated, as `.to(torch.uint8)`
does; optional), and those levels go through TF-GAN's `preprocess_image`, the preprocessing of
the 2015 graph: a bilinear resize of the float levels to the model's input size with the TF1
resize op (no half-pixel centres, no corner alignment), then (level - 128) / 128.
`PIPELINE_VERSION` names this convention; cached statistics carry it.

Inception Score logits, as the official `inception_score.py`: softmax of pool_3 · W, without the
logits layer's bias. W is found in the model (`softmax_weight`); a model without a findable W is
scored from its own "logits" output, and `InceptionModel.is_logits` says which was used.

Offline: a handle is loaded from the TF-Hub cache ($TFHUB_CACHE_DIR, default
<tmp>/tfhub_modules) when present; otherwise one download is attempted with a short socket
timeout, and failure raises `InceptionUnavailableError` saying how to provide the model. Nothing
is ever skipped silently.

Distribution: features are computed by a `tf.function` on the default device, from the
cross-replica context (where Keras callbacks run); a generator built under a strategy's scope
can be sampled there directly. Reference statistics are computed once and cached as .npz.
"""
from __future__ import annotations

import abc
import hashlib
import math
import os
import socket
import tempfile
from typing import Any, Callable, Iterable, Iterator, Mapping, Union

from absl import logging
import numpy as np
from scipy import linalg
import tensorflow as tf

from adapt_tf.checks import positive_int

__all__ = [
    "DEFAULT_INCEPTION_HANDLE",
    "InceptionUnavailableError",
    "FeatureModel",
    "PIPELINE_VERSION",
    "uint8_levels",
    "quantize_images",
    "inception_input",
    "softmax_weight",
    "InceptionModel",
    "load_inception",
    "statistics",
    "save_statistics",
    "load_statistics",
    "frechet_distance",
    "inception_score",
    "compute_fid",
    "compute_fid_and_is",
    "reference_statistics",
]

DEFAULT_INCEPTION_HANDLE = "https://tfhub.dev/tensorflow/tfgan/eval/inception/1"
DEFAULT_IMAGE_SIZE = 299  # TF-GAN's INCEPTION_DEFAULT_IMAGE_SIZE, used when the model is silent.
# Version of the Inception input convention (1: x / 127.5 - 1 before the resize and the module's
# logits; 2: TF-GAN's (level - 128) / 128 and pool_3 · W). Cached statistics are keyed by it.
PIPELINE_VERSION = 2
IS_FROM_WEIGHT = "pool_3 · W (no bias)"
IS_FROM_MODULE = "the model's logits output (bias unknown)"
POOL_KEY = "pool_3"
LOGITS_KEY = "logits"

Source = Union[np.ndarray, tf.Tensor, tf.data.Dataset, Iterable[Any], Callable[[int], Any]]
Reference = Union[str, os.PathLike, tuple]


class InceptionUnavailableError(RuntimeError):
    """The Inception model could not be loaded (offline, wrong path); the message says how to
    provide it."""


def _hub_cache_dir() -> str:
    return os.environ.get("TFHUB_CACHE_DIR") or os.path.join(tempfile.gettempdir(),
                                                             "tfhub_modules")


def _how_to_provide(handle: str) -> str:
    cache = os.path.join(_hub_cache_dir(), hashlib.sha1(handle.encode("utf8")).hexdigest())
    return (
        "To provide the model: on a machine with internet run\n"
        f"    python -c \"import tensorflow_hub as hub; print(hub.resolve('{handle}'))\"\n"
        "and copy the printed directory (a SavedModel holding saved_model.pb) here, then either\n"
        "  * pass it as inception_path=<that directory>, or\n"
        f"  * put its contents at {cache}\n"
        "    (the TF-Hub cache for this handle: $TFHUB_CACHE_DIR/<sha1 of the handle>; "
        f"TFHUB_CACHE_DIR is {os.environ.get('TFHUB_CACHE_DIR')!r}).")


def _is_remote(handle: str) -> bool:
    return handle.startswith(("http://", "https://", "gs://"))


def _resolve(handle: str, timeout: float) -> str:
    """A local SavedModel directory for `handle`, downloading (once, with a timeout) if needed."""
    if not _is_remote(handle):
        if not any(os.path.isfile(os.path.join(handle, name))
                   for name in ("saved_model.pb", "saved_model.pbtxt")):
            raise InceptionUnavailableError(
                f"no SavedModel at inception_path={handle!r} (expected {handle}/saved_model.pb)."
                f"\n{_how_to_provide(DEFAULT_INCEPTION_HANDLE)}")
        return handle

    import tensorflow_hub as hub

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        return hub.resolve(handle)
    except Exception as error:  # urllib, HTTP and tar errors all mean the same to the user.
        raise InceptionUnavailableError(
            f"could not load the Inception model {handle!r}: it is not in the TF-Hub cache and "
            f"downloading it failed ({type(error).__name__}: {error}).\n"
            f"{_how_to_provide(handle)}") from error
    finally:
        socket.setdefaulttimeout(previous)


def _flatten(x: tf.Tensor) -> tf.Tensor:
    return tf.reshape(x, [tf.shape(x)[0], -1])


def uint8_levels(images: tf.Tensor) -> tf.Tensor:
    """Images float32 in [-1, 1] -> the float32 levels {0, ..., 255} of a uint8 PNG:
    x * 127.5 + 127.5 truncated, as the official `.to(torch.uint8)` (the 1e-3 keeps exact
    levels exact under float rounding)."""
    levels = tf.floor(tf.clip_by_value(images * 127.5 + 127.5, 0.0, 255.0) + 1e-3)
    return tf.minimum(levels, 255.0)


def quantize_images(images: tf.Tensor) -> tf.Tensor:
    """Images float32 in [-1, 1] rounded to their uint8 levels and mapped back to [-1, 1]."""
    return uint8_levels(images) / 127.5 - 1.0


def inception_input(images: tf.Tensor, *, size: tuple[int, int],
                    quantize: bool = True) -> tf.Tensor:
    """What the Inception graph is fed: images float32 [B, H, W, 3] in [-1, 1] -> float32
    [B, *size, 3] in [-1, 1).

    TF-GAN's `preprocess_image` (the 2015 graph's own preprocessing) on the uint8 levels (or, if
    not `quantize`, the continuous levels x * 127.5 + 127.5): `tf.compat.v1.image.resize`
    BILINEAR of the float levels, i.e. the TF1 op without half-pixel centres or corner
    alignment, then (level - 128) / 128.
    """
    levels = uint8_levels(images) if quantize else images * 127.5 + 127.5
    if tuple(levels.shape[1:3]) != tuple(size):  # TF1's resize returns equal sizes as they are.
        levels = tf.raw_ops.ResizeBilinear(images=levels, size=size, align_corners=False,
                                           half_pixel_centers=False)
    return (levels - 128.0) / 128.0


class FeatureModel(abc.ABC):
    """An image classifier seen as a feature extractor: images -> (features, logits).

    Subclasses implement `_forward(images, quantize)` on one checked batch of float32
    [B, H, W, 3] images in [-1, 1], returning (features [B, F], logits [B, K]) float32 (with
    `quantize_images` first when `quantize`), and set `feature_dim`, `num_classes`, `source`.
    `activations` runs it over many images; `compute_fid` and `reference_statistics` take any
    FeatureModel: the Inception of FID, or `adapt_tf.evaluation.toy_metric.ToyClassifier`.
    """

    feature_dim: int
    num_classes: int
    source: str

    def __call__(self, images: Any, *, quantize: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
        """One batch: images float32 [B, H, W, 3] in [-1, 1] -> (features [B, F], logits
        [B, K]), float32. 1-channel images are repeated to 3; `quantize` as `activations`."""
        return self._forward(_check_images(images), quantize=quantize)

    @abc.abstractmethod
    def _forward(self, images: tf.Tensor, quantize: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """(features [B, F], logits [B, K]) float32 of one checked batch (see the class)."""

    def activations(self, source: Source, *, num_samples: int | None = None,
                    batch_size: int = 100,
                    quantize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Features (pool_3 for Inception) and logits of many images, float64 [N, F]
        and [N, K].

        Args:
          source: images [N, H, W, 3] in [-1, 1] (NumPy or tensor); a tf.data.Dataset or any
            iterable of such batches (or of (images, labels) / {"image": ...} elements); or a
            function n -> images [n, H, W, 3], e.g. `lambda n: generator(tf.random.normal([n,
            128]), training=True)` (the paper samples the EMA generator in train mode).
          num_samples: how many images to use; all of an array or dataset by default, required
            for a function. A source with fewer images raises ValueError.
          batch_size: images per model call (the official eval batch is 100).
          quantize: round to uint8 levels first, as the official PNG round trip does.
        """
        pools, logits, seen = [], [], 0
        for batch in _batches(source, num_samples=num_samples, batch_size=batch_size):
            pool, logit = self(batch, quantize=quantize)
            pools.append(pool.numpy().astype(np.float64))
            logits.append(logit.numpy().astype(np.float64))
            seen += len(pools[-1])
        if num_samples is not None and seen < num_samples:
            raise ValueError(f"source yielded {seen} images, fewer than num_samples="
                             f"{num_samples}; pass a larger source or a smaller num_samples")
        if not pools:
            raise ValueError("source yielded no images")
        return np.concatenate(pools), np.concatenate(logits)


class InceptionModel(FeatureModel):
    """An Inception classifier: images -> (pool_3 features, IS logits).

    Build it with `load_inception`. Attributes: `image_size` (H, W) the model is fed,
    `feature_dim`, `num_classes`, `source` (where it was loaded from), `is_logits` (what the
    IS logits are: `IS_FROM_WEIGHT`, pool_3 · W as the official `inception_score.py`, or
    `IS_FROM_MODULE` when the model holds no findable W) and `module_bias` (max |bias| of the
    model's own logits output over pool_3 · W; NaN when W was not found).
    """

    def __init__(self, module: Any, *, image_size: int | tuple[int, int] | None = None,
                 source: str = ""):
        self._module = module  # Keeps the restored variables alive.
        self._fn, input_hw = _callable_of(module)
        size = image_size if image_size is not None else (input_hw or DEFAULT_IMAGE_SIZE)
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.source = source
        pool, logits = self.module_outputs(tf.zeros([1, *self.image_size, 3]))
        self.feature_dim = int(pool.shape[-1])
        self.num_classes = int(logits.shape[-1])
        weight, self.module_bias = softmax_weight(module, self.module_outputs,
                                                  image_size=self.image_size)
        self.is_logits = IS_FROM_MODULE if weight is None else IS_FROM_WEIGHT
        if weight is None:
            logging.warning("Inception model %r: no softmax weight [%d, %d] found, so the "
                            "Inception Score uses its 'logits' output, which may include a "
                            "bias (docs/ALGORITHM.md §9).", source, self.feature_dim,
                            self.num_classes)
        self._weight = None if weight is None else tf.constant(weight, tf.float32)

    def module_outputs(self, prepared: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The model on already prepared input (`inception_input`), float32 [B, *image_size,
        3] -> (pool_3 [B, F], the model's own "logits" output [B, K])."""
        outputs = self._fn(prepared)
        missing = {POOL_KEY, LOGITS_KEY} - set(outputs)
        if missing:
            raise ValueError(f"Inception model {self.source!r} outputs {sorted(outputs)}, "
                             f"lacking {sorted(missing)}; it needs 'pool_3' and 'logits'")
        return _flatten(outputs[POOL_KEY]), _flatten(outputs[LOGITS_KEY])

    @tf.function(reduce_retracing=True)
    def _forward(self, images: tf.Tensor, quantize: bool) -> tuple[tf.Tensor, tf.Tensor]:
        prepared = inception_input(tf.cast(images, tf.float32), size=self.image_size,
                                   quantize=quantize)
        pool, logits = self.module_outputs(prepared)
        if self._weight is not None:
            logits = tf.matmul(pool, self._weight)  # The official IS: no bias.
        return pool, logits


def softmax_weight(module: Any, outputs: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]], *,
                   image_size: tuple[int, int]) -> tuple[np.ndarray | None, float]:
    """The logits layer's weight W [F, K] of an Inception module, as the official
    `inception_score.py` takes it (the second input of `softmax/logits/MatMul`), and the max
    |bias| of the module's logits over pool_3 · W; (None, NaN) if no W is found.

    Candidates are the [F, K] variables and constants of the module's functions (TF2 modules
    hold variables, frozen TF1 graphs constants). A candidate is W if logits - pool_3 · W is
    the same row (the bias) for two different inputs; exactly one candidate may pass.
    `outputs` maps prepared images [B, *image_size, 3] to (pool_3 [B, F], logits [B, K]).
    """
    probe = tf.reshape(tf.linspace(-1.0, 1.0, 2 * image_size[0] * image_size[1] * 3),
                       [2, *image_size, 3])
    pool, logits = (t.numpy().astype(np.float64) for t in outputs(
        tf.concat([tf.zeros([1, *image_size, 3]), probe], 0)))
    shape = (pool.shape[1], logits.shape[1])
    found = []
    for weight in _weight_candidates(module, shape):
        bias = logits - pool @ weight
        tolerance = 1e-3 * (1.0 + np.abs(logits).max())  # float32 round-off of the matmuls
        if np.abs(bias - bias[:1]).max() <= tolerance:
            found.append((weight, float(np.abs(bias).max())))
    if len(found) > 1:
        raise ValueError(f"the Inception module has {len(found)} weights of shape {shape} that "
                         "fit its logits; pass a model with one softmax layer")
    return found[0] if found else (None, math.nan)


def _weight_candidates(module: Any, shape: tuple[int, int]) -> list[np.ndarray]:
    """The distinct [F, K] variables and Const tensors of the module's functions."""
    candidates = []
    for function in _concrete_functions(module):
        candidates += [v.numpy() for v in function.variables if tuple(v.shape) == shape]
        graph = function.graph.as_graph_def()
        nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
        for node in nodes:
            if node.op == "Const":
                tensor = node.attr["value"].tensor
                if tuple(d.size for d in tensor.tensor_shape.dim) == shape:
                    candidates.append(tf.make_ndarray(tensor))
    unique = []
    for weight in candidates:
        if not any(np.array_equal(weight, seen) for seen in unique):
            unique.append(weight.astype(np.float64))
    return unique


def _concrete_functions(module: Any) -> list:
    call = getattr(module, "__call__", None)
    concrete = list(getattr(call, "concrete_functions", None) or [])
    return concrete or list(dict(getattr(module, "signatures", {})).values())


def _callable_of(module: Any) -> tuple[Callable[[tf.Tensor], Mapping], tuple[int, int] | None]:
    """The module's image -> outputs function and its static input size, if any."""
    call = getattr(module, "__call__", None)
    concrete = getattr(call, "concrete_functions", None)
    if concrete:
        spec = tf.nest.flatten(concrete[0].structured_input_signature)[0]
        return call, _static_size(spec.shape)
    signatures = dict(getattr(module, "signatures", {}))
    if not signatures:
        raise ValueError(f"{module!r} has neither a __call__ function nor signatures; load a "
                         "SavedModel whose call returns {'pool_3', 'logits'}")
    name = next((n for n in ("default", "serving_default") if n in signatures),
                sorted(signatures)[0])
    signature = signatures[name]
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise ValueError(f"signature {name!r} takes inputs {sorted(inputs)}; an Inception "
                         "model takes one image batch")
    (input_name, spec), = inputs.items()
    return (lambda images: signature(**{input_name: images})), _static_size(spec.shape)


def _static_size(shape: tf.TensorShape) -> tuple[int, int] | None:
    if shape.rank == 4 and shape[1] is not None and shape[2] is not None:
        return int(shape[1]), int(shape[2])
    return None


def load_inception(inception_path: str | os.PathLike | None = None, *,
                   handle: str = DEFAULT_INCEPTION_HANDLE,
                   image_size: int | tuple[int, int] | None = None,
                   timeout: float = 30.0) -> InceptionModel:
    """Loads the Inception classifier for FID/IS.

    Args:
      inception_path: a local SavedModel directory; overrides `handle`.
      handle: a TF-Hub handle (URL) or local path; default TF-GAN's Inception, whose numbers
        compare with the paper's.
      image_size: the input size fed to the model; default the model's static input size, else
        299.
      timeout: seconds a download may wait on the network before failing.

    Raises:
      InceptionUnavailableError: the model is not cached and cannot be downloaded, or the path
        holds no SavedModel; the message says how to provide it.
    """
    import tensorflow_hub as hub

    target = os.fspath(inception_path) if inception_path is not None else handle
    # hub.load is tf.saved_model.load plus the tags of TF1 Hub-format modules.
    module = hub.load(_resolve(target, timeout))
    return InceptionModel(module, image_size=image_size, source=target)


# ------------------------------------------------------------------------------ image sources


def _check_images(images: Any) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [B, H, W, 3] (or 1 channel), got shape {images.shape}")
    images = tf.cast(images, tf.float32)
    low, high = float(tf.reduce_min(images)), float(tf.reduce_max(images))
    if low < -1.001 or high > 1.001:
        raise ValueError(f"images must be in [-1, 1], got values in [{low:.3g}, {high:.3g}]; "
                         "map uint8 images with x / 127.5 - 1")
    if images.shape[-1] == 1:
        images = tf.repeat(images, 3, axis=-1)
    return images


def _image_part(element: Any) -> Any:
    if isinstance(element, Mapping):
        if "image" not in element:
            raise ValueError(f"dataset elements are dicts without 'image': {sorted(element)}")
        return element["image"]
    if isinstance(element, (tuple, list)):
        return element[0]
    return element


def _batches(source: Source, *, num_samples: int | None,
             batch_size: int) -> Iterator[tf.Tensor]:
    """Batches of at most batch_size images, num_samples in all (if given)."""
    positive_int("batch_size", batch_size)
    if num_samples is not None:
        positive_int("num_samples", num_samples)
    remaining = num_samples
    for batch in _raw_batches(source, num_samples=num_samples, batch_size=batch_size):
        batch = tf.convert_to_tensor(_image_part(batch))
        if remaining is not None:
            batch = batch[:remaining]
            remaining -= int(batch.shape[0])
        if int(batch.shape[0]):
            yield batch
        if remaining == 0:
            return


def _raw_batches(source: Source, *, num_samples: int | None, batch_size: int) -> Iterable:
    if isinstance(source, (np.ndarray, tf.Tensor)):
        total = int(source.shape[0]) if num_samples is None else min(num_samples,
                                                                     int(source.shape[0]))
        return (source[i:i + batch_size] for i in range(0, total, batch_size))
    if isinstance(source, tf.data.Dataset):
        element = tf.nest.flatten(_image_part(source.element_spec))[0]
        return source.batch(batch_size) if element.shape.rank == 3 else source
    if callable(source):
        if num_samples is None:
            raise ValueError("num_samples is required when the source is a function n -> images")
        return (source(min(batch_size, num_samples - i))
                for i in range(0, num_samples, batch_size))
    return source


# -------------------------------------------------------------------------------- statistics


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and unbiased covariance [F, F] of features [N, F], float64 (TTUR's mu, sigma)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, F], got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def save_statistics(path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray) -> None:
    """Writes {mu, sigma} as .npz, the format of TTUR's and GNGAN's statistics files."""
    mu, sigma = _check_statistics(mu, sigma, where=os.fspath(path))
    directory = os.path.dirname(os.fspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=directory)
    with os.fdopen(fd, "wb") as f:
        np.savez(f, mu=mu, sigma=sigma)
    os.replace(tmp, path)


def load_statistics(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Reads (mu [F], sigma [F, F]) float64 from a .npz with keys 'mu' and 'sigma', e.g. the
    official fid_stats_cifar10_train.npz."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"no statistics file at {path!r}; compute it with "
                         "reference_statistics(..., cache_path=...) or download the official "
                         ".npz (docs/USAGE.md: Evaluating)")
    with np.load(path) as data:
        missing = {"mu", "sigma"} - set(data.files)
        if missing:
            raise ValueError(f"{path!r} has keys {sorted(data.files)}, lacking "
                             f"{sorted(missing)}; FID statistics files hold 'mu' and 'sigma'")
        return _check_statistics(data["mu"], data["sigma"], where=path)


def _check_statistics(mu, sigma, *, where: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"statistics of {where!r}: mu must be [F] and sigma [F, F], got "
                         f"{mu.shape} and {sigma.shape}")
    return mu, sigma


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, *, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)), in float64.

    As TTUR and pytorch-fid: if the matrix square root is not finite (near-singular product),
    retry with eps * I added to both covariances; a complex root whose diagonal has imaginary
    parts above 1e-3 raises ValueError, smaller ones are dropped.
    """
    mu1, sigma1 = _check_statistics(mu1, sigma1, where="first")
    mu2, sigma2 = _check_statistics(mu2, sigma2, where="second")
    if mu1.shape != mu2.shape:
        raise ValueError(f"statistics differ in size: {mu1.shape} vs {mu2.shape}; compute both "
                         "with the same Inception model")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.max(np.abs(np.diagonal(covmean).imag))
        if imaginary > 1e-3:
            raise ValueError(f"sqrt(sigma1 sigma2) has an imaginary component {imaginary:.3g}; "
                             "the covariances are not positive semi-definite (too few samples?)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def inception_score(predictions: np.ndarray, *, from_logits: bool,
                    splits: int = 10) -> tuple[float, float]:
    """Inception Score, mean and std over splits (OpenAI improved-GAN formula).

    For each of `splits` consecutive chunks: exp(mean over x of KL(p(y|x) || p(y))), with p(y)
    the chunk's mean prediction.

    Args:
      predictions: [N, K] logits (from_logits=True) or class probabilities (rows summing to 1).
      from_logits: whether predictions are logits (softmax applied here, in float64).
      splits: number of chunks; N must be at least splits.
    """
    p = np.asarray(predictions, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < splits or splits < 1:
        raise ValueError(f"predictions must be [N >= splits, K] with splits >= 1, got shape "
                         f"{p.shape} and splits={splits}")
    if from_logits:
        p = np.exp(p - p.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
    elif p.min() < 0 or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probabilities must be >= 0 with rows summing to 1; pass "
                         "from_logits=True for logits")
    n = p.shape[0]
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        # xlogy: 0 * log 0 = 0, so one-hot predictions are fine.
        kl = _xlogy(part, part) - _xlogy(part, np.broadcast_to(marginal, part.shape))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    nonzero = x > 0
    out[nonzero] = x[nonzero] * np.log(y[nonzero])
    return out


# ---------------------------------------------------------------------------------- FID / IS


def _reference(reference: Reference) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(reference, (str, os.PathLike)):
        return load_statistics(reference)
    if isinstance(reference, tuple) and len(reference) == 2:
        return _check_statistics(*reference, where="reference")
    raise ValueError(f"reference must be a .npz path or a (mu, sigma) tuple, got "
                     f"{type(reference).__name__}")


def compute_fid(source: Source, reference: Reference, *, model: FeatureModel,
                num_samples: int | None = None, batch_size: int = 100) -> float:
    """FID of images (see `InceptionModel.activations` for `source`) against reference
    statistics: a .npz path or (mu, sigma). The paper uses 50,000 EMA-generator samples."""
    pool, _ = model.activations(source, num_samples=num_samples, batch_size=batch_size)
    return frechet_distance(*statistics(pool), *_reference(reference))


def compute_fid_and_is(source: Source, reference: Reference, *, model: InceptionModel,
                       num_samples: int | None = None, batch_size: int = 100,
                       splits: int = 10,
                       test_reference: Reference | None = None) -> dict[str, float]:
    """FID and Inception Score from one pass over the same images, as the official validate:
    {"fid", "is_mean", "is_std"}, and "fid_test" against `test_reference` if given (the
    official `also_test`: the same features against a second reference)."""
    pool, logits = model.activations(source, num_samples=num_samples, batch_size=batch_size)
    is_mean, is_std = inception_score(logits, from_logits=True, splits=splits)
    mu, sigma = statistics(pool)
    scores = {"fid": frechet_distance(mu, sigma, *_reference(reference)),
              "is_mean": is_mean, "is_std": is_std}
    if test_reference is not None:
        scores["fid_test"] = frechet_distance(mu, sigma, *_reference(test_reference))
    return scores


def reference_statistics(dataset: str | Source, *, model: FeatureModel | None,
                         split: str | None = None, num_examples: int | None = None,
                         batch_size: int = 100, cache_path: str | os.PathLike | None = None,
                         data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of a dataset's Inception features, cached as .npz.

    If `cache_path` exists it is loaded and nothing else happens (so `model` may be None).
    Otherwise the statistics are computed, written to `cache_path` (if given) and returned.

    Args:
      dataset: a dataset name of `adapt_tf.data.DATASETS`, read through
        `adapt_tf.data.make_dataset` without flips (its first epoch visits every example
        once); or any image source `InceptionModel.activations` takes (array,
        tf.data.Dataset, ...).
      model: the Inception model.
      split: the tfds split; default the dataset's training split, which is the paper's
        reference (CIFAR-10 train, STL-10 unlabelled, TinyImageNet train; docs/ALGORITHM.md §9).
      num_examples: images to use; default the whole split (or source).
      batch_size: images per Inception call.
      cache_path: .npz to read or write.
      data_dir: tfds data directory.
    """
    if cache_path is not None and os.path.isfile(cache_path):
        return load_statistics(cache_path)
    if model is None:
        raise ValueError(f"no statistics cached at {cache_path!r}, so a model is needed; pass "
                         "model=load_inception(...)")
    if isinstance(dataset, str):
        dataset, num_examples = _tfds_source(dataset, split=split, num_examples=num_examples,
                                             batch_size=batch_size, data_dir=data_dir)
    pool, _ = model.activations(dataset, num_samples=num_examples, batch_size=batch_size)
    mu, sigma = statistics(pool)
    if cache_path is not None:
        save_statistics(cache_path, mu, sigma)
    return mu, sigma


def _tfds_source(name: str, *, split: str | None, num_examples: int | None, batch_size: int,
                 data_dir: str | None) -> tuple[Any, int]:
    from adapt_tf import data

    dataset = data.make_dataset(name, split=split, batch_size=batch_size, flip=False,
                                data_dir=data_dir)
    if num_examples is None:
        spec = data.dataset_info(name)
        if split is None or split == spec.split:
            num_examples = spec.num_examples
        else:
            import tensorflow_datasets as tfds

            info = tfds.builder(spec.tfds_name, data_dir=data_dir).info
            num_examples = info.splits[split].num_examples
    return dataset, num_examples
