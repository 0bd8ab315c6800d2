"""Chapter 11, optimizing: the opts change how a kernel runs, never what it computes; NOOPT=1 keeps plain loops;
float sums are as accurate as numpy's; rendered source grows linearly with the length of a chain of ops."""
import copy
import numpy as np
import pytest
import tiny
from tiny import Context, Device, Opt, OptError, Tensor, dtypes
from conftest import check

RNG = np.random.default_rng(0)
def rand(*shape) -> np.ndarray: return RNG.uniform(-2, 2, shape).astype(np.float32)

def source_of(out: Tensor, device: str) -> str:
  """The source of the last kernel that computes `out`."""
  items, _ = tiny.create_schedule([out.uop])
  return tiny.get_program(items[-1].ast, device).src

# Workloads big enough for the heuristic to upcast, unroll and thread, with sizes that do not divide evenly.
A, B, X, W, C, D = rand(32, 48), rand(48, 40), rand(4, 3, 10, 10), rand(8, 3, 3, 3), rand(64, 64), rand(64, 64)
G = rand(4, 8, 10, 10)
I = RNG.integers(-10, 10, (64, 64)).astype(np.int32)
WORKLOADS = {
  "matmul": (lambda t: t(A) @ t(B), lambda: A.astype(np.float64) @ B),
  "matmul by a transpose": (lambda t: t(A) @ t(B.T.copy()).T, lambda: A.astype(np.float64) @ B),
  "matmul then relu": (lambda t: (t(A) @ t(B)).relu(), lambda: np.maximum(A.astype(np.float64) @ B, 0)),
  "conv2d": (lambda t: t(X).conv2d(t(W), padding=1), None),
  "conv2d input gradient": (lambda t: conv_input_gradient(t, X, W, G), None),
  "softmax": (lambda t: t(A).softmax(1), lambda: np.exp(A - A.max(1, keepdims=True)) / np.exp(A - A.max(1, keepdims=True)).sum(1, keepdims=True)),
  "sum of 34 rows (padded blocks)": (lambda t: t(np.ones((34, 40), np.float32)).sum(0), lambda: np.full(40, 34.0)),
  "int max over 4096": (lambda t: t(np.arange(4096, dtype=np.int32) % 1000).max(), lambda: np.int32(999)),
  "elementwise with where and exp": (lambda t: (t(C) > 0).where(t(D).exp(), 1.5), lambda: np.where(C > 0, np.exp(D.astype(np.float64)), 1.5)),
  # lanes with constant operands broadcast into them, in float64 and in ints; a max reduce whose lanes are a where
  "relu, maximum and exp2 in float64": (lambda t: t(C).cast(dtypes.float64).relu().maximum(t(D).cast(dtypes.float64) * 0.5).exp2(),
                                        lambda: np.exp2(np.maximum(np.maximum(C.astype(np.float64), 0), D * 0.5))),
  "int where and compare": (lambda t: (t(I) != 3).where(t(I) * 2, t(I) < 5).maximum(7), lambda: np.maximum(np.where(I != 3, I * 2, I < 5), 7)),
  "a bool in lanes and a bool per row": (lambda t: ((t(I) != 3) & (r := t(I[:, :1].copy()) > 0)).where(t(C), r.where(t(D), 2)),
                                          lambda: np.where((I != 3) & (I[:, :1] > 0), C, np.where(I[:, :1] > 0, D, 2))),
  "max of a where along rows": (lambda t: (t(C) < 0.5).where(t(C), t(D)).max(1), lambda: np.where(C < 0.5, C, D).max(1)),
}

@pytest.mark.parametrize("name", WORKLOADS)
def test_optimized_kernels_compute_what_plain_loops_compute(device, name):
  build, reference = WORKLOADS[name]
  t = lambda a: Tensor(a, device=device)
  with Context(NOOPT=1): plain = build(t).numpy()
  with Context(NOOPT=0): optimized = build(t).numpy()
  np.testing.assert_allclose(optimized, plain, rtol=1e-5, atol=1e-5, err_msg=f"{name} on {device}: optimized against NOOPT=1")
  if reference is not None: check(build(t), reference())

def test_a_kernel_made_under_noopt_is_another_program_with_the_optimizer_on():
  if "CPU" not in Device.names(): pytest.skip("needs the CPU device")
  a = rand(64, 64)
  sources = []
  for noopt in (1, 0):
    before = set(tiny._programs)
    with Context(NOOPT=noopt): check(Tensor(a, device="CPU") * 3 + 1, a * 3 + 1)
    made = [tiny._programs[k] for k in set(tiny._programs) - before]
    assert len(made) == 1, f"NOOPT={noopt} reused a kernel made under the other setting"
    sources.append(made[0].src)
  assert sources[0] != sources[1], "the optimized kernel's source is the plain one"

def test_the_heuristic_tiles_a_matmul_and_noopt_keeps_plain_loops():
  if "CPU" not in Device.names(): pytest.skip("needs the CPU device")
  a, b = Tensor(rand(64, 64), device="CPU"), Tensor(rand(64, 64), device="CPU")
  with Context(NOOPT=1): plain = source_of(a @ b + 1, "CPU")
  with Context(NOOPT=0): tiled = source_of(a @ b + 2, "CPU")  # (the suite may run under NOOPT=1)
  assert "vector_size" not in plain and "core_id" not in plain
  vb = Device["CPU"].renderer.vector_bytes
  assert f"typedef float float{vb // 4} __attribute__((vector_size({vb})" in tiled, "the contiguous columns should be vector lanes"
  assert "acc3" in tiled and "acc3" not in plain, "rows copied by 4: several accumulators"

def test_x_at_w_transposed_gets_lanes_along_the_reduce_combined_once():
  if "CPU" not in Device.names(): pytest.skip("needs the CPU device")
  x, w = rand(32, 256), rand(64, 256)
  out = Tensor(x, device="CPU") @ Tensor(w, device="CPU").T
  with Context(NOOPT=0): src = source_of(out, "CPU")
  vb = Device["CPU"].renderer.vector_bytes
  assert f"*(float{vb // 4}*)(data1+" in src and f"*(float{vb // 4}*)(data2+" in src, "both inputs load as vectors along the reduce"
  assert src.count("acc0[0]") == 1, "the lanes are combined once, after the loops"
  # 256 products of up to 4 in size, summed: float32 rounding leaves about 1e-5 absolute
  np.testing.assert_allclose(out.numpy(), x.astype(np.float64) @ w.T, rtol=1e-5, atol=2e-5)

def conv_input_gradient(t, x, w, g):
  """The gradient of sum(conv2d(x, w, padding=1) * g) with respect to x: a transposed conv of g, in one kernel."""
  tx = t(x)
  tx.requires_grad = True
  return (tx.conv2d(t(w), padding=1) * t(g)).sum().gradient(tx)[0]

def window_trick_input_gradient(t, x, w, g):
  """The same gradient walked back by the ops' own rules through a conv built by hand from `_pool`'s window views
  (conv2d brings its own, above): window sums, guarded by the padding of the window trick, around a channel sum."""
  tx = t(x)
  tx.requires_grad = True
  windows = tx.pad((1, 1, 1, 1))._pool((3, 3), (1, 1), (1, 1))  # (batch, channels, y, x, ky, kx)
  out = (windows.unsqueeze(1) * t(w).reshape(1, *w.shape[:2], 1, 1, 3, 3)).sum((2, 5, 6))
  return (out * t(g)).sum().gradient(tx)[0]

def test_the_heuristic_tiles_a_window_trick_gradient_and_unrolls_the_window_loop_its_guards_read():
  if "CPU" not in Device.names(): pytest.skip("needs the CPU device")
  x, w, g = rand(8, 3, 10, 10), rand(8, 3, 3, 3), rand(8, 8, 10, 10)
  items, _ = tiny.create_schedule([window_trick_input_gradient(lambda a: Tensor(a, device="CPU"), x, w, g).uop])
  kernel = []
  tiny.lower(items[-1].ast, lambda k: kernel.append(k) or k)
  ranges = tiny._ranges(kernel[0])  # (batch 8, channels 3, y 10, x 10), then the window sums over y and x, and the 8 output channels
  assert [r.src[0].arg for r in ranges] == [8, 3, 10, 10, 4, 4, 8]
  opts = Device["CPU"].renderer.choose_opts(kernel[0])
  # the weights stay put along the batch (4 copies share each), the incoming gradient along the 3 channels (all
  # of them copied); the window loop along x (now range 6), which the padding guards read, is unrolled: each
  # copy's guard folds
  assert set(opts[:2]) == {Opt("UPCAST", 0, 4), Opt("UPCAST", 1, 3)} and opts[2] == Opt("UNROLL", 6, 4), opts
  with Context(NOOPT=0): optimized = window_trick_input_gradient(lambda a: Tensor(a, device="CPU"), x, w, g).numpy()
  with Context(NOOPT=1): plain = window_trick_input_gradient(lambda a: Tensor(a, device="CPU"), x, w, g).numpy()
  np.testing.assert_allclose(optimized, plain, rtol=1e-5, atol=1e-5)
  gp = np.pad(g.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
  windows = np.lib.stride_tricks.sliding_window_view(gp, (3, 3), axis=(2, 3))
  np.testing.assert_allclose(optimized, np.einsum("noyxij,ocij->ncyx", windows, w[:, :, ::-1, ::-1].astype(np.float64)), rtol=1e-4, atol=1e-4)

def test_a_float_sums_levels_fill_from_the_innermost_loop_out():
  # a sum over 3 channels by a 3x3 window: one level of 9 trips (the window) inside one of 3, so that the
  # accumulators of the inner level are added to the outer one every 9 trips, not every 3
  x = rand(4, 3, 3, 3)
  kernel = []
  items, _ = tiny.create_schedule([Tensor(x, device="PYTHON").sum((1, 2, 3)).uop])
  tiny.lower(items[-1].ast, lambda k: kernel.append(k) or k)
  reduces = [u for u in kernel[0].toposort() if u.op is tiny.Ops.REDUCE]
  trips = [tiny.prod(r.src[0].arg for r in u.src[1:]) for u in reduces]  # sources first: the inner level first
  assert trips == [9, 3], trips
  np.testing.assert_allclose(Tensor(x, device="PYTHON").sum((1, 2, 3)).numpy(), x.astype(np.float64).sum((1, 2, 3)), rtol=1e-6)

def test_a_sum_level_its_lanes_leave_short_joins_the_level_around_it():
  # x @ W.T sums 784 = 7*7*16 terms in levels of 16, 7 and 7 trips; its lanes (along the sum: both inputs run along
  # it) take 8 or 16 of the innermost 16, and what is left of that level joins the next one: each lane still adds at
  # most 16 terms per level, and the innermost loop is 14 (or 7) trips long, not 2 (or 1)
  if "CPU" not in Device.names() or not Device["CPU"].renderer.vector_bytes: pytest.skip("needs the CPU device's vector lanes")
  x, w = rand(4, 784), rand(8, 784)
  kernel = []
  tiny.lower(tiny.create_schedule([(Tensor(x, device="CPU") @ Tensor(w, device="CPU").T).uop])[0][-1].ast, lambda k: kernel.append(k) or k)
  renderer = Device["CPU"].renderer
  opts = renderer.choose_opts(kernel[0])
  lanes = renderer.vector_bytes // 4
  assert opts[0] == Opt("UNROLL", 4, lanes), opts  # the lanes along the sum
  innermost = [u for u in tiny.optimize(kernel[0], renderer, opts).toposort() if u.op is tiny.Ops.REDUCE and
               not any(s.op is tiny.Ops.REDUCE for s in u.src[0].toposort())]
  assert innermost and all(tiny.prod(r.src[0].arg for r in u.src[1:] if r.arg[1] == "REDUCE") == 16 // lanes * 7 for u in innermost)
  check(Tensor(x, device="CPU") @ Tensor(w, device="CPU").T, x.astype(np.float64) @ w.T.astype(np.float64))

def test_the_heuristic_unrolls_both_window_axes_of_a_conv_whatever_its_tile():
  if "CPU" not in Device.names(): pytest.skip("needs the CPU device")
  x, w, g = rand(8, 3, 10, 10), rand(8, 3, 3, 3), rand(8, 8, 10, 10)
  items, _ = tiny.create_schedule([conv_input_gradient(lambda a: Tensor(a, device="CPU"), x, w, g).uop])
  kernel = []
  tiny.lower(items[-1].ast, lambda k: kernel.append(k) or k)  # the transposed convolution: over the padded gradient
  assert [r.src[0].arg for r in tiny._ranges(kernel[0])][-3:] == [8, 3, 3]  # it sums over 8 channels, 3 by 3 window positions
  opts = Device["CPU"].renderer.choose_opts(kernel[0])
  tile = tiny.prod(o.amount for o in opts if o.op == "UPCAST" and o.amount < 16)  # not the lanes, if it has them
  # both window axes, whole: the 8 channels' loop is then the innermost (1.5x faster, each, on AVX2)
  assert tile >= 4 and [o.amount for o in opts if o.op == "UNROLL"] == [3, 3], opts
  gp = np.pad(g.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
  windows = np.lib.stride_tricks.sliding_window_view(gp, (3, 3), axis=(2, 3))
  got = conv_input_gradient(lambda a: Tensor(a, device="CPU"), x, w, g).numpy()
  np.testing.assert_allclose(got, np.einsum("noyxij,ocij->ncyx", windows, w[:, :, ::-1, ::-1].astype(np.float64)), rtol=1e-4, atol=1e-4)

def test_the_heuristic_gives_a_matmul_an_8_by_2_vector_tile():
  if "CPU" not in Device.names(): pytest.skip("needs the CPU device")
  a, b = rand(64, 64), rand(64, 64)
  items, _ = tiny.create_schedule([(Tensor(a, device="CPU") @ Tensor(b, device="CPU")).uop])
  kernel = []
  tiny.lower(items[-1].ast, lambda k: kernel.append(k) or k)
  lanes = Device["CPU"].renderer.vector_bytes // 4
  # lanes along the columns; 8 rows reuse each vector of b; 2 vectors of columns reuse each element of a
  assert Device["CPU"].renderer.choose_opts(kernel[0])[:3] == [Opt("UPCAST", 1, lanes), Opt("UPCAST", 0, 8), Opt("UPCAST", 1, 2)]
  with Context(NOOPT=0): np.testing.assert_allclose((Tensor(a, device="CPU") @ Tensor(b, device="CPU")).numpy(), a.astype(np.float64) @ b,
                                                    rtol=1e-5, atol=5e-5)  # 64 products of up to 4 in size

@pytest.mark.parametrize("op", ["&", "|", "^"])
def test_a_bool_held_in_a_variable_meets_bools_in_lanes(op):
  # the row's mask is one bool per row, read twice (so the kernel names it), combined with a mask in the lanes
  if "CPU" not in Device.names(): pytest.skip("needs the CPU device")
  x, y = rand(64), np.random.default_rng(1).integers(-1, 2, (16,)).astype(np.int32)
  f = {"&": lambda a, b: a & b, "|": lambda a, b: a | b, "^": lambda a, b: a ^ b}[op]
  with Context(NOOPT=0):
    row = Tensor(y, device="CPU").reshape(16, 1) != -1
    out = f(Tensor(x, device="CPU").reshape(1, 64) > 0, row).where(2.0, 3.0) * Tensor(x, device="CPU") + row.where(1.0, 0.5)
    row_np = y.reshape(16, 1) != -1
    check(out, np.where(f(x.reshape(1, 64) > 0, row_np), 2.0, 3.0) * x.astype(np.float64) + np.where(row_np, 1.0, 0.5))

def test_debug_3_prints_the_opts_of_each_kernel(device, capsys):
  with Context(DEBUG=3, NOOPT=0): (Tensor(rand(32, 32), device=device) @ Tensor(rand(32, 32), device=device) * 3).realize()
  lines = [l for l in capsys.readouterr().out.splitlines() if " opts: " in l]
  # on a CPU the rows are copied; a GPU's own choice leaves a 32-long reduce as it is
  expected = " opts: []" if device.startswith("CUDA") else "Opt(UPCAST, 0, "
  assert lines and lines[-1].startswith("r_") and expected in lines[-1]

def test_a_big_kernel_is_split_over_threads_on_cpu():
  if "CPU" not in Device.names() or Device["CPU"].renderer.threads < 2: pytest.skip("needs the CPU device and two cores")
  a = rand(256, 512)
  out = Tensor(a, device="CPU") * 2 + 1
  with Context(NOOPT=0): assert "int core_id" in source_of(out, "CPU")
  check(out, a.astype(np.float64) * 2 + 1)

def test_a_kernel_is_split_over_as_many_threads_as_get_65536_trips_each():
  # waking a worker costs tens of microseconds: on 16 cores, a kernel of 2**18 trips takes 4 of them, one of 2**21 all 16
  renderer = copy.copy(Device["PYTHON"].renderer)
  renderer.threads = 16
  for rows, threads in ((256, 4), (2048, 16)):
    kernel = []
    tiny.lower(tiny.create_schedule([(Tensor.empty(rows, 1024, device="PYTHON") * 2).uop])[0][-1].ast, lambda k: kernel.append(k) or k)
    assert [o for o in tiny.heuristic(kernel[0], renderer) if o.op == "THREAD"] == [Opt("THREAD", 0, threads)]

def test_an_opt_that_does_not_fit_raises_naming_the_range():
  kernel = []
  tiny.lower(tiny.create_schedule([(Tensor(rand(6, 5), device="PYTHON") * 2).uop])[0][-1].ast, lambda k: kernel.append(k) or k)
  with pytest.raises(OptError, match=r"Opt\(UPCAST, 1, 4\): needs a LOOP range whose size 4 divides, got a LOOP range of size 5"):
    tiny.apply_opt(kernel[0], Opt("UPCAST", 1, 4))
  with pytest.raises(OptError, match=r"Opt\(UNROLL, 0, 2\): needs a REDUCE range"):
    tiny.apply_opt(kernel[0], Opt("UNROLL", 0, 2))
  with pytest.raises(OptError, match="the kernel has 2 ranges"):
    tiny.apply_opt(kernel[0], Opt("UPCAST", 2, 2))

def test_beam_keeps_the_fastest_of_its_candidates_and_caches_it(tmp_path, monkeypatch):
  if "CPU" not in Device.names(): pytest.skip("needs the CPU device")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  a, b = rand(16, 16), rand(16, 16)
  with Context(BEAM=1, NOOPT=0): check(Tensor(a, device="CPU") @ Tensor(b, device="CPU"), a.astype(np.float64) @ b)
  saved = list((tmp_path / "tiny").glob("beam-*.json"))
  assert len(saved) == 1
  searched = []
  monkeypatch.setattr(tiny, "_time_opts", lambda *args: searched.append(args) or 1.0)
  tiny._programs.clear()
  with Context(BEAM=1, NOOPT=0): check(Tensor(a, device="CPU") @ Tensor(b, device="CPU"), a.astype(np.float64) @ b)
  assert not searched, "a kernel searched once is not searched again"

# Float sums: accumulated in blocks of 16, as accurate as numpy's pairwise sum.

def test_a_float_sum_is_as_accurate_as_numpy(device):
  for v in [np.full(10000, 0.1, np.float32), np.ones(34, np.float32), RNG.uniform(0, 1, 4099).astype(np.float32)]:
    got, want = Tensor(v, device=device).sum().item(), float(v.sum())
    assert abs(got - want) <= 1e-6 * abs(want), f"sum of {v.size} floats on {device}: {got}, numpy {want}"

def test_long_float_sums_are_as_accurate_as_numpy(device):
  if device == "PYTHON": pytest.skip("millions of elements: too slow for the reference interpreter")
  for value, n in [(0.1, 10_000_000), (1.0, 20_000_000)]:
    v = np.full(n, value, np.float32)
    got, want = Tensor(v, device=device).sum().item(), float(v.sum())
    assert abs(got - want) <= 1e-6 * abs(want), f"sum of {n} copies of {value} on {device}: {got}, numpy {want}"

# Rendering: a chain of N ops is N named steps, not one expression with 2N parentheses.

def test_a_chain_of_ops_renders_in_source_linear_in_its_length():
  if "CPU" not in Device.names(): pytest.skip("needs the CPU device")
  def chain(n):
    x = Tensor(np.linspace(-1, 1, 16, dtype=np.float32), device="CPU")
    for _ in range(n // 2): x = x * 1.0001 + 0.001
    return x
  sizes = {n: len(source_of(chain(n), "CPU")) for n in (2500, 5000)}
  assert sizes[5000] < 2.2 * sizes[2500], f"source grows faster than the chain: {sizes}"
  ref = np.linspace(-1, 1, 16, dtype=np.float32)  # in float32, as the kernel rounds: 2,500 roundings are not float64's
  for _ in range(2500): ref = ref * np.float32(1.0001) + np.float32(0.001)
  check(chain(5000), ref)
