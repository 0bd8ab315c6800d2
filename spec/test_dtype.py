"""Chapter 2: dtypes, the promotion lattice, and truncation that agrees with C casts (numpy is the reference)."""
import itertools, math, random, struct
import numpy as np
import pytest
from tiny import dtypes, least_upper_dtype, truncate, to_dtype, bitcast_value

NP = {dtypes.bool: np.bool_, dtypes.int8: np.int8, dtypes.uint8: np.uint8, dtypes.int16: np.int16, dtypes.uint16: np.uint16,
      dtypes.int32: np.int32, dtypes.uint32: np.uint32, dtypes.int64: np.int64, dtypes.uint64: np.uint64,
      dtypes.float16: np.float16, dtypes.float32: np.float32, dtypes.float64: np.float64}
INTS = [d for d in dtypes.all() if d.is_int]
FLOATS = [d for d in dtypes.all() if d.is_float]

def same_float(a: float, b: float) -> bool:
  """Equal as IEEE values, telling -0.0 from 0.0 and letting nan equal nan."""
  return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))

# ## DType

@pytest.mark.parametrize("d", dtypes.all(), ids=str)
def test_dtype_matches_numpy_and_struct(d):
  assert d.itemsize == np.dtype(NP[d]).itemsize == struct.calcsize(d.fmt)
  assert d.name == np.dtype(NP[d]).name
  assert d.is_float == np.issubdtype(NP[d], np.floating)
  assert d.is_int == np.issubdtype(NP[d], np.integer)
  assert d.is_unsigned == np.issubdtype(NP[d], np.unsignedinteger)

@pytest.mark.parametrize("d", INTS, ids=str)
def test_int_dtype_min_max_match_numpy(d):
  assert (d.min, d.max) == (int(np.iinfo(NP[d]).min), int(np.iinfo(NP[d]).max))

def test_float_and_bool_min_max():
  assert all((d.min, d.max) == (-math.inf, math.inf) for d in FLOATS)
  assert (dtypes.bool.min, dtypes.bool.max) == (False, True)

def test_priorities_are_distinct_and_in_listed_order():
  assert [d.priority for d in dtypes.all()] == sorted({d.priority for d in dtypes.all()})

def test_aliases():
  assert (dtypes.half, dtypes.float, dtypes.double) == (dtypes.float16, dtypes.float32, dtypes.float64)
  assert (dtypes.int, dtypes.long) == (dtypes.int32, dtypes.int64)

def test_from_py_picks_the_default_types():
  assert dtypes.from_py(True) == dtypes.bool
  assert dtypes.from_py(3) == dtypes.default_int == dtypes.int32
  assert dtypes.from_py(3.0) == dtypes.default_float == dtypes.float32
  assert dtypes.from_py([1, 2.0]) == dtypes.float32
  assert dtypes.from_py([True, 1]) == dtypes.int32
  assert dtypes.from_py([]) == dtypes.default_float

# ## Promotion

PROMOTIONS = [
  (dtypes.int8, dtypes.uint8, dtypes.int16), (dtypes.int16, dtypes.uint16, dtypes.int32),
  (dtypes.int32, dtypes.uint32, dtypes.int64), (dtypes.int64, dtypes.uint64, dtypes.float16),
  (dtypes.int8, dtypes.uint16, dtypes.int32), (dtypes.uint8, dtypes.uint32, dtypes.uint32),
  (dtypes.int8, dtypes.int64, dtypes.int64), (dtypes.uint32, dtypes.int16, dtypes.int64),
  (dtypes.int32, dtypes.float16, dtypes.float16), (dtypes.uint64, dtypes.float32, dtypes.float32),
  (dtypes.float16, dtypes.float32, dtypes.float32), (dtypes.float32, dtypes.float64, dtypes.float64),
]

@pytest.mark.parametrize("a,b,want", PROMOTIONS, ids=lambda d: d.name if hasattr(d, "name") else None)
def test_promotion_table(a, b, want):
  assert least_upper_dtype(a, b) == want

@pytest.mark.parametrize("d", dtypes.all(), ids=str)
def test_bool_promotes_to_anything(d):
  assert least_upper_dtype(dtypes.bool, d) == d

def test_promotion_is_symmetric_and_idempotent():
  for a, b in itertools.product(dtypes.all(), repeat=2):
    assert least_upper_dtype(a, b) == least_upper_dtype(b, a), (a, b)
  for d in dtypes.all(): assert least_upper_dtype(d, d) == d

def test_promotion_is_associative_and_an_upper_bound():
  for a, b, c in itertools.product(dtypes.all(), repeat=3):
    abc = least_upper_dtype(a, b, c)
    assert abc == least_upper_dtype(least_upper_dtype(a, b), c) == least_upper_dtype(a, least_upper_dtype(b, c)), (a, b, c)
    assert least_upper_dtype(abc, a) == abc  # each input promotes up to the result

def test_promotion_of_a_single_dtype_is_itself():
  assert all(least_upper_dtype(d) == d for d in dtypes.all())

# ## Truncation: ints wrap around like a C cast

@pytest.mark.parametrize("d", INTS, ids=str)
def test_int_truncation_wraps_like_numpy(d):
  rng = random.Random(0)
  values = [0, 1, -1, d.min, d.max, d.min - 1, d.max + 1, 2**63 - 1, -2**63] + [rng.randint(-2**63, 2**63 - 1) for _ in range(300)]
  for v in values:
    want = np.array(v % 2**64, dtype=np.uint64).astype(NP[d]).item()  # numpy wraps the 64-bit pattern, as C does
    assert truncate[d](v) == want and type(truncate[d](v)) is int, (d, v)
    assert to_dtype(v, d) == want, (d, v)

def test_uint64_truncation_of_large_values():
  for v in [2**64 - 1, 2**63, 2**64, 2**64 + 5, -1]:
    assert truncate[dtypes.uint64](v) == v % 2**64
  assert truncate[dtypes.int64](2**63) == -2**63

@pytest.mark.parametrize("d", INTS, ids=str)
def test_float_to_int_truncates_toward_zero(d):
  rng = random.Random(1)
  lo, hi = max(d.min, -2**52), min(d.max, 2**52)  # in range for the target, exactly representable
  values = [0.0, -0.0, 0.5, -0.5, 0.999, -0.999, 2.5, -2.5, float(hi), float(lo)] + [rng.uniform(lo, hi) for _ in range(300)]
  for v in values:
    if not lo <= v <= hi: continue  # out-of-range float to int casts are undefined in C
    assert to_dtype(v, d) == np.array([v]).astype(NP[d])[0], (d, v)
    assert to_dtype(v, d) == math.trunc(v)

@pytest.mark.parametrize("d", INTS, ids=str)
def test_float_to_int_saturates_outside_the_range_and_nan_is_zero(d):
  big = float(2**70)
  cases = [(math.nan, 0), (-math.nan, 0), (math.inf, d.max), (-math.inf, d.min), (big, d.max), (-big, d.min),
           (float(d.max) + 1.0, d.max), (float(d.min) - 1.0, d.min), (float(d.min), d.min), (-0.9, 0), (300.7, min(300, d.max))]
  for v, want in cases: assert to_dtype(v, d) == want, (d, v)

def test_to_bool_is_nonzero():
  for v, want in [(0, False), (2, True), (-1, True), (0.0, False), (-0.0, False), (0.5, True), (math.nan, True), (math.inf, True)]:
    assert to_dtype(v, dtypes.bool) is want, v
    assert np.array([v]).astype(np.bool_)[0] == want

def test_bool_to_numbers():
  assert to_dtype(True, dtypes.int8) == 1 and to_dtype(False, dtypes.uint64) == 0
  assert to_dtype(True, dtypes.float16) == 1.0 and to_dtype(True, dtypes.float32) == 1.0

# ## Truncation: floats round to their width and overflow to infinity

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.1, 1/3, math.inf, -math.inf, math.nan, 1e-8, -1e-8, 6e-8, 1e-40, 1e-46, 1e-300,
           65504.0, 65519.99, 65520.0, -65520.0, 3.4028234663852886e38, 3.4028235677973366e38, 3.5e38, -3.5e38, 1e300]

def random_doubles(seed: int, n: int) -> list[float]:
  rng = random.Random(seed)
  return [rng.choice([-1, 1]) * rng.uniform(1, 2) * 2.0 ** rng.randint(-160, 140) for _ in range(n)]

@pytest.mark.parametrize("d", FLOATS, ids=str)
def test_float_truncation_rounds_like_numpy(d):
  for v in SPECIAL + random_doubles(2, 500):
    with np.errstate(over="ignore"): want = float(NP[d](v))
    assert same_float(truncate[d](v), want), (d, v, truncate[d](v), want)
    assert same_float(to_dtype(v, d), want), (d, v)

@pytest.mark.parametrize("d", FLOATS, ids=str)
def test_int_to_float_rounds_like_numpy(d):
  rng = random.Random(3)
  values = [0, 1, -1, 2**11 + 1, 2**24 + 1, 2**53 + 1, 65504, 65519, 65520, 70000, -70000, 2**63 - 1, -2**63, 2**64 - 1]
  for v in values + [rng.randint(-2**63, 2**63 - 1) for _ in range(200)]:
    with np.errstate(over="ignore"): want = float(np.array([v], dtype=np.uint64 if v >= 2**63 else np.int64).astype(NP[d])[0])
    assert same_float(to_dtype(v, d), want), (d, v, want)

def test_float_truncation_returns_python_floats():
  assert all(type(to_dtype(1, d)) is float for d in FLOATS)

# ## Bitcast reinterprets the bytes

BITCASTS = [(1.0, dtypes.float32, dtypes.int32), (-0.0, dtypes.float32, dtypes.uint32), (1.0, dtypes.float16, dtypes.uint16),
            (-1, dtypes.int8, dtypes.uint8), (0x7fc00000, dtypes.uint32, dtypes.float32), (-2, dtypes.int64, dtypes.float64),
            (0x3c00, dtypes.int16, dtypes.float16), (math.inf, dtypes.float64, dtypes.int64)]

@pytest.mark.parametrize("v,src,dst", BITCASTS, ids=lambda x: str(x))
def test_bitcast_matches_numpy_view(v, src, dst):
  want = np.array([v], dtype=NP[src]).view(NP[dst])[0].item()
  got = bitcast_value(v, src, dst)
  assert same_float(got, want) if dst.is_float else got == want

def test_large_int_to_float16_overflows_to_inf_like_float():
  # a C cast of a too-large integer to half is infinity, as for a too-large float
  assert to_dtype(70000, dtypes.float16) == math.inf == to_dtype(70000.0, dtypes.float16)
  assert to_dtype(-2**40, dtypes.float16) == -math.inf
