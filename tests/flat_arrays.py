"""Test helpers: view a list of per-layer arrays as one flat vector (global drop/grow checks)."""
from __future__ import annotations

import numpy as np


def flat(arrays) -> np.ndarray:
    """The arrays concatenated in order, each flattened row-major."""
    return np.concatenate([np.asarray(a).reshape(-1) for a in arrays])


def assign_flat(variables, values: np.ndarray) -> None:
    """Assigns consecutive slices of `values` to the variables, in order."""
    start = 0
    for variable in variables:
        size = variable.shape.num_elements()
        variable.assign(values[start:start + size].reshape(variable.shape).astype(np.float32))
        start += size
