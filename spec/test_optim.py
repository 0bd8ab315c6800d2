"""Chapter 17, optimizers: several steps of SGD, Adam and AdamW against numpy implementations of PyTorch's update formulas."""
import numpy as np
import pytest
from tiny import Context, Tensor, dtypes
from tiny.nn import BatchNorm, Linear
from tiny.nn.optim import SGD, Adam, AdamW
from tiny.nn.state import get_parameters

# The one tolerance table: (rtol, atol) of float32 parameters after STEPS steps against the float64 reference.
TOLERANCE = {
  "sgd": (1e-5, 1e-6),
  "adam": (1e-4, 1e-5),  # Adam divides by sqrt(v): float32 rounding of small gradients shows more
}
STEPS = 4

@pytest.fixture
def on_device(device):
  Tensor.manual_seed(0)
  with Context(DEVICE=device): yield device  # read at use: tensors made inside go to `device`

# A least-squares problem: loss = mean((x @ W + b - y)^2), whose gradient numpy computes exactly.
RNG = np.random.default_rng(0)
X, Y = RNG.standard_normal((5, 3)), RNG.standard_normal((5, 2))
W0, B0 = RNG.standard_normal((3, 2)), RNG.standard_normal(2)

def np_grads(W, b):
  r = X @ W + b - Y
  return [2 * X.T @ r / r.size, 2 * r.sum(0) / r.size]

def tiny_loss(W: Tensor, b: Tensor) -> Tensor:
  x, y = Tensor(X, device=W.device, dtype=dtypes.float32), Tensor(Y, device=W.device, dtype=dtypes.float32)
  return ((x @ W + b - y) ** 2).mean()

# PyTorch's update rules (torch.optim.SGD with dampening 0, Adam, AdamW), one step, in float64.
def np_sgd(params, grads, state, t, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
  out = []
  for i, (p, g) in enumerate(zip(params, grads)):
    g = g + weight_decay * p
    if momentum:
      state[i] = g if t == 1 else momentum * state[i] + g
      g = g + momentum * state[i] if nesterov else state[i]
    out.append(p - lr * g)
  return out

def np_adam(params, grads, state, t, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
  out = []
  for i, (p, g) in enumerate(zip(params, grads)):
    if decoupled: p = p * (1 - lr * weight_decay)
    else: g = g + weight_decay * p
    m, v = state.get(i, (0.0, 0.0))
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    state[i] = (m, v)
    out.append(p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps))
  return out

def run_both(device, make_opt, np_step, kind):
  W, b = Tensor(W0, device=device, dtype=dtypes.float32), Tensor(B0, device=device, dtype=dtypes.float32)
  opt = make_opt([W, b])
  params, state = [W0, B0], {}
  assert Tensor.training is False  # an optimizer step needs no training mode
  for t in range(1, STEPS + 1):
    opt.zero_grad()
    tiny_loss(W, b).backward()
    opt.step()
    params = np_step(params, np_grads(*params), state, t)
    for got, expected in zip((W, b), params): np.testing.assert_allclose(got.numpy(), expected, *TOLERANCE[kind], err_msg=f"step {t}")

SGD_CASES = [
  {"lr": 0.1}, {"lr": 0.1, "momentum": 0.9}, {"lr": 0.1, "momentum": 0.9, "nesterov": True},
  {"lr": 0.1, "weight_decay": 0.1}, {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.2, "nesterov": True},
]

@pytest.mark.parametrize("kw", SGD_CASES, ids=str)
def test_sgd_steps_follow_pytorch(device, kw):
  run_both(device, lambda ps: SGD(ps, **kw), lambda p, g, s, t: np_sgd(p, g, s, t, **kw), "sgd")

ADAM_CASES = [{"lr": 0.01}, {"lr": 0.05, "b1": 0.8, "b2": 0.99, "eps": 1e-6}, {"lr": 0.01, "weight_decay": 0.1}]

@pytest.mark.parametrize("kw", ADAM_CASES, ids=str)
def test_adam_steps_follow_pytorch(device, kw):
  run_both(device, lambda ps: Adam(ps, **kw), lambda p, g, s, t: np_adam(p, g, s, t, **kw), "adam")

@pytest.mark.parametrize("kw", [{"lr": 0.01}, {"lr": 0.05, "weight_decay": 0.3}], ids=str)
def test_adamw_steps_follow_pytorch_with_decoupled_weight_decay(device, kw):
  run_both(device, lambda ps: AdamW(ps, **kw), lambda p, g, s, t: np_adam(p, g, s, t, decoupled=True, **{"weight_decay": 0.01, **kw}), "adam")

def test_defaults_are_pytorchs():
  w = Tensor([1.0])
  assert SGD([w]).lr.numpy().tolist() == pytest.approx([0.001])
  adam = Adam([w])
  assert adam.lr.numpy().tolist() == pytest.approx([0.001]) and (adam.b1, adam.b2, adam.eps, adam.weight_decay) == (0.9, 0.999, 1e-8, 0.0)
  adamw = AdamW([w])
  assert adamw.weight_decay == 0.01

# ## Behaviour around the step

def test_zero_grad_clears_the_gradients(device):
  w = Tensor([1.0, 2.0], device=device, requires_grad=True)
  opt = SGD([w], lr=0.1)
  (w * w).sum().backward()
  assert w.grad is not None
  opt.zero_grad()
  assert w.grad is None

def test_step_without_gradients_names_the_parameters(device):
  w = Tensor([1.0], device=device, requires_grad=True)
  with pytest.raises(RuntimeError, match="gradient"): SGD([w], lr=0.1).step()

def test_optimizer_makes_its_parameters_require_grad(device):
  w = Tensor([1.0, 2.0], device=device)
  assert w.requires_grad is None
  opt = SGD([w], lr=0.5)
  assert w.requires_grad is True
  (w * w).sum().backward()
  opt.step()
  np.testing.assert_allclose(w.numpy(), [0.0, 0.0])

def test_a_parameter_listed_twice_is_updated_once(device):
  w = Tensor([1.0], device=device)
  opt = SGD([w, w], lr=0.25)
  (w * 2).sum().backward()
  opt.step()
  np.testing.assert_allclose(w.numpy(), [0.5])

def test_tensors_that_do_not_require_grad_are_left_alone(device):
  w, frozen = Tensor([1.0], device=device), Tensor([3.0], device=device, requires_grad=False)
  opt = SGD([w, frozen], lr=0.25)
  (w * frozen).sum().backward()
  opt.step()
  np.testing.assert_allclose(w.numpy(), [0.25])
  np.testing.assert_allclose(frozen.numpy(), [3.0])

def test_changing_the_learning_rate_tensor_changes_the_step(device):
  w = Tensor([1.0], device=device)
  opt = SGD([w], lr=0.5)
  for lr in (0.5, 0.125):
    opt.lr.assign(Tensor([lr], device=device))
    opt.zero_grad()
    (w * 2).sum().backward()
    opt.step()
  np.testing.assert_allclose(w.numpy(), [1.0 - 2 * 0.5 - 2 * 0.125])

def test_a_model_with_batchnorm_trains_with_all_its_parameters(on_device):
  # get_parameters includes BatchNorm's running statistics; the optimizer must not need gradients for them
  class Model:
    def __init__(self): self.l1, self.bn, self.l2 = Linear(3, 4), BatchNorm(4), Linear(4, 2)
    def __call__(self, x): return self.l2(self.bn(self.l1(x)).relu())
  model = Model()
  opt = Adam(get_parameters(model), lr=0.01)
  x = Tensor(X, device=on_device, dtype=dtypes.float32)
  y = Tensor([0, 1, 1, 0, 1], device=on_device, dtype=dtypes.int32)
  losses = []
  with Tensor.train():
    for _ in range(3):
      opt.zero_grad()
      loss = model(x).sparse_categorical_crossentropy(y)
      loss.backward()
      opt.step()
      losses.append(loss.item())
  assert losses[-1] < losses[0]
  assert model.bn.num_batches_tracked.numpy().tolist() == [3]
  assert (model.bn.running_mean.numpy() != 0).all() and (model.bn.running_var.numpy() != 1).all()

def test_batchnorm_running_mean_uses_the_weights_that_saw_the_batch(on_device):
  # the running statistics of step t come from the layer's weights before step t's update, as in PyTorch
  layer, bn = Linear(3, 4), BatchNorm(4)
  opt = SGD([layer.weight, layer.bias], lr=0.5)
  x = Tensor(X, device=on_device, dtype=dtypes.float32)
  expected = np.zeros(4)
  with Tensor.train():
    for _ in range(3):
      W, b = layer.weight.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)
      expected = 0.9 * expected + 0.1 * (X @ W.T + b).mean(0)
      opt.zero_grad()
      (bn(layer(x)) * Tensor([1.0, 2.0, 3.0, 4.0], device=on_device)).square().sum().backward()
      opt.step()
  np.testing.assert_allclose(bn.running_mean.numpy(), expected, *TOLERANCE["sgd"])

def test_layers_with_equal_initial_weights_keep_separate_parameters(on_device):
  from tiny.nn import LayerNorm
  ln1, ln2 = LayerNorm(3), LayerNorm(3)  # both weights start as ones(3)
  opt = SGD([ln1.weight, ln1.bias, ln2.weight, ln2.bias], lr=1.0)
  x = Tensor([[1.0, 2.0, 4.0]], device=on_device)
  opt.zero_grad()
  (ln1(x) * Tensor([1.0, 0.0, 0.0], device=on_device)).sum().backward()
  (ln2(x) * 0).sum().backward()
  opt.step()
  x0 = (1 - 7 / 3) / np.sqrt(np.var([1.0, 2.0, 4.0]) + 1e-5)
  np.testing.assert_allclose(ln1.weight.numpy(), [1 - x0, 1, 1], *TOLERANCE["sgd"])
  np.testing.assert_array_equal(ln2.weight.numpy(), np.ones(3, np.float32))

def test_training_a_parameter_that_started_as_ones_leaves_new_ones_alone(device):
  w = Tensor.ones(3, device=device)
  opt = SGD([w], lr=1.0)
  (w * Tensor([1.0, 2.0, 3.0], device=device)).sum().backward()
  opt.step()
  np.testing.assert_array_equal(w.numpy(), [0.0, -1.0, -2.0])
  np.testing.assert_array_equal(Tensor.ones(3, device=device).numpy(), np.ones(3, np.float32))
  np.testing.assert_array_equal((Tensor.ones(3, device=device) * 2).numpy(), np.full(3, 2.0, np.float32))
