"""The shared argument checks: one message per kind of bad value, naming the argument."""
from __future__ import annotations

import numpy as np
import pytest

from adapt_tf import checks


def test_positive_int_accepts_python_and_numpy_integers():
    assert checks.positive_int("n", 3) == 3
    assert checks.positive_int("n", np.int64(2)) == 2
    assert type(checks.positive_int("n", np.int32(1))) is int


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "3", None])
def test_positive_int_refuses_other_values_naming_them(value):
    with pytest.raises(ValueError, match=rf"^n must be a positive integer, got {value!r}\.$"):
        checks.positive_int("n", value)


def test_density_accepts_reals_in_the_half_open_unit_interval():
    assert checks.density("d", 1) == 1.0
    assert checks.density("d", np.float32(0.25)) == 0.25
    assert checks.density("d", 1e-9) == 1e-9


@pytest.mark.parametrize("value, message", [
    (0.0, r"d must be in \(0, 1\], got 0.0; pass the fraction"),
    (1.5, r"d must be in \(0, 1\], got 1.5"),
    (float("nan"), r"d must be in \(0, 1\], got nan"),
    (True, r"d must be a real number in \(0, 1\], got True \(bool\)"),
    ("0.3", r"d must be a real number in \(0, 1\], got '0.3' \(str\); pass e.g. 0.3")])
def test_density_refuses_other_values_naming_them(value, message):
    with pytest.raises(ValueError, match=message):
        checks.density("d", value)
