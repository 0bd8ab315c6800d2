"""Every member of `Ops`, run on the device under test and compared with the reference semantics.

Three kinds of op, three kinds of test:

- **ALU ops, CAST and BITCAST** run as hand-built one-op kernels over every dtype the device supports, on edge
  values (0, -0.0, 1, -1, inf, -inf, nan, the smallest and largest values, values that overflow, division by zero,
  the smallest int divided by -1, shifts up to the bit width - 1; casts also get floats just inside and outside
  each int's range). Each op is tested twice: with every operand *loaded* from memory,
  and with operands that are *constants* in the program (one constant operand in a loop, and all operands
  constant); and, on a device with vector lanes (chapter 11) for its dtypes, a third time, loaded a vector at a
  time (*lanes*). The parts share one kernel, so a test names its part and the compiler runs once.
  The program is made with `tiny.linearize` and never simplified, so a constant operand reaches the renderer as a
  CONST and the device computes the op (or its compiler folds it: then the compiler's folding is what is tested).
  The expected values come from `tiny.exec_alu`, the table the reference device runs, never from the device
  under test: ints and bools exactly, floats bit for bit (nan equals nan), transcendentals within the tolerance
  table of conftest.py.
- **Kernel structure** (RANGE, END, PARAM, INDEX, LOAD, STORE, DEFINE_ACC, ACCUMULATE, CONST, SINK) runs in small
  hand-built kernels: loop bounds, nested and empty loops, gated loads, accumulators, many parameters.
- **Tensor-level ops** (BUFFER, DEVICE, the movement ops, REDUCE_AXIS, COPY, CONTIGUOUS, DETACH, ASSIGN, AFTER,
  ARANGE, and the lowering's own AT and REDUCE) run through Tensor programs on the device, against numpy.

Every buffer a kernel gets is followed by guard elements it must leave alone, and its outputs start as garbage,
so a kernel that writes past the end (a loop bound off by one) or skips an element fails too.

Integer division by zero, INT_MIN / -1 and casts of nan, inf and out-of-range floats to ints are undefined in C but
defined by tiny (chapters 2 and 3), and tested like everything else. Only shifts by a negative amount or by the bit
width or more stay undefined: no device owes an answer there, and they are not tested.
"""
from __future__ import annotations
import concurrent.futures, functools, itertools, math, os, struct
import numpy as np
import pytest
import tiny
from tiny import UOp, Ops, GroupOp, DType, dtypes, exec_alu, to_dtype, bitcast_value, Tensor, Device
from conftest import NP, TOLERANCE

# ## Which test covers which op
#
# `covers(*ops)` marks a test as a test of those ops: the coverage test (test_coverage.py) reads `COVERED`, and the
# scorecard (conftest.py) reads the `ops` marker. An op that no device can run yet is listed, with the reason, in
# `NOT_RUNNABLE`, the one table of exceptions.

COVERED: dict[Ops, list[str]] = {}

def covers(*ops: Ops):
  def mark(fn):
    for op in ops: COVERED.setdefault(op, []).append(fn.__name__)
    return pytest.mark.ops(*ops)(fn)
  return mark

NOT_RUNNABLE: dict[Ops, str] = {
  Ops.DEFINE_VAR: "a symbolic variable: no renderer or interpreter gives it a value inside a kernel yet (no Tensor op "
                  "makes one); its algebra is tested by spec/test_symbolic.py",
}

# ## Running a hand-built kernel
#
# A kernel is a SINK of STOREs; `linearize` orders it into a program, the device's renderer, compiler and runtime
# turn that into a callable, exactly the path `tiny.get_program` takes after lowering.

TRUE = UOp.const(dtypes.bool, True)
GUARD = 16         # elements after each buffer that a kernel must not touch: a whole vector of lanes
POISON = 0xA5      # the byte every output and guard element starts as

def i32(v: int) -> UOp: return UOp.const(dtypes.int32, v)
def index(p: UOp, i: UOp | int, valid: UOp = TRUE) -> UOp: return UOp(Ops.INDEX, p.dtype, (p, i if isinstance(i, UOp) else i32(i), valid))
def load(p: UOp, i: UOp | int, valid: UOp = TRUE) -> UOp: return UOp(Ops.LOAD, p.dtype, (index(p, i, valid),))
def store(p: UOp, i: UOp | int, value: UOp) -> UOp: return UOp(Ops.STORE, dtypes.void, (index(p, i), value))
def loop(n: int, number: int, kind: str = "LOOP") -> UOp: return UOp(Ops.RANGE, dtypes.int32, (i32(n),), (number, kind))

def pack(dtype: DType, values: list) -> bytes: return struct.pack(f"<{len(values)}{dtype.fmt}", *values)

def unpack(dtype: DType, data: bytes) -> list:
  if dtype == dtypes.bool:  # a bool in memory is one byte, 0 or 1; anything else is a broken store
    return [bool(v) if v in (0, 1) else f"<invalid bool byte {v}>" for v in data]
  return list(struct.unpack(f"<{len(data) // dtype.itemsize}{dtype.fmt}", data))

class Kernel:
  """Collects the buffers of a hand-built kernel; PARAM slots are numbered in the order buffers are added."""
  def __init__(self): self.buffers: list[tuple[DType, list | int]] = []
  def input(self, dtype: DType, values: list) -> UOp: return self._param(dtype, [to_dtype(v, dtype) for v in values])
  def output(self, dtype: DType, size: int) -> UOp: return self._param(dtype, size)
  def _param(self, dtype: DType, contents: list | int) -> UOp:
    self.buffers.append((dtype, contents))
    n = contents if isinstance(contents, int) else len(contents)
    return UOp(Ops.PARAM, dtype, (), (len(self.buffers) - 1, n))

  def program(self, *stores: UOp) -> list[UOp]:
    params = [UOp(Ops.PARAM, d, (), (i, c if isinstance(c, int) else len(c))) for i, (d, c) in enumerate(self.buffers)]
    return tiny.linearize(UOp.sink(*stores, *params))  # every param, used or not: the call passes them all

  def run(self, device: str, name: str, *stores: UOp) -> list[list]:
    """Run on `device`; the contents of every buffer afterwards (inputs included)."""
    dev = Device[device]
    src = dev.renderer.render(name, self.program(*stores))
    fn = dev.runtime(name, dev.compiler.compile_cached(src))
    bufs = []
    for dtype, contents in self.buffers:
      n = contents if isinstance(contents, int) else len(contents)
      buf = tiny.Buffer(device, n + GUARD, dtype)
      head = bytes([POISON]) * (n * dtype.itemsize) if isinstance(contents, int) else pack(dtype, contents)
      buf.copyin(head + bytes([POISON]) * (GUARD * dtype.itemsize))
      bufs.append((buf, n))
    fn(*[b.block for b, _ in bufs])
    out = []
    for slot, (buf, n) in enumerate(bufs):
      data = bytes(buf.copyout())
      cut = n * buf.dtype.itemsize
      assert data[cut:] == bytes([POISON]) * (GUARD * buf.dtype.itemsize), \
        f"kernel {name} wrote past the end of buffer {slot} ({n} elements of {buf.dtype.name}):\n{src}"
      out.append(unpack(buf.dtype, data[:cut]))
    return out

# ## Comparing with the reference

TRANSCENDENTAL = {Ops.EXP2, Ops.LOG2, Ops.SIN}

def same(dtype: DType, got, want, op: Ops | None = None) -> bool:
  """Ints and bools exactly; floats bit for bit (nan equals any nan), transcendentals within the tolerance table."""
  if not dtype.is_float: return type(got) is type(want) and got == want if dtype == dtypes.bool else got == want
  if want != want: return got != got
  if op in TRANSCENDENTAL and not math.isinf(want):
    rtol, atol = TOLERANCE[("transcendental", dtype)]
    return not math.isinf(got) and abs(got - want) <= atol + rtol * abs(want)
  return got == want and math.copysign(1.0, got) == math.copysign(1.0, want)

def compare(what: str, dtype: DType, cases: list[tuple[str, object]], got: list, op: Ops | None = None) -> list[str]:
  """Mismatches between `got` and the (description, expected) cases, as readable lines."""
  assert len(got) == len(cases)
  return [f"{what}: {desc}: got {g!r}, want {w!r}" for (desc, w), g in zip(cases, got) if not same(dtype, g, w, op)]

def check_no_mismatches(device: str, bad: list[str]) -> None:
  assert not bad, f"{len(bad)} wrong values on {device} (reference: tiny.exec_alu):\n" + "\n".join(bad[:20])

def skip_unsupported(device: str, *ds: DType) -> None:
  missing = [d.name for d in ds if d not in Device[device].renderer.supported_dtypes]
  if missing: pytest.skip(f"{device} does not support {', '.join(missing)}")

# ## Edge values
#
# Every dtype's special values: zeros of both signs, one, the extremes, values next to them (so arithmetic
# overflows), and for floats the smallest normal and subnormal numbers, infinities and nan.

FLOAT_LIMITS = {dtypes.float16: (65504.0, 2.0**-14, 2.0**-24), dtypes.float32: (3.4028234663852886e38, 2.0**-126, 2.0**-149),
                dtypes.float64: (1.7976931348623157e308, 2.0**-1022, 5e-324)}

@functools.cache
def edges(dtype: DType) -> tuple:
  if dtype == dtypes.bool: return (False, True)
  if dtype.is_float:
    big, normal, sub = FLOAT_LIMITS[dtype]
    vals = [0.0, -0.0, 1.0, -1.0, 0.5, -1.5, 2.5, 3.0, 1e-3, -100.25, big, -big, normal, -sub, math.inf, -math.inf, math.nan]
    return tuple(to_dtype(v, dtype) for v in vals)
  lo, hi = dtype.min, dtype.max
  vals = [0, 1, 2, 3, 7, 100, hi, hi - 1, hi // 2, hi // 2 + 1] + ([] if dtype.is_unsigned else [-1, -2, -7, lo, lo + 1])
  if dtype.itemsize == 8: vals.append(2**62 + 2**38 + 1)  # more bits than a double holds: rounds to float32 only if done in one step
  return tuple(dict.fromkeys(v for v in vals if lo <= v <= hi))

def shift_amounts(dtype: DType) -> tuple: return tuple(range(8 * dtype.itemsize))  # 0 .. bit width - 1

# ## The ALU ops
#
# Which dtypes each op takes: float-only math, integer-only division and shifts, bitwise ops on ints and bools,
# everything else on every dtype.

FLOAT_ONLY = {Ops.RECIPROCAL, Ops.SQRT, Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.TRUNC}
INT_ONLY = {Ops.IDIV, Ops.MOD, Ops.SHL, Ops.SHR}
INT_OR_BOOL = {Ops.AND, Ops.OR, Ops.XOR}

def op_dtypes(op: Ops) -> list[DType]:
  if op in FLOAT_ONLY: return [d for d in dtypes.all() if d.is_float]
  if op in INT_ONLY: return [d for d in dtypes.all() if d.is_int]
  if op in INT_OR_BOOL: return [d for d in dtypes.all() if not d.is_float]
  return dtypes.all()

def arity(op: Ops) -> int: return 1 if op in GroupOp.Unary else 3 if op is Ops.WHERE else 2
def operand_dtypes(op: Ops, dtype: DType) -> tuple[DType, ...]: return (dtypes.bool, dtype, dtype) if op is Ops.WHERE else (dtype,) * arity(op)
def result_dtype(op: Ops, dtype: DType) -> DType: return dtypes.bool if op in GroupOp.Comparison else dtype

def operand_values(op: Ops, dtype: DType, position: int) -> tuple:
  if op in (Ops.SHL, Ops.SHR) and position == 1: return shift_amounts(dtype)
  return edges(operand_dtypes(op, dtype)[position])

def bits(v) -> object: return ("nan",) if v != v else (v, math.copysign(1.0, v)) if isinstance(v, float) else (v, type(v))  # -0.0 is not 0.0

def alu(op: Ops, dtype: DType, srcs: tuple[UOp, ...]) -> UOp: return UOp(op, result_dtype(op, dtype), srcs)

def expected(op: Ops, dtype: DType, args: tuple) -> object: return exec_alu(op, result_dtype(op, dtype), list(args))

def describe(op: Ops, args: tuple, const: tuple[bool, ...]) -> str:
  return f"{op.name}(" + ", ".join(f"{'const ' if c else ''}{a!r}" for a, c in zip(args, const)) + ")"

# The lanes variant runs where the renderer has vector lanes for every dtype of the op (chapter 11): one vector as
# wide as its registers allow, at most 16 lanes.
def lanes_width(op: Ops, dtype: DType, renderer) -> int:
  sizes = [4 if d == dtypes.bool else d.itemsize for d in (*operand_dtypes(op, dtype), result_dtype(op, dtype))]
  return min(16, renderer.vector_bytes // max(sizes))

def variants_on(device: str, op: Ops, dtype: DType) -> tuple[str, ...]:
  renderer = Device[device].renderer
  vectors = all(d in renderer.vector_dtypes for d in (*operand_dtypes(op, dtype), result_dtype(op, dtype)))
  return ("loaded", "const") + (("lanes",) if vectors and lanes_width(op, dtype, renderer) >= 2 else ())

def build_alu_kernel(device: str, op: Ops, dtype: DType, variants: tuple[str, ...]) -> tuple[Kernel, str, list[UOp], dict[str, list]]:
  """One kernel holding the given variants of (op, dtype): the kernel, its name, its stores, and per variant the
  outputs to check with their (description, expected value) cases."""
  n_src, src_dtypes, out_dtype = arity(op), operand_dtypes(op, dtype), result_dtype(op, dtype)
  everything = list(itertools.product(*(operand_values(op, dtype, p) for p in range(n_src))))  # shifts: amounts 0 .. width-1 only
  k, stores, checks, loops = Kernel(), [], {v: [] for v in variants}, 0
  def loop_group(variant: str, args_list: list[tuple], const: tuple[bool, ...]) -> None:
    """One loop over args_list: loaded operands come from input buffers, constant ones are CONSTs in the program."""
    nonlocal loops
    if not args_list: return
    r = loop(len(args_list), loops)
    loops += 1
    srcs = tuple(UOp.const(d, args_list[0][p]) if c else load(k.input(d, [a[p] for a in args_list]), r)
                 for p, (d, c) in enumerate(zip(src_dtypes, const)))
    out = k.output(out_dtype, len(args_list))
    stores.append(store(out, r, alu(op, dtype, srcs)))
    checks[variant].append((out, [(describe(op, a, const), expected(op, dtype, a)) for a in args_list]))
  if "loaded" in variants: loop_group("loaded", everything, (False,) * n_src)
  if "lanes" in variants:  # every operand loaded, a whole vector at a time: the loop's inner part is the lanes range
    width = lanes_width(op, dtype, Device[device].renderer)
    padded = [everything[i % len(everything)] for i in range(-(-len(everything) // width) * width)]  # whole vectors
    outer = loop(len(padded) // width, loops)
    lanes, loops = loop(width, loops + 1, "UPCAST"), loops + 2
    at = outer * width + lanes
    srcs = tuple(load(k.input(d, [a[p] for a in padded]), at) for p, d in enumerate(src_dtypes))
    out = k.output(out_dtype, len(padded))
    stores.append(store(out, at, alu(op, dtype, srcs)))
    checks["lanes"].append((out, [(describe(op, a, (False,) * n_src) + " in lanes", expected(op, dtype, a)) for a in padded]))
  if "const" in variants:
    if n_src > 1:  # one operand constant, the others loaded: a loop per (position, constant)
      for p in range(n_src):
        for c in operand_values(op, dtype, p):
          loop_group("const", [a for a in everything if bits(a[p]) == bits(c)], tuple(i == p for i in range(n_src)))
    # every operand constant, no loop: a sample of the cases (all of them for unary ops)
    sample = everything[::max(1, len(everything) // 48)]
    out = k.output(out_dtype, len(sample))
    stores.extend(store(out, i, alu(op, dtype, tuple(UOp.const(d, v) for d, v in zip(src_dtypes, a)))) for i, a in enumerate(sample))
    checks["const"].append((out, [(describe(op, a, (True,) * n_src), expected(op, dtype, a)) for a in sample]))
  return k, "_".join([op.name, dtype.name, *variants]), stores, checks

def run_alu_kernel(device: str, op: Ops, dtype: DType, variants: tuple[str, ...]) -> dict[str, list[str]]:
  """Run the kernel of build_alu_kernel; per variant, the mismatches against exec_alu."""
  k, name, stores, checks = build_alu_kernel(device, op, dtype, variants)
  out_dtype, results = result_dtype(op, dtype), k.run(device, name, *stores)
  return {v: [line for out, cases in checks[v] for line in compare(f"{op.name} {dtype.name}", out_dtype, cases, results[out.arg[0]], op)]
          for v in variants}

@functools.cache
def compile_all_alu_kernels(device: str) -> None:
  """Compile every one-op kernel at once, on every core, into the compiler's cache, where the tests then find them."""
  dev = Device[device]
  if tiny.DISABLE_COMPILER_CACHE or isinstance(dev.compiler, tiny.PythonCompiler): return  # nothing cached, or nothing slow
  sources = []
  for op in GroupOp.ALU:
    for d in op_dtypes(op):
      if all(s in dev.renderer.supported_dtypes for s in operand_dtypes(op, d)):
        k, name, stores, _ = build_alu_kernel(device, op, d, variants_on(device, op, d))
        sources.append(dev.renderer.render(name, k.program(*stores)))
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
    for future in [pool.submit(dev.compiler.compile_cached, src) for src in sources]: future.exception()  # errors: in the tests

@functools.cache
def alu_results(device: str, op: Ops, dtype: DType) -> dict[str, list[str] | Exception]:
  """Both variants in one kernel (half the compiles); if that kernel fails to compile or run, each variant on its own,
  so that a broken constant does not hide a working loaded op."""
  compile_all_alu_kernels(device)
  try: return run_alu_kernel(device, op, dtype, variants_on(device, op, dtype))
  except Exception:
    out: dict[str, list[str] | Exception] = {}
    for variant in variants_on(device, op, dtype):
      try: out.update(run_alu_kernel(device, op, dtype, (variant,)))
      except Exception as e: out[variant] = e
    return out

ALU_CASES = [pytest.param(op, d, variant, id=f"{op.name}-{d.name}-{variant}", marks=pytest.mark.ops(op))
             for op in sorted(GroupOp.ALU, key=lambda o: o.value) for d in op_dtypes(op) for variant in ("loaded", "const", "lanes")]
for op in GroupOp.ALU: COVERED.setdefault(op, []).append("test_alu")

@pytest.mark.parametrize("op,dtype,variant", ALU_CASES)
def test_alu(device, op, dtype, variant):
  skip_unsupported(device, *operand_dtypes(op, dtype))
  if variant not in variants_on(device, op, dtype): pytest.skip(f"{device} has no vector lanes for {op.name} on {dtype.name}")
  result = alu_results(device, op, dtype)[variant]
  if isinstance(result, Exception): raise result
  check_no_mismatches(device, result)

def unary_in_lanes(device: str, op: Ops, dtype: DType, x: np.ndarray) -> np.ndarray:
  """op on each element of x, computed a whole vector of lanes at a time (len(x) a multiple of 16)."""
  width = lanes_width(op, dtype, Device[device].renderer)
  k = Kernel()
  src, out = k.input(dtype, x.tolist()), k.output(dtype, len(x))
  at = loop(len(x) // width, 0) * width + loop(width, 1, "UPCAST")
  return np.array(k.run(device, f"{op.name}_{dtype.name}_range", store(out, at, UOp(op, dtype, (load(src, at),))))[1], NP[dtype])

# log2 in lanes is the device's own too: within 3 ulp of log2(x) for positive x from the smallest subnormal to the
# largest float, near 1 included (where the result is small); its edge values are the lanes variant's.
@covers(Ops.LOG2)
@pytest.mark.parametrize("dtype", [dtypes.float32, dtypes.float64], ids=lambda d: d.name)
def test_log2_in_lanes_is_within_3_ulp_over_its_whole_range(device, dtype):
  if "lanes" not in variants_on(device, Ops.LOG2, dtype): pytest.skip(f"{device} has no vector lanes for {dtype.name}")
  npdt, (lo, hi), rng = NP[dtype], {dtypes.float32: (-149, 128), dtypes.float64: (-1074, 1024)}[dtype], np.random.default_rng(0)
  x = np.concatenate([2.0 ** rng.uniform(lo, hi, 8000), rng.uniform(0.5, 2, 4000), 1 + rng.uniform(-1e-3, 1e-3, 4000)]).astype(npdt)
  x = np.where(np.isfinite(x) & (x > 0), x, 1).astype(npdt)
  got = unary_in_lanes(device, Ops.LOG2, dtype, x)
  want = np.log2(x.astype(np.float64)).astype(npdt)
  ulps = np.abs(got - want) / np.spacing(np.abs(want))
  assert ulps.max() <= 3, f"log2 on {device} in lanes: {ulps.max()} ulp off at x = {x[ulps.argmax()]!r}"

# A constant operand of a vector op is broadcast into every lane bit for bit: -0.0 stays -0.0 (`x + 0` would not).
@covers(Ops.WHERE)
def test_a_constant_broadcast_into_lanes_keeps_minus_zero(device):
  if "lanes" not in variants_on(device, Ops.WHERE, dtypes.float32): pytest.skip(f"{device} has no vector lanes for WHERE")
  width = lanes_width(Ops.WHERE, dtypes.float32, Device[device].renderer)
  k, cond = Kernel(), [i % 3 == 0 for i in range(4 * width)]
  c, x, out = k.input(dtypes.bool, cond), k.input(dtypes.float32, [1.5] * len(cond)), k.output(dtypes.float32, len(cond))
  outer, lanes = loop(4, 0), loop(width, 1, "UPCAST")
  at = outer * width + lanes
  got = k.run(device, "WHERE_minus_zero", store(out, at, UOp(Ops.WHERE, dtypes.float32, (load(c, at), load(x, at), UOp.const(dtypes.float32, -0.0)))))[2]
  assert [bits(g) for g in got] == [bits(1.5 if b else -0.0) for b in cond]

# exp2 in lanes is the device's own (the CPU's is a polynomial, chapter 12's backend notes), not its math library's:
# over the whole range where the result is neither 0 nor inf, and just past both ends, it is within 1 ulp of 2^x,
# subnormal results included, and exactly 0 and inf beyond.
@covers(Ops.EXP2)
@pytest.mark.parametrize("dtype", [dtypes.float32, dtypes.float64], ids=lambda d: d.name)
def test_exp2_in_lanes_is_within_an_ulp_over_its_whole_range(device, dtype):
  if "lanes" not in variants_on(device, Ops.EXP2, dtype): pytest.skip(f"{device} has no vector lanes for {dtype.name}")
  npdt, (lo, hi) = NP[dtype], {dtypes.float32: (-152, 130), dtypes.float64: (-1077, 1026)}[dtype]
  x = np.concatenate([np.linspace(lo, hi, 16 * 1000), np.random.default_rng(0).uniform(-4, 4, 16 * 100), [-0.0, 1e-30, -1e-30, 0.5, -0.5, 1.5]])
  x = np.concatenate([x, np.zeros(-len(x) % 16)]).astype(npdt)
  got = unary_in_lanes(device, Ops.EXP2, dtype, x)
  with np.errstate(over="ignore"): want = np.exp2(x.astype(np.float64)).astype(npdt)  # float64's exp2 rounded: within half an ulp
  finite = np.isfinite(want) & (want != 0)
  ulps = np.abs(got[finite] - want[finite]) / np.spacing(want[finite])
  assert ulps.max() <= 1, f"exp2 on {device} in lanes: {ulps.max()} ulp off at x = {x[finite][ulps.argmax()]!r}"
  assert np.array_equal(got[~finite], want[~finite]), f"exp2 on {device} in lanes should be 0 and inf beyond the range"

# ## CAST and BITCAST
#
# One kernel per source dtype (and variant) converts its edge values to every destination dtype at once; each
# (source, destination) pair is its own test, reading its part of the shared run.

@functools.cache
def cast_values(src: DType) -> tuple:
  """The edge values, and for floats the ends of every int's range and their neighbours: where saturation starts."""
  if not src.is_float: return edges(src)
  ends = [v for d in dtypes.all() if d.is_int for end in (d.min, d.max + 1) for v in (end, end - 0.5, end + 0.5, -end)]
  values = list(edges(src))
  for v in (to_dtype(float(v), src) for v in [*ends, 255.9, 256.0, -0.9, 2**31 - 128, 2**63 - 1024, 2**64 - 2048]):
    if not math.isinf(v) and bits(v) not in {bits(x) for x in values}: values.append(v)
  return tuple(values)

def bitcast_targets(src: DType) -> list[DType]:
  return [d for d in dtypes.all() if d.itemsize == src.itemsize and dtypes.bool not in (d, src)]

@functools.cache
def run_conversions(device: str, op: Ops, src: DType, variant: str) -> dict[DType, list[str]] | Exception:
  """Convert src's edge values to every target with one kernel; per target, the mismatches. Errors are kept, not raised,
  so every test that shares the run reports them."""
  supported = Device[device].renderer.supported_dtypes
  targets = [d for d in (dtypes.all() if op is Ops.CAST else bitcast_targets(src)) if d in supported]
  k, stores, checks = Kernel(), [], {}
  for i, dst in enumerate(targets):
    values = list(edges(src) if op is Ops.BITCAST else cast_values(src))
    want = [to_dtype(v, dst) if op is Ops.CAST else bitcast_value(v, src, dst) for v in values]
    out = k.output(dst, len(values))
    if variant == "loaded":
      r = loop(len(values), i)
      stores.append(store(out, r, UOp(op, dst, (load(k.input(src, values), r),))))
    else: stores.extend(store(out, j, UOp(op, dst, (UOp.const(src, v),))) for j, v in enumerate(values))
    checks[dst] = (out, [(f"{op.name}({'const ' if variant == 'const' else ''}{v!r}: {src.name} -> {dst.name})", w) for v, w in zip(values, want)])
  try: results = k.run(device, f"{op.name}_{src.name}_{variant}", *stores)
  except Exception as e: return e
  return {dst: compare(op.name, dst, cases, results[out.arg[0]]) for dst, (out, cases) in checks.items()}

def check_conversion(device: str, op: Ops, src: DType, dst: DType, variant: str) -> None:
  skip_unsupported(device, src, dst)
  result = run_conversions(device, op, src, variant)
  if isinstance(result, Exception): raise result
  check_no_mismatches(device, result[dst])

CAST_CASES = [pytest.param(s, d, v, id=f"{s.name}-{d.name}-{v}") for s in dtypes.all() for d in dtypes.all() for v in ("loaded", "const")]
BITCAST_CASES = [pytest.param(s, d, v, id=f"{s.name}-{d.name}-{v}") for s in dtypes.all() for d in bitcast_targets(s) for v in ("loaded", "const")]

@covers(Ops.CAST)
@pytest.mark.parametrize("src,dst,variant", CAST_CASES)
def test_cast(device, src, dst, variant): check_conversion(device, Ops.CAST, src, dst, variant)

@covers(Ops.BITCAST)
@pytest.mark.parametrize("src,dst,variant", BITCAST_CASES)
def test_bitcast(device, src, dst, variant): check_conversion(device, Ops.BITCAST, src, dst, variant)

# ## Kernel structure

@covers(Ops.CONST, Ops.STORE, Ops.INDEX, Ops.PARAM, Ops.SINK)
@pytest.mark.parametrize("dtype", dtypes.all(), ids=lambda d: d.name)
def test_every_edge_constant_is_stored_exactly(device, dtype):
  skip_unsupported(device, dtype)
  k = Kernel()
  out = k.output(dtype, len(edges(dtype)))
  got = k.run(device, f"CONST_{dtype.name}", *(store(out, i, UOp.const(dtype, v)) for i, v in enumerate(edges(dtype))))[0]
  check_no_mismatches(device, compare("CONST", dtype, [(f"CONST {v!r}", v) for v in edges(dtype)], got))

@covers(Ops.LOAD, Ops.STORE, Ops.INDEX, Ops.RANGE, Ops.END)
@pytest.mark.parametrize("dtype", dtypes.all(), ids=lambda d: d.name)
def test_load_and_store_copy_every_edge_value(device, dtype):
  skip_unsupported(device, dtype)
  k = Kernel()
  values = list(edges(dtype))
  src, out, r = k.input(dtype, values), k.output(dtype, len(values)), loop(len(values), 0)
  got = k.run(device, f"copy_{dtype.name}", store(out, r, load(src, r)))[1]
  check_no_mismatches(device, compare("LOAD/STORE", dtype, [(f"copy {v!r}", v) for v in values], got))

@covers(Ops.RANGE, Ops.END, Ops.DEFINE_ACC, Ops.ACCUMULATE)
@pytest.mark.parametrize("n", [0, 1, 2, 7, 100])
def test_range_runs_exactly_n_times(device, n):
  # out[r] = r for every r < n, and an accumulator counts the trips: a loop bound off by one changes the count
  # (and writes into the guard after the buffer).
  k = Kernel()
  out, count = k.output(dtypes.int32, n), k.output(dtypes.int32, 1)
  r_store, r_count = loop(n, 0), loop(n, 1, "REDUCE")
  acc = UOp(Ops.DEFINE_ACC, dtypes.int32, (i32(0), r_count))
  total = UOp(Ops.ACCUMULATE, dtypes.int32, (acc, acc + i32(1)))
  got = k.run(device, f"RANGE_{n}", store(out, r_store, r_store), store(count, 0, total))
  assert got[0] == list(range(n)), f"RANGE({n}) on {device}: stored indices {got[0]}, want {list(range(n))}"
  assert got[1] == [n], f"RANGE({n}) on {device}: the loop body ran {got[1][0]} times, want {n}"

@covers(Ops.RANGE, Ops.END, Ops.DEFINE_ACC, Ops.ACCUMULATE)
def test_nested_ranges_and_an_accumulator_reset_by_the_outer_loop(device):
  # out[i] = sum over j < 5 of in[i*5 + j]: the accumulator starts again at every i
  k = Kernel()
  values = [float(v) for v in range(-7, 8)]
  src, out = k.input(dtypes.float32, values), k.output(dtypes.float32, 3)
  i, j = loop(3, 0), loop(5, 1, "REDUCE")
  acc = UOp(Ops.DEFINE_ACC, dtypes.float32, (UOp.const(dtypes.float32, 0.0), j))
  total = UOp(Ops.ACCUMULATE, dtypes.float32, (acc, acc + load(src, i * 5 + j)))
  got = k.run(device, "nested_sum", store(out, i, total))[1]
  assert got == [sum(values[5*a:5*a+5]) for a in range(3)], f"nested RANGE sum on {device}: got {got}"

ACCUMULATORS = [(Ops.ADD, dtypes.float32), (Ops.MUL, dtypes.float64), (Ops.MAX, dtypes.float16), (Ops.ADD, dtypes.int64),
                (Ops.MAX, dtypes.int8), (Ops.MAX, dtypes.uint16), (Ops.MUL, dtypes.int32), (Ops.ADD, dtypes.uint8)]

@covers(Ops.DEFINE_ACC, Ops.ACCUMULATE)
@pytest.mark.parametrize("op,dtype", ACCUMULATORS, ids=[f"{o.name}-{d.name}" for o, d in ACCUMULATORS])
def test_accumulator_starts_at_the_identity_and_folds_every_element(device, op, dtype):
  skip_unsupported(device, dtype)
  values = [to_dtype(v, dtype) for v in ([3, -2, 7, 1, -5, 2] if not dtype.is_unsigned else [3, 200, 7, 1, 5, 2])]
  identity = {Ops.ADD: 0, Ops.MUL: 1, Ops.MAX: dtype.min}[op]
  k = Kernel()
  src, out, r = k.input(dtype, values), k.output(dtype, 1), loop(len(values), 0, "REDUCE")
  acc = UOp(Ops.DEFINE_ACC, dtype, (UOp.const(dtype, identity), r))
  got = k.run(device, f"acc_{op.name}_{dtype.name}", store(out, 0, UOp(Ops.ACCUMULATE, dtype, (acc, UOp(op, dtype, (acc, load(src, r)))))))[1]
  want = identity
  for v in values: want = exec_alu(op, dtype, [want, v])
  assert same(dtype, got[0], want), f"{op.name} accumulator over {dtype.name} on {device}: got {got[0]!r}, want {want!r}"

@covers(Ops.LOAD, Ops.INDEX)
def test_gated_load_reads_zero_and_never_touches_memory_where_invalid(device):
  # out[r] = in[r - 3] where r >= 3, else 0: the invalid addresses lie before the buffer and must not be read
  k = Kernel()
  values = [1.5, -2.0, 3.25, 4.0]
  src, out, r = k.input(dtypes.float32, values), k.output(dtypes.float32, 7), loop(7, 0)
  valid = UOp(Ops.CMPLT, dtypes.bool, (i32(2), r))
  got = k.run(device, "gated_load", store(out, r, load(src, r + i32(-3), valid)))[1]
  assert got == [0.0, 0.0, 0.0] + values, f"gated LOAD on {device}: got {got}"

def check_gated_store(device: str) -> None:
  # out[r] = r where r < 3: a STORE through an INDEX whose valid is false must not write (the reference skips it).
  # The lowering never makes such a store today: every STORE it builds is valid everywhere.
  k = Kernel()
  out, r = k.output(dtypes.int32, 6), loop(6, 0)
  valid = UOp(Ops.CMPLT, dtypes.bool, (r, i32(3)))
  got = k.run(device, "gated_store", UOp(Ops.STORE, dtypes.void, (index(out, r, valid), r)))[0]
  poison = struct.unpack("<i", bytes([POISON]) * 4)[0]
  assert got == [0, 1, 2, poison, poison, poison], f"gated STORE on {device}: got {got}"

@covers(Ops.STORE, Ops.INDEX)
def test_gated_store_writes_only_where_valid(device): check_gated_store(device)

@covers(Ops.PARAM, Ops.SINK)
def test_params_bind_by_slot_even_when_unused_or_out_of_order(device):
  # slot 1 is never used, slot 3 is read before slot 2, and the SINK holds two stores
  k = Kernel()
  a, _, b, c = k.output(dtypes.int32, 2), k.input(dtypes.float64, [9.0]), k.input(dtypes.int32, [10, 20]), k.input(dtypes.int32, [1, 2])
  out2, r = k.output(dtypes.int16, 2), loop(2, 0)
  got = k.run(device, "params", store(a, r, load(c, r) * load(b, r)), store(out2, r, load(c, r).cast(dtypes.int16)))
  assert got[0] == [10, 40] and got[4] == [1, 2], f"PARAM binding on {device}: got {got[0]} and {got[4]}"

@covers(Ops.WHERE, Ops.CMPLT)
def test_where_picks_per_element_inside_a_loop(device):
  k = Kernel()
  src, out, r = k.input(dtypes.int32, [5, -3, 0, 8]), k.output(dtypes.int32, 4), loop(4, 0)
  x = load(src, r)
  got = k.run(device, "where_loop", store(out, r, UOp(Ops.WHERE, dtypes.int32, (UOp(Ops.CMPLT, dtypes.bool, (x, i32(0))), x * -1, x))))[1]
  assert got == [5, 3, 0, 8], f"WHERE in a loop on {device}: got {got}"

# ## Tensor-level ops
#
# These ops live in the tensor graph and disappear during scheduling and lowering; they are tested by running
# Tensor programs on the device, against numpy, after checking that the op really is in the graph.

class OpsSeen(tiny.Tracer):
  """Records every op that appears in any graph_rewrite (its inputs, each match's before and after, its output)."""
  def __init__(self): self.ops: set[Ops] = set()
  def _see(self, u) -> None:
    if isinstance(u, UOp): self.ops.update(x.op for x in u.toposort())
  def begin(self, name, root, *rest): self._see(root)
  def match(self, before, after, rule): self._see(before); self._see(after)
  def end(self, result): self._see(result)

def realize_seeing_ops(*tensors: Tensor) -> set[Ops]:
  seen, saved, saved_programs = OpsSeen(), tiny.tracer, tiny._programs
  tiny.tracer, tiny._programs = seen, {}  # a fresh program cache: lowering runs even for a kernel built before
  try: Tensor.realize(*tensors)
  finally: tiny.tracer, tiny._programs = saved, saved_programs
  return seen.ops

def ops_in(t: Tensor) -> set[Ops]: return {u.op for u in t.uop.toposort()}

def data(shape, dtype=np.float32, seed=0) -> np.ndarray:
  return np.random.default_rng(seed).uniform(-4, 4, shape).astype(dtype)

def assert_values(t: Tensor, want: np.ndarray, what: str) -> None:
  got = t.numpy()
  assert got.shape == want.shape, f"{what}: shape {got.shape}, want {want.shape}"
  np.testing.assert_array_equal(got, want, err_msg=what)  # movement and these reduces are exact

@covers(Ops.BUFFER, Ops.DEVICE)
@pytest.mark.parametrize("dtype", dtypes.all(), ids=lambda d: d.name)
def test_buffer_round_trips_every_edge_value(device, dtype):
  skip_unsupported(device, dtype)
  values = np.array(edges(dtype), dtype=NP[dtype])
  t = Tensor(values, device=device)
  assert {Ops.BUFFER, Ops.DEVICE} <= ops_in(t) and t.device == device
  got = t.numpy()
  assert got.tobytes() == values.tobytes() or (dtype.is_float and np.array_equal(got, values, equal_nan=True)), f"{dtype.name} on {device}: {got}"

@covers(Ops.COPY)
@pytest.mark.parametrize("dtype", dtypes.all(), ids=lambda d: d.name)
def test_copy_to_and_from_another_device_keeps_every_value(device, dtype):
  others = [d for d in ("PYTHON", "CPU") if d != device and d in Device.names()]
  if not others: pytest.skip("COPY needs a second device")
  skip_unsupported(device, dtype)
  values = np.array(edges(dtype), dtype=NP[dtype])
  there = Tensor(values, device=others[0]).to(device)
  back = Tensor(values, device=device).flip(0).to(others[0])  # a computed source: a kernel runs before the copy
  assert Ops.COPY in ops_in(there) and Ops.COPY in ops_in(back)
  for t, want in ((there, values), (back, values[::-1])):
    got = t.numpy()
    assert got.tobytes() == want.tobytes() or (dtype.is_float and np.array_equal(got, want, equal_nan=True)), f"COPY {dtype.name}: {got}"

MOVEMENT = {
  Ops.RESHAPE: (lambda t: t.permute(1, 0, 2).reshape(3, 8) * 1, lambda a: a.transpose(1, 0, 2).reshape(3, 8)),
  Ops.PERMUTE: (lambda t: t.permute(2, 0, 1) * 1, lambda a: a.transpose(2, 0, 1)),
  Ops.EXPAND: (lambda t: t[:, :1, :].expand(2, 5, 4) * 1, lambda a: np.broadcast_to(a[:, :1, :], (2, 5, 4))),
  Ops.PAD: (lambda t: t.pad(((1, 0), (0, 2), (1, 1))) * 1, lambda a: np.pad(a, ((1, 0), (0, 2), (1, 1)))),
  Ops.SHRINK: (lambda t: t.shrink(((1, 2), (0, 2), (1, 4))) * 1, lambda a: a[1:2, 0:2, 1:4]),
  Ops.FLIP: (lambda t: t.flip((0, 2)) * 1, lambda a: a[::-1, :, ::-1]),
}

@pytest.mark.parametrize("op", list(MOVEMENT), ids=lambda o: o.name)
def test_movement_op_reads_the_right_elements(device, op):
  fn, ref = MOVEMENT[op]
  a = data((2, 3, 4))
  t = fn(Tensor(a, device=device))
  assert op in ops_in(t), f"{op.name} is not in the graph of this example"
  assert_values(t, ref(a).astype(np.float32), f"{op.name} on {device}")
for op in MOVEMENT: COVERED.setdefault(op, []).append("test_movement_op_reads_the_right_elements")
test_movement_op_reads_the_right_elements = pytest.mark.ops(*MOVEMENT)(test_movement_op_reads_the_right_elements)

@covers(Ops.REDUCE_AXIS, Ops.AT, Ops.REDUCE)
@pytest.mark.parametrize("op", [Ops.ADD, Ops.MUL, Ops.MAX], ids=lambda o: o.name)
def test_reduce_axis_lowers_through_at_and_reduce(device, op):
  a = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int32)
  t = {Ops.ADD: lambda x: x.sum(1), Ops.MUL: lambda x: x.prod(1), Ops.MAX: lambda x: x.max(1)}[op](Tensor(a, device=device))
  assert Ops.REDUCE_AXIS in ops_in(t)
  seen = realize_seeing_ops(t)
  assert {Ops.AT, Ops.REDUCE} <= seen, f"lowering a REDUCE_AXIS never made {({Ops.AT, Ops.REDUCE} - seen)}"
  assert_values(t, {Ops.ADD: a.sum(1), Ops.MUL: a.prod(1), Ops.MAX: a.max(1)}[op].astype(np.int32), f"REDUCE_AXIS {op.name} on {device}")

@covers(Ops.ARANGE)
def test_arange(device):
  t = Tensor.arange(2, 17, 3, device=device)
  assert Ops.ARANGE in ops_in(t)
  assert_values(t, np.arange(2, 17, 3, dtype=np.int32), f"ARANGE on {device}")

@covers(Ops.CONTIGUOUS)
def test_contiguous_stores_a_permuted_view_in_order(device):
  a = data((3, 4))
  t = Tensor(a, device=device).permute(1, 0).contiguous()
  assert Ops.CONTIGUOUS in ops_in(t)
  assert_values(t, np.ascontiguousarray(a.T), f"CONTIGUOUS on {device}")

@covers(Ops.DETACH)
def test_detach_keeps_values_and_stops_gradients(device):
  x = Tensor([1.0, -2.0, 3.0], device=device, requires_grad=True)
  y = x.detach() * x
  assert Ops.DETACH in ops_in(y)
  y.sum().backward()
  assert_values(y, np.array([1.0, 4.0, 9.0], dtype=np.float32), f"DETACH on {device}")
  assert_values(x.grad, np.array([1.0, -2.0, 3.0], dtype=np.float32), f"gradient through DETACH on {device}")

@covers(Ops.MMA)
@pytest.mark.parametrize("dtype", [dtypes.float16, dtypes.float32], ids=lambda d: d.name)
def test_mma_computes_a_matrix_product_in_tiles(device, dtype):
  # MMA is made only by an opt of a GPU's own (CUDA's TILE), for products big enough to fill the GPU with tiles
  skip_unsupported(device, dtype)
  a, b = data((1536, 96), NP[dtype], 1), data((96, 1664), NP[dtype], 2)  # 12x13 tiles; K of 3 or 6 stages
  t = Tensor(a, device=device) @ Tensor(b, device=device)
  (item,), _ = tiny.create_schedule([t.uop])
  opts = []
  tiny.lower(item.ast, lambda k: opts.extend(Device[device].renderer.choose_opts(k)) or k)
  if not any(o.op == "TILE" for o in opts): pytest.skip(f"{device}'s renderer computes matrix products without tiles")
  assert Ops.MMA in realize_seeing_ops(t)
  tolerance = {"rtol": 1e-3, "atol": 1e-2} if dtype == dtypes.float16 else {"rtol": 1e-5, "atol": 1e-4}
  np.testing.assert_allclose(t.numpy().astype(np.float64), a.astype(np.float64) @ b, **tolerance, err_msg=f"MMA on {device}")

@covers(Ops.ASSIGN, Ops.AFTER)
def test_assign_writes_the_buffer_and_later_reads_come_after_it(device):
  x = Tensor([1, 2, 3], device=device, dtype=dtypes.int32)
  old = x * 10                         # reads x before the assign
  x.assign(x + 5)
  new = x * 10                         # reads x after the assign: through an AFTER
  assert Ops.ASSIGN in ops_in(new)
  seen = realize_seeing_ops(old, new)
  assert Ops.AFTER in seen, "scheduling an assign read by a later kernel made no AFTER"
  assert_values(old, np.array([10, 20, 30], dtype=np.int32), f"read before ASSIGN on {device}")
  assert_values(new, np.array([60, 70, 80], dtype=np.int32), f"read after ASSIGN on {device}")
  assert_values(x, np.array([6, 7, 8], dtype=np.int32), f"ASSIGN on {device}")
