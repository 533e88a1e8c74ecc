"""Argument checks shared across modules, so that a bad value is refused with one message.

Each takes the argument's name first, then its value, and returns the value converted. This
module is layer 0 of docs/INTERNALS.md: NumPy only.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["positive_int", "density"]


def positive_int(name: str, value: Any) -> int:
    """`value` as an int if it is a positive integer (Python or NumPy, not a bool), else
    ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def density(name: str, value: Any) -> float:
    """`value` as a float if it is a real number in (0, 1] (Python or NumPy, not a bool): the
    fraction of a kernel's weights that are active. Else ValueError naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{name} must be a real number in (0, 1], got {value!r} "
            f"({type(value).__name__}); pass e.g. 0.3 for 30% active weights.")
    result = float(value)
    if not (0.0 < result <= 1.0):  # False for NaN too.
        raise ValueError(
            f"{name} must be in (0, 1], got {value!r}; pass the fraction of active "
            "weights, e.g. 0.3 for 30% (1.0 is dense).")
    return result
