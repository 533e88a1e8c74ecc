"""Every gin file parses, names a real method/architecture/dataset, and builds its models."""
from __future__ import annotations

from pathlib import Path

import gin
import pytest

from adapt_tf.gan import architectures
from adapt_tf.runs import configurables, methods, paper
from adapt_tf import data
from adapt_tf.sparse import layers as L

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p for p in (ROOT / "gin_configs").rglob("*.gin")
                 if "experiments" in p.parts or p.name in ("quickstart.gin", "tiny.gin"))
TINY_WIDTH = {"sngan32": 8, "sngan48": 4, "biggan32": 4, "biggan64": 8}


def _bound(name):
    try:
        return gin.query_parameter(name)
    except ValueError:
        return None


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "gin_configs")))
def test_config_parses_and_describes_a_run(path):
    gin.clear_config()
    configurables.parse_config([str(path)], ["DENSITY = 0.2"])
    assert _bound("train.architecture") in architectures.ARCHITECTURES
    assert _bound("train.dataset") in data.DATASETS
    assert isinstance(_bound("train.total_steps"), int)
    with gin.config_scope(None):
        method = gin.get_configurable("method")()
    assert method.name in methods.METHODS
    if method.name != "dense":
        assert method.g_density == pytest.approx(0.2)
    if "experiments" in path.parts:
        header = path.read_text().splitlines()[:3]
        assert header[0].startswith("# ") and "Paper FID" in header[1]
        assert header[2].startswith("# Command: python -m adapt_tf.train")


@pytest.mark.parametrize("setting", ["sngan_cifar10", "sngan_stl10", "biggan_cifar10",
                                     "biggan_tinyimagenet"])
def test_each_setting_builds_its_models_at_tiny_width(setting):
    gin.clear_config()
    configurables.parse_config([str(ROOT / f"gin_configs/experiments/{setting}/adapt_strict.gin")])
    name = gin.query_parameter("train.architecture")
    arch = architectures.ARCHITECTURES[name]
    spec = data.dataset_info(gin.query_parameter("train.dataset"))
    num_classes = spec.num_classes if arch.conditional else None
    width = TINY_WIDTH[name]
    generator, discriminator = architectures.build_models(name, num_classes=num_classes,
                                                          g_width=width, d_width=width)
    assert generator.output_shape[1:] == (arch.image_size, arch.image_size, 3)
    assert spec.image_size == arch.image_size
    assert L.masked_layers(generator) and L.masked_layers(discriminator)


def test_strict_cells_use_a_half_dense_strong_discriminator():
    gin.clear_config()
    configurables.parse_config(
        [str(ROOT / "gin_configs/experiments/sngan_cifar10/sdst_strong_rigl_strict.gin")])
    method = gin.get_configurable("method")()
    assert method.d_density == 0.5 and method.name == "sdst_strong_rigl"


EXPERIMENTS = [p for p in CONFIGS if "experiments" in p.parts]


@pytest.mark.parametrize("path", EXPERIMENTS,
                         ids=lambda p: str(p.relative_to(ROOT / "gin_configs")))
def test_experiments_evaluate_as_the_paper_and_use_pytorchs_adam_epsilon(path):
    gin.clear_config()
    configurables.parse_config([str(path)], ["DENSITY = 0.2"])
    assert gin.query_parameter("train.eval_every") == 5000
    # The official scripts' --num-eval-imgs: 50,000, but biggan.sh uses the default 10,000.
    assert gin.query_parameter("train.eval_num_samples") == paper.PAPER_NUM_SAMPLES[
        path.parent.name] == (10000 if path.parent.name == "biggan_cifar10" else 50000)
    assert gin.query_parameter("train.eval_every") % gin.query_parameter("train.log_every") == 0
    for scope in ("generator", "discriminator"):
        assert gin.query_parameter(f"{scope}/keras.optimizers.Adam.epsilon") == 1e-8


def test_paper_grid_regenerates_the_experiment_configs_unchanged(tmp_path, monkeypatch):
    """The generator (scripts/paper_grid.py) writes exactly the committed files, so the
    evaluation protocol and epsilon (in the settings they include) survive a regeneration."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("paper_grid", ROOT / "scripts" / "paper_grid.py")
    grid = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(grid)
    monkeypatch.setattr(grid, "ROOT", tmp_path)
    monkeypatch.setattr(grid, "EXPERIMENTS", tmp_path / "gin_configs" / "experiments")
    grid.write_configs()
    written = sorted(tmp_path.rglob("*.gin"))
    assert len(written) == len(grid.SETTINGS) * len(grid.CELLS)
    for path in written:
        committed = ROOT / path.relative_to(tmp_path)
        assert path.read_text() == committed.read_text(), committed
