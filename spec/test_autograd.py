"""Chapter 8: every differentiable op's gradient against central finite differences, on every device, and the autograd API.

Each case is an op written twice: with tiny, run in float64, and with numpy
in float64 (the references of test_nn_ops.py for the network ops). The
scalar loss is `(op(inputs) * W).sum()` for fixed random weights W; tiny's
analytic gradient of every float input is compared with central differences
of the numpy loss. Inputs stay away from kinks (relu at 0, abs at 0, ties in
max and maximum, clip bounds) where a derivative is not defined. Shapes are
tiny so the PYTHON interpreter runs them quickly.
"""
import math, zlib
import numpy as np
import pytest
import tiny
from tiny import Context, Tensor, dtypes
from tiny.nn import BatchNorm, Embedding, Linear
from tiny.nn.optim import SGD
import test_nn_ops as ref

# The one tolerance table: (rtol, atol).
TOLERANCE = {
  "forward": (1e-9, 1e-9),           # tiny in float64 against the numpy reference
  "gradient": (1e-5, 1e-6),          # tiny's float64 gradient against central differences
  "float32_gradient": (1e-4, 1e-5),  # tiny's float32 gradient against its own float64 gradient
}
FD_EPS = 1e-6  # central difference step, in float64

@pytest.fixture
def on_device(device):
  """Make `device` the default, so layers and optimizers create their tensors there."""
  with Context(DEVICE=device): yield device  # read at use: tensors made inside go to `device`

# ## Inputs

def normal(rng, *shape): return rng.standard_normal(shape)
def positive(rng, *shape): return rng.uniform(0.5, 2.0, shape)
def nonzero(rng, *shape): return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)
def distinct(rng, *shape):
  """Values at least 0.1 apart in random order: a max or a sort has no ties, even after an FD_EPS nudge."""
  n = math.prod(shape)
  return ((rng.permutation(n) - n / 2) * 0.3 + rng.uniform(-0.1, 0.1)).reshape(shape)
def apart(rng, a):
  """A second operand for maximum/minimum: at least 0.2 away from a, on either side."""
  return a + nonzero(rng, *a.shape)
def away_from(rng, points, *shape):
  """Uniform values in [-1.5, 1.5] pushed at least 0.1 away from each of `points` (for clip bounds)."""
  x = rng.uniform(-1.5, 1.5, shape)
  for p in points: x = np.where(np.abs(x - p) < 0.1, x + np.where(x >= p, 0.1, -0.1), x)
  return x
def labels(rng, high, *shape): return rng.integers(0, high, shape).astype(np.int32)

# ## numpy references not in test_nn_ops

def np_gelu(x): return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
def np_sigmoid(x): return 1 / (1 + np.exp(-x))
def np_logsumexp(x, axis=None): return np.log(np.exp(x - x.max(axis, keepdims=True)).sum(axis, keepdims=True)).squeeze(axis) + x.max(axis)
def np_batchnorm_training(x, eps=1e-5):
  axes = tuple(i for i in range(x.ndim) if i != 1)
  return (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
def bn_training(x):
  with Tensor.train(): return BatchNorm(x.shape[1], affine=False, track_running_stats=False)(x)
def embedding(w, idx):
  e = Embedding(*w.shape)
  e.weight = w
  return e(idx)

# ## The cases: (name, tiny op, numpy op, inputs from a seeded generator)

ELEMENTWISE = [
  ("add_broadcast", lambda a, b: a + b, lambda a, b: a + b, lambda r: [normal(r, 2, 3), normal(r, 3)]),
  ("sub_broadcast", lambda a, b: a - b, lambda a, b: a - b, lambda r: [normal(r, 2, 3), normal(r, 2, 1)]),
  ("mul", lambda a, b: a * b, lambda a, b: a * b, lambda r: [normal(r, 2, 3), normal(r, 2, 3)]),
  ("mul_same_tensor", lambda a: a * a, lambda a: a * a, lambda r: [normal(r, 2, 3)]),
  ("div", lambda a, b: a / b, lambda a, b: a / b, lambda r: [normal(r, 2, 3), nonzero(r, 2, 3)]),
  ("rdiv_scalar", lambda a: 2.0 / a, lambda a: 2.0 / a, lambda r: [nonzero(r, 2, 3)]),
  ("neg", lambda a: -a, lambda a: -a, lambda r: [normal(r, 2, 3)]),
  ("exp", lambda a: a.exp(), np.exp, lambda r: [normal(r, 2, 3)]),
  ("log", lambda a: a.log(), np.log, lambda r: [positive(r, 2, 3)]),
  ("exp2", lambda a: a.exp2(), np.exp2, lambda r: [normal(r, 2, 3)]),
  ("log2", lambda a: a.log2(), np.log2, lambda r: [positive(r, 2, 3)]),
  ("sqrt", lambda a: a.sqrt(), np.sqrt, lambda r: [positive(r, 2, 3)]),
  ("rsqrt", lambda a: a.rsqrt(), lambda a: 1 / np.sqrt(a), lambda r: [positive(r, 2, 3)]),
  ("sin", lambda a: a.sin(), np.sin, lambda r: [normal(r, 2, 3) * 2]),
  ("cos", lambda a: a.cos(), np.cos, lambda r: [normal(r, 2, 3) * 2]),
  ("tan", lambda a: a.tan(), np.tan, lambda r: [r.uniform(-1.2, 1.2, (2, 3))]),
  ("tanh", lambda a: a.tanh(), np.tanh, lambda r: [normal(r, 2, 3)]),
  ("sigmoid", lambda a: a.sigmoid(), np_sigmoid, lambda r: [normal(r, 2, 3) * 2]),
  ("relu", lambda a: a.relu(), lambda a: np.maximum(a, 0), lambda r: [nonzero(r, 2, 3)]),
  ("leaky_relu", lambda a: a.leaky_relu(0.1), lambda a: np.where(a < 0, 0.1 * a, a), lambda r: [nonzero(r, 2, 3)]),
  ("gelu", lambda a: a.gelu(), np_gelu, lambda r: [normal(r, 2, 3) * 2]),
  ("silu", lambda a: a.silu(), lambda a: a * np_sigmoid(a), lambda r: [normal(r, 2, 3) * 2]),
  ("pow_tensor_exponent", lambda a, b: a ** b, lambda a, b: a ** b, lambda r: [positive(r, 2, 3), normal(r, 2, 3)]),
  ("pow_int_exponent", lambda a: a ** 3, lambda a: a ** 3, lambda r: [normal(r, 2, 3)]),
  ("pow_float_exponent", lambda a: a ** 1.5, lambda a: a ** 1.5, lambda r: [positive(r, 2, 3)]),
  ("pow_negative_base_int_tensor_exponent", lambda a, b: a ** b.cast(dtypes.float64), lambda a, b: a ** b,
   lambda r: [nonzero(r, 2, 3), labels(r, 4, 2, 3)]),
  ("rpow", lambda a: 2 ** a, lambda a: 2.0 ** a, lambda r: [normal(r, 2, 3)]),
  ("maximum", lambda a, b: a.maximum(b), np.maximum, lambda r: [a := normal(r, 2, 3), apart(r, a)]),
  ("minimum", lambda a, b: a.minimum(b), np.minimum, lambda r: [a := normal(r, 2, 3), apart(r, a)]),
  ("maximum_scalar", lambda a: a.maximum(0.5), lambda a: np.maximum(a, 0.5), lambda r: [nonzero(r, 2, 3) + 0.5]),
  ("where", lambda c, a, b: c.where(a, b), np.where, lambda r: [r.uniform(size=(2, 3)) > 0.5, normal(r, 2, 3), normal(r, 3)]),
  ("clip", lambda a: a.clip(-0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5), lambda r: [away_from(r, (-0.5, 0.5), 3, 4)]),
  ("abs", lambda a: a.abs(), np.abs, lambda r: [nonzero(r, 2, 3)]),
  ("reciprocal", lambda a: a.reciprocal(), lambda a: 1 / a, lambda r: [nonzero(r, 2, 3)]),
  ("square", lambda a: a.square(), np.square, lambda r: [normal(r, 2, 3)]),
]

REDUCTIONS = [
  ("sum_axis", lambda a: a.sum(1), lambda a: a.sum(1), lambda r: [normal(r, 2, 3, 4)]),
  ("sum_all", lambda a: a.sum(), lambda a: a.sum(), lambda r: [normal(r, 2, 3, 4)]),
  ("sum_keepdim", lambda a: a.sum((0, 2), keepdim=True), lambda a: a.sum((0, 2), keepdims=True), lambda r: [normal(r, 2, 3, 4)]),
  ("mean", lambda a: a.mean((0, 2)), lambda a: a.mean((0, 2)), lambda r: [normal(r, 2, 3, 4)]),
  ("max_axis", lambda a: a.max(1), lambda a: a.max(1), lambda r: [distinct(r, 2, 3, 4)]),
  ("max_all", lambda a: a.max(), lambda a: a.max(), lambda r: [distinct(r, 3, 4)]),
  ("min_axis", lambda a: a.min(-1), lambda a: a.min(-1), lambda r: [distinct(r, 2, 3, 4)]),
  ("prod_axis", lambda a: a.prod(1), lambda a: a.prod(1), lambda r: [nonzero(r, 2, 3, 2)]),
  ("prod_all", lambda a: a.prod(), lambda a: a.prod(), lambda r: [nonzero(r, 5)]),
  ("var", lambda a: a.var(1), lambda a: a.var(1, ddof=1), lambda r: [normal(r, 2, 3, 4)]),
  ("var_correction_0", lambda a: a.var(0, correction=0), lambda a: a.var(0), lambda r: [normal(r, 3, 4)]),
  ("std", lambda a: a.std(-1), lambda a: a.std(-1, ddof=1), lambda r: [normal(r, 2, 3, 4)]),
  ("softmax", lambda a: a.softmax(-1), lambda a: ref.np_softmax(a, -1), lambda r: [normal(r, 2, 3, 4)]),
  ("softmax_axis_0", lambda a: a.softmax(0), lambda a: ref.np_softmax(a, 0), lambda r: [normal(r, 3, 4)]),
  ("log_softmax", lambda a: a.log_softmax(1), lambda a: ref.np_log_softmax(a, 1), lambda r: [normal(r, 2, 3, 4)]),
  ("logsumexp", lambda a: a.logsumexp(1), lambda a: np_logsumexp(a, 1), lambda r: [normal(r, 2, 3, 4)]),
  ("logsumexp_all", lambda a: a.logsumexp(), lambda a: np_logsumexp(a), lambda r: [normal(r, 3, 4)]),
  ("cumsum", lambda a: a.cumsum(1), lambda a: a.cumsum(1), lambda r: [normal(r, 2, 5)]),
  ("cumsum_axis_0", lambda a: a.cumsum(0), lambda a: a.cumsum(0), lambda r: [normal(r, 4, 3)]),
]

MOVEMENT = [
  ("reshape", lambda a: a.reshape(4, 6) * a.reshape(4, 6).flip(0), lambda a: a.reshape(4, 6) * a.reshape(4, 6)[::-1], lambda r: [normal(r, 2, 3, 4)]),
  ("reshape_of_a_1d_tensor", lambda a: a.reshape(2, 3), lambda a: a.reshape(2, 3), lambda r: [normal(r, 6)]),
  ("permute", lambda a: a.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), lambda r: [normal(r, 2, 3, 4)]),
  ("transpose", lambda a: a.transpose(0, 1), lambda a: a.T, lambda r: [normal(r, 3, 4)]),
  ("expand", lambda a: a.expand(2, 3, 4), lambda a: np.broadcast_to(a, (2, 3, 4)), lambda r: [normal(r, 3, 1)]),
  ("expand_then_sum_over_another_axis", lambda a: a.reshape(1, 4, 3).expand(2, 4, 3).sum(1), lambda a: np.broadcast_to(a.sum(0), (2, 3)),
   lambda r: [normal(r, 4, 3)]),
  ("pad", lambda a: a.pad(((1, 2), (0, 1))), lambda a: np.pad(a, ((1, 2), (0, 1))), lambda r: [normal(r, 2, 3)]),
  ("pad_flat_with_value", lambda a: a.pad((1, 1, 2, 0), value=1.5), lambda a: np.pad(a, ((2, 0), (1, 1)), constant_values=1.5),
   lambda r: [normal(r, 2, 3)]),
  ("pad_negative_crops", lambda a: a.pad(((-1, 1), (1, -2))), lambda a: np.pad(a[1:, :-2], ((0, 1), (1, 0))), lambda r: [normal(r, 3, 4)]),
  ("shrink", lambda a: a.shrink(((1, 3), (0, 2))), lambda a: a[1:3, 0:2], lambda r: [normal(r, 3, 4)]),
  ("slice_with_steps", lambda a: a[::2, 1::2], lambda a: a[::2, 1::2], lambda r: [normal(r, 5, 4)]),
  ("slice_with_negative_steps", lambda a: a[::-1, ::-2], lambda a: a[::-1, ::-2], lambda r: [normal(r, 3, 5)]),
  ("index_int_and_slice", lambda a: a[1, 1:], lambda a: a[1, 1:], lambda r: [normal(r, 3, 4)]),
  ("flip", lambda a: a.flip((0, 1)), lambda a: a[::-1, ::-1], lambda r: [normal(r, 3, 4)]),
  ("getitem_int_tensor_with_repeats", lambda a, i: a[i], lambda a, i: a[i], lambda r: [normal(r, 4, 3), np.array([2, 0, 2, 3], np.int32)]),
  ("getitem_2d_int_tensor_on_axis_1", lambda a, i: a[:, i], lambda a, i: a[:, i], lambda r: [normal(r, 2, 4), np.array([[1, 3], [3, 0]], np.int32)]),
  ("getitem_two_int_tensors", lambda a, i, j: a[i, j], lambda a, i, j: a[i, j],
   lambda r: [normal(r, 3, 4), np.array([0, 2, 2], np.int32), np.array([1, 1, 3], np.int32)]),
  ("getitem_negative_int_tensor", lambda a, i: a[i], lambda a, i: a[i], lambda r: [normal(r, 4), np.array([-1, 0, -1], np.int32)]),
  ("cat", lambda a, b, c: a.cat(b, c, dim=1), lambda a, b, c: np.concatenate([a, b, c], 1), lambda r: [normal(r, 2, 1), normal(r, 2, 3), normal(r, 2, 2)]),
  ("stack", lambda a, b: a.stack(b, dim=1), lambda a, b: np.stack([a, b], 1), lambda r: [normal(r, 2, 3), normal(r, 2, 3)]),
  ("repeat", lambda a: a.repeat(2, 1, 3), lambda a: np.tile(a, (2, 1, 3)), lambda r: [normal(r, 2, 2)]),
  ("squeeze_unsqueeze_flatten", lambda a: a.unsqueeze(0).squeeze(2).flatten(), lambda a: a.reshape(-1), lambda r: [normal(r, 2, 1, 3)]),
]

MATMUL = [
  ("matmul", lambda a, b: a @ b, np.matmul, lambda r: [normal(r, 3, 4), normal(r, 4, 2)]),
  ("matmul_batched_broadcast", lambda a, b: a @ b, np.matmul, lambda r: [normal(r, 2, 1, 3, 4), normal(r, 3, 4, 2)]),
  ("matmul_vector_matrix", lambda a, b: a @ b, np.matmul, lambda r: [normal(r, 4), normal(r, 4, 3)]),
  ("matmul_matrix_vector", lambda a, b: a @ b, np.matmul, lambda r: [normal(r, 3, 4), normal(r, 4)]),
  ("linear", lambda x, w, b: x.linear(w, b), lambda x, w, b: x @ w + b, lambda r: [normal(r, 2, 3), normal(r, 3, 4), normal(r, 4)]),
]

def conv_case(name, xs, ws, kw, transpose=False):
  tiny_op = (lambda x, w, b: x.conv_transpose2d(w, b, **kw)) if transpose else (lambda x, w, b: x.conv2d(w, b, **kw))
  np_op = (lambda x, w, b: ref.np_conv_transpose2d(x, w, b, **kw)) if transpose else (lambda x, w, b: ref.np_conv2d(x, w, b, **kw))
  cout = ws[1] * kw.get("groups", 1) if transpose else ws[0]
  return (name, tiny_op, np_op, lambda r: [normal(r, *xs), normal(r, *ws), normal(r, cout)])

NETWORK = [
  conv_case("conv2d", (2, 2, 4, 4), (3, 2, 3, 3), {}),
  conv_case("conv2d_stride_padding", (1, 2, 5, 5), (2, 2, 3, 3), {"stride": 2, "padding": 1}),
  conv_case("conv2d_dilation", (1, 1, 6, 6), (2, 1, 2, 2), {"dilation": 2}),
  conv_case("conv2d_groups", (1, 4, 4, 4), (4, 2, 2, 2), {"groups": 2, "padding": 1}),
  conv_case("conv2d_everything_per_axis", (1, 2, 5, 4), (2, 1, 3, 2), {"groups": 2, "stride": (2, 1), "dilation": (1, 2), "padding": (1, 0)}),
  conv_case("conv_transpose2d_stride_padding_output_padding", (1, 2, 3, 3), (2, 2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}, True),
  conv_case("conv_transpose2d_groups_dilation", (1, 4, 2, 3), (4, 1, 2, 2), {"groups": 2, "dilation": 2}, True),
  ("max_pool2d", lambda x: x.max_pool2d(2), lambda x: ref.np_max_pool2d(x, 2), lambda r: [distinct(r, 1, 2, 4, 4)]),
  ("max_pool2d_overlapping_padded", lambda x: x.max_pool2d(3, stride=2, padding=1), lambda x: ref.np_max_pool2d(x, 3, 2, padding=1),
   lambda r: [distinct(r, 1, 1, 5, 5)]),
  ("max_pool2d_dilation", lambda x: x.max_pool2d(2, stride=1, dilation=2), lambda x: ref.np_max_pool2d(x, 2, 1, dilation=2), lambda r: [distinct(r, 1, 1, 4, 5)]),
  ("avg_pool2d", lambda x: x.avg_pool2d(2), lambda x: ref.np_avg_pool2d(x, 2), lambda r: [normal(r, 1, 2, 4, 4)]),
  ("avg_pool2d_overlapping_padded", lambda x: x.avg_pool2d(3, stride=1, padding=1), lambda x: ref.np_avg_pool2d(x, 3, 1, padding=1),
   lambda r: [normal(r, 1, 1, 4, 4)]),
  ("layernorm", lambda x: x.layernorm(), lambda x: ref.np_layernorm(x), lambda r: [normal(r, 2, 5)]),
  ("layernorm_two_axes", lambda x: x.layernorm((1, 2)), lambda x: ref.np_layernorm(x, (1, 2)), lambda r: [normal(r, 2, 3, 4)]),
  ("batchnorm", lambda x, w, b, m, s: x.batchnorm(w, b, m, s), ref.np_batchnorm,
   lambda r: [normal(r, 3, 2, 2), normal(r, 2), normal(r, 2), normal(r, 2), positive(r, 2)]),
  ("batchnorm_training_batch_statistics", bn_training, np_batchnorm_training, lambda r: [normal(r, 4, 2, 3)]),
  ("cross_entropy_class_indices", lambda x, y: x.cross_entropy(y), ref.np_cross_entropy, lambda r: [normal(r, 3, 4), labels(r, 4, 3)]),
  ("cross_entropy_probabilities", lambda x, y: x.cross_entropy(y), ref.np_cross_entropy, lambda r: [normal(r, 3, 4), ref.np_softmax(normal(r, 3, 4))]),
  ("cross_entropy_smoothing_sum", lambda x, y: x.cross_entropy(y, reduction="sum", label_smoothing=0.1),
   lambda x, y: ref.np_cross_entropy(x, y, "sum", 0.1), lambda r: [normal(r, 3, 4), labels(r, 4, 3)]),
  ("cross_entropy_spatial", lambda x, y: x.cross_entropy(y), ref.np_cross_entropy, lambda r: [normal(r, 2, 3, 2), labels(r, 3, 2, 2)]),
  ("sparse_categorical_crossentropy", lambda x, y: x.sparse_categorical_crossentropy(y), ref.np_sparse_categorical_crossentropy,
   lambda r: [normal(r, 4, 3), labels(r, 3, 4)]),
  ("sparse_categorical_crossentropy_ignore_index", lambda x, y: x.sparse_categorical_crossentropy(y, ignore_index=1, label_smoothing=0.1),
   lambda x, y: ref.np_sparse_categorical_crossentropy(x, y, 1, 0.1), lambda r: [normal(r, 5, 3), np.array([0, 1, 2, 1, 0], np.int32)]),
  ("binary_crossentropy", lambda p, y: p.binary_crossentropy(y), ref.np_binary_crossentropy, lambda r: [r.uniform(0.1, 0.9, (2, 3)), r.uniform(0, 1, (2, 3))]),
  ("binary_crossentropy_logits", lambda x, y: x.binary_crossentropy_logits(y), ref.np_binary_crossentropy_logits,
   lambda r: [normal(r, 2, 3) * 2, r.uniform(0, 1, (2, 3))]),
  ("scaled_dot_product_attention", lambda q, k, v: q.scaled_dot_product_attention(k, v), ref.np_scaled_dot_product_attention,
   lambda r: [normal(r, 2, 3, 4), normal(r, 2, 4, 4), normal(r, 2, 4, 3)]),
  ("scaled_dot_product_attention_bool_mask", lambda q, k, v, m: q.scaled_dot_product_attention(k, v, attn_mask=m), ref.np_scaled_dot_product_attention,
   lambda r: [normal(r, 3, 2), normal(r, 4, 2), normal(r, 4, 2), np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 1, 1]], bool)]),
  ("scaled_dot_product_attention_float_mask", lambda q, k, v, m: q.scaled_dot_product_attention(k, v, attn_mask=m), ref.np_scaled_dot_product_attention,
   lambda r: [normal(r, 3, 2), normal(r, 3, 2), normal(r, 3, 2), normal(r, 3, 3)]),
  ("scaled_dot_product_attention_causal", lambda q, k, v: q.scaled_dot_product_attention(k, v, is_causal=True),
   lambda q, k, v: ref.np_scaled_dot_product_attention(q, k, v, is_causal=True), lambda r: [normal(r, 1, 3, 2), normal(r, 1, 3, 2), normal(r, 1, 3, 2)]),
  ("embedding", embedding, lambda w, i: w[i], lambda r: [normal(r, 5, 3), np.array([[4, 0, 4], [1, 4, 2]], np.int32)]),
]

CASES = ELEMENTWISE + REDUCTIONS + MOVEMENT + MATMUL + NETWORK

def finite_difference(np_op, arrays, i, W):
  """d/d arrays[i] of sum(np_op(*arrays) * W), by central differences in float64."""
  arrays = [a.copy() for a in arrays]
  x, grad = arrays[i], np.zeros_like(arrays[i])
  for j in np.ndindex(x.shape):
    orig = x[j]
    x[j] = orig + FD_EPS
    plus = (np_op(*arrays) * W).sum()
    x[j] = orig - FD_EPS
    minus = (np_op(*arrays) * W).sum()
    x[j] = orig
    grad[j] = (plus - minus) / (2 * FD_EPS)
  return grad

@pytest.mark.parametrize("name, tiny_op, np_op, inputs", CASES, ids=[c[0] for c in CASES])
def test_gradient_matches_finite_differences(device, name, tiny_op, np_op, inputs):
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  arrays = [np.asarray(a) for a in inputs(rng)]
  differentiable = [i for i, a in enumerate(arrays) if a.dtype == np.float64]
  tensors = [Tensor(a, device=device, requires_grad=i in differentiable) for i, a in enumerate(arrays)]
  expected = np.asarray(np_op(*arrays), dtype=np.float64)
  W = rng.standard_normal(expected.shape)
  out = tiny_op(*tensors)
  grads = (out * Tensor(W, device=device)).sum().gradient(*[tensors[i] for i in differentiable])
  Tensor.realize(out, *grads)
  assert out.dtype == dtypes.float64 and out.shape == expected.shape
  np.testing.assert_allclose(out.numpy(), expected, *TOLERANCE["forward"], err_msg="forward")
  for i, g in zip(differentiable, grads):
    assert g.shape == arrays[i].shape and g.dtype == dtypes.float64
    np.testing.assert_allclose(g.numpy(), finite_difference(np_op, arrays, i, W), *TOLERANCE["gradient"], err_msg=f"gradient of input {i}")

def test_float32_gradients_agree_with_float64_ones(device):
  rng = np.random.default_rng(1)
  x, w, y = normal(rng, 4, 3), normal(rng, 3, 5), labels(rng, 5, 4)
  grads = {}
  for dtype in (dtypes.float32, dtypes.float64):
    tx, tw = Tensor(x, device=device, dtype=dtype, requires_grad=True), Tensor(w, device=device, dtype=dtype, requires_grad=True)
    loss = (tx @ tw).relu().sparse_categorical_crossentropy(Tensor(y, device=device))
    grads[dtype] = [g.numpy() for g in loss.gradient(tx, tw)]
    assert all(g.dtype == np.dtype(dtype.name) for g in grads[dtype])
  for g32, g64 in zip(grads[dtypes.float32], grads[dtypes.float64]): np.testing.assert_allclose(g32, g64, *TOLERANCE["float32_gradient"])

# ## Ties and kinks: the choices tiny makes where the derivative is not defined

def test_max_gradient_is_shared_equally_between_ties(device):
  x = Tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], device=device, requires_grad=True)
  x.max(1).sum().backward()
  np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)

def test_maximum_gradient_is_halved_on_a_tie(device):
  a, b = Tensor([1.0, 2.0], device=device, requires_grad=True), Tensor([1.0, 0.0], device=device, requires_grad=True)
  a.maximum(b).sum().backward()
  np.testing.assert_array_equal(a.grad.numpy(), [0.5, 1.0])
  np.testing.assert_array_equal(b.grad.numpy(), [0.5, 0.0])

def test_relu_gradient_at_zero_is_zero(device):
  x = Tensor([-1.0, 0.0, 2.0], device=device, requires_grad=True)
  x.relu().sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 1])

def test_dropout_gradient_is_the_kept_mask_scaled(device):
  Tensor.manual_seed(5)
  x = Tensor(np.random.default_rng(2).uniform(1, 2, 32), device=device, requires_grad=True)
  with Tensor.train(): y = x.dropout(0.25)
  (g,) = y.sum().gradient(x)
  kept = y.numpy() != 0
  np.testing.assert_allclose(g.numpy(), kept / 0.75, rtol=1e-6)

# ## backward, gradient, detach, no_grad

def test_backward_fills_grad_of_tensors_created_with_requires_grad(device):
  x = Tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
  w = Tensor([[1.0, -1.0], [0.5, 2.0], [3.0, 0.0]], device=device, requires_grad=True)
  assert x.grad is None
  (x @ w).square().sum().backward()
  out = np.array([1.0, 2.0, 3.0]) @ np.array([[1.0, -1.0], [0.5, 2.0], [3.0, 0.0]])
  np.testing.assert_allclose(x.grad.numpy(), (2 * out) @ np.array([[1.0, -1.0], [0.5, 2.0], [3.0, 0.0]]).T, rtol=1e-6)
  np.testing.assert_allclose(w.grad.numpy(), np.outer([1.0, 2.0, 3.0], 2 * out), rtol=1e-6)
  assert x.grad.shape == x.shape and x.grad.device == device

def test_backward_reaches_a_stored_multidimensional_tensor_through_a_reshape(device):
  # a tensor made from data is stored; a reshape of it must still lead back to it
  w = Tensor(np.arange(6.0).reshape(2, 3), device=device, requires_grad=True)
  (w.reshape(6) * Tensor(np.arange(6.0), device=device)).sum().backward()
  assert w.grad is not None, "no gradient reached w through reshape"
  np.testing.assert_array_equal(w.grad.numpy(), np.arange(6.0).reshape(2, 3))

def test_backward_accumulates_into_grad(device):
  x = Tensor([1.0, -2.0], device=device, requires_grad=True)
  (x * 3).sum().backward()
  (x * x).sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), [3 + 2, 3 - 4])

def test_backward_skips_tensors_that_do_not_require_grad(device):
  a = Tensor([1.0, 2.0], device=device, requires_grad=False)
  b = Tensor([3.0, 4.0], device=device)
  c = Tensor([5.0, 6.0], device=device, requires_grad=True)
  (a * b * c).sum().backward()
  assert a.grad is None and b.grad is None
  np.testing.assert_array_equal(c.grad.numpy(), [3.0, 8.0])

def test_backward_leaves_tensors_outside_the_graph_alone(device):
  x, unused = Tensor([1.0], device=device, requires_grad=True), Tensor([2.0], device=device, requires_grad=True)
  (x * 2).sum().backward()
  assert unused.grad is None

def test_backward_fills_grad_of_nn_parameters(on_device):
  device = on_device
  Tensor.manual_seed(0)
  layer = Linear(3, 2)
  x = np.random.default_rng(3).standard_normal((4, 3))
  layer(Tensor(x, device=device, dtype=dtypes.float32)).sum().backward()
  assert layer.weight.grad is not None and layer.bias.grad is not None, "nn parameters got no .grad from backward()"
  np.testing.assert_allclose(layer.weight.grad.numpy(), np.broadcast_to(x.sum(0), (2, 3)), rtol=1e-5)
  np.testing.assert_allclose(layer.bias.grad.numpy(), [4.0, 4.0])

def test_backward_fills_grad_of_parameters_handed_to_an_optimizer(on_device):
  device = on_device
  Tensor.manual_seed(0)
  layer = Linear(3, 2)
  SGD([layer.weight, layer.bias])
  x = np.random.default_rng(3).standard_normal((4, 3))
  layer(Tensor(x, device=device, dtype=dtypes.float32)).sum().backward()
  np.testing.assert_allclose(layer.weight.grad.numpy(), np.broadcast_to(x.sum(0), (2, 3)), rtol=1e-5)
  np.testing.assert_allclose(layer.bias.grad.numpy(), [4.0, 4.0])

def test_gradient_of_a_lazy_constant_is_not_mixed_with_an_equal_constant(device):
  w = Tensor.ones(3, device=device)  # like a LayerNorm weight before any optimizer realizes it
  w.requires_grad = True
  x = Tensor([1.0, 2.0, 3.0], device=device)
  ((x + 1) * w).sum().backward()  # `x + 1` broadcasts a constant 1 to shape (3,): the same expression as ones(3)
  np.testing.assert_array_equal(w.grad.numpy(), [2.0, 3.0, 4.0])

def test_gradient_of_a_scalar_tensor_is_not_mixed_with_an_equal_python_scalar(device):
  x = Tensor(2.0, device=device, requires_grad=True)
  (x * 2.0).backward()
  assert x.grad.item() == 2.0

def test_requires_grad_can_be_set_after_creation(device):
  x = Tensor([1.0, 2.0], device=device)
  x.requires_grad = True
  (x * x).sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])

@pytest.mark.parametrize("make", [
  lambda d: Tensor.ones(2, 3, device=d, requires_grad=True), lambda d: Tensor.zeros(2, 3, device=d, requires_grad=True),
  lambda d: Tensor.randn(2, 3, device=d, requires_grad=True), lambda d: Tensor.rand(2, 3, device=d, requires_grad=True),
  lambda d: Tensor.full((2, 3), 2.0, device=d, requires_grad=True)], ids=["ones", "zeros", "randn", "rand", "full"])
def test_creation_functions_take_requires_grad_as_in_tinygrad(device, make):
  x = make(device)
  assert x.requires_grad
  (x * 2).sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 2.0, np.float32))

def test_backward_of_a_non_scalar_takes_an_explicit_gradient(device):
  x = Tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
  (x * x).backward(Tensor([1.0, 0.0, -1.0], device=device))
  np.testing.assert_array_equal(x.grad.numpy(), [2.0, 0.0, -6.0])

def test_backward_of_a_non_scalar_without_a_gradient_names_the_shape(device):
  x = Tensor([1.0, 2.0], device=device, requires_grad=True)
  with pytest.raises(ValueError, match=r"\(2,\)"): (x * 2).backward()

def test_gradient_returns_gradients_without_touching_grad(device):
  x, y = Tensor([1.0, 2.0], device=device, requires_grad=True), Tensor([3.0, 5.0], device=device, requires_grad=True)
  gx, gy = (x * y).sum().gradient(x, y)
  np.testing.assert_array_equal(gx.numpy(), [3.0, 5.0])
  np.testing.assert_array_equal(gy.numpy(), [1.0, 2.0])
  assert x.grad is None and y.grad is None

def test_gradient_works_on_tensors_that_do_not_require_grad(device):
  x = Tensor([1.0, 2.0], device=device)
  (g,) = (x * x * x).sum().gradient(x)
  np.testing.assert_array_equal(g.numpy(), [3.0, 12.0])

def test_gradient_with_respect_to_an_intermediate_tensor(device):
  x = Tensor([1.0, -2.0], device=device, requires_grad=True)
  y = x * 2
  (gy,) = (y * y).sum().gradient(y)
  np.testing.assert_array_equal(gy.numpy(), [4.0, -8.0])

def test_gradient_of_a_target_outside_the_graph_is_zero(device):
  x, z = Tensor([1.0, 2.0], device=device), Tensor([[1.0], [2.0]], device=device)
  gx, gz = (x * 2).sum().gradient(x, z)
  np.testing.assert_array_equal(gz.numpy(), [[0.0], [0.0]])
  np.testing.assert_array_equal(gx.numpy(), [2.0, 2.0])

def test_detach_stops_gradients(device):
  x = Tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
  (x * x.detach()).sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0, 3.0])  # not 2x
  d = x.detach()
  np.testing.assert_array_equal(d.numpy(), x.numpy())

def test_no_grad_context_stops_gradients_through_what_it_computes(device):
  x = Tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
  with Tensor.no_grad(): y = x * 2
  (x * y).sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])  # y counts as a constant: not 4x
  np.testing.assert_array_equal(y.numpy(), [2.0, 4.0, 6.0])

def test_no_grad_as_a_decorator(device):
  x = Tensor([1.0, 2.0], device=device, requires_grad=True)
  @Tensor.no_grad()
  def double(t): return t * 2
  (x * double(x)).sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])

def test_no_grad_restores_gradients_after_the_block_even_on_error(device):
  assert Tensor.grad_enabled
  with pytest.raises(KeyError):
    with Tensor.no_grad():
      assert not Tensor.grad_enabled
      with Tensor.no_grad(): pass
      assert not Tensor.grad_enabled  # the inner block restores the outer one's setting
      raise KeyError("boom")
  assert Tensor.grad_enabled
  x = Tensor([3.0], device=device, requires_grad=True)
  (x * x).sum().backward()
  np.testing.assert_array_equal(x.grad.numpy(), [6.0])

@pytest.mark.parametrize("kw", [{"padding": "same"}, {"padding": (1, 0, 2, 1)}, {"stride": 2, "padding": (0, 1, 1, 0)}, {"padding": -1, "dilation": (2, 1)}])
def test_conv2d_brings_the_gradient_its_ops_rules_would_give(device, kw):
  # conv2d's own gradient (the transposed convolution) against the one walked back through its ops, which is what
  # is left once its entry in `_custom_gradients` is taken out: asymmetric, negative and strided padding, groups
  rng = np.random.default_rng(1)
  x, w = rng.standard_normal((2, 4, 7, 6)).astype(np.float32), rng.standard_normal((6, 2, 2, 3)).astype(np.float32)
  grads = []
  for own in (True, False):
    tx, tw = Tensor(x, device=device, requires_grad=True), Tensor(w, device=device, requires_grad=True)
    out = tx.conv2d(tw, groups=2, **kw)
    if not own: tiny._custom_gradients.pop(out.uop)
    g = Tensor(rng.standard_normal(out.shape).astype(np.float32) if own else g.numpy(), device=device)
    grads.append([t.numpy() for t in (out * g).sum().gradient(tx, tw)])
  for mine, rules in zip(*grads): np.testing.assert_allclose(mine, rules, rtol=1e-5, atol=1e-5)

def test_an_own_gradient_goes_with_its_result(device):
  # `_custom_gradients` is weak on the result: a function that held the result would keep itself for ever. (Inputs
  # in buffers: a graph of constants alone is its own schedule's key, kept with the schedule.)
  import gc
  gc.collect()
  before = len(tiny._custom_gradients)
  for _ in range(3):
    x, w = Tensor(np.ones((1, 1, 3, 3), np.float32), device=device), Tensor(np.ones((1, 1, 2, 2), np.float32), device=device)
    out = Tensor([1.0, 4.0], device=device) ** 0.5 + x.conv2d(w).sum()
    assert out.tolist() == [17.0, 18.0]  # 1 and 2, plus the four windows of 4 ones
  del out
  gc.collect()
  assert len(tiny._custom_gradients) == before
