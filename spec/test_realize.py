"""Chapter 12, realizing: semantics over time. A realize that fails leaves every tensor as it was or fully updated; a
tensor's value is fixed when it is built, whatever is assigned later; reading a value never loses the graph that
gradients need. References are numpy in float64."""
import os, threading
import numpy as np
import pytest
import tiny
from tiny import Device, GlobalCounters, Tensor, dtypes
from tiny.nn import Linear
from tiny.nn.optim import SGD
from tiny.nn.state import get_parameters
from conftest import check

RNG = np.random.default_rng(0)
X, Y = RNG.standard_normal((8, 5)), RNG.integers(0, 3, 8)

def failing(kernel):
  """Make one compiled kernel raise when launched; returns the function that undoes it."""
  saved = kernel.program
  def boom(*bufs): raise RuntimeError("planted failure")
  kernel.program = boom
  return lambda: setattr(kernel, "program", saved)

# ## A failing realize

def test_a_kernel_failing_after_an_assign_ran_does_not_apply_the_assign_twice(device):
  a = Tensor([1.0, 2.0], device=device).realize()
  a.assign(a + 1)
  b = a * 3  # built after the assign: reads the new value, so its kernel runs after the assign's
  items, _ = tiny.create_schedule([a.uop, b.uop])
  undo = failing(tiny.get_program(items[-1].ast, device))
  try:
    with pytest.raises(RuntimeError, match="planted failure"): Tensor.realize(a, b)
  finally: undo()
  check(a, [2.0, 3.0])  # the assign ran once: a is fully updated
  check(b, [6.0, 9.0])  # b was untouched: realizing it again reads the updated a
  check(a, [2.0, 3.0])

def test_a_failing_assign_kernel_leaves_the_assign_pending(device):
  a = Tensor([1.0, 2.0], device=device).realize()
  a.assign(a + 1)
  items, _ = tiny.create_schedule([a.uop])
  undo = failing(tiny.get_program(items[0].ast, device))
  try:
    with pytest.raises(RuntimeError, match="planted failure"): a.realize()
  finally: undo()
  check(a, [2.0, 3.0])  # a failing realize, then a good one: a+1, not a+2

def plant_compile_failure(monkeypatch, device: str, marker: str) -> None:
  """From now until monkeypatch.undo(), compiling a kernel whose source holds `marker` fails on `device`."""
  compiler = Device[device].compiler
  real = compiler.compile_cached
  def compile_cached(src):
    if marker in src: raise tiny.CompileError("planted compile failure")
    return real(src)
  monkeypatch.setattr(compiler, "compile_cached", compile_cached)

def test_a_kernel_that_fails_to_compile_stops_the_realize_before_anything_runs(device, monkeypatch):
  plant_compile_failure(monkeypatch, device, "12345")
  a = Tensor([1.0, 2.0], device=device).realize()
  a.assign(a + 1)
  b = (a * 12345.0).sum()  # compiled after the assign's kernel, and run after it
  GlobalCounters.reset()
  with pytest.raises(tiny.CompileError): Tensor.realize(a, b)
  assert GlobalCounters.kernel_count == 0, "a kernel ran before the whole schedule was compiled"
  monkeypatch.undo()
  check(a, [2.0, 3.0])
  check(b, 12345.0 * 5)

def test_the_new_kernels_of_a_schedule_compile_side_by_side(device, monkeypatch):
  compiler = Device[device].compiler
  if compiler.joins_sources and (os.cpu_count() or 1) < 2: pytest.skip("one core: the two kernels compile together, as one group")
  real, meeting = compiler.compile_cached, threading.Barrier(2, timeout=60)
  def compile_cached(src):
    meeting.wait()  # passes only when the other kernel's compile runs at the same time; alone, it breaks
    return real(src)
  monkeypatch.setattr(compiler, "compile_cached", compile_cached)
  a = Tensor([1.0, 2.0], device=device).realize()
  x, y = (a * 23456.0).contiguous(), (a + 34567.0).sum()  # two kernels no other test has
  Tensor.realize(x, y)
  check(x, [23456.0, 46912.0])
  check(y, 34568.0 + 34569.0)

def test_the_new_kernels_of_a_schedule_compile_in_one_group_per_core(device, monkeypatch):
  compiler = Device[device].compiler
  if not compiler.joins_sources: pytest.skip(f"{device} compiles each kernel alone")
  real, calls = compiler.compile_cached, []
  monkeypatch.setattr(compiler, "compile_cached", lambda src: calls.append(src) or real(src))
  a = Tensor([1.0, 2.0], device=device).realize()
  values = (67891.0, 67892.0, 67893.0, 67894.0, 67895.0)
  outs = [(a * v).contiguous() for v in values]  # five kernels no other test has
  Tensor.realize(*outs)
  assert len(calls) == min(5, os.cpu_count() or 1), f"{len(calls)} compiles for five kernels"
  assert all(sum(str(v) in src for src in calls) == 1 for v in values), "each kernel is in exactly one group"
  for out, v in zip(outs, values): check(out, [v, 2 * v])

def test_a_kernel_whose_compile_failed_compiles_again_next_time(device, monkeypatch):
  plant_compile_failure(monkeypatch, device, "45678")
  a = Tensor([1.0, 2.0], device=device).realize()
  x, y = a * 45678.0, a + 56789.0  # compiled side by side: one fails, the other is kept
  with pytest.raises(tiny.CompileError): Tensor.realize(x, y)
  monkeypatch.undo()
  check(x, [45678.0, 91356.0])
  check(y, [56790.0, 56791.0])

# ## A value is fixed when it is built

def test_a_lazy_tensor_built_before_an_assign_keeps_the_old_value(device):
  a = Tensor([1.0, 2.0, 3.0], device=device).realize()
  before = a * 2 + 1
  a.assign(a * 10).realize()
  check(before, [3.0, 5.0, 7.0])
  check(a, [10.0, 20.0, 30.0])
  check(a * 2 + 1, [21.0, 41.0, 61.0])  # built after the assign: the new value

def test_a_view_of_an_assigned_buffer_sees_the_new_values(device):
  a = Tensor([[1.0, 2.0], [3.0, 4.0]], device=device).realize()
  view = a.T
  a.assign(a + 1).realize()
  check(view, [[2.0, 4.0], [3.0, 5.0]])

def test_a_value_assigned_from_a_kept_tensor_is_that_tensors_value(device):
  a = Tensor([1.0, 2.0], device=device).realize()
  new = a + 5
  a.assign(new).realize()
  a.assign(a * 0).realize()
  check(new, [6.0, 7.0])
  check(a, [0.0, 0.0])

def numpy_mlp(w1, b1, w2, b2, x, y):
  """Loss and gradients of the tiny MLP below in float64: softmax cross-entropy of relu(x@w1.T+b1)@w2.T+b2."""
  h = x @ w1.T + b1
  r = np.maximum(h, 0)
  z = r @ w2.T + b2
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  loss = -np.log(p[np.arange(len(y)), y]).mean()
  dz = (p - np.eye(3)[y]) / len(y)
  dr = dz @ w2
  dh = dr * (h > 0)
  return loss, [dh.T @ x, dh.sum(0), dz.T @ r, dz.sum(0)]

def test_the_loss_read_after_an_optimizer_step_is_the_loss_of_the_old_weights(device):
  l1, l2 = Linear(5, 4), Linear(4, 3)
  params = get_parameters([l1, l2])
  params = [p.to(device).realize() for p in params]
  l1.weight, l1.bias, l2.weight, l2.bias = params
  old = [p.numpy().astype(np.float64) for p in params]
  opt = SGD(params, lr=0.5)
  x, y = Tensor(X, device=device, dtype=dtypes.float32), Tensor(Y, device=device, dtype=dtypes.int32)
  loss = l2(l1(x).relu()).sparse_categorical_crossentropy(y)
  loss.backward()
  opt.step()
  GlobalCounters.reset()
  expected_loss, expected_grads = numpy_mlp(*old, X, Y)
  check(loss, expected_loss)
  assert GlobalCounters.kernel_count == 0, "reading the loss ran the forward pass again"
  for p, g in zip(params, expected_grads): check(p.grad, g)  # the gradients too are those of the old weights
  for p, w, g in zip(params, old, expected_grads): check(p, w - 0.5 * g)

# ## Reading before backward

def test_reading_a_loss_before_backward_still_gives_gradients(device):
  w = Tensor(RNG.standard_normal((5, 3)), device=device, dtype=dtypes.float32, requires_grad=True)
  x = Tensor(X, device=device, dtype=dtypes.float32)
  h = (x @ w).relu()
  loss = (h * h).sum()
  h.realize()  # an intermediate read too
  value = loss.item()
  loss.backward()
  wn = w.numpy().astype(np.float64)
  hn = np.maximum(X @ wn, 0)
  assert value == pytest.approx((hn * hn).sum(), rel=1e-5)
  check(w.grad, X.T @ (2 * hn * (X @ wn > 0)))

def test_backward_with_nothing_to_give_a_gradient_to_raises(device):
  x = Tensor([1.0, 2.0], device=device)
  with pytest.raises(RuntimeError, match="requires_grad"): (x * 2).sum().backward()

def test_a_read_result_that_keeps_its_graph_for_backward_is_freed_with_its_tensor(device):
  # a read result whose graph leads to a requires_grad tensor keeps that graph for backward(), and `realized` maps the
  # graph to the result: each must not keep the other alive, or every training step's loss and inputs stay in memory
  import gc
  w = Tensor(np.ones((4, 4), np.float32), device=device, requires_grad=True)
  def step() -> float: return (Tensor(np.full((4, 4), 2, np.float32), device=device) @ w).sum().item()
  assert step() == 128
  gc.collect()
  live = len(tiny._buffers)
  for _ in range(5): assert step() == 128
  gc.collect()
  assert len(tiny._buffers) == live
