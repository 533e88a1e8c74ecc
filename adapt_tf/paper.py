"""The paper's grid and the numbers it reports that this repository records (see
docs/ALGORITHM.md §7 and §12).

Settings are named "<model>_<dataset>" as `gin_configs/experiments/<setting>/`; cells (table
rows) as the experiment files: the method name, with "_strict" for the Strong-D baselines of
Table 2 (D at 50 %). Densities are d_G; 1.0 is the dense baseline. FIDs are the paper's best
FID over training (50k EMA samples against the training-set statistics); values not
recorded here are absent, never guessed. The paper's normalised training FLOPs (Table 3) are
not recorded here yet: `PAPER_FLOPS_RATIO` is empty until someone copies them from the paper.

This module is level 0: plain data, no TensorFlow.
"""
from __future__ import annotations

__all__ = ["DENSITIES", "SETTINGS", "ARCHITECTURE_DATASET", "CELLS", "PAPER_FID",
           "PAPER_FLOPS_RATIO", "setting_name", "cell_name", "paper_fid"]

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

# Cell -> row label, in the order of the paper's tables (Table 1 relaxed, then Table 2 strict).
CELLS = {
    "dense": "Dense",
    "static_balance": "Static-Balance",
    "static_strong": "Static-Strong",
    "sdst_balance_set": "SDST-Balance-SET",
    "sdst_strong_set": "SDST-Strong-SET",
    "sdst_balance_rigl": "SDST-Balance-RigL",
    "sdst_strong_rigl": "SDST-Strong-RigL",
    "dda": "DDA",
    "adapt_relaxed": "ADAPT_relax",
    "static_strong_strict": "Static-Strong (strict)",
    "sdst_strong_set_strict": "SDST-Strong-SET (strict)",
    "sdst_strong_rigl_strict": "SDST-Strong-RigL (strict)",
    "adapt_strict": "ADAPT_strict",
}

_STRONG = ("static_strong", "sdst_strong_set", "sdst_strong_rigl")

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

PAPER_FLOPS_RATIO: dict[tuple[str, str], dict[float, float]] = {}


def setting_name(architecture: str, dataset: str) -> str:
    """The paper's setting for a run, e.g. ("sngan32", "cifar10") -> "sngan_cifar10"; other
    pairs (the quickstart's toy_shapes) get "<architecture>_<dataset>"."""
    return ARCHITECTURE_DATASET.get((architecture, dataset), f"{architecture}_{dataset}")


def cell_name(method: str, setting: str = "relaxed") -> str:
    """The table cell of a `methods.method(name, setting=...)` run: Strong-D baselines of the
    strict setting (Table 2) get "_strict"; every other method keeps its name."""
    if setting not in ("relaxed", "strict"):
        raise ValueError(f"setting must be 'relaxed' or 'strict', got {setting!r}.")
    return f"{method}_strict" if setting == "strict" and method in _STRONG else method


def paper_fid(setting: str, cell: str, density: float) -> float | None:
    """The paper's FID for a cell at d_G = density (1.0 for dense), or None if not recorded here."""
    return PAPER_FID.get((setting, cell), {}).get(round(float(density), 4))
