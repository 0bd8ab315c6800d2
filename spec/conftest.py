"""Shared by the Tensor specs: the devices under test, the numpy reference dtypes, and the one tolerance table.

`pytest spec` runs every device-parametrized test on PYTHON (the reference
interpreter) and CPU; `pytest spec --device CPU` (or `--device PYTHON,CPU`)
picks the devices, which is how a backend author points the suite at theirs.
"""
import numpy as np
import pytest
from tiny import Tensor, dtypes

DEVICES = ["PYTHON", "CPU"]

def pytest_addoption(parser):
  parser.addoption("--device", default=",".join(DEVICES), help="comma-separated devices to test the Tensor ops on")

def pytest_generate_tests(metafunc):
  if "device" in metafunc.fixturenames:
    metafunc.parametrize("device", [d.strip().upper() for d in metafunc.config.getoption("device").split(",")])

NP = {dtypes.bool: np.bool_, dtypes.int8: np.int8, dtypes.uint8: np.uint8, dtypes.int16: np.int16, dtypes.uint16: np.uint16,
      dtypes.int32: np.int32, dtypes.uint32: np.uint32, dtypes.int64: np.int64, dtypes.uint64: np.uint64,
      dtypes.float16: np.float16, dtypes.float32: np.float32, dtypes.float64: np.float64}

# The one tolerance table: (rtol, atol) by the dtype of the result. References
# are computed in float64, so these bound tiny's own rounding. Ints and bools
# must match exactly. "transcendental" covers exp, log, sin, pow... which tiny
# builds from exp2, log2 and sin and so round a few times more.
TOLERANCE = {
  dtypes.float16: (2e-3, 2e-3), dtypes.float32: (1e-5, 1e-6), dtypes.float64: (1e-12, 1e-12),
  ("transcendental", dtypes.float16): (5e-3, 5e-3), ("transcendental", dtypes.float32): (1e-5, 1e-5),
  ("transcendental", dtypes.float64): (1e-10, 1e-10),
}

def check(t: Tensor, expected, kind: str | None = None, dtype=None) -> None:
  """Assert that tensor t has expected's shape, the given dtype (if any), and values within the tolerance table (ints exactly)."""
  expected = np.asarray(expected)
  got = t.numpy()
  assert t.shape == expected.shape, f"shape {t.shape}, expected {expected.shape}"
  if dtype is not None: assert t.dtype == dtype, f"dtype {t.dtype}, expected {dtype}"
  if t.dtype.is_float:
    rtol, atol = TOLERANCE[(kind, t.dtype) if kind else t.dtype]
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol)
  else: np.testing.assert_array_equal(got, expected)  # ints and bools exactly, compared as numbers
