"""Chapter 14, the JIT: a captured training step replays its kernels with new inputs, and computes what the plain step computes."""
import numpy as np
import pytest
from conftest import watching_rewrites
from tiny import Context, GlobalCounters, JitError, Tensor, TinyJit, dtypes
from tiny.nn import BatchNorm, Linear
from tiny.nn.optim import Adam
from tiny.nn.state import get_parameters

# The one tolerance table: (rtol, atol).
TOLERANCE = {
  "same_kernels": (1e-6, 1e-7),  # replayed kernels are the very kernels the plain step runs
  "reference": (1e-5, 1e-6),     # float32 results against numpy in float64
}
STEPS = 5  # call 1 runs, call 2 captures, calls 3.. replay

@pytest.fixture
def on_device(device):
  with Context(DEVICE=device): yield device  # read at use: tensors made inside go to `device`

RNG = np.random.default_rng(0)
BATCHES = [(RNG.standard_normal((6, 4)), RNG.integers(0, 3, 6)) for _ in range(STEPS)]

class MLP:
  def __init__(self, norm=False):
    self.l1, self.l2 = Linear(4, 8), Linear(8, 3)
    self.bn = BatchNorm(8) if norm else None
  def __call__(self, x):
    h = self.l1(x)
    return self.l2((self.bn(h) if self.bn else h).relu())

def train(device, jit: bool, norm=False):
  Tensor.manual_seed(1)
  model = MLP(norm)
  opt = Adam(get_parameters(model), lr=0.05)
  def step(x, y):
    opt.zero_grad()
    loss = model(x).sparse_categorical_crossentropy(y)
    loss.backward()
    opt.step()
    return loss
  step = TinyJit(step) if jit else step
  losses = []
  with Tensor.train():
    for x, y in BATCHES:
      # realized first, as TinyJit does with its inputs: then the plain step runs the very same kernels (an unrealized
      # input would fuse its cast into the first kernel, a different kernel that the optimizer may sum in another order)
      inputs = Tensor(x, device=device, dtype=dtypes.float32).realize(), Tensor(y, device=device, dtype=dtypes.int32).realize()
      losses.append(step(*inputs).item())
  return losses, model

def test_jitted_training_gives_the_same_losses_and_weights(on_device):
  eager_losses, eager = train(on_device, jit=False)
  jit_losses, jitted = train(on_device, jit=True)
  np.testing.assert_allclose(jit_losses, eager_losses, *TOLERANCE["same_kernels"])
  assert jit_losses[-1] < jit_losses[0]
  for a, b in zip(get_parameters(jitted), get_parameters(eager)): np.testing.assert_allclose(a.numpy(), b.numpy(), *TOLERANCE["same_kernels"])

def test_jitted_training_with_batchnorm_keeps_the_same_running_statistics(on_device):
  eager_losses, eager = train(on_device, jit=False, norm=True)
  jit_losses, jitted = train(on_device, jit=True, norm=True)
  np.testing.assert_allclose(jit_losses, eager_losses, *TOLERANCE["same_kernels"])
  for name in ("running_mean", "running_var"):
    np.testing.assert_allclose(getattr(jitted.bn, name).numpy(), getattr(eager.bn, name).numpy(), *TOLERANCE["same_kernels"], err_msg=name)
  assert jitted.bn.num_batches_tracked.numpy().tolist() == [STEPS]

def test_replay_launches_the_captured_kernels_without_scheduling_or_running_python(device):
  w = Tensor(RNG.standard_normal((4, 2)), device=device, dtype=dtypes.float32)
  calls = []
  @TinyJit
  def f(x):
    calls.append(1)
    return ((x @ w).relu() * 2).sum(0)
  for _ in range(2): f(Tensor(RNG.standard_normal((3, 4)), device=device, dtype=dtypes.float32))
  inputs = [Tensor(RNG.standard_normal((3, 4)), device=device, dtype=dtypes.float32).realize() for _ in range(3)]
  kernels_before = GlobalCounters.kernel_count
  with watching_rewrites() as seen:
    for x in inputs: f(x)
  assert len(calls) == 2, "the Python function ran during a replay"
  assert seen["passes"] == [], f"replays ran graph rewrites: {seen['passes']}"
  assert GlobalCounters.kernel_count > kernels_before, "replays launched no kernels"

def test_replay_outputs_follow_the_new_inputs(device):
  w = RNG.standard_normal((4, 2))
  tw = Tensor(w, device=device, dtype=dtypes.float32)
  @TinyJit
  def f(x, y): return (x @ tw + y).relu()
  for i in range(STEPS):
    x, y = RNG.standard_normal((3, 4)), RNG.standard_normal(2)
    out = f(Tensor(x, device=device, dtype=dtypes.float32), Tensor(y, device=device, dtype=dtypes.float32))
    np.testing.assert_allclose(out.numpy(), np.maximum(x @ w + y, 0), *TOLERANCE["reference"], err_msg=f"call {i + 1}")

def test_replay_takes_tensor_keyword_arguments(device):
  @TinyJit
  def f(x, *, scale): return x * scale
  for i in range(4):
    x, s = RNG.standard_normal(3), RNG.standard_normal(3)
    out = f(Tensor(x, device=device), scale=Tensor(s, device=device))
    np.testing.assert_allclose(out.numpy(), x * s, *TOLERANCE["reference"], err_msg=f"call {i + 1}")

def test_replay_draws_fresh_random_numbers(device):
  Tensor.manual_seed(2)
  @TinyJit
  def f(x): return x + Tensor.rand(8, device=device)
  outs = [f(Tensor.zeros(8, device=device).contiguous()).numpy() for _ in range(STEPS)]
  assert all((a != b).any() for i, a in enumerate(outs) for b in outs[i + 1:]), "two calls drew the same random numbers"
  assert all(((o >= 0) & (o < 1)).all() for o in outs)

@pytest.mark.parametrize("change", ["shape", "dtype"])
def test_a_replay_with_other_shapes_or_dtypes_raises_jit_error(device, change):
  @TinyJit
  def f(x): return x * 2
  for _ in range(3): f(Tensor.ones(2, 3, device=device).contiguous())
  other = Tensor.ones(3, 2, device=device).contiguous() if change == "shape" else Tensor.ones(2, 3, device=device, dtype=dtypes.int32).contiguous()
  with pytest.raises(JitError, match=r"\(3, 2\)" if change == "shape" else "int32") as e: f(other)
  assert "(2, 3)" in str(e.value) and "float32" in str(e.value), "the message names what was captured"
  assert issubclass(JitError, Exception)

def test_a_call_that_raises_leaves_the_jit_as_it_was(device):
  # a failing first call is not the warm-up, and a failing capture is not replayed: the next call does that step again
  fail, runs = [True, False, True, False], []
  @TinyJit
  def f(x):
    runs.append(1)
    y = x * 3
    if fail and fail.pop(0): raise ValueError("planted")
    return y + 1
  x = Tensor([1.0, 2.0], device=device).realize()
  # raises, warms up, raises while capturing, captures, replays, replays
  for raises, ran in [(True, 1), (False, 2), (True, 3), (False, 4), (False, 4), (False, 4)]:
    if raises:
      with pytest.raises(ValueError, match="planted"): f(x)
    else: np.testing.assert_array_equal(f(x).numpy(), [4.0, 7.0])
    assert len(runs) == ran, f"the function ran {len(runs)} times, not {ran}"

def test_jit_0_runs_the_function_every_time(device):
  calls = []
  @TinyJit
  def f(x):
    calls.append(1)
    return x + 1
  with Context(JIT=0):
    for i in range(4): np.testing.assert_array_equal(f(Tensor([float(i)], device=device)).numpy(), [i + 1.0])
  assert len(calls) == 4

def test_a_changed_number_argument_raises_jit_error_naming_it(device):
  @TinyJit
  def f(x, k): return x * k
  x = Tensor([1.0, 2.0], device=device).realize()
  np.testing.assert_array_equal(f(x, 1).numpy(), [1.0, 2.0])
  np.testing.assert_array_equal(f(x, 2).numpy(), [2.0, 4.0])  # captured with k=2
  with pytest.raises(JitError, match=r"non-tensor arguments \[\(1, 2\)\], called with \[\(1, 3\)\]"): f(x, 3)
  np.testing.assert_array_equal(f(x, 2).numpy(), [2.0, 4.0])  # the captured value still replays

def test_returned_tensors_keep_their_values_after_later_calls(device):
  @TinyJit
  def f(x): return (x * 2).sum(), x + 1
  xs = [RNG.standard_normal(4) for _ in range(STEPS)]
  outs = [f(Tensor(x, device=device, dtype=dtypes.float32)) for x in xs]
  for i, (x, (total, plus)) in enumerate(zip(xs, outs)):
    np.testing.assert_allclose(total.numpy(), (x * 2).sum(), *TOLERANCE["reference"], err_msg=f"call {i + 1}")
    np.testing.assert_allclose(plus.numpy(), x + 1, *TOLERANCE["reference"], err_msg=f"call {i + 1}")

def test_a_replay_counts_and_prints_its_kernels_like_a_realize(device, capsys):
  w = Tensor(RNG.standard_normal((4, 2)), device=device, dtype=dtypes.float32).realize()
  def step(x): return ((x @ w).relu() * 2).sum(0)
  f = TinyJit(step)
  for _ in range(2): f(Tensor(RNG.standard_normal((3, 4)), device=device, dtype=dtypes.float32))
  x = Tensor(RNG.standard_normal((3, 4)), device=device, dtype=dtypes.float32).realize()
  counts = []
  for run in (lambda: step(x).realize(), lambda: f(x)):
    capsys.readouterr()
    GlobalCounters.reset()
    with Context(DEBUG=2): run()
    lines = [line.split()[3] for line in capsys.readouterr().out.splitlines() if line.startswith("***")]
    counts.append((GlobalCounters.kernel_count, GlobalCounters.global_ops, GlobalCounters.global_mem, lines))
  assert counts[1] == counts[0] and counts[0][0] > 0, f"plain run {counts[0]}, replay {counts[1]}"
