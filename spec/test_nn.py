"""Chapter 17, nn layers: shapes, initialization and forward passes against numpy, BatchNorm's statistics, training mode."""
import math
import numpy as np
import pytest
from tiny import Context, Tensor, dtypes
from tiny.nn import BatchNorm, Conv2d, ConvTranspose2d, Embedding, LayerNorm, Linear, RMSNorm
from test_nn_ops import np_conv2d, np_conv_transpose2d, np_layernorm

# The one tolerance table: (rtol, atol) of a float32 layer output against the float64 reference.
TOLERANCE = {
  "sum_of_products": (1e-5, 1e-5),  # Linear, Conv2d, ConvTranspose2d
  "normalize": (1e-4, 1e-5),        # BatchNorm, LayerNorm, RMSNorm and running statistics
}

@pytest.fixture
def on_device(device):
  """Make `device` the default, so layers create their tensors there."""
  Tensor.manual_seed(0)
  with Context(DEVICE=device): yield device  # read at use: tensors made inside go to `device`

def randn(*shape, seed=0): return np.random.default_rng(seed).standard_normal(shape)
def close(t: Tensor, expected, kind: str) -> None:
  expected = np.asarray(expected, dtype=np.float64)
  assert t.shape == expected.shape, f"shape {t.shape}, expected {expected.shape}"
  np.testing.assert_allclose(t.numpy().astype(np.float64), expected, *TOLERANCE[kind])
def f32(a, device): return Tensor(np.asarray(a), device=device, dtype=dtypes.float32)

# ## Imports under tinygrad's module names

def test_nn_modules_import_as_in_tinygrad():
  import tiny
  from tiny.nn import Linear as L, BatchNorm2d
  from tiny.nn.optim import SGD, Adam, AdamW, Optimizer
  from tiny.nn.state import safe_save, safe_load, get_state_dict, get_parameters, load_state_dict
  from tiny.datasets import mnist
  import tiny.nn.optim, tiny.nn.state
  assert L is tiny.Linear and BatchNorm2d is tiny.BatchNorm and tiny.nn.optim.SGD is SGD and tiny.nn.state.safe_save is safe_save and mnist is tiny.mnist
  assert (SGD, Adam, AdamW, Optimizer) == (tiny.SGD, tiny.Adam, tiny.AdamW, tiny.Optimizer)
  assert (safe_save, safe_load, get_state_dict, get_parameters, load_state_dict) == \
         (tiny.safe_save, tiny.safe_load, tiny.get_state_dict, tiny.get_parameters, tiny.load_state_dict)

# ## Linear

def test_linear_weight_is_out_by_in_and_initialized_like_pytorch(on_device):
  layer = Linear(50, 30)
  w, b = layer.weight.numpy(), layer.bias.numpy()
  assert layer.weight.shape == (30, 50) and layer.bias.shape == (30,)
  assert layer.weight.dtype == dtypes.float32 and layer.weight.device == on_device
  bound = 1 / math.sqrt(50)
  assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
  assert w.std() > bound / 3  # spread over the range, not a constant
  assert abs(w.mean()) < bound / 5

def test_linear_computes_x_times_weight_transposed_plus_bias(on_device):
  layer = Linear(4, 3)
  x = randn(2, 5, 4, seed=1)
  close(layer(f32(x, on_device)), x @ layer.weight.numpy().T.astype(np.float64) + layer.bias.numpy(), "sum_of_products")

def test_linear_without_bias(on_device):
  layer = Linear(4, 3, bias=False)
  assert layer.bias is None
  x = randn(2, 4, seed=2)
  close(layer(f32(x, on_device)), x @ layer.weight.numpy().T.astype(np.float64), "sum_of_products")

# ## Convolutions

@pytest.mark.parametrize("kw", [{}, {"stride": 2, "padding": 1}, {"dilation": 2}, {"groups": 2, "padding": 1}], ids=str)
def test_conv2d_layer_matches_the_reference(on_device, kw):
  layer = Conv2d(4, 6, 3, **kw)
  assert layer.weight.shape == (6, 4 // kw.get("groups", 1), 3, 3) and layer.bias.shape == (6,)
  x = randn(2, 4, 6, 6, seed=3)
  w, b = layer.weight.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)
  close(layer(f32(x, on_device)), np_conv2d(x, w, b, **kw), "sum_of_products")

def test_conv2d_init_bound_is_1_over_sqrt_fan_in(on_device):
  layer = Conv2d(6, 8, (3, 2), groups=2)
  assert layer.weight.shape == (8, 3, 3, 2)
  bound = 1 / math.sqrt(3 * 3 * 2)
  assert np.abs(layer.weight.numpy()).max() <= bound and np.abs(layer.bias.numpy()).max() <= bound
  assert layer.weight.numpy().std() > bound / 3

def test_conv2d_without_bias(on_device):
  layer = Conv2d(2, 3, 2, bias=False)
  assert layer.bias is None
  x = randn(1, 2, 3, 3, seed=4)
  close(layer(f32(x, on_device)), np_conv2d(x, layer.weight.numpy().astype(np.float64)), "sum_of_products")

@pytest.mark.parametrize("kw", [{}, {"stride": 2, "padding": 1, "output_padding": 1}, {"groups": 2, "dilation": 2}], ids=str)
def test_conv_transpose2d_layer_matches_the_reference(on_device, kw):
  layer = ConvTranspose2d(4, 6, 3, **kw)
  assert layer.weight.shape == (4, 6 // kw.get("groups", 1), 3, 3) and layer.bias.shape == (6,)
  x = randn(1, 4, 3, 3, seed=5)
  w, b = layer.weight.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)
  close(layer(f32(x, on_device)), np_conv_transpose2d(x, w, b, **kw), "sum_of_products")

# ## BatchNorm

def np_batch_stats(x):
  axes = tuple(i for i in range(x.ndim) if i != 1)
  n = x.size // x.shape[1]
  return x.mean(axes), x.var(axes), x.var(axes) * n / (n - 1)

def bn_reference(x, mean, var, weight, bias, eps=1e-5):
  shape = (1, -1) + (1,) * (x.ndim - 2)
  return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * weight.reshape(shape) + bias.reshape(shape)

@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 2, 2)])
def test_batchnorm_training_normalizes_with_batch_statistics_and_updates_running_ones_like_pytorch(on_device, shape):
  bn = BatchNorm(shape[1])
  bn.weight, bn.bias = f32(randn(shape[1], seed=6), on_device), f32(randn(shape[1], seed=7), on_device)
  running_mean, running_var = np.zeros(shape[1]), np.ones(shape[1])
  for step in range(2):
    x = randn(*shape, seed=8 + step) * 2 + 1
    with Tensor.train(): out = bn(f32(x, on_device))
    mean, biased, unbiased = np_batch_stats(x)
    close(out, bn_reference(x, mean, biased, bn.weight.numpy(), bn.bias.numpy()), "normalize")
    running_mean, running_var = 0.9 * running_mean + 0.1 * mean, 0.9 * running_var + 0.1 * unbiased  # PyTorch: momentum 0.1, unbiased var
    close(bn.running_mean, running_mean, "normalize")
    close(bn.running_var, running_var, "normalize")
    assert bn.num_batches_tracked.numpy().tolist() == [step + 1]

def test_batchnorm_eval_uses_the_running_statistics(on_device):
  bn = BatchNorm(3)
  x = randn(4, 3, seed=10) * 3
  with Tensor.train(): bn(f32(x, on_device)).realize()
  rm, rv = bn.running_mean.numpy().astype(np.float64), bn.running_var.numpy().astype(np.float64)
  x2 = randn(2, 3, seed=11)
  out = bn(f32(x2, on_device))
  close(out, bn_reference(x2, rm, rv, np.ones(3), np.zeros(3)), "normalize")
  np.testing.assert_array_equal(bn.running_mean.numpy(), rm.astype(np.float32))  # eval does not update them
  assert bn.num_batches_tracked.numpy().tolist() == [1]

def test_batchnorm_momentum_is_configurable(on_device):
  bn = BatchNorm(2, momentum=0.5)
  x = randn(5, 2, seed=12)
  with Tensor.train(): bn(f32(x, on_device)).realize()
  mean, _, unbiased = np_batch_stats(x)
  close(bn.running_mean, 0.5 * mean, "normalize")
  close(bn.running_var, 0.5 + 0.5 * unbiased, "normalize")

def test_batchnorm_without_affine_has_no_weight_or_bias(on_device):
  bn = BatchNorm(3, affine=False)
  assert bn.weight is None and bn.bias is None
  x = randn(4, 3, seed=13)
  with Tensor.train(): out = bn(f32(x, on_device))
  mean, biased, _ = np_batch_stats(x)
  close(out, bn_reference(x, mean, biased, np.ones(3), np.zeros(3)), "normalize")

def test_batchnorm_without_running_stats_uses_batch_statistics_in_eval_too(on_device):
  # as in PyTorch and tinygrad: with track_running_stats=False there are no running statistics to use
  bn = BatchNorm(3, track_running_stats=False)
  x = randn(4, 3, seed=14) * 2 + 3
  mean, biased, _ = np_batch_stats(x)
  close(bn(f32(x, on_device)), bn_reference(x, mean, biased, np.ones(3), np.zeros(3)), "normalize")

def test_batchnorm2d_is_batchnorm():
  from tiny.nn import BatchNorm2d
  assert BatchNorm2d is BatchNorm

# ## LayerNorm, RMSNorm, Embedding

def test_layernorm_normalizes_the_last_axis_then_scales_and_shifts(on_device):
  ln = LayerNorm(4)
  assert ln.weight.shape == (4,) and ln.bias.shape == (4,)
  np.testing.assert_array_equal(ln.weight.numpy(), np.ones(4, np.float32))
  np.testing.assert_array_equal(ln.bias.numpy(), np.zeros(4, np.float32))
  w, b = randn(4, seed=15), randn(4, seed=16)
  ln.weight, ln.bias = f32(w, on_device), f32(b, on_device)
  x = randn(2, 3, 4, seed=17) * 2 + 1
  close(ln(f32(x, on_device)), np_layernorm(x, -1) * w + b, "normalize")

def test_layernorm_over_several_trailing_axes_with_eps(on_device):
  ln = LayerNorm((3, 4), eps=1e-2)
  assert ln.weight.shape == (3, 4)
  x = randn(2, 3, 4, seed=18)
  close(ln(f32(x, on_device)), np_layernorm(x, (1, 2), eps=1e-2), "normalize")

def test_layernorm_without_affine(on_device):
  ln = LayerNorm(5, elementwise_affine=False)
  assert ln.weight is None and ln.bias is None
  x = randn(3, 5, seed=19)
  close(ln(f32(x, on_device)), np_layernorm(x), "normalize")

def test_layernorm_names_the_shapes_when_the_input_does_not_fit(on_device):
  with pytest.raises(ValueError, match=r"\(2, 3\)"): LayerNorm(4)(Tensor.ones(2, 3))

def test_rmsnorm_divides_by_the_root_mean_square_then_scales(on_device):
  norm = RMSNorm(4, eps=1e-6)
  np.testing.assert_array_equal(norm.weight.numpy(), np.ones(4, np.float32))
  w = randn(4, seed=20)
  norm.weight = f32(w, on_device)
  x = randn(2, 3, 4, seed=21)
  close(norm(f32(x, on_device)), x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6) * w, "normalize")

def test_embedding_looks_up_rows_of_its_weight(on_device):
  emb = Embedding(6, 3)
  assert emb.weight.shape == (6, 3) and emb.vocab_size == 6
  idx = np.array([[5, 0, 5], [2, 2, 1]], np.int32)
  out = emb(Tensor(idx, device=on_device))
  assert out.shape == (2, 3, 3)
  np.testing.assert_array_equal(out.numpy(), emb.weight.numpy()[idx])

def test_embedding_weight_is_standard_normal(on_device):
  w = Embedding(100, 20).weight.numpy()
  assert abs(w.mean()) < 0.1 and abs(w.std() - 1) < 0.1

# ## Training mode

def test_training_is_off_by_default_and_train_turns_it_on_for_a_block():
  assert Tensor.training is False
  with Tensor.train():
    assert Tensor.training is True
    with Tensor.train(False): assert Tensor.training is False
    assert Tensor.training is True
  assert Tensor.training is False

def test_train_as_a_decorator_and_restored_after_an_error():
  @Tensor.train()
  def inside(): return Tensor.training
  assert inside() is True and Tensor.training is False
  with pytest.raises(RuntimeError):
    with Tensor.train(): raise RuntimeError("boom")
  assert Tensor.training is False

def test_training_mode_changes_only_dropout_and_batchnorm(on_device):
  lin, ln, conv = Linear(8, 4), LayerNorm(4), Conv2d(1, 2, 3, padding=1)
  x = f32(randn(2, 1, 4, 4, seed=22), on_device)
  def model(): return ln(lin(conv(x).relu().max_pool2d(2).flatten(1)).gelu())
  eval_out = model().numpy()
  with Tensor.train(): train_out = model().numpy()
  np.testing.assert_array_equal(train_out, eval_out)
