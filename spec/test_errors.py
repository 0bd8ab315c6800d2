"""Bad input raises at the call that caused it, with a message naming the shapes, axis or device, and leaves
every tensor usable: after each error the operands are used again and their values checked."""
import re
import numpy as np
import pytest
import tiny
from tiny import Tensor, Device, GlobalCounters, dtypes
from conftest import check

A = np.arange(6, dtype=np.float32).reshape(2, 3)

def raises(kind, *words):
  """pytest.raises for an error whose message contains every one of the words (shapes, axes, device names)."""
  return pytest.raises(kind, match="".join(f"(?=[\\s\\S]*{re.escape(str(w))})" for w in words))

@pytest.fixture
def a(device):
  """A lazy (2, 3) tensor, not yet realized, so an error that ran anything would show in the kernel count."""
  GlobalCounters.reset()
  return Tensor(A, device=device) * 1

def still_usable(t: Tensor, expected=A) -> None:
  assert GlobalCounters.kernel_count == 0, "the failing call ran a kernel"
  check(t + 1, expected.astype(np.float64) + 1)
  GlobalCounters.reset()

# ## Shapes that do not broadcast

def test_mismatched_broadcast_names_both_shapes(device, a):
  b = Tensor.ones(4, device=device)
  for bad in [lambda: a + b, lambda: a * b, lambda: a - b, lambda: a < b, lambda: a.maximum(b), lambda: a == b, lambda: b / a]:
    with raises(ValueError, "(2, 3)", "(4,)"): bad()
  with raises(ValueError, "(2, 3)", "(4,)"): (a > 0).where(a, b)
  with raises(ValueError, "(3, 2)", "(2, 3)"): a.T + a
  still_usable(a)
  check(b * 2, np.full(4, 2.0))

def test_broadcast_of_a_size_0_against_a_size_2_fails(device, a):
  with raises(ValueError, "(0,)", "(2, 3)"): Tensor.zeros(0, device=device) + a
  still_usable(a)

# ## reshape and other movement ops with impossible arguments

@pytest.mark.parametrize("shape", [(4, 2), (7,), (2, 2, 2), (-1, 4), (0, 6)], ids=str)
def test_reshape_to_a_different_size_names_both_shapes(device, a, shape):
  with raises(ValueError, "(2, 3)", shape): a.reshape(shape)
  still_usable(a)

def test_reshape_with_two_unknown_sizes(device, a):
  with raises(ValueError, "-1"): a.reshape(-1, -1)
  still_usable(a)

def test_expand_pad_shrink_permute_with_wrong_arguments(device, a):
  with raises(ValueError, "(2, 3)", "(2, 4)"): a.expand(2, 4)
  with raises(ValueError, "(2, 3)", "(3,)"): a.expand(3)
  with raises(ValueError, "(2, 3)"): a.pad(((1, 1),))
  with raises(ValueError, "(2, 3)"): a.shrink(((0, 3), None))
  with raises(ValueError, "(2, 3)"): a.shrink(((0, 1),))
  with raises(ValueError, "(2, 3)"): a.permute(0, 0)
  with raises(ValueError, "(2, 3)"): a.repeat(2)
  still_usable(a)

def test_unflatten_to_the_wrong_size(device, a):
  with raises(ValueError, "(2, 3)"): a.unflatten(1, (2, 2))
  still_usable(a)

# ## Axes out of range

AXIS_OPS = {
  "sum": lambda t, ax: t.sum(ax), "max": lambda t, ax: t.max(ax), "min": lambda t, ax: t.min(ax), "mean": lambda t, ax: t.mean(ax),
  "prod": lambda t, ax: t.prod(ax), "var": lambda t, ax: t.var(ax), "std": lambda t, ax: t.std(ax), "any": lambda t, ax: t.any(ax),
  "all": lambda t, ax: t.all(ax), "argmax": lambda t, ax: t.argmax(ax), "argmin": lambda t, ax: t.argmin(ax),
  "softmax": lambda t, ax: t.softmax(ax), "log_softmax": lambda t, ax: t.log_softmax(ax), "logsumexp": lambda t, ax: t.logsumexp(ax),
  "cumsum": lambda t, ax: t.cumsum(ax), "flip": lambda t, ax: t.flip(ax), "squeeze": lambda t, ax: t.squeeze(ax),
  "unsqueeze": lambda t, ax: t.unsqueeze(ax), "transpose": lambda t, ax: t.transpose(0, ax),
  "permute": lambda t, ax: t.permute(ax, 0), "flatten": lambda t, ax: t.flatten(ax), "cat": lambda t, ax: t.cat(t, dim=ax),
  "stack": lambda t, ax: t.stack(t, dim=ax), "split": lambda t, ax: t.split(1, dim=ax),
  "chunk": lambda t, ax: t.chunk(2, dim=ax), "sum_tuple": lambda t, ax: t.sum((0, ax)),
}

@pytest.mark.parametrize("axis", [2, -3, 5], ids=str)
@pytest.mark.parametrize("name", list(AXIS_OPS))
def test_axis_out_of_range_names_the_axis_and_shape(device, a, name, axis):
  if name in ("unsqueeze", "stack"): axis += 1 if axis > 0 else -1  # these make a new axis, so one more is in range
  with raises((IndexError, ValueError), axis, "(2, 3)"): AXIS_OPS[name](a, axis)
  still_usable(a)

# ## matmul with inner sizes that differ

@pytest.mark.parametrize("sa, sb", [((2, 3), (4, 5)), ((2, 3), (2, 3)), ((3,), (4,)), ((2, 3), (4,)), ((4,), (3, 2)), ((5, 2, 3), (5, 4, 2))], ids=str)
def test_matmul_with_different_inner_sizes_names_both_shapes(device, sa, sb):
  GlobalCounters.reset()
  x, w = Tensor(np.ones(sa, np.float32), device=device), Tensor(np.ones(sb, np.float32), device=device)
  with raises(ValueError, sa, sb): x @ w
  with raises(ValueError, sa, sb): x.dot(w)
  with raises(ValueError, sa, sb): x.matmul(w)
  still_usable(x, np.ones(sa, np.float32))
  still_usable(w, np.ones(sb, np.float32))

def test_matmul_with_batches_that_do_not_broadcast(device):
  x, w = Tensor.ones(2, 3, 4, device=device), Tensor.ones(3, 4, 5, device=device)
  with raises(ValueError, "2", "3"): x @ w
  check(x @ w[0], np.full((2, 3, 5), 4.0))

def test_matmul_of_a_0d_tensor(device, a):
  with raises(ValueError, "()"): Tensor(2.0, device=device) @ a
  still_usable(a)

# ## Devices

@pytest.mark.parametrize("name", ["NOPE", "GPU9", ""])
def test_unknown_device_is_named(device, a, name):
  for bad in [lambda: Tensor([1, 2], device=name), lambda: Tensor.zeros(2, device=name), lambda: Tensor.arange(3, device=name),
              lambda: Tensor.rand(2, device=name), lambda: a.to(name), lambda: Tensor(np.ones(2), device=name), lambda: Tensor.empty(1, device=name)]:
    with raises((ValueError, RuntimeError), repr(name.upper())): bad()
  still_usable(a)

def test_tensors_on_different_devices_do_not_mix(a):
  other = "CPU" if a.device == "PYTHON" else "PYTHON"
  b = Tensor.ones(2, 3, device=other)
  with raises((ValueError, RuntimeError), a.device, other): a + b
  with raises((ValueError, RuntimeError), a.device, other): a @ b.T
  with raises((ValueError, RuntimeError), a.device, other): a.assign(b)
  still_usable(a)
  check(b.to(a.device) + a, A + 1)

@pytest.fixture
def cpu_without_float64(monkeypatch):
  """CPU made unable to hold float64 (the setting is restored afterwards)."""
  renderer = Device["CPU"].renderer
  monkeypatch.setattr(renderer, "supported_dtypes", tuple(d for d in renderer.supported_dtypes if d != dtypes.float64))
  GlobalCounters.reset()

def test_dtype_the_device_cannot_hold_is_refused_where_it_is_asked_for(cpu_without_float64):
  a = Tensor(A, device="CPU") * 1
  p = Tensor(A.astype(np.float64), device="PYTHON")
  for bad in [lambda: Tensor([1.0], device="CPU", dtype=dtypes.float64), lambda: Tensor(np.ones(2), device="CPU"),
              lambda: Tensor.zeros(2, device="CPU", dtype=dtypes.float64), lambda: Tensor.full((2,), 1.5, device="CPU", dtype=dtypes.float64),
              lambda: Tensor.empty(2, device="CPU", dtype=dtypes.float64), lambda: Tensor.arange(3, device="CPU", dtype=dtypes.float64),
              lambda: a.cast(dtypes.float64), lambda: p.to("CPU"),
              lambda: a.int().bitcast(dtypes.float32).cast(dtypes.float64), lambda: a + Tensor.ones(2, 3, device="CPU", dtype=dtypes.float64)]:
    with raises(TypeError, "CPU", "float64"): bad()
  still_usable(a)
  check(p * 2, A.astype(np.float64) * 2, dtype=dtypes.float64)  # PYTHON still holds float64

def test_random_tensor_of_a_dtype_the_device_cannot_hold_fails_before_running_anything(cpu_without_float64):
  with raises(TypeError, "CPU", "float64"): Tensor.rand(2, device="CPU", dtype=dtypes.float64)
  with raises(TypeError, "CPU", "float64"): Tensor.randn(2, device="CPU", dtype=dtypes.float64)
  assert GlobalCounters.kernel_count == 0

def test_the_device_setting_is_restored_after_the_monkeypatch():
  check(Tensor([1.5], device="CPU", dtype=dtypes.float64) * 2, np.array([3.0]), dtype=dtypes.float64)

# ## Other bad input

def test_index_out_of_range_names_index_axis_and_size(device, a):
  with raises(IndexError, "5", "1", "3"): a[:, 5]
  with raises(IndexError, "-3", "0", "2"): a[-3]
  with raises(IndexError, "(2, 3)"): a[0, 1, 2]
  with raises(IndexError, "ellipsis"): a[..., 0, ...]
  with raises(IndexError, "float"): a[Tensor([0.5], device=device)]
  with raises(IndexError, "str"): a["x"]
  still_usable(a)

def test_join_and_split_with_mismatched_sizes(device, a):
  with raises(ValueError, "(2, 3)", "(2, 4)"): a.cat(Tensor.ones(2, 4, device=device), dim=0)
  with raises(ValueError, "(2, 3)", "(3, 2)"): a.stack(a.T)
  with raises(ValueError, "[1, 1]", "3"): a.split([1, 1], dim=1)
  still_usable(a)

def test_ops_on_the_wrong_kind_of_value(device, a):
  with raises(TypeError, "float32"): a & a
  with raises(TypeError, "float32"): a << 1
  with raises(ValueError, "float32", "float16"): a.bitcast(dtypes.float16)
  with raises(TypeError, "str"): a + "x"
  with raises(TypeError, "ambiguous"): bool(a)
  with raises(ValueError, "(2, 3)"): a.item()
  with raises(ValueError, "clip"): a.clip()
  with raises(ValueError, "(2, 3)", "(3,)"): a.assign(Tensor.ones(3, device=device))
  still_usable(a)

@pytest.mark.parametrize("make, value, dtype", [
  (lambda d: Tensor([2**40], device=d), 2**40, "int32"), (lambda d: Tensor([300], dtype=dtypes.uint8, device=d), 300, "uint8"),
  (lambda d: Tensor([[1, 2], [3, -1]], dtype=dtypes.uint16, device=d), -1, "uint16"), (lambda d: Tensor(2**63, dtype=dtypes.int64, device=d), 2**63, "int64"),
  (lambda d: Tensor.full((2, 2), -129, dtype=dtypes.int8, device=d), -129, "int8")])
def test_a_python_int_that_does_not_fit_the_dtype_raises_naming_both(device, make, value, dtype):
  with raises(OverflowError, value, dtype): make(device)
  edge = getattr(dtypes, dtype)
  assert Tensor([edge.min, edge.max], dtype=edge, device=device).tolist() == [edge.min, edge.max]  # the ends themselves fit

def test_bad_constructor_arguments(device):
  with raises(ValueError, "ragged"): Tensor([[1, 2], [3]], device=device)
  with raises(TypeError, "dict"): Tensor({"a": 1}, device=device)
  with raises(TypeError, "complex"): Tensor(np.ones(2, np.complex64), device=device)
  with raises(ValueError, "step"): Tensor.arange(0, 5, 0, device=device)
  with raises(ValueError, "-1"): Tensor.full((2, -1), 0.0, device=device)
  with raises(ValueError, "-2"): Tensor.linspace(0, 1, -2, device=device)
  with raises(TypeError, "0-d"): len(Tensor(1, device=device))

# ## Compile failures and freed memory

def test_compile_failure_shows_the_compiler_message_first_then_the_source():
  compiler = tiny.Device["CPU"].compiler
  source = "void broken(float* data0) { data0[0] = undeclared_name; }\n" + "// filler\n" * 200  # a long kernel
  with pytest.raises(tiny.CompileError) as err: compiler.compile(source)
  message, where = str(err.value), str(err.value).index("kernel source")
  assert source.strip() in message[where:], "the error shows the generated source"
  assert "undeclared_name" in message[:where] and message.index("undeclared") < 300, "the compiler's own message comes first"

def test_buffers_are_freed_when_nothing_refers_to_them(device):
  import gc, weakref
  t = (Tensor([1.0, 2.0, 3.0], device=device) * 2).realize()
  buffer = weakref.ref(tiny._buffer_of(t.uop))
  assert buffer() is not None
  del t
  gc.collect()
  assert buffer() is None, "a realized tensor's buffer outlived every reference to it"
