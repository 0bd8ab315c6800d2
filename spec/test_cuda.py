"""The CUDA device: its names, copies between it and the host, and launches that cover any size.

Tests that run kernels need a GPU and skip without one, with the reason. How a kernel's loops are laid out over
the grid (`Plan` in backends/cuda.py) needs no GPU, so it is checked everywhere.
"""
import numpy as np
import pytest
import tiny
from tiny import Tensor, Device, dtypes
from conftest import available_devices

def opens(name: str) -> bool:
  try: Device[name]
  except Exception: return False
  return True

def need(name: str = "CUDA") -> None:
  try: Device[name]
  except Exception as e: pytest.skip(f"{name} does not open here: {e}")

def plan(t: Tensor):
  """The launch that the CUDA renderer plans for the one kernel computing t, optimized as get_program does, as if on an
  H200 (270,336 threads)."""
  (item,), _ = tiny.create_schedule([t.uop])
  renderer = Device.backend("CUDA").CUDARenderer(132 * 2048)
  kernel = tiny.lower(item.ast, lambda k: tiny.optimize(k, renderer, tiny.heuristic(k, renderer)))
  return Device.backend("CUDA").Plan(tiny.linearize(kernel), 132 * 2048)

def test_cuda_is_an_available_device_exactly_where_it_opens_and_then_the_default():
  assert ("CUDA" in available_devices()) == opens("CUDA")
  if not tiny.DEVICE.value: assert (Device.DEFAULT == "CUDA") == opens("CUDA")

def test_elementwise_kernels_spread_over_the_grid_innermost_loop_on_x():
  p = plan(Tensor.ones(3, 5, 1000, device="PYTHON") * 2)
  assert p.split == {} and p.launch() == {"global_size": (4, 5, 3), "local_size": (256, 1, 1)}
  big = plan(Tensor.ones(2**28, device="PYTHON") * 2)  # a grid of 16 blocks for each block the GPU holds at once
  assert big.launch() == {"global_size": (132 * 2048 // 256 * 16, 1, 1), "local_size": (256, 1, 1)}

def test_a_reduce_with_few_outputs_is_split_over_a_block_one_with_many_is_not():
  few = plan(Tensor.empty(7, 1000, device="PYTHON").sum(1))
  assert len(few.split) == 1 and few.launch() == {"global_size": (7, 1, 1), "local_size": (256, 1, 1)}
  (root, accs), = few.split.items()  # the blocked float sum's nest of loops is one flat loop
  assert len(accs) == 1 and len([r for r, (top, _) in few.lanes.items() if top is root]) >= 2
  whole = plan(Tensor.empty(2**20, device="PYTHON").sum())  # one value: the whole grid
  assert whole.grid_wide and whole.launch()["global_size"][0] >= 256
  many = plan(Tensor.empty(1024, 512, device="PYTHON") @ Tensor.empty(512, 1024, device="PYTHON"))
  assert many.split == {} and many.launch()["local_size"] == (256, 1, 1)

def test_cuda_0_is_cuda_and_a_copy_there_and_back_keeps_every_value():
  need()
  assert Tensor([1.0]).to("cuda:0").device == "CUDA"
  rng = np.random.default_rng(0)
  for dtype, values in ((dtypes.float32, rng.standard_normal(1000).astype(np.float32)), (dtypes.int64, rng.integers(-2**40, 2**40, 1000)),
                        (dtypes.float16, rng.standard_normal(1000).astype(np.float16)), (dtypes.bool, rng.integers(0, 2, 1000).astype(bool))):
    t = Tensor(values, device="PYTHON").to("CUDA")
    assert t.device == "CUDA" and t.dtype == dtype
    np.testing.assert_array_equal(t.to("PYTHON").numpy(), values)

def test_elementwise_over_many_blocks_writes_every_element():
  need()
  x = np.random.default_rng(1).standard_normal(3 * 2**20 + 5).astype(np.float32)
  np.testing.assert_array_equal((Tensor(x, device="CUDA") * 2 + 1).numpy(), x * 2 + 1)

def test_output_loops_beyond_three_axes_run_in_every_thread():
  need()
  x = np.random.default_rng(2).standard_normal((3, 4, 5, 6, 7)).astype(np.float32)
  np.testing.assert_array_equal((Tensor(x, device="CUDA").permute(4, 2, 0, 3, 1) + 1).numpy(), x.transpose(4, 2, 0, 3, 1) + 1)

def test_reduces_split_over_a_block_fold_every_element():
  need()
  rng = np.random.default_rng(3)
  ints = rng.integers(-1000, 1000, (7, 1003)).astype(np.int32)
  t = Tensor(ints, device="CUDA")
  np.testing.assert_array_equal(t.sum(1).numpy(), ints.sum(1))
  np.testing.assert_array_equal(t.max(1).numpy(), ints.max(1))
  assert Tensor(ints.ravel(), device="CUDA").sum().item() == int(ints.sum())
  x = rng.standard_normal((5, 3000)).astype(np.float32)
  np.testing.assert_allclose(Tensor(x, device="CUDA").softmax(-1).numpy(), np.exp(x) / np.exp(x).sum(1, keepdims=True), rtol=1e-5, atol=1e-7)

def test_a_matmul_with_many_outputs_matches_numpy():
  need()
  rng = np.random.default_rng(4)
  a, b = rng.standard_normal((600, 64)).astype(np.float32), rng.standard_normal((64, 600)).astype(np.float32)
  np.testing.assert_allclose((Tensor(a, device="CUDA") @ Tensor(b, device="CUDA")).numpy(), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)

def test_a_second_gpu_is_its_own_device():
  need("CUDA:1")
  x = np.arange(10, dtype=np.float32)
  t = Tensor(x, device="CUDA").to("CUDA:1")
  assert t.device == "CUDA:1"
  np.testing.assert_array_equal((t * 3).to("CUDA").numpy(), x * 3)
