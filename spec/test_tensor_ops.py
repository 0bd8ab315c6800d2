"""Chapters 7 and 15: creating tensors, elementwise ops, matmul and moving data, checked against numpy on every device."""
import math
import numpy as np
import pytest
from tiny import Tensor, dtypes, Device
from conftest import NP, check

def data(shape, seed=0, low=-3.0, high=3.0, dtype=np.float32):
  return np.random.default_rng(seed).uniform(low, high, size=shape).astype(dtype)

# ## Creation

@pytest.mark.parametrize("value, dtype", [(3, dtypes.int32), (-2.5, dtypes.float32), (True, dtypes.bool), (0, dtypes.int32)])
def test_python_scalar_makes_a_0d_tensor_of_the_default_dtype(device, value, dtype):
  t = Tensor(value, device=device)
  assert (t.shape, t.dtype, t.device, t.ndim, t.numel()) == ((), dtype, device, 0, 1)
  assert t.item() == value and t.tolist() == value

@pytest.mark.parametrize("value, dtype", [
  ([[1, 2, 3], [4, 5, 6]], dtypes.int32), ([1, 2.5], dtypes.float32), ([True, False], dtypes.bool),
  ([[[1.0]], [[2.0]]], dtypes.float32), ([True, 2], dtypes.int32), ((1, 2), dtypes.int32)])
def test_nested_list_keeps_its_shape_and_values(device, value, dtype):
  t = Tensor(value, device=device)
  expected = np.array(value)
  assert t.dtype == dtype
  check(t, expected)
  assert t.tolist() == expected.tolist()

def test_empty_list_is_a_0_size_float_tensor(device):
  t = Tensor([], device=device)
  assert (t.shape, t.dtype) == ((0,), dtypes.float32)
  assert t.tolist() == [] and t.numpy().shape == (0,)

def test_list_with_dtype_converts_the_values(device):
  check(Tensor([1, 2, 255], device=device, dtype=dtypes.uint8), np.array([1, 2, 255]), dtype=dtypes.uint8)
  with pytest.raises(OverflowError, match="300.*uint8"): Tensor([1, 2, 300], device=device, dtype=dtypes.uint8)  # as numpy 2
  check(Tensor([1.5, -2.5], device=device, dtype=dtypes.int32), np.array([1, -2]), dtype=dtypes.int32)
  check(Tensor([1, 2], device=device, dtype=dtypes.float16), np.array([1, 2], np.float16), dtype=dtypes.float16)

@pytest.mark.parametrize("dtype", dtypes.all(), ids=str)
def test_numpy_array_of_every_dtype_round_trips(device, dtype):
  a = (np.arange(-3, 4).reshape(7, 1) * np.array([1, 2])).astype(NP[dtype])
  t = Tensor(a, device=device)
  assert t.dtype == dtype and t.shape == (7, 2)
  got = t.numpy()
  assert got.dtype == a.dtype
  np.testing.assert_array_equal(got, a)

def test_non_contiguous_and_0d_numpy_arrays(device):
  a = np.arange(24, dtype=np.float32).reshape(4, 6)
  check(Tensor(a.T, device=device), a.T)
  check(Tensor(a[::2, ::-3], device=device), a[::2, ::-3])
  check(Tensor(np.float32(2.5), device=device), np.float32(2.5))
  check(Tensor(np.zeros((0, 3), np.int32), device=device), np.zeros((0, 3), np.int32))

def test_numpy_array_with_dtype_casts(device):
  check(Tensor(np.array([1.7, -1.7]), device=device, dtype=dtypes.int32), np.array([1, -1]), dtype=dtypes.int32)

@pytest.mark.parametrize("shape", [(), (1,), (7,), (2, 3), (0,), (3, 0)])
def test_empty_has_the_shape_dtype_and_device(device, shape):
  t = Tensor.empty(*shape, device=device)
  assert (t.shape, t.dtype, t.device, t.numel()) == (shape, dtypes.float32, device, math.prod(shape))
  assert Tensor.empty(shape, device=device, dtype=dtypes.int8).dtype == dtypes.int8
  assert t.numpy().shape == shape

@pytest.mark.parametrize("shape", [(), (1,), (7,), (2, 3), (0, 5)])
def test_zeros_ones_full(device, shape):
  check(Tensor.zeros(*shape, device=device), np.zeros(shape), dtype=dtypes.float32)
  check(Tensor.ones(shape, device=device), np.ones(shape), dtype=dtypes.float32)
  check(Tensor.ones(*shape, device=device, dtype=dtypes.int8), np.ones(shape), dtype=dtypes.int8)
  check(Tensor.full(shape, 7, device=device), np.full(shape, 7), dtype=dtypes.int32)
  check(Tensor.full(shape, -2.5, device=device), np.full(shape, -2.5), dtype=dtypes.float32)
  check(Tensor.full(shape, True, device=device), np.full(shape, True), dtype=dtypes.bool)
  check(Tensor.full(shape, 3, device=device, dtype=dtypes.float16), np.full(shape, 3), dtype=dtypes.float16)

@pytest.mark.parametrize("args", [(5,), (2, 11, 3), (5, 0, -1), (-3, 4), (10, -10, -7), (5, 0), (0,), (13,)])
def test_int_arange_matches_numpy(device, args):
  check(Tensor.arange(*args, device=device), np.arange(*args), dtype=dtypes.int32)

@pytest.mark.parametrize("args", [(0, 1, 0.25), (2.5,), (-1.0, 1.0, 0.5), (3, 0, -0.75)])
def test_float_arange_matches_numpy(device, args):
  check(Tensor.arange(*args, device=device), np.arange(*args), dtype=dtypes.float32)

def test_arange_with_dtype(device):
  check(Tensor.arange(4, device=device, dtype=dtypes.float16), np.arange(4), dtype=dtypes.float16)
  check(Tensor.arange(1, 8, 2, device=device, dtype=dtypes.int64), np.arange(1, 8, 2), dtype=dtypes.int64)

@pytest.mark.parametrize("args", [(0, 1, 5), (-1, 1, 7), (2, 3, 1), (0, 10, 0), (5, -5, 11)])
def test_linspace_matches_numpy(device, args):
  check(Tensor.linspace(*args, device=device), np.linspace(*args), dtype=dtypes.float32)

def test_linspace_with_int_dtype(device):
  check(Tensor.linspace(0, 10, 6, device=device, dtype=dtypes.int32), np.linspace(0, 10, 6).astype(np.int32), dtype=dtypes.int32)

@pytest.mark.parametrize("args", [(1,), (3,), (2, 4), (4, 2), (0,)])
def test_eye_matches_numpy(device, args):
  check(Tensor.eye(*args, device=device), np.eye(*args), dtype=dtypes.float32)

def test_eye_with_dtype(device):
  check(Tensor.eye(3, device=device, dtype=dtypes.int32), np.eye(3, dtype=np.int32), dtype=dtypes.int32)

def test_like_constructors_keep_shape_dtype_and_device(device):
  t = Tensor([[1, 2, 3]], device=device, dtype=dtypes.int16)
  for made, value in [(t.zeros_like(), 0), (t.ones_like(), 1), (t.full_like(9), 9)]:
    assert (made.shape, made.dtype, made.device) == ((1, 3), dtypes.int16, device)
    check(made, np.full((1, 3), value))
  e = t.empty_like()
  assert (e.shape, e.dtype, e.device) == ((1, 3), dtypes.int16, device)
  check(t.ones_like(dtype=dtypes.float32), np.ones((1, 3)), dtype=dtypes.float32)
  f = Tensor([[1.0, 2.0]], device=device)
  for made in [f.rand_like(), f.randn_like()]: assert (made.shape, made.dtype, made.device) == ((1, 2), dtypes.float32, device)

# ## Random numbers

def test_rand_is_uniform_in_zero_one_with_shape_and_dtype(device):
  Tensor.manual_seed(0)
  t = Tensor.rand(3, 7, device=device)
  assert (t.shape, t.dtype, t.device) == ((3, 7), dtypes.float32, device)
  v = t.numpy()
  assert (v >= 0).all() and (v < 1).all() and len(np.unique(v)) == v.size
  assert Tensor.rand((2, 2), device=device, dtype=dtypes.float16).dtype == dtypes.float16

def test_manual_seed_repeats_the_same_numbers_and_later_calls_differ(device):
  Tensor.manual_seed(42)
  first, second = Tensor.rand(13, device=device).numpy(), Tensor.rand(13, device=device).numpy()
  Tensor.manual_seed(42)
  np.testing.assert_array_equal(Tensor.rand(13, device=device).numpy(), first)
  np.testing.assert_array_equal(Tensor.rand(13, device=device).numpy(), second)
  assert not np.array_equal(first, second)
  Tensor.manual_seed(43)
  assert not np.array_equal(Tensor.rand(13, device=device).numpy(), first)

def test_random_numbers_depend_on_call_order_not_realize_order(device):
  Tensor.manual_seed(11)
  first, second = Tensor.rand(5, device=device).tolist(), Tensor.rand(5, device=device).tolist()
  Tensor.manual_seed(11)
  a, b = Tensor.rand(5, device=device), Tensor.rand(5, device=device)
  assert b.tolist() == second and a.tolist() == first  # read back to front
  Tensor.manual_seed(11)
  a, b = Tensor.rand(5, device=device), Tensor.rand(5, device=device)
  Tensor.realize(b, a)
  assert (a.tolist(), b.tolist()) == (first, second)
  Tensor.manual_seed(11)
  assert Tensor.rand(5, 1, device=device).flatten().tolist() == first  # the shape does not change the stream

def test_random_numbers_are_the_same_on_python_and_cpu():
  results = {}
  for device in ["PYTHON", "CPU"]:
    Tensor.manual_seed(7)
    results[device] = [Tensor.rand(11, device=device).numpy(), Tensor.randn(2, 5, device=device).numpy(),
                       Tensor.uniform(6, low=-2, high=3, device=device).numpy()]
  for p, c in zip(results["PYTHON"], results["CPU"]): np.testing.assert_array_equal(p, c)

def test_randn_has_mean_zero_and_std_one_on_cpu():
  Tensor.manual_seed(1)
  v = Tensor.randn(4096, device="CPU").numpy()
  assert np.isfinite(v).all()
  assert abs(v.mean()) < 0.08 and abs(v.std() - 1) < 0.08
  assert 0.6 < (np.abs(v) < 1).mean() < 0.76  # about 68% within one standard deviation

def test_rand_is_roughly_uniform_on_cpu():
  Tensor.manual_seed(2)
  v = Tensor.rand(4096, device="CPU").numpy()
  assert abs(v.mean() - 0.5) < 0.03 and abs(v.var() - 1 / 12) < 0.01
  assert (np.histogram(v, bins=4, range=(0, 1))[0] > 900).all()

def test_uniform_stays_in_low_high(device):
  Tensor.manual_seed(3)
  v = Tensor.uniform(4, 5, low=-2.0, high=-1.5, device=device).numpy()
  assert v.shape == (4, 5) and (v >= -2.0).all() and (v < -1.5).all()

# ## Elementwise: unary

def np_gelu(x): return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
def np_sigmoid(x): return 1 / (1 + np.exp(-x))

# name, tiny op, numpy op (on float64), input range, kind for the tolerance table
UNARY = [
  ("neg", lambda t: -t, np.negative, (-3, 3), None),
  ("abs", lambda t: t.abs(), np.abs, (-3, 3), None),
  ("exp", lambda t: t.exp(), np.exp, (-5, 5), "transcendental"),
  ("log", lambda t: t.log(), np.log, (0.01, 10), "transcendental"),
  ("exp2", lambda t: t.exp2(), np.exp2, (-5, 5), "transcendental"),
  ("log2", lambda t: t.log2(), np.log2, (0.01, 10), "transcendental"),
  ("sqrt", lambda t: t.sqrt(), np.sqrt, (0, 10), None),
  ("rsqrt", lambda t: t.rsqrt(), lambda x: 1 / np.sqrt(x), (0.1, 10), None),
  ("sin", lambda t: t.sin(), np.sin, (-6, 6), "transcendental"),
  ("cos", lambda t: t.cos(), np.cos, (-6, 6), "transcendental"),
  ("tan", lambda t: t.tan(), np.tan, (-1.4, 1.4), "transcendental"),
  ("tanh", lambda t: t.tanh(), np.tanh, (-4, 4), "transcendental"),
  ("sigmoid", lambda t: t.sigmoid(), np_sigmoid, (-6, 6), "transcendental"),
  ("relu", lambda t: t.relu(), lambda x: np.maximum(x, 0), (-3, 3), None),
  ("leaky_relu", lambda t: t.leaky_relu(), lambda x: np.where(x < 0, 0.01 * x, x), (-3, 3), None),
  ("leaky_relu_0.2", lambda t: t.leaky_relu(0.2), lambda x: np.where(x < 0, 0.2 * x, x), (-3, 3), None),
  ("gelu", lambda t: t.gelu(), np_gelu, (-4, 4), "transcendental"),
  ("silu", lambda t: t.silu(), lambda x: x * np_sigmoid(x), (-4, 4), "transcendental"),
  ("sign", lambda t: t.sign(), np.sign, (-3, 3), None),
  ("reciprocal", lambda t: t.reciprocal(), np.reciprocal, (0.1, 5), None),
  ("square", lambda t: t.square(), np.square, (-3, 3), None),
  ("trunc", lambda t: t.trunc(), np.trunc, (-4, 4), None),
  ("floor", lambda t: t.floor(), np.floor, (-4, 4), None),
  ("ceil", lambda t: t.ceil(), np.ceil, (-4, 4), None),
]

@pytest.mark.parametrize("name, op, ref, domain, kind", UNARY, ids=[u[0] for u in UNARY])
def test_unary_op_matches_numpy(device, name, op, ref, domain, kind):
  x = data((13,), seed=len(name), low=domain[0], high=domain[1])
  check(op(Tensor(x, device=device)), ref(x.astype(np.float64)), kind, dtype=dtypes.float32)

@pytest.mark.parametrize("dtype", [dtypes.float16, dtypes.float64], ids=str)
@pytest.mark.parametrize("name, op, ref, domain, kind", [u for u in UNARY if u[0] in ("exp", "log", "sqrt", "sin", "sigmoid", "abs")],
                         ids=["exp", "log", "sqrt", "sin", "sigmoid", "abs"])
def test_unary_op_keeps_half_and_double(device, dtype, name, op, ref, domain, kind):
  x = data((7,), seed=3, low=domain[0], high=domain[1], dtype=NP[dtype])
  check(op(Tensor(x, device=device)), ref(x.astype(np.float64)), kind, dtype=dtype)

def test_round_is_half_to_even(device):
  x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -0.6, 3.7], np.float32)
  check(Tensor(x, device=device).round(), np.round(x))

def test_unary_edge_values(device):
  x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0], np.float32)
  t = Tensor(x, device=device)
  with np.errstate(all="ignore"):
    for op, ref in [(Tensor.exp, np.exp), (Tensor.log, np.log), (Tensor.sqrt, np.sqrt), (Tensor.relu, lambda v: np.where(v > 0, v, 0)),
                    (Tensor.abs, np.abs), (Tensor.sigmoid, np_sigmoid), (Tensor.reciprocal, np.reciprocal),
                    (Tensor.exp2, np.exp2), (Tensor.log2, np.log2), (Tensor.tanh, np.tanh)]:
      check(op(t), ref(x.astype(np.float64)), "transcendental")  # inf matches inf, nan matches nan

def test_sign_of_zeros_infinities_and_nan(device):
  x = np.array([0.0, -0.0, np.inf, -np.inf, 2.5, -1e-30], np.float32)
  check(Tensor(x, device=device).sign(), np.sign(x))
  assert np.isnan(Tensor([np.nan], device=device).sign().numpy()).all()

def test_math_on_int_tensors_gives_float(device):
  x = np.array([1, 4, 9, 16], np.int32)
  t = Tensor(x, device=device)
  check(t.sqrt(), np.sqrt(x), dtype=dtypes.float32)
  check(t.exp(), np.exp(x), "transcendental", dtype=dtypes.float32)
  check(t.reciprocal(), 1 / x, dtype=dtypes.float32)
  check(t.sigmoid(), np_sigmoid(x.astype(np.float64)), "transcendental", dtype=dtypes.float32)

def test_int_unary_ops_stay_int(device):
  x = np.array([-7, -1, 0, 3, 12], np.int32)
  t = Tensor(x, device=device)
  check(-t, -x, dtype=dtypes.int32)
  check(t.abs(), np.abs(x), dtype=dtypes.int32)
  check(t.sign(), np.sign(x), dtype=dtypes.int32)
  check(t.relu(), np.maximum(x, 0), dtype=dtypes.int32)
  check(t.square(), x * x, dtype=dtypes.int32)

# ## Elementwise: binary, with broadcasting

BINARY = [
  ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b), ("div", lambda a, b: a / b),
  ("maximum", lambda a, b: a.maximum(b) if isinstance(a, Tensor) else np.maximum(a, b)),
  ("minimum", lambda a, b: a.minimum(b) if isinstance(a, Tensor) else np.minimum(a, b)),
]
SHAPES = [((13,), (13,)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((1,), (7,)), ((5, 1, 3), (2, 1)), ((0, 3), (3,)), ((), (2, 3))]

@pytest.mark.parametrize("name, op", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("sa, sb", SHAPES, ids=[f"{a}-{b}" for a, b in SHAPES])
def test_binary_op_broadcasts_like_numpy(device, name, op, sa, sb):
  a, b = data(sa, seed=1), data(sb, seed=2, low=0.5, high=3)
  check(op(Tensor(a, device=device), Tensor(b, device=device)), op(a.astype(np.float64), b.astype(np.float64)))
  check(op(Tensor(b, device=device), Tensor(a, device=device)), op(b.astype(np.float64), a.astype(np.float64)))

def test_python_scalars_on_either_side(device):
  x = data((7,), low=0.5, high=3)
  t = Tensor(x, device=device)
  x = x.astype(np.float64)
  for got, expected in [(t + 2, x + 2), (2 + t, 2 + x), (t - 1.5, x - 1.5), (1.5 - t, 1.5 - x), (t * -3, x * -3), (-3 * t, -3 * x),
                        (t / 4, x / 4), (4 / t, 4 / x), (t ** 2, x ** 2), (2 ** t, 2 ** x)]:
    check(got, expected, "transcendental", dtype=dtypes.float32)

@pytest.mark.parametrize("dtype", [dtypes.int8, dtypes.uint8, dtypes.int32, dtypes.uint32, dtypes.int64, dtypes.float16, dtypes.float64], ids=str)
def test_arithmetic_keeps_the_dtype(device, dtype):
  a, b = np.array([1, 5, 7, 100], NP[dtype]), np.array([3, 2, 7, 1], NP[dtype])
  ta, tb = Tensor(a, device=device), Tensor(b, device=device)
  check(ta + tb, a + b, dtype=dtype)
  check(ta * tb, a * b, dtype=dtype)
  check(ta - tb, a - b, dtype=dtype)  # unsigned wraps around, as numpy's
  check(ta.maximum(tb), np.maximum(a, b), dtype=dtype)
  check(ta.minimum(tb), np.minimum(a, b), dtype=dtype)

def test_int_overflow_wraps_like_numpy(device):
  a = np.array([2**31 - 1, -2**31, 200], np.int32)
  t = Tensor(a, device=device)
  check(t + 1, a + np.int32(1), dtype=dtypes.int32)
  check(t * 3, a * np.int32(3), dtype=dtypes.int32)
  u = np.array([250, 3], np.uint8)
  check(Tensor(u, device=device) + 10, u + np.uint8(10), dtype=dtypes.uint8)

def test_int_true_division_gives_float(device):
  a, b = np.array([7, -7, 1, 0], np.int32), np.array([2, 2, 3, 5], np.int32)
  check(Tensor(a, device=device) / Tensor(b, device=device), a / b, dtype=dtypes.float32)
  check(Tensor(a, device=device) / 2, a / 2, dtype=dtypes.float32)

# ### Promotion: tensors meet by the lattice, Python scalars adopt the tensor's dtype

@pytest.mark.parametrize("da, db, out", [
  (dtypes.int8, dtypes.int16, dtypes.int16), (dtypes.int8, dtypes.uint8, dtypes.int16), (dtypes.int32, dtypes.uint32, dtypes.int64),
  (dtypes.bool, dtypes.int32, dtypes.int32), (dtypes.int32, dtypes.float16, dtypes.float16), (dtypes.float16, dtypes.float32, dtypes.float32),
  (dtypes.uint8, dtypes.float64, dtypes.float64), (dtypes.bool, dtypes.bool, dtypes.bool)], ids=str)
def test_two_tensors_promote_to_the_least_upper_dtype(device, da, db, out):
  a, b = Tensor([1, 0, 1], device=device, dtype=da), Tensor([1, 1, 0], device=device, dtype=db)
  assert (a + b).dtype == out and (b * a).dtype == out
  check(a * b, np.array([1, 0, 0]), dtype=out)

def test_python_scalar_promotion_follows_tinygrad(device):
  i = Tensor([1, 2], device=device)
  assert i.dtype == dtypes.int32
  check(i + 1, np.array([2, 3]), dtype=dtypes.int32)
  check(i * 2.5, np.array([2.5, 5.0]), dtype=dtypes.float32)
  check(Tensor([1, 2], device=device, dtype=dtypes.int8) + 1, np.array([2, 3]), dtype=dtypes.int8)
  check(Tensor([1, 2], device=device, dtype=dtypes.uint8) * 2, np.array([2, 4]), dtype=dtypes.uint8)
  check(Tensor([1, 2], device=device, dtype=dtypes.int16) - 0.5, np.array([0.5, 1.5]), dtype=dtypes.float32)
  check(Tensor([1, 2], device=device, dtype=dtypes.float16) * 3, np.array([3, 6]), dtype=dtypes.float16)
  check(Tensor([1, 2], device=device, dtype=dtypes.float64) + 0.1, np.array([1.1, 2.1]), dtype=dtypes.float64)
  check(Tensor([True, False], device=device) + 1, np.array([2, 1]), dtype=dtypes.int32)
  check(Tensor([True, False], device=device) * 1.5, np.array([1.5, 0]), dtype=dtypes.float32)
  check(Tensor([True, False], device=device) & True, np.array([True, False]), dtype=dtypes.bool)

# ### Floor division and modulo, as Python's

def test_int_floordiv_and_mod_follow_python_signs(device):
  a = np.array([7, -7, 7, -7, 0, 6, -6, 13, -1], np.int32)
  b = np.array([2, 2, -2, -2, 3, 3, -3, -5, 7], np.int32)
  ta, tb = Tensor(a, device=device), Tensor(b, device=device)
  check(ta // tb, a // b, dtype=dtypes.int32)
  check(ta % tb, a % b, dtype=dtypes.int32)
  check(ta // 3, a // 3, dtype=dtypes.int32)
  check(ta % -3, a % -3, dtype=dtypes.int32)
  check(17 // tb, 17 // b, dtype=dtypes.int32)
  check(-17 % tb, -17 % b, dtype=dtypes.int32)

@pytest.mark.parametrize("dtype", [dtypes.int8, dtypes.int64, dtypes.uint8, dtypes.uint32], ids=str)
def test_int_floordiv_and_mod_in_other_int_dtypes(device, dtype):
  signed = not dtype.is_unsigned
  a = np.array([100, -100 if signed else 99, 5, 1], NP[dtype])
  b = np.array([7, 7, -3 if signed else 3, 9], NP[dtype])
  check(Tensor(a, device=device) // Tensor(b, device=device), a // b, dtype=dtype)
  check(Tensor(a, device=device) % Tensor(b, device=device), a % b, dtype=dtype)

def test_float_floordiv_and_mod_follow_python_signs(device):
  a = np.array([7.5, -7.5, 7.5, -7.5, 0.0, 6.0, -1.0, 5.0], np.float32)
  b = np.array([2.0, 2.0, -2.0, -2.0, 4.0, 0.5, 4.0, -0.25], np.float32)
  ta, tb = Tensor(a, device=device), Tensor(b, device=device)
  check(ta // tb, np.floor_divide(a, b), dtype=dtypes.float32)
  check(ta % tb, np.mod(a, b), dtype=dtypes.float32)
  check(ta % 2, np.mod(a, 2), dtype=dtypes.float32)

def test_float_floordiv_and_mod_with_divisors_that_are_not_powers_of_two(device):
  a = np.array([7.5, -7.5, 9.0, -9.0, 6.0, -0.9], np.float32)
  b = np.array([1.5, 1.5, 3.0, -3.0, 0.75, 0.3], np.float32)
  ta, tb = Tensor(a, device=device), Tensor(b, device=device)
  check(ta // tb, np.floor_divide(a, b), dtype=dtypes.float32)
  check(ta % tb, np.mod(a, b), dtype=dtypes.float32)

# ### Powers

def test_pow_with_integer_exponent_is_exact(device):
  x = np.array([-3, -1, 0, 2, 5], np.int32)
  check(Tensor(x, device=device) ** 3, x ** 3, dtype=dtypes.int32)
  check(Tensor(x, device=device) ** 0, x ** 0, dtype=dtypes.int32)
  f = np.array([-1.5, 0.0, 2.0, 3.0], np.float32)
  check(Tensor(f, device=device) ** 2, f ** 2, dtype=dtypes.float32)
  check(Tensor(f, device=device).pow(5), f.astype(np.float64) ** 5, dtype=dtypes.float32)

def test_pow_with_float_and_tensor_exponents(device):
  x = np.array([0.5, 1.0, 2.0, 3.5, 7.0], np.float32)
  e = np.array([-1.5, 0.0, 0.5, 2.0, 1.25], np.float32)
  check(Tensor(x, device=device) ** 0.5, np.sqrt(x.astype(np.float64)), "transcendental")
  check(Tensor(x, device=device) ** -1.5, x.astype(np.float64) ** -1.5, "transcendental")
  check(Tensor(x, device=device) ** Tensor(e, device=device), x.astype(np.float64) ** e, "transcendental")
  check(3 ** Tensor(e, device=device), 3.0 ** e.astype(np.float64), "transcendental")

def test_pow_of_negative_base(device):
  x = np.array([-2.0, -2.0, -2.0, -0.5, 0.0, 0.0], np.float32)
  e = np.array([3.0, 2.0, 0.5, -1.0, 0.0, -1.0], np.float32)
  with np.errstate(all="ignore"): expected = x.astype(np.float64) ** e
  check(Tensor(x, device=device) ** Tensor(e, device=device), expected, "transcendental")

def test_int_tensor_pow_int_tensor_stays_int(device):
  a, b = np.array([2, 3, -2, 5], np.int32), np.array([3, 2, 3, 0], np.int32)
  check(Tensor(a, device=device) ** Tensor(b, device=device), a ** b, dtype=dtypes.int32)

# ### Comparisons, where, clip

def test_comparisons_broadcast_and_give_bool(device):
  a, b = np.array([[1.0], [2.0], [3.0]], np.float32), np.array([3.0, 2.0, 1.0, 2.0], np.float32)
  ta, tb = Tensor(a, device=device), Tensor(b, device=device)
  for got, expected in [(ta < tb, a < b), (ta > tb, a > b), (ta <= tb, a <= b), (ta >= tb, a >= b), (ta == tb, a == b), (ta != tb, a != b),
                        (ta < 2, a < 2), (2 < ta, 2 < a), (ta == 2, a == 2), (ta >= 2.5, a >= 2.5)]:
    check(got, expected, dtype=dtypes.bool)

def test_comparisons_with_nan_are_false_except_not_equal(device):
  a = np.array([np.nan, 1.0, np.nan], np.float32)
  b = np.array([1.0, np.nan, np.nan], np.float32)
  ta, tb = Tensor(a, device=device), Tensor(b, device=device)
  for got, expected in [(ta < tb, a < b), (ta == tb, a == b), (ta != tb, a != b), (ta >= tb, a >= b)]: check(got, expected)

def test_int_comparisons_mix_dtypes(device):
  a, b = np.array([-1, 0, 200], np.int16), np.array([255, 0, 100], np.uint8)
  check(Tensor(a, device=device) < Tensor(b, device=device), a < b)
  check(Tensor(a, device=device) == Tensor(b, device=device), a == b)

def test_where_selects_and_broadcasts(device):
  cond = np.array([[True], [False]])
  x, y = data((2, 3), seed=4), data((3,), seed=5)
  tc = Tensor(cond, device=device)
  check(tc.where(Tensor(x, device=device), Tensor(y, device=device)), np.where(cond, x, y))
  check(tc.where(Tensor(x, device=device), 0.5), np.where(cond, x, 0.5))
  check(tc.where(-1.0, Tensor(y, device=device)), np.where(cond, -1.0, y))
  check(tc.where(1, 2), np.where(cond, 1, 2), dtype=dtypes.int32)

def test_where_with_a_non_bool_condition_uses_truthiness(device):
  c = np.array([0.0, 2.0, -0.5, 0.0], np.float32)
  check(Tensor(c, device=device).where(1.0, 0.0), np.where(c != 0, 1.0, 0.0))

def test_maximum_and_minimum_propagate_nan(device):
  a, b = np.array([np.nan, 1.0, 2.0], np.float32), np.array([0.0, np.nan, 1.0], np.float32)
  np.testing.assert_array_equal(Tensor(a, device=device).maximum(Tensor(b, device=device)).numpy(), np.maximum(a, b))
  np.testing.assert_array_equal(Tensor(a, device=device).minimum(Tensor(b, device=device)).numpy(), np.minimum(a, b))

def test_clip_matches_numpy(device):
  x = data((13,), seed=6)
  t = Tensor(x, device=device)
  check(t.clip(-1, 2), np.clip(x, -1, 2))
  check(t.clip(min_=0.5), np.maximum(x, 0.5))
  check(t.clip(max_=-0.5), np.minimum(x, -0.5))
  check(t.clamp(-1, 1), np.clip(x, -1, 1))
  i = np.array([-5, 0, 3, 9], np.int32)
  check(Tensor(i, device=device).clip(-1, 4), np.clip(i, -1, 4), dtype=dtypes.int32)

# ### Logic and bits

def test_logical_not(device):
  check(Tensor([True, False], device=device).logical_not(), np.array([False, True]), dtype=dtypes.bool)
  check(Tensor([0, 3, -1], device=device).logical_not(), np.array([True, False, False]), dtype=dtypes.bool)
  check(Tensor([0.0, 0.5], device=device).logical_not(), np.array([True, False]), dtype=dtypes.bool)

@pytest.mark.parametrize("dtype", [dtypes.int32, dtypes.int8, dtypes.uint8, dtypes.uint16, dtypes.int64], ids=str)
def test_bitwise_ops_on_ints(device, dtype):
  info = np.iinfo(NP[dtype])
  a = np.array([0, 1, 5, 12, info.max, info.min], NP[dtype])
  b = np.array([3, 1, 6, 10, 1, 7], NP[dtype])
  ta, tb = Tensor(a, device=device), Tensor(b, device=device)
  for got, expected in [(ta & tb, a & b), (ta | tb, a | b), (ta ^ tb, a ^ b), (~ta, ~a), (ta & 6, a & 6), (3 | ta, 3 | a), (5 ^ ta, 5 ^ a),
                        (ta << 2, a << NP[dtype](2)), (ta >> 1, a >> NP[dtype](1)), (ta.bitwise_and(tb), a & b)]:
    check(got, expected, dtype=dtype)

def test_right_shift_of_negative_ints_is_arithmetic(device):
  a = np.array([-8, -1, -7, 9], np.int32)
  check(Tensor(a, device=device) >> 1, a >> 1, dtype=dtypes.int32)
  check(Tensor(a, device=device) >> Tensor([1, 3, 2, 0], device=device), a >> np.array([1, 3, 2, 0]), dtype=dtypes.int32)

def test_bitwise_ops_on_bools(device):
  a, b = np.array([True, True, False, False]), np.array([True, False, True, False])
  ta, tb = Tensor(a, device=device), Tensor(b, device=device)
  for got, expected in [(ta & tb, a & b), (ta | tb, a | b), (ta ^ tb, a ^ b), (~ta, ~a)]: check(got, expected, dtype=dtypes.bool)

# ### Casts

@pytest.mark.parametrize("src, dst", [
  (dtypes.float32, dtypes.int32), (dtypes.float32, dtypes.bool), (dtypes.float32, dtypes.uint8), (dtypes.float32, dtypes.float16),
  (dtypes.float32, dtypes.float64), (dtypes.int32, dtypes.float32), (dtypes.int32, dtypes.int8), (dtypes.int32, dtypes.uint16),
  (dtypes.int8, dtypes.int64), (dtypes.uint8, dtypes.int8), (dtypes.bool, dtypes.float32), (dtypes.int64, dtypes.float64),
  (dtypes.float16, dtypes.int16), (dtypes.uint32, dtypes.float32), (dtypes.int32, dtypes.bool)], ids=str)
def test_cast_matches_numpy(device, src, dst):
  values = {dtypes.float32: [-2.7, -0.5, 0.0, 0.5, 2.7, 100.25], dtypes.float16: [-2.5, 0.0, 7.75, 1000.0],
            dtypes.int32: [-300, -1, 0, 1, 127, 70000], dtypes.int8: [-128, -1, 0, 127], dtypes.uint8: [0, 127, 128, 255],
            dtypes.bool: [True, False], dtypes.int64: [-2**40, 0, 2**40 + 1], dtypes.uint32: [0, 1, 2**32 - 1]}[src]
  a = np.array(values, NP[src])
  if src.is_float and dst.is_unsigned: a = np.abs(a)  # a negative float to unsigned is undefined in C
  check(Tensor(a, device=device).cast(dst), a.astype(NP[dst]), dtype=dst)

def test_cast_helpers(device):
  t = Tensor([1.5, -2.5, 0.0], device=device)
  check(t.int(), np.array([1, -2, 0]), dtype=dtypes.int32)
  check(t.bool(), np.array([True, True, False]), dtype=dtypes.bool)
  check(t.half(), np.array([1.5, -2.5, 0.0]), dtype=dtypes.float16)
  check(Tensor([1, 2], device=device).float(), np.array([1.0, 2.0]), dtype=dtypes.float32)

@pytest.mark.parametrize("src, dst", [(dtypes.float32, dtypes.int32), (dtypes.int32, dtypes.float32), (dtypes.float32, dtypes.uint32),
                                      (dtypes.int16, dtypes.float16), (dtypes.float64, dtypes.int64), (dtypes.uint8, dtypes.int8)], ids=str)
def test_bitcast_matches_numpy_view(device, src, dst):
  a = np.array([1, 2, 3, 100], NP[src]) if not src.is_float else np.array([1.0, -2.5, 0.0, 3.14159], NP[src])
  check(Tensor(a, device=device).bitcast(dst), a.view(NP[dst]), dtype=dst)

def test_bitcast_of_a_computed_tensor(device):
  a = np.array([1.0, -2.0, 0.5], np.float32)
  check((Tensor(a, device=device) * 2).bitcast(dtypes.int32), (a * 2).view(np.int32), dtype=dtypes.int32)

# ### Odd sizes and non-contiguous inputs

@pytest.mark.parametrize("shape", [(1,), (0,), (7,), (13,), (1, 1), (7, 1, 13), (0, 7), (2, 0, 3)], ids=str)
def test_elementwise_on_odd_and_empty_shapes(device, shape):
  a, b = data(shape, seed=1), data(shape, seed=2)
  check((Tensor(a, device=device) * Tensor(b, device=device) + 1).relu(), np.maximum(a.astype(np.float64) * b + 1, 0))

def test_elementwise_on_non_contiguous_views(device):
  a, b = data((3, 5), seed=1), data((5, 3), seed=2)
  ta, tb = Tensor(a, device=device), Tensor(b, device=device)
  check(ta.T * tb, a.T * b)
  check(ta.flip(1) + ta, a[:, ::-1] + a)
  check(ta[1:, ::2] - ta[:2, ::-2].flip(0), a[1:, ::2] - a[:2, ::-2][::-1])
  check(ta.permute(1, 0)[::-2].exp(), np.exp(a.T[::-2].astype(np.float64)), "transcendental")
  check(ta[:, 2:3] * tb.T, a[:, 2:3] * b.T)  # a column, broadcast against a transposed matrix

def test_an_operand_that_folds_away_does_not_shift_the_other_buffers(device):
  a, b = Tensor([5, 5], device=device), Tensor([7, 8], device=device)
  check(a * 0 + b, np.array([7, 8]))  # int a*0 folds to 0, so the kernel never loads a; it must still read b from b
  x, y = Tensor([3], device=device), Tensor([True], device=device)
  check((x != x) ^ y, np.array([True]))

# ## Matrix multiplication

MATMUL_SHAPES = [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)),
                 ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 1), (1, 1)), ((7, 13), (13, 1)), ((2, 0), (0, 3)), ((0, 3), (3, 2)),
                 ((3,), (2, 3, 4))]

@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES, ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES])
def test_matmul_batches_and_broadcasts_like_numpy(device, sa, sb):
  a, b = data(sa, seed=1), data(sb, seed=2)
  check(Tensor(a, device=device) @ Tensor(b, device=device), a.astype(np.float64) @ b.astype(np.float64), dtype=dtypes.float32)

@pytest.mark.parametrize("sa, sb", [((67, 131), (131, 29)), ((3, 64, 64), (64, 64)), ((1031,), (1031, 5))], ids=str)
def test_larger_matmuls_on_cpu(sa, sb):
  a, b = data(sa, seed=1, low=-1, high=1), data(sb, seed=2, low=-1, high=1)
  expected = a.astype(np.float64) @ b
  np.testing.assert_allclose((Tensor(a, device="CPU") @ Tensor(b, device="CPU")).numpy(), expected, rtol=1e-4, atol=1e-4)  # long float32 sums

def test_matmul_dot_and_rmatmul_agree(device):
  a, b = data((2, 3), seed=1), data((3, 2), seed=2)
  ta, tb = Tensor(a, device=device), Tensor(b, device=device)
  check(ta.dot(tb), a.astype(np.float64) @ b)
  check(ta.matmul(tb), a.astype(np.float64) @ b)

def test_matmul_of_non_contiguous_operands(device):
  a, b = data((4, 3), seed=1), data((5, 4), seed=2)
  ta, tb = Tensor(a, device=device), Tensor(b, device=device)
  check(ta.T @ tb.T, a.T.astype(np.float64) @ b.T)
  check(ta[::-1, 1:] .T @ tb[1:, ::2], a[::-1, 1:].T.astype(np.float64) @ b[1:, ::2])

def test_int_matmul_is_exact_and_keeps_the_dtype(device):
  a, b = np.arange(-6, 6, dtype=np.int32).reshape(3, 4), np.arange(8, dtype=np.int32).reshape(4, 2)
  check(Tensor(a, device=device) @ Tensor(b, device=device), a @ b, dtype=dtypes.int32)
  i8 = np.array([[100, 100], [-100, 50]], np.int8)
  assert (Tensor(i8, device=device) @ Tensor(i8, device=device)).dtype == dtypes.int8

def test_matmul_promotes_mixed_dtypes(device):
  a, b = np.array([[1, 2]], np.int32), np.array([[0.5], [0.25]], np.float32)
  check(Tensor(a, device=device) @ Tensor(b, device=device), a @ b, dtype=dtypes.float32)

# ## Devices, storage and getting values out

def test_to_copies_between_python_and_cpu():
  a = data((3, 4), seed=9)
  t = Tensor(a, device="PYTHON")
  c = t.to("CPU")
  assert c.device == "CPU" and t.device == "PYTHON"
  check(c, a)
  back = (c * 2).to("PYTHON")
  assert back.device == "PYTHON"
  check(back + t, a * 3)

def test_to_of_a_lazy_non_contiguous_view():
  a = data((3, 4), seed=9)
  t = (Tensor(a, device="CPU").T[::-1] + 1).to("python")
  assert t.device == "PYTHON"
  check(t, a.T[::-1] + 1)
  check(Tensor(a, device="PYTHON")[1:, ::2].to("CPU"), a[1:, ::2])

@pytest.mark.parametrize("dtype", [dtypes.float16, dtypes.bool, dtypes.int8, dtypes.uint64, dtypes.float64], ids=str)
def test_to_keeps_the_dtype(dtype):
  a = np.array([0, 1, 3], NP[dtype])
  for src, dst in [("PYTHON", "CPU"), ("CPU", "PYTHON")]:
    moved = Tensor(a, device=src).to(dst)
    assert (moved.device, moved.dtype) == (dst, dtype)
    check(moved, a)

def test_to_the_same_device_is_the_same_tensor(device):
  t = Tensor([1, 2], device=device)
  assert t.to(device) is t
  assert t.to(device.lower()).device == device

def test_contiguous_keeps_values(device):
  a = data((3, 5), seed=1)
  t = Tensor(a, device=device).permute(1, 0).flip(0).contiguous()
  check(t, a.T[::-1])
  check(t.contiguous(), a.T[::-1])

def test_detach_keeps_values(device):
  a = data((4,), seed=1)
  t = (Tensor(a, device=device) * 2).detach()
  check(t + 1, a.astype(np.float64) * 2 + 1)

def test_assign_writes_into_the_same_tensor(device):
  t = Tensor([1.0, 2.0, 3.0], device=device)
  same = t.assign(t * 10)
  assert same is t
  check(t, np.array([10.0, 20.0, 30.0]))
  t.assign(t + 1)
  check(t, np.array([11.0, 21.0, 31.0]))
  t.assign(Tensor([7, 8, 9], device=device))  # cast to the target's dtype
  check(t, np.array([7.0, 8.0, 9.0]), dtype=dtypes.float32)

def test_assign_a_scalar_and_into_a_lazy_tensor(device):
  t = Tensor.zeros(2, 3, device=device)
  t.assign(5.0)
  check(t, np.full((2, 3), 5.0))
  lazy = Tensor([1, 2], device=device) + 1
  lazy.assign(lazy * 3)
  check(lazy, np.array([6, 9]), dtype=dtypes.int32)

def test_assign_keeps_the_buffer_so_other_views_see_the_new_values(device):
  t = Tensor([1, 2, 3, 4], device=device).realize()
  view = t.reshape(2, 2)
  t.assign(t * 2).realize()
  check(t, np.array([2, 4, 6, 8]))
  check(view, np.array([[2, 4], [6, 8]]))

def test_properties(device):
  t = Tensor.zeros(2, 3, 5, device=device, dtype=dtypes.int16)
  assert (t.shape, t.dtype, t.device, t.ndim, t.numel(), len(t)) == ((2, 3, 5), dtypes.int16, device, 3, 30, 2)
  assert t.element_size() == 2
  assert (t.sum(1).shape, t.T.shape, t[0].ndim) == ((2, 5), (5, 3, 2), 2)

def test_tolist_of_every_rank_and_empty_shapes(device):
  assert Tensor(2.5, device=device).tolist() == 2.5
  assert Tensor([1, 2], device=device).tolist() == [1, 2]
  assert Tensor([[True], [False]], device=device).tolist() == [[True], [False]]
  a = np.arange(12, dtype=np.int32).reshape(2, 3, 2)
  assert Tensor(a, device=device).permute(2, 0, 1).tolist() == a.transpose(2, 0, 1).tolist()
  for shape in [(0,), (0, 3), (2, 0), (2, 0, 3), (1, 2, 0)]:
    assert Tensor.zeros(*shape, device=device).tolist() == np.zeros(shape).tolist(), shape

def test_item_and_numpy(device):
  assert Tensor([[7]], device=device).item() == 7
  assert Tensor(1.5, device=device).item() == 1.5
  assert (Tensor([3.0, 4.0], device=device) ** 2).sum().item() == 25.0
  assert Tensor(True, device=device).item() is True
  n = Tensor([[1, 2]], device=device, dtype=dtypes.uint16).numpy()
  assert n.dtype == np.uint16 and n.shape == (1, 2) and n.tolist() == [[1, 2]]
  assert Tensor(3, device=device).numpy().shape == ()

def test_numpy_returns_a_copy_the_tensor_does_not_share(device):
  t = Tensor([1.0, 2.0], device=device)
  n = t.numpy()
  n[0] = 100
  assert t.tolist() == [1.0, 2.0]
