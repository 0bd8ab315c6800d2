"""Chapters 7 and 15: reductions (sum ... cumsum, all, any) over every axis choice, checked against numpy on every device."""
import numpy as np
import pytest
from tiny import Tensor, dtypes
from conftest import NP, check

def data(shape, seed=0, low=-3.0, high=3.0, dtype=np.float32):
  return np.random.default_rng(seed).uniform(low, high, size=shape).astype(dtype)

X = data((2, 3, 5), seed=1)  # small enough for PYTHON, odd sizes on every axis
AXES = [None, 0, 1, 2, -1, -3, (0, 2), (2, 0), (0, 1, 2), (1, -1)]

REDUCES = [
  ("sum", lambda t, **kw: t.sum(**kw), lambda a, **kw: a.sum(**kw), X),
  ("prod", lambda t, **kw: t.prod(**kw), lambda a, **kw: a.prod(**kw), data((2, 3, 5), seed=2, low=0.5, high=1.5)),
  ("max", lambda t, **kw: t.max(**kw), lambda a, **kw: a.max(**kw), X),
  ("min", lambda t, **kw: t.min(**kw), lambda a, **kw: a.min(**kw), X),
  ("mean", lambda t, **kw: t.mean(**kw), lambda a, **kw: a.mean(**kw), X),
  ("var", lambda t, **kw: t.var(**kw), lambda a, **kw: a.var(ddof=1, **kw), X),
  ("std", lambda t, **kw: t.std(**kw), lambda a, **kw: a.std(ddof=1, **kw), X),
]

@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name, op, ref, x", REDUCES, ids=[r[0] for r in REDUCES])
def test_reduce_matches_numpy(device, name, op, ref, x, axis, keepdim):
  check(op(Tensor(x, device=device), axis=axis, keepdim=keepdim), ref(x.astype(np.float64), axis=axis, keepdims=keepdim), dtype=dtypes.float32)

@pytest.mark.parametrize("name, op, ref, x", REDUCES, ids=[r[0] for r in REDUCES])
def test_reduce_positional_axis(device, name, op, ref, x):
  t = Tensor(x, device=device)
  check(getattr(t, name)(1), ref(x.astype(np.float64), axis=1))
  check(getattr(t, name)((0, 2), True), ref(x.astype(np.float64), axis=(0, 2), keepdims=True))

@pytest.mark.parametrize("name, op, ref, x", REDUCES, ids=[r[0] for r in REDUCES])
def test_reduce_of_non_contiguous_views(device, name, op, ref, x):
  t = Tensor(x, device=device)
  x = x.astype(np.float64)
  check(op(t.permute(2, 0, 1), axis=1), ref(x.transpose(2, 0, 1), axis=1))
  check(op(t.flip(2)[:, 1:, ::2], axis=-1, keepdim=True), ref(x[:, :, ::-1][:, 1:, ::2], axis=-1, keepdims=True))
  check(op(t[1].T, axis=0), ref(x[1].T, axis=0))
  check(op(t.reshape(6, 5).T.reshape(3, 10), axis=1), ref(x.reshape(6, 5).T.reshape(3, 10), axis=1))

@pytest.mark.parametrize("shape, axis", [((1,), 0), ((13,), None), ((7, 13), 0), ((7, 13), 1), ((1, 1), None), ((13, 1, 7), (0, 2))], ids=str)
def test_reduce_odd_sizes_on_cpu(shape, axis):
  x = data(shape, seed=3)
  t = Tensor(x, device="CPU")
  check(t.sum(axis), x.astype(np.float64).sum(axis))
  check(t.max(axis), x.max(axis))
  check(t.mean(axis), x.astype(np.float64).mean(axis))

@pytest.mark.parametrize("shape, axis", [((1031,), None), ((97, 13), 0), ((13, 257), 1), ((5, 7, 61), (0, 2))], ids=str)
def test_larger_reductions_on_cpu(shape, axis):
  x = data(shape, seed=4, low=0, high=1)  # positive, so float32 sums keep their relative accuracy
  t = Tensor(x, device="CPU")
  np.testing.assert_allclose(t.sum(axis).numpy(), x.astype(np.float64).sum(axis), rtol=1e-5)
  np.testing.assert_array_equal(t.max(axis).numpy(), x.max(axis))
  np.testing.assert_array_equal(t.argmin(axis if isinstance(axis, int) else None).numpy(), np.argmin(x, axis if isinstance(axis, int) else None))
  soft = t.softmax(-1).numpy()
  np.testing.assert_allclose(soft.sum(-1), 1, rtol=1e-5)

def test_reduce_of_a_0d_tensor(device):
  t = Tensor(2.5, device=device)
  for got in [t.sum(), t.max(), t.min(), t.mean(), t.prod()]: check(got, np.array(2.5))

def test_reduce_of_a_0d_tensor_over_axis_0_is_the_value_as_in_tinygrad(device):
  t = Tensor(2.5, device=device)
  for got in [t.sum(0), t.max(0), t.mean(-1), t.sum(0, keepdim=True)]: check(got, np.array(2.5))

def test_reduce_of_sum_of_a_reduce(device):
  t = Tensor(X, device=device)
  check(t.sum(2).max(1), X.astype(np.float64).sum(2).max(1))
  check((t - t.mean(2, keepdim=True)).sum(2), np.zeros((2, 3)))

# ## Empty axes: sums are 0, products 1, maxima -inf (as tinygrad), means nan

def test_reduce_over_an_empty_axis(device):
  t = Tensor.zeros(0, 3, device=device)
  check(t.sum(0), np.zeros(3))
  check(t.prod(0), np.ones(3))
  check(t.max(0), np.full(3, -np.inf))
  check(t.sum(), np.array(0.0))
  check(Tensor.zeros(3, 0, device=device).sum(1), np.zeros(3))
  check(t.mean(0), np.full(3, np.nan))
  check(t.sum(1), np.zeros((0,)))
  check(t.any(), np.array(False))
  check(t.all(), np.array(True))

def test_reduce_over_an_empty_axis_of_a_stored_buffer(device):
  t = Tensor(np.zeros((0, 3), np.float32), device=device)  # loads from an empty buffer must never happen
  check(t.sum(0), np.zeros(3))
  check(t.max(0), np.full(3, -np.inf))
  check(t.T @ t, np.zeros((3, 3)))
  check(Tensor(np.zeros((2, 0), np.int32), device=device).sum(1), np.zeros(2))

# ## Dtypes: sums widen small ints, as tinygrad does; max keeps the dtype; mean and var are floats

@pytest.mark.parametrize("dtype, out", [(dtypes.int8, dtypes.int32), (dtypes.uint8, dtypes.uint32), (dtypes.int16, dtypes.int32),
                                        (dtypes.int32, dtypes.int32), (dtypes.int64, dtypes.int64), (dtypes.bool, dtypes.int32),
                                        (dtypes.float16, dtypes.float16), (dtypes.float64, dtypes.float64)], ids=str)
def test_sum_accumulates_small_types_in_wider_ones(device, dtype, out):
  a = np.array([100, 100, 100, 1], NP[dtype])
  check(Tensor(a, device=device).sum(), a.astype(np.int64 if dtype.is_int or dtype == dtypes.bool else np.float64).sum(), dtype=out)

def test_sum_with_an_explicit_dtype(device):
  a = np.array([1.5, 2.5, 3.0], np.float32)
  check(Tensor(a, device=device).sum(dtype=dtypes.float64), a.astype(np.float64).sum(), dtype=dtypes.float64)
  check(Tensor([120, 120], device=device, dtype=dtypes.int8).sum(dtype=dtypes.int16), np.array(240), dtype=dtypes.int16)

def test_half_sum_accumulates_in_float32(device):
  a = np.full(13, 1000.0, np.float16)  # partial sums pass 2048, where float16 loses units
  a[0] = 1.0
  check(Tensor(a, device=device).sum(), a.astype(np.float64).sum().astype(np.float16), dtype=dtypes.float16)

@pytest.mark.parametrize("dtype", [dtypes.int8, dtypes.uint8, dtypes.int32, dtypes.uint32, dtypes.int64, dtypes.float16], ids=str)
def test_max_and_min_keep_the_dtype_and_handle_extremes(device, dtype):
  info = np.iinfo(NP[dtype]) if dtype.is_int else np.finfo(NP[dtype])
  a = np.array([[info.max, 0, 1], [info.min, 3, 2]], NP[dtype])
  t = Tensor(a, device=device)
  check(t.max(), a.max(), dtype=dtype)
  check(t.min(), a.min(), dtype=dtype)
  check(t.max(1), a.max(1), dtype=dtype)
  check(t.min(0, keepdim=True), a.min(0, keepdims=True), dtype=dtype)

def test_max_and_min_of_bools(device):
  a = np.array([[True, False], [True, True]])
  check(Tensor(a, device=device).max(1), a.max(1), dtype=dtypes.bool)
  check(Tensor(a, device=device).min(1), a.min(1), dtype=dtypes.bool)

def test_max_and_min_of_infinities(device):
  a = np.array([[-np.inf, -np.inf], [np.inf, 1.0]], np.float32)
  check(Tensor(a, device=device).max(1), a.max(1))
  check(Tensor(a, device=device).min(1), a.min(1))

def test_int_prod_is_exact(device):
  a = np.array([[2, -3, 5], [7, 1, -1]], np.int32)
  check(Tensor(a, device=device).prod(1), a.prod(1))
  check(Tensor(a, device=device).prod(), a.prod())

def test_mean_var_std_of_ints_are_float(device):
  a = np.array([[1, 2, 4], [3, 5, 9]], np.int32)
  t = Tensor(a, device=device)
  check(t.mean(), a.mean(), dtype=dtypes.float32)
  check(t.mean(1), a.mean(1), dtype=dtypes.float32)
  check(t.var(0), a.var(0, ddof=1), dtype=dtypes.float32)
  check(t.std(), a.std(ddof=1), dtype=dtypes.float32)

def test_var_and_std_with_correction(device):
  t = Tensor(X, device=device)
  x = X.astype(np.float64)
  check(t.var(1, correction=0), x.var(1))
  check(t.std(-1, keepdim=True, correction=0), x.std(-1, keepdims=True))
  check(t.var(correction=2), x.var(ddof=2))

def test_mean_of_half_keeps_half(device):
  a = np.array([1.0, 2.0, 4.5], np.float16)
  check(Tensor(a, device=device).mean(), a.astype(np.float64).mean(), dtype=dtypes.float16)

# ## argmax, argmin: the first index of the extreme value

# (no axis=None with keepdim=True: tinygrad's argmax over all axes is 0-d whatever keepdim says, numpy's is (1, 1, 1))
@pytest.mark.parametrize("axis, keepdim", [(None, False)] + [(a, k) for a in (0, 1, 2, -1) for k in (False, True)], ids=str)
def test_argmax_and_argmin_match_numpy(device, axis, keepdim):
  t = Tensor(X, device=device)
  check(t.argmax(axis, keepdim=keepdim), np.argmax(X, axis=axis, keepdims=keepdim), dtype=dtypes.int32)
  check(t.argmin(axis, keepdim=keepdim), np.argmin(X, axis=axis, keepdims=keepdim), dtype=dtypes.int32)

def test_argmax_and_argmin_pick_the_first_of_ties(device):
  a = np.array([[1, 3, 3, 1], [2, 2, 0, 0], [5, 5, 5, 5]], np.int32)
  t = Tensor(a, device=device)
  check(t.argmax(1), np.argmax(a, 1))
  check(t.argmin(1), np.argmin(a, 1))
  check(t.argmax(0), np.argmax(a, 0))
  check(t.argmax(), np.argmax(a))
  check(t.argmin(), np.argmin(a))

@pytest.mark.parametrize("dtype", [dtypes.uint8, dtypes.int8, dtypes.int64, dtypes.bool, dtypes.float16], ids=str)
def test_argmax_and_argmin_of_other_dtypes(device, dtype):
  a = np.array([[0, 1, 1], [1, 0, 0]], NP[dtype]) if dtype == dtypes.bool else np.array([[3, 200 if dtype == dtypes.uint8 else -5, 7], [0, 9, 9]], NP[dtype])
  t = Tensor(a, device=device)
  check(t.argmax(1), np.argmax(a, 1))
  check(t.argmin(1), np.argmin(a, 1))
  check(t.argmin(), np.argmin(a))

def test_argmax_of_views(device):
  t = Tensor(X, device=device)
  check(t.permute(2, 1, 0).argmax(0), np.argmax(X.transpose(2, 1, 0), 0))
  check(t.flip(2).argmin(-1), np.argmin(X[:, :, ::-1], -1))

# ## softmax, log_softmax, logsumexp

@pytest.mark.parametrize("axis", [-1, 0, 1], ids=str)
def test_softmax_and_log_softmax_match_numpy(device, axis):
  x = X.astype(np.float64)
  e = np.exp(x - x.max(axis, keepdims=True))
  soft = e / e.sum(axis, keepdims=True)
  t = Tensor(X, device=device)
  check(t.softmax(axis), soft, "transcendental", dtype=dtypes.float32)
  check(t.log_softmax(axis), np.log(soft), "transcendental", dtype=dtypes.float32)

def test_softmax_is_stable_for_large_inputs(device):
  x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0]], np.float32)
  e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
  check(Tensor(x, device=device).softmax(), e / e.sum(1, keepdims=True), "transcendental")
  check(Tensor(x, device=device).log_softmax(), np.log(e / e.sum(1, keepdims=True)), "transcendental")

def test_softmax_of_ints_is_float(device):
  t = Tensor([1, 2, 3], device=device).softmax()
  e = np.exp(np.array([1.0, 2.0, 3.0]))
  check(t, e / e.sum(), "transcendental", dtype=dtypes.float32)

@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)], ids=str)
def test_logsumexp_matches_numpy(device, axis, keepdim):
  x = X.astype(np.float64)
  m = x.max(axis, keepdims=True)
  expected = np.log(np.exp(x - m).sum(axis, keepdims=True)) + m
  if not keepdim: expected = expected.reshape(x.max(axis).shape)
  check(Tensor(X, device=device).logsumexp(axis, keepdim=keepdim), expected, "transcendental")

def test_logsumexp_is_stable_for_large_inputs(device):
  x = np.array([1000.0, 1000.0], np.float32)
  check(Tensor(x, device=device).logsumexp(), np.array(1000.0 + np.log(2)), "transcendental")

# ## cumsum

@pytest.mark.parametrize("axis", [0, 1, 2, -1], ids=str)
def test_cumsum_matches_numpy(device, axis):
  check(Tensor(X, device=device).cumsum(axis), np.cumsum(X.astype(np.float64), axis=axis))

def test_cumsum_of_ints_views_and_odd_sizes(device):
  a = np.arange(-6, 7, dtype=np.int32)
  check(Tensor(a, device=device).cumsum(), np.cumsum(a), dtype=dtypes.int32)
  check(Tensor(a, device=device).flip(0).cumsum(), np.cumsum(a[::-1]))
  check(Tensor(a.reshape(1, 13), device=device).T.cumsum(0), np.cumsum(a.reshape(13, 1), 0))
  check(Tensor([True, False, True], device=device).cumsum(), np.array([1, 1, 2]), dtype=dtypes.int32)
  check(Tensor(3, device=device).cumsum(), np.array(3))
  check(Tensor([5], device=device).cumsum(), np.array([5]))
  check(Tensor.zeros(0, device=device).cumsum(), np.zeros(0))

def test_cumsum_of_int8_widens(device):
  a = np.array([100, 100, 100], np.int8)
  check(Tensor(a, device=device).cumsum(), np.cumsum(a.astype(np.int32)), dtype=dtypes.int32)

# ## all, any

@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)], ids=str)
def test_all_and_any_match_numpy(device, axis, keepdim):
  a = np.array([[True, False, True], [True, True, True], [False, False, False]])
  t = Tensor(a, device=device)
  check(t.all(axis, keepdim=keepdim), a.all(axis, keepdims=keepdim), dtype=dtypes.bool)
  check(t.any(axis, keepdim=keepdim), a.any(axis, keepdims=keepdim), dtype=dtypes.bool)

def test_all_and_any_of_numbers_use_truthiness(device):
  f = np.array([[0.0, 2.0], [-0.5, 1.0], [0.0, -0.0]], np.float32)
  i = np.array([[0, 3], [-1, 7]], np.int32)
  check(Tensor(f, device=device).all(1), f.all(1))
  check(Tensor(f, device=device).any(1), f.any(1))
  check(Tensor(i, device=device).all(0), i.all(0))
  check(Tensor(i, device=device).any(), np.array(True))
  check(Tensor(f, device=device)[:, ::-1].T.any(1), f[:, ::-1].T.any(1))
