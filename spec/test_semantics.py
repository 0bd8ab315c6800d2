"""The ALU meanings C leaves undefined, as tiny defines them (chapters 2 and 3), through whole Tensor programs: the
device under test, the PYTHON reference and constant folding (all operands constants, folded before any kernel runs)
must give the same answer, and nothing may kill the process."""
import math
import numpy as np
import pytest
from tiny import Tensor, dtypes, Ops
from conftest import NP

SIGNED = [dtypes.int8, dtypes.int16, dtypes.int32, dtypes.int64]
INTS = SIGNED + [dtypes.uint8, dtypes.uint16, dtypes.uint32, dtypes.uint64]

def division_cases(d):
  """(dividend, divisor) pairs at the edges: by zero, the smallest int by -1, and ordinary ones around them."""
  xs = [0, 1, -1, 7, -7, d.max, d.min] if not d.is_unsigned else [0, 1, 7, d.max]
  ys = [0, 1, -1, 3, -3, d.min] if not d.is_unsigned else [0, 1, 3, d.max]
  return [(x, y) for x in xs for y in ys]

def truncated(x: int, y: int, d) -> tuple[int, int]:
  """C's division, with tiny's answers where C has none: x/0 = x%0 = 0, and wrapping (INT_MIN/-1 = INT_MIN)."""
  if y == 0: return 0, 0
  q = abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)
  wrap = lambda v: int(np.array(v % 2**(8 * d.itemsize), dtype=np.uint64).astype(NP[d]))
  return wrap(q), wrap(x - q * y)

@pytest.mark.parametrize("d", INTS, ids=str)
def test_integer_division_by_zero_and_of_the_smallest_int_by_minus_one(device, d):
  cases = division_cases(d)
  x, y = (Tensor([c[i] for c in cases], dtype=d, device=device) for i in (0, 1))
  want = [truncated(a, b, d) for a, b in cases]
  assert x._alu(Ops.IDIV, y).tolist() == [q for q, _ in want]
  assert x._alu(Ops.MOD, y).tolist() == [r for _, r in want]
  # constants: folded before anything runs, and a loaded dividend over a constant divisor (the renderer's guard)
  for (a, b), (q, r) in zip(cases, want):
    ca, cb = Tensor(a, dtype=d, device=device), Tensor(b, dtype=d, device=device)
    assert (ca._alu(Ops.IDIV, cb).item(), ca._alu(Ops.MOD, cb).item()) == (q, r), (a, b)
  for b in {b for _, b in cases}:
    got = x._alu(Ops.IDIV, Tensor(b, dtype=d, device=device)), x._alu(Ops.MOD, Tensor(b, dtype=d, device=device))
    assert [g.tolist() for g in got] == [[truncated(a, b, d)[i] for a, _ in cases] for i in (0, 1)], b

@pytest.mark.parametrize("d", SIGNED, ids=str)
def test_floor_division_and_modulo_by_zero_are_zero_as_in_numpy(device, d):
  x, y = np.array([7, -7, 0, 5], dtype=NP[d]), np.array([0, 0, 0, 2], dtype=NP[d])
  with np.errstate(all="ignore"): want_q, want_r = x // y, x % y
  assert (Tensor(x, device=device) // Tensor(y, device=device)).tolist() == want_q.tolist()
  assert (Tensor(x, device=device) % Tensor(y, device=device)).tolist() == want_r.tolist()

FLOAT_VALUES = [math.nan, math.inf, -math.inf, 1e30, -1e30, 300.7, 255.9, 256.0, -0.9, -1.0, -129.5, 2.0**31, -2.0**31, 2.0**63, 2.0**64, 42.5]

@pytest.mark.parametrize("src", [dtypes.float16, dtypes.float32, dtypes.float64], ids=str)
@pytest.mark.parametrize("d", INTS, ids=str)
def test_float_to_int_cast_saturates_and_nan_is_zero(device, src, d):
  from tiny import Device
  if src not in Device[device].renderer.supported_dtypes: pytest.skip(f"{device} has no {src.name}")
  with np.errstate(over="ignore"): values = [float(np.array(v, dtype=NP[src])) for v in FLOAT_VALUES]  # as src holds them: 1e30 is inf in float16
  want = [0 if v != v else d.min if v <= d.min else d.max if v >= d.max else math.trunc(v) for v in values]
  assert Tensor(values, dtype=src, device=device).cast(d).tolist() == want
  assert [Tensor(v, dtype=src, device=device).cast(d).item() for v in values] == want  # folded

@pytest.mark.parametrize("op", ["<", "!=", ">"])
def test_a_comparison_of_a_tensor_with_itself_folds_and_keeps_its_shape(device, op):
  t = Tensor.full((2, 3), 3, device=device)
  out = {"<": t < t, "!=": t != t, ">": t > t}[op]
  assert out.sum(0).tolist() == [0, 0, 0] and out.shape == (2, 3)
