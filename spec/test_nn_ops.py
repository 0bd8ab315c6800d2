"""Chapter 16, ops for networks: conv, pooling, normalization, dropout and the losses, forward, against numpy references.

The references below are written the slow, obvious way (loops over output
positions, float64) so that they are easy to trust. test_autograd.py reuses
them as the functions it differentiates by finite differences.
"""
import math
import numpy as np
import pytest
from tiny import Tensor, dtypes

# The one tolerance table: (rtol, atol) of a float32 result against the float64 reference.
TOLERANCE = {
  "sum_of_products": (1e-5, 1e-5),  # conv, pooling, linear, attention: short float32 sums
  "normalize": (1e-4, 1e-5),        # layernorm, batchnorm: a mean, a variance and a rsqrt
  "loss": (1e-5, 1e-5),             # log_softmax and friends
}
DROPOUT_SIGMAS = 5  # how far the dropped fraction of n elements may stray from p, in binomial standard deviations sqrt(p(1-p)/n)

def randn(*shape, seed=0): return np.random.default_rng(seed).standard_normal(shape)

def close(t: Tensor, expected, kind: str) -> None:
  expected = np.asarray(expected, dtype=np.float64)
  assert t.shape == expected.shape, f"shape {t.shape}, expected {expected.shape}"
  rtol, atol = TOLERANCE[kind]
  np.testing.assert_allclose(t.numpy().astype(np.float64), expected, rtol=rtol, atol=atol)

# ## numpy references (float64)

def _pair(v): return (v, v) if isinstance(v, int) else tuple(v)

def np_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
  (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
  x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
  n, cin, H, W = x.shape
  cout, cin_g, kh, kw = w.shape
  cout_g = cout // groups
  oh, ow = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
  out = np.zeros((n, cout, oh, ow), dtype=np.result_type(x, w))
  for g in range(groups):
    xg, wg = x[:, g * cin_g:(g + 1) * cin_g], w[g * cout_g:(g + 1) * cout_g]
    for i in range(oh):
      for j in range(ow):
        patch = xg[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
        out[:, g * cout_g:(g + 1) * cout_g, i, j] = np.einsum("nchw,ochw->no", patch, wg)
  return out if b is None else out + b.reshape(1, -1, 1, 1)

def np_conv_transpose2d(x, w, b=None, stride=1, padding=0, dilation=1, output_padding=0, groups=1):
  """Every input pixel scatters its weighted kernel into the output; then `padding` is cropped from each side."""
  (sh, sw), (ph, pw), (dh, dw), (oph, opw) = _pair(stride), _pair(padding), _pair(dilation), _pair(output_padding)
  n, cin, H, W = x.shape
  _, cout_g, kh, kw = w.shape
  cin_g = cin // groups
  full = np.zeros((n, cout_g * groups, (H - 1) * sh + dh * (kh - 1) + 1 + oph, (W - 1) * sw + dw * (kw - 1) + 1 + opw), dtype=np.result_type(x, w))
  for g in range(groups):
    for i in range(H):
      for j in range(W):
        for a in range(kh):
          for c in range(kw):
            full[:, g * cout_g:(g + 1) * cout_g, i * sh + a * dh, j * sw + c * dw] += x[:, g * cin_g:(g + 1) * cin_g, i, j] @ w[g * cin_g:(g + 1) * cin_g, :, a, c]
  oh, ow = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1, (W - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
  out = full[:, :, ph:ph + oh, pw:pw + ow]
  return out if b is None else out + b.reshape(1, -1, 1, 1)

def np_pool2d(x, reduce, kernel_size, stride=None, dilation=1, padding=0, pad_value=0.0):
  (kh, kw), (dh, dw), (ph, pw) = _pair(kernel_size), _pair(dilation), _pair(padding)
  sh, sw = _pair(stride if stride is not None else kernel_size)
  x = np.pad(x, ((0, 0),) * (x.ndim - 2) + ((ph, ph), (pw, pw)), constant_values=pad_value)
  H, W = x.shape[-2:]
  oh, ow = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
  out = np.zeros(x.shape[:-2] + (oh, ow), dtype=x.dtype)
  for i in range(oh):
    for j in range(ow):
      out[..., i, j] = reduce(x[..., i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw], axis=(-2, -1))
  return out

def np_max_pool2d(x, kernel_size=2, stride=None, dilation=1, padding=0): return np_pool2d(x, np.max, kernel_size, stride, dilation, padding, -np.inf)
def np_avg_pool2d(x, kernel_size=2, stride=None, dilation=1, padding=0): return np_pool2d(x, np.mean, kernel_size, stride, dilation, padding, 0.0)

def np_layernorm(x, axis=-1, eps=1e-5):
  mean = x.mean(axis, keepdims=True)
  return (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis, keepdims=True) + eps)

def np_batchnorm(x, weight, bias, mean, invstd):
  shape = (1, -1) + (1,) * (x.ndim - 2)
  return (x - mean.reshape(shape)) * (invstd * weight).reshape(shape) + bias.reshape(shape)

def np_log_softmax(x, axis=-1):
  shifted = x - x.max(axis, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))

def np_softmax(x, axis=-1): return np.exp(np_log_softmax(x, axis))

def np_reduce(loss, reduction): return {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction](loss)

def np_cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
  """PyTorch's: logits (N, C, ...), target class indices (N, ...) or probabilities (N, C, ...)."""
  axis = 1 if logits.ndim > 1 else 0
  C = logits.shape[axis]
  if np.issubdtype(target.dtype, np.integer): target = np.moveaxis(np.eye(C)[target], -1, axis) if logits.ndim > 1 else np.eye(C)[target]
  target = target * (1 - label_smoothing) + label_smoothing / C
  return np_reduce(-(target * np_log_softmax(logits, axis)).sum(axis), reduction)

def np_sparse_categorical_crossentropy(logits, labels, ignore_index=-1, label_smoothing=0.0):
  """tinygrad's: logits (..., C), integer labels (...); ignored labels count neither in the sum nor in the mean."""
  log_probs = np_log_softmax(logits, -1).reshape(-1, logits.shape[-1])
  labels = labels.reshape(-1)
  keep = labels != ignore_index
  nll = -log_probs[np.arange(len(labels))[keep], labels[keep]]
  smooth = -log_probs[keep].mean(-1)
  return ((1 - label_smoothing) * nll + label_smoothing * smooth).sum() / max(keep.sum(), 1)

def np_binary_crossentropy(p, y, reduction="mean"): return np_reduce(-(y * np.log(p) + (1 - y) * np.log(1 - p)), reduction)
def np_binary_crossentropy_logits(x, y, reduction="mean"): return np_binary_crossentropy(1 / (1 + np.exp(-x)), y, reduction)

def np_scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
  scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
  if is_causal: mask = np.tril(np.ones(scores.shape[-2:], dtype=bool))
  if mask is not None: scores = np.where(mask, scores, -np.inf) if mask.dtype == bool else scores + mask
  return np_softmax(scores, -1) @ v

# ## Convolution

CONV_CASES = [  # x shape, weight shape, keyword arguments
  ((2, 3, 5, 5), (4, 3, 3, 3), {}),
  ((1, 2, 6, 5), (3, 2, 2, 3), {"stride": 2}),
  ((1, 2, 5, 5), (2, 2, 3, 3), {"padding": 1}),
  ((1, 1, 7, 6), (2, 1, 3, 2), {"dilation": 2}),
  ((2, 4, 5, 5), (6, 2, 3, 3), {"groups": 2}),
  ((1, 4, 6, 6), (4, 1, 3, 3), {"groups": 4, "stride": 2, "padding": 1}),  # depthwise
  ((1, 2, 7, 7), (2, 2, 3, 3), {"stride": (2, 1), "padding": (1, 2), "dilation": (1, 2)}),
]

@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("xs, ws, kw", CONV_CASES, ids=[str(c[2]) for c in CONV_CASES])
def test_conv2d_matches_a_loop_over_output_positions(device, xs, ws, kw, bias):
  x, w, b = randn(*xs, seed=1), randn(*ws, seed=2), randn(ws[0], seed=3) if bias else None
  out = Tensor(x, device=device, dtype=dtypes.float32).conv2d(Tensor(w, device=device, dtype=dtypes.float32),
                                                              Tensor(b, device=device, dtype=dtypes.float32) if bias else None, **kw)
  assert out.dtype == dtypes.float32
  close(out, np_conv2d(x, w, b, **kw), "sum_of_products")

def test_conv2d_with_1x1_kernel_is_a_channel_matmul(device):
  x, w = randn(2, 3, 2, 2, seed=4), randn(5, 3, 1, 1, seed=5)
  out = Tensor(x, device=device, dtype=dtypes.float32).conv2d(Tensor(w, device=device, dtype=dtypes.float32))
  close(out, np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0]), "sum_of_products")

def test_conv2d_names_the_channel_mismatch(device):
  with pytest.raises(ValueError, match="channels"): Tensor.ones(1, 3, 4, 4, device=device).conv2d(Tensor.ones(2, 2, 3, 3, device=device))

CONV_TRANSPOSE_CASES = [
  ((1, 2, 3, 3), (2, 3, 3, 3), {}),
  ((2, 2, 3, 4), (2, 2, 3, 3), {"stride": 2}),
  ((1, 2, 4, 4), (2, 3, 3, 3), {"stride": 2, "padding": 1}),
  ((1, 2, 3, 3), (2, 2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
  ((1, 1, 3, 3), (1, 2, 2, 2), {"dilation": 2}),
  ((1, 4, 3, 3), (4, 1, 2, 2), {"groups": 2, "stride": 2}),
  ((1, 2, 3, 4), (2, 1, 3, 2), {"stride": (2, 1), "padding": (1, 0)}),
]

@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("xs, ws, kw", CONV_TRANSPOSE_CASES, ids=[str(c[2]) for c in CONV_TRANSPOSE_CASES])
def test_conv_transpose2d_matches_scattering_each_input_pixel(device, xs, ws, kw, bias):
  x, w = randn(*xs, seed=6), randn(*ws, seed=7)
  b = randn(ws[1] * kw.get("groups", 1), seed=8) if bias else None
  out = Tensor(x, device=device, dtype=dtypes.float32).conv_transpose2d(Tensor(w, device=device, dtype=dtypes.float32),
                                                                        Tensor(b, device=device, dtype=dtypes.float32) if bias else None, **kw)
  close(out, np_conv_transpose2d(x, w, b, **kw), "sum_of_products")

def test_conv_transpose2d_is_the_gradient_of_conv2d(device):
  # <conv2d(x, w), y> == <x, conv_transpose2d(y, w)> for matching stride and padding
  x, w, y = randn(1, 2, 5, 5, seed=9), randn(3, 2, 3, 3, seed=10), randn(1, 3, 3, 3, seed=11)
  tx, tw, ty = (Tensor(a, device=device, dtype=dtypes.float64) for a in (x, w, y))
  lhs = (tx.conv2d(tw, stride=2, padding=1) * ty).sum().item()
  rhs = (tx * ty.conv_transpose2d(tw, stride=2, padding=1)).sum().item()
  assert lhs == pytest.approx(rhs, rel=1e-12)

# ## Pooling

POOL_CASES = [
  ({"kernel_size": 2}, (1, 2, 4, 6)),
  ({"kernel_size": 3, "stride": 2}, (2, 1, 7, 5)),
  ({"kernel_size": 3, "stride": 1, "padding": 1}, (1, 2, 4, 4)),
  ({"kernel_size": (2, 3), "stride": (1, 2)}, (1, 1, 5, 7)),
  ({"kernel_size": 2, "stride": 1, "dilation": 2}, (1, 1, 5, 6)),
]

@pytest.mark.parametrize("kw, shape", POOL_CASES, ids=[str(c[0]) for c in POOL_CASES])
def test_max_pool2d_takes_the_max_of_each_window(device, kw, shape):
  x = randn(*shape, seed=12)
  close(Tensor(x, device=device, dtype=dtypes.float32).max_pool2d(**kw), np_max_pool2d(x, **kw), "sum_of_products")

@pytest.mark.parametrize("kw, shape", POOL_CASES, ids=[str(c[0]) for c in POOL_CASES])
def test_avg_pool2d_averages_each_window_counting_padding(device, kw, shape):
  x = randn(*shape, seed=13)
  close(Tensor(x, device=device, dtype=dtypes.float32).avg_pool2d(**kw), np_avg_pool2d(x, **kw), "sum_of_products")

def test_max_pool2d_padding_never_wins_on_all_negative_input(device):
  x = -np.abs(randn(1, 1, 3, 3, seed=14)) - 1
  out = Tensor(x, device=device, dtype=dtypes.float32).max_pool2d(kernel_size=3, stride=1, padding=1)
  assert (out.numpy() < 0).all()
  close(out, np_max_pool2d(x, 3, 1, 1, 1), "sum_of_products")

def test_max_pool2d_of_ints_keeps_the_dtype(device):
  x = np.arange(16, dtype=np.int32).reshape(1, 1, 4, 4)[..., ::-1].copy()
  out = Tensor(x, device=device).max_pool2d(2)
  assert out.dtype == dtypes.int32
  np.testing.assert_array_equal(out.numpy(), np_max_pool2d(x.astype(np.float64), 2))

# ## Linear, dropout

@pytest.mark.parametrize("bias", [False, True])
def test_linear_is_x_at_weight_plus_bias(device, bias):
  x, w, b = randn(2, 3, 4, seed=15), randn(4, 5, seed=16), randn(5, seed=17)
  tb = Tensor(b, device=device, dtype=dtypes.float32) if bias else None
  out = Tensor(x, device=device, dtype=dtypes.float32).linear(Tensor(w, device=device, dtype=dtypes.float32), tb)
  close(out, x @ w + (b if bias else 0), "sum_of_products")

def test_linear_with_a_1d_weight_scales_elementwise(device):
  x, w = randn(2, 3, seed=18), randn(3, seed=19)
  close(Tensor(x, device=device, dtype=dtypes.float32).linear(Tensor(w, device=device, dtype=dtypes.float32)), x * w, "sum_of_products")

def test_dropout_is_the_identity_when_not_training(device):
  x = Tensor(randn(4, 5, seed=20), device=device, dtype=dtypes.float32)
  assert not Tensor.training
  np.testing.assert_array_equal(x.dropout(0.5).numpy(), x.numpy())

def test_dropout_with_p_0_is_the_identity_while_training(device):
  x = Tensor(randn(4, 5, seed=21), device=device, dtype=dtypes.float32)
  with Tensor.train(): np.testing.assert_array_equal(x.dropout(0.0).numpy(), x.numpy())

@pytest.mark.parametrize("p", [0.25, 0.5, 0.8])
def test_dropout_zeroes_about_p_and_scales_the_rest_by_1_over_1_minus_p(device, p):
  n = 200 if device == "PYTHON" else 20000
  x = np.random.default_rng(22).uniform(1, 2, n)  # never 0, so a 0 in the output was dropped
  Tensor.manual_seed(3)
  with Tensor.train(): out = Tensor(x, device=device, dtype=dtypes.float32).dropout(p).numpy()
  kept = out != 0
  assert abs((1 - kept.mean()) - p) < DROPOUT_SIGMAS * math.sqrt(p * (1 - p) / n)
  np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-6)

def test_dropout_draws_a_new_mask_each_call(device):
  Tensor.manual_seed(4)
  x = Tensor.ones(64, device=device)
  with Tensor.train(): a, b = x.dropout(0.5).numpy(), x.dropout(0.5).numpy()
  assert (a != b).any()

def test_dropout_with_p_1_drops_everything(device):
  with Tensor.train(): out = Tensor.ones(8, device=device).dropout(1.0).numpy()
  np.testing.assert_array_equal(out, np.zeros(8, np.float32))

# ## Normalization

@pytest.mark.parametrize("axis", [-1, (1, 2), 0])
def test_layernorm_normalizes_over_the_axes(device, axis):
  x = randn(2, 3, 4, seed=23) * 3 + 1
  close(Tensor(x, device=device, dtype=dtypes.float32).layernorm(axis), np_layernorm(x, axis), "normalize")

def test_layernorm_eps_matters_for_a_constant_row(device):
  x = np.full((2, 4), 3.0)
  out = Tensor(x, device=device, dtype=dtypes.float32).layernorm(eps=1e-5).numpy()
  np.testing.assert_array_equal(out, np.zeros((2, 4), np.float32))

@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2, 2), (2, 3, 5)])
def test_batchnorm_applies_the_given_statistics_per_channel(device, shape):
  x, weight, bias = randn(*shape, seed=24), randn(shape[1], seed=25), randn(shape[1], seed=26)
  mean, invstd = randn(shape[1], seed=27), np.random.default_rng(28).uniform(0.5, 2, shape[1])
  t = [Tensor(a, device=device, dtype=dtypes.float32) for a in (x, weight, bias, mean, invstd)]
  close(t[0].batchnorm(*t[1:]), np_batchnorm(x, weight, bias, mean, invstd), "normalize")

def test_batchnorm_without_weight_and_bias(device):
  x, mean, invstd = randn(2, 3, 2, seed=29), randn(3, seed=30), np.array([0.5, 1.0, 2.0])
  t = Tensor(x, device=device, dtype=dtypes.float32)
  out = t.batchnorm(None, None, Tensor(mean, device=device, dtype=dtypes.float32), Tensor(invstd, device=device, dtype=dtypes.float32))
  close(out, np_batchnorm(x, np.ones(3), np.zeros(3), mean, invstd), "normalize")

# ## one_hot

def test_one_hot_marks_the_class_of_each_label(device):
  labels = np.array([[0, 3], [2, 2], [1, 0]], dtype=np.int32)
  out = Tensor(labels, device=device).one_hot(4)
  assert out.shape == (3, 2, 4) and out.dtype == dtypes.int32
  np.testing.assert_array_equal(out.numpy(), np.eye(4, dtype=np.int32)[labels])

# ## Losses

def logits_and_labels(n, c, seed, extra=()):
  rng = np.random.default_rng(seed)
  return rng.standard_normal((n, c) + extra) * 2, rng.integers(0, c, (n,) + extra).astype(np.int32)

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_with_class_indices(device, reduction, label_smoothing):
  logits, labels = logits_and_labels(4, 5, seed=31)
  out = Tensor(logits, device=device, dtype=dtypes.float32).cross_entropy(Tensor(labels, device=device), reduction=reduction, label_smoothing=label_smoothing)
  close(out, np_cross_entropy(logits, labels, reduction, label_smoothing), "loss")

@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_with_class_probabilities(device, label_smoothing):
  logits = randn(3, 4, seed=32)
  probs = np_softmax(randn(3, 4, seed=33))
  out = Tensor(logits, device=device, dtype=dtypes.float32).cross_entropy(Tensor(probs, device=device, dtype=dtypes.float32), label_smoothing=label_smoothing)
  close(out, np_cross_entropy(logits, probs, "mean", label_smoothing), "loss")

def test_cross_entropy_takes_classes_on_axis_1_for_spatial_inputs(device):
  logits, labels = logits_and_labels(2, 3, seed=34, extra=(2, 2))
  out = Tensor(logits, device=device, dtype=dtypes.float32).cross_entropy(Tensor(labels, device=device), reduction="none")
  close(out, np_cross_entropy(logits, labels, "none"), "loss")

def test_cross_entropy_of_one_unbatched_sample(device):
  logits = randn(5, seed=35)
  out = Tensor(logits, device=device, dtype=dtypes.float32).cross_entropy(Tensor(np.int32(3), device=device))
  close(out, -np_log_softmax(logits)[3], "loss")

@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_sparse_categorical_crossentropy_averages_over_labels(device, label_smoothing):
  logits, labels = logits_and_labels(5, 4, seed=36)
  out = Tensor(logits, device=device, dtype=dtypes.float32).sparse_categorical_crossentropy(Tensor(labels, device=device), label_smoothing=label_smoothing)
  assert out.shape == ()
  close(out, np_sparse_categorical_crossentropy(logits, labels, label_smoothing=label_smoothing), "loss")

@pytest.mark.parametrize("ignore_index", [-1, 2, -100])
def test_sparse_categorical_crossentropy_skips_ignored_labels(device, ignore_index):
  logits, labels = logits_and_labels(6, 4, seed=37)
  labels[[1, 4]] = ignore_index
  out = Tensor(logits, device=device, dtype=dtypes.float32).sparse_categorical_crossentropy(Tensor(labels, device=device), ignore_index=ignore_index)
  close(out, np_sparse_categorical_crossentropy(logits, labels, ignore_index), "loss")

def test_sparse_categorical_crossentropy_over_a_sequence(device):
  logits, labels = logits_and_labels(2, 5, seed=38, extra=(3,))
  logits = np.moveaxis(logits, 1, -1)  # (batch, time, classes)
  out = Tensor(logits, device=device, dtype=dtypes.float32).sparse_categorical_crossentropy(Tensor(labels, device=device))
  close(out, np_sparse_categorical_crossentropy(logits, labels), "loss")

def test_sparse_categorical_crossentropy_with_every_label_ignored_is_zero(device):
  logits = randn(2, 3, seed=39)
  out = Tensor(logits, device=device, dtype=dtypes.float32).sparse_categorical_crossentropy(Tensor([-1, -1], device=device))
  assert out.item() == 0

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_crossentropy_of_probabilities(device, reduction):
  rng = np.random.default_rng(40)
  p, y = rng.uniform(0.05, 0.95, (3, 4)), rng.integers(0, 2, (3, 4)).astype(np.float64)
  out = Tensor(p, device=device, dtype=dtypes.float32).binary_crossentropy(Tensor(y, device=device, dtype=dtypes.float32), reduction=reduction)
  close(out, np_binary_crossentropy(p, y, reduction), "loss")

def test_binary_crossentropy_stays_finite_at_0_and_1(device):
  out = Tensor([0.0, 1.0], device=device).binary_crossentropy(Tensor([1.0, 0.0], device=device), reduction="none").numpy()
  assert np.isfinite(out).all() and (out > 20).all()

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_crossentropy_logits_matches_sigmoid_then_bce(device, reduction):
  rng = np.random.default_rng(41)
  x, y = rng.standard_normal((3, 4)) * 3, rng.uniform(0, 1, (3, 4))  # soft targets too
  out = Tensor(x, device=device, dtype=dtypes.float32).binary_crossentropy_logits(Tensor(y, device=device, dtype=dtypes.float32), reduction=reduction)
  close(out, np_binary_crossentropy_logits(x, y, reduction), "loss")

def test_binary_crossentropy_logits_is_stable_for_large_logits(device):
  out = Tensor([100.0, -100.0], device=device).binary_crossentropy_logits(Tensor([0.0, 1.0], device=device), reduction="none")
  close(out, [100.0, 100.0], "loss")

# ## Attention

def qkv(shape_q, shape_kv, seed):
  rng = np.random.default_rng(seed)
  return rng.standard_normal(shape_q), rng.standard_normal(shape_kv), rng.standard_normal(shape_kv[:-1] + (shape_kv[-1] + 1,))

def test_scaled_dot_product_attention_is_softmax_of_scaled_scores_times_values(device):
  q, k, v = qkv((2, 3, 4), (2, 5, 4), seed=42)
  t = [Tensor(a, device=device, dtype=dtypes.float32) for a in (q, k, v)]
  close(t[0].scaled_dot_product_attention(t[1], t[2]), np_scaled_dot_product_attention(q, k, v), "sum_of_products")

def test_scaled_dot_product_attention_with_a_bool_mask_keeps_the_true_positions(device):
  q, k, v = qkv((1, 2, 3, 4), (1, 2, 5, 4), seed=43)
  mask = np.random.default_rng(44).uniform(size=(3, 5)) > 0.4
  mask[:, 0] = True  # every query keeps at least one key
  t = [Tensor(a, device=device, dtype=dtypes.float32) for a in (q, k, v)]
  close(t[0].scaled_dot_product_attention(t[1], t[2], attn_mask=Tensor(mask, device=device)), np_scaled_dot_product_attention(q, k, v, mask), "sum_of_products")

def test_scaled_dot_product_attention_adds_a_float_mask(device):
  q, k, v = qkv((2, 3, 4), (2, 3, 4), seed=45)
  mask = randn(3, 3, seed=46)
  t = [Tensor(a, device=device, dtype=dtypes.float32) for a in (q, k, v, mask)]
  close(t[0].scaled_dot_product_attention(t[1], t[2], attn_mask=t[3]), np_scaled_dot_product_attention(q, k, v, mask), "sum_of_products")

def test_scaled_dot_product_attention_is_causal_hides_later_keys(device):
  q, k, v = qkv((2, 4, 3), (2, 4, 3), seed=47)
  t = [Tensor(a, device=device, dtype=dtypes.float32) for a in (q, k, v)]
  out = t[0].scaled_dot_product_attention(t[1], t[2], is_causal=True)
  close(out, np_scaled_dot_product_attention(q, k, v, is_causal=True), "sum_of_products")
  close(out[:, 0], v[:, 0], "sum_of_products")  # the first query sees only the first key
