"""Chapter 9: how many kernels realize() runs. Nothing runs while a graph is built; fusible work is one kernel;
stored results are reused, never recomputed. Counted with GlobalCounters.kernel_count on every device."""
import numpy as np
import pytest
from tiny import Buffer, Device, Ops, Tensor, GlobalCounters, create_schedule, dtypes
from tiny.nn.optim import SGD
from conftest import check, watching_rewrites

def kernels(*tensors: Tensor) -> int:
  """Realize the tensors and return how many kernels that ran."""
  GlobalCounters.reset()
  Tensor.realize(*tensors)
  return GlobalCounters.kernel_count

def data(shape, seed=0):
  return np.random.default_rng(seed).uniform(-2, 2, size=shape).astype(np.float32)

# ## Nothing runs before realize

def test_building_a_graph_runs_no_kernel(device):
  GlobalCounters.reset()
  a, b = Tensor(data((3, 4)), device=device), Tensor([1.0, 2.0, 3.0, 4.0], device=device)
  c = ((a * b + 1).exp().sum(1).softmax() @ Tensor.ones(3, 2, device=device)).relu()
  d = Tensor.arange(6, device=device).reshape(2, 3).T[::-1] + Tensor.zeros(3, 2, device=device, dtype=dtypes.int32)
  e = Tensor.eye(4, device=device)[1] + Tensor.linspace(0, 1, 4, device=device) + Tensor.full((4,), 2.0, device=device)
  f = a[Tensor([0, 2], device=device)].cat(a[1:], dim=0).max(0).argmax()
  g = a.detach().contiguous().var()
  assert (c.shape, d.shape, e.shape, f.shape, g.shape) == ((2,), (3, 2), (4,), (), ())
  assert GlobalCounters.kernel_count == 0

def test_making_random_tensors_runs_no_kernel(device):
  Tensor.manual_seed(5)
  GlobalCounters.reset()
  r = Tensor.rand(4, device=device) + Tensor.randn(2, 2, device=device).flatten() + Tensor.uniform(4, low=-1, high=1, device=device)
  r = r + Tensor.rand(4, device=device)  # a second call on the same device
  assert r.shape == (4,)
  assert GlobalCounters.kernel_count == 0

def test_moving_a_lazy_tensor_to_another_device_runs_no_kernel():
  GlobalCounters.reset()
  t = (Tensor([1.0, 2.0], device="PYTHON") * 3).to("CPU") + 1
  assert t.device == "CPU" and GlobalCounters.kernel_count == 0

def test_a_failed_op_runs_no_kernel_either(device):
  GlobalCounters.reset()
  with pytest.raises(ValueError): Tensor.ones(2, 3, device=device) + Tensor.ones(4, device=device)
  assert GlobalCounters.kernel_count == 0

# ## Fusion: one kernel where one loop nest does it

def test_chain_of_elementwise_ops_is_one_kernel(device):
  a, b = Tensor(data((3, 5)), device=device), Tensor(data((3, 5), 1), device=device)
  out = ((a + 1) * b - 2).exp2().maximum(a).sqrt().where(a > 0, b) / 3
  assert kernels(out) == 1

def test_broadcast_and_movement_inside_an_elementwise_chain_is_one_kernel(device):
  a, b = Tensor(data((3, 5)), device=device), Tensor(data((5,), 1), device=device)
  out = (a.T.flip(0)[1:, ::2] * b[1:].reshape(4, 1) + a[0, :2]).pad(((1, 0), None)).relu()
  assert kernels(out) == 1

def test_long_chain_of_elementwise_ops_is_one_kernel(device):
  x = Tensor([0.5], device=device)
  out = x
  for i in range(300): out = out * 1.001 + (0.001 if i % 2 else -0.001)
  assert kernels(out) == 1

def test_multiply_add_sum_is_one_kernel(device):
  a, b, c = (Tensor(data((4, 3), s), device=device) for s in range(3))
  assert kernels(((a * b) + c).sum()) == 1
  assert kernels(((a * b) + c).sum(1)) == 1

def test_reduce_followed_by_elementwise_is_one_kernel(device):
  a = Tensor(data((4, 3)), device=device)
  assert kernels((a.sum(1) * 2 + 1).sqrt()) == 1
  assert kernels(a.max() + a.min()) == 1

def test_softmax_over_one_axis_is_at_most_three_kernels(device):
  a = Tensor(data((3, 5)), device=device)
  for out in [a.softmax(), a.softmax(0), a.log_softmax(), a.logsumexp(1)]:
    n = kernels(out)
    assert 1 <= n <= 3, n

def test_matmul_is_one_kernel(device):
  a, b = Tensor(data((3, 4)), device=device), Tensor(data((4, 5), 1), device=device)
  assert kernels(a @ b) == 1
  assert kernels(a.T.matmul(Tensor(data((3, 2)), device=device))) == 1
  assert kernels(Tensor(data((2, 3, 4)), device=device) @ Tensor(data((4,)), device=device)) == 1
  assert kernels((a @ b).relu() + 1) == 1

def test_reduce_used_at_every_element_is_stored_once(device):
  a = Tensor(data((3, 5)), device=device)
  assert kernels(a - a.mean(1, keepdim=True)) == 2  # the mean, then the subtraction reading it

def test_reduce_inside_a_reduce_is_one_kernel(device):
  a = Tensor(data((3, 4, 5)), device=device)
  out = (a.sum(2).exp() * 0.5).sum(1)  # each trip of the outer sum computes another inner sum: nothing is recomputed
  assert kernels(out) == 1
  check(out, (np.exp(data((3, 4, 5)).astype(np.float64).sum(2)) * 0.5).sum(1))

def test_a_padded_input_read_by_a_conv_is_stored_once_and_read_unguarded(device):
  x, w = data((2, 3, 5, 5)), data((4, 3, 3, 3), 1)
  tx, tw = Tensor(x, device=device, requires_grad=True), Tensor(w, device=device, requires_grad=True)
  out = tx.conv2d(tw, padding=1)
  items, _ = create_schedule([out.uop])
  reduce_kernel = next(i.ast for i in items if any(u.op is Ops.REDUCE_AXIS for u in i.ast.toposort()))
  assert not any(u.op is Ops.PAD for u in reduce_kernel.toposort())  # the padding is in memory, not tested at each read
  (out * Tensor(data((2, 4, 5, 5), 2), device=device)).sum().backward()
  # the padded input (shared by the output and the weight gradient), the output, the weight gradient, and the input
  # gradient: conv2d's own, a transposed convolution, so the incoming gradient padded, then convolved
  assert kernels(out, tx.grad, tw.grad) == 5
  xp, g = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1))), data((2, 4, 5, 5), 2).astype(np.float64)
  windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # (n, c, y, x, ky, kx)
  check(out, np.einsum("ncyxij,ocij->noyx", windows, w))
  check(tw.grad, np.einsum("ncyxij,noyx->ocij", windows, g))
  gp = np.pad(g, ((0, 0), (0, 0), (1, 1), (1, 1)))
  check(tx.grad, np.einsum("noyxij,ocij->ncyx", np.lib.stride_tricks.sliding_window_view(gp, (3, 3), axis=(2, 3)), w[:, :, ::-1, ::-1]))

def test_movement_of_a_stored_tensor(device):
  a = Tensor(data((3, 4)), device=device).realize()
  assert kernels(a.reshape(2, 6)) == 0  # a reshape of a stored buffer is already in memory in order
  assert kernels(a.T) == 1               # a transpose must be stored in the new order

def test_contiguous_is_a_kernel_boundary(device):
  a = Tensor(data((3, 4)), device=device)
  assert kernels((a * 2).contiguous() + 1) == 2
  assert kernels(a.contiguous()) == 0  # already stored

def test_empty_tensors_run_no_kernel(device):
  assert kernels(Tensor.zeros(0, 3, device=device) + 1) == 0

def test_random_numbers_are_one_kernel(device):
  Tensor.manual_seed(0)
  assert kernels(Tensor.rand(2, 3, device=device)) == 1

# ## Stored results are reused

def test_realized_tensor_is_not_recomputed(device):
  a = Tensor(data((3, 4)), device=device)
  b = (a * 2).realize()
  assert kernels(b) == 0
  c = b + 1
  assert kernels(c) == 1
  check(c, data((3, 4)).astype(np.float64) * 2 + 1)

def test_graph_built_before_realize_reads_the_stored_result(device):
  a = Tensor(data((3, 4)), device=device)
  b = (a * 2).exp().sum(1)
  c = b + 1            # built while b is still lazy
  d = (b * b).max()    # a second user of lazy b
  assert kernels(b) == 1
  assert kernels(c) == 1  # only the addition: b's reduce is read back, not recomputed
  assert kernels(d) == 1
  expected_b = np.exp(data((3, 4)).astype(np.float64) * 2).sum(1)
  check(c, expected_b + 1)
  check(d, (expected_b * expected_b).max())

def test_shared_subexpression_realized_together(device):
  a = Tensor(data((3, 4)), device=device)
  s = a.sum(1, keepdim=True)
  x, y = a - s, a + s
  assert kernels(x, y) == 3  # s once, then each output
  check(x, data((3, 4)) - data((3, 4)).astype(np.float64).sum(1, keepdims=True))

def test_realizing_twice_runs_nothing_the_second_time(device):
  out = Tensor(data((3, 4)), device=device).exp().sum()
  assert kernels(out) == 1
  assert kernels(out) == 0

def test_assign_is_one_kernel_and_keeps_the_buffer(device):
  w = Tensor(data((3, 4)), device=device).realize()
  g = Tensor(data((3, 4), 1), device=device)
  w.assign(w - 0.1 * g)  # not inside the assert: pytest would keep `w - 0.1 * g` alive, and a live tensor keeps its value
  assert kernels(w) == 1
  check(w, data((3, 4)).astype(np.float64) - 0.1 * data((3, 4), 1))

def test_copy_to_another_device_is_not_a_kernel():
  a = Tensor(data((3, 4)), device="PYTHON")
  assert kernels(a.to("CPU")) == 0
  assert kernels((a + 1).to("CPU")) == 1  # the addition runs on PYTHON, then bytes are copied

# ## A training step: nothing computed twice, nothing done twice

def mlp_step(device):
  """An MLP training step (784-256-10, batch 128, SGD; 64-32-3, batch 32, on the slow PYTHON interpreter) and its sizes."""
  n, d, h, k = (32, 64, 32, 3) if device == "PYTHON" else (128, 784, 256, 10)
  rng = np.random.default_rng(0)
  x = Tensor(rng.standard_normal((n, d)), device=device, dtype=dtypes.float32)
  y = Tensor(rng.integers(0, k, n), device=device, dtype=dtypes.int32)
  w1 = Tensor(rng.standard_normal((d, h)) * 0.05, device=device, dtype=dtypes.float32, requires_grad=True)
  w2 = Tensor(rng.standard_normal((h, k)) * 0.05, device=device, dtype=dtypes.float32, requires_grad=True)
  opt = SGD([w1, w2], lr=0.01)
  def step():
    opt.zero_grad()
    loss = (x @ w1).relu().matmul(w2).sparse_categorical_crossentropy(y)
    loss.backward()
    opt.step()
    return loss
  return step, (n, d, h, k)

def test_a_training_step_computes_each_matmul_once(device):
  step, (n, d, h, k) = mlp_step(device)
  step()
  x, w = Tensor.ones(n, d, device=device).contiguous().realize(), Tensor.ones(d, h, device=device).contiguous().realize()
  GlobalCounters.reset()
  (x @ w).realize()
  product = GlobalCounters.global_ops  # one n*d*h product, as the kernels count their work (index arithmetic included)
  GlobalCounters.reset()
  step()
  # x@w1 and dw1 = x.T@dh are n*d*h products; everything else (the small products, the elementwise work) is far
  # below half of one. Computing x@w1 a second time, in the backward pass, would add a whole product.
  assert GlobalCounters.global_ops < 2.5 * product, f"{GlobalCounters.global_ops} ops, one product is {product}: a reduce ran twice"
  assert GlobalCounters.kernel_count <= 30, f"{GlobalCounters.kernel_count} kernels"  # 30 when this was written

def test_a_loss_read_before_the_step_leaves_each_matmul_computed_once(device):
  n, d, h = (32, 64, 32) if device == "PYTHON" else (128, 784, 256)
  rng = np.random.default_rng(0)
  x = Tensor(rng.standard_normal((n, d)), device=device, dtype=dtypes.float32)
  w1 = Tensor(rng.standard_normal((d, h)) * 0.05, device=device, dtype=dtypes.float32, requires_grad=True)
  ones = Tensor.ones(n, d, device=device).contiguous().realize()
  GlobalCounters.reset()
  (ones @ Tensor.ones(d, h, device=device).contiguous().realize()).realize()
  product = GlobalCounters.global_ops
  GlobalCounters.reset()
  loss = (x @ w1).relu().sum()
  loss.backward()
  loss.realize()  # the gradient reads x @ w1 too (the relu's mask): this realize stores the product for it
  SGD([w1], lr=0.01).step()
  assert GlobalCounters.global_ops < 2.5 * product, f"{GlobalCounters.global_ops} ops, one product is {product}: a reduce ran twice"

def test_a_second_identical_step_schedules_lowers_and_compiles_nothing(device):
  step, _ = mlp_step(device)
  step(); step()
  with watching_rewrites() as seen: step()
  scheduling = [p for p in seen["passes"] if p not in ("buffers to placeholders", "stored results to their graphs")]
  assert scheduling == [] and seen["kernels"] == [], f"the third step ran {scheduling} and compiled {seen['kernels']}"

def test_a_freed_buffer_is_reused_by_the_next_buffer_of_its_size(device):
  b = Buffer(device, 1000, dtypes.float32)
  block = b.block
  del b
  assert Buffer(device, 1000, dtypes.float32).block is block
  assert Buffer(device, 999, dtypes.float32).block is not block

def test_a_second_identical_step_allocates_no_fresh_memory(device, monkeypatch):
  step, _ = mlp_step(device)
  step(); step()
  allocator, fresh = Device[device].allocator, []
  real = allocator._alloc
  monkeypatch.setattr(allocator, "_alloc", lambda nbytes: fresh.append(nbytes) or real(nbytes))
  step()
  assert fresh == [], f"the third step allocated {fresh} bytes afresh instead of reusing freed blocks"
