"""Chapter 15, the rest of the Tensor API: each method and argument form against a float64 numpy reference (math.erf
where numpy has none), forward on float32 and edge values, backward against central finite differences in float64,
on every device; and the errors bad arguments raise.
"""
import math, zlib
import numpy as np
import pytest
from tiny import Tensor, dtypes
from conftest import check
from test_autograd import finite_difference, TOLERANCE as GRAD_TOLERANCE
import test_nn_ops as ref

def data(shape, seed=0, low=-2.0, high=2.0):
  return np.random.default_rng(seed).uniform(low, high, size=shape)

np_erf = np.vectorize(math.erf)
def np_sigmoid(x): return 1 / (1 + np.exp(-x))
def np_softplus(x, beta=1.0): return np.logaddexp(0, beta * x) / beta

# ## Elementwise math and activations
# name, tiny op, numpy reference (float64), input range, tolerance kind, whether the gradient is checked there

ELEMENTWISE = [
  ("asin", lambda t: t.asin(), np.arcsin, (-0.95, 0.95), "approximation"),
  ("acos", lambda t: t.acos(), np.arccos, (-0.95, 0.95), "approximation"),
  ("atan", lambda t: t.atan(), np.arctan, (-4, 4), "approximation"),
  ("sinh", lambda t: t.sinh(), np.sinh, (-3, 3), "transcendental"),
  ("cosh", lambda t: t.cosh(), np.cosh, (-3, 3), "transcendental"),
  ("asinh", lambda t: t.asinh(), np.arcsinh, (-4, 4), "transcendental"),
  ("acosh", lambda t: t.acosh(), np.arccosh, (1.1, 5), "transcendental"),
  ("atanh", lambda t: t.atanh(), np.arctanh, (-0.9, 0.9), "transcendental"),
  ("erf", lambda t: t.erf(), np_erf, (-3, 3), "approximation"),
  ("log10", lambda t: t.log10(), np.log10, (0.1, 100), "transcendental"),
  ("elu", lambda t: t.elu(), lambda x: np.where(x > 0, x, np.exp(x) - 1), (-3, 3), "transcendental"),
  ("elu_0.5", lambda t: t.elu(0.5), lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1)), (-3, 3), "transcendental"),
  ("celu_2", lambda t: t.celu(2.0), lambda x: np.maximum(x, 0) + np.minimum(0, 2 * (np.exp(x / 2) - 1)), (-3, 3), "transcendental"),
  ("selu", lambda t: t.selu(), lambda x: 1.0507 * np.where(x >= 0, x, 1.67326 * (np.exp(x) - 1)), (-3, 3), "transcendental"),
  ("relu6", lambda t: t.relu6(), lambda x: np.clip(x, 0, 6), (-3, 9), None),
  ("hardtanh", lambda t: t.hardtanh(), lambda x: np.clip(x, -1, 1), (-3, 3), None),
  ("hardsigmoid", lambda t: t.hardsigmoid(), lambda x: np.clip(x / 6 + 0.5, 0, 1), (-5, 5), None),
  ("hardswish", lambda t: t.hardswish(), lambda x: x * np.clip(x + 3, 0, 6) / 6, (-5, 5), None),
  ("softplus", lambda t: t.softplus(), np_softplus, (-5, 5), "transcendental"),
  ("softplus_beta2", lambda t: t.softplus(2.0), lambda x: np_softplus(x, 2.0), (-5, 5), "transcendental"),
  ("mish", lambda t: t.mish(), lambda x: x * np.tanh(np_softplus(x)), (-4, 4), "transcendental"),
  ("softsign", lambda t: t.softsign(), lambda x: x / (1 + np.abs(x)), (-4, 4), None),
  ("logsigmoid", lambda t: t.logsigmoid(), lambda x: -np_softplus(-x), (-5, 5), "transcendental"),
  ("quick_gelu", lambda t: t.quick_gelu(), lambda x: x * np_sigmoid(1.702 * x), (-4, 4), "transcendental"),
  ("gelu_none", lambda t: t.gelu(approximate="none"), lambda x: 0.5 * x * (1 + np_erf(x / math.sqrt(2))), (-4, 4), "approximation"),
  ("sigmoid", lambda t: t.sigmoid(), np_sigmoid, (-8, 8), "transcendental"),
]
TOLERANCE = {  # (rtol, atol) of float32 results against the float64 reference
  None: (1e-6, 1e-6), "transcendental": (1e-5, 1e-5),
  "approximation": (1e-5, 3e-7),  # asin's polynomial is good to 2e-8 and erf's to 1.5e-7, in absolute error
}

@pytest.mark.parametrize("name, op, np_op, span, kind", ELEMENTWISE, ids=[c[0] for c in ELEMENTWISE])
def test_elementwise_matches_numpy(device, name, op, np_op, span, kind):
  x = data((3, 5), zlib.crc32(name.encode()), *span)
  out = op(Tensor(x.astype(np.float32), device=device))
  assert out.dtype == dtypes.float32 and out.shape == (3, 5)
  np.testing.assert_allclose(out.numpy().astype(np.float64), np_op(x), *TOLERANCE[kind])

# away from kinks (relu6 at 0 and 6, hardtanh at +-1, hardsigmoid at +-3) so that differences are smooth
@pytest.mark.parametrize("name, op, np_op, span, kind", ELEMENTWISE, ids=[c[0] for c in ELEMENTWISE])
def test_elementwise_gradient_matches_finite_differences(device, name, op, np_op, span, kind):
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  x = rng.uniform(*span, (4,))
  kinks = {"relu6": [0, 6], "hardtanh": [-1, 1], "hardsigmoid": [-3, 3], "hardswish": [-3, 3], "elu": [0], "elu_0.5": [0], "selu": [0], "celu_2": [0]}
  for k in kinks.get(name, []): x = np.where(np.abs(x - k) < 0.05, x + 0.1, x)
  t = Tensor(x, device=device, requires_grad=True)
  W = rng.standard_normal(4)
  (g,) = (op(t) * Tensor(W, device=device)).sum().gradient(t)
  tol = GRAD_TOLERANCE["gradient"] if kind != "approximation" else (1e-4, 1e-6)  # a polynomial fit's slope is a little off
  np.testing.assert_allclose(g.numpy(), finite_difference(np_op, [x], 0, W), *tol)

def test_sigmoid_and_tanh_at_extreme_inputs_have_no_nan_in_value_or_gradient(device):
  t = Tensor([-1000.0, -100.0, 0.0, 100.0, 1000.0], device=device, requires_grad=True)
  for op, expected, slope in [(lambda x: x.sigmoid(), [0, 0, 0.5, 1, 1], [0, 0, 0.25, 0, 0]), (lambda x: x.tanh(), [-1, -1, 0, 1, 1], [0, 0, 1, 0, 0])]:
    out = op(t)
    (g,) = out.sum().gradient(t)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(g.numpy(), slope, atol=1e-6)

def test_softmin_is_softmax_of_the_negation(device):
  x = data((2, 5), 20)
  e = np.exp(-(x - x.min(1, keepdims=True)))
  check(Tensor(x.astype(np.float32), device=device).softmin(1), e / e.sum(1, keepdims=True), "transcendental")

def test_softplus_does_not_overflow(device):
  check(Tensor([-200.0, 0.0, 200.0], device=device).softplus(), [0.0, math.log(2), 200.0])

@pytest.mark.parametrize("name, value, expected", [
  ("asin_edges", lambda t: t.asin(), [-math.pi / 2, 0, math.pi / 2]), ("acos_edges", lambda t: t.acos(), [math.pi, math.pi / 2, 0]),
  ("atanh_edges", lambda t: t.atanh(), [-math.inf, 0, math.inf]), ("erf_edges", lambda t: t.erf(), [-math.erf(1), 0, math.erf(1)])])
def test_inverse_functions_at_the_ends_of_their_domain(device, name, value, expected):
  np.testing.assert_allclose(value(Tensor([-1.0, 0.0, 1.0], device=device)).numpy(), expected, atol=1e-6)

def test_functions_of_nan_and_inf(device):
  t = Tensor([math.nan, math.inf, -math.inf], device=device)
  for op in ("asin", "erf", "sinh", "softsign", "logsigmoid", "mish"): assert math.isnan(getattr(t, op)().tolist()[0]), op
  assert t.erf().tolist()[1:] == [1.0, -1.0] and t.atan().tolist()[1:] == pytest.approx([math.pi / 2, -math.pi / 2])
  assert t.sigmoid().tolist()[1:] == [1.0, 0.0] and t.softplus().tolist()[1:] == [math.inf, 0.0]

@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gelu_approximations(device, approximate):
  x = data((7,), 3, -3, 3)
  if approximate == "tanh": reference = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
  else: reference = 0.5 * x * (1 + np_erf(x / math.sqrt(2)))
  np.testing.assert_allclose(Tensor(x, device=device, dtype=dtypes.float32).gelu(approximate=approximate).numpy(), reference, *TOLERANCE["approximation"])

# ## Binary math

@pytest.mark.parametrize("name, op, np_op", [
  ("copysign", lambda a, b: a.copysign(b), np.copysign), ("fmod", lambda a, b: a.fmod(b), np.fmod),
  ("logaddexp", lambda a, b: a.logaddexp(b), np.logaddexp), ("lerp", lambda a, b: a.lerp(b, 0.3), lambda a, b: a + (b - a) * 0.3),
  ("div_trunc", lambda a, b: a.div(b, rounding_mode="trunc"), lambda a, b: np.trunc(a / b)),
  ("div_floor", lambda a, b: a.div(b, rounding_mode="floor"), lambda a, b: np.floor(a / b)),
  ("idiv", lambda a, b: a.idiv(b), lambda a, b: np.trunc(a / b)), ("floordiv", lambda a, b: a // b, np.floor_divide)])
def test_binary_math_matches_numpy(device, name, op, np_op):
  a, b = data((4, 3), 1, -5, 5), data((4, 3), 2, -5, 5)
  b = np.where(np.abs(b) < 0.5, 1.5, b)
  check(op(Tensor(a, device=device, dtype=dtypes.float32), Tensor(b, device=device, dtype=dtypes.float32)), np_op(a.astype(np.float32), b.astype(np.float32)), "transcendental")

@pytest.mark.parametrize("dtype", [dtypes.int32, dtypes.int8])
def test_int_division_rounds_toward_zero_in_idiv_and_down_in_floordiv(device, dtype):
  a, b = np.array([-7, 7, -7, 7, -6, 0]), np.array([2, 2, -2, -2, 3, 5])
  x, y = Tensor(a, device=device, dtype=dtype), Tensor(b, device=device, dtype=dtype)
  check(x.idiv(y), np.trunc(a / b).astype(int), dtype=dtype)
  check(x.div(y, rounding_mode="trunc"), np.trunc(a / b).astype(int), dtype=dtype)
  check(x // y, a // b, dtype=dtype)
  check(x.div(y, rounding_mode="floor"), a // b, dtype=dtype)
  check(x.fmod(y), np.fmod(a, b), dtype=dtype)
  check(x / y, a / b, dtype=dtypes.float32)

def test_copysign_sees_the_sign_of_negative_zero(device):
  check(Tensor([1.0, -2.0, 3.0, 0.0], device=device).copysign(Tensor([-0.0, 0.0, -1.0, -5.0], device=device)), [-1.0, 2.0, -3.0, -0.0])
  assert math.copysign(1, Tensor([0.0], device=device).copysign(-0.0).item()) == -1

def test_logaddexp_of_infinities(device):
  out = Tensor([-math.inf, math.inf, -math.inf, 1.0], device=device).logaddexp(Tensor([-math.inf, 1.0, 2.0, 1000.0], device=device))
  np.testing.assert_allclose(out.numpy(), [-math.inf, math.inf, 2.0, 1000.0])

def test_predicates(device):
  values = [0.0, -0.0, 1.5, math.nan, math.inf, -math.inf]
  a = np.array(values)
  t = Tensor(values, device=device)
  check(t.isnan(), np.isnan(a)); check(t.isinf(), np.isinf(a)); check(t.isfinite(), np.isfinite(a))
  check(t.isinf(detect_negative=False), np.isposinf(a)); check(t.isinf(detect_positive=False), np.isneginf(a))
  check(Tensor([1, 2], device=device).isnan(), [False, False])
  other = np.array([1e-9, 0.0, 1.5 + 1e-6, math.nan, math.inf, math.inf])
  for equal_nan in (False, True):
    check(t.isclose(Tensor(other, device=device), equal_nan=equal_nan), np.isclose(a, other, equal_nan=equal_nan))
  assert Tensor([1.0, 2.0], device=device).allclose(Tensor([1.0, 2.0 + 1e-7], device=device))

# ## pow, abs and clip: values and gradients at the edges

POW_BASES = [-2.0, -0.5, 0.0, 0.5, 2.0]
@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 0.5, 1.5, -0.5])
def test_pow_matches_numpy_at_zero_and_negative_bases(device, exponent):
  with np.errstate(all="ignore"): expected = np.power(np.array(POW_BASES), exponent)
  check(Tensor(POW_BASES, device=device).pow(exponent), expected, "transcendental")
  check(Tensor(POW_BASES, device=device).pow(Tensor([exponent] * 5, device=device)), expected, "transcendental")

def test_pow_of_a_scalar_base_and_int_tensors(device):
  x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
  for base in (0.0, 0.7, -2.0, 2.0):
    with np.errstate(all="ignore"): check(base ** Tensor(x, device=device), np.power(base, x), "transcendental")
  check(Tensor([-2, 0, 2], device=device) ** 3, [-8, 0, 8], dtype=dtypes.int32)
  check(Tensor([11, 12, 13], device=device) ** 7, np.array([11, 12, 13]) ** 7, dtype=dtypes.int32)
  check(Tensor([-2, 0, 2], device=device) ** 0, [1, 1, 1], dtype=dtypes.int32)

# the gradient of x**c with respect to x, c*x**(c-1), where the chain rule through exp2 and log2 would give NaN
@pytest.mark.parametrize("x, c, expected", [(0.0, 0.5, math.inf), (0.0, -1.0, -math.inf), (0.0, 2.0, 0.0), (0.0, 1.1, 0.0), (0.0, 0.0, 0.0),
                                            (4.0, 0.5, 0.25), (-2.0, 3.0, 12.0), (-2.0, 0.5, math.nan), (1.0, -1.0, -1.0)])
def test_pow_gradient_with_respect_to_the_base(device, x, c, expected):
  t = Tensor([x], device=device, requires_grad=True)
  (g,) = (t ** c).sum().gradient(t)
  np.testing.assert_allclose(g.numpy(), [expected], rtol=1e-5)

def test_pow_gradient_with_respect_to_the_exponent(device):
  e = np.array([-1.0, 0.5, 2.0])
  for base, expected in [(2.0, 2.0 ** e * math.log(2)), (0.0, [-math.inf, 0.0, 0.0])]:
    t = Tensor(e, device=device, requires_grad=True)
    (g,) = (Tensor([base] * 3, device=device) ** t).sum().gradient(t)
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-5)

def test_pow_gradient_matches_finite_differences(device):
  rng = np.random.default_rng(5)
  x, y, W = rng.uniform(0.5, 2, (3,)), rng.uniform(-2, 2, (3,)), rng.standard_normal(3)
  tx, ty = Tensor(x, device=device, requires_grad=True), Tensor(y, device=device, requires_grad=True)
  gx, gy = ((tx ** ty) * Tensor(W, device=device)).sum().gradient(tx, ty)
  np.testing.assert_allclose(gx.numpy(), finite_difference(np.power, [x, y], 0, W), *GRAD_TOLERANCE["gradient"])
  np.testing.assert_allclose(gy.numpy(), finite_difference(np.power, [x, y], 1, W), *GRAD_TOLERANCE["gradient"])

def test_abs_gradient_is_0_at_0_and_clip_gradient_is_1_at_the_bounds(device):
  t = Tensor([-1.0, 0.0, 2.0], device=device, requires_grad=True)
  assert t.abs().sum().gradient(t)[0].tolist() == [-1.0, 0.0, 1.0]
  t = Tensor([-2.0, -1.0, 0.0, 1.0, 2.0], device=device, requires_grad=True)
  assert t.clip(-1, 1).sum().gradient(t)[0].tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
  check(Tensor([-3.0, 0.0, 3.0, math.nan], device=device).clip(-1, 1), [-1.0, 0.0, 1.0, math.nan])
  check(Tensor([1.0, 5.0], device=device).clip(3, 2), [2.0, 2.0])  # min above max: max wins, as torch.clamp

def test_prod_gradient_with_zeros_is_the_product_of_the_others(device):
  t = Tensor([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.5, 2.0, -1.0]], device=device, requires_grad=True)
  (g,) = t.prod(1).sum().gradient(t)
  assert g.tolist() == [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [-2.0, -1.5, 3.0]]

# ## Running reductions

CUMULATIVE = [("cumsum", np.cumsum), ("cumprod", np.cumprod), ("cummax", np.maximum.accumulate), ("cummin", np.minimum.accumulate),
              ("logcumsumexp", np.logaddexp.accumulate)]
@pytest.mark.parametrize("name, np_op", CUMULATIVE, ids=[c[0] for c in CUMULATIVE])
@pytest.mark.parametrize("shape, axis", [((6,), 0), ((3, 4), 1), ((3, 4), -2), ((2, 0, 3), 1)])
def test_cumulative_matches_numpy(device, name, np_op, shape, axis):
  x = data(shape, 4, -1.5, 1.5)
  check(getattr(Tensor(x.astype(np.float32), device=device), name)(axis), np_op(x, axis=axis), "transcendental")

@pytest.mark.parametrize("name, np_op", CUMULATIVE, ids=[c[0] for c in CUMULATIVE])
def test_cumulative_gradient_matches_finite_differences(device, name, np_op):
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  x, W = ref.randn(2, 4, seed=3) if name not in ("cummax", "cummin") else (rng.permutation(8).reshape(2, 4) * 0.3), rng.standard_normal((2, 4))
  t = Tensor(x, device=device, requires_grad=True)
  (g,) = (getattr(t, name)(1) * Tensor(W, device=device)).sum().gradient(t)
  np.testing.assert_allclose(g.numpy(), finite_difference(lambda a: np_op(a, axis=1), [x], 0, W), *GRAD_TOLERANCE["gradient"])

def test_cumulative_of_ints_and_0d(device):
  check(Tensor([1, 2, 3, -4], device=device).cumprod(0), [1, 2, 6, -24])
  check(Tensor([3, 1, 4, 1, 5], device=device, dtype=dtypes.int8).cummax(0), [3, 3, 4, 4, 5], dtype=dtypes.int8)
  check(Tensor(2.5, device=device).cumprod(0), 2.5)
  check(Tensor([-1000.0, 0.0], device=device).logcumsumexp(0), [-1000.0, 0.0])  # no underflow of the early term

# ## Gathering and scattering

def test_gather_matches_take_along_axis(device):
  x = data((3, 4), 5)
  for dim, index in [(0, [[0, 2, 1, 0], [2, 2, 0, 1]]), (1, [[3, 0], [1, 1], [0, 2]]), (-1, [[1], [0], [3]])]:
    check(Tensor(x, device=device, dtype=dtypes.float32).gather(dim, Tensor(index, device=device)), np.take_along_axis(x, np.array(index), dim))

def test_gather_gradient_adds_up_repeated_positions(device):
  x, index = ref.randn(3, 2, seed=1), np.array([[0, 2], [0, 0], [2, 1]])
  t = Tensor(x, device=device, requires_grad=True)
  W = np.random.default_rng(2).standard_normal((3, 2))
  (g,) = (t.gather(0, Tensor(index, device=device)) * Tensor(W, device=device)).sum().gradient(t)
  np.testing.assert_allclose(g.numpy(), finite_difference(lambda a: np.take_along_axis(a, index, 0), [x], 0, W), *GRAD_TOLERANCE["gradient"])

def np_scatter(x, dim, index, src, combine=None):
  out = x.copy()
  for pos in np.ndindex(index.shape):
    target = list(pos)
    target[dim] = index[pos]
    out[tuple(target)] = src[pos] if combine is None else combine(out[tuple(target)], src[pos])
  return out

def test_scatter_writes_the_last_value_at_repeated_positions(device):
  x, src = np.zeros((3, 5)), np.arange(1, 11, dtype=np.float64).reshape(2, 5)
  index = np.array([[0, 1, 2, 0, 0], [2, 0, 0, 1, 2]])
  check(Tensor(x, device=device).scatter(0, Tensor(index, device=device), Tensor(src, device=device)), np_scatter(x, 0, index, src))
  check(Tensor(x, device=device).scatter(1, Tensor([[1], [3]], device=device), 7.0), np_scatter(x, 1, np.array([[1], [3]]), np.full((2, 1), 7.0)))

@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce_matches_a_loop(device, reduce, include_self):
  x, src = data((3, 4), 6), data((2, 4), 7)
  index = np.array([[0, 1, 0, 1], [0, 1, 2, 1]])
  ops = {"sum": np.add, "prod": np.multiply, "amax": np.maximum, "amin": np.minimum}
  if reduce == "mean":
    total, count = np_scatter(x if include_self else np.zeros_like(x), 0, index, src, np.add), np_scatter(np.ones_like(x) if include_self else np.zeros_like(x), 0, index, np.ones_like(src), np.add)
    expected = np.where(count > 0, total / np.maximum(count, 1), x)
  else:
    hit = np_scatter(np.zeros_like(x), 0, index, np.ones_like(src)) > 0
    start = x if include_self else np.where(hit, {"sum": 0, "prod": 1, "amax": -np.inf, "amin": np.inf}[reduce], x)
    expected = np_scatter(start, 0, index, src, ops[reduce])
  check(Tensor(x, device=device, dtype=dtypes.float32).scatter_reduce(0, Tensor(index, device=device), Tensor(src, device=device, dtype=dtypes.float32), reduce, include_self), expected)
  add = Tensor(x, device=device, dtype=dtypes.float32).scatter(0, Tensor(index, device=device), 2.0, reduce="add")
  check(add, np_scatter(x, 0, index, np.full(index.shape, 2.0), np.add))
  with pytest.raises(TypeError, match="scatter_reduce"): Tensor(x, device=device).scatter(0, Tensor(index, device=device), Tensor(src, device=device), reduce="add")

def test_masked_fill_masked_select_and_nonzero(device):
  x = data((3, 4), 8)
  mask = x > 0.3
  check(Tensor(x, device=device).masked_fill(Tensor(mask, device=device), -math.inf), np.where(mask, -np.inf, x))
  check(Tensor(x, device=device).masked_select(Tensor(mask, device=device)), x[mask])
  check(Tensor(x, device=device).masked_select(Tensor(True, device=device)), x.flatten())
  check(Tensor(mask, device=device).nonzero(), np.argwhere(mask), dtype=dtypes.int32)
  check(Tensor([0, 3, 0, -1], device=device).nonzero(), [[1], [3]])
  assert Tensor.zeros(2, 3, device=device).nonzero().shape == (0, 2)

# ## Indexing: lists and tuples, out-of-range indices

def test_list_and_tuple_indices_gather(device):
  x = data((4, 5), 9)
  t = Tensor(x, device=device)
  check(t[[0, 2, 3]], x[[0, 2, 3]]); check(t[(1, 3), :], x[(1, 3), :]); check(t[[0, -1], [1, 4]], x[[0, -1], [1, 4]])
  check(t[:, (0, 2)], x[:, (0, 2)]); check(t[[[0, 1], [2, 3]]], x[[[0, 1], [2, 3]]])

@pytest.mark.parametrize("index", [[0, 7], (1, [2, -6]), ([0], 5)], ids=str)
def test_out_of_range_list_or_int_index_raises_naming_it(device, index):
  with pytest.raises(IndexError, match="out of bounds"): Tensor.zeros(4, 5, device=device)[index]

def test_a_list_of_bools_is_not_a_mask(device):
  with pytest.raises(IndexError, match="masked_select"): Tensor.zeros(2, 3, device=device)[[True, False]]
  check(Tensor([1.0, 2.0, 3.0], device=device)[[True, False, 2]], [2.0, 1.0, 3.0])  # mixed with ints, bools are 1 and 0

def test_out_of_range_tensor_index_reads_zero(device):
  # documented in the Indexing section: a tensor's values are not known when the op is built
  check(Tensor([1.0, 2.0, 3.0], device=device)[Tensor([1, 5], device=device)], [2.0, 0.0])
  check(Tensor([[1.0, 2.0]], device=device).gather(1, Tensor([[1, 9]], device=device)), [[2.0, 0.0]])

# ## Item assignment

SETITEM = [(slice(1, 3),), (1,), (-1, slice(None, None, 2)), (slice(None, None, -2), 2), (Ellipsis, slice(1, None, 3)), (None, 2, slice(4, 0, -1)),
           (slice(2, 2),), (slice(0, 4, 3), slice(1, 6, 2))]
@pytest.mark.parametrize("index", SETITEM, ids=str)
def test_setitem_with_basic_indices_matches_numpy(device, index):
  a = np.arange(24.0).reshape(4, 6)
  t = Tensor(a, device=device)
  value = -np.arange(1, a[index].size + 1).reshape(a[index].shape) if a[index].size else np.zeros(a[index].shape)
  t[index] = Tensor(value, device=device)
  expected = a.copy()
  expected[index] = value
  check(t, expected)

def test_setitem_broadcasts_scalars_and_rows(device):
  a = np.arange(12.0).reshape(3, 4)
  t = Tensor(a, device=device)
  t[1:3] = 0
  t[:, 0] = Tensor([7.0, 8.0, 9.0], device=device)
  t[0] = Tensor([1.5, 2.5, 3.5, 4.5], device=device)
  expected = a.copy()
  expected[1:3] = 0; expected[:, 0] = [7, 8, 9]; expected[0] = [1.5, 2.5, 3.5, 4.5]
  check(t, expected)

def test_setitem_with_tensor_and_list_indices_keeps_the_last_of_repeated_positions(device):
  a = np.arange(12.0).reshape(4, 3)
  t = Tensor(a, device=device)
  t[Tensor([0, 2, 0], device=device)] = Tensor([[1.0] * 3, [2.0] * 3, [3.0] * 3], device=device)
  t[[1, 3], 2] = -5
  expected = a.copy()
  expected[[0, 2, 0]] = np.array([[1.0] * 3, [2.0] * 3, [3.0] * 3]); expected[[1, 3], 2] = -5
  check(t, expected)
  t[Tensor([9], device=device)] = 100.0  # out of range, in a tensor: writes nowhere
  check(t, expected)

def test_setitem_is_an_assign_of_the_whole_tensor(device):
  t, u = Tensor([1, 2, 3, 4], device=device), Tensor([1, 2, 3, 4], device=device)
  built_before_t, built_before_u = t + 0, u + 0
  t[1:3] = 0
  u.assign(Tensor([1, 0, 0, 4], device=device))
  assert t.tolist() == u.tolist() == [1, 0, 0, 4] and t.dtype == dtypes.int32
  assert built_before_t.tolist() == built_before_u.tolist()  # whatever assign promises for tensors built earlier
  t[0] = 2.7  # the value takes the tensor's dtype, as in assign
  assert t.tolist() == [2, 0, 0, 4]

def test_setitem_with_a_bad_index_or_shape_raises(device):
  t = Tensor.zeros(3, 4, device=device)
  with pytest.raises(IndexError): t[5] = 1.0
  with pytest.raises(ValueError, match=r"\(2,\) to \(4,\)"): t[0] = Tensor([1.0, 2.0], device=device)

# ## argmax with NaN

def test_argmax_and_argmin_take_the_first_nan(device):
  x = np.array([[1.0, math.nan, 3.0, math.nan], [2.0, 5.0, 5.0, 0.0]])
  check(Tensor(x, device=device).argmax(1), np.argmax(x, 1), dtype=dtypes.int32)
  check(Tensor(x, device=device).argmin(1), np.argmin(x, 1), dtype=dtypes.int32)
  assert Tensor([1.0, 2.0, math.nan, 4.0], device=device).argmax().item() == 2

# ## Sorting

@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_matches_a_stable_numpy_sort(device, dim, descending):
  x = np.random.default_rng(10).integers(0, 4, (4, 5)).astype(np.float32)  # many ties: the order of equal elements counts
  keys = -x if descending else x
  order = np.argsort(keys, axis=dim, kind="stable")
  values, indices = Tensor(x, device=device).sort(dim, descending)
  check(values, np.take_along_axis(x, order, dim)); check(indices, order, dtype=dtypes.int32)
  check(Tensor(x, device=device).argsort(dim, descending), order)

def test_sort_puts_nan_last_and_sorts_ints(device):
  values, indices = Tensor([3.0, math.nan, -1.0, math.inf, math.nan, 0.0], device=device).sort()
  np.testing.assert_array_equal(values.numpy(), [-1.0, 0.0, 3.0, math.inf, math.nan, math.nan])
  assert indices.tolist() == [2, 5, 0, 3, 1, 4]
  assert Tensor([5, -3, 2], device=device, dtype=dtypes.int8).sort(descending=True)[0].tolist() == [5, 2, -3]
  assert Tensor([], device=device).sort()[0].shape == (0,)

def test_topk_and_its_gradient(device):
  x = ref.randn(3, 5, seed=11)
  for largest in (True, False):
    order = np.argsort(-x if largest else x, axis=1, kind="stable")[:, :2]
    values, indices = Tensor(x, device=device).topk(2, 1, largest)
    check(values, np.take_along_axis(x, order, 1)); check(indices, order)
  t, W = Tensor(x, device=device, requires_grad=True), np.random.default_rng(1).standard_normal((3, 2))
  (g,) = (t.topk(2)[0] * Tensor(W, device=device)).sum().gradient(t)
  np.testing.assert_allclose(g.numpy(), finite_difference(lambda a: -np.sort(-a, axis=1)[:, :2], [x], 0, W), *GRAD_TOLERANCE["gradient"])
  assert Tensor([1, 1, 0, 1, 0, 1], device=device).topk(3)[1].tolist() == [0, 1, 3]
  with pytest.raises(ValueError, match="k=6"): Tensor.zeros(5, device=device).topk(6)

# ## More movement

def test_roll_unfold_diag_diagonal_repeat_interleave(device):
  x = np.arange(12.0).reshape(3, 4)
  t = Tensor(x, device=device)
  check(t.roll(1, 0), np.roll(x, 1, 0)); check(t.roll((-1, 6), (0, 1)), np.roll(x, (-1, 6), (0, 1))); check(t.roll(5), np.roll(x, 5))
  check(t.unfold(1, 2, 1), np.lib.stride_tricks.sliding_window_view(x, 2, axis=1))
  check(t.unfold(0, 2, 2), np.lib.stride_tricks.sliding_window_view(x, 2, axis=0)[::2])
  check(Tensor([1.0, 2.0, 3.0], device=device).diag(), np.diag([1.0, 2.0, 3.0]))
  check(Tensor(x[:, :3], device=device).diagonal(), np.diagonal(x[:, :3]))
  check(t.repeat_interleave(2, 1), np.repeat(x, 2, 1)); check(t.repeat_interleave(3), np.repeat(x, 3))

@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_meshgrid_matches_numpy(device, indexing):
  a, b, c = np.array([1, 2, 3]), np.array([4, 5]), np.array([6, 7, 8, 9])
  for got, want in zip(Tensor(a, device=device).meshgrid(Tensor(b, device=device), Tensor(c, device=device), indexing=indexing), np.meshgrid(a, b, c, indexing=indexing)):
    check(got, want)

@pytest.mark.parametrize("mode, np_mode", [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap"), ("constant", "constant")])
def test_pad_modes_match_numpy(device, mode, np_mode):
  x = np.arange(12.0).reshape(3, 4)
  check(Tensor(x, device=device).pad(((1, 2), (3, 0)), mode=mode), np.pad(x, ((1, 2), (3, 0)), mode=np_mode))
  check(Tensor(x, device=device).pad((1, 1), mode=mode), np.pad(x, ((0, 0), (1, 1)), mode=np_mode))

def test_pad_mode_errors_name_the_padding(device):
  with pytest.raises(ValueError, match="reflect"): Tensor.zeros(3, device=device).pad(((3, 0),), mode="reflect")
  with pytest.raises(NotImplementedError, match="mode .wrap."): Tensor.zeros(3, device=device).pad(((1, 0),), mode="wrap")

EINSUM = ["ij,jk->ik", "ij->ji", "ii->i", "ii", "i,i->", "bij,bjk->bik", "ij,ij->ij", "i,j->ij", "...ij,...jk->...ik", "i...->...", "ijk->kji", "iji->j"]
@pytest.mark.parametrize("formula", EINSUM)
def test_einsum_matches_numpy(device, formula):
  rng = np.random.default_rng(zlib.crc32(formula.encode()))
  shapes = {"ij,jk->ik": [(2, 3), (3, 4)], "ij->ji": [(2, 3)], "ii->i": [(3, 3)], "ii": [(3, 3)], "i,i->": [(4,), (4,)],
            "bij,bjk->bik": [(2, 2, 3), (2, 3, 2)], "ij,ij->ij": [(2, 3), (2, 3)], "i,j->ij": [(2,), (3,)],
            "...ij,...jk->...ik": [(2, 2, 3), (2, 3, 4)], "i...->...": [(2, 3, 4)], "ijk->kji": [(2, 3, 4)], "iji->j": [(2, 3, 2)]}[formula]
  xs = [rng.standard_normal(s) for s in shapes]
  check(Tensor.einsum(formula, *[Tensor(x, device=device, dtype=dtypes.float32) for x in xs]), np.einsum(formula, *xs), "transcendental")

def test_einsum_errors(device):
  with pytest.raises(ValueError, match="names 2 operands"): Tensor.einsum("ij,jk->ik", Tensor.zeros(2, 2, device=device))
  with pytest.raises(ValueError, match="sizes 3 and 4"): Tensor.einsum("ij,jk->ik", Tensor.zeros(2, 3, device=device), Tensor.zeros(4, 2, device=device))

# ## Pooling and convolution: padding forms, ceil_mode, count_include_pad, 3-d, indices

def np_pool(x, reduce, k, s, pads, pad_value, counts=None):
  """Windows over the last len(k) axes of x padded by pads ((before, after) per axis); counts, if given, divides the sums."""
  xp = np.pad(x, [(0, 0)] * (x.ndim - len(k)) + list(pads), constant_values=pad_value)
  outs = [(n - kk) // ss + 1 for n, kk, ss in zip(xp.shape[-len(k):], k, s)]
  out = np.zeros(x.shape[:-len(k)] + tuple(outs))
  for o in np.ndindex(*outs):
    window = xp[(Ellipsis,) + tuple(slice(oi * ss, oi * ss + kk) for oi, ss, kk in zip(o, s, k))]
    out[(Ellipsis,) + o] = reduce(window.reshape(window.shape[:-len(k)] + (-1,)), axis=-1)
  return out if counts is None else out / np_pool(counts, np.sum, k, s, pads, 0.0)

@pytest.mark.parametrize("padding, pairs", [((1, 0), [(1, 1), (0, 0)]), ((0, 1, 2, 0), [(2, 0), (0, 1)]), ("valid", [(0, 0), (0, 0)]),
                                            ((-1, 0), [(-1, -1), (0, 0)])], ids=str)
def test_conv2d_padding_forms(device, padding, pairs):
  x, w = ref.randn(1, 2, 5, 6, seed=1), ref.randn(3, 2, 3, 2, seed=2)
  padded = Tensor(x, device=device).pad([None, None] + pairs)
  expected = ref.np_conv2d(padded.numpy(), w)
  ref.close(Tensor(x, device=device, dtype=dtypes.float32).conv2d(Tensor(w, device=device, dtype=dtypes.float32), padding=padding), expected, "sum_of_products")

@pytest.mark.parametrize("k, dilation", [((3, 3), 1), ((2, 3), 1), ((3, 2), 2)], ids=str)
def test_conv2d_padding_same_keeps_the_size(device, k, dilation):
  x, w = ref.randn(1, 2, 5, 6, seed=3), ref.randn(2, 2, *k, seed=4)
  out = Tensor(x, device=device).conv2d(Tensor(w, device=device), padding="same", dilation=dilation)
  assert out.shape == (1, 2, 5, 6)
  total = [dilation * (kk - 1) for kk in k]
  expected = ref.np_conv2d(np.pad(x, [(0, 0), (0, 0)] + [(t // 2, t - t // 2) for t in total]), w, dilation=dilation)
  np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9, atol=1e-9)

def test_conv1d_and_conv3d_through_conv2d(device):
  x, w = ref.randn(2, 2, 7, seed=5), ref.randn(3, 2, 3, seed=6)
  expected = ref.np_conv2d(np.pad(x, ((0, 0), (0, 0), (1, 2)))[:, :, None, :], w[:, :, None, :])[:, :, 0, :]
  np.testing.assert_allclose(Tensor(x, device=device).conv2d(Tensor(w, device=device), padding=(1, 2)).numpy(), expected, rtol=1e-9)
  x3, w3 = ref.randn(1, 1, 3, 3, 3, seed=7), ref.randn(1, 1, 2, 2, 2, seed=8)
  out = Tensor(x3, device=device).conv2d(Tensor(w3, device=device), padding=1)
  xp = np.pad(x3[0, 0], 1)
  manual = np.array([[[(xp[i:i + 2, j:j + 2, l:l + 2] * w3[0, 0]).sum() for l in range(4)] for j in range(4)] for i in range(4)])
  np.testing.assert_allclose(out.numpy()[0, 0], manual, rtol=1e-9)

POOLS = [({"kernel_size": 2}, (1, 2, 5, 5)), ({"kernel_size": 3, "stride": 2, "ceil_mode": True}, (1, 1, 6, 6)),
         ({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 1, 5, 7)), ({"kernel_size": (2, 3), "padding": (1, 1)}, (1, 1, 4, 5)),
         ({"kernel_size": 2, "padding": (0, 1, 1, 0)}, (1, 1, 4, 4)), ({"kernel_size": (2, 2, 2)}, (1, 1, 4, 4, 3))]
def _pool_reference(shape, kw):
  k = kw["kernel_size"] if isinstance(kw["kernel_size"], tuple) else (kw["kernel_size"],) * 2
  s = (kw.get("stride") or k) if isinstance(kw.get("stride") or k, tuple) else (kw["stride"],) * len(k)
  p = kw.get("padding", 0)
  pads = [(p, p)] * len(k) if isinstance(p, int) else [(q, q) for q in p] if len(p) == len(k) else [(p[2 * j], p[2 * j + 1]) for j in range(len(k))][::-1]
  if kw.get("ceil_mode"):  # PyTorch's rule: one more window if it starts inside the input or its left padding
    for j, (n, kk, ss) in enumerate(zip(shape[-len(k):], k, s)):
      b, a = pads[j]
      o = -(-(n + b + a - kk) // ss) + 1
      if (o - 1) * ss >= n + b: o -= 1
      pads[j] = (b, a + max(0, (o - 1) * ss + kk - (n + b + a)))
  return k, s, pads

@pytest.mark.parametrize("kw, shape", POOLS, ids=[str(c[0]) for c in POOLS])
def test_max_and_avg_pool_argument_forms(device, kw, shape):
  x = data(shape, 12)
  k, s, pads = _pool_reference(shape, kw)
  regular = _pool_reference(shape, {**kw, "ceil_mode": False})[2]
  check(Tensor(x, device=device, dtype=dtypes.float32).max_pool2d(**kw), np_pool(x, np.max, k, s, pads, -np.inf))
  # count_include_pad: the regular padding counts as elements of the window, what ceil_mode adds does not
  lead, extra = [(0, 0)] * (len(shape) - len(k)), [(0, a - ra) for (b, a), (rb, ra) in zip(pads, regular)]
  padded = np.pad(x, lead + regular)
  with_pad = np_pool(padded, np.sum, k, s, extra, 0.0) / np_pool(np.ones(padded.shape), np.sum, k, s, extra, 0.0)
  check(Tensor(x, device=device, dtype=dtypes.float32).avg_pool2d(**kw), with_pad, "transcendental")
  without_pad = np_pool(x, np.sum, k, s, pads, 0.0) / np_pool(np.ones(shape), np.sum, k, s, pads, 0.0)
  check(Tensor(x, device=device, dtype=dtypes.float32).avg_pool2d(**kw, count_include_pad=False), without_pad, "transcendental")

def test_max_pool2d_indices_and_max_unpool2d(device):
  x = np.random.default_rng(13).permutation(32).reshape(1, 2, 4, 4).astype(np.float32)
  values, indices = Tensor(x, device=device).max_pool2d(2, return_indices=True)
  windows = x.reshape(1, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(1, 2, 2, 2, 4)
  rows, cols = np.divmod(windows.argmax(-1), 2)
  expected = (np.arange(2)[:, None] * 2 + rows) * 4 + np.arange(2)[None, :] * 2 + cols
  check(values, windows.max(-1)); check(indices, expected, dtype=dtypes.int32)
  unpooled = np.zeros((1, 2, 16)); np.put_along_axis(unpooled, expected.reshape(1, 2, 4), windows.max(-1).reshape(1, 2, 4), 2)
  check(values.max_unpool2d(indices, 2), unpooled.reshape(1, 2, 4, 4))

def np_interpolate_axis(x, axis, size, mode, align_corners):
  n = x.shape[axis]
  out_pos = np.arange(size, dtype=np.float64)
  if mode == "linear":
    src = out_pos * (n - 1) / max(size - 1, 1) if align_corners else np.clip((out_pos + 0.5) * n / size - 0.5, 0, n - 1)
    low, frac = np.floor(src).astype(int), src - np.floor(src)
    high = np.minimum(low + 1, n - 1)
    return np.take(x, low, axis) * (1 - np.expand_dims(frac, tuple(range(1, x.ndim - axis % x.ndim)))) + \
           np.take(x, high, axis) * np.expand_dims(frac, tuple(range(1, x.ndim - axis % x.ndim)))
  src = ((out_pos + 0.5) * n / size) if mode == "nearest-exact" else out_pos * n / size
  return np.take(x, np.minimum(src.astype(int), n - 1), axis)

@pytest.mark.parametrize("mode, align_corners", [("linear", False), ("linear", True), ("nearest", False), ("nearest-exact", False)])
@pytest.mark.parametrize("size", [(7,), (3, 8), (2, 2)], ids=str)
def test_interpolate_matches_a_per_axis_reference(device, mode, align_corners, size):
  x = data((1, 2, 4, 5), 14)
  expected = x
  for j, n in enumerate(size): expected = np_interpolate_axis(expected, -len(size) + j, n, mode, align_corners)
  check(Tensor(x, device=device, dtype=dtypes.float32).interpolate(size, mode, align_corners), expected, "transcendental")

# ## Losses

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_matches_numpy(device, reduction, weighted):
  logp, labels = ref.np_log_softmax(ref.randn(6, 4, seed=15), 1), np.array([0, 3, 1, 1, 2, 3])
  w = np.array([0.5, 1.0, 2.0, 0.25]) if weighted else np.ones(4)
  losses, weights = -logp[np.arange(6), labels] * w[labels], w[labels]
  expected = losses.sum() / weights.sum() if reduction == "mean" else losses.sum() if reduction == "sum" else losses
  out = Tensor(logp, device=device).nll_loss(Tensor(labels, device=device), Tensor(w, device=device) if weighted else None, reduction=reduction)
  np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9)
  ignored = Tensor(logp, device=device).nll_loss(Tensor(labels, device=device), ignore_index=3)
  np.testing.assert_allclose(ignored.item(), -logp[np.arange(6), labels][labels != 3].mean(), rtol=1e-9)

def test_binary_crossentropy_logits_with_pos_weight(device):
  x, y, pw = ref.randn(4, 3, seed=16), np.random.default_rng(17).uniform(0, 1, (4, 3)), np.array([0.5, 1.0, 3.0])
  log_p, log_not_p = -np.logaddexp(0, -x), -np.logaddexp(0, x)
  expected = -(pw * y * log_p + (1 - y) * log_not_p)
  out = Tensor(x, device=device).binary_crossentropy_logits(Tensor(y, device=device), reduction="none", pos_weight=Tensor(pw, device=device))
  np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9)
  np.testing.assert_allclose(Tensor([1000.0], device=device).binary_crossentropy_logits(Tensor([0.0], device=device)).item(), 1000.0)

def test_sparse_categorical_crossentropy_reductions(device):
  logits, labels = ref.randn(5, 3, seed=18), np.array([0, 2, 1, 1, 0])
  each = -ref.np_log_softmax(logits, 1)[np.arange(5), labels]
  for reduction, expected in [("mean", each.mean()), ("sum", each.sum()), ("none", each)]:
    np.testing.assert_allclose(Tensor(logits, device=device).sparse_categorical_crossentropy(Tensor(labels, device=device), reduction=reduction).numpy(), expected, rtol=1e-9)

def test_one_hot_takes_the_classes_from_the_labels_and_out_of_range_labels_give_zero_rows(device):
  check(Tensor([1, 2, 4], device=device).one_hot(), np.eye(5, dtype=np.int32)[[1, 2, 4]], dtype=dtypes.int32)
  check(Tensor([0, -1, 3], device=device).one_hot(3), [[1, 0, 0], [0, 0, 0], [0, 0, 0]])
  # a class label outside [0, classes) matches no class: documented in cross_entropy's docstring
  logits = ref.randn(2, 2, seed=19)
  np.testing.assert_allclose(Tensor(logits, device=device).cross_entropy(Tensor([7, 0], device=device), reduction="none").numpy(),
                             [0.0, -ref.np_log_softmax(logits, 1)[1, 0]], rtol=1e-9)

# ## Random numbers and initializers

def test_randint_and_randperm(device):
  Tensor.manual_seed(3)
  r = Tensor.randint(2000, low=-3, high=4, device=device)
  assert r.dtype == dtypes.int32 and set(r.tolist()) == set(range(-3, 4))
  assert sorted(Tensor.randperm(9, device=device).tolist()) == list(range(9))
  with pytest.raises(ValueError, match="low=5, high=5"): Tensor.randint(3, low=5, high=5)
  with pytest.raises(TypeError, match="float32"): Tensor.randint(3, dtype=dtypes.float32)

@pytest.mark.parametrize("name, bound", [("kaiming_uniform", math.sqrt(3) * math.sqrt(2 / (1 + 0.01 ** 2)) / math.sqrt(50)),
                                         ("glorot_uniform", math.sqrt(6 / (40 + 50))), ("scaled_uniform", 1 / math.sqrt(40 * 50))])
def test_uniform_initializers_fill_their_bounds(name, bound):
  Tensor.manual_seed(4)
  v = getattr(Tensor, name)(40, 50, device="CPU").numpy()
  assert v.shape == (40, 50) and np.abs(v).max() <= bound and np.abs(v).max() > 0.95 * bound

def test_normal_initializers_have_their_std():
  Tensor.manual_seed(5)
  assert abs(Tensor.normal(4000, mean=2.0, std=3.0, device="CPU").numpy().std() - 3.0) < 0.15
  assert abs(Tensor.kaiming_normal(100, 50, device="CPU").numpy().std() - math.sqrt(2 / (1 + 0.01 ** 2)) / math.sqrt(50)) < 0.01
  with pytest.raises(ValueError, match="negative"): Tensor.kaiming_uniform(-3, 3)

# ## Bad arguments raise at the call, naming them (and are RuntimeErrors too, as PyTorch's)

@pytest.mark.parametrize("name, call, error, message", [
  ("permute_repeated", lambda t: t.permute(0, 0, 1), RuntimeError, r"\(0, 0, 1\)"), ("flip_repeated", lambda t: t.flip((0, 0)), RuntimeError, "twice"),
  ("squeeze_0d", lambda t: Tensor(1.0).squeeze(10), IndexError, "axis 10"), ("sum_0d", lambda t: Tensor(1.0).sum(1), IndexError, "axis 1"),
  ("int_negative_pow", lambda t: Tensor([2]) ** -2, RuntimeError, "-2"), ("bitwise_float", lambda t: t & t, RuntimeError, "float32"),
  ("matmul_0d", lambda t: Tensor(3.0) @ t, RuntimeError, "matmul"), ("div_mode", lambda t: t.div(2, rounding_mode="round"), ValueError, "'round'"),
  ("gelu", lambda t: t.gelu(approximate="erf"), ValueError, "'erf'"), ("reduction", lambda t: t.cross_entropy(t, reduction="typo"), ValueError, "'typo'"),
  ("cross_entropy_shape", lambda t: t.cross_entropy(Tensor.zeros(2, 1)), RuntimeError, r"\(2, 1\)"),
  ("sdpa_mask_and_causal", lambda t: t.scaled_dot_product_attention(t, t, attn_mask=t, is_causal=True), RuntimeError, "not both"),
  ("pool_padding", lambda t: t.reshape(1, 1, 2, 3).max_pool2d(1, padding=(1, 2, 3)), RuntimeError, r"\(1, 2, 3\)"),
  ("gather_shape", lambda t: t.gather(1, Tensor([[0]] * 5)), RuntimeError, r"\(5, 1\)"), ("sum_dtype_name", lambda t: t.sum(dtype="float33"), AttributeError, "float33"),
  ("one_hot_float", lambda t: t.one_hot(3), RuntimeError, "float32"), ("eye_negative", lambda t: Tensor.eye(-3, 3), ValueError, "-3")])
def test_bad_arguments_raise_naming_them(name, call, error, message):
  with pytest.raises(error, match=message): call(Tensor.zeros(2, 3, device="PYTHON"))

def test_tinygrad_argument_forms(device):
  t = Tensor.ones(2, 3, device=device)
  assert t.reshape((None, 3)).shape == (2, 3) and t.cast("int32").dtype == dtypes.int32
  assert Tensor.stack((t, t), dim=1).shape == (2, 2, 3) and Tensor.cat((t, t)).shape == (4, 3)
  assert t.sum(dtype="float64").dtype == dtypes.float64 if dtypes.float64 in __import__("tiny").Device[device].renderer.supported_dtypes else True
