"""The paper's grid and the numbers it reports that this repository records (see
docs/ALGORITHM.md §7 and §12).

Settings are named "<model>_<dataset>" as `gin_configs/experiments/<setting>/`; cells (table
rows) as the experiment files: the method name, with "_strict" for the Strong-D baselines of
Table 2 (D at 50 %). Densities are d_G; 1.0 is the dense baseline. FIDs are the paper's best
FID over training (EMA samples against the training-set statistics; `PAPER_NUM_SAMPLES` per
setting: 50,000, but 10,000 for BigGAN CIFAR-10, whose official script keeps the default);
values not recorded here are absent, never guessed. The paper's normalised training FLOPs
(Table 3) are not recorded here.

The cells come from the one table of methods, `methods.PRESETS`; importing it imports
TensorFlow (the presets name their `dst` rules).
"""
from __future__ import annotations

from adapt_tf.runs.methods import PRESETS, STRONG_DENSITY

__all__ = ["DENSITIES", "SETTINGS", "ARCHITECTURE_DATASET", "CELLS", "PAPER_FID",
           "PAPER_NUM_SAMPLES",
           "setting_name", "cell_name", "paper_fid"]

DENSITIES = (0.1, 0.2, 0.3, 0.5)

SETTINGS = {
    "sngan_cifar10": "SNGAN on CIFAR-10 (32x32)",
    "sngan_stl10": "SNGAN on STL-10 (48x48)",
    "biggan_cifar10": "BigGAN on CIFAR-10 (32x32, conditional)",
    "biggan_tinyimagenet": "BigGAN on Tiny-ImageNet (64x64, conditional)",
}

# (architecture, dataset) of `train_lib.train` -> setting.
ARCHITECTURE_DATASET = {
    ("sngan32", "cifar10"): "sngan_cifar10",
    ("sngan48", "stl10"): "sngan_stl10",
    ("biggan32", "cifar10"): "biggan_cifar10",
    ("biggan64", "tinyimagenet"): "biggan_tinyimagenet",
}

# Samples behind each setting's paper FIDs: the official scripts' --num-eval-imgs 50000, except
# biggan.sh, which passes none and so uses the default 10000.
PAPER_NUM_SAMPLES = {"sngan_cifar10": 50000, "sngan_stl10": 50000, "biggan_cifar10": 10000,
                     "biggan_tinyimagenet": 50000}

PAPER_FID: dict[tuple[str, str], dict[float, float]] = {
    ("sngan_cifar10", "dense"): {1.0: 10.74},
    ("sngan_stl10", "dense"): {1.0: 29.71},
    ("biggan_cifar10", "dense"): {1.0: 8.11},
    ("biggan_tinyimagenet", "dense"): {1.0: 15.43},
    ("sngan_cifar10", "adapt_relaxed"): dict(zip(DENSITIES, (14.19, 13.19, 12.38, 10.60))),
    ("sngan_stl10", "adapt_relaxed"): dict(zip(DENSITIES, (35.98, 33.06, 31.71, 29.96))),
    ("biggan_cifar10", "adapt_relaxed"): dict(zip(DENSITIES, (10.19, 8.56, 8.36, 8.22))),
    ("biggan_tinyimagenet", "adapt_relaxed"): dict(zip(DENSITIES, (19.42, 17.99, 17.06, 14.15))),
    ("sngan_cifar10", "adapt_strict"): dict(zip(DENSITIES, (14.53, 12.73, 12.20, 12.11))),
    ("sngan_stl10", "adapt_strict"): dict(zip(DENSITIES, (41.18, 31.59, 31.16, 29.11))),
    ("biggan_cifar10", "adapt_strict"): dict(zip(DENSITIES, (9.29, 8.64, 8.44, 7.90))),
    ("biggan_tinyimagenet", "adapt_strict"): dict(zip(DENSITIES, (18.89, 17.37, 16.93, 16.02))),
    ("sngan_cifar10", "sdst_strong_set"): {0.1: 16.49},
    ("sngan_cifar10", "sdst_strong_rigl"): {0.1: 17.02},
    ("sngan_cifar10", "sdst_strong_rigl_strict"): {0.1: 15.19},
    ("sngan_cifar10", "static_balance"): {0.1: 26.75, 0.5: 12.24},
    ("sngan_stl10", "static_balance"): {0.5: 37.68},
    ("biggan_cifar10", "static_balance"): {0.5: 8.47},
    ("biggan_tinyimagenet", "static_balance"): {0.5: 17.51},
}


def setting_name(architecture: str, dataset: str) -> str:
    """The paper's setting for a run, e.g. ("sngan32", "cifar10") -> "sngan_cifar10"; other
    pairs (the quickstart's toy_shapes) get "<architecture>_<dataset>"."""
    return ARCHITECTURE_DATASET.get((architecture, dataset), f"{architecture}_{dataset}")


def cell_name(method: str, setting: str = "relaxed") -> str:
    """The table cell of a `methods.method(name, setting=...)` run: Strong-D baselines of the
    strict setting (Table 2) get "_strict"; every other method keeps its name."""
    if setting not in STRONG_DENSITY:
        raise ValueError(f"setting must be 'relaxed' or 'strict', got {setting!r}.")
    preset = PRESETS.get(method)
    strong = preset is not None and preset.densities == "strong"
    return f"{method}_strict" if setting == "strict" and strong else method


def _cells() -> dict[str, str]:
    """Cell -> row label, in the order of the paper's tables (Table 1, then Table 2's rows
    Table 1 does not have: the strict Strong-D baselines and ADAPT_strict)."""
    cells = {name: preset.label for name, preset in PRESETS.items() if 1 in preset.tables}
    for name, preset in PRESETS.items():
        cell = cell_name(name, "strict")
        if 2 in preset.tables and cell not in cells:
            cells[cell] = preset.label + (" (strict)" if cell != name else "")
    return cells


# Cell -> row label, from `methods.PRESETS`.
CELLS = _cells()


def paper_fid(setting: str, cell: str, density: float) -> float | None:
    """The paper's FID for a cell at d_G = density (1.0 for dense), or None if not recorded here."""
    return PAPER_FID.get((setting, cell), {}).get(round(float(density), 4))
