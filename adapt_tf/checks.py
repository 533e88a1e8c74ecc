"""Argument checks shared across modules, so that a bad value is refused with one message.

This module is level 0: NumPy only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["positive_int"]


def positive_int(name: str, value: Any) -> int:
    """`value` as an int if it is a positive integer (Python or NumPy, not a bool), else
    ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)
