"""Chapter 16, the rest of tinygrad's nn: Conv1d, ConvTranspose1d, GroupNorm, InstanceNorm, LayerNorm2d, LSTMCell,
string padding, LAMB, and tinygrad's setting names in Context, against float64 numpy references."""
import math
import numpy as np
import pytest
from tiny import Context, Device, Tensor, dtypes
from tiny.nn import Conv1d, Conv2d, ConvTranspose1d, GroupNorm, InstanceNorm, LayerNorm2d, LSTMCell
from tiny.nn.optim import LAMB
import test_nn_ops as ref

@pytest.fixture
def on_device(device):
  Tensor.manual_seed(0)
  with Context(DEVICE=device): yield device  # read at use: tensors made inside go to `device`

def f64(t: Tensor) -> np.ndarray: return t.numpy().astype(np.float64)

def test_conv1d_is_a_conv2d_of_one_spatial_axis(on_device):
  layer = Conv1d(2, 3, 3, padding=1, stride=2)
  assert layer.weight.shape == (3, 2, 3)
  x = ref.randn(2, 2, 7, seed=1)
  expected = ref.np_conv2d(x[:, :, None, :], f64(layer.weight)[:, :, None, :], f64(layer.bias), stride=(1, 2), padding=(0, 1))[:, :, 0, :]
  ref.close(layer(Tensor(x, dtype=dtypes.float32)), expected, "sum_of_products")

def test_conv_transpose1d(on_device):
  layer = ConvTranspose1d(2, 3, 3, stride=2, padding=1, output_padding=1)
  assert layer.weight.shape == (2, 3, 3)
  x = ref.randn(1, 2, 4, seed=2)
  expected = ref.np_conv_transpose2d(x[:, :, None, :], f64(layer.weight)[:, :, None, :], f64(layer.bias), stride=(1, 2), padding=(0, 1), output_padding=(0, 1))[:, :, 0, :]
  ref.close(layer(Tensor(x, dtype=dtypes.float32)), expected, "sum_of_products")

@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv2d_layer_takes_string_padding(on_device, padding):
  layer = Conv2d(1, 2, (3, 2), padding=padding)
  x = ref.randn(1, 1, 5, 6, seed=3)
  pads = [(1, 1), (0, 1)] if padding == "same" else [(0, 0), (0, 0)]
  expected = ref.np_conv2d(np.pad(x, [(0, 0), (0, 0)] + pads), f64(layer.weight), f64(layer.bias))
  out = layer(Tensor(x, dtype=dtypes.float32))
  assert out.shape == ((1, 2, 5, 6) if padding == "same" else (1, 2, 3, 5))
  ref.close(out, expected, "sum_of_products")

def np_group_norm(x, groups, eps=1e-5):
  g = x.reshape(x.shape[0], groups, -1)
  return ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + eps)).reshape(x.shape)

@pytest.mark.parametrize("groups", [1, 2, 4])
def test_group_norm_normalizes_each_group_then_scales_per_channel(on_device, groups):
  layer = GroupNorm(groups, 4)
  layer.weight.assign(Tensor([1.0, 2.0, 0.5, -1.0])); layer.bias.assign(Tensor([0.0, 1.0, -1.0, 0.5]))
  x = ref.randn(2, 4, 3, 2, seed=4) * 3 + 1
  expected = np_group_norm(x, groups) * np.array([1.0, 2.0, 0.5, -1.0])[:, None, None] + np.array([0.0, 1.0, -1.0, 0.5])[:, None, None]
  ref.close(layer(Tensor(x, dtype=dtypes.float32)), expected, "normalize")

def test_instance_norm_and_group_norm_without_affine(on_device):
  x = ref.randn(2, 3, 5, seed=5)
  ref.close(InstanceNorm(3)(Tensor(x, dtype=dtypes.float32)), np_group_norm(x, 3), "normalize")
  layer = GroupNorm(3, 3, affine=False)
  assert layer.weight is None and layer.bias is None
  ref.close(layer(Tensor(x, dtype=dtypes.float32)), np_group_norm(x, 3), "normalize")
  with pytest.raises(ValueError, match="4 channels do not divide into 3 groups"): GroupNorm(3, 4)

def test_layernorm2d_normalizes_over_channels(on_device):
  x = ref.randn(2, 3, 4, 5, seed=6)
  expected = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
  ref.close(LayerNorm2d(3)(Tensor(x, dtype=dtypes.float32)), expected, "normalize")

def np_sigmoid(x): return 1 / (1 + np.exp(-x))

def test_lstm_cell_matches_pytorchs_equations(on_device):
  cell = LSTMCell(3, 4)
  assert cell.weight_ih.shape == (16, 3) and cell.weight_hh.shape == (16, 4) and cell.bias_ih.shape == (16,)
  assert np.abs(cell.weight_hh.numpy()).max() <= 1 / math.sqrt(4)
  x, h, c = ref.randn(2, 3, seed=7), ref.randn(2, 4, seed=8), ref.randn(2, 4, seed=9)
  gates = x @ f64(cell.weight_ih).T + f64(cell.bias_ih) + h @ f64(cell.weight_hh).T + f64(cell.bias_hh)
  i, f, g, o = np.split(gates, 4, axis=1)
  c_new = np_sigmoid(f) * c + np_sigmoid(i) * np.tanh(g)
  h_new = np_sigmoid(o) * np.tanh(c_new)
  got_h, got_c = cell(Tensor(x, dtype=dtypes.float32), (Tensor(h, dtype=dtypes.float32), Tensor(c, dtype=dtypes.float32)))
  ref.close(got_h, h_new, "normalize"); ref.close(got_c, c_new, "normalize")
  h0, c0 = cell(Tensor(x, dtype=dtypes.float32))  # no state: zeros
  assert h0.shape == c0.shape == (2, 4)
  cell_no_bias = LSTMCell(3, 4, bias=False)
  assert cell_no_bias.bias_ih is None and cell_no_bias(Tensor(x, dtype=dtypes.float32))[0].shape == (2, 4)

def np_lamb(p, g, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-6, wd=0.0):
  m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
  update = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps) + wd * p
  p_norm, u_norm = np.linalg.norm(p), np.linalg.norm(update)
  ratio = p_norm / u_norm if p_norm > 0 and u_norm > 0 else 1.0
  return p - lr * ratio * update, m, v

@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_lamb_scales_each_step_by_the_trust_ratio(on_device, wd):
  rng = np.random.default_rng(10)
  w0, target = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
  w = Tensor(w0, dtype=dtypes.float32, requires_grad=True)
  opt = LAMB([w], lr=0.1, weight_decay=wd)
  p, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
  for t in range(1, 4):
    opt.zero_grad()
    ((w - Tensor(target, dtype=dtypes.float32)) ** 2).sum().backward()
    opt.step()
    p, m, v = np_lamb(p, 2 * (p - target), m, v, t, 0.1, wd=wd)
  np.testing.assert_allclose(w.numpy(), p, rtol=1e-4, atol=1e-5)

def test_context_takes_tinygrads_setting_names():
  with Context(IMAGE=0, TC=1):  # tinygrad's machinery that tiny lacks: accepted, no effect (NOOPT and BEAM are tiny's own)
    assert (Tensor([1.0, 2.0]) * 2).tolist() == [2.0, 4.0]
  with pytest.raises(KeyError, match="NOT_A_SETTING"):
    with Context(NOT_A_SETTING=1): pass

def test_context_training_turns_on_dropout_and_batch_statistics():
  Tensor.manual_seed(1)
  x = Tensor.ones(1000, device="CPU")
  assert x.dropout(0.5).tolist() == [1.0] * 1000
  with Context(TRAINING=1):
    kept = np.array(x.dropout(0.5).tolist())
    assert set(kept) == {0.0, 2.0} and 400 < (kept == 0).sum() < 600
  assert x.dropout(0.5).tolist() == [1.0] * 1000
