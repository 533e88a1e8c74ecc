"""Tests of adapt_tf.gan.architectures: official parameter counts, masked/dense split, shapes, init.

Parameter counts are the official PyTorch models' (YiteWang/ADAPT `sparselearning/backbones`),
recomputed by hand layer by layer; "total" is PyTorch's sum(p.numel() for p in
model.parameters()) = our trainable weights (BN running stats, SN u vectors and masks excluded),
"masked" the kernels of masked_layers(model).
"""
from __future__ import annotations

import numpy as np
import pytest

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from adapt_tf import _compat
from adapt_tf.gan import architectures as A
from adapt_tf.gan.architectures import biggan, blocks
from adapt_tf.sparse.layers import MaskedLayer, apply_masks, masked_layers

import tensorflow as tf
import tf_keras as keras

# (total, masked) per model; the official BigGAN-64 masked counts include one attention gain
# per network, which stays a dense scalar here (see biggan.py).
OFFICIAL_COUNTS = {
    "sngan32": ((4_276_739, 4_266_752), (1_053_824, 1_052_544)),
    "sngan48": ((4_878_083, 4_855_488), (19_542_721, 19_536_768)),
    "biggan32": ((4_304_387, 4_266_752), (4_207_361, 4_201_984)),
    "biggan64": ((17_335_204, 16_219_761 - 1), (30_796_722, 30_533_281 - 1)),
}
TINY_WIDTHS = {"sngan32": (8, 8), "sngan48": (4, 4), "biggan32": (2, 2), "biggan64": (4, 8)}


def _size(variables) -> int:
    return sum(int(np.prod(v.shape)) for v in variables)


def _counts(model) -> tuple[int, int]:
    return _size(model.trainable_weights), _size(layer.kernel for layer in masked_layers(model))


def _tiny(name: str, seed: int = 0):
    g_width, d_width = TINY_WIDTHS[name]
    return A.build_models(name, g_width=g_width, d_width=d_width, seed=seed)


def _inputs(arch: A.Architecture, batch: int = 2, seed: int = 0):
    z = tf.random.stateless_normal([batch, arch.latent_dim], seed=[seed, 1])
    y = tf.constant(np.arange(batch) % arch.num_classes, tf.int32) if arch.conditional else None
    return z, y


def _call(model, main, y):
    return model([main, y] if y is not None else main, training=False)


@pytest.fixture(scope="module")
def tiny_models():
    return {name: _tiny(name) for name in A.ARCHITECTURES}


# --------------------------------------------------------------------------- registry


def test_registry_names_and_records():
    assert sorted(A.ARCHITECTURES) == ["biggan32", "biggan64", "sngan32", "sngan48"]
    assert [(a.image_size, a.latent_dim, a.conditional, a.num_classes)
            for a in A.ARCHITECTURES.values()] == [
        (32, 128, False, None), (48, 128, False, None), (32, 128, True, 10),
        (64, 100, True, 200)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="dcgan"), "biggan32"),
    (dict(name="sngan32", num_classes=10), "unconditional"),
    (dict(name="sngan32", g_width=0), "width"),
    (dict(name="sngan32", seed=-1), "seed"),
])
def test_bad_arguments_raise_value_error_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        A.build_models(**kwargs)


def test_builder_keywords_are_checked():
    with pytest.raises(ValueError, match="multiple of 5"):
        A.ARCHITECTURES["biggan64"].build_generator(width=4, num_classes=3, latent_dim=99)


# --------------------------------------------------------------------------- official counts


@pytest.mark.parametrize("name", list(OFFICIAL_COUNTS))
def test_full_size_parameter_counts_equal_the_official_models(name, monkeypatch):
    # Counts depend on shapes only: swap the orthogonal init (a QR of every kernel, ~15 s at
    # BigGAN-64 size on CPU) for a cheap one. Orthogonality is tested at tiny width below.
    monkeypatch.setattr(biggan, "ORTHOGONAL", blocks.NORMAL_002)
    arch = A.ARCHITECTURES[name]
    generator, discriminator = A.build_models(name)
    assert (_counts(generator), _counts(discriminator)) == OFFICIAL_COUNTS[name]
    size = arch.image_size
    assert generator.output_shape == (None, size, size, 3)
    assert discriminator.output_shape == (None,)
    for model in (generator, discriminator):
        assert not any(v.trainable for layer in masked_layers(model) for v in [layer.mask])
        assert _size(model.weights) > _size(model.trainable_weights)  # masks, stats, u


def test_trainable_count_excludes_masks_bn_statistics_and_sn_vectors(tiny_models):
    generator, discriminator = tiny_models["biggan64"]
    for model, expected in ((generator, {"mask", "sn_u", "moving_mean", "moving_variance"}),
                            (discriminator, {"mask", "sn_u"})):
        names = [v.name for v in model.trainable_weights]
        assert not [n for n in names if any(k in n for k in ("mask", "moving_", "sn_u"))]
        non_trainable = {v.name.split("/")[-1].split(":")[0] for v in model.non_trainable_weights}
        assert non_trainable == expected


# --------------------------------------------------------------------------- masked vs dense


# Dense (unmasked) weight-bearing layers per model: (G, D) counts by kind.
EXPECTED_DENSE_LAYERS = {
    "sngan32": ({}, {}),
    "sngan48": ({}, {}),
    # G: 3 blocks x 2 CBN x (gain, bias) embeddings; D: classifier + projection embedding.
    "biggan32": ({"Embedding": 12}, {"SNDense": 1, "SNEmbedding": 1}),
    # G: shared embedding, 4 blocks x 2 CBN x (gain, bias) SN linears, attention gain;
    # D: projection embedding, attention gain.
    "biggan64": ({"Embedding": 1, "SNDense": 16, "ScaledResidual": 1},
                 {"SNEmbedding": 1, "ScaledResidual": 1}),
}
EXPECTED_MASKED_LAYERS = {"sngan32": (11, 11), "sngan48": (11, 16), "biggan32": (11, 10),
                          "biggan64": (18, 20)}


def _dense_weight_layers(model) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for layer in _compat.flatten_layers(model, include_self=False):
        if layer.trainable_weights and not isinstance(
                layer, (MaskedLayer, keras.layers.BatchNormalization)):
            kinds[type(layer).__name__] = kinds.get(type(layer).__name__, 0) + 1
    return kinds


@pytest.mark.parametrize("name", list(A.ARCHITECTURES))
def test_masked_set_is_every_conv_and_linear_kernel_but_the_official_exclusions(
        name, tiny_models):
    for model, dense, n_masked in zip(tiny_models[name], EXPECTED_DENSE_LAYERS[name],
                                      EXPECTED_MASKED_LAYERS[name]):
        masked = masked_layers(model)
        assert len(masked) == n_masked
        assert _dense_weight_layers(model) == dense
        masked_kernels = {id(layer.kernel) for layer in masked}
        biases = {id(layer.bias) for layer in masked if layer.use_bias}
        for variable in model.trainable_weights:
            if id(variable) in masked_kernels | biases:
                continue
            # Everything else: BN affine params, embeddings, CBN / classifier linears, gamma.
            short = variable.name.split("/")[-1].split(":")[0]
            assert short in {"gamma", "beta", "embeddings", "kernel", "bias"}, variable.name
        for layer in masked:
            assert layer.mask.shape == layer.kernel.shape
            assert float(tf.reduce_min(layer.mask)) == 1.0  # dense until topology.sparsify


def test_cbn_batch_norms_have_no_affine_and_settings_follow_the_references(tiny_models):
    for name, (generator, discriminator) in tiny_models.items():
        epsilon = 1e-4 if name == "biggan64" else 1e-5
        for layer in generator.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                assert layer.momentum == 0.9 and layer.epsilon == pytest.approx(epsilon)
                affine = "cbn" not in layer.name
                assert layer.center == affine and layer.scale == affine
        sn_g = name.startswith("biggan")
        sn_eps = 1e-6 if name == "biggan64" else 1e-12
        assert all(layer.spectral_norm == sn_g for layer in masked_layers(generator))
        assert all(layer.spectral_norm and layer.sn_eps == sn_eps
                   for layer in masked_layers(discriminator))


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("name", list(A.ARCHITECTURES))
def test_tiny_forward_shapes_dtypes_and_ranges(name, tiny_models):
    arch = A.ARCHITECTURES[name]
    generator, discriminator = tiny_models[name]
    z, y = _inputs(arch)
    images = _call(generator, z, y)
    assert images.shape == (2, arch.image_size, arch.image_size, 3)
    assert images.dtype == tf.float32
    assert float(tf.reduce_max(tf.abs(images))) <= 1.0
    assert float(tf.math.reduce_std(images)) > 0.0
    logits = _call(discriminator, images, y)
    assert logits.shape == (2,) and logits.dtype == tf.float32
    assert np.all(np.isfinite(logits.numpy()))


@pytest.mark.parametrize("name", ["biggan32", "biggan64"])
def test_conditional_models_depend_on_the_labels(name, tiny_models):
    arch = A.ARCHITECTURES[name]
    generator, discriminator = tiny_models[name]
    z, _ = _inputs(arch)
    y0, y1 = tf.constant([0, 0]), tf.constant([1, 1])
    images = _call(generator, z, y0)
    assert not np.allclose(images.numpy(), _call(generator, z, y1).numpy())
    assert not np.allclose(_call(discriminator, images, y0).numpy(),
                           _call(discriminator, images, y1).numpy())


def test_biggan64_generator_reads_all_five_latent_chunks(tiny_models):
    arch = A.ARCHITECTURES["biggan64"]
    generator, _ = tiny_models["biggan64"]
    z, y = _inputs(arch)
    base = _call(generator, z, y).numpy()
    for chunk in range(5):
        shifted = z.numpy().copy()
        shifted[:, 20 * chunk:20 * (chunk + 1)] += 1.0
        assert not np.allclose(_call(generator, tf.constant(shifted), y).numpy(), base)


# --------------------------------------------------------------------------- init


def _matrices(model):
    return [layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
            for layer in masked_layers(model)]


def test_sngan32_uses_pytorch_default_init(tiny_models):
    for model in tiny_models["sngan32"]:
        for layer in masked_layers(model):
            bound = 1.0 / np.sqrt(np.prod(layer.kernel.shape[:-1]))
            assert np.abs(layer.kernel.numpy()).max() <= bound
            if layer.use_bias:
                assert np.abs(layer.bias.numpy()).max() <= bound
                assert np.abs(layer.bias.numpy()).max() > 0


def test_sngan48_uses_kaiming_normal_with_zero_biases(tiny_models):
    for model in tiny_models["sngan48"]:
        for layer in masked_layers(model):
            if layer.use_bias:
                assert not np.any(layer.bias.numpy())
        widest = max(masked_layers(model), key=lambda layer: int(np.prod(layer.kernel.shape)))
        fan_in = np.prod(widest.kernel.shape[:-1])
        assert np.std(widest.kernel.numpy()) == pytest.approx(np.sqrt(2 / fan_in), rel=0.05)


def test_biggan32_uses_normal_002(tiny_models):
    generator, discriminator = tiny_models["biggan32"]
    kernels = np.concatenate([m.ravel() for model in (generator, discriminator)
                              for m in _matrices(model)])
    assert np.std(kernels) == pytest.approx(0.02, rel=0.03)
    tables = [layer.embeddings.numpy() for layer in generator.layers
              if isinstance(layer, keras.layers.Embedding)]
    assert np.std(np.concatenate([t.ravel() for t in tables])) == pytest.approx(0.02, rel=0.1)


def test_biggan64_uses_orthogonal_init_and_zero_biases_and_gains(tiny_models):
    for model in tiny_models["biggan64"]:
        for matrix in _matrices(model):
            small = matrix.T @ matrix if matrix.shape[0] >= matrix.shape[1] else matrix @ matrix.T
            np.testing.assert_allclose(small, np.eye(len(small)), atol=1e-4)
        assert not any(np.any(layer.bias.numpy())
                       for layer in masked_layers(model) if layer.use_bias)
        gains = [layer.gamma for layer in model.layers if isinstance(layer, blocks.ScaledResidual)]
        assert len(gains) == 1 and float(gains[0]) == 0.0


def test_same_seed_same_weights_other_seed_other_weights(tiny_models):
    built = tiny_models["sngan32"][1]  # width 8, seed 0
    build = A.ARCHITECTURES["sngan32"].build_discriminator
    again, other = build(width=8, seed=0), build(width=8, seed=1)
    for a, b in zip(built.trainable_weights, again.trainable_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(built.trainable_weights[0].numpy(), other.trainable_weights[0].numpy())


# --------------------------------------------------------------------------- primitives


def test_nearest_upsample_and_sum_pool_match_numpy():
    x = np.arange(2 * 3 * 2 * 4, dtype=np.float32).reshape(2, 3, 2, 4)
    up = blocks.NearestUpsample()(x).numpy()
    np.testing.assert_array_equal(up, np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))
    np.testing.assert_array_equal(blocks.GlobalSumPool()(x).numpy(), x.sum(axis=(1, 2)))


@pytest.mark.parametrize("batch", [4, None])
def test_nearest_upsample_trains_bit_for_bit_as_tf_repeat(batch):
    """Values and gradient equal `tf.repeat`'s exactly inside a traced function (Grappler on),
    where the input also feeds another consumer, as a G block's input feeds its shortcut: a
    form whose pair sums joined the other consumer's gradient in one sum rounds otherwise.
    `batch=None`: a traced batch of unknown size (a Keras model's symbolic call)."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=[4, 3, 5, 6]).astype(np.float32))
    weight = tf.constant(rng.normal(size=[4, 6, 10, 6]).astype(np.float32))
    other = tf.constant(rng.normal(size=[4, 3, 5, 6]).astype(np.float32))

    def gradients(upsample):
        @tf.function(input_signature=[tf.TensorSpec([batch, 3, 5, 6])], autograph=False)
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(upsample(x) * weight) + tf.reduce_sum(tf.sin(x) * other)
            return upsample(x), tape.gradient(loss, x)
        return [t.numpy() for t in run(x)]

    ours = gradients(blocks.NearestUpsample())
    repeat = gradients(lambda h: tf.repeat(tf.repeat(h, 2, axis=1), 2, axis=2))
    np.testing.assert_array_equal(ours[0], repeat[0])
    np.testing.assert_array_equal(ours[1], repeat[1])


def test_nearest_upsample_builds_a_short_graph_when_the_shape_is_known():
    """The reason it is not `tf.repeat` (64 ops here): every step that calls G traces it."""
    up = blocks.NearestUpsample()
    graph = tf.function(up, autograph=False).get_concrete_function(
        tf.TensorSpec([4, 3, 5, 6])).graph
    assert len(graph.get_operations()) <= 12


def test_conditional_affine_is_one_plus_gain_times_x_plus_bias():
    rng = np.random.default_rng(0)
    x, gain, bias = (rng.normal(size=s).astype(np.float32) for s in ([2, 3, 3, 4], [2, 4], [2, 4]))
    out = blocks.ConditionalAffine()([x, gain, bias]).numpy()
    np.testing.assert_allclose(out, x * (1 + gain[:, None, None]) + bias[:, None, None],
                               rtol=1e-6)


def test_attention_map_matches_a_numpy_softmax_attention():
    rng = np.random.default_rng(1)
    theta = rng.normal(size=[2, 4, 4, 3]).astype(np.float32)
    phi = rng.normal(size=[2, 2, 2, 3]).astype(np.float32)
    g = rng.normal(size=[2, 2, 2, 5]).astype(np.float32)
    q, k, v = theta.reshape(2, 16, 3), phi.reshape(2, 4, 3), g.reshape(2, 4, 5)
    logits = q @ k.transpose(0, 2, 1)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    expected = (weights @ v).reshape(2, 4, 4, 5)
    np.testing.assert_allclose(blocks.AttentionMap()([theta, phi, g]).numpy(), expected,
                               rtol=1e-5, atol=1e-6)
    # Two matmuls per sample: [16, 3] x [3, 4] and [16, 4] x [4, 5].
    assert blocks.AttentionMap().attention_macs([[2, 4, 4, 3], [2, 2, 2, 3], [2, 2, 2, 5]]) == (
        16 * 4 * 3 + 16 * 4 * 5)


def test_scaled_residual_starts_as_identity():
    x, o = np.ones([1, 2, 2, 3], np.float32), np.full([1, 2, 2, 3], 4.0, np.float32)
    layer = blocks.ScaledResidual()
    np.testing.assert_array_equal(layer([x, o]).numpy(), x)
    layer.gamma.assign(0.5)
    np.testing.assert_array_equal(layer([x, o]).numpy(), x + 2.0)


# --------------------------------------------------------------------------- training


def test_one_optimizer_step_trains_every_weight_and_keeps_the_masks():
    arch = A.ARCHITECTURES["biggan64"]
    generator, discriminator = _tiny("biggan64", seed=1)
    rng = np.random.default_rng(0)
    for layer in masked_layers([generator, discriminator]):
        layer.mask.assign((rng.random(layer.kernel.shape) < 0.5).astype(np.float32))
    apply_masks(masked_layers([generator, discriminator]))
    z, y = _inputs(arch)
    real = tf.random.stateless_uniform([2, 64, 64, 3], seed=[0, 2], minval=-1, maxval=1)
    with tf.GradientTape(persistent=True) as tape:
        fake = generator([z, y], training=True)
        d_loss = (tf.reduce_mean(tf.nn.relu(1 - discriminator([real, y], training=True)))
                  + tf.reduce_mean(tf.nn.relu(1 + discriminator([fake, y], training=True))))
        g_loss = -tf.reduce_mean(discriminator([fake, y], training=True))
    for model, loss in ((discriminator, d_loss), (generator, g_loss)):
        before = [v.numpy() for v in model.trainable_weights]
        grads = tape.gradient(loss, model.trainable_weights)
        assert all(g is not None and np.all(np.isfinite(tf.convert_to_tensor(g).numpy()))
                   for g in grads)
        keras.optimizers.Adam(1e-3).apply_gradients(zip(grads, model.trainable_weights))
        moved = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_weights)]
        assert sum(moved) >= len(moved) // 2
        for layer in masked_layers(model):
            assert not np.any(layer.kernel.numpy()[layer.mask.numpy() == 0])
    assert np.isfinite(float(d_loss)) and np.isfinite(float(g_loss))
    del tape


def test_builder_keywords_and_float32_outputs_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        arch = A.ARCHITECTURES["sngan32"]
        generator = arch.build_generator(width=4, latent_dim=16)
        discriminator = arch.build_discriminator(width=4)
        attention = blocks.AttentionMap()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert generator.input_shape == (None, 16)
    assert discriminator.input_shape == (None, 32, 32, 3)
    assert generator.get_layer("g_block1_conv1").compute_dtype == "float16"
    images = generator(tf.random.stateless_normal([1, 16], seed=[0, 3]), training=True)
    logits = discriminator(images, training=True)
    assert images.dtype == tf.float32 and logits.dtype == tf.float32
    assert np.all(np.isfinite(images.numpy())) and np.all(np.isfinite(logits.numpy()))
    # Large float16 logits would overflow a float16 softmax's exp.
    theta = tf.fill([1, 2, 2, 8], tf.constant(30.0, tf.float16))
    mixed = attention([theta, theta[:, :1, :1], tf.ones([1, 1, 1, 4], tf.float16)])
    assert mixed.dtype == tf.float16
    np.testing.assert_array_equal(mixed.numpy(), np.ones([1, 2, 2, 4], np.float16))


# --------------------------------------------------------------------------- other sizes

# (total, masked) of G and D at the default widths (ch 64 for SNGAN; BigGAN-48 ch 80 with 10
# classes, BigGAN-128/256 ch 96 with 1000). Hand check of BigGAN-256's G against BigGAN-128's:
# the extra 8ch stage and the 20 extra z dims of the seventh chunk.
FAMILY_COUNTS = {
    "sngan64": ((12_220_675, 12_195_520), (19_542_721, 19_536_768)),
    "sngan128": ((32_150_787, 32_118_464), (38_419_137, 38_411_136)),
    "sngan256": ((37_135_107, 37_099_200), (43_401_409, 43_391_872)),
    "biggan48": ((17_122_724, 16_040_560), (30_553_522, 30_533_280)),
    "biggan128": ((70_433_988, 68_084_256), (87_982_370, 86_434_368)),
    "biggan256": ((82_235_844, 79_429_152), (99_225_890, 97_675_584)),
}


def test_family_members_by_size_and_a_clear_error_for_other_sizes():
    assert A.architecture("sngan32", image_size=48) is A.ARCHITECTURES["sngan48"]
    assert A.architecture("biggan64", image_size=32) is A.ARCHITECTURES["biggan32"]
    assert A.architecture("sngan48") is A.ARCHITECTURES["sngan48"]
    for family in ("sngan", "biggan"):
        for size in A.RESOLUTIONS:
            arch = A.architecture(f"{family}32", image_size=size)
            assert (arch.name, arch.image_size, arch.family) == (f"{family}{size}", size, family)
    assert [A.architecture("biggan32", image_size=s).latent_dim for s in A.RESOLUTIONS] == [
        128, 100, 100, 120, 140]
    with pytest.raises(ValueError, match=r"image_size=96.*\[32, 48, 64, 128, 256\]"):
        A.architecture("sngan32", image_size=96)
    with pytest.raises(ValueError, match="unknown architecture 'sngan96'"):
        A.build_models("sngan96")


@pytest.mark.parametrize("name", list(FAMILY_COUNTS))
def test_full_size_counts_of_the_other_sizes(name, monkeypatch):
    monkeypatch.setattr(biggan, "ORTHOGONAL", blocks.NORMAL_002)  # shapes only, as above
    generator, discriminator = A.build_models(name)
    assert (_counts(generator), _counts(discriminator)) == FAMILY_COUNTS[name]
    size = A.architecture(name).image_size
    assert generator.output_shape == (None, size, size, 3)


def _g_block(i: int, o: int, cond: int = 148) -> int:
    """A BigGAN up-block's weights: two CBNs (bias-free gain/bias linears from the 148-d
    [shared; chunk] input), two 3×3 convs and the 1×1 shortcut with biases."""
    return 2 * cond * (i + o) + (9 * i * o + o) + (9 * o * o + o) + (i * o + o)


def _attention(c: int) -> int:
    return 2 * c * (c // 8) + 2 * c * (c // 2) + 1  # theta, phi, g, out convs and the gain


def test_biggan256_generator_count_follows_from_biggan128s_by_hand():
    # 256² adds an 8ch -> 8ch stage (ch 96) and attends at 64² on 4ch instead of 2ch.
    (g128, _), _ = FAMILY_COUNTS["biggan128"]
    (g256, _), _ = FAMILY_COUNTS["biggan256"]
    assert g256 - g128 == _g_block(768, 768) + _attention(384) - _attention(192)


@pytest.mark.parametrize("name, d_out_side", [("sngan64", 2), ("sngan128", 4), ("sngan256", 4),
                                              ("biggan48", 3), ("biggan128", 4),
                                              ("biggan256", 4)])
def test_tiny_other_sizes_run_forward_and_attend_at_the_reference_side(name, d_out_side):
    arch = A.architecture(name)
    generator, discriminator = A.build_models(name, g_width=4, d_width=8, num_classes=3
                                              if arch.conditional else None)
    z = tf.random.stateless_normal([2, arch.latent_dim], seed=[0, 1])
    y = tf.constant([0, 2]) if arch.conditional else None
    images = _call(generator, z, y)
    assert images.shape == (2, arch.image_size, arch.image_size, 3)
    logits = _call(discriminator, images, y)
    assert logits.shape == (2,) and np.all(np.isfinite(logits.numpy()))
    last = [layer for layer in discriminator.layers if layer.name.startswith("d_block")][-1]
    assert last.output_shape[1] == d_out_side
    if arch.family == "biggan":
        for prefix, model in (("g", generator), ("d", discriminator)):
            attention = model.get_layer(f"{prefix}_attention_map")
            assert attention.output_shape[1] == min(64, arch.image_size // 2)
