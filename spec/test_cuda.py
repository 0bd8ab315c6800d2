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

def program(t: Tensor) -> list:
  """The one kernel computing t, optimized as get_program does for an H200 (270,336 threads), in order."""
  (item,), _ = tiny.create_schedule([t.uop])
  renderer = Device.backend("CUDA").CUDARenderer(132 * 2048)
  return tiny.linearize(tiny.lower(item.ast, lambda k: tiny.optimize(k, renderer, renderer.choose_opts(k))))

def plan(t: Tensor):
  """The launch that the CUDA renderer plans for that kernel."""
  return Device.backend("CUDA").Plan(program(t), 132 * 2048)

def source(t: Tensor) -> str:
  """The kernel's CUDA source, after the helper routines that every kernel's source begins with."""
  src = Device.backend("CUDA").CUDARenderer(132 * 2048).render("k", program(t))
  return src[src.index('extern "C"'):]

def test_cuda_is_an_available_device_exactly_where_it_opens_and_then_the_default():
  assert ("CUDA" in available_devices()) == opens("CUDA")
  if not tiny.DEVICE.value: assert (Device.DEFAULT == "CUDA") == opens("CUDA")

def test_elementwise_kernels_spread_over_the_grid_innermost_loop_on_x():
  p = plan(Tensor.ones(3, 5, 1001, device="PYTHON") * 2)
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
  many = plan(Tensor.empty(1024, 512, device="PYTHON") @ Tensor.empty(512, 1024, device="PYTHON"))  # tiles of 2x4 outputs
  assert many.split == {} and many.launch() == {"global_size": (1, 512, 1), "local_size": (256, 1, 1)}

def test_four_copies_of_neighbouring_aligned_elements_move_as_one_float4():
  x = Tensor.empty(3, 1000, device="PYTHON")
  src = source(x * 2)  # a thread takes 4 neighbouring elements: one 16-byte load, one 16-byte store
  assert src.count("*(const float4*)&data1[") == 1 and src.count("*(float4*)&data0[") == 1 and "make_float4(" in src
  src = source(x[:, 1:997] * 2)  # loads start one element past a multiple of 4: only the store is aligned
  assert "const float4" not in src and "*(float4*)&data0[" in src
  whole = source(Tensor.empty(2**20, device="PYTHON").sum())  # a sum's threads read 16 neighbouring bytes at a time
  assert whole.count("*(const float4*)&data1[") == 1
  mm = source(Tensor.empty(512, 512, device="PYTHON") @ Tensor.empty(512, 512, device="PYTHON"))
  assert mm.count("*(const float4*)&data2[") == 1 and mm.count("make_float4(") == 2  # a 2x4 tile: 512x512 outputs are few

def test_a_plain_matrix_product_with_enough_tiles_is_one_mma_per_128x128_tile():
  h = lambda *shape: Tensor.empty(*shape, dtype=dtypes.float16, device="PYTHON")
  p = plan(h(2048, 256) @ h(256, 1536))  # 16x12 tiles, a block each
  assert p.tiled and p.launch() == {"global_size": (12, 16, 1), "local_size": (256, 1, 1)}
  src = source(h(2048, 256) @ h(256, 1536))
  assert src.count("matmul_tile(&data0[") == 1 and ", 256, 256, 1536, 1536);" in src  # K, and the rows of A, B and C
  f = lambda *shape: Tensor.empty(*shape, device="PYTHON")
  assert "matmul_tile(" in source(f(2048, 64) @ f(64, 2048))  # float32 too, with fused multiply-adds
  for not_tiled in (f(1024, 64) @ f(64, 1024),   # 64 tiles: fewer than the GPU's 132 multiprocessors
                    f(2048, 64) @ f(2048, 64).T,  # B runs along K: not row-major
                    f(2048, 68)[:, 1:65] @ f(64, 2048),  # rows of A start off 16-byte boundaries
                    (f(2048, 64) @ f(64, 2048)).relu(),  # something after the product
                    Tensor.empty(2048, 64, dtype=dtypes.int32, device="PYTHON") @ Tensor.empty(64, 2048, dtype=dtypes.int32, device="PYTHON")):
    assert not plan(not_tiled).tiled

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
  y = x[:2**21].reshape(2**9, 2**12)
  np.testing.assert_array_equal((Tensor(y, device="CUDA")[:, 1:4093] * 2).numpy(), y[:, 1:4093] * 2)  # not 16-byte aligned

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

def test_matrix_products_in_tiles_match_numpy_also_from_views():
  need()
  rng = np.random.default_rng(5)
  for dtype, tolerance in ((np.float16, {"rtol": 1e-3, "atol": 1e-2}), (np.float32, {"rtol": 1e-5, "atol": 1e-4})):
    a, b = rng.standard_normal((3, 1536, 200)).astype(dtype), rng.standard_normal((160, 2048)).astype(dtype)
    x, y = Tensor(a, device="CUDA")[1, :, 8:168], Tensor(b, device="CUDA")  # A a view: its rows start 8 elements in
    got = (x @ y).numpy().astype(np.float64)
    np.testing.assert_allclose(got, a[1, :, 8:168].astype(np.float64) @ b, **tolerance)

def test_a_second_gpu_is_its_own_device():
  need("CUDA:1")
  x = np.arange(10, dtype=np.float32)
  t = Tensor(x, device="CUDA").to("CUDA:1")
  assert t.device == "CUDA:1"
  np.testing.assert_array_equal((t * 3).to("CUDA").numpy(), x * 3)
