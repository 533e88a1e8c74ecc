"""Exports round-trip: SavedModel (tf.saved_model.load, hub.load, hub.KerasLayer), masks baked
into kernels, TFLite with sparsity, checkpoint choice and errors, the CLI's error path.

The run is a tiny conditional BigGAN-32 built from gin_configs/test/tiny.gin through
`train_lib.build_run` with random weights (no training): a "best" checkpoint at iteration 3 and
a "last" one at iteration 5 with other weights.
"""
import os
import subprocess
import sys
from pathlib import Path

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras as keras

from adapt_tf.gan import architectures
from adapt_tf.runs import configurables, storage, train_lib
from adapt_tf import export
from adapt_tf.export import __main__ as export_cli
from adapt_tf.sparse import layers as L, topology

ROOT = Path(__file__).resolve().parent.parent
TINY_GIN = str(ROOT / "gin_configs" / "test" / "tiny.gin")
BINDINGS = ["train.architecture = 'biggan32'", "train.g_width = 4", "train.d_width = 4"]
BATCH = 5
SAMPLE_SEED = 11
# Exported kernels are the Keras kernels multiplied out in float32 and the graphs differ in
# op order; outputs are tanh images in [-1, 1], so rounding differences stay near 1e-6.
ATOL = 1e-5


def _randomize(models, seed: int) -> None:
    """Random weights (positive BN variances), kernels zero outside their masks."""
    rng = np.random.default_rng(seed)
    for model in models:
        masks = {id(layer.mask) for layer in L.masked_layers(model)}
        for weight in model.weights:
            if id(weight) in masks or weight.dtype != tf.float32:
                continue
            if "moving_variance" in weight.name:
                value = rng.uniform(0.5, 1.5, weight.shape)
            else:
                value = rng.normal(0.0, 0.2, weight.shape)
            weight.assign(value.astype(np.float32))
        L.apply_masks(L.masked_layers(model))


def _training_mode(model, inputs) -> np.ndarray:
    """model(inputs, training=True) with every variable put back afterwards."""
    saved = [v.numpy() for v in model.weights]
    images = model(inputs, training=True).numpy()
    for variable, value in zip(model.weights, saved):
        variable.assign(value)
    return images


def _reference(gan, y, x):
    """What the exports must reproduce, from the Keras models.

    `sampled` is what the sample grids and FID use: `gan.sample` on the z `z_sample`, in one
    batch, with batch statistics and one spectral-norm power iteration (BigGAN's G has SN).
    `images` is the EMA generator in inference mode (what the TFLite file computes), and
    `inference` the export's `__call__(training=False)`: moving statistics with the kernels
    of a training call.
    """
    ema = gan.ema_generator
    z = tf.random.stateless_normal([BATCH, gan.latent_dim], seed=[SAMPLE_SEED, 7919])
    return dict(
        z=z,
        images=ema([z, y], training=False).numpy(),
        inference=export.strip_masks(ema, power_iteration=True)([z, y], training=False).numpy(),
        sampled=gan.sample(BATCH, seed=SAMPLE_SEED, labels=y).numpy(),
        truncated=_training_mode(ema, [tf.clip_by_value(z, -0.5, 0.5), y]),
        logits=tf.reshape(gan.discriminator([x, y], training=False), [-1]).numpy(),
        masks={layer.name: layer.mask.numpy() for layer in L.masked_layers(ema)},
        densities={layer.name: layer.density for layer in L.masked_layers(ema)})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = configurables.parse_run_config([TINY_GIN], BINDINGS)
    (workdir / "operative_config.gin").write_text(gin.config_str())
    run = train_lib.build_run(config.run_spec(workdir=str(workdir)))
    gan = run.gan
    models = [gan.generator, gan.discriminator, gan.ema_generator]
    _randomize(models, seed=1)
    gan.step.assign(3)
    best = tf.train.CheckpointManager(run.checkpointer.checkpoint,
                                      str(workdir / "checkpoints_best"), max_to_keep=1)
    best.save(checkpoint_number=3)
    y = tf.constant([0, 3, 11, 7, 3], tf.int32)
    x = tf.random.stateless_uniform([BATCH, 32, 32, 3], seed=[3, 4], minval=-1, maxval=1)
    reference = _reference(gan, y, x)
    _randomize(models, seed=2)
    gan.step.assign(5)
    run.checkpointer.save()
    info = export_cli.export_run(str(workdir), discriminator=True)
    return dict(workdir=workdir, info=info, y=y, x=x, **reference)


def test_default_checkpoint_is_the_best_one(exported):
    info = exported["info"]
    assert info["step"] == 3 and "checkpoints_best" in info["checkpoint"]
    assert info["ema"] and info["layer_densities"] == pytest.approx(exported["densities"])
    assert export_cli.load_run(str(exported["workdir"]), checkpoint="last").iteration == 5


def test_serving_default_gives_the_images_of_the_grids_and_fid(exported):
    z, y = exported["z"], exported["y"]
    obj = tf.saved_model.load(exported["info"]["generator"])
    serve = obj.signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == {"z", "y", "truncation"}
    out = serve(z=z, y=y, truncation=tf.constant(0.0))["images"]
    np.testing.assert_allclose(out.numpy(), exported["sampled"], atol=ATOL)
    out = serve(z=z, y=y, truncation=tf.constant(0.5))["images"]
    np.testing.assert_allclose(out.numpy(), exported["truncated"], atol=ATOL)
    assert out.shape == (BATCH, 32, 32, 3) and np.all(np.abs(out.numpy()) <= 1.0)
    # Batch statistics, not the moving ones: the modes differ. Serving changed no variable:
    # inference mode (moving statistics) still gives its images.
    assert np.abs(exported["sampled"] - exported["inference"]).max() > 0.01
    np.testing.assert_allclose(obj([z, y]).numpy(), exported["inference"], atol=ATOL)


def test_hub_load_and_keras_layer_reproduce_the_generator(exported):
    z, y, path = exported["z"], exported["y"], exported["info"]["generator"]
    np.testing.assert_allclose(hub.load(path)([z, y]).numpy(), exported["inference"],
                               atol=ATOL)
    z_in = keras.Input((z.shape[1],))
    y_in = keras.Input((), dtype="int32")
    model = keras.Model([z_in, y_in], hub.KerasLayer(path)([z_in, y_in]))
    np.testing.assert_allclose(model([z, y]).numpy(), exported["inference"], atol=ATOL)


def test_exported_kernels_are_exactly_as_sparse_as_the_masks(exported):
    obj = tf.saved_model.load(exported["info"]["generator"])
    kernels = {v.name.split("/")[0]: v.numpy() for v in obj.variables
               if v.name.endswith("/kernel:0")}
    assert set(exported["masks"]) <= set(kernels)
    for name, mask in exported["masks"].items():
        assert np.all(kernels[name][mask == 0] == 0), name
        assert np.count_nonzero(kernels[name]) == mask.sum(), name
    assert len(obj.trainable_variables) < len(obj.variables)
    assert list(obj.regularization_losses) == []


def test_bookkeeping_attributes(exported):
    obj = tf.saved_model.load(exported["info"]["generator"])
    assert int(obj.latent_dim) == exported["z"].shape[1] and int(obj.num_classes) == 12
    assert obj.image_shape.numpy().tolist() == [32, 32, 3]
    densities = {name: float(v.numpy()) for name, v in obj.layer_densities.items()}
    assert densities == pytest.approx(exported["densities"])
    masks = exported["masks"].values()
    assert float(obj.density) == pytest.approx(sum(m.sum() for m in masks) /
                                               sum(m.size for m in masks))


def test_discriminator_export(exported):
    obj = tf.saved_model.load(exported["info"]["discriminator"])
    x, y = exported["x"], exported["y"]
    np.testing.assert_allclose(obj([x, y]).numpy(), exported["logits"], atol=1e-5)
    logits = obj.signatures["serving_default"](images=x, y=y)["logits"]
    np.testing.assert_allclose(logits.numpy(), exported["logits"], atol=1e-5)


@pytest.mark.filterwarnings("ignore:.*Interpreter is deprecated:UserWarning")
def test_tflite_keeps_the_sparsity(exported):
    sizes = exported["info"]["tflite"]
    assert os.path.getsize(sizes["path"]) == sizes["sparse_bytes"] < sizes["dense_bytes"]
    interpreter = tf.lite.Interpreter(model_path=sizes["path"])
    interpreter.allocate_tensors()
    inputs = {"z": exported["z"][:1].numpy(), "y": exported["y"][:1].numpy()}
    for detail in interpreter.get_input_details():
        key = "y" if detail["shape"].tolist() == [1] else "z"
        interpreter.set_tensor(detail["index"], inputs[key])
    interpreter.invoke()
    images = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(images, exported["images"][:1], atol=1e-4)


def test_unconditional_generator_export(tmp_path):
    generator, _ = architectures.build_models("sngan32", g_width=4, d_width=4)
    topology.sparsify(generator, 0.2, seed=3)
    _randomize([generator], seed=3)
    path = export.export_generator(generator, str(tmp_path / "g"))
    obj = tf.saved_model.load(path)
    z = tf.random.stateless_normal([3, 128], seed=[5, 6])
    reference = generator(z, training=False).numpy()
    np.testing.assert_allclose(obj(z).numpy(), reference, atol=ATOL)
    serve = obj.signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == {"z", "truncation"}
    np.testing.assert_allclose(serve(z=z, truncation=tf.constant(-1.0))["images"].numpy(),
                               _training_mode(generator, z), atol=ATOL)
    assert int(obj.num_classes) == 0


def test_bad_generator_arguments(tmp_path):
    generator, _ = architectures.build_models("biggan32", g_width=4, d_width=4, num_classes=3)
    with pytest.raises(ValueError, match="needs the class count"):
        export.export_generator(generator, str(tmp_path / "g"))
    with pytest.raises(ValueError, match="functional keras.Model"):
        export.strip_masks(keras.layers.Dense(3))


def test_checkpoint_errors(tmp_path, exported):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="does not exist"):
        storage.find_checkpoint(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="holds no checkpoint"):
        storage.find_checkpoint(str(empty))
    with pytest.raises(ValueError, match="No 'best' checkpoint.*--checkpoint=last"):
        storage.find_checkpoint(str(empty), "best")
    with pytest.raises(ValueError, match="No 'last' checkpoint"):
        storage.find_checkpoint(str(empty), "last")
    with pytest.raises(ValueError, match=r"No checkpoint at .*ckpt-7.*\.index"):
        storage.find_checkpoint(str(empty), str(empty / "ckpt-7"))
    with pytest.raises(ValueError, match="holds no checkpoint .*no 'checkpoint'"):
        storage.find_checkpoint(str(empty), str(empty))
    workdir = exported["workdir"]
    assert storage.find_checkpoint(str(workdir), "last").endswith("ckpt-5")
    prefix = str(workdir / "checkpoints" / "ckpt-5")
    assert storage.find_checkpoint(str(workdir), prefix) == prefix
    assert storage.find_checkpoint(str(workdir), str(workdir / "checkpoints")) == prefix


def test_cli_reports_a_workdir_without_checkpoints(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "adapt_tf.export", f"--workdir={tmp_path}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("adapt_tf.export: error: ") and "holds no checkpoint" in last
    assert "Writes `W/export/generator/`" not in result.stderr  # no docstring as usage


def test_128px_conditional_generator_exports_with_its_masks_baked_in(tmp_path):
    generator, _ = architectures.build_models("biggan128", g_width=4, d_width=8, num_classes=3)
    topology.sparsify(generator, 0.2, seed=4)
    _randomize([generator], seed=4)
    path = export.export_generator(generator, str(tmp_path / "g128"), num_classes=3)
    obj = tf.saved_model.load(path)
    z = tf.random.stateless_normal([2, 120], seed=[7, 8])
    y = tf.constant([0, 2])
    images = obj([z, y]).numpy()
    assert images.shape == (2, 128, 128, 3)
    # BigGAN's G is spectrally normalised: the export bakes one power iteration in.
    plain = export.strip_masks(generator, power_iteration=True)
    np.testing.assert_allclose(images, plain([z, y], training=False).numpy(), atol=ATOL)
    for layer in L.masked_layers(generator):
        np.testing.assert_array_equal(plain.get_layer(layer.name).kernel.numpy() != 0,
                                      (layer.kernel.numpy() * layer.mask.numpy()) != 0)
