# # tiny
#
# tiny is a deep learning framework you can read from top to bottom in an
# afternoon. It follows the ideas of tinygrad: one intermediate representation
# (the UOp), one graph rewrite engine that does every transformation, lazy
# tensors, and kernels generated and compiled on the fly for each device.
#
# This file is the framework and its documentation. It is written to be read
# in order: every idea is introduced just before the first code that needs it.
# A running example threads through the chapters: the expression
# `(a*b).sum()`. We follow it from a Tensor, to a graph of UOps, to a kernel,
# to generated source code, to a number.
#
# The chapters:
#
# 1. Helpers and settings
# 2. Data types
# 3. UOps
# 4. The rewrite engine
# 5. Symbolic algebra
# 6. Memory and devices
# 7. Tensors, the lazy core
# 8. Autograd
# 9. Scheduling
# 10. Lowering
# 11. Optimizing
# 12. Linearizing and rendering
# 13. Compiling and running
# 14. The JIT
# 15. The reference device
# 16. The rest of the Tensor API
# 17. nn
# 18. Seeing inside
#
# tiny consumes nothing: this file imports only the Python standard library.
from __future__ import annotations
import atexit, concurrent.futures, contextlib, ctypes, functools, gzip, hashlib, heapq, http.server, importlib.util, inspect, itertools, json
import linecache, math, os, pathlib, string, struct, sys, tempfile, time, types, warnings, weakref
from dataclasses import dataclass
from enum import Enum, auto
from typing import Any, Callable, Iterable, Iterator, Sequence

# # 1. Helpers and settings
#
# A framework is steered from the outside: how much to print, which device to
# use, whether to record rewrites for the viewer. tiny reads these settings
# from environment variables, so `DEBUG=2 python train.py` works without
# touching code, and lets code override them for a block with
# `with Context(DEBUG=2): ...`.
#
# ## Settings from the environment
#
# A `ContextVar` is one named setting. Its value is read from the environment
# once, when it is created; `Context` swaps values in and restores them on
# exit. Every setting registers itself in `ContextVar.registry`, so the docs
# can list them all and nothing is hidden.

def getenv(key: str, default: Any = 0) -> Any:
  """Read an environment variable, converted to the type of `default`; a value that does not convert names the variable."""
  value = os.environ.get(key)
  if value is None: return default
  try: return type(default)(value)
  except ValueError:
    raise ValueError(f"environment variable {key}={value!r} must be {'an integer' if isinstance(default, int) else 'a number'}") from None

class ContextVar:
  registry: dict[str, ContextVar] = {}
  def __init__(self, key: str, default: Any, doc: str = ""):
    self.key, self.doc = key, doc
    try: self.value = getenv(key, default)
    except ValueError as e: raise ValueError(f"{e} ({key}: {doc})") from None  # the doc says what is allowed
    ContextVar.registry[key] = self
  def __bool__(self) -> bool: return bool(self.value)
  def __ge__(self, other: int) -> bool: return self.value >= other
  def __gt__(self, other: int) -> bool: return self.value > other
  def __lt__(self, other: int) -> bool: return self.value < other
  def __le__(self, other: int) -> bool: return self.value <= other
  def __repr__(self) -> str: return f"{self.key}={self.value!r}"

class Context(contextlib.ContextDecorator):
  """Temporarily override settings: `with Context(DEBUG=2): ...`."""
  def __init__(self, **overrides: Any):
    unknown = [k for k in overrides if k not in ContextVar.registry and k not in TINYGRAD_ONLY_SETTINGS]
    if unknown: raise KeyError(f"unknown setting(s) {unknown}; known: {sorted(ContextVar.registry)}")
    self.overrides = {k: v for k, v in overrides.items() if k in ContextVar.registry}
  def __enter__(self) -> Context:
    self.saved = {k: ContextVar.registry[k].value for k in self.overrides}
    for k, v in self.overrides.items(): ContextVar.registry[k].value = v
    return self
  def __exit__(self, *exc: Any) -> None:
    for k, v in self.saved.items(): ContextVar.registry[k].value = v

# ## The settings
#
# The settings most chapters read. A chapter that has a setting of its own
# defines it where it is used: `REWRITE_LIMIT`, `NOOPT`, `BEAM`, `VIZ_PORT`.
DEBUG = ContextVar("DEBUG", 0, "1: a line per realize; 2: a line per kernel; 3: kernel UOps and opts; 4: generated source; 5: linearized program")
DEVICE = ContextVar("DEVICE", "", "default device (PYTHON, CPU, ...); empty means the fastest that works")
JIT = ContextVar("JIT", 1, "0 makes TinyJit run the function every time instead of replaying kernels")
VIZ = ContextVar("VIZ", "", "1 records every graph rewrite and writes tiny-viz.html here at exit (a path ending .html: there); 'text' prints them")
TRAINING = ContextVar("TRAINING", 0, "1: dropout drops and BatchNorm uses batch statistics, as inside `Tensor.train()`")

# tinygrad's settings for machinery tiny does not have (its kernel search, its
# other backends, its scheduler's options): `Context` accepts these names, so
# tinygrad code runs unchanged, and they change nothing.
TINYGRAD_ONLY_SETTINGS = frozenset("""IMAGE FLOAT16 JIT_BATCH_SIZE WINO CAPTURING TRACEMETA TC TC_SELECT TC_OPT AMX TRANSCENDENTAL
  NOLOCALS SPLIT_REDUCEOP NO_MEMORY_PLANNER LRU RING ALL2ALL CACHELEVEL IGNORE_BEAM_CACHE DEVECTORIZE VALIDATE_WITH_CPU DISABLE_FAST_IDIV
  FUSE_OPTIM ALLOW_DEVICE_USAGE MAX_BUFFER_SIZE PROFILE SPEC IGNORE_OOB CHECK_OOB PCONTIG USE_ATOMICS ALLOW_TF32""".split())

# ## Small helpers
#
# A few small helpers used throughout. `prod` and `argsort` are the math;
# `flatten` turns a list of lists into one list.
def prod(xs: Iterable[Any], start: Any = 1) -> Any: return functools.reduce(lambda a, b: a * b, xs, start)
def argsort(xs: Sequence[Any]) -> list[int]: return sorted(range(len(xs)), key=xs.__getitem__)
def flatten(xss: Iterable[Iterable[Any]]) -> list[Any]: return [x for xs in xss for x in xs]
def all_same(xs: Sequence[Any]) -> bool: return all(x == xs[0] for x in xs)

# # 2. Data types
#
# Every value in tiny has a `DType`: its name, its size in bytes, the
# `struct` format character that packs it, and a *priority* used to order the
# types. The dtypes are the ones C and every accelerator agree on: booleans,
# signed and unsigned integers of 8 to 64 bits, and IEEE floats of 16, 32 and
# 64 bits. (bfloat16 and the fp8 formats are left out: they need software
# conversion on most CPUs and add nothing to the ideas.)
#
# ## DType and the dtypes
#
# `void` is the type of things that are not values (a kernel, a store).

# There is one object per dtype, so `==` and hashing are by identity (cheap: every UOp's key holds a dtype), and
# a copy or an unpickled dtype is the one in `dtypes`.
@dataclass(frozen=True, eq=False)
class DType:
  priority: int
  itemsize: int
  name: str
  fmt: str  # struct format character
  def __repr__(self) -> str: return f"dtypes.{self.name}"
  def __reduce__(self) -> tuple: return getattr, (dtypes, self.name)
  @property
  def is_float(self) -> bool: return self.fmt in "efd"
  @property
  def is_int(self) -> bool: return self.fmt in "bBhHiIqQ"
  @property
  def is_unsigned(self) -> bool: return self.fmt in "BHIQ"
  @property
  def min(self) -> Any: return -math.inf if self.is_float else False if self.fmt == "?" else 0 if self.is_unsigned else -2**(8*self.itemsize-1)
  @property
  def max(self) -> Any:
    return math.inf if self.is_float else True if self.fmt == "?" else 2**(8*self.itemsize) - 1 if self.is_unsigned else 2**(8*self.itemsize-1) - 1

class dtypes:
  void = DType(-1, 0, "void", "")
  bool = DType(0, 1, "bool", "?")
  int8, uint8 = DType(1, 1, "int8", "b"), DType(2, 1, "uint8", "B")
  int16, uint16 = DType(3, 2, "int16", "h"), DType(4, 2, "uint16", "H")
  int32, uint32 = DType(5, 4, "int32", "i"), DType(6, 4, "uint32", "I")
  int64, uint64 = DType(7, 8, "int64", "q"), DType(8, 8, "uint64", "Q")
  float16, float32, float64 = DType(9, 2, "float16", "e"), DType(10, 4, "float32", "f"), DType(11, 8, "float64", "d")
  half, float, double, int, long = float16, float32, float64, int32, int64
  uchar, char, short, ushort, uint, ulong = uint8, int8, int16, uint16, uint32, uint64
  default_float, default_int = float32, int32
  @staticmethod
  def min(dtype: DType) -> Any: return dtype.min  # tinygrad's spelling: dtypes.min(dtypes.int8)
  @staticmethod
  def max(dtype: DType) -> Any: return dtype.max
  @staticmethod
  def all() -> list[DType]:
    return [dtypes.bool, dtypes.int8, dtypes.uint8, dtypes.int16, dtypes.uint16, dtypes.int32, dtypes.uint32,
            dtypes.int64, dtypes.uint64, dtypes.float16, dtypes.float32, dtypes.float64]
  @staticmethod
  def from_py(x: Any) -> DType:
    """The dtype of a Python value: bool, int or float (the defaults)."""
    if isinstance(x, (list, tuple)): return max((dtypes.from_py(v) for v in x), key=lambda d: d.priority, default=dtypes.default_float)
    return dtypes.bool if isinstance(x, bool) else dtypes.default_int if isinstance(x, int) else dtypes.default_float


# ## Promotion
#
# When two dtypes meet in one operation (`int8 + float16`), the result has the
# smallest type that both can be promoted to. tiny uses the same lattice as
# JAX and tinygrad: each type lists the types it promotes to directly, and the
# result is the least upper bound, the lowest-priority type reachable from
# both.
#
# ```
# bool -> int8, uint8
# int8 -> int16                    uint8  -> int16, uint16
# int16 -> int32                   uint16 -> int32, uint32
# int32 -> int64                   uint32 -> int64, uint64
# int64 -> float16                 uint64 -> float16
# float16 -> float32 -> float64
# ```
#
# So `int8 + uint8` is `int16` (the smallest type holding both ranges),
# `int32 + uint32` is `int64`, `int64 + uint64` and any int with a float give
# the float, and `float16 + float32` is `float32`. Python scalars do not take
# part: `int32_tensor + 1` stays int32 and `Tensor([1, 2]) * 2.5` becomes the
# default float (chapter 7).
_promotes_to: dict[DType, list[DType]] = {
  dtypes.bool: [dtypes.int8, dtypes.uint8], dtypes.int8: [dtypes.int16], dtypes.int16: [dtypes.int32],
  dtypes.int32: [dtypes.int64], dtypes.int64: [dtypes.float16], dtypes.uint8: [dtypes.int16, dtypes.uint16],
  dtypes.uint16: [dtypes.int32, dtypes.uint32], dtypes.uint32: [dtypes.int64, dtypes.uint64], dtypes.uint64: [dtypes.float16],
  dtypes.float16: [dtypes.float32], dtypes.float32: [dtypes.float64], dtypes.float64: []}

@functools.cache
def _upward(d: DType) -> frozenset[DType]: return frozenset([d]).union(*(_upward(p) for p in _promotes_to[d]))

def least_upper_dtype(*ds: DType) -> DType: return min(frozenset.intersection(*(_upward(d) for d in ds)), key=lambda d: d.priority)

# ## Truncation
#
# The reference device and constant folding compute in Python, whose ints are
# unbounded and whose floats are all 64-bit. To agree bit for bit with C, every
# result is pushed through `truncate`: integers wrap around modulo 2^bits,
# floats are rounded to their width (overflowing to infinity, as a C cast
# does). ctypes performs the same double-to-float conversion C does.
#
# A float becomes an int the way C casts one where C defines it: truncated
# toward zero. Where C does not (nan, infinities, values beyond the int's
# range) tiny *saturates*: nan is 0, and everything else too big or too small
# becomes the int's largest or smallest value (`300.0` as uint8 is 255,
# `-1.0` is 0, `inf` as int32 is 2147483647). CUDA's conversions, Rust and
# WebAssembly's saturating truncation give the same answers; a plain C cast
# gives whatever the CPU's instruction does (INT_MIN on x86), so the C
# renderer spells the saturation out (chapter 12).

def _wrap_int(bits: int, signed: bool) -> Callable[[Any], int]:
  def wrap(x: Any) -> int:
    x = int(x) % (1 << bits)
    return x - (1 << bits) if signed and x >= 1 << (bits - 1) else x
  return wrap

def _to_half(x: float) -> float:
  try: return struct.unpack("e", struct.pack("e", float(x)))[0]
  except OverflowError: return math.copysign(math.inf, x)

def _to_float(x: Any) -> float:
  # An int too big for a double must be rounded to float32 in one step, as C does (through a double it
  # would be rounded twice): keep its top 24 bits, round half to even.
  if not isinstance(x, int) or abs(x) < 2**53: return ctypes.c_float(x).value
  shift = abs(x).bit_length() - 24
  top, rest = divmod(abs(x), 1 << shift)
  if rest > 1 << (shift - 1) or (rest == 1 << (shift - 1) and top & 1): top += 1
  return math.copysign(float(top << shift), x)

truncate: dict[DType, Callable[[Any], Any]] = {
  dtypes.bool: bool, dtypes.float16: _to_half, dtypes.float32: _to_float, dtypes.float64: float,
  **{d: _wrap_int(8*d.itemsize, not d.is_unsigned) for d in dtypes.all() if d.is_int}}

def to_dtype(x: Any, dtype: DType) -> Any:
  """Convert a Python value the way a C cast to `dtype` would; floats to ints truncate toward zero and saturate (above)."""
  if dtype.is_int and isinstance(x, float): x = 0 if x != x else dtype.min if x <= dtype.min else dtype.max if x >= dtype.max else math.trunc(x)
  return truncate[dtype](x)

# # 3. UOps
#
# Everything tiny computes is described by a graph of UOps ("micro
# operations"). A UOp is four things: an operation from `Ops`, the `dtype` of
# its result, a tuple of source UOps `src`, and an `arg` that holds whatever
# else the op needs (a constant's value, a reshape's new shape). The same
# vocabulary describes a tensor program (`RESHAPE`, `REDUCE_AXIS`), a kernel
# (`RANGE`, `LOAD`, `STORE`) and the arithmetic in between (`ADD`, `MUL`).
# Moving from one level to the next is rewriting one graph into another.
#
# UOps are *immutable* and *hash-consed*: building the same UOp twice returns
# the same Python object. A global cache maps `(op, dtype, src, arg)` to the
# live UOp with those fields. Three things follow for free:
#
# - `is` is structural equality, and a UOp is a cheap dict key;
# - common subexpressions are shared: `x*y + x*y` holds one `x*y`;
# - a rewrite that rebuilds an unchanged node gets the original back, which is
#   how `graph_rewrite` (chapter 4) knows it has reached a fixed point.
#
# The cache holds weak references, so a UOp nobody uses is freed.
#
# ## What each op is
#
# Every op's sources and argument, stated once; the chapter named in the last
# column explains it. Ops of the tensor graph describe whole tensors; kernel
# ops describe one element's computation inside loops.
#
# | op | sources | arg | meaning | chapter |
# |---|---|---|---|---|
# | `SINK` | the roots | | groups several outputs into one graph | 9 |
# | `DEVICE` | | device name | where a tensor lives | 6 |
# | `BUFFER` | `DEVICE` | `(id, size)` | device memory of `size` elements | 6 |
# | `CONST` | `DEVICE` (tensors only) | the value | one value, broadcast as needed | 7 |
# | `DEFINE_VAR` | | `(name, min, max)` | an integer known only at run time | 5 |
# | `ARANGE` | `DEVICE` | n | the int32 tensor 0, 1, ..., n-1 | 7 |
# | `COPY` | x | target device | x, on another device | 9 |
# | `CONTIGUOUS` | x | | x, stored in a buffer of its own | 9 |
# | `DETACH` | x | | x, through which no gradient flows | 8 |
# | `ASSIGN` | target, value | | value written into target's buffer | 9 |
# | `AFTER` | a view | schedule item | the view, once that item has run | 9 |
# | `RESHAPE`, `EXPAND` | x | new shape | x viewed in another shape | 10 |
# | `PERMUTE` | x | axis order | x with its axes reordered | 10 |
# | `PAD`, `SHRINK` | x | `((before, after), ...)`, `((begin, end), ...)` | x grown with zeros, or cut | 10 |
# | `FLIP` | x | a bool per axis | x reversed along the True axes | 10 |
# | `REDUCE_AXIS` | x | `(ADD or MUL or MAX, axes)` | x reduced over axes, kept with size 1 | 9, 10 |
# | `PARAM` | | `(index, size)` | the kernel's index-th buffer argument | 9 |
# | `AT` | x, one index per axis, valid | | x's element at that index (lowering only) | 10 |
# | `RANGE` | size (a CONST) | `(number, kind)` | a loop variable in [0, size); kinds LOOP, REDUCE (10), UPCAST, THREAD (11) | 10, 11 |
# | `END` | a `RANGE` | | closes that loop (linear programs only) | 11 |
# | `INDEX` | a `PARAM`, flat index, valid | | an address in a buffer | 10 |
# | `LOAD`, `STORE` | an `INDEX` (and the value) | | read or write memory where valid is true | 10 |
# | `REDUCE` | value, the ranges | ADD, MUL or MAX | value reduced over those loops | 10 |
# | `DEFINE_ACC` | initial value, the ranges | number | an accumulator over those loops | 10 |
# | `ACCUMULATE` | a `DEFINE_ACC`, new value | | the accumulator takes the new value on each trip; after its loops, its final value | 10 |
# | `MMA` | the `INDEX`es where tiles of A and B start | `(K, lda, ldb, ldc)` | a tile of the matrix product A @ B, to store (a GPU's own opt) | 11 |
# | ALU ops, `CAST`, `BITCAST` | the operands | | arithmetic, below | 3 |

class Ops(Enum):
  # tensor graph: where data comes from and how it is viewed
  SINK = auto(); DEVICE = auto(); BUFFER = auto(); CONST = auto(); DEFINE_VAR = auto(); ARANGE = auto()
  COPY = auto(); CONTIGUOUS = auto(); DETACH = auto(); ASSIGN = auto(); AFTER = auto()
  RESHAPE = auto(); PERMUTE = auto(); EXPAND = auto(); PAD = auto(); SHRINK = auto(); FLIP = auto()
  REDUCE_AXIS = auto()
  # kernels: loops, memory, accumulators
  PARAM = auto(); AT = auto(); RANGE = auto(); END = auto(); INDEX = auto(); LOAD = auto(); STORE = auto()
  REDUCE = auto(); DEFINE_ACC = auto(); ACCUMULATE = auto(); MMA = auto()
  # arithmetic (the ALU ops)
  CAST = auto(); BITCAST = auto()
  NEG = auto(); RECIPROCAL = auto(); SQRT = auto(); EXP2 = auto(); LOG2 = auto(); SIN = auto(); TRUNC = auto()
  ADD = auto(); MUL = auto(); IDIV = auto(); MOD = auto(); MAX = auto(); CMPLT = auto(); CMPNE = auto()
  AND = auto(); OR = auto(); XOR = auto(); SHL = auto(); SHR = auto()
  WHERE = auto()
  def __repr__(self) -> str: return f"Ops.{self.name}"
  __hash__ = object.__hash__  # Enum's hashes the name, in Python: every rule lookup and hash-consing key pays for it

class GroupOp:
  Unary = {Ops.NEG, Ops.RECIPROCAL, Ops.SQRT, Ops.EXP2, Ops.LOG2, Ops.SIN, Ops.TRUNC}
  Binary = {Ops.ADD, Ops.MUL, Ops.IDIV, Ops.MOD, Ops.MAX, Ops.CMPLT, Ops.CMPNE, Ops.AND, Ops.OR, Ops.XOR, Ops.SHL, Ops.SHR}
  ALU = Unary | Binary | {Ops.WHERE}
  Elementwise = ALU | {Ops.CAST, Ops.BITCAST}
  Movement = {Ops.RESHAPE, Ops.PERMUTE, Ops.EXPAND, Ops.PAD, Ops.SHRINK, Ops.FLIP}
  Commutative = {Ops.ADD, Ops.MUL, Ops.MAX, Ops.CMPNE, Ops.AND, Ops.OR, Ops.XOR}
  Comparison = {Ops.CMPLT, Ops.CMPNE}
  # the ops whose result is an integer or bool only
  IntOnly = {Ops.IDIV, Ops.MOD, Ops.AND, Ops.OR, Ops.XOR, Ops.SHL, Ops.SHR}

# ## What each ALU op means
#
# This table is the definition of every arithmetic op. The reference device
# (chapter 15) runs it, constant folding (chapter 5) runs it, and every other
# device is tested against it, and must agree with it exactly. Where C
# leaves a case undefined or lets it kill the process, this table still gives
# an answer, so every device gives the same one; only shifts by a negative
# amount or by the bit width or more stay undefined (no Tensor op makes them)
# and untested.
#
# A few choices worth knowing:
#
# - `IDIV` and `MOD` are C's: division truncates toward zero and the remainder
#   takes the dividend's sign. Python's floor `//` is built from them in
#   chapter 7.
# - Integer division by zero gives 0, and so does the remainder, as numpy
#   does; the smallest int divided by -1 wraps to itself (remainder 0), like
#   every other integer overflow. C traps on both (SIGFPE), so the C renderer
#   guards a division unless its divisor is a constant other than 0 and -1:
#   index arithmetic, which divides by constants, pays nothing.
# - A cast of a float to an int saturates (chapter 2): nan is 0, inf and
#   out-of-range values are the int's smallest or largest value.
# - `MAX` propagates nan from either side, as numpy's `maximum` does.
# - `RECIPROCAL(0)` is an infinity with the sign of the zero; the
#   transcendental ops return nan outside their domain instead of raising.

def _exp2(x: float) -> float: return math.inf if x >= 1024 else 2.0 ** x
def _log2(x: float) -> float: return math.nan if x < 0 or x != x else -math.inf if x == 0 else math.log2(x)
def _recip(x: float) -> float: return math.copysign(math.inf, x) if x == 0 else 1.0 / x
def _sqrt(x: float) -> float: return math.nan if x < 0 else math.sqrt(x)
def _sin(x: float) -> float: return math.nan if math.isinf(x) else math.sin(x)
def _trunc(x: float) -> float: return x if math.isinf(x) or x != x else math.copysign(float(math.trunc(x)), x)
def _cdiv(x: int, y: int) -> int: return 0 if y == 0 else abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)
def _cmod(x: int, y: int) -> int: return 0 if y == 0 else x - _cdiv(x, y) * y

python_alu: dict[Ops, Callable[..., Any]] = {
  Ops.NEG: lambda x: not x if isinstance(x, bool) else -x, Ops.RECIPROCAL: _recip, Ops.SQRT: _sqrt,
  Ops.EXP2: _exp2, Ops.LOG2: _log2, Ops.SIN: _sin, Ops.TRUNC: _trunc,
  Ops.ADD: lambda x, y: x + y, Ops.MUL: lambda x, y: x * y, Ops.IDIV: _cdiv, Ops.MOD: _cmod,
  Ops.MAX: lambda x, y: x if (x != x or x > y) else y, Ops.CMPLT: lambda x, y: x < y, Ops.CMPNE: lambda x, y: x != y,
  Ops.AND: lambda x, y: x & y, Ops.OR: lambda x, y: x | y, Ops.XOR: lambda x, y: x ^ y,
  Ops.SHL: lambda x, y: x << y, Ops.SHR: lambda x, y: x >> y, Ops.WHERE: lambda c, x, y: x if c else y}

def exec_alu(op: Ops, dtype: DType, srcs: Sequence[Any]) -> Any:
  """Run one ALU op on Python values and truncate the result to `dtype`."""
  if dtype.fmt == "?" and op in (Ops.ADD, Ops.MUL): op = Ops.OR if op is Ops.ADD else Ops.AND  # bool + is or, * is and
  return truncate[dtype](python_alu[op](*srcs))

def bitcast_value(x: Any, src: DType, dst: DType) -> Any: return struct.unpack(dst.fmt, struct.pack(src.fmt, x))[0]

# ## Hash-consing
#
# The metaclass intercepts construction to look in the cache first. The key
# must tell apart values that Python calls equal but that are different
# constants: `0.0 == -0.0` and `True == 1`, while `nan != nan` would never
# find itself. `_key` makes floats compare by sign and nan-ness too.

def _key(x: Any) -> Any:
  if x is None or (type(x) is tuple and all(type(v) is int for v in x)): return x  # the usual args (none, a shape) as they are
  if isinstance(x, float): return ("nan",) if x != x else (x, math.copysign(1.0, x), float)
  if isinstance(x, tuple): return tuple(_key(v) for v in x)
  return (x, type(x)) if isinstance(x, (bool, int)) else x

class UOpMetaClass(type):
  cache: dict[tuple, weakref.ref] = {}
  def __call__(cls, op: Ops, dtype: DType = dtypes.void, src: tuple[UOp, ...] = (), arg: Any = None) -> UOp:
    key = (op, dtype, src, _key(arg))
    if (ref := UOpMetaClass.cache.get(key)) is not None and (live := ref()) is not None: return live
    uop = super().__call__(op, dtype, src, arg)
    UOpMetaClass.cache[key] = weakref.ref(uop, functools.partial(_uncache, UOpMetaClass.cache, key))
    return uop

def _uncache(cache: dict[tuple, weakref.ref], key: tuple, ref: weakref.ref) -> None:
  if cache.get(key) is ref: del cache[key]  # the cache is bound, not looked up: this also runs at interpreter exit

# ## Walking a graph without recursion
#
# Graphs get deep: a training loop that is never realized builds a chain of
# thousands of ops. Python's recursion limit is 1000, so every walk in tiny
# is iterative. `toposort` returns every UOp reachable from the root, sources
# before users, using an explicit stack.
#
# Derived properties (shape, value bounds) are naturally recursive: a node's
# shape comes from its sources' shapes. `recursive_property` computes them
# bottom-up over a toposort instead, caching each node's value as it goes, so
# asking for the shape of the 100,000th node never recurses.

def recursive_property(fn: Callable[[UOp], Any]) -> property:
  name = fn.__name__
  def get(self: UOp) -> Any:
    if name not in self.__dict__:  # usually a new node over known sources: no walk needed
      todo = [self] if all(name in s.__dict__ for s in self.src) else self.toposort(lambda u: name not in u.__dict__)
      for u in todo: u.__dict__[name] = fn(u)
    return self.__dict__[name]
  return property(get, doc=fn.__doc__)

# ## The UOp class
#
# Operators build graphs. A small mixin serves UOp here and UPat in chapter 4,
# so `x + 1` makes an ADD node and `UPat.var("x") + 1` a pattern that matches
# one. Subtraction is addition of a negation: there is no SUB op.
class MathMixin:
  def alu(self, op: Ops, *src: Any) -> Any: raise NotImplementedError
  def const_like(self, b: Any) -> Any: raise NotImplementedError
  def _binop(self, op: Ops, x: Any, reverse: bool) -> Any:
    x = x if isinstance(x, type(self)) else self.const_like(x)
    return x.alu(op, self) if reverse else self.alu(op, x)
  def __add__(self, x: Any) -> Any: return self._binop(Ops.ADD, x, False)
  def __radd__(self, x: Any) -> Any: return self._binop(Ops.ADD, x, True)
  def __mul__(self, x: Any) -> Any: return self._binop(Ops.MUL, x, False)
  def __rmul__(self, x: Any) -> Any: return self._binop(Ops.MUL, x, True)
  def __sub__(self, x: Any) -> Any: return self + (-x if not isinstance(x, MathMixin) else x.neg())
  def __rsub__(self, x: Any) -> Any: return self.neg() + x
  def __neg__(self) -> Any: return self.neg()
  def __floordiv__(self, x: Any) -> Any: return self._binop(Ops.IDIV, x, False)
  def __mod__(self, x: Any) -> Any: return self._binop(Ops.MOD, x, False)
  def __and__(self, x: Any) -> Any: return self._binop(Ops.AND, x, False)
  def __or__(self, x: Any) -> Any: return self._binop(Ops.OR, x, False)
  def __xor__(self, x: Any) -> Any: return self._binop(Ops.XOR, x, False)
  def __lshift__(self, x: Any) -> Any: return self._binop(Ops.SHL, x, False)
  def __rshift__(self, x: Any) -> Any: return self._binop(Ops.SHR, x, False)
  def __lt__(self, x: Any) -> Any: return self._binop(Ops.CMPLT, x, False)
  def __gt__(self, x: Any) -> Any: return self._binop(Ops.CMPLT, x, True)
  def ne(self, x: Any) -> Any: return self._binop(Ops.CMPNE, x, False)
  def maximum(self, x: Any) -> Any: return self._binop(Ops.MAX, x, False)
  def neg(self) -> Any: return self.alu(Ops.NEG)

@dataclass(frozen=True, eq=False)
class UOp(MathMixin, metaclass=UOpMetaClass):
  op: Ops
  dtype: DType = dtypes.void
  src: tuple[UOp, ...] = ()
  arg: Any = None
  def __reduce__(self) -> tuple: return UOp, (self.op, self.dtype, self.src, self.arg)  # unpickling goes through the cache too

  def __repr__(self) -> str:
    return f"UOp({self.op}, {self.dtype}, arg={self.arg!r}, src=({', '.join(f'<{s.op.name}>' for s in self.src)}))"

  def toposort(self, gate: Callable[[UOp], bool] = lambda u: True) -> dict[UOp, None]:
    """Every UOp reachable from self (through nodes for which `gate` is true), sources first."""
    order: dict[UOp, None] = {}
    stack: list[tuple[UOp, bool]] = [(self, False)]
    while stack:
      u, srcs_done = stack.pop()
      if u in order: continue
      if srcs_done: order[u] = None
      elif gate(u):
        stack.append((u, True))
        stack.extend((s, False) for s in reversed(u.src) if s not in order)
    return order

  def listing(self: UOp | list[UOp]) -> str:
    """A numbered, one-line-per-UOp listing of the graph, or of a program's list of UOps: how DEBUG prints a kernel.
    Each line shows an op's dtype, the numbers of its sources and its arg."""
    ids = {u: i for i, u in enumerate(self if isinstance(self, list) else self.toposort())}
    return "\n".join(f"{i:4d} {u.op.name:12s} {u.dtype.name:8s} {[ids[s] for s in u.src]!s:16s} {u.arg!r}" for u, i in ids.items())

  # ### Building UOps
  # Small constructors keep the rest of the file readable. `const` puts the
  # value through the dtype first, so `UOp.const(dtypes.float32, 1)` stores
  # `1.0` and matches a float pattern.
  @staticmethod
  def const(dtype: DType, value: Any) -> UOp: return UOp(Ops.CONST, dtype, arg=to_dtype(value, dtype))
  def const_like(self, b: Any, dtype: DType | None = None) -> UOp:
    """A constant like this UOp: its dtype (unless given) and, for a tensor, its shape, so a rule folding `x ^ x` to 0 keeps the shape."""
    c, shape = UOp.const(dtype or self.dtype, b), self.shape
    return c if not shape else UOp(Ops.EXPAND, c.dtype, (UOp(Ops.RESHAPE, c.dtype, (c,), (1,) * len(shape)),), shape)
  @staticmethod
  def variable(name: str, vmin: int, vmax: int, dtype: DType = dtypes.int32) -> UOp:
    return UOp(Ops.DEFINE_VAR, dtype, arg=(name, vmin, vmax))
  @staticmethod
  def sink(*srcs: UOp) -> UOp: return UOp(Ops.SINK, dtypes.void, tuple(srcs))
  def alu(self, op: Ops, *src: UOp) -> UOp:
    out = dtypes.bool if op in GroupOp.Comparison else src[-1].dtype if op is Ops.WHERE else self.dtype
    return UOp(op, out, (self,) + src)
  def neg(self) -> UOp: return self * -1 if self.dtype.is_int else self.alu(Ops.NEG)  # ints: so like terms meet
  def where(self, x: Any, y: Any) -> UOp:
    x = x if isinstance(x, UOp) else y.const_like(x)
    return self.alu(Ops.WHERE, x, y if isinstance(y, UOp) else x.const_like(y))
  def cast(self, dtype: DType) -> UOp: return self if self.dtype == dtype else UOp(Ops.CAST, dtype, (self,))
  def bitcast(self, dtype: DType) -> UOp: return UOp(Ops.BITCAST, dtype, (self,))
  def replace(self, **kwargs: Any) -> UOp: return UOp(**{"op": self.op, "dtype": self.dtype, "src": self.src, "arg": self.arg, **kwargs})

  # ### Sources and args by name
  # The table at the top of this chapter says what each op's sources and arg
  # hold. Code reads the structured ones through these names, so a line says
  # `at.index` and `p.size` instead of `at.src[1:-1]` and `p.arg[1]`.
  @property
  def size(self) -> int: return self.arg[1]  # BUFFER, PARAM: how many elements
  @property
  def number(self) -> int: return self.arg[0]  # PARAM: which kernel argument; RANGE: which loop; BUFFER: its id
  @property
  def kind(self) -> str: return self.arg[1]  # RANGE: LOOP, REDUCE, UPCAST, UNROLL or THREAD
  @property
  def reduce_op(self) -> Ops: return self.arg[0]  # REDUCE_AXIS: ADD, MUL or MAX
  @property
  def axes(self) -> tuple[int, ...]: return self.arg[1]  # REDUCE_AXIS: the reduced axes
  @property
  def index(self) -> tuple[UOp, ...]: return self.src[1:-1]  # AT: one index per axis
  @property
  def valid(self) -> UOp: return self.src[-1]  # AT, INDEX: does the element exist here?

  # ### Derived properties
  # `key` is a content hash: equal for equal graphs in every process, which
  # makes it the name of a graph on disk and a deterministic sort order.
  @recursive_property
  def key(self) -> bytes:
    return hashlib.sha256(repr((self.op.name, self.dtype.name, _key(self.arg), [s.key for s in self.src])).encode()).digest()

  @recursive_property
  def shape(self) -> tuple[int, ...] | None:
    """The tensor shape, for UOps that are tensors; None for kernel-level UOps."""
    return _shape(self)

  @recursive_property
  def device(self) -> str | None:
    """The device a tensor UOp lives on: a DEVICE source's name, or the target of a COPY."""
    if self.op in (Ops.DEVICE, Ops.COPY): return self.arg
    return next((s.device for s in self.src if s.device is not None), None)

  @property
  def vmin(self) -> Any: return self._bounds[0]
  @property
  def vmax(self) -> Any: return self._bounds[1]
  @recursive_property
  def _bounds(self) -> tuple[Any, Any]:
    """The smallest and largest value this UOp can take (see chapter 5)."""
    return _bounds(self)

# Shapes follow from the op. A buffer is flat: its shape is its element count,
# and tensors view it through movement ops. Reduces keep the reduced axes with
# size 1 (keepdim), and elementwise ops require equal shapes: broadcasting is
# an explicit `EXPAND` added by the Tensor layer, so nothing here guesses.
def _shape(u: UOp) -> tuple[int, ...] | None:
  if u.op in (Ops.BUFFER, Ops.PARAM): return (u.size,)
  if u.op is Ops.ARANGE: return (u.arg,)
  if u.op in (Ops.CONST, Ops.DEFINE_VAR): return ()
  if u.op in (Ops.RESHAPE, Ops.EXPAND): return u.arg
  if u.op is Ops.PERMUTE: return tuple(u.src[0].shape[i] for i in u.arg)
  if u.op is Ops.PAD: return tuple(s + b + a for s, (b, a) in zip(u.src[0].shape, u.arg))
  if u.op is Ops.SHRINK: return tuple(e - b for b, e in u.arg)
  if u.op is Ops.REDUCE_AXIS: return tuple(1 if i in u.axes else s for i, s in enumerate(u.src[0].shape))
  if u.op in GroupOp.Elementwise or u.op in (Ops.FLIP, Ops.COPY, Ops.CONTIGUOUS, Ops.DETACH, Ops.ASSIGN, Ops.AFTER):
    return next((s.shape for s in u.src if s.shape is not None and s.shape != ()), u.src[0].shape)
  return None

# ## Value bounds
#
# For integer UOps, `vmin` and `vmax` bound the values the node can take,
# computed from its sources by interval arithmetic. A loop variable
# `RANGE(10)` lies in [0, 9]; so `r*4 + 3` lies in [3, 39], and chapter 5 can
# conclude that `(r*4 + 3) // 64` is always 0. Where an op could overflow its
# dtype, the bounds widen to the whole dtype: we only claim what is certain.

def _bounds(u: UOp) -> tuple[Any, Any]:
  d, s = u.dtype, [x._bounds for x in u.src]
  if u.op is Ops.CONST: return (u.arg, u.arg)
  if u.op is Ops.DEFINE_VAR: return (u.arg[1], u.arg[2])
  if u.op is Ops.RANGE: return (0, s[0][1] - 1)
  if not (d.is_int or d.fmt == "?"): return (d.min, d.max)
  lo, hi = d.min, d.max
  if u.op is Ops.ADD: lo, hi = s[0][0] + s[1][0], s[0][1] + s[1][1]
  elif u.op is Ops.MUL: lo, hi = min(c := [a * b for a in s[0] for b in s[1]]), max(c)
  elif u.op is Ops.NEG and d.fmt != "?": lo, hi = -s[0][1], -s[0][0]
  elif u.op is Ops.MAX: lo, hi = max(s[0][0], s[1][0]), max(s[0][1], s[1][1])
  elif u.op is Ops.WHERE: lo, hi = min(s[1][0], s[2][0]), max(s[1][1], s[2][1])
  elif u.op is Ops.CAST and not u.src[0].dtype.is_float: lo, hi = (s[0][0], s[0][1]) if d.min <= s[0][0] and s[0][1] <= d.max else (d.min, d.max)
  elif u.op is Ops.IDIV and s[1][0] == s[1][1] and s[1][0] != 0:
    lo, hi = sorted((_cdiv(s[0][0], s[1][0]), _cdiv(s[0][1], s[1][0])))
  elif u.op is Ops.MOD and s[1][0] == s[1][1] and s[1][0] != 0:
    c = abs(s[1][0])
    lo, hi = (0, min(s[0][1], c - 1)) if s[0][0] >= 0 else (-(c - 1), c - 1)
  elif u.op is Ops.CMPLT: lo, hi = s[0][1] < s[1][0], s[0][0] < s[1][1]
  elif u.op is Ops.CMPNE: lo, hi = s[0][1] < s[1][0] or s[1][1] < s[0][0], not (s[0][0] == s[0][1] == s[1][0] == s[1][1])
  elif u.op is Ops.AND and d.fmt == "?": lo, hi = s[0][0] and s[1][0], s[0][1] and s[1][1]
  elif u.op is Ops.OR and d.fmt == "?": lo, hi = s[0][0] or s[1][0], s[0][1] or s[1][1]
  elif u.op is Ops.AND and s[0][0] >= 0 and s[1][0] >= 0: lo, hi = 0, min(s[0][1], s[1][1])
  if d.fmt == "?": return (bool(lo), bool(hi))
  return (lo, hi) if d.min <= lo <= hi <= d.max else (d.min, d.max)

# # 4. The rewrite engine
#
# Every transformation in tiny, from simplifying `x*1` to turning a tensor
# graph into loops to printing C, is a *graph rewrite*: a table of rules, each
# a pattern and a function, applied to every node until no rule applies. One
# engine, many tables. Once you can read a rule table, you can read every
# stage of the compiler.
#
# A `UPat` is a pattern over UOps. It can require an op (or one of a set of
# ops), a dtype, an arg, and patterns for the sources:
#
# - a tuple of patterns matches the sources in order;
# - a list matches them in any order (for commutative ops like `ADD`);
# - a single UPat matches every source, however many there are.
#
# `name="x"` captures the matched UOp and passes it to the rule's function as
# the keyword argument `x`. If the same name appears twice in one pattern, both
# places must hold the very same UOp: `UPat.var("x") + UPat.var("x")` matches
# `a + a` but not `a + b`. Hash-consing makes that an `is` test.

class UPat(MathMixin):
  def __init__(self, op: Ops | Iterable[Ops] | None = None, dtype: DType | Iterable[DType] | None = None,
               src: UPat | tuple[UPat, ...] | list[UPat] | None = None, arg: Any = None, name: str | None = None,
               allow_any_len: bool = False):
    self.op = None if op is None else (op,) if isinstance(op, Ops) else tuple(op)
    self.dtype = None if dtype is None else (dtype,) if isinstance(dtype, DType) else tuple(dtype)
    self.arg, self.name, self.allow_any_len, self.src = arg, name, allow_any_len, src
    # every way the sources may line up: one tuple, all orders of a list, or None for "anything"
    if isinstance(src, list): self.src_options = list(dict.fromkeys(itertools.permutations(src)))
    elif isinstance(src, tuple): self.src_options = [src]
    else: self.src_options = None
    frame = sys._getframe(1)
    while frame.f_code.co_filename == __file__ and frame.f_code.co_name in _pattern_builders:
      frame = frame.f_back  # report where the rule was written, not the helper that built it
    self.location = (frame.f_code.co_filename, frame.f_lineno)

  @staticmethod
  def var(name: str | None = None, dtype: DType | Iterable[DType] | None = None) -> UPat: return UPat(dtype=dtype, name=name)
  @staticmethod
  def cvar(name: str | None = None, dtype: DType | Iterable[DType] | None = None) -> UPat: return UPat(Ops.CONST, dtype, name=name)
  @staticmethod
  def const(dtype: DType | Iterable[DType] | None, value: Any) -> UPat: return UPat(Ops.CONST, dtype, arg=value)
  def const_like(self, b: Any) -> UPat: return UPat.const(None, b)
  def alu(self, op: Ops, *src: UPat) -> UPat:
    srcs = (self,) + src
    return UPat(op, src=list(srcs) if op in GroupOp.Commutative else srcs)

  def match(self, uop: UOp, store: dict[str, UOp]) -> list[dict[str, UOp]]:
    """All ways `uop` matches this pattern, each a dict of captures extending `store`."""
    if (self.op is not None and uop.op not in self.op) or (self.dtype is not None and uop.dtype not in self.dtype) or \
       (self.arg is not None and self.arg != uop.arg):
      return []
    if self.name is not None:
      if store.get(self.name, uop) is not uop: return []
      store = {**store, self.name: uop}
    if self.src is None: return [store]
    if isinstance(self.src, UPat): options: list[tuple[UPat, ...]] = [(self.src,) * len(uop.src)]
    else: options = self.src_options
    matches = []
    for pats in options:
      if len(pats) != len(uop.src) and not (self.allow_any_len and len(pats) <= len(uop.src)): continue
      stores = [store]
      for pat, s in zip(pats, uop.src): stores = [m for st in stores for m in pat.match(s, st)]
      matches.extend(stores)
    return matches

  def __repr__(self) -> str: return f"UPat({self.op}, name={self.name!r}, at {os.path.basename(self.location[0])}:{self.location[1]})"

_pattern_builders = {n for n in list(vars(MathMixin)) + list(vars(UPat)) if callable(getattr(UPat, n, None))}

# A `PatternMatcher` holds an ordered list of `(UPat, function)` rules,
# indexed by op so a node only meets the rules that could match it.
# `rewrite(uop)` tries them in order; the first function that returns a UOp
# other than `uop` itself wins. Returning None means "no opinion", so a rule
# can match broadly and decline in code. A function that takes a `ctx`
# parameter receives the context passed to `graph_rewrite`.
#
# Rule tables combine with `+`, which keeps both orders: `pm1 + pm2` tries the
# rules of `pm1` first.
#
# A rule may return something other than a UOp, and two tables in tiny do:
# `pm_gradient` (chapter 8) returns each source's gradient, and the renderer's
# `string_rewrite` (chapter 11) returns a line of source code. There the
# matcher is a dispatch table, used through `rewrite` on one node, never
# through `graph_rewrite`, which needs UOps back.

Rule = tuple[UPat, Callable[..., Any]]

class PatternMatcher:
  def __init__(self, patterns: list[Rule]):
    self.patterns = patterns
    self.pdict: dict[Ops, list[tuple[UPat, Callable[..., Any], bool]]] = {op: [] for op in Ops}
    for pat, fn in patterns:
      wants_ctx = "ctx" in inspect.signature(fn).parameters
      for op in (pat.op or tuple(Ops)): self.pdict[op].append((pat, fn, wants_ctx))
  @functools.cache  # a pass that adds two tables at every call (`pm_lower + symbolic`) indexes them once
  def __add__(self, other: PatternMatcher) -> PatternMatcher: return PatternMatcher(self.patterns + other.patterns)

  def rewrite(self, uop: UOp, ctx: Any = None) -> UOp | None:
    return None if (result := self.rewrite_with_rule(uop, ctx)) is None else result[0]

  def rewrite_with_rule(self, uop: UOp, ctx: Any = None) -> tuple[Any, UPat] | None:
    """Like `rewrite`, but also says which rule fired (for tracing and error messages)."""
    for pat, fn, wants_ctx in self.pdict[uop.op]:
      for captures in pat.match(uop, {}):
        out = fn(ctx=ctx, **captures) if wants_ctx else fn(**captures)
        if out is not None and out is not uop: return out, pat
    return None

# ## graph_rewrite
#
# `graph_rewrite(root, pm, name=...)` rewrites a whole graph to a fixed point.
# It walks the graph sources-first. At each node it rebuilds the node from its
# rewritten sources, then offers it to the rule table. If a rule fires, the
# result is itself a graph that may need rewriting, so it goes back on the
# work stack and is processed fully (sources first, then itself) before its
# value is recorded. A node is done when no rule applies to it any more.
#
# The walk uses an explicit stack, so deep graphs are fine, and each node is
# rewritten once (results are memoized in `done`), so a pass is linear in
# graph size plus the work of the rules.
#
# A rule set that never settles would loop forever. Two shapes of that are
# caught: a rewrite whose result leads back to a node still being rewritten
# (a cycle, like `a+b -> b+a -> a+b`), and a chain of rewrites of one node
# longer than the graph plus `REWRITE_LIMIT`, which only a rule that keeps
# making new nodes produces. (A long graph may rewrite one node once per node
# below it: lowering 1,000 permutes of a tensor walks the index through each
# of them in turn. That is no cycle, and must work.) A third, growth that
# spreads over ever new nodes, is caught by a budget on the total number of
# rewrites, far above what a terminating pass needs. Each raises
# `RewriteError` naming the pass and the rules that fired.
#
# Most passes rewrite sources first (post-order), so a rule sees a node whose
# sources are already in final form. A few passes need to see the original
# node before anything below it changed, for example to replace a subgraph
# that was already computed by its stored result: `pre_order=True` offers each
# node to the rules on the way down instead, and a node a rule replaced is not
# descended into.
#
# Every call is named. When a tracer is installed (VIZ, chapter 18, installs
# one), each call reports its input, every match (before, after, rule) and its
# output; when none is, the cost is one check of a global.

REWRITE_LIMIT = ContextVar("REWRITE_LIMIT", 1000, "most consecutive rewrites of one node, beyond the graph's size, before graph_rewrite gives up")

class RewriteError(RuntimeError): pass

class Tracer:
  """Receives the events of every graph_rewrite. Subclass it to watch rewrites (VIZ does)."""
  def begin(self, name: str, root: UOp, pm: PatternMatcher) -> None: pass
  def match(self, before: UOp, after: UOp, rule: UPat) -> None: pass
  def end(self, result: UOp) -> None: pass
  def group(self, kind: str) -> contextlib.AbstractContextManager: return contextlib.nullcontext()
  def kernel(self, name: str, src: str) -> None: pass

tracer: Tracer | None = None

# Passes come in groups: a realize runs several, and compiling one kernel runs
# several more. `@traced("realize")` marks a function whose rewrites belong
# together; a tracer sees them as one group, nested like the calls.
def traced(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
  def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def grouped(*args: Any, **kwargs: Any) -> Any:
      if tracer is None: return fn(*args, **kwargs)
      with tracer.group(kind): return fn(*args, **kwargs)
    return grouped
  return decorate

def graph_rewrite(root: UOp, pm: PatternMatcher, ctx: Any = None, *, name: str, pre_order: bool = False) -> UOp:
  if tracer is not None: tracer.begin(name, root, pm)
  done: dict[UOp, UOp] = {}
  active: dict[UOp, list[UPat]] = {}  # nodes whose rewritten value is still being computed -> rules fired so far
  stack: list[tuple[UOp, int, Any]] = [(root, 0, None)]
  limit, rewrites = REWRITE_LIMIT.value, [0]
  size = functools.cache(lambda: len(root.toposort()))  # the graph's size: counted only by a pass that rewrites a lot
  def over(count: int, allowed: int, per_node: int) -> bool: return count > allowed and count > allowed + per_node * size()

  def offer(node: UOp, candidate: UOp) -> bool:
    """Offer `candidate` (node itself, or rebuilt) to the rules; on a match, schedule the result to be rewritten."""
    if (fired := pm.rewrite_with_rule(candidate, ctx)) is None: return False
    result, rule = fired
    if tracer is not None: tracer.match(candidate, result, rule)
    rules, rewrites[0] = active[node] + [rule], rewrites[0] + 1
    if over(len(rules), limit, 1): raise RewriteError(_loop_message(name, f"more than {limit + size()} rewrites of one node", rules))
    if over(rewrites[0], limit * 10, 50): raise RewriteError(_loop_message(name, "the graph keeps growing: many more rewrites than nodes", rules))
    if result in done:
      done[node] = done[result]
      del active[node]
    else:
      if result in active: raise RewriteError(_loop_message(name, "a rewrite leads back to a node still being rewritten", rules + active[result]))
      stack.append((node, 2, result))
      stack.append((result, 0, rules))  # the result inherits the chain, so long chains are counted across nodes
    return True

  while stack:
    node, stage, extra = stack.pop()
    if stage == 0:  # first visit: (pre-order: offer it,) then schedule the sources and come back
      if node in done: continue
      if node in active: raise RewriteError(_loop_message(name, "a rewrite leads back to a node still being rewritten", active[node]))
      active[node] = extra or []
      if pre_order and offer(node, node): continue
      stack.append((node, 1, None))
      stack.extend((s, 0, None) for s in reversed(node.src) if s not in done)
    elif stage == 1:  # sources are done: rebuild, (post-order: offer it,) and record
      new_src = tuple(done[s] for s in node.src)
      rebuilt = node if new_src == node.src else UOp(node.op, node.dtype, new_src, node.arg)
      if not pre_order and offer(node, rebuilt): continue
      done[node] = done[rebuilt] = rebuilt  # a fixed point: nothing applies to it any more
      del active[node]
    else:  # the rule's result is fully rewritten: it is this node's value
      done[node] = done[extra]
      del active[node]
  if tracer is not None: tracer.end(done[root])
  return done[root]

def _loop_message(name: str, why: str, rules: list[UPat]) -> str:
  seen = list(dict.fromkeys(f"{os.path.basename(r.location[0])}:{r.location[1]}" for r in rules))
  return f"graph_rewrite {name!r} does not terminate: {why}; rules involved: {', '.join(seen[-8:])}"

# # 5. Symbolic algebra
#
# The lowering in chapter 10 turns movement ops into index arithmetic:
# reshaping a (6,) tensor to (2, 3) and reading element `[i, j]` becomes
# reading `(i*3 + j) % 6` of the buffer. Left alone, such expressions pile up
# divisions and remainders that a hand-written kernel would never have.
# The rules in this chapter fold them away: `(i*3 + j) % 6` is `i*3 + j`
# because the bounds of chapter 3 prove `0 <= i*3 + j <= 5`.
#
# The rules come in groups:
#
# - **constant folding**: an ALU op whose sources are all constants becomes a
#   constant, computed by the same `exec_alu` the reference device runs, so
#   folding never changes a result;
# - **identities**: `x+0`, `x*1`, `x//1`, `x*0` (for ints; `inf*0` is nan),
#   `where(True, a, b)`, casts to the same type, `max(x, x)`, bool algebra;
# - **bounds**: an integer node whose bounds pin it to one value is that
#   value; comparisons decided by bounds fold to True or False;
# - **like terms and constants** (integers only, where reassociation is
#   exact): `x*a + x*b -> x*(a+b)`, `(x+a)+b -> x+(a+b)`, and constants move
#   outward so they meet and fold;
# - **canonical order**: commutative ops put their sources in a fixed order
#   (constants last, the rest by content hash), so `a+b` and `b+a` become the
#   same UOp and fold together;
# - **division and remainder** by a constant, using bounds:
#   `(x*c + y) // c -> x + y//c` and `(x*c + y) % c -> y % c` when both sides
#   are non-negative (where C's truncating division agrees with floor
#   division), and `x // c -> 0`, `x % c -> x` when `0 <= x < c`.

# ## What the rules ask
#
# The rules' functions, each answering one question about a node: can it be
# folded, is it pinned by its bounds, can its division be split. A function
# returns the new node, or None when the rule does not apply after all.
def _fold(x: UOp) -> UOp | None:
  if not all(s.op is Ops.CONST for s in x.src): return None
  return UOp.const(x.dtype, exec_alu(x.op, x.dtype, [s.arg for s in x.src]))

def _is_int(*us: UOp) -> bool: return all(u.dtype.is_int for u in us)

def _pinned(x: UOp) -> UOp | None:
  """An integer or bool node whose bounds allow a single value is that value."""
  if x.op in (Ops.CONST, Ops.DEFINE_VAR) or not (x.dtype.is_int or x.dtype.fmt == "?"): return None
  return x.const_like(x.vmin) if x.vmin == x.vmax else None

def _order_commutative(x: UOp) -> UOp | None:
  a, b = x.src
  def rank(u: UOp) -> tuple: return (u.op is Ops.CONST, u.key)
  return x.replace(src=(b, a)) if rank(b) < rank(a) else None

def _divmod_nonneg(*us: UOp) -> bool: return all(u.vmin >= 0 for u in us)

def _terms(x: UOp) -> list[UOp]:
  """The terms of a sum: a + (b + c) -> [a, b, c]."""
  out, stack = [], [x]
  while stack:
    if (u := stack.pop()).op is Ops.ADD: stack.extend(reversed(u.src))
    else: out.append(u)
  return out

def _divmod_sum(d: UOp, x: UOp, c1: UOp) -> UOp | None:
  """(a*k + rest) // c -> a*(k//c) + (a*(k%c) + rest) // c, and % keeps only the remainder part.
  For non-negative values (where C's truncation is floor division) this is exact; bounds then drop what is left."""
  c = c1.arg
  if not _is_int(x) or c <= 0 or x.vmin < 0 or x.vmax >= x.dtype.max: return None
  quotient, rest = [], []
  for t in _terms(x):
    base, k = (t.src[0], t.src[1].arg) if t.op is Ops.MUL and t.src[1].op is Ops.CONST else (None, t.arg) if t.op is Ops.CONST else (t, 1)
    if k < c: rest.append(t)
    else:
      quotient.append(x.const_like(k // c) if base is None else base * (k // c))
      if k % c: rest.append(x.const_like(k % c) if base is None else base * (k % c))
  if not quotient: return None
  remainder = functools.reduce(lambda a, b: a + b, rest, x.const_like(0))
  if remainder.vmin < 0: return None
  if d.op is Ops.MOD: return remainder % c
  return functools.reduce(lambda a, b: a + b, quotient) + remainder // c

def _no_wrap(x: UOp, c: int, y: UOp | None = None) -> bool:
  """x*c (and x*c + y) fit x's dtype exactly, so wrapping around never changed them."""
  lo, hi = sorted((x.vmin * c, x.vmax * c))
  ylo, yhi = (y.vmin, y.vmax) if y is not None else (0, 0)
  return x.dtype.min <= lo + min(ylo, 0) and hi + max(yhi, 0) <= x.dtype.max

# ## The rule tables
#
# `symbolic_simple` holds the rules that are always safe and cheap: folding and
# identities. `symbolic` adds the ones that reason about bounds and reorder
# terms. The patterns use a few shared variables: `x_` matches anything and
# names it `x`, `c1_` matches a constant and names it `c1`.
x_, y_ = UPat.var("x"), UPat.var("y")
c1_, c2_ = UPat.cvar("c1"), UPat.cvar("c2")

symbolic_simple = PatternMatcher([
  # constant folding: every ALU op, and casts and bitcasts of constants
  (UPat(GroupOp.ALU, name="x"), _fold),
  (UPat(Ops.CAST, src=(UPat.cvar("c"),), name="x"), lambda x, c: UOp.const(x.dtype, c.arg)),
  (UPat(Ops.BITCAST, src=(UPat.cvar("c"),), name="x"), lambda x, c: UOp.const(x.dtype, bitcast_value(c.arg, c.dtype, x.dtype))),
  # identities that hold for every dtype
  (x_ + 0, lambda x: x if not x.dtype.is_float else None),  # for floats, -0.0 + 0.0 is 0.0
  (x_ * 1, lambda x: x),
  (x_ // 1, lambda x: x),
  (UPat(Ops.NEG, src=(UPat(Ops.NEG, src=(x_,)),)), lambda x: x),
  (UPat(Ops.CAST, name="c"), lambda c: c.src[0] if c.src[0].dtype == c.dtype else None),
  (UPat(Ops.MAX, src=(x_, x_)), lambda x: x),
  (UPat(Ops.WHERE, src=(UPat.const(dtypes.bool, True), x_, y_)), lambda x, y: x),
  (UPat(Ops.WHERE, src=(UPat.const(dtypes.bool, False), x_, y_)), lambda x, y: y),
  (UPat(Ops.WHERE, src=(UPat.var(), x_, x_)), lambda x: x),
  (UPat(Ops.CMPLT, src=(x_, x_)), lambda x: x.const_like(False, dtypes.bool)),
  # identities that only hold for integers (for floats, inf*0 and nan != nan differ)
  (x_ * 0, lambda x: x.const_like(0) if _is_int(x) else None),
  (x_ % 1, lambda x: x.const_like(0) if _is_int(x) else None),
  (UPat(Ops.CMPNE, src=(x_, x_)), lambda x: x.const_like(False, dtypes.bool) if _is_int(x) else None),
  (x_ ^ x_, lambda x: x.const_like(0)),
  (UPat((Ops.AND, Ops.OR), src=(x_, x_)), lambda x: x),
  # bool algebra
  (UPat(Ops.AND, src=[x_, UPat.const(dtypes.bool, True)]), lambda x: x),
  (UPat(Ops.AND, src=[x_, UPat.const(dtypes.bool, False)]), lambda x: x.const_like(False)),
  (UPat(Ops.OR, src=[x_, UPat.const(dtypes.bool, False)]), lambda x: x),
  (UPat(Ops.OR, src=[x_, UPat.const(dtypes.bool, True)]), lambda x: x.const_like(True)),
])

symbolic = symbolic_simple + PatternMatcher([
  # bounds
  (UPat(GroupOp.ALU | {Ops.CAST}, name="x"), _pinned),
  # canonical order: constants last, then by content hash
  (UPat(GroupOp.Commutative, src=(UPat(), UPat()), name="x"), _order_commutative),
  # like terms and constants, integers only
  (x_ + x_, lambda x: x * 2 if _is_int(x) else None),
  (x_ * c1_ + x_ * c2_, lambda x, c1, c2: x * (c1.arg + c2.arg) if _is_int(x) else None),
  (x_ * c1_ + x_, lambda x, c1: x * (c1.arg + 1) if _is_int(x) else None),
  ((x_ + c1_) + c2_, lambda x, c1, c2: x + (c1.arg + c2.arg) if _is_int(x) else None),
  ((x_ * c1_) * c2_, lambda x, c1, c2: x * (c1.arg * c2.arg) if _is_int(x) else None),
  ((x_ + c1_) + y_, lambda x, c1, y: (x + y) + c1 if _is_int(x) and y.op is not Ops.CONST else None),
  ((x_ + c1_) * c2_, lambda x, c1, c2: x * c2 + c1.arg * c2.arg if _is_int(x) else None),
  # division and remainder by a positive constant
  (x_ % c1_, lambda x, c1: x if _is_int(x) and c1.arg > 0 and x.vmin >= 0 and x.vmax < c1.arg else None),
  ((x_ * c1_ + y_) // c2_, lambda x, c1, y, c2: x * (c1.arg // c2.arg) + y // c2
   if c2.arg > 0 and c1.arg % c2.arg == 0 and _no_wrap(x, c1.arg, y) and _divmod_nonneg(x * c1 + y, y) else None),
  ((x_ * c1_ + y_) % c2_, lambda x, c1, y, c2: y % c2
   if c2.arg > 0 and c1.arg % c2.arg == 0 and _no_wrap(x, c1.arg, y) and _divmod_nonneg(x * c1 + y, y) else None),
  ((x_ * c1_) // c2_, lambda x, c1, c2: x * (c1.arg // c2.arg) if c2.arg > 0 and c1.arg % c2.arg == 0 and _no_wrap(x, c1.arg) else None),
  ((x_ * c1_) % c2_, lambda x, c1, c2: x.const_like(0) if c2.arg > 0 and c1.arg % c2.arg == 0 and _no_wrap(x, c1.arg) else None),
  ((x_ // c1_) // c2_, lambda x, c1, c2: x // (c1.arg * c2.arg) if c1.arg > 0 and c2.arg > 0 and x.vmin >= 0 else None),
  ((x_ % c1_) % c2_, lambda x, c1, c2: x % c2 if c2.arg > 0 and c1.arg % c2.arg == 0 and x.vmin >= 0 else None),
  (UPat((Ops.IDIV, Ops.MOD), src=(UPat(Ops.ADD, name="x"), c1_), name="d"), _divmod_sum),
])

# ## simplify
#
# `x.simplify()` runs these rules on one expression. It is a UOp method, added
# here because the rules it runs did not exist in chapter 3.
def _simplify(self: UOp) -> UOp: return graph_rewrite(self, symbolic, name="simplify")
UOp.simplify = _simplify  # type: ignore[attr-defined]

# # 6. Memory and devices
#
# Before a tensor can hold values, there must be somewhere to put them. This
# chapter is tiny's storage: device memory, the BUFFER UOps that name it, and
# the registry of devices. A device is four parts, each small:
#
# - an `Allocator`: get and free memory, copy bytes in and out (here);
# - a `Renderer` (chapter 12): linear program to source text;
# - a `Compiler` (chapter 13): source text to a binary, with a cache on disk;
# - a runtime: load a binary as a callable `Program` and launch it on buffers.
#
# The reference device, PYTHON, is defined in chapter 15 of this file. Fast
# devices live in `backends/<name>.py` beside this file, each a module with an
# `open_device(name)` function; tiny loads them by path when first asked, so
# copying `backends/` next to a vendored `tiny.py` is all it takes to add
# them. A backend may drive several devices of its kind: `CUDA:1` is the
# second GPU, and `CUDA` is `CUDA:0`. `Device.DEFAULT` is the device that
# works here whose backend asks most strongly to be the default (its
# `DEFAULT_PRIORITY`: a GPU's is higher than the CPU's), else PYTHON;
# `DEVICE=...` overrides it.

# ## Memory
#
# An `Allocator` is the one part every device writes for itself; a `Buffer`
# is a block of one device's memory, freed back to the allocator's free
# lists when the last reference to it goes.
class Allocator:
  """Memory for one device. Freed blocks are kept by size and handed out again, skipping fresh allocations."""
  def __init__(self) -> None: self.free_blocks: dict[int, list[Any]] = {}
  def alloc(self, nbytes: int) -> Any:
    blocks = self.free_blocks.get(nbytes)
    return blocks.pop() if blocks else self._alloc(nbytes)
  def free(self, block: Any, nbytes: int) -> None: self.free_blocks.setdefault(nbytes, []).append(block)
  def _alloc(self, nbytes: int) -> Any: raise NotImplementedError
  def copyin(self, dst: Any, src: memoryview) -> None: raise NotImplementedError
  def copyout(self, src: Any, nbytes: int) -> memoryview: raise NotImplementedError

class Buffer:
  """A block of device memory holding `size` elements of `dtype`."""
  def __init__(self, device: str, size: int, dtype: DType):
    self.device, self.size, self.dtype, self.nbytes = device, size, dtype, size * dtype.itemsize
    self.allocator = Device[device].allocator
    self.block = self.allocator.alloc(self.nbytes)
  def __del__(self) -> None:
    if hasattr(self, "block"): self.allocator.free(self.block, self.nbytes)
  def copyin(self, data: bytes | memoryview) -> None: self.allocator.copyin(self.block, memoryview(data).cast("B"))
  def copyout(self) -> memoryview: return self.allocator.copyout(self.block, self.nbytes)

# ## Runtime state
#
# Everything tiny remembers between calls is listed here, with what it is for
# and how long it lives. The rest of the file is functions of their arguments.
#
# - `UOpMetaClass.cache` (chapter 3): every live UOp, for hash-consing; weak.
# - `tracer` (chapter 4): the rewrite watcher VIZ installs, or None.
# - `_buffers`: the memory behind each BUFFER UOp, weak on the UOp, so memory
#   lives as long as some graph names it; `_buffer_ids` numbers buffers.
# - `realized`: tensor UOps already computed, mapped to their stored result
#   (chapter 9), weak on the computed UOp; weak on the result too where
#   `_computed_from` maps the result back (chapter 13).
# - `_tensors`: every live Tensor, weak. A realize that assigns into a buffer
#   looks here for the lazy tensors that still read the buffer's old value
#   (chapter 13), and for the tensors whose pending assign it runs.
# - `_computed_from`: for a stored result whose graph leads to a tensor that
#   wants a gradient, that graph, so `backward()` after a read still finds
#   its way (chapter 8); weak on the result, so it lives as long as the result.
# - `_grad_tensors`: tensors created with `requires_grad`, found by
#   `backward()` (chapter 8), weak.
# - `_custom_gradients`: the gradient functions of results whose Tensor
#   method knows better than its ops' rules (chapter 8); weak on the result.
# - `_programs`: compiled kernels by (AST, device, NOOPT, BEAM): a kernel
#   made under other opt settings is another program; for the life of the
#   process (chapter 13); `_kernel_names` counts the names given out, so each
#   kernel's name is its own (`r_8_2_4n1` is the second `r_8_2_4`).
# - `_schedules`: schedules by the structure of their graph (chapter 9), the
#   last thousand, for the life of the process.
# - `_capturing`: the calls a TinyJit is recording, only while it records
#   (chapter 14).
# - `Tensor.training`, `Tensor.grad_enabled`, and the random seed and counter
#   (chapter 16): process-wide switches, set by the user.
# - `_cache_off`: set when the compiler cache folder proved unusable (chapter
#   13), so it is warned about once and not tried again; for the process.
# - `GlobalCounters`: kernels run and their work, until `reset()`.
# - `Device.opened`: the devices opened so far, for the life of the process.
_buffers: weakref.WeakKeyDictionary[UOp, Buffer] = weakref.WeakKeyDictionary()
_buffer_ids = itertools.count()
realized: weakref.WeakKeyDictionary[UOp, UOp | weakref.ref[UOp]] = weakref.WeakKeyDictionary()
_tensors: weakref.WeakValueDictionary[int, Tensor] = weakref.WeakValueDictionary()  # by id: Tensor's == is elementwise
_computed_from: weakref.WeakKeyDictionary[UOp, UOp] = weakref.WeakKeyDictionary()
_grad_tensors: weakref.WeakValueDictionary[int, Tensor] = weakref.WeakValueDictionary()
_custom_gradients: weakref.WeakKeyDictionary[UOp, Callable[[Tensor], list[tuple[UOp, Tensor]]]] = weakref.WeakKeyDictionary()
_schedules: dict[UOp, tuple[list[ScheduleItem], tuple[UOp, ...], list[UOp]]] = {}
_programs: dict[tuple[UOp, str, int, int], Kernel] = {}
_kernel_names: dict[str, int] = {}
_cache_off = False
# while a TinyJit captures: ("kernel", buffers, Kernel), ("copy", buffers, None) or ("rng", [key buffer], count)
_capturing: list[tuple[str, list[Buffer], Any]] | None = None

class GlobalCounters:
  """Counters anyone can read: kernels launched, and their estimated work and time."""
  kernel_count: int = 0
  global_ops: int = 0
  global_mem: int = 0
  time_sum_s: float = 0.0
  @staticmethod
  def reset() -> None: GlobalCounters.kernel_count, GlobalCounters.global_ops, GlobalCounters.global_mem, GlobalCounters.time_sum_s = 0, 0, 0, 0.0

# ## Buffers as UOps
#
# In a graph, memory is a `BUFFER` UOp: a unique id and an element count, with
# a `DEVICE` source saying where it lives. A stored tensor is a view of one,
# `RESHAPE(BUFFER)`, and `_is_stored` recognizes exactly that form: a tensor
# whose values are already in memory, in order.

def _device_uop(device: str) -> UOp: return UOp(Ops.DEVICE, arg=device)

def _movement(x: UOp, op: Ops, arg: Any) -> UOp: return UOp(op, x.dtype, (x,), arg)
def _reshape(x: UOp, shape: tuple[int, ...]) -> UOp:
  if x.op is Ops.RESHAPE: x = x.src[0]  # a reshape of a reshape is one reshape: a stored buffer stays recognizably stored
  return x if x.shape == shape else _movement(x, Ops.RESHAPE, shape)
def _expand(x: UOp, shape: tuple[int, ...]) -> UOp: return x if x.shape == shape else _movement(x, Ops.EXPAND, shape)

def _buffer_uop(buf: Buffer) -> UOp:
  uop = UOp(Ops.BUFFER, buf.dtype, (_device_uop(buf.device),), (next(_buffer_ids), buf.size))
  _buffers[uop] = buf
  return uop
def _new_buffer(device: str, size: int, dtype: DType) -> UOp: return _buffer_uop(Buffer(device, size, dtype))

def _base(view: UOp) -> UOp: return view.src[0] if view.op is Ops.RESHAPE else view  # a stored view's BUFFER
def _buffer_of(view: UOp) -> Buffer: return _buffers[_base(view)]

def _buffer_from_bytes(data: bytes | memoryview, dtype: DType, shape: tuple[int, ...], device: str) -> UOp:
  uop = _new_buffer(device, prod(shape), dtype)
  _buffers[uop].copyin(data)
  return _reshape(uop, shape)

def _is_stored(u: UOp) -> bool:
  """Is this tensor UOp a plain view of a buffer, its values already in memory in order?"""
  return u.op is Ops.BUFFER or (u.op is Ops.RESHAPE and u.src[0].op is Ops.BUFFER)

# ## The device registry

@dataclass
class Compiled:
  """A device: its allocator, renderer, compiler and runtime (binary -> Program)."""
  name: str
  allocator: Allocator
  renderer: Renderer
  compiler: Compiler
  runtime: Callable[..., Callable[..., Any]]  # (name, binary, **launch sizes) -> Program
  synchronize: Callable[[], None] = lambda: None  # wait for all work given to the device (a GPU's launches return at once)

class _Device:
  def __init__(self) -> None:
    self.opened: dict[str, Compiled] = {}
    self.modules: dict[str, Any] = {}
    self.folder = pathlib.Path(__file__).resolve().parent / "backends"
  def names(self) -> list[str]:
    found = sorted(p.stem.upper() for p in self.folder.glob("*.py")) if self.folder.is_dir() else []
    return ["PYTHON"] + [n for n in found if n != "PYTHON"]
  def backend(self, kind: str) -> Any:
    if kind not in self.modules: self.modules[kind] = _load_backend(self.folder / f"{kind.lower()}.py")
    return self.modules[kind]
  def __getitem__(self, device: str) -> Compiled:
    name = device.upper().removesuffix(":0")
    if name not in self.opened:
      kind, _, number = name.partition(":")
      if kind not in self.names() or not (number == "" or number.isdigit()):
        raise ValueError(f"unknown device {name!r}; available: {', '.join(self.names())} (and KIND:N for the N-th device of a kind)")
      self.opened[name] = PythonDevice() if kind == "PYTHON" else self.backend(kind).open_device(name)
    return self.opened[name]
  # DEVICE is read at every use, so `with Context(DEVICE="PYTHON"):` works at any time; only the search for the
  # fastest device that works here is done once.
  @property
  def DEFAULT(self) -> str:
    name = DEVICE.value or os.environ.get("DEVICE", "")  # a Context first, then the environment as it is now
    return self.canonicalize(name) if name else self.fastest
  @functools.cached_property
  def fastest(self) -> str:
    ranked, unusable = [], []
    for name in self.names()[1:]:
      try: ranked.append((-self.backend(name).DEFAULT_PRIORITY, name))
      except Exception: continue  # a backend that does not ask to be the default (or does not load) is not
    for _, name in sorted(ranked):
      try: self[name]
      except Exception as e:
        unusable.append(f"{name}: {e}")
        continue
      return name
    if unusable:  # a fall back to the slow reference is never silent
      warnings.warn(f"no fast device works here ({'; '.join(unusable)}): running on the slow PYTHON reference device", RuntimeWarning)
    return "PYTHON"
  def canonicalize(self, device: str | None) -> str:
    if device is None: return self.DEFAULT
    self[device]  # raises for unknown or unusable devices, at the call that named them
    return device.upper().removesuffix(":0")
  def check_dtype(self, device: str, dtype: DType) -> None:
    if dtype not in self[device].renderer.supported_dtypes: raise TypeError(f"device {device} cannot hold dtype {dtype.name}")

def _load_backend(path: pathlib.Path) -> Any:
  # A backend says `from tiny import ...`. It must get *this* module, even when
  # tiny.py was vendored under another name (mypkg.tiny) or run as a script,
  # so "tiny" points here while the backend loads.
  spec = importlib.util.spec_from_file_location(f"tiny_backend_{path.stem}", path)
  module, saved = importlib.util.module_from_spec(spec), sys.modules.get("tiny")
  sys.modules["tiny"] = sys.modules[__name__]
  try: spec.loader.exec_module(module)
  finally:
    if saved is None: del sys.modules["tiny"]
    else: sys.modules["tiny"] = saved
  return module

Device = _Device()

# # 7. Tensors, the lazy core
#
# A `Tensor` is what users hold. It is a thin wrapper around one UOp,
# `t.uop`, that describes how to compute the tensor's values. Every method
# builds a bigger UOp graph and returns a new Tensor; nothing is computed until
# `realize()`, `numpy()`, `tolist()` or `item()` asks for values. This
# laziness is what lets chapter 9 see a whole computation at once and fuse it
# into few kernels.
#
# The API follows tinygrad's (and so, mostly, PyTorch's): the same names,
# arguments and semantics, so code written for tinygrad runs with
# `from tiny import Tensor`.
#
# Our running example starts here. Building `c` runs nothing; it is a graph
# of six UOps (the listing is `UOp.listing`, one line per UOp: number, op,
# dtype, sources, arg). The two lists became BUFFERs on the default device, the
# product is a MUL, the sum a REDUCE_AXIS that keeps the reduced axis with size
# 1, and a RESHAPE drops it, since `sum()` does not keep dimensions:
#
# ```python
# from tiny import Tensor
# a = Tensor([1., 2., 3.]); b = Tensor([4., 5., 6.])
# c = (a * b).sum()
# print(c.uop.listing())
# ```
# ```text
#    0 DEVICE       void     []               '...'
#    1 BUFFER       float32  [0]              (0, 3)
#    2 BUFFER       float32  [0]              (1, 3)
#    3 MUL          float32  [1, 2]           None
#    4 REDUCE_AXIS  float32  [3]              (Ops.ADD, (0,))
#    5 RESHAPE      float32  [4]              ()
# ```
#
# The chapters after this one take `c` through every stage, printing its real
# intermediate form at each: its gradient (8), its kernel (9), loops (10),
# program and source (12), and at last the number (13).
#
# At the tensor level, UOps use these ops:
#
# - sources of data: `BUFFER` (memory on a device, flat, with a unique id),
#   `CONST` (one value, broadcast as needed), `ARANGE` (0, 1, ..., n-1);
#   each holds a `DEVICE` source that says where it lives;
# - the six movement ops `RESHAPE PERMUTE EXPAND PAD SHRINK FLIP`, which
#   change how elements are viewed but never their values;
# - elementwise ALU ops, `CAST` and `BITCAST`, on sources of equal shape;
# - `REDUCE_AXIS`, which reduces some axes to size 1 with ADD, MUL or MAX;
# - markers that steer scheduling: `CONTIGUOUS` (store this), `COPY` (to
#   another device), `ASSIGN` (write into an existing buffer), `DETACH`.
#
# Everything else, `matmul` and `softmax` included, is a composition of
# these. Broadcasting is explicit: `Tensor` reshapes and expands operands to a
# common shape before it builds an elementwise op, so the graph never has to
# guess.

def _fits(value: Any, dtype: DType) -> Any:
  """A Python value given to build a tensor of `dtype`. An int that the dtype cannot hold raises, as in numpy 2:
  wrapping it around, as arithmetic does, would silently store another number."""
  if dtype.is_int and isinstance(value, int) and not isinstance(value, bool) and not dtype.min <= value <= dtype.max:
    raise OverflowError(f"Python integer {value} out of bounds for {dtype.name} (its range is {dtype.min} to {dtype.max})")
  return value

def _const_uop(value: Any, dtype: DType, device: str, shape: tuple[int, ...] = ()) -> UOp:
  """A constant tensor: one CONST, reshaped to rank len(shape) and expanded to shape."""
  c = UOp(Ops.CONST, dtype, (_device_uop(device),), to_dtype(value, dtype))
  return c if shape == () else _expand(_reshape(c, (1,) * len(shape)), shape)

def _fully_flatten(data: Any) -> tuple[list[Any], tuple[int, ...]]:
  """A nested list as a flat list and its shape; ragged lists are an error."""
  shape: list[int] = []
  level = data
  while isinstance(level, (list, tuple)):
    shape.append(len(level))
    level = level[0] if len(level) else None
  flat = [data]
  for n in shape:
    if not all(isinstance(v, (list, tuple)) and len(v) == n for v in flat):
      raise ValueError(f"ragged nested list: expected every row to have length {n}")
    flat = [x for v in flat for x in v]
  return flat, tuple(shape)

def _numpy_dtype(np_dtype: Any) -> DType:
  names = {d.name: d for d in dtypes.all()}  # numpy's names are tiny's
  if str(np_dtype) not in names: raise TypeError(f"numpy dtype {np_dtype} has no tiny dtype")
  return names[str(np_dtype)]

def _shape_arg(shape: tuple) -> tuple[int, ...]:
  """Accept both f(2, 3) and f((2, 3))."""
  return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)

# A bad argument raises a ValueError (a TypeError for a wrong dtype), as Python's own functions do. PyTorch raises
# RuntimeError for the same mistakes, so these are both: code written for either catches them.
class ArgumentError(ValueError, RuntimeError): pass
class ArgumentTypeError(TypeError, RuntimeError): pass

def _new_shape(shape: tuple) -> tuple[int, ...]:
  """The shape of a tensor being created, from f(2, 3) or f((2, 3)): non-negative ints."""
  shape = _shape_arg(shape)
  if not all(isinstance(s, int) and s >= 0 for s in shape): raise ValueError(f"a new tensor's shape must be non-negative ints, got {shape}")
  return shape

def _dtype_arg(dtype: DType | str) -> DType: return getattr(dtypes, dtype) if isinstance(dtype, str) else dtype  # tinygrad takes names too

def _axis(axis: int, ndim: int, shape: tuple[int, ...]) -> int:
  if not -max(ndim, 1) <= axis < max(ndim, 1): raise IndexError(f"axis {axis} is out of range for a tensor of {ndim} dimensions (shape {shape})")
  return axis % max(ndim, 1)

class Tensor:

  training: bool = False     # dropout and batchnorm behave differently while training (see `Tensor.train`)
  grad_enabled: bool = True  # off inside `Tensor.no_grad()`

  def __init__(self, data: Any, device: str | None = None, dtype: DType | None = None, requires_grad: bool | None = None):
    self.grad: Tensor | None = None
    self._requires_grad = None
    _tensors[id(self)] = self
    if isinstance(data, UOp):  # a result of some op: under no_grad, gradients must not flow through it
      self.uop = data if Tensor.grad_enabled or _is_stored(data) else UOp(Ops.DETACH, data.dtype, (data,))
      self.requires_grad = requires_grad
      return
    device = Device.canonicalize(device)
    if dtype is not None: Device.check_dtype(device, dtype)
    if isinstance(data, (bool, int, float)):
      dtype = dtype or dtypes.from_py(data)
      self.uop = _const_uop(_fits(data, dtype), dtype, device)
    elif isinstance(data, (list, tuple)):
      flat, shape = _fully_flatten(data)
      dtype = dtype or dtypes.from_py(flat)
      self.uop = _buffer_from_bytes(struct.pack(f"{len(flat)}{dtype.fmt}", *[to_dtype(_fits(v, dtype), dtype) for v in flat]), dtype, shape, device)
    elif type(data).__module__ == "numpy" and hasattr(data, "tobytes"):  # numpy stays optional: no import needed to recognize it
      src_dtype = _numpy_dtype(data.dtype)
      self.uop = _buffer_from_bytes(memoryview(data.ravel()), src_dtype, tuple(data.shape), device)  # a view where it can: one copy
      if dtype is not None and dtype != src_dtype: self.uop = self.cast(dtype).uop
    else: raise TypeError(f"cannot make a Tensor from {type(data).__name__}")
    Device.check_dtype(device, self.dtype)
    self.requires_grad = requires_grad

  class train(contextlib.ContextDecorator):
    """`with Tensor.train():` (or as a decorator) turns on training behaviour: dropout drops, batchnorm uses batch statistics."""
    def __init__(self, mode: bool = True): self.mode = mode
    def __enter__(self) -> None: self.saved, Tensor.training = Tensor.training, self.mode
    def __exit__(self, *exc: Any) -> None: Tensor.training = self.saved
  class no_grad(contextlib.ContextDecorator):
    """`with Tensor.no_grad():` (or as a decorator): what is computed inside does not take part in gradients."""
    def __enter__(self) -> None: self.saved, Tensor.grad_enabled = Tensor.grad_enabled, False
    def __exit__(self, *exc: Any) -> None: Tensor.grad_enabled = self.saved

  # ### Properties
  @property
  def requires_grad(self) -> bool | None: return self._requires_grad
  @requires_grad.setter
  def requires_grad(self, value: bool | None) -> None:
    self._requires_grad = value
    if not value: return
    # a lazy tensor's UOp is shared with every equal expression (hash-consing): `Tensor.ones(3)` is the `1` of
    # `x + 1`. A tensor that wants its own gradient needs its own buffer.
    if not _is_stored(self.uop): self.realize()
    _computed_from.pop(self.uop, None)  # a tensor that wants its own gradient is a leaf: gradients stop here
    _grad_tensors[id(self)] = self
  @property
  def shape(self) -> tuple[int, ...]: return self.uop.shape
  @property
  def dtype(self) -> DType: return self.uop.dtype
  @property
  def device(self) -> str: return self.uop.device
  @property
  def ndim(self) -> int: return len(self.shape)
  def numel(self) -> int: return prod(self.shape)
  def element_size(self) -> int: return self.dtype.itemsize
  def __len__(self) -> int:
    if not self.shape: raise TypeError("len() of a 0-d tensor")
    return self.shape[0]
  def __repr__(self) -> str: return f"<Tensor shape={self.shape} dtype={self.dtype} device={self.device}>"

  # ### Getting values out
  # These are the only methods that run anything. `realize` computes the
  # tensor and points `self.uop` at the stored result, so later uses read
  # the buffer instead of computing it again.
  def realize(self, *others: Tensor) -> Tensor:
    realize_tensors([self, *others])
    return self
  def _bytes(self) -> memoryview: return _buffer_of(self.realize().uop).copyout()  # realized: stored in order, in a buffer
  def tolist(self) -> Any:
    def nest(flat: list, shape: tuple[int, ...]) -> Any:
      if len(shape) <= 1: return flat if shape else flat[0]
      n = prod(shape[1:])
      return [nest(flat[i*n:(i+1)*n], shape[1:]) for i in range(shape[0])]
    return nest(list(struct.unpack(f"<{self.numel()}{self.dtype.fmt}", self._bytes())), self.shape)
  def item(self) -> Any:
    if self.numel() != 1: raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
    return struct.unpack(f"<{self.dtype.fmt}", self._bytes())[0]
  def numpy(self) -> Any:
    import numpy as np
    return np.frombuffer(self._bytes(), dtype=np.dtype(self.dtype.name)).reshape(self.shape).copy()

  # ### Creation
  @staticmethod
  def empty(*shape: Any, device: str | None = None, dtype: DType | None = None) -> Tensor:
    shape, dtype, device = _new_shape(shape), dtype or dtypes.default_float, Device.canonicalize(device)
    Device.check_dtype(device, dtype)
    return Tensor(_reshape(_new_buffer(device, prod(shape), dtype), shape))
  @staticmethod
  def full(shape: tuple[int, ...] | int, fill_value: Any, device: str | None = None, dtype: DType | None = None,
           requires_grad: bool | None = None) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if any(s < 0 for s in shape): raise ValueError(f"negative dimension in shape {shape}")
    dtype, device = dtype or dtypes.from_py(fill_value), Device.canonicalize(device)
    Device.check_dtype(device, dtype)
    return Tensor(_const_uop(_fits(fill_value, dtype), dtype, device, shape), requires_grad=requires_grad)
  @staticmethod
  def zeros(*shape: Any, **kw: Any) -> Tensor: return Tensor.full(_shape_arg(shape), 0.0, **{"dtype": dtypes.default_float, **kw})
  @staticmethod
  def ones(*shape: Any, **kw: Any) -> Tensor: return Tensor.full(_shape_arg(shape), 1.0, **{"dtype": dtypes.default_float, **kw})
  @staticmethod
  def arange(start: Any, stop: Any = None, step: Any = 1, device: str | None = None, dtype: DType | None = None) -> Tensor:
    if stop is None: start, stop = 0, start
    if step == 0: raise ValueError("arange: step must not be zero")
    dtype = dtype or dtypes.from_py([start, stop, step])
    n = max(0, math.ceil((stop - start) / step))
    idx = Tensor(UOp(Ops.ARANGE, dtypes.int32, (_device_uop(Device.canonicalize(device)),), n))
    return (idx.cast(dtype) * step + start).cast(dtype)
  def full_like(self, fill_value: Any, **kw: Any) -> Tensor:
    return Tensor.full(self.shape, fill_value, **{"device": self.device, "dtype": self.dtype, **kw})
  def zeros_like(self, **kw: Any) -> Tensor: return self.full_like(0, **kw)
  def ones_like(self, **kw: Any) -> Tensor: return self.full_like(1, **kw)
  def empty_like(self, **kw: Any) -> Tensor: return Tensor.empty(self.shape, **{"device": self.device, "dtype": self.dtype, **kw})

  # ### Elementwise ops
  # `_broadcasted` turns both operands into tensors of one dtype and one
  # shape. Python scalars adopt the tensor's dtype (`int32 + 1` stays int32),
  # except that a float scalar makes an int tensor a float one; two tensors
  # promote by the lattice of chapter 2. Shapes broadcast as in numpy: align
  # on the right, a 1 stretches to match.
  def _broadcasted(self, y: Any, reverse: bool = False) -> tuple[Tensor, Tensor]:
    x: Tensor = self
    dtype = least_upper_dtype(x.dtype, y.dtype) if isinstance(y, Tensor) else _scalar_dtype(x.dtype, y)
    if not isinstance(y, Tensor): y = Tensor(_const_uop(y, dtype, x.device, x.shape))  # made at x's shape: nothing to broadcast
    if y.device != x.device: raise ValueError(f"tensors are on different devices: {x.device} and {y.device}; use .to(device)")
    if reverse: x, y = y, x
    x, y = x.cast(dtype), y.cast(dtype)
    if x.shape == y.shape: return x, y  # the usual case (always, for a scalar): nothing to broadcast
    shape = _broadcast_shape(x.shape, y.shape)
    return x._broadcast_to(shape), y._broadcast_to(shape)
  def _broadcast_to(self, shape: tuple[int, ...]) -> Tensor:
    if self.shape == shape: return self
    return Tensor(_expand(_reshape(self.uop, (1,) * (len(shape) - self.ndim) + self.shape), shape))  # checked by the caller
  def _alu(self, op: Ops, *srcs: Tensor) -> Tensor:
    out = dtypes.bool if op in GroupOp.Comparison else srcs[-1].dtype if op is Ops.WHERE else self.dtype
    return Tensor(UOp(op, out, (self.uop, *(s.uop for s in srcs))))
  def _binop(self, op: Ops, y: Any, reverse: bool = False) -> Tensor:
    x, y = self._broadcasted(y, reverse)
    return x._alu(op, y)

  def add(self, y: Any, reverse: bool = False) -> Tensor: return self._binop(Ops.ADD, y, reverse)
  def mul(self, y: Any, reverse: bool = False) -> Tensor: return self._binop(Ops.MUL, y, reverse)
  def sub(self, y: Any, reverse: bool = False) -> Tensor:
    x, y = self._broadcasted(y, reverse)
    return x._alu(Ops.ADD, y.neg())
  def div(self, y: Any, reverse: bool = False, rounding_mode: str | None = None) -> Tensor:
    """True division (ints become floats), or rounded toward zero ('trunc') or down ('floor'), as torch.div."""
    if rounding_mode not in (None, "trunc", "floor"):
      raise ArgumentError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
    x, y = self._broadcasted(y, reverse)
    if rounding_mode == "trunc": return x.idiv(y)
    if rounding_mode == "floor":
      if x.dtype.is_float: return (x / y).floor()
      q = x.idiv(y)  # truncated: one too high where the signs differ and it did not divide exactly
      return q if x.dtype.is_unsigned else q - ((x._alu(Ops.MOD, y) != 0) & ((x < 0) != (y < 0))).cast(q.dtype)
    if not x.dtype.is_float: x, y = x.cast(dtypes.default_float), y.cast(dtypes.default_float)
    return x._alu(Ops.MUL, y.reciprocal())
  def idiv(self, y: Any, reverse: bool = False) -> Tensor:
    """Division rounded toward zero, C's IDIV, as tinygrad's idiv; Python's `//` rounds down (`div(rounding_mode='floor')`)."""
    x, y = self._broadcasted(y, reverse)
    return (x / y).trunc() if x.dtype.is_float else x._alu(Ops.IDIV, y)
  def mod(self, y: Any, reverse: bool = False) -> Tensor:
    """Python's `%`: the result takes the divisor's sign."""
    x, y = self._broadcasted(y, reverse)
    if x.dtype.is_float: return x - y * (x / y).floor()
    r = x._alu(Ops.MOD, y)
    if x.dtype.is_unsigned: return r
    return ((r != 0) & ((r < 0) != (y < 0))).where(r + y, r)
  def maximum(self, y: Any) -> Tensor: return self._binop(Ops.MAX, y)
  def minimum(self, y: Any) -> Tensor:
    x, y = self._broadcasted(y)
    return x.neg().maximum(y.neg()).neg() if x.dtype.is_float else (x < y).where(x, y)
  def pow(self, y: Any, reverse: bool = False) -> Tensor:
    if not reverse and isinstance(y, int) and not isinstance(y, bool) and 0 <= y <= 64:  # exact, by repeated squaring
      result, base = self.ones_like(), self
      while y:
        if y & 1: result = result * base
        base, y = base * base, y >> 1
      return result
    exponent = y
    x, y = self._broadcasted(y, reverse)
    if not x.dtype.is_float:
      if not reverse and isinstance(exponent, int) and exponent < 0:
        raise RuntimeError(f"pow: an int tensor to the power {exponent} is not an int; cast it to float first")
      return x.cast(dtypes.default_float).pow(y.cast(dtypes.default_float)).round().cast(x.dtype)
    # The value is exp2(y*log2|x|), with the sign of an odd power and NaN for a fraction of a negative number. Its
    # derivatives are PyTorch's y*x^(y-1) and x^y*ln(x), as its own gradient (chapter 8): the chain rule through
    # exp2 and log2 meets 0*inf at x = 0 and x = inf, where these are exact.
    out = _pow_value(x, y)
    def gradient(g: Tensor) -> list[tuple[UOp, Tensor]]:  # built when asked for; not holding `out`, which would never go
      dx = ((x == 0) & (y == 0)).where(y, y * _pow_value(x, y - 1))
      return [(x.uop, g * dx), (y.uop, g * (x == 0).where((y < 0).where(-math.inf, 0), _pow_value(x, y) * x.log()))]
    _custom_gradients[out.uop] = gradient
    return out
  def where(self, x: Any, y: Any) -> Tensor:
    """`cond.where(x, y)`: x where cond is true, else y; all three broadcast together, x and y promote together."""
    if not isinstance(x, Tensor): x = Tensor(_const_uop(x, _scalar_dtype(y.dtype, x) if isinstance(y, Tensor) else dtypes.from_py(x), self.device))
    x, y = x._broadcasted(y)
    shape = _broadcast_shape(self.shape, x.shape)
    return self.cast(dtypes.bool)._broadcast_to(shape)._alu(Ops.WHERE, x._broadcast_to(shape), y._broadcast_to(shape))

  def neg(self) -> Tensor: return self.logical_not() if self.dtype == dtypes.bool else self._alu(Ops.NEG)
  def reciprocal(self) -> Tensor: return self._float()._alu(Ops.RECIPROCAL)
  def sqrt(self) -> Tensor: return self._float()._alu(Ops.SQRT)
  def rsqrt(self) -> Tensor: return self.sqrt().reciprocal()
  def exp2(self) -> Tensor: return self._float()._alu(Ops.EXP2)
  def log2(self) -> Tensor: return self._float()._alu(Ops.LOG2)
  def sin(self) -> Tensor: return self._float()._alu(Ops.SIN)
  def _float(self) -> Tensor: return self if self.dtype.is_float else self.cast(dtypes.default_float)

  # comparisons and logic (all return bool tensors)
  def __lt__(self, y: Any) -> Tensor: return self._binop(Ops.CMPLT, y)
  def __gt__(self, y: Any) -> Tensor: return self._binop(Ops.CMPLT, y, reverse=True)
  def __ne__(self, y: Any) -> Tensor: return self._binop(Ops.CMPNE, y)  # type: ignore[override]
  def __eq__(self, y: Any) -> Tensor: return self._binop(Ops.CMPNE, y).logical_not()  # type: ignore[override]
  def __le__(self, y: Any) -> Tensor: return (self < y) | (self == y)
  def __ge__(self, y: Any) -> Tensor: return (self > y) | (self == y)
  __hash__ = object.__hash__
  def logical_not(self) -> Tensor: return self.cast(dtypes.bool)._alu(Ops.XOR, Tensor(_const_uop(True, dtypes.bool, self.device, self.shape)))
  def _bitwise(self, op: Ops, y: Any, reverse: bool = False) -> Tensor:
    x, y = self._broadcasted(y, reverse)
    if x.dtype.is_float: raise ArgumentTypeError(f"bitwise {op.name} needs int or bool tensors, got {x.dtype}")
    return x._alu(op, y)
  def bitwise_and(self, y: Any) -> Tensor: return self._bitwise(Ops.AND, y)
  def bitwise_or(self, y: Any) -> Tensor: return self._bitwise(Ops.OR, y)
  def bitwise_xor(self, y: Any) -> Tensor: return self._bitwise(Ops.XOR, y)
  def bitwise_not(self) -> Tensor:
    return self.logical_not() if self.dtype == dtypes.bool else self._bitwise(Ops.XOR, -1 if not self.dtype.is_unsigned else self.dtype.max)
  def lshift(self, y: Any) -> Tensor: return self._bitwise(Ops.SHL, y)
  def rshift(self, y: Any) -> Tensor: return self._bitwise(Ops.SHR, y)

  def cast(self, dtype: DType | str) -> Tensor:
    if self.dtype == (dtype := _dtype_arg(dtype)): return self
    Device.check_dtype(self.device, dtype)
    return Tensor(UOp(Ops.CAST, dtype, (self.uop,)))
  def bitcast(self, dtype: DType) -> Tensor:
    if dtype.itemsize != self.dtype.itemsize:
      raise ValueError(f"bitcast needs dtypes of one size: {self.dtype} is {self.dtype.itemsize} bytes, {dtype} is {dtype.itemsize}")
    Device.check_dtype(self.device, dtype)
    return self if self.dtype == dtype else Tensor(UOp(Ops.BITCAST, dtype, (self.uop,)))
  def float(self) -> Tensor: return self.cast(dtypes.float32)
  def half(self) -> Tensor: return self.cast(dtypes.float16)
  def int(self) -> Tensor: return self.cast(dtypes.int32)
  def bool(self) -> Tensor: return self.cast(dtypes.bool)

  __add__, __mul__, __sub__, __truediv__, __mod__, __pow__, __neg__ = add, mul, sub, div, mod, pow, neg
  __and__, __or__, __xor__, __invert__, __lshift__, __rshift__ = bitwise_and, bitwise_or, bitwise_xor, bitwise_not, lshift, rshift
  def __floordiv__(self, y: Any) -> Tensor: return self.div(y, rounding_mode="floor")
  def __radd__(self, y: Any) -> Tensor: return self.add(y, True)
  def __rmul__(self, y: Any) -> Tensor: return self.mul(y, True)
  def __rsub__(self, y: Any) -> Tensor: return self.sub(y, True)
  def __rtruediv__(self, y: Any) -> Tensor: return self.div(y, True)
  def __rfloordiv__(self, y: Any) -> Tensor: return self.div(y, True, rounding_mode="floor")
  def __rmod__(self, y: Any) -> Tensor: return self.mod(y, True)
  def __rpow__(self, y: Any) -> Tensor: return self.pow(y, True)
  def __abs__(self) -> Tensor: return self.abs()
  def __rand__(self, y: Any) -> Tensor: return self._bitwise(Ops.AND, y, True)
  def __ror__(self, y: Any) -> Tensor: return self._bitwise(Ops.OR, y, True)
  def __rxor__(self, y: Any) -> Tensor: return self._bitwise(Ops.XOR, y, True)
  def __matmul__(self, y: Tensor) -> Tensor: return self.matmul(y)
  def __rmatmul__(self, y: Tensor) -> Tensor: return Tensor(y).matmul(self) if not isinstance(y, Tensor) else y.matmul(self)
  def __bool__(self) -> bool: raise TypeError("the truth value of a Tensor is ambiguous; use .item() or .all()/.any()")

  # ### Movement ops
  # Each checks its arguments against the shape, so a mistake raises here,
  # naming the shapes, and not later inside a kernel.
  def reshape(self, *shape: Any) -> Tensor:
    shape = tuple(self.shape[i] if s is None else s for i, s in enumerate(_shape_arg(shape)))  # None keeps that axis
    if shape.count(-1) > 1: raise ArgumentError(f"reshape to {shape}: only one dimension can be -1")
    if -1 in shape:
      known = prod(s for s in shape if s != -1)
      if known == 0 or self.numel() % known: raise ValueError(f"cannot reshape {self.shape} ({self.numel()} elements) to {shape}")
      shape = tuple(self.numel() // known if s == -1 else s for s in shape)
    if any(s < 0 for s in shape) or prod(shape) != self.numel():
      raise ValueError(f"cannot reshape {self.shape} ({self.numel()} elements) to {shape} ({prod(shape)} elements)")
    return self if shape == self.shape else Tensor(_reshape(self.uop, shape))
  def view(self, *shape: Any) -> Tensor: return self.reshape(*shape)
  def permute(self, *order: Any) -> Tensor:
    order = tuple(_axis(i, self.ndim, self.shape) for i in _shape_arg(order))
    if sorted(order) != list(range(self.ndim)):
      raise ArgumentError(f"permute order {order} is not a permutation of the {self.ndim} axes of shape {self.shape}")
    return self if order == tuple(range(self.ndim)) else Tensor(_movement(self.uop, Ops.PERMUTE, order))
  def transpose(self, dim0: int = 1, dim1: int = 0) -> Tensor:
    order = list(range(self.ndim))
    a, b = _axis(dim0, self.ndim, self.shape), _axis(dim1, self.ndim, self.shape)
    order[a], order[b] = order[b], order[a]
    return self.permute(order)
  @property
  def T(self) -> Tensor: return self.permute(tuple(range(self.ndim))[::-1])
  def expand(self, *shape: Any) -> Tensor:
    shape = _shape_arg(shape)
    if len(shape) < self.ndim: raise ValueError(f"cannot expand {self.shape} to {shape}: fewer dimensions")
    padded = (1,) * (len(shape) - self.ndim) + self.shape
    new = tuple(p if s == -1 else s for p, s in zip(padded, shape))
    if any(p != s and p != 1 for p, s in zip(padded, new)): raise ValueError(f"cannot expand {self.shape} to {shape}: only size-1 axes can grow")
    t = self.reshape(padded)
    return t if new == t.shape else Tensor(_expand(t.uop, new))
  def pad(self, padding: Sequence[Any], mode: str = "constant", value: float = 0.0) -> Tensor:
    """`padding` is ((before, after), ...) per axis (None for none), or flat, PyTorch-style, last axis first. The new
    elements are `value` (mode 'constant'), or copied from the tensor: mirrored ('reflect'), the edge repeated
    ('replicate'), or wrapped around ('circular'), as torch.nn.functional.pad."""
    if mode not in ("constant", "reflect", "replicate", "circular"):
      raise NotImplementedError(f"pad: mode {mode!r} is not one of constant, reflect, replicate, circular")
    if all(isinstance(p, int) for p in padding):
      if len(padding) % 2 or len(padding) // 2 > self.ndim: raise ValueError(f"flat padding {tuple(padding)} does not fit shape {self.shape}")
      pairs = [(0, 0)] * (self.ndim - len(padding) // 2) + [(padding[i], padding[i+1]) for i in range(len(padding) - 2, -1, -2)]
    else: pairs = [(0, 0) if p is None else tuple(p) for p in padding]
    if len(pairs) != self.ndim: raise ValueError(f"padding {tuple(padding)} has {len(pairs)} axes, shape {self.shape} has {self.ndim}")
    if mode == "circular" and any(b < 0 or a < 0 for b, a in pairs): raise NotImplementedError(f"pad: circular mode with negative padding {pairs}")
    if mode != "constant":  # copy in the new elements, then cut what negative padding removes
      return self._pad_from_inside([(max(b, 0), max(a, 0)) for b, a in pairs], mode).pad([(min(b, 0), min(a, 0)) for b, a in pairs])
    # negative padding removes elements: shrink first, then pad what remains
    t = self.shrink(tuple((-min(b, 0), s + min(a, 0)) for (b, a), s in zip(pairs, self.shape)))
    pairs = [(max(b, 0), max(a, 0)) for b, a in pairs]
    if all(p == (0, 0) for p in pairs): return t
    padded = Tensor(_movement(t.uop, Ops.PAD, tuple(pairs)))
    if value == 0: return padded
    inside = Tensor(_movement(Tensor.ones(t.shape, device=t.device, dtype=dtypes.bool).uop, Ops.PAD, tuple(pairs)))
    return inside.where(padded, value)
  def shrink(self, arg: Sequence[tuple[int, int] | None]) -> Tensor:
    if len(arg) != self.ndim: raise ValueError(f"shrink {tuple(arg)} has {len(arg)} axes, shape {self.shape} has {self.ndim}")
    arg = tuple((0, s) if a is None else tuple(a) for a, s in zip(arg, self.shape))
    if any(not 0 <= b <= e <= s for (b, e), s in zip(arg, self.shape)): raise ValueError(f"shrink {arg} is out of bounds for shape {self.shape}")
    return self if all(a == (0, s) for a, s in zip(arg, self.shape)) else Tensor(_movement(self.uop, Ops.SHRINK, arg))
  def flip(self, axis: int | Sequence[int]) -> Tensor:
    axes = [_axis(a, self.ndim, self.shape) for a in ((axis,) if isinstance(axis, int) else axis)]
    if len(set(axes)) != len(axes): raise ArgumentError(f"flip: axis {axis} names an axis twice")
    return Tensor(_movement(self.uop, Ops.FLIP, tuple(i in axes for i in range(self.ndim)))) if axes else self

  # ### Reductions
  # One op, `REDUCE_AXIS`, with ADD, MUL or MAX, reduces the chosen axes to
  # size 1; `keepdim=False` reshapes them away afterwards. Sums accumulate
  # in a wide enough type: ints and bools in at least int32 (uint32 for
  # unsigned), halves in float32, then cast back, as tinygrad does.
  def _reduce(self, op: Ops, axis: int | Sequence[int] | None, keepdim: bool) -> Tensor:
    axes = tuple(range(self.ndim)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(sorted({_axis(a, self.ndim, self.shape) for a in axes}))
    if not self.ndim: axes = ()  # a 0-d tensor is its own reduction
    out = Tensor(UOp(Ops.REDUCE_AXIS, self.dtype, (self.uop,), (op, axes))) if axes else self
    return out if keepdim else out.reshape(tuple(s for i, s in enumerate(self.shape) if i not in axes))
  def _acc_dtype(self) -> DType:
    if self.dtype.is_unsigned: return least_upper_dtype(self.dtype, dtypes.uint32)
    if not self.dtype.is_float: return least_upper_dtype(self.dtype, dtypes.int32)
    return least_upper_dtype(self.dtype, dtypes.float32)
  def sum(self, axis: int | Sequence[int] | None = None, keepdim: bool = False, dtype: DType | str | None = None) -> Tensor:
    acc = self._acc_dtype() if dtype is None else _dtype_arg(dtype)
    out = self.cast(acc)._reduce(Ops.ADD, axis, keepdim)
    return out.cast(self.dtype) if dtype is None and self.dtype.is_float else out
  def prod(self, axis: int | Sequence[int] | None = None, keepdim: bool = False, dtype: DType | str | None = None) -> Tensor:
    acc = self._acc_dtype() if dtype is None else _dtype_arg(dtype)
    out = self.cast(acc)._reduce(Ops.MUL, axis, keepdim)
    return out.cast(self.dtype) if dtype is None and self.dtype.is_float else out
  def max(self, axis: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor: return self._reduce(Ops.MAX, axis, keepdim)
  def min(self, axis: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
    # the minimum is the maximum of an order-reversing map: negation for floats, bitwise not for ints
    if self.dtype.is_float: return self.neg().max(axis, keepdim).neg()
    return self.bitwise_not().max(axis, keepdim).bitwise_not()
  def mean(self, axis: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
    out = self._float().sum(axis, keepdim)
    n = prod(self.shape) // max(1, prod(out.shape)) if out.numel() else prod(self.shape)
    return out / n if n else out * math.nan

  # ### Devices, storage, assignment
  def to(self, device: str) -> Tensor:
    device = Device.canonicalize(device)
    Device.check_dtype(device, self.dtype)
    return self if device == self.device else Tensor(UOp(Ops.COPY, self.dtype, (self.uop,), device))
  def contiguous(self) -> Tensor: return self if _is_stored(self.uop) else Tensor(UOp(Ops.CONTIGUOUS, self.dtype, (self.uop,)))
  def detach(self) -> Tensor: return Tensor(UOp(Ops.DETACH, self.dtype, (self.uop,)))
  def clone(self) -> Tensor: return Tensor(UOp(Ops.CONTIGUOUS, self.dtype, (self.uop,)))
  def assign(self, x: Any) -> Tensor:
    """Write x's values into this tensor's buffer (realizing it first if it has none)."""
    x = x if isinstance(x, Tensor) else self.full_like(x)
    if x.shape != self.shape: raise ValueError(f"assign: shape {x.shape} does not match {self.shape}")
    if x.device != self.device: raise ValueError(f"assign: device {x.device} does not match {self.device}")
    if not _is_stored(self.uop): self.realize()
    self.uop = UOp(Ops.ASSIGN, self.dtype, (self.uop, x.cast(self.dtype).uop))
    return self

def _scalar_dtype(dtype: DType, y: Any) -> DType:
  """The dtype a Python scalar takes next to a tensor of `dtype`: the tensor's, unless that would lose the scalar's kind."""
  if not isinstance(y, (bool, int, float)): raise TypeError(f"cannot combine a Tensor with {type(y).__name__}")
  if isinstance(y, float) and not dtype.is_float: return dtypes.default_float
  return dtypes.default_int if isinstance(y, int) and not isinstance(y, bool) and dtype == dtypes.bool else dtype


def _pow_value(x: Tensor, y: Tensor) -> Tensor:
  magnitude = (y * x.abs().log2()).exp2()
  negative = (y.trunc() == y).where(((y.abs() % 2) == 1).where(-magnitude, magnitude), math.nan)
  return (y == 0).where(1.0, (x < 0).where(negative, magnitude))

def _broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
  n = max(len(a), len(b))
  pa, pb = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
  if any(x != y and x != 1 and y != 1 for x, y in zip(pa, pb)): raise ValueError(f"cannot broadcast shapes {a} and {b}")
  return tuple(y if x == 1 else x for x, y in zip(pa, pb))


# The class above is the lazy core. Later chapters add methods to it where
# their ideas are introduced: autograd in chapter 8, the rest of the API in
# chapter 16. Each group is written as a small class, and `tensor_methods`
# copies its methods onto Tensor, so users see one Tensor and readers meet the
# API one family at a time.
_CLASS_MACHINERY = set(vars(type("empty", (), {})))  # __module__, __dict__, __doc__...: what every class body has

def tensor_methods(family: type) -> type:
  for name, member in vars(family).items():
    if name not in _CLASS_MACHINERY: setattr(Tensor, name, member)
  return family

# # 8. Autograd
#
# A gradient is computed the way everything else in tiny is: by rules over
# UOps. `pm_gradient` holds one rule per differentiable op. Given the
# gradient flowing into a node (the `ctx`), the rule returns the gradient for
# each of its sources: for `MUL(a, b)` that is `(g*b, g*a)`; for `EXP2(x)`,
# `g * exp2(x) * ln 2`. The rules build their results with Tensor ops, so the
# gradient is itself a lazy graph: `loss.backward()` computes nothing, and the
# forward and backward passes are scheduled (and fused) together when the
# optimizer realizes its update.
#
# `compute_gradient` walks the graph from the loss back to the targets, in
# reverse topological order, so each node's gradient is complete (summed
# over all its users) before it is passed on. It only visits nodes on a path
# to a target, and `DETACH` stops it.
#
# Broadcasting needs no special case: broadcasting was an explicit `EXPAND`
# in the forward graph, and the gradient of `EXPAND` sums over the expanded
# axes, which is exactly "summing the gradient back to the source shape".

# ## The gradient rules
#
# One rule per op, in `pm_gradient`; reduces and max have helpers, and ops
# with no gradient (comparisons, truncation, integer and bitwise ops) return
# None for each source.
def _reduce_gradient(ctx: Tensor, x: UOp) -> tuple[Tensor | None]:
  src, op = Tensor(x.src[0]), x.reduce_op
  if op is Ops.ADD: return (ctx.expand(src.shape),)
  if op is Ops.MAX:  # split between the elements that reached the maximum
    hit = (src == Tensor(x).expand(src.shape)).cast(ctx.dtype)
    return (hit * (ctx / hit.sum(x.axes, keepdim=True)).expand(src.shape),)
  # MUL: the product of the others. That is the product over the element, unless it is 0: with one zero in the
  # reduction, the zero's gradient is the product of the nonzero elements and every other gets 0.
  zero = src == 0
  nonzero, zeros = zero.where(1, src).prod(x.axes, keepdim=True), zero.sum(x.axes, keepdim=True)
  return (ctx.expand(src.shape) * (zeros == 0).where(nonzero / src, (zero & (zeros == 1)).where(nonzero, 0)),)

def _max_gradient(ctx: Tensor, x: UOp) -> tuple[Tensor, Tensor]:
  a, b = Tensor(x.src[0]), Tensor(x.src[1])
  tie = (a == b).cast(ctx.dtype) * 0.5
  return (ctx * ((a > b).cast(ctx.dtype) + tie), ctx * ((b > a).cast(ctx.dtype) + tie))

def _no_gradient(x: UOp) -> tuple[None, ...]: return (None,) * len(x.src)

pm_gradient = PatternMatcher([
  (UPat(Ops.CAST, name="x"), lambda ctx, x: (ctx.cast(x.src[0].dtype),)),
  (UPat(Ops.NEG), lambda ctx: (-ctx,)),
  (UPat(Ops.RECIPROCAL, name="x"), lambda ctx, x: (-ctx * Tensor(x) * Tensor(x),)),
  (UPat(Ops.SQRT, name="x"), lambda ctx, x: (ctx / (Tensor(x) * 2),)),
  (UPat(Ops.EXP2, name="x"), lambda ctx, x: (ctx * Tensor(x) * math.log(2),)),
  (UPat(Ops.LOG2, name="x"), lambda ctx, x: (ctx / (Tensor(x.src[0]) * math.log(2)),)),
  (UPat(Ops.SIN, name="x"), lambda ctx, x: (ctx * Tensor(x.src[0]).cos(),)),
  (UPat(Ops.ADD), lambda ctx: (ctx, ctx)),
  (UPat(Ops.MUL, name="x"), lambda ctx, x: (ctx * Tensor(x.src[1]), ctx * Tensor(x.src[0]))),
  (UPat(Ops.MAX, name="x"), _max_gradient),
  (UPat(Ops.WHERE, name="x"), lambda ctx, x: (None, Tensor(x.src[0]).where(ctx, 0), Tensor(x.src[0]).where(0, ctx))),
  (UPat(Ops.REDUCE_AXIS, name="x"), _reduce_gradient),
  (UPat(Ops.RESHAPE, name="x"), lambda ctx, x: (ctx.reshape(x.src[0].shape),)),
  (UPat(Ops.PERMUTE, name="x"), lambda ctx, x: (ctx.permute(argsort(x.arg)),)),
  (UPat(Ops.EXPAND, name="x"), lambda ctx, x: (ctx.sum(tuple(i for i, (a, b) in enumerate(zip(x.src[0].shape, x.shape)) if a != b), keepdim=True),)),
  (UPat(Ops.PAD, name="x"), lambda ctx, x: (ctx.shrink(tuple((b, b + s) for (b, _), s in zip(x.arg, x.src[0].shape))),)),
  (UPat(Ops.SHRINK, name="x"), lambda ctx, x: (ctx.pad(tuple((b, s - e) for (b, e), s in zip(x.arg, x.src[0].shape))),)),
  (UPat(Ops.FLIP, name="x"), lambda ctx, x: (ctx.flip(tuple(i for i, f in enumerate(x.arg) if f)),)),
  (UPat(Ops.CONTIGUOUS), lambda ctx: (ctx,)),
  (UPat(Ops.COPY, name="x"), lambda ctx, x: (ctx.to(x.src[0].device),)),
  (UPat({Ops.TRUNC, Ops.CMPLT, Ops.CMPNE, Ops.IDIV, Ops.MOD, Ops.AND, Ops.OR, Ops.XOR, Ops.SHL, Ops.SHR, Ops.BITCAST}, name="x"), _no_gradient),
])

# ## Walking back from the loss
#
# The walk described above: reverse topological order, only nodes on a path to
# a target, gradients summed over users.
# A Tensor method can know a better gradient than its ops' rules compose. conv2d's input gradient, walked back
# through the window views of `_pool`, wraps around inside the rows, where the transposed convolution is a plain
# one; pow's, walked back through exp2 and log2, meets 0*inf at a zero base, where c*x^(c-1) is exact. Such a method
# puts a function in `_custom_gradients`, from its result's gradient to (source, gradient) pairs, and the walk uses
# it instead of the rules under the result. A source that is a stored tensor may not be in the graph as it is (a
# reshape of it reshapes its BUFFER: `_gradient_key`, below), so its gradient goes to the BUFFER.
def compute_gradient(root: UOp, root_grad: Tensor, targets: list[UOp]) -> dict[UOp, Tensor]:
  """The gradient of `root` (seeded with `root_grad`) with respect to each target UOp."""
  topo = list(root.toposort(lambda u: u.op is not Ops.DETACH))
  wanted = set(targets)
  on_path: dict[UOp, bool] = {}
  for u in topo: on_path[u] = u in wanted or any(on_path.get(s, False) for s in u.src)
  grads: dict[UOp, Tensor] = {root: root_grad}
  for u in reversed(topo):
    if u not in grads or not any(on_path.get(s, False) for s in u.src): continue
    if (custom := _custom_gradients.get(u)) is not None: pairs = [(_gradient_key(s), g.reshape(_gradient_key(s).shape)) for s, g in custom(grads[u])]
    elif (src_grads := pm_gradient.rewrite(u, ctx=grads[u])) is None: raise RuntimeError(f"no gradient rule for {u.op.name}")
    else: pairs = zip(u.src, src_grads)
    for s, g in pairs:
      if g is not None and on_path.get(s, False): grads[s] = grads[s] + g if s in grads else g
  return {t: grads[t] for t in targets if t in grads}


# ## backward and gradient
#
# `gradient` and `backward` are the user's side of it: `backward()` seeds the
# loss with 1 and accumulates into `.grad` of every tensor created with
# `requires_grad=True` that the loss depends on.
# Reading a value (`loss.item()`) stores it and points the tensor at the
# stored result, but the graph it was computed from is remembered in
# `_computed_from` when it leads to a tensor that wants a gradient: the
# gradient walks that graph instead, as if nothing had been read.
pm_computed_from = PatternMatcher([(UPat(name="x"), lambda x: _computed_from.get(x))])
def _with_graphs(root: UOp) -> UOp:
  if not any(u in _computed_from for u in root.toposort()): return root
  return graph_rewrite(root, pm_computed_from, name="stored results to their graphs")

# A stored tensor is RESHAPE(BUFFER), and reshaping it reshapes the BUFFER directly (`_reshape`), so its gradient is the buffer's.
def _gradient_key(u: UOp) -> UOp: return u.src[0] if u.op is Ops.RESHAPE and u.src[0].op is Ops.BUFFER else u

@tensor_methods
class TensorGradients:
  def gradient(self, *targets: Tensor, gradient: Tensor | None = None) -> list[Tensor]:
    """The gradients of this tensor with respect to `targets`, without touching their `.grad`."""
    if gradient is None:
      if self.numel() != 1: raise ValueError(f"gradient of a tensor of shape {self.shape} needs an explicit `gradient` of that shape")
      gradient = Tensor.ones(self.shape, device=self.device, dtype=self.dtype)
    keys = [_gradient_key(t.uop) for t in targets]
    grads = compute_gradient(_with_graphs(self.uop), gradient, keys)
    return [grads[k].reshape(t.shape) if k in grads else t.zeros_like() for t, k in zip(targets, keys)]
  def backward(self, gradient: Tensor | None = None) -> Tensor:
    """Accumulate into `.grad` the gradient of this tensor for every tensor created with `requires_grad=True` that it depends on."""
    in_graph = _with_graphs(self.uop).toposort()
    targets = [t for t in list(_grad_tensors.values()) if t.requires_grad and _gradient_key(t.uop) in in_graph]
    if not targets: raise RuntimeError(f"backward() of a tensor of shape {self.shape}: it depends on no tensor with requires_grad=True")
    for t, g in zip(targets, self.gradient(*targets, gradient=gradient)): t.grad = g if t.grad is None else t.grad + g
    return self

# ## The running example
#
# The running example's gradient: `c` is the sum of `a*b`, so its gradient
# with respect to `a` is `b`, computed by the MUL rule from the REDUCE_AXIS
# rule's expanded ones. It is a lazy graph like any other until read:
#
# ```python
# print(c.gradient(a)[0].tolist())
# ```
# ```text
# [4.0, 5.0, 6.0]
# ```

# # 9. Scheduling
#
# `realize()` hands the scheduler a graph of tensor UOps. Its job is to cut
# the graph into kernels. A kernel computes one output tensor, element by
# element, and stores it to memory; everything it needs that is not stored
# yet, it computes inline. So a chain of elementwise ops is one kernel, and
# `((a*b)+c).sum()` is one kernel too: the multiply and add happen inside the
# summing loop, never touching memory.
#
# A value is stored, so starts a new kernel, only where it must be:
#
# - the tensors being realized, and `contiguous()`;
# - `assign`, which writes into an existing buffer, and `to(device)`, which
#   copies between devices and needs its source in memory;
# - a reduce whose result is *expanded*, read many times at different
#   indices. `x - x.max(axis, keepdim=True)` reads each maximum once per
#   element of its row; computing it inline would repeat the whole reduction
#   for every element. Storing it costs one small kernel. (Softmax is thus
#   three kernels: the max, the sum of exponentials, the division.)
#   A reduce inside another reduce's loop is not expanded and stays inline:
#   it reads the outer loop's index, so each trip computes a new value, not
#   the same one again. (The window trick's gradient, walked back by the
#   rules, sums over what the windows were multiplied by inside the sums
#   over the window positions, in one kernel.)
# - a *padded* value that is expanded. A conv reads each element of its
#   padded input once per output channel and window position; read inline,
#   every one of those reads tests whether it falls in the padding, and such
#   a guarded load cannot be part of a vector. Stored, the padding is zeros
#   in memory and the reads are plain. It is stored as padded, in its
#   source's order, before the movement ops that follow reorder it (a conv's
#   window trick transposes it first).
# - a value that runs a reduction and is read by more than one kernel: each
#   would run the reduction again. In a training step the forward `x @ W1`
#   is read by the forward pass and by the backward pass's relu mask;
#   storing it once costs one store, recomputing it a whole matmul. (Readers
#   in one kernel share the value: `relu(x @ W)` reads the product twice, in
#   one loop.) Finding these is two linear walks: which values run a
#   reduction (sources first), then which kernel reads each value (readers
#   first: the one stored value whose kernel computes it inline, or several).
#   A second round lets a value above a newly stored one, like
#   `relu(x @ W1)`, go back to being recomputed.
#
# Everything else is recomputed where it is used, which for elementwise work
# is cheaper than a round trip through memory.
#
# The scheduler runs named passes over the graph: mark the realize points
# above (the shared reduces are a pass of their own), and turn each realize
# point into a kernel (or a copy), replacing it in the graph by a view of its
# output buffer. Each kernel is described by an *AST*: a SINK
# holding `STORE(PARAM 0, value)`, where the buffers it reads are numbered
# `PARAM`s instead of concrete buffers. Two kernels that do the same thing to
# different buffers have the same AST, which is what makes the compiled
# program reusable from one training step to the next.
#
# The whole schedule is reusable too. The second step of a training loop
# builds the same graph as the first over other buffers. So before
# scheduling, one walk swaps the tensors already computed for their stored
# results and replaces each buffer of the graph by a placeholder that says
# only "the k-th buffer of this graph" (its dtype, size and device kept; k
# counts in the walk's order, which follows the graph's structure):
# hash-consing makes the result the very same UOp for every step, and it is
# the key of `_schedules`. Scheduling the placeholder graph makes new
# buffers as placeholders too, so the rules allocate nothing; `create_schedule`
# binds the placeholders to this call's buffers and allocates the new ones.
# A step that was seen before runs no scheduling pass at all.

@dataclass(frozen=True)
class ScheduleItem:
  ast: UOp                # SINK(STORE(PARAM 0, value)) for a kernel; COPY for a copy
  bufs: tuple[UOp, ...]   # the BUFFER UOps, in PARAM order (the output first)

class ScheduleContext:
  """The kernels scheduled so far, with what each must wait for, and the new buffers they store into."""
  def __init__(self) -> None:
    self.new: list[UOp] = []           # placeholders for the buffers this schedule makes
    self.items: list[ScheduleItem] = []
    self.waits: list[set[int]] = []   # per item: the assign items whose result it reads
    self.assigns: set[int] = set()    # the items that write into an existing buffer
  def new_buffer(self, device: str, size: int, dtype: DType) -> UOp:
    self.new.append(_placeholder("new", len(self.new), dtype, device, size))
    return self.new[-1]
  def add(self, item: ScheduleItem, waits: set[int], assign: bool = False) -> None:
    self.items.append(item)
    self.waits.append(waits)
    if assign: self.assigns.add(len(self.items) - 1)

def _buffer_to_param(ctx: tuple[list[UOp], set[int]], b: UOp) -> UOp:
  bufs = ctx[0]
  if b not in bufs: bufs.append(b)
  return UOp(Ops.PARAM, b.dtype, (), (bufs.index(b), b.size))

def _read_after(ctx: tuple[list[UOp], set[int]], a: UOp, x: UOp) -> UOp:
  ctx[1].add(a.arg)
  return x

pm_params = PatternMatcher([(UPat(Ops.BUFFER, name="b"), _buffer_to_param), (UPat(Ops.AFTER, src=(UPat(name="x"),), name="a"), _read_after)])

def schedule_kernel(ctx: ScheduleContext, value: UOp, out: UOp | None = None) -> UOp:
  """Add a kernel that stores `value` (into `out`, or a new buffer) and return a view of the stored result."""
  bufs, waits = [out if out is not None else ctx.new_buffer(value.device, prod(value.shape), value.dtype)], set()
  body = graph_rewrite(value, pm_params, ctx=(bufs, waits), name="buffers to params")
  store = UOp(Ops.STORE, dtypes.void, (UOp(Ops.PARAM, bufs[0].dtype, (), (0, bufs[0].size)), body))
  ctx.add(ScheduleItem(UOp.sink(store), tuple(bufs)), waits, assign=out is not None)
  return _reshape(bufs[0], value.shape)

def schedule_copy(ctx: ScheduleContext, x: UOp) -> UOp:
  src, waits = x.src[0], set()
  if src.op is Ops.AFTER: src, waits = src.src[0], {src.arg}
  if not _is_stored(src): src = schedule_kernel(ctx, src)
  out = ctx.new_buffer(x.arg, prod(x.shape), x.dtype)
  ctx.add(ScheduleItem(UOp(Ops.COPY, x.dtype, (), x.arg), (out, src if src.op is Ops.BUFFER else src.src[0])), waits)
  return _reshape(out, x.shape)

# An assign writes into memory that other kernels may still want to read as
# it was. Its result is marked `AFTER(target, item)`: a kernel that reads
# through the mark must run after the assign, and a kernel that reads the
# target without it must run before (`order_schedule` sees to both).
def schedule_assign(ctx: ScheduleContext, target: UOp, value: UOp) -> UOp:
  if not _is_stored(target): raise ValueError("assign needs a target stored in a buffer")
  view = schedule_kernel(ctx, value, target if target.op is Ops.BUFFER else target.src[0])
  return UOp(Ops.AFTER, view.dtype, (view,), len(ctx.items) - 1)

def order_schedule(ctx: ScheduleContext) -> list[ScheduleItem]:
  """Order the items: after the kernels that make their inputs, and every assign after the plain readers of its target."""
  items = ctx.items
  made_by = {item.bufs[0]: i for i, item in enumerate(items) if i not in ctx.assigns}
  waits = [w | {made_by[b] for b in item.bufs[1:] if b in made_by} for w, item in zip(ctx.waits, items)]
  for a in ctx.assigns:
    waits[a] |= {i for i, item in enumerate(items) if i != a and a not in waits[i] and items[a].bufs[0] in item.bufs[1:]}
  users: list[list[int]] = [[] for _ in items]
  for i, w in enumerate(waits):
    for j in w: users[j].append(i)
  pending = [len(w) for w in waits]
  ready, order = [i for i, n in enumerate(pending) if n == 0], []
  while ready:
    i = heapq.heappop(ready)
    order.append(items[i])
    for u in users[i]:
      pending[u] -= 1
      if pending[u] == 0: heapq.heappush(ready, u)
  if len(order) != len(items): raise RuntimeError("cannot order the kernels: a value is needed both before and after an assign to it")
  return order

def _reduces_or_pads(memo: dict[UOp, bool], x: UOp) -> bool:
  """Does computing x inline run a reduction, or pad? (Stop at stored values; `memo` makes the pass linear.)"""
  for u in x.toposort(lambda u: u not in memo and u.op not in (Ops.CONTIGUOUS, Ops.BUFFER)):
    memo[u] = u.op in (Ops.REDUCE_AXIS, Ops.PAD) or any(memo.get(s, False) for s in u.src)
  return memo.get(x, False)

def _moves_a_pad(x: UOp) -> bool: return x.op is Ops.PAD or (x.op in GroupOp.Movement and _moves_a_pad(x.src[0]))

def _stored(x: UOp) -> UOp:
  """x marked to be stored; if x only moves a padded value, the padded value is stored (in its own order) and moved."""
  if x.op in GroupOp.Movement - {Ops.PAD} and _moves_a_pad(x.src[0]): return x.replace(src=(_stored(x.src[0]),))
  return UOp(Ops.CONTIGUOUS, x.dtype, (x,))

def _stores_itself(x: UOp) -> bool: return _is_stored(x) or x.op in (Ops.CONTIGUOUS, Ops.ASSIGN, Ops.COPY)

pm_realize_points = PatternMatcher([
  (UPat(Ops.SINK, name="s"), lambda s: UOp.sink(*(x if _stores_itself(x) else UOp(Ops.CONTIGUOUS, x.dtype, (x,)) for x in s.src))
   if not all(_stores_itself(x) for x in s.src) else None),
  (UPat(Ops.EXPAND, src=(UPat(name="x"),), name="e"), lambda ctx, e, x: e.replace(src=(_stored(x),))
   if x.op is not Ops.CONTIGUOUS and _reduces_or_pads(ctx, x) else None),
])

pm_kernelize = PatternMatcher([
  (UPat(Ops.CONTIGUOUS, src=(UPat(name="x"),)), lambda ctx, x: x if x.op is Ops.AFTER else schedule_kernel(ctx, x)),
  (UPat(Ops.COPY, name="x"), schedule_copy),
  (UPat(Ops.ASSIGN, src=(UPat(name="target"), UPat(name="value"))), schedule_assign),
  (UPat(Ops.DETACH, src=(UPat(name="x"),)), lambda x: x),
])

def _shared_reduces(sink: UOp) -> set[UOp]:
  """The values that run a reduction and that more than one kernel reads (see the list above)."""
  topo, users = list(sink.toposort()), {}
  for u in topo:
    for s in set(u.src): users.setdefault(s, []).append(u)
  shared: set[UOp] = set()
  for _ in range(2):  # the second round: above a value now stored, a reader may no longer run a reduction
    holds: dict[UOp, bool] = {}
    for u in topo: holds[u] = not _stores_itself(u) and (u.op is Ops.REDUCE_AXIS or any(holds[s] and s not in shared for s in u.src))
    shared, kernel = set(), {}  # kernel: the one kernel that reads a value (a stored root), None when several do
    for u in reversed(topo[:-1]):  # readers first; the last is the sink
      readers = {p if p.op is Ops.SINK or _stores_itself(p) or p in shared else kernel[p] for p in users[u]}
      kernel[u] = readers.pop() if len(readers) == 1 else None
      if holds[u] and kernel[u] is None: shared.add(u)
  return shared

def _store_shared(ctx: set[UOp], u: UOp) -> UOp | None:
  if u.op is Ops.CONTIGUOUS or not any(s in ctx for s in u.src): return None
  return u.replace(src=tuple(UOp(Ops.CONTIGUOUS, s.dtype, (s,)) if s in ctx else s for s in u.src))

pm_store_shared = PatternMatcher([(UPat(name="u"), _store_shared)])

def _placeholder(kind: str, k: int, dtype: DType, device: str, size: int) -> UOp:
  return UOp(Ops.BUFFER, dtype, (_device_uop(device),), ((kind, k), size))

def _input_placeholder(ctx: dict[UOp, UOp], b: UOp) -> UOp | None:
  return ctx.setdefault(b, _placeholder("input", len(ctx), b.dtype, b.device, b.size)) if isinstance(b.number, int) else None

def _realized(u: UOp) -> UOp | None:
  """The stored result of a tensor UOp computed before, if it is still in memory."""
  return r() if isinstance(r := realized.get(u), weakref.ref) else r

pm_placeholders = PatternMatcher([(UPat(Ops.BUFFER, name="b"), _input_placeholder), (UPat(name="u"), _realized)])

def schedule(sink: UOp) -> tuple[list[ScheduleItem], tuple[UOp, ...], list[UOp]]:
  """Schedule a graph over placeholder buffers: the ordered items, a view of each output, and the new buffers."""
  sink = graph_rewrite(sink, pm_realize_points, ctx={}, name="realize points")
  sink = graph_rewrite(sink, pm_store_shared, ctx=_shared_reduces(sink), name="store shared reduces", pre_order=True)
  ctx = ScheduleContext()
  sink = graph_rewrite(sink, pm_kernelize, ctx=ctx, name="kernelize")
  return order_schedule(ctx), tuple(x.src[0] if x.op is Ops.AFTER else x for x in sink.src), ctx.new

def create_schedule(outs: list[UOp]) -> tuple[list[ScheduleItem], tuple[UOp, ...]]:
  """The kernels (and copies) that compute `outs`, in an order that respects their dependencies."""
  names: dict[UOp, UOp] = {}
  key = graph_rewrite(UOp.sink(*outs), pm_placeholders, ctx=names, name="buffers to placeholders", pre_order=True)
  if key not in _schedules:
    if len(_schedules) >= 1000: del _schedules[next(iter(_schedules))]  # the oldest goes: a loop of ever new graphs stays bounded
    _schedules[key] = schedule(key)
  items, results, new = _schedules[key]
  real = {p: b for b, p in names.items()} | {p: _new_buffer(p.device, p.size, p.dtype) for p in new}
  return [ScheduleItem(i.ast, tuple(real[b] for b in i.bufs)) for i in items], tuple(_reshape(real[_base(r)], r.shape) for r in results)

# The running example is one kernel. Its AST stores into PARAM 0 (a new
# buffer of one element) the tensor graph of `c`, with its two inputs now
# PARAMs 1 and 2:
#
# ```python
# from tiny import create_schedule
# items, outs = create_schedule([c.uop])
# print(len(items))
# print(items[0].ast.listing())
# ```
# ```text
# 1
#    0 PARAM        float32  []               (0, 1)
#    1 PARAM        float32  []               (1, 3)
#    2 PARAM        float32  []               (2, 3)
#    3 MUL          float32  [1, 2]           None
#    4 REDUCE_AXIS  float32  [3]              (Ops.ADD, (0,))
#    5 RESHAPE      float32  [4]              ()
#    6 STORE        void     [0, 5]           None
#    7 SINK         void     [6]              None
# ```

# # 10. Lowering
#
# A kernel's AST says *what* to store: `STORE(PARAM 0, value)` where `value` is
# a tensor graph. Lowering says *how*, as loops. For an output of shape
# (4, 5) we open two loops, `RANGE` UOps r0 in [0, 4) and r1 in [0, 5), and
# ask for the value *at* index (r0, r1). The `AT` op carries that question:
# `AT(x, i0, i1, ..., valid)` is "the element of tensor x at these indices,
# where `valid` says whether the element exists at all" (it is False in the
# padding added by `PAD`).
#
# The rules of `pm_lower` push `AT` down the tensor graph until it reaches
# memory. Each movement op just changes the index, which is why tiny needs no
# stride objects or view trackers:
#
# - `RESHAPE`: flatten the index with the new shape's strides, unflatten it
#   with the old shape's: `i_old = (flat // stride) % size`;
# - `PERMUTE`: reorder the indices; `FLIP`: `size-1-i`; `SHRINK`: `i + start`;
# - `EXPAND`: a broadcast axis reads index 0;
# - `PAD`: shift by the padding and guard: outside the original extent the
#   value is 0, and the loads below must not happen, so the guard joins
#   `valid`;
# - elementwise ops ask each source at the same index;
# - `REDUCE_AXIS` opens a new loop, a `RANGE` of kind REDUCE, for each reduced
#   axis, and becomes a `REDUCE` over those ranges;
# - a `PARAM` is memory: `AT(PARAM, i, valid)` becomes
#   `LOAD(INDEX(PARAM, i, valid))`, a load guarded by `valid`.
#
# The symbolic rules of chapter 5 run in the same pass, so the `//` and `%`
# that reshapes produce melt away as they are built. A second pass turns each
# `REDUCE` into an accumulator: `DEFINE_ACC` holds the running value (starting
# at the identity: 0 for ADD, 1 for MUL, the lowest value for MAX), and
# `ACCUMULATE(acc, acc + x)` updates it inside the loop. (This is not `ASSIGN`,
# which writes a tensor into a buffer: one op, one meaning.)

# ## Movement ops as index arithmetic
def _strides(shape: tuple[int, ...]) -> list[int]: return [prod(shape[i+1:]) for i in range(len(shape))]

def _index_uop(i: int | UOp) -> UOp: return i if isinstance(i, UOp) else UOp.const(dtypes.int32, i)

def _flat_index(idx: Sequence[UOp], shape: tuple[int, ...]) -> UOp:
  return functools.reduce(lambda acc, p: acc + p[0] * p[1], zip(idx, _strides(shape)), UOp.const(dtypes.int32, 0))

class LowerContext:
  """Hands out loop numbers, so each RANGE in a kernel is distinct and the numbering is deterministic."""
  def __init__(self) -> None: self.next_range = 0
  def new_range(self, size: int, kind: str) -> UOp:
    if size == 1: return UOp.const(dtypes.int32, 0)
    self.next_range += 1
    return UOp(Ops.RANGE, dtypes.int32, (UOp.const(dtypes.int32, size),), (self.next_range - 1, kind))

def _at(x: UOp, idx: Sequence[UOp], valid: UOp) -> UOp: return UOp(Ops.AT, x.dtype, (x, *idx, valid))

def _reshape_groups(old: tuple[int, ...], new: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
  """Split a reshape into independent groups of axes with equal element counts (size-1 axes left out)."""
  o, n = [i for i, s in enumerate(old) if s != 1], [j for j, s in enumerate(new) if s != 1]
  groups, i, j = [], 0, 0
  while i < len(o) or j < len(n):
    go, gn, po, pn = [o[i]], [n[j]], old[o[i]], new[n[j]]
    i, j = i + 1, j + 1
    while po != pn:
      if po < pn: go, po, i = go + [o[i]], po * old[o[i]], i + 1
      else: gn, pn, j = gn + [n[j]], pn * new[n[j]], j + 1
    groups.append((go, gn))
  return groups

def lower_reshape(at: UOp, x: UOp) -> UOp:
  # Each group of axes is flattened and unflattened on its own, so a reshape
  # that only splits or merges axes yields plain index arithmetic.
  src, idx, valid = x.src[0], at.index, at.valid
  old_idx = [_index_uop(0)] * len(src.shape)
  if 0 in src.shape: return _at(src, old_idx, valid)  # nothing to read: the kernel never runs
  for old_axes, new_axes in _reshape_groups(src.shape, x.shape):
    flat = _flat_index([idx[j] for j in new_axes], tuple(x.shape[j] for j in new_axes))
    old_shape = tuple(src.shape[i] for i in old_axes)
    for i, size, stride in zip(old_axes, old_shape, _strides(old_shape)):
      old_idx[i] = (flat // stride) % size if i != old_axes[0] else flat // stride
  return _at(src, old_idx, valid)

def lower_permute(at: UOp, x: UOp) -> UOp:  # source axis a is output axis x.arg.index(a)
  return _at(x.src[0], [at.index[x.arg.index(a)] for a in range(len(x.arg))], at.valid)

def lower_expand(at: UOp, x: UOp) -> UOp:
  return _at(x.src[0], [_index_uop(0) if s == 1 else i for s, i in zip(x.src[0].shape, at.index)], at.valid)

def lower_pad(at: UOp, x: UOp) -> UOp:
  idx, inside = list(at.index), UOp.const(dtypes.bool, True)
  for d, ((before, _), size) in enumerate(zip(x.arg, x.src[0].shape)):
    if x.arg[d] == (0, 0): continue
    inside = inside & (_index_uop(before - 1) < idx[d]) & (idx[d] < before + size)
    idx[d] = idx[d] - before
  return inside.where(_at(x.src[0], idx, at.valid & inside), UOp.const(x.dtype, 0))

def lower_shrink(at: UOp, x: UOp) -> UOp: return _at(x.src[0], [i + b for i, (b, _) in zip(at.index, x.arg)], at.valid)

def lower_flip(at: UOp, x: UOp) -> UOp:
  return _at(x.src[0], [(s - 1) - i if f else i for i, f, s in zip(at.index, x.arg, x.shape)], at.valid)

# A float sum added up in one running total loses the small terms once the
# total dwarfs them: in float32, ten million copies of 0.1 sum to 1,087,937
# and twenty million ones stop growing at 16,777,216. So a float sum is
# accumulated in blocks: each reduced axis is cut into nested loops of at
# most `SUM_BLOCK` trips (padded with zeros when its size has no divisor that
# small), and each level of loops sums into its own accumulator, added to the
# level above when it is done: a 16-way tree, as accurate as numpy's pairwise
# sum. The levels are filled from the innermost loop out, so that the
# innermost is the longest: a conv's sum over 3 channels and a 3x3 window is
# a level of 9 trips inside one of 3, not one of 3 inside one of 9, whose
# every third trip would add all the tile's accumulators into the level
# above (the forward conv ran 1.2x faster). Other reduces (max, product,
# integer sums) are exact in any order.
SUM_BLOCK = 16

def _sum_blocks(size: int) -> list[int]:
  """Loop sizes for one summed axis, outermost first: each at most SUM_BLOCK, their product at least `size`."""
  if size <= SUM_BLOCK: return [size]
  d = next((d for d in range(SUM_BLOCK, 3, -1) if size % d == 0), SUM_BLOCK)
  return _sum_blocks(-(-size // d)) + [d]

def lower_reduce(ctx: LowerContext, at: UOp, x: UOp) -> UOp:
  (op, axes), valid = x.arg, at.valid
  blocked = op is Ops.ADD and x.dtype.is_float
  idx, loops, levels, inside = list(at.index), [], [[]], UOp.const(dtypes.bool, True)
  for a in axes:
    size = x.src[0].shape[a]
    sizes = _sum_blocks(size) if blocked else [size]
    ranges = [ctx.new_range(n, "REDUCE") for n in sizes]
    idx[a] = _flat_index(ranges, tuple(sizes))
    if prod(sizes) > size: inside = inside & (idx[a] < size)
    loops += [r for r in ranges if r.op is Ops.RANGE]
  for r in reversed(loops):  # from the innermost loop out: a new level when this one would hold more than SUM_BLOCK trips
    if blocked and levels[-1] and prod(u.src[0].arg for u in levels[-1]) * r.src[0].arg > SUM_BLOCK: levels.append([])
    levels[-1].insert(0, r)
  value = _at(x.src[0], idx, valid & inside)
  if inside.op is not Ops.CONST: value = inside.where(value, UOp.const(x.dtype, 0))
  for level in [lv for lv in levels if lv]: value = UOp(Ops.REDUCE, x.dtype, (value, *level), op)
  return value

def lower_elementwise(at: UOp, x: UOp) -> UOp: return UOp(x.op, x.dtype, tuple(_at(s, at.index, at.valid) for s in x.src), x.arg)

def _at_of(op: Ops | set[Ops], **kw: Any) -> UPat: return UPat(Ops.AT, src=(UPat(op, name="x", **kw),), allow_any_len=True, name="at")
_pattern_builders.add("_at_of")  # its rules are reported at the line that writes them

pm_lower = PatternMatcher([
  (_at_of(Ops.RESHAPE), lower_reshape), (_at_of(Ops.PERMUTE), lower_permute), (_at_of(Ops.EXPAND), lower_expand),
  (_at_of(Ops.PAD), lower_pad), (_at_of(Ops.SHRINK), lower_shrink), (_at_of(Ops.FLIP), lower_flip),
  (_at_of(Ops.REDUCE_AXIS), lower_reduce), (_at_of(GroupOp.Elementwise), lower_elementwise),
  (_at_of(Ops.CONST), lambda at, x: UOp.const(x.dtype, x.arg)),
  (_at_of(Ops.ARANGE), lambda at, x: at.src[1].cast(x.dtype)),
  (_at_of(Ops.DEFINE_VAR), lambda at, x: x),
  (_at_of(Ops.PARAM), lambda at, x: UOp(Ops.LOAD, x.dtype, (UOp(Ops.INDEX, x.dtype, (x, at.src[1], at.src[2])),))
   if x.size else UOp.const(x.dtype, 0)),  # an empty buffer is never read (its loop runs zero times)
  # a load guarded by the same condition as the WHERE around it already yields 0 outside it
  (UPat(Ops.WHERE, src=(UPat.var("c"), UPat(Ops.LOAD, src=(UPat(Ops.INDEX, src=(UPat(), UPat(), UPat.var("c"))),), name="ld"), UPat.const(None, 0))),
   lambda c, ld: ld),
])

# ## Reduces become accumulators
def _identity(op: Ops, dtype: DType) -> Any: return {Ops.ADD: 0, Ops.MUL: 1, Ops.MAX: dtype.min}[op]

# Each accumulator is numbered: two reduces over the same loops (the copies
# the optimizer makes, chapter 11) must not become one accumulator.
def reduce_to_accumulator(ctx: Iterator[int], r: UOp) -> UOp:
  value, ranges = r.src[0], r.src[1:]
  acc = UOp(Ops.DEFINE_ACC, r.dtype, (UOp.const(r.dtype, _identity(r.arg, r.dtype)), *ranges), next(ctx))
  return UOp(Ops.ACCUMULATE, r.dtype, (acc, UOp(r.arg, r.dtype, (acc, value))))

pm_accumulators = PatternMatcher([(UPat(Ops.REDUCE, name="r"), reduce_to_accumulator)])

# ## The whole lowering
#
# Open a loop per output axis, ask for the value at those loops, store it, and
# let the two passes above do the rest. Every PARAM stays in the kernel even if
# its loads folded away: the kernel is called with every buffer, by position.
# Between the two passes the loops may be reshaped for speed: `optimizer` is
# where the next chapter's optimizer plugs in (the default leaves them as
# they are).
def lower(ast: UOp, optimizer: Callable[[UOp], UOp] = lambda kernel: kernel) -> UOp:
  """A kernel AST (SINK of STORE(PARAM, tensor graph)) as loops over loads, arithmetic and stores."""
  out, value = ast.src[0].src
  ctx = LowerContext()
  ranges = [ctx.new_range(s, "LOOP") for s in value.shape]
  true = UOp.const(dtypes.bool, True)
  store = UOp(Ops.STORE, dtypes.void, (UOp(Ops.INDEX, out.dtype, (out, _flat_index(ranges, value.shape), true)), _at(value, ranges, true)))
  params = sorted((u for u in ast.toposort() if u.op is Ops.PARAM), key=lambda p: p.number)  # all of them, even if folded away:
  kernel = graph_rewrite(UOp.sink(store, *params), pm_lower + symbolic, ctx=ctx, name="lower")  # the call passes every buffer
  return graph_rewrite(optimizer(kernel), pm_accumulators, ctx=itertools.count(), name="reduces to accumulators")

# The running example lowered: one REDUCE loop (RANGE 3) over two loads and a
# multiply, an accumulator that starts at 0.0 and is updated in the loop, and
# a store of its final value at index 0 (the output has one element, so its
# loop folded to the constant 0):
#
# ```python
# from tiny import lower
# kernel = lower(items[0].ast)
# print(kernel.listing())
# ```
# ```text
#    0 PARAM        float32  []               (0, 1)
#    1 CONST        int32    []               0
#    2 CONST        bool     []               True
#    3 INDEX        float32  [0, 1, 2]        None
#    4 CONST        float32  []               0.0
#    5 CONST        int32    []               3
#    6 RANGE        int32    [5]              (0, 'REDUCE')
#    7 DEFINE_ACC   float32  [4, 6]           0
#    8 PARAM        float32  []               (2, 3)
#    9 INDEX        float32  [8, 6, 2]        None
#   10 LOAD         float32  [9]              None
#   11 PARAM        float32  []               (1, 3)
#   12 INDEX        float32  [11, 6, 2]       None
#   13 LOAD         float32  [12]             None
#   14 MUL          float32  [10, 13]         None
#   15 ADD          float32  [7, 14]          None
#   16 ACCUMULATE   float32  [7, 15]          None
#   17 STORE        void     [3, 16]          None
#   18 SINK         void     [17, 0, 11, 8]   None
# ```

# # 11. Optimizing
#
# A lowered kernel computes the right values in the plainest way: one loop
# per axis, one element per trip, one accumulator per reduce. A machine wants
# more from each trip: several outputs computed together so every load feeds
# many of them (register tiling), several partial sums in flight so the adds
# do not wait on each other, values packed into vector registers, and every
# core busy. All of that is one transformation, applied to one loop at a
# time: *split* a `RANGE` r of size n into `r_outer * k + r_inner` and give
# the inner part (or, for threads, the outer part) a new kind.
#
# An `Opt(op, axis, amount)` names one split; `axis` counts the kernel's
# ranges in loop order (`_loop_order`: parallel indices outermost, then the
# output loops, then the reduce loops). The kinds:
#
# - `UPCAST` (an output axis): compute `amount` outputs per trip. The first
#   upcast along which the output is contiguous becomes the *lanes* of a
#   vector, a range of kind UPCAST that a C renderer prints with vector types
#   (`float __attribute__((vector_size(32)))`), so the compiler emits SIMD;
#   the reference device just runs it as a loop. Any other upcast becomes
#   *copies*: the kernel's stores are repeated with `r_inner` = 0, 1, ...,
#   which shares every load that does not depend on it;
# - `UNROLL` (a reduce axis): copies of the reduce, each with its own
#   accumulator, added up as a tree at the end. If it is the first split of
#   the kernel and every load that moves along it moves by 1, it becomes the
#   lanes instead: a vector of partial results, combined once at the end;
# - `THREAD` (an output axis): the outer part, of size `amount`, becomes the
#   index of a worker thread; a CPU program runs that many threads at once.
#
# Each opt is a graph rewrite like every other pass: `pm_substitute` replaces
# the range by its split everywhere (with the symbolic rules, so the index
# arithmetic folds), `pm_expand` makes the copies. The names follow
# tinygrad's, whose `BEAM` search and hand-written heuristic these are small
# versions of; its other opts (GPU shared memory, tensor cores, splitting a
# reduce across threads) are left out here. A device may add opts of its own,
# which its renderer applies (`Renderer.apply_opt`): CUDA's `TILE` computes a
# matrix product in tiles, with tensor cores (backends/cuda.py).

NOOPT = ContextVar("NOOPT", 0, "1 keeps kernels as plain loops (no upcast, unroll or threads)")

class OptError(ValueError): pass

@dataclass(frozen=True)
class Opt:
  op: str       # UPCAST, UNROLL or THREAD; or an opt of a device's own, which its renderer applies (CUDA's TILE)
  axis: int     # which range, counted in loop order
  amount: int   # the size of the new part
  def __repr__(self) -> str: return f"Opt({self.op}, {self.axis}, {self.amount})"

_KIND_RANK = {"THREAD": 0, "LOOP": 1, "UPCAST": 2, "REDUCE": 3, "UNROLL": 4}
def _loop_order(r: UOp) -> tuple[int, int]: return (_KIND_RANK[r.arg[1]], r.arg[0])
def _ranges(kernel: UOp) -> list[UOp]: return sorted((u for u in kernel.toposort() if u.op is Ops.RANGE), key=_loop_order)

# A rule replaces the split range; a REDUCE that named it as one of its loops
# names the two new ranges instead.
def _reduce_ranges(x: UOp) -> UOp | None:
  if all(r.op is Ops.RANGE for r in x.src[1:]): return None
  loops = dict.fromkeys(u for r in x.src[1:] for u in r.toposort() if u.op is Ops.RANGE)
  return UOp(Ops.REDUCE, x.dtype, (x.src[0], *loops), x.arg) if loops else x.src[0]

# Products are spread over sums too, `(r_outer*k + r_inner) * 64` into
# `r_outer*64k + r_inner*64`, so each range's step in an address can be read
# off its terms (`_coefficient`).
pm_substitute = PatternMatcher([
  (UPat(Ops.RANGE, name="x"), lambda ctx, x: ctx.get(x)),
  (UPat(Ops.REDUCE, name="x"), _reduce_ranges),
  ((x_ + y_) * c1_, lambda x, y, c1: x * c1 + y * c1 if _is_int(x) else None),
])

def substitute(kernel: UOp, mapping: dict[UOp, UOp]) -> UOp: return graph_rewrite(kernel, pm_substitute + symbolic, ctx=mapping, name="substitute")

def apply_opt(kernel: UOp, opt: Opt) -> UOp:
  ranges = _ranges(kernel)
  if not 0 <= opt.axis < len(ranges): raise OptError(f"{opt}: the kernel has {len(ranges)} ranges")
  r, size, number = ranges[opt.axis], ranges[opt.axis].src[0].arg, max(u.arg[0] for u in ranges) + 1
  wants = "REDUCE" if opt.op == "UNROLL" else "LOOP"
  if r.arg[1] != wants or opt.amount < 2 or size % opt.amount:
    raise OptError(f"{opt}: needs a {wants} range whose size {opt.amount} divides, got a {r.arg[1]} range of size {size}")
  def rng(n: int, arg: tuple) -> UOp: return UOp(Ops.RANGE, dtypes.int32, (UOp.const(dtypes.int32, n),), arg) if n > 1 else UOp.const(dtypes.int32, 0)
  if opt.op == "THREAD": split = rng(opt.amount, (number, "THREAD")) * (size // opt.amount) + rng(size // opt.amount, r.arg)
  else: split = rng(size // opt.amount, r.arg) * opt.amount + rng(opt.amount, (number, opt.op))
  return substitute(kernel, {r: split})

# ## Copies
#
# `pm_expand` removes one range (the context) by copying: a reduce over it
# becomes the sum of its copies (a balanced tree, so the adds do not wait on
# one another), and a store that depends on it becomes one store per value.
def _tree(op: Ops, xs: list[UOp]) -> UOp:
  return xs[0] if len(xs) == 1 else UOp(op, xs[0].dtype, (_tree(op, xs[:len(xs)//2]), _tree(op, xs[len(xs)//2:])))

def _copies(x: UOp, r: UOp) -> list[UOp]: return [substitute(x, {r: UOp.const(dtypes.int32, i)}) for i in range(r.src[0].arg)]

def _unroll_reduce(ctx: UOp, x: UOp) -> UOp | None:
  if ctx not in x.src[1:]: return None
  rest = tuple(r for r in x.src[1:] if r is not ctx)
  return _tree(x.arg, [UOp(Ops.REDUCE, x.dtype, (v, *rest), x.arg) if rest else v for v in _copies(x.src[0], ctx)])

def _expand_stores(ctx: UOp, x: UOp) -> UOp | None:
  if not any(s.op is Ops.STORE and ctx in s.toposort() for s in x.src): return None
  return UOp.sink(*flatten(_copies(s, ctx) if s.op is Ops.STORE and ctx in s.toposort() else [s] for s in x.src))

pm_expand = PatternMatcher([
  (UPat(Ops.REDUCE, name="x"), _unroll_reduce),
  (UPat(Ops.SINK, name="x"), _expand_stores),
])

# The lanes: at most one upcast or unroll stays a range, the first one made
# that fits: the renderer has vectors wide enough for every value that
# depends on it and a vector form of every op computing one, and memory is
# contiguous along it (an output upcast stores one vector, an unroll's loads
# read vectors). Every other upcast and unroll becomes copies.
def _coefficient(index: UOp, r: UOp) -> int | None:
  """How far the address moves when r grows by one: 0, a constant, or None when not linear in r."""
  steps = [1 if t is r else t.src[1].arg if t.op is Ops.MUL and t.src[0] is r and t.src[1].op is Ops.CONST else None
           for t in _terms(index) if r in t.toposort()]
  return 0 if not steps else steps[0] if len(steps) == 1 else None

# An address that is a sum of ranges times constants (a plain view's) is
# known by two things: where it starts, and its step along each range. A
# device reads them to find kernels it has a routine of its own for (CUDA's
# matrix tiles).
def _affine(index: UOp, ranges: list[UOp]) -> tuple[int, list[int]] | None:
  if not all(u.op in (Ops.RANGE, Ops.CONST, Ops.ADD) or (u.op is Ops.MUL and u.src[1].op is Ops.CONST) for u in index.toposort()): return None
  def at(one: UOp | None) -> int: return substitute(index, {r: UOp.const(dtypes.int32, int(r is one)) for r in ranges}).arg
  return at(None), [at(r) - at(None) for r in ranges]

def _lanes_fit(kernel: UOp, r: UOp, renderer: Renderer) -> bool:
  nodes = kernel.toposort()
  folds = [x for x in nodes if x.op is Ops.REDUCE and r in x.src[1:]]  # what reads these sees no lanes
  users = [u for u in nodes if r in u.toposort() and u.dtype != dtypes.void and not any(f in u.toposort() for f in folds)]
  stores = [u.src[0] for u in kernel.src if u.op is Ops.STORE]
  loads = [i for i in nodes if i.op is Ops.INDEX and i not in stores and r in i.toposort()]
  # the lanes of an output axis are stored as one vector, those of a reduce are loaded as vectors
  contiguous = all(_coefficient(i.src[1], r) == 1 for i in (stores if r.arg[1] == "UPCAST" else loads))
  # math the renderer has no vector form for would be done lane by lane: slower than copies, that stay scalar
  vector_math = all(u.op in renderer.vector_ops for u in users if u.op in GroupOp.ALU)
  return all(u.dtype in renderer.vector_dtypes and u.dtype.itemsize * r.src[0].arg <= renderer.vector_bytes for u in users) and \
    r.src[0].arg in (2, 4, 8, 16) and contiguous and vector_math

# Lanes along a reduce (when no output axis suits them, as in `x @ W.T`,
# whose inputs both run along the reduced axis) hold partial results, one per
# lane, in a vector accumulator; the lanes are combined once, at the end. So
# the reduce over the lanes is moved outside the reduces over every other
# loop, and the lanes range becomes an UPCAST, a vector around those loops.
def _lanes_outermost(ctx: UOp, x: UOp) -> UOp | None:
  if ctx in x.src[1:] and len(x.src) > 2: inner, rest = x.src[0], tuple(r for r in x.src[1:] if r is not ctx)
  elif x.src[0].op is Ops.REDUCE and x.src[0].src[1:] == (ctx,) and x.src[0].arg == x.arg: inner, rest = x.src[0].src[0], x.src[1:]
  else: return None
  return UOp(Ops.REDUCE, x.dtype, (UOp(Ops.REDUCE, x.dtype, (inner, *rest), x.arg), ctx), x.arg)

# Each lane is an accumulator of its own, so a level of a float sum (chapter
# 10) whose lanes leave it few trips joins the level around it, as long as
# each lane still adds at most `SUM_BLOCK` terms per level. (A linear
# layer's product sums 784 = 7*7*16 terms; 8 lanes left its innermost level
# 2 trips long, and every second trip added the whole tile into the level
# above: 1.3x slower than with the levels joined, 14 trips long.)
def _join_levels(ctx: UOp, x: UOp) -> UOp | None:
  inner = x.src[0]
  if inner.op is not Ops.REDUCE or ctx in inner.src[1:] + x.src[1:] or {x.arg, inner.arg} != {Ops.ADD}: return None  # not the lanes' own
  trips = prod(r.src[0].arg for r in inner.src[1:] + x.src[1:] if r.arg[1] == "REDUCE")  # the lanes and the unrolled copies not counted
  return UOp(Ops.REDUCE, x.dtype, (inner.src[0], *inner.src[1:], *x.src[1:]), x.arg) if trips <= SUM_BLOCK else None

pm_lanes_last = PatternMatcher([(UPat(Ops.REDUCE, name="x"), _lanes_outermost), (UPat(Ops.REDUCE, name="x"), _join_levels)])

# A reduce over the lanes nested in another reduce (a sum of sums with an op
# between them) cannot be moved out: its lanes would not start afresh on
# each trip of the outer loop. Then the lanes become copies after all.
def _moved_out(kernel: UOp, lanes: UOp) -> bool:
  return not any(y.op is Ops.REDUCE and lanes in y.src[1:] for x in kernel.toposort() if x.op is Ops.REDUCE for y in x.src[0].toposort())

def expand(kernel: UOp, renderer: Renderer) -> UOp:
  upcasts = [r for r in _ranges(kernel) if r.arg[1] in ("UPCAST", "UNROLL")]
  lanes = next((r for r in sorted(upcasts, key=lambda r: r.arg[0]) if _lanes_fit(kernel, r, renderer)), None)  # the first made
  if lanes is not None and lanes.arg[1] == "UNROLL":
    moved = graph_rewrite(kernel, pm_lanes_last, ctx=lanes, name="lanes last")
    if _moved_out(moved, lanes): kernel = substitute(moved, {lanes: UOp(Ops.RANGE, dtypes.int32, lanes.src, (lanes.arg[0], "UPCAST"))})
    else: lanes = None
  for r in upcasts:
    if r is not lanes: kernel = graph_rewrite(kernel, pm_expand, ctx=r, name="expand")
  return kernel

# ## The heuristic
#
# Which opts a kernel gets, read from its shape; each step is one idea:
#
# 1. lanes: the output axis along which the store is contiguous, if every
#    load steps by 0 or 1 along it, is upcast by the vector width; if there
#    is none, the innermost reduce is unrolled by the vector width, if that
#    makes lanes (`x @ W.T`, a linear layer's product, reads both inputs
#    along the reduce, and neither along the output's contiguous axis);
# 2. register tiling: if the kernel reduces, each input gets an output axis
#    along which it does not move upcast, so every copy along it reuses the
#    value it loads. The tile holds at most 16 copies, one accumulator each
#    (a vector, with lanes: half of AVX-512's 32 registers; AVX2 has 16, so
#    there a few accumulators live on the stack, and a matmul still ran
#    1.2x faster than with a tile of 8, whose loads each serve fewer
#    copies). The inputs
#    loaded as vectors go first and get up to 8 copies: a vector load is the
#    costly one, a scalar broadcast to the lanes is cheap to repeat and gets
#    4 at most. An axis shorter than that is taken whole (a conv's 3 input
#    channels). A matmul gets an 8x32 tile: 8 rows, each reusing a vector of
#    B's row, and 32 columns, two vectors of lanes, each reusing an element
#    of A (the 4x16 tile this heuristic made before ran 1.7x slower: each of
#    B's vectors, 4 KB from the last, was loaded for only 4 rows);
# 3. several accumulators: the innermost reduce loop is unrolled, fully when
#    it is at most 16 long (a block of a float sum always is) and the tile is
#    small (under 4 copies), or at most 3 long (a window axis) whatever the
#    tile, else by 4 unless the tile is full already (16 accumulators have
#    enough adds in flight); a window axis unrolled, the window axis around
#    it is unrolled too. (A conv's input gradient, a tile of 12 copies, ran
#    1.5x faster with its 3 window positions along x unrolled, and 1.5x
#    faster again with those along y too: its loop over the output
#    channels is then the innermost, 16 trips long.) If
#    padding guards the loads, the innermost reduce loop a guard reads goes
#    first: in each copy its index is a constant, and the guard folds into
#    a simpler one, often True. (A pool's gradient, walked back through the
#    window trick, sums over window positions guarded by the trick's
#    padding. Measured on a conv built that way: unrolling the window loop
#    along x made it 2x faster than unrolling the channels, 1.5x faster
#    than no unroll.)
# 4. threads: the outermost output axis is split over as many worker threads
#    as get 65,536 trips each, one per core at most: waking a worker costs
#    tens of microseconds (30 to 50 measured here), more than a thread's
#    share of a small kernel on many cores.
#
# A kernel of fewer than 1024 trips in all gets none of them.
def heuristic(kernel: UOp, renderer: Renderer) -> list[Opt]:
  opts: list[Opt] = []
  # the number of trips of the innermost body (no split changes it); below 1024 there is too little to gain: plain loops read best
  if (trips := prod(r.src[0].arg for r in _ranges(kernel))) < 1024: return opts
  def axes(kind: str) -> list[tuple[int, UOp]]: return [(i, r) for i, r in enumerate(_ranges(kernel)) if r.arg[1] == kind]
  def add(opt: Opt) -> None:
    nonlocal kernel
    kernel = apply_opt(kernel, opt)
    opts.append(opt)
  def loads() -> list[UOp]:  # the loads' INDEX ops, in the kernel as split so far
    return [u for u in kernel.toposort() if u.op is Ops.INDEX and u not in [s.src[0] for s in kernel.src if s.op is Ops.STORE]]
  store = next(s.src[0].src[1] for s in kernel.src if s.op is Ops.STORE)
  width = renderer.vector_bytes // max([u.dtype.itemsize for u in kernel.toposort() if u.dtype != dtypes.void] + [1])
  for i, r in axes("LOOP"):
    if width >= 2 and r.src[0].arg % width == 0 and _coefficient(store, r) == 1 and all(_coefficient(x.src[1], r) in (0, 1) for x in loads()):
      add(Opt("UPCAST", i, width))
      break
  # no output axis took the lanes: the innermost reduce may, if the unroll it would get fits as lanes
  if not opts and axes("REDUCE") and width >= 2 and axes("REDUCE")[-1][1].src[0].arg % width == 0:
    trial = apply_opt(kernel, opt := Opt("UNROLL", axes("REDUCE")[-1][0], width))
    if _lanes_fit(trial, max(_ranges(trial), key=lambda u: u.arg[0]), renderer): add(opt)  # the unroll's range is the newest
  lanes = max(_ranges(kernel), key=lambda u: u.arg[0]) if opts else None  # the newest range (a later step may drop them)
  if axes("REDUCE"):
    tile = 1  # the copies the tile makes, one accumulator (a vector, with lanes) each
    def vector(buf: UOp) -> bool: return lanes is not None and any(_coefficient(x.src[1], lanes) for x in loads() if x.src[0] is buf)
    for buf in sorted(dict.fromkeys(x.src[0] for x in loads()), key=lambda b: not vector(b)):  # the vector loads first
      x = next(x.src[1] for x in loads() if x.src[0] is buf)
      stays = [(i, r.src[0].arg) for i, r in axes("LOOP") if _coefficient(x, r) == 0][:1]  # every copy along it reuses x's value
      amounts = [a for a in ((8, 4, 2, 3) if vector(buf) else (4, 2, 3)) for _, n in stays if n % a == 0 and tile * a <= 16]
      if amounts:
        add(Opt("UPCAST", stays[0][0], amounts[0]))
        tile *= amounts[0]
    guarded = {u for x in kernel.toposort() if x.op is Ops.INDEX for u in x.src[2].toposort() if u.op is Ops.RANGE}
    i, r = ([(i, r) for i, r in axes("REDUCE") if r in guarded] or axes("REDUCE"))[-1]
    full = r.src[0].arg <= (16 if tile < 4 else 3)
    if r.src[0].arg >= 2 and tile < 16 and (full or r.src[0].arg % 4 == 0): add(Opt("UNROLL", i, r.src[0].arg if full else 4))
    if opts and opts[-1].op == "UNROLL" and opts[-1].amount <= 3 and axes("REDUCE"):  # and so is a window axis around a window axis
      i, r = axes("REDUCE")[-1]
      if r.src[0].arg <= 3: add(Opt("UNROLL", i, r.src[0].arg))
  if renderer.threads > 1 and axes("LOOP"):  # under 2 * 65,536 trips the range below is empty
    i, r = axes("LOOP")[0]
    if (n := next((n for n in range(min(renderer.threads, trips >> 16), 1, -1) if r.src[0].arg % n == 0), 0)): add(Opt("THREAD", i, n))
  return opts

# `optimize` applies a list of opts and makes the copies. Which list is
# chosen (the renderer's `choose_opts`, which is this heuristic unless a
# device knows better, none under `NOOPT=1`, or under `BEAM=n` the fastest of
# many) is `get_program`'s business, in the next chapter but one.
def optimize(kernel: UOp, renderer: Renderer, opts: list[Opt]) -> UOp:
  for opt in opts: kernel = renderer.apply_opt(kernel, opt)
  return expand(kernel, renderer)

# # 12. Linearizing and rendering
#
# A lowered kernel is still a graph. To print it as a program we need an
# order: every UOp after its sources, and every UOp inside the loops it
# depends on, and no deeper. `linearize` finds that order.
#
# First, which loops does each UOp live in? A `RANGE` lives in its own loop;
# any other UOp lives in the union of its sources' loops, except that an
# accumulator's final value (the `ACCUMULATE`) is read *after* its loops close.
# Loops nest: a reduce loop sits inside the loops its body depends on. So
# each loop has a path of enclosing loops, and each UOp belongs to the path
# of its innermost loop. UOps that depend on no loop at all (constants,
# loop-invariant arithmetic) land outside every loop: hoisting for free.
#
# Then emit, level by level: at each level the items are the UOps that belong
# exactly here plus the child loops, each child loop standing for its whole
# body. A topological sort of the items, ties broken by the graph's own
# order, gives the sequence; a child loop is emitted as its `RANGE`, its body
# (recursively), and an `END`.

def linearize(sink: UOp) -> list[UOp]:
  nodes = list(sink.toposort())
  position = {u: i for i, u in enumerate(nodes)}
  loops: dict[UOp, frozenset[UOp]] = {}
  for u in nodes:
    if u.op is Ops.RANGE: loops[u] = frozenset([u])
    elif u.op is Ops.DEFINE_ACC: loops[u] = frozenset(u.src[1:])  # whatever touches the accumulator runs in its loops
    else:
      inherited = (loops[s] - (frozenset(s.src[0].src[1:]) if s.op is Ops.ACCUMULATE else frozenset()) for s in u.src)
      loops[u] = frozenset().union(*inherited)
  # a reduce loop nests inside every loop that some accumulator over it depends on (copies of one reduce share it)
  outer: dict[UOp, set[UOp]] = {}
  for u in nodes:
    if u.op is Ops.ACCUMULATE:
      for r in u.src[0].src[1:]: outer.setdefault(r, set()).update(loops[u])
  path: dict[UOp, tuple[UOp, ...]] = {}
  # a store fixes the nesting of the output loops; an accumulator's loops then nest inside the loops they extend
  for u in sorted((u for u in nodes if u.op in (Ops.ACCUMULATE, Ops.STORE)), key=lambda u: u.op is not Ops.STORE):
    chain = sorted(loops[u].union(*(outer[r] for r in u.src[0].src[1:])) if u.op is Ops.ACCUMULATE else loops[u], key=_loop_order)
    for i, r in enumerate(chain): path.setdefault(r, (path[chain[i-1]] if i else ()) + (r,))
  def scope(u: UOp) -> tuple[UOp, ...]:
    if u.op is Ops.RANGE: return path[u][:-1]
    if u.op is Ops.DEFINE_ACC: return path[min(u.src[1:], key=_loop_order)][:-1]
    return path[max(loops[u], key=_loop_order)] if loops[u] else ()
  scopes = {u: scope(u) for u in nodes if u.op is not Ops.SINK}
  program: list[UOp] = []
  def emit(level: tuple[UOp, ...], members: list[UOp]) -> None:
    depth = len(level)
    item = {u: scopes[u][depth] if len(scopes[u]) > depth else u for u in members}
    users: dict[UOp, list[UOp]] = {i: [] for i in item.values()}
    waiting = {i: 0 for i in users}
    for u in members:
      for s in dict.fromkeys(u.src[:1] if u.op is Ops.DEFINE_ACC else u.src):  # an accumulator only names its loops
        if s in item and item[s] is not item[u]:
          users[item[s]].append(item[u])
          waiting[item[u]] += 1
    ready = [(position[i], i) for i, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    while ready:
      _, i = heapq.heappop(ready)
      if i.op is Ops.RANGE:
        program.append(i)
        emit(level + (i,), [u for u in members if item[u] is i and u is not i])
        program.append(UOp(Ops.END, dtypes.void, (i,)))
      else: program.append(i)
      for user in users[i]:
        waiting[user] -= 1
        if waiting[user] == 0: heapq.heappush(ready, (position[user], user))
  emit((), list(scopes))
  return program

# ## Rendering
#
# A `Renderer` turns the linear program into source text for one device.
# The C-style renderer below is the base that real backends specialize: it
# knows C's syntax for loops, loads and stores, and asks its subclass only
# for what differs (type names, how to spell each math function, what a
# kernel's signature looks like).
#
# Rendering is a rewrite too: `string_rewrite` is a PatternMatcher whose rules
# return *strings*, one rule per kind of UOp, with the renderer as `ctx` (it
# knows each UOp's variable name). Values used once are inlined into their
# user, so `(a*b)+c` prints as one expression; values used more than once,
# loads, and accumulators get variables. So does an expression that grew
# longer than a line: a chain of N ops inlined whole would print 2N nested
# parentheses, source that grows with N^2 and that C compilers take minutes
# over, where named steps keep both linear in N.

class Renderer:
  device: str = ""
  supported_dtypes: tuple[DType, ...] = tuple(dtypes.all())
  # what the optimizer may use (chapter 11): vector registers, and worker threads
  vector_bytes: int = 0
  vector_dtypes: tuple[DType, ...] = ()
  vector_ops: set[Ops] = set()  # the ALU ops it computes on whole vectors
  threads: int = 1
  # which opts a kernel gets unless BEAM searches or NOOPT is set: chapter 11's heuristic, or a device's own (a GPU's)
  def choose_opts(self, kernel: UOp) -> list[Opt]: return heuristic(kernel, self)
  # how an opt is applied: chapter 11's split of a range, unless the device has opts of its own (a GPU's matrix tiles)
  def apply_opt(self, kernel: UOp, opt: Opt) -> UOp: return apply_opt(kernel, opt)
  def render(self, name: str, program: list[UOp]) -> str: raise NotImplementedError
  # What a launch needs beside the buffers, passed to each call of the program: how many copies of it run at once
  # (the sizes of the THREAD ranges on a CPU; a GPU's grid and block sizes); nothing for a plain loop nest.
  def launch_dims(self, program: list[UOp]) -> dict[str, Any]:
    threads = tuple(u.src[0].arg for u in program if u.op is Ops.RANGE and u.arg[1] == "THREAD")
    return {"global_size": threads} if threads else {}

# Two things C does not define are defined in chapters 2 and 3, so C must be
# told: integer division by zero or of the smallest int by -1 (they trap), and
# casts of nan, inf or out-of-range floats to ints. Their C forms test an
# operand before using it, so `render` gives such operands names rather than
# repeating their expressions.
def _unsafe_division(x: UOp) -> bool:
  return x.op in (Ops.IDIV, Ops.MOD) and not (x.src[1].op is Ops.CONST and x.src[1].arg not in (0, -1))
def _float_to_int(x: UOp) -> bool: return x.op is Ops.CAST and x.src[0].dtype.is_float and x.dtype.is_int

def _c_alu(ctx: CStyleRenderer, x: UOp) -> str:
  args = [ctx[s] for s in x.src]
  code = ctx.code_for_op[x.op](*args, x.src[-1].dtype)
  if _unsafe_division(x):  # x/0 and x%0 are 0; INT_MIN/-1 is -INT_MIN, which wraps to INT_MIN, and its remainder 0
    a, b = args
    minus_one = "" if x.dtype.is_unsigned else f"({b}==-1)?{f'(-({a}))' if x.op is Ops.IDIV else '0'}:"
    code = f"(({b}==0)?0:{minus_one}{code})"
  return f"(({ctx.types[x.dtype]}){code})" if x.dtype in ctx.narrow_types else code

def _c_float_to_int(ctx: CStyleRenderer, x: UOp) -> str:
  v, lo, hi, t = ctx[x.src[0]], x.dtype.min, x.dtype.max, ctx.types[x.dtype]  # lo and hi + 1 are powers of two, exact as floats
  if x.src[0].dtype == dtypes.float16: v = f"((float){v})"  # C++'s half has comparisons of its own: with a double they are ambiguous
  return f"(({v}!={v})?0:({v}<={float(lo)!r})?{ctx.render_const(lo, x.dtype)}:({v}>={float(hi + 1)!r})?{ctx.render_const(hi, x.dtype)}:(({t})({v})))"

string_rewrite = PatternMatcher([
  (UPat(Ops.CONST, name="x"), lambda ctx, x: ctx.render_const(x.arg, x.dtype)),
  (UPat(Ops.RANGE, name="x"), lambda ctx, x: f"for (int {ctx[x]} = 0; {ctx[x]} < {ctx[x.src[0]]}; {ctx[x]}++) {{"),
  (UPat(Ops.END), lambda ctx: "}"),
  (UPat(Ops.DEFINE_ACC, name="x"), lambda ctx, x: f"{ctx.types[x.dtype]} {ctx[x]} = {ctx[x.src[0]]};"),
  (UPat(Ops.ACCUMULATE, name="x"), lambda ctx, x: f"{ctx[x.src[0]]} = {ctx[x.src[1]]};"),
  (UPat(Ops.INDEX, name="x"), lambda ctx, x: f"{ctx[x.src[0]]}[{ctx[x.src[1]]}]"),
  (UPat(Ops.LOAD, src=(UPat(Ops.INDEX, src=(UPat(), UPat(), UPat.const(dtypes.bool, True))),), name="x"), lambda ctx, x: ctx[x.src[0]]),
  (UPat(Ops.LOAD, name="x"), lambda ctx, x: f"({ctx[x.src[0].valid]} ? {ctx[x.src[0]]} : {ctx.render_const(0, x.dtype)})"),
  (UPat(Ops.STORE, src=(UPat(Ops.INDEX, src=(UPat(), UPat(), UPat.const(dtypes.bool, True))), UPat()), name="x"),
   lambda ctx, x: f"{ctx[x.src[0]]} = {ctx[x.src[1]]};"),
  (UPat(Ops.STORE, name="x"), lambda ctx, x: f"if ({ctx[x.src[0].valid]}) {ctx[x.src[0]]} = {ctx[x.src[1]]};"),
  (UPat(Ops.CAST, name="x"), lambda ctx, x: _c_float_to_int(ctx, x) if _float_to_int(x) else f"(({ctx.types[x.dtype]})({ctx[x.src[0]]}))"),
  (UPat(Ops.BITCAST, name="x"), lambda ctx, x: ctx.render_bitcast(ctx[x.src[0]], x.src[0].dtype, x.dtype)),
  (UPat(GroupOp.ALU, name="x"), _c_alu),
])

class CStyleRenderer(Renderer):
  # The dialect. C and its relatives (CUDA, OpenCL, Metal) share the syntax of loops, loads and stores and
  # differ in a few words; a backend names them in these fields rather than rewriting `render`.
  prefix = ""                        # source before the kernel: includes, helper definitions
  kernel_prefix = "void"             # the words before the kernel's name: return type, qualifiers
  restrict = "restrict"              # the qualifier that promises a buffer is reached through no other pointer
  nan, infinity = "NAN", "INFINITY"  # spellings of the float constants (C's come from <math.h>)
  types: dict[DType, str] = {
    dtypes.bool: "_Bool", dtypes.int8: "signed char", dtypes.uint8: "unsigned char", dtypes.int16: "short",
    dtypes.uint16: "unsigned short", dtypes.int32: "int", dtypes.uint32: "unsigned int", dtypes.int64: "long long",
    dtypes.uint64: "unsigned long long", dtypes.float16: "_Float16", dtypes.float32: "float", dtypes.float64: "double"}
  # C computes narrow types in int (or float): cast each result back so every op rounds and wraps like the reference
  narrow_types = (dtypes.int8, dtypes.uint8, dtypes.int16, dtypes.uint16, dtypes.float16)
  code_for_op: dict[Ops, Callable[..., str]] = {
    Ops.NEG: lambda x, dt: f"(!{x})" if dt == dtypes.bool else f"(-({x}))", Ops.RECIPROCAL: lambda x, dt: f"(1/{x})",
    Ops.ADD: lambda a, b, dt: f"({a}+{b})", Ops.MUL: lambda a, b, dt: f"({a}*{b})", Ops.IDIV: lambda a, b, dt: f"({a}/{b})",
    Ops.MOD: lambda a, b, dt: f"({a}%{b})", Ops.CMPLT: lambda a, b, dt: f"({a}<{b})", Ops.CMPNE: lambda a, b, dt: f"({a}!={b})",
    # a max of bools is their or: gcc 12 at -O2 with -fwrapv, for AMD's Zen 3, folds `acc = (acc>v)?acc:v` over _Bools to 0
    Ops.MAX: lambda a, b, dt: f"((({a}!={a})||({a}>{b}))?{a}:{b})" if dt.is_float else f"({a}|{b})" if dt == dtypes.bool else f"(({a}>{b})?{a}:{b})",
    Ops.AND: lambda a, b, dt: f"({a}&{b})", Ops.OR: lambda a, b, dt: f"({a}|{b})", Ops.XOR: lambda a, b, dt: f"({a}^{b})",
    Ops.SHL: lambda a, b, dt: f"({a}<<{b})", Ops.SHR: lambda a, b, dt: f"({a}>>{b})", Ops.WHERE: lambda c, a, b, dt: f"({c}?{a}:{b})"}

  # the optimizer's vectors (chapter 11): AVX-sized registers, of the types C's vector extension does arithmetic in
  vector_bytes = 32
  vector_dtypes = (dtypes.float32, dtypes.float64, dtypes.int32, dtypes.int64, dtypes.uint32, dtypes.uint64)
  vector_ops = {Ops.ADD, Ops.MUL, Ops.NEG, Ops.RECIPROCAL, Ops.IDIV, Ops.MOD, Ops.AND, Ops.OR, Ops.XOR, Ops.SHL, Ops.SHR}
  # parallel ranges (chapter 11) are not loops but an index the launch provides, and maybe a parameter that carries it
  special_index: dict[str, str] = {}
  special_params: dict[str, str] = {}

  # one UOp's text; a dialect with rules of its own (a GPU's loops) tries them first and falls back on this
  def render_uop(self, u: UOp) -> str: return string_rewrite.rewrite(u, ctx=self)
  def render_bitcast(self, x: str, src: DType, dst: DType) -> str:  # C reads the bits through a union
    return f"((union {{ {self.types[src]} a; {self.types[dst]} b; }}){{ .a = {x} }}).b"
  def __getitem__(self, u: UOp) -> str:
    if self.lane is None or u not in self.vec: return self.names[u]
    return string_rewrite.rewrite(u, ctx=self) if u.op is Ops.INDEX else f"{self.names[u]}[{self.lane}]"
  def type_of(self, u: UOp) -> str: return self.vector_type(u.dtype) if u in self.vec and self.lane is None else self.types[u.dtype]
  def vector_type(self, dtype: DType) -> str:
    dtype = dtypes.int32 if dtype == dtypes.bool else dtype  # C has no vectors of _Bool: a vector of bools is ints, 0 or 1
    name, size = f"{self.types[dtype].replace(' ', '_')}{self.width}", dtype.itemsize
    self.typedefs[name] = f"typedef {self.types[dtype]} {name} __attribute__((vector_size({size * self.width}), aligned({size})));"
    return name

  # Vectors: every value that depends on the lanes range holds one value per
  # lane. Ops C does on vectors are printed as they are (a scalar operand is
  # broadcast); a load or store whose address is `base + lane` moves a whole
  # vector; anything else is built lane by lane, `(float8){f(x[0]), ...}`.
  def render_vector(self, u: UOp, text: str) -> str:
    if u.op is Ops.RANGE: return f"{self.type_of(u)} {self.names[u]} = {{{', '.join(map(str, range(self.width)))}}};"
    if u.op is Ops.DEFINE_ACC: return f"{self.type_of(u)} {self.names[u]} = ({self.type_of(u)}){{}} + {self[u.src[0]]};"
    if u.op in (Ops.ACCUMULATE, Ops.INDEX) or (u.op in self.vector_ops and u.dtype in self.vector_dtypes and not _unsafe_division(u)): return text
    index = u.src[0] if u.op in (Ops.LOAD, Ops.STORE) else None
    if index is not None and index.src[2].arg is True and _coefficient(index.src[1], self.lanes) == 1 and \
       (u.op is Ops.LOAD or u.src[1] in self.vec) and index.dtype != dtypes.bool:  # a bool is a byte in memory, an int in a lane
      base = "+".join(self[t] for t in _terms(index.src[1]) if t is not self.lanes) or "0"
      address = f"*({self.type_of(u if u.op is Ops.LOAD else u.src[1])}*)({self[index.src[0]]}+{base})"
      return address if u.op is Ops.LOAD else f"{address} = {self[u.src[1]]};"
    lanes = []
    for self.lane in range(self.width): lanes.append(self.render_uop(u))
    self.lane = None
    return " ".join(lanes) if u.op is Ops.STORE else f"({self.type_of(u)}){{{', '.join(lanes)}}}"
  # A reduce over the lanes (chapter 11) ends in one value: its accumulator's lanes, combined as a tree.
  def fold(self, u: UOp) -> str:
    def tree(xs: list[str]) -> str:
      if len(xs) == 1: return xs[0]
      return self.code_for_op[u.src[1].op](tree(xs[:len(xs)//2]), tree(xs[len(xs)//2:]), u.dtype)
    return tree([f"{self.names[u.src[0]]}[{i}]" for i in range(self.width)])
  def render_const(self, value: Any, dtype: DType) -> str:
    if dtype.is_float:
      body = self.nan if value != value else ("-" if value < 0 else "") + self.infinity if math.isinf(value) else f"{float(value)!r}"
      return f"(({self.types[dtype]}){body})"
    if dtype == dtypes.bool: return "1" if value else "0"
    return f"(({self.types[dtype]}){value}{'ull' if dtype.is_unsigned else 'll'})" if abs(value) > 2**31 - 1 or dtype.itemsize == 8 else \
      f"(({self.types[dtype]}){value})" if dtype != dtypes.int32 else str(value)

  def render(self, name: str, program: list[UOp]) -> str:
    uses: dict[UOp, int] = {}
    for u in program:
      for s in u.src: uses[s] = uses.get(s, 0) + (2 if _unsafe_division(u) or _float_to_int(u) else 1)  # named: tested, then used
    self.names, self.typedefs, self.lane = {}, {}, None
    self.lanes = next((u for u in program if u.op is Ops.RANGE and u.arg[1] == "UPCAST"), None)
    self.width, self.vec = self.lanes.src[0].arg if self.lanes else 1, set()
    folds = {u for u in program if u.op is Ops.ACCUMULATE and u.src[0].src[1:] == (self.lanes,)}  # reduces over the lanes
    for _ in range(2):  # twice: an accumulator is a vector when its update is, and then so is whatever reads it
      for u in program:
        if u is self.lanes or u.op is not Ops.DEFINE_ACC and u not in folds and any(s in self.vec for s in u.src): self.vec.add(u)
      self.vec |= {u.src[0] for u in program if u.op is Ops.ACCUMULATE and u.src[1] in self.vec}
    params, lines, depth, counts, specials = {}, [], 1, {"val": 0, "alu": 0, "acc": 0, "cast": 0}, set()
    for u in program:
      if u.op is Ops.PARAM:
        self.names[u] = f"data{u.number}"
        params[u.number] = u
        continue
      if u.op is Ops.RANGE: self.names[u] = f"ridx{u.number}"
      if u.op is Ops.DEFINE_ACC: self.names[u], counts["acc"] = f"acc{counts['acc']}", counts["acc"] + 1
      if (loop := u if u.op is Ops.RANGE else u.src[0] if u.op is Ops.END else None) is not None and loop.arg[1] in self.special_index:
        specials.add(loop.arg[1])
        if u.op is Ops.RANGE: lines.append(f"{'  ' * depth}int {self.names[u]} = {self.special_index[u.arg[1]]};")
        continue
      if u.op is Ops.END and u.src[0] is self.lanes: continue
      text = self.render_uop(u)
      if u in self.vec: text = self.render_vector(u, text)
      if u.op in (Ops.CONST, Ops.INDEX) or (u.op in GroupOp.Elementwise and uses.get(u, 0) <= 1 and len(text) <= 80): self.names[u] = text
      elif u.op in (Ops.RANGE, Ops.END, Ops.DEFINE_ACC, Ops.ACCUMULATE, Ops.STORE):
        if u.op is Ops.END: depth -= 1
        lines.append("  " * depth + text)
        if u.op is Ops.RANGE and u is not self.lanes: depth += 1
        if u.op is Ops.ACCUMULATE: self.names[u] = self.fold(u) if u in folds else self.names[u.src[0]]
      else:
        prefix = "val" if u.op is Ops.LOAD else "alu"
        self.names[u], counts[prefix] = f"{prefix}{counts[prefix]}", counts[prefix] + 1
        lines.append(f"{'  ' * depth}{self.type_of(u)} {self.names[u]} = {text};")
    written = {u.src[0].src[0] for u in program if u.op is Ops.STORE}
    args = [f"{'' if p in written else 'const '}{self.types[p.dtype]}* {self.restrict} {self.names[p]}" for _, p in sorted(params.items())]
    args += [self.special_params[k] for k in sorted(specials) if k in self.special_params]
    signature = f"{self.kernel_prefix} {name}({', '.join(args)}) {{\n"
    return self.prefix + "".join(t + "\n" for t in self.typedefs.values()) + signature + "\n".join(lines) + "\n}\n"

# The running example in order, and as C. Constants and the accumulator come
# first, the loop holds the loads, the multiply and the update, and the store
# comes after the loop closes; the loads are variables, the multiply is used
# once and is inlined into the update:
#
# ```python
# from tiny import linearize, CStyleRenderer
# program = linearize(kernel)
# print(" ".join(u.op.name for u in program))
# print(CStyleRenderer().render("r_3", program))
# ```
# ```text
# PARAM CONST CONST INDEX CONST CONST DEFINE_ACC PARAM PARAM RANGE INDEX LOAD INDEX LOAD MUL ADD ACCUMULATE END STORE
# void r_3(float* restrict data0, const float* restrict data1, const float* restrict data2) {
#   float acc0 = ((float)0.0);
#   for (int ridx0 = 0; ridx0 < 3; ridx0++) {
#     float val0 = data2[ridx0];
#     float val1 = data1[ridx0];
#     acc0 = (acc0+(val0*val1));
#   }
#   data0[0] = acc0;
# }
# ```

# # 13. Compiling and running
#
# A kernel's AST has been lowered (chapter 10), put in order and printed as
# source (chapter 12). What is left is to turn the source into something that
# runs, and to run it: a `Compiler` per device, a cache of finished programs,
# and the loop that runs a schedule's items and points the realized tensors
# at their results.

class CompileError(RuntimeError): pass

DISABLE_COMPILER_CACHE = ContextVar("DISABLE_COMPILER_CACHE", 0, "1 compiles every kernel afresh instead of reusing binaries cached on disk")

class Compiler:
  """Source to binary. `compile_cached` keeps binaries on disk, named by a hash of the source and the compiler's settings."""
  cache_key = ""
  joins_sources = False  # do several kernels' sources, joined, compile to one binary that holds them all? (C's do)
  def compile(self, src: str) -> bytes: raise NotImplementedError
  def compile_cached(self, src: str) -> bytes:
    if DISABLE_COMPILER_CACHE or _cache_off: return self.compile(src)
    folder = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "tiny"
    name = f"{type(self).__name__} {self.cache_key}\n{src}".encode()
    path = folder / hashlib.sha256(name).hexdigest()
    # An entry is a checksum of its name and contents, then the contents: a truncated, damaged or foreign entry
    # (another entry's file, copied here) fails the check and is compiled again.
    try: entry = path.read_bytes() if path.exists() else b""
    except OSError as e:
      _cache_unusable(folder, e)
      return self.compile(src)
    if entry[:32] == hashlib.sha256(name + entry[32:]).digest(): return entry[32:]
    lib = self.compile(src)
    try:
      folder.mkdir(parents=True, exist_ok=True)
      with tempfile.NamedTemporaryFile(dir=folder, delete=False) as f: f.write(hashlib.sha256(name + lib).digest() + lib)
      os.replace(f.name, path)  # atomic: another process never sees half a file
    except OSError as e: _cache_unusable(folder, e)
    return lib

def _cache_unusable(folder: pathlib.Path, error: OSError) -> None:
  global _cache_off
  _cache_off = True  # the warning is given once, and the folder not tried again
  warnings.warn(f"the compiler cache folder {folder} is not usable ({error}): compiling every kernel without it", RuntimeWarning)

# ## Running a schedule
#
# `get_program` takes a kernel AST through the whole pipeline, lower (10),
# optimize (11), linearize and render (12), compile (13), and caches the result in memory by
# the AST and device: the second time a training step runs the same kernel,
# none of this happens again. A copy is not a kernel: the bytes go out of one
# device and into the other.

@dataclass
class Kernel:
  name: str
  src: str
  program: Callable[..., Any]  # while it compiles (prepare_schedule), the function that loads its binary
  ops: int        # arithmetic ops executed, estimated from the loop sizes


def _kernel_name(program: list[UOp]) -> str:
  ranges = [u for u in program if u.op is Ops.RANGE]
  prefix = "r" if any(r.kind == "REDUCE" for r in ranges) else "E"
  return "_".join([prefix] + [str(r.src[0].arg) for r in ranges]) if ranges else prefix

def _count_ops(program: list[UOp]) -> int:
  total, trips = 0, [1]
  for u in program:
    if u.op is Ops.RANGE: trips.append(trips[-1] * u.src[0].arg)
    elif u.op is Ops.END: trips.pop()
    elif u.op in GroupOp.ALU: total += trips[-1]
  return total

def _load(dev: Compiled, name: str, program: list[UOp], lib: bytes) -> Callable[..., Any]:
  """Load a compiled program, bound to the launch sizes its renderer asks for (threads, a GPU grid)."""
  return functools.partial(dev.runtime(name, lib), **dev.renderer.launch_dims(program))

# ## BEAM search
#
# The heuristic guesses; `BEAM=n` measures. For a kernel it keeps the n
# fastest opt lists found so far, starting from none and the heuristic's,
# extends each by every opt that could come next, compiles the candidates and
# times them on the device over scratch buffers (filled with ones, so no
# integer division by zero), and stops when a round finds nothing faster.
# The winner is saved in the cache folder, named by the kernel and device:
# the search runs once per kernel, not once per process.
BEAM = ContextVar("BEAM", 0, "n > 0: time candidate opts for each new kernel on its device and keep the fastest (a beam of n, cached on disk)")

def _next_opts(kernel: UOp, renderer: Renderer) -> list[Opt]:
  found = []
  for i, r in enumerate(_ranges(kernel)):
    for amount in (2, 3, 4, 8, 16):
      if r.src[0].arg % amount or r.src[0].arg == amount == 2: continue
      if r.arg[1] == "REDUCE": found.append(Opt("UNROLL", i, amount))
      if r.arg[1] == "LOOP": found += [Opt("UPCAST", i, amount)] + ([Opt("THREAD", i, amount)] if amount <= renderer.threads else [])
  return found

def _time_opts(kernel: UOp, device: str, opts: tuple[Opt, ...], blocks: list[Any]) -> float:
  dev = Device[device]
  program = linearize(graph_rewrite(optimize(kernel, dev.renderer, list(opts)), pm_accumulators, ctx=itertools.count(), name="beam"))
  run = _load(dev, "beam", program, dev.compiler.compile_cached(dev.renderer.render("beam", program)))
  times = []
  for _ in range(3):
    start = time.perf_counter()
    run(*blocks)
    dev.synchronize()  # a GPU's launch returns at once: time the kernel, not the launch
    times.append(time.perf_counter() - start)
  return min(times)

def beam(kernel: UOp, device: str) -> list[Opt]:
  folder = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "tiny"  # the compiler's folder
  path = folder / f"beam-{hashlib.sha256(kernel.key + f'{device} {BEAM.value}'.encode()).hexdigest()}.json"
  if path.exists(): return [Opt(*o) for o in json.loads(path.read_text())]
  params = sorted((u for u in kernel.toposort() if u.op is Ops.PARAM), key=lambda p: p.arg[0])
  scratch = [Buffer(device, max(p.arg[1], 1), p.dtype) for p in params]
  for b in scratch: b.copyin(struct.pack(b.dtype.fmt, to_dtype(1, b.dtype)) * b.size)
  blocks, renderer = [b.block for b in scratch], Device[device].renderer
  scores = {opts: _time_opts(kernel, device, opts, blocks) for opts in dict.fromkeys([(), tuple(renderer.choose_opts(kernel))])}
  while True:
    best = sorted(scores, key=scores.__getitem__)[:BEAM.value]
    for opts in best:
      for opt in _next_opts(functools.reduce(renderer.apply_opt, opts, kernel), renderer):
        if opts + (opt,) not in scores: scores[opts + (opt,)] = _time_opts(kernel, device, opts + (opt,), blocks)
    if min(scores.values()) >= scores[best[0]]: break
  winner = min(scores, key=scores.__getitem__)
  folder.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps([[o.op, o.axis, o.amount] for o in winner]))
  return list(winner)

@traced("kernel")
def get_program(ast: UOp, device: str, new: list[tuple[UOp, str, int, int]] | None = None) -> Kernel:
  """The kernel of `ast`, compiled; given a list `new`, a new kernel is not compiled but its key added to the list, its
  `program` left as the function that loads its binary, until `prepare_schedule` has compiled the list."""
  if (key := (ast, device, NOOPT.value, BEAM.value)) not in _programs:
    dev = Device[device]
    opts: list[Opt] = []
    def choose(kernel: UOp) -> UOp:
      opts.extend([] if NOOPT else beam(kernel, device) if BEAM else dev.renderer.choose_opts(kernel))
      return optimize(kernel, dev.renderer, opts)
    program = linearize(lower(ast, choose))
    name = _kernel_name(program)
    _kernel_names[name] = _kernel_names.get(name, -1) + 1
    if _kernel_names[name]: name += f"n{_kernel_names[name]}"  # each kernel's name is its own, as tinygrad's
    if DEBUG >= 3: print(f"=== kernel {name} on {device}: its AST, then its opts ===\n{ast.listing()}\n{name} opts: {opts}")
    if DEBUG >= 5: print(f"=== {name}: the linearized program ===\n{UOp.listing(program)}")
    src = dev.renderer.render(name, program)
    if DEBUG >= 4: print(f"=== {name}: source for {device} ===\n{src}")
    if tracer is not None: tracer.kernel(name, src)
    load = functools.partial(_load, dev, name, program)
    _programs[key] = Kernel(name, src, load if new is not None else load(dev.compiler.compile_cached(src)), _count_ops(program))
    if new is not None: new.append(key)
  return _programs[key]

# One runner serves both a schedule and a TinyJit replay (chapter 14), so
# both count the same `GlobalCounters`, print the same `DEBUG=2` line and
# are recorded the same way while a TinyJit captures.
def run_item(kernel: Kernel | None, bufs: list[Buffer]) -> None:
  """Run one prepared item: a kernel on its buffers, or (kernel None) a copy from bufs[1] to bufs[0]."""
  if _capturing is not None: _capturing.append(("copy" if kernel is None else "kernel", bufs, kernel))
  if kernel is None: return bufs[0].copyin(bufs[1].copyout())
  start = time.perf_counter()
  kernel.program(*[b.block for b in bufs])
  if DEBUG >= 2: Device[bufs[0].device].synchronize()  # a GPU returns before the kernel ends: wait, to time the kernel
  elapsed = time.perf_counter() - start
  mem = sum(b.nbytes for b in bufs)
  GlobalCounters.kernel_count += 1
  GlobalCounters.global_ops += kernel.ops
  GlobalCounters.global_mem += mem
  GlobalCounters.time_sum_s += elapsed
  if DEBUG >= 2:
    print(f"*** {bufs[0].device:6s} {GlobalCounters.kernel_count:4d} {kernel.name:24s} {elapsed*1e6:9.1f} us "
          f"{kernel.ops/max(elapsed, 1e-9)/1e9:8.3f} GFLOP/s {mem/max(elapsed, 1e-9)/1e9:8.3f} GB/s")

# A schedule is prepared whole before any of it runs: every kernel is
# lowered and compiled first, so a kernel that fails to build fails the
# realize before a single buffer has changed. (A zero-sized output needs no
# kernel at all.) Lowering is Python and goes one kernel at a time; the new
# kernels are compiled after it, all at once. On a cold cache, compiling is
# most of a training run's first step, and for a small kernel most of that
# is the compiler starting and linking, not compiling: 79 small C kernels
# cost four times as long one by one as joined in one file. So where a
# device's compiler can (`joins_sources`), the new kernels are joined into
# one source per core, and those compile side by side (a compiler is a
# process of its own, or a library call that lets go of Python's lock);
# each kernel is loaded from its group's binary. Loading stays in this
# thread (a GPU's context belongs to the thread that made it). The kernels
# of a group whose compile failed are forgotten, so the next realize
# compiles them again.
def _compile_new(new: list[tuple[UOp, str, int, int]]) -> None:
  """Compile the kernels that `new` names by their keys in `_programs`, and load each."""
  groups: dict[tuple[str, int], list[tuple[UOp, str, int, int]]] = {}  # (device, group number) -> the kernels compiled together
  for i, key in enumerate(new):
    groups.setdefault((key[1], i % (os.cpu_count() or 1) if Device[key[1]].compiler.joins_sources else i), []).append(key)
  with concurrent.futures.ThreadPoolExecutor() as pool:
    compiling = [(keys, pool.submit(Device[device].compiler.compile_cached, "".join(_programs[key].src for key in keys)))
                 for (device, _), keys in groups.items()]
  for keys, future in compiling:
    for key in keys:
      if future.exception() is None: _programs[key].program = _programs[key].program(future.result())
      else: del _programs[key]
  for _, future in compiling: future.result()  # the first failure, if any, raises

def prepare_schedule(items: list[ScheduleItem]) -> list[tuple[Kernel | None, list[Buffer]] | None]:
  """Per item: (kernel, buffers) to run, kernel None for a copy; None for an item with nothing to do."""
  prepared: list[tuple[Kernel | None, list[Buffer]] | None] = []
  new: list[tuple[UOp, str, int, int]] = []  # the kernels to compile, by their keys in `_programs`
  for item in items:
    bufs = [_buffers[b] for b in item.bufs]
    if item.ast.op is Ops.COPY: prepared.append((None, bufs))
    else: prepared.append((get_program(item.ast, bufs[0].device, new), bufs) if bufs[0].size else None)
  if new: _compile_new(new)
  return prepared

# ## Realizing tensors
#
# `realize_tensors` schedules the tensors, prepares the schedule, runs it, and
# points each tensor at its stored result. Three promises shape it.
#
# **An assign runs once.** An assign is a side effect: once it has run as
# part of any realize, the tensor it belongs to must point at its buffer, or
# the next realize would run it again. So a realize also re-points every live
# tensor whose pending assign it ran (a graph may hold an assign of a tensor
# that is not itself being realized). The buffer after an assign holds a
# different value than before, so it gets a new name: a fresh BUFFER UOp for
# the same memory. Otherwise a graph built after the assign would be the very
# same UOp as one built before (hash-consing), and `realized` would hand back
# the stale result.
#
# **A failure leaves every tensor as it was or fully updated.** The schedule
# is prepared before anything runs, and each tensor is re-pointed as soon as
# the kernel that makes its value has run: if a later kernel raises, the
# tensors done so far hold their results (an assign that ran is not run
# again), and the others are untouched lazy graphs, ready to be realized
# again.
#
# **A tensor's value is fixed when it is built,** as in PyTorch, whatever is
# assigned later. A lazy tensor is a recipe that reads buffers; an assign
# overwrites a buffer in place (which is what lets a training step update
# its weights without allocating, and what TinyJit's replays rely on). So
# before an assign overwrites a buffer, every live lazy tensor that still
# reads the buffer's old value is realized with it, in the same schedule,
# ordered before the assign. After `opt.step()`, `loss` and each `p.grad`
# hold the values computed from the old weights, and since the step computes
# the forward pass anyway, reading `loss` afterwards runs nothing more. Two
# kinds of tensors are left alone: a pure view of the buffer (movement ops
# only, like `w.T`), which sees the new values, as a view does in PyTorch;
# and a graph that reads the buffer only through an assign of this realize,
# which wants the new value. The search is one walk over the live lazy
# tensors, done only by realizes that assign. The other way out, copying
# the old contents aside before each assign, would copy every weight on
# every step and recompute the loss when it is read.

def _renamed(view: UOp) -> UOp:
  base = view.src[0] if view.op is Ops.RESHAPE else view
  new = UOp(Ops.BUFFER, base.dtype, base.src, (next(_buffer_ids), base.size))
  _buffers[new] = _buffers[base]
  return _reshape(new, view.shape)

def _is_view(u: UOp) -> bool: return u.op is Ops.BUFFER or (u.op in GroupOp.Movement and _is_view(u.src[0]))

def _old_value_readers(tensors: list[Tensor], ran: dict[UOp, None]) -> list[Tensor]:
  """The live lazy tensors, other than `tensors`, that read a buffer this realize assigns, other than through its assigns."""
  targets = {_base(u.src[0]) for u in ran if u.op is Ops.ASSIGN}
  if not targets: return []
  chosen = {id(t) for t in tensors}
  lazy = [t for t in list(_tensors.values()) if id(t) not in chosen and not _is_view(t.uop)]
  reads: dict[UOp, bool] = {}
  for u in UOp.sink(*(t.uop for t in lazy)).toposort(lambda u: not (u.op is Ops.ASSIGN and u in ran)):
    reads[u] = u in targets or any(reads.get(s, False) for s in u.src)
  return [t for t in lazy if reads.get(t.uop, False)]

# One more thing a realize stores: a reduction that it runs inline (inside
# the kernel that reads it) and that a live lazy tensor outside the realize
# reads too. Chapter 9 stores a reduction once for all the kernels of one
# schedule; this is the same rule across realizes. A training step that
# reads its loss before `opt.step()` realizes the forward pass first, and
# the gradients, realized by the step, read the forward `x @ W1` again (the
# relu's mask): without this, the second realize would run the product
# again. The reduction becomes one more output of the realize, so its value
# is remembered in `realized` like any tensor's. The walk is over the live
# lazy tensors' graphs, down to this realize's nodes.
def _reductions_read_later(tensors: list[Tensor], ran: dict[UOp, None]) -> list[Tensor]:
  """The reductions this realize runs inline whose values live lazy tensors, other than `tensors`, read."""
  outs, lazy = {t.uop for t in tensors}, [t.uop for t in list(_tensors.values()) if t.uop not in ran]
  reads = {s for u in UOp.sink(*lazy).toposort(lambda u: u not in ran) for s in u.src if s in ran}
  inline = UOp.sink(*reads).toposort(lambda u: u.op is Ops.SINK or not (_stores_itself(u) or u in outs or _realized(u) is not None))
  return [Tensor(u) for u in inline if u.op is Ops.REDUCE_AXIS]

@traced("realize")
def realize_tensors(tensors: list[Tensor]) -> None:
  start = time.perf_counter()
  ran = UOp.sink(*(t.uop for t in tensors)).toposort()
  if readers := _old_value_readers(tensors, ran): tensors, ran = tensors + readers, UOp.sink(*(t.uop for t in tensors + readers)).toposort()
  later = _reductions_read_later(tensors, ran)  # their graphs are the same nodes: `ran` holds them already
  tensors, internal = tensors + later, {id(t) for t in later}
  outs = [t.uop for t in tensors]
  items, results = create_schedule(outs)
  prepared = prepare_schedule(items)
  # what becomes of each tensor, by the buffer whose kernel finishes it
  grad_keys = {_gradient_key(t.uop) for t in list(_grad_tensors.values()) if t.requires_grad}
  has_buffer, wants_grad = {}, {}  # per node of the graph: does it read a buffer, does a gradient want it
  for u in ran:
    has_buffer[u] = u.op is Ops.BUFFER or any(has_buffer[s] for s in u.src)
    wants_grad[u] = u in grad_keys or (u.op is not Ops.DETACH and any(wants_grad[s] for s in u.src))
  finishes: dict[UOp, list[tuple[Tensor, UOp, UOp]]] = {}
  for t, old, new in zip(tensors, outs, results): finishes.setdefault(_base(new), []).append((t, old, new))
  chosen = {id(t) for t in tensors}
  for t in list(_tensors.values()):
    if t.uop.op is Ops.ASSIGN and t.uop in ran and id(t) not in chosen: finishes.setdefault(_base(t.uop.src[0]), []).append((t, t.uop, t.uop.src[0]))
  after_assign: dict[UOp, UOp] = {}
  def finish(buffer: UOp) -> None:
    for t, old, new in finishes.pop(buffer, []):
      t.uop = after_assign.setdefault(old, _renamed(new)) if old.op is Ops.ASSIGN else new
      if old is t.uop or not has_buffer[old]: continue  # equal constants must not share a buffer
      # a user's tensor keeps its graph for backward(), and `realized` then holds its result weakly, or each would
      # keep the other alive
      user_graph = old.op is not Ops.ASSIGN and wants_grad[old] and id(t) not in internal
      if user_graph: _computed_from[t.uop] = old
      realized[old] = weakref.ref(t.uop) if user_graph else t.uop
  made = {item.bufs[0] for item in items}
  for buffer in [b for b in finishes if b not in made]: finish(buffer)
  for item, step in zip(items, prepared):
    if step is not None: run_item(*step)
    finish(item.bufs[0])
  if DEBUG >= 1 and items:
    print(f"realize: {len(items)} kernel{'s' if len(items) != 1 else ''} in {(time.perf_counter() - start)*1e3:.2f} ms")

# And at last the running example's number. With `DEBUG=2` each kernel run
# prints a line: the device, the count of kernels so far, the kernel's name
# (r for a reduce, then its loop sizes), its time and its speed; each realize
# prints one more.
#
# ```python
# from tiny import Context
# with Context(DEBUG=2): print(c.item())
# ```
# ```text
# *** ... r_3 ...
# realize: 1 kernel in ... ms
# 32.0
# ```

# # 14. The JIT
#
# Even with every kernel cached, each training step still builds its graph
# in Python and schedules it. `TinyJit` removes that too. It wraps a step
# function: the first call runs it normally (warming every cache), the second
# call runs it while *capturing* each kernel launched and the buffers it
# used, and every later call replays the captured kernels directly, with the
# new inputs' buffers in place of the captured inputs'. A replay is a loop
# over prepared calls through the same `run_item` a schedule uses, so it
# counts and prints (`DEBUG=2`) what it runs like any realize.
#
# Each call returns fresh tensors: a buffer the captured step created for a
# returned tensor is swapped, on each replay, for a newly allocated one (the
# allocator hands back a freed block of the same size), so a result returned
# earlier keeps its value after later calls.
#
# Replaying is only valid for calls like the captured one. A call with
# tensors of other shapes, dtypes or devices raises `JitError`, as tinygrad
# does, and so does a call whose other arguments (numbers, strings...) differ
# from the captured call's: their values are baked into the captured kernels,
# so replaying would silently ignore them. A value that changes from call to
# call belongs in a Tensor.

class JitError(RuntimeError): pass

class TinyJit:
  def __init__(self, fn: Callable[..., Any]):
    self.fn, self.warm = fn, False  # warm: a first call has run (and warmed every cache)
    self.captured: list[tuple[str, list[Buffer], Any]] | None = None
    functools.update_wrapper(self, fn)

  def __call__(self, *args: Any, **kwargs: Any) -> Any:
    global _capturing
    named = list(enumerate(args)) + list(kwargs.items())
    inputs = [a for _, a in named if isinstance(a, Tensor)]
    others = [(k, a) for k, a in named if not isinstance(a, Tensor)]
    if lazy := [t for t in inputs if not _is_stored(t.uop)]: Tensor.realize(*lazy)  # a replay swaps the inputs' buffers
    signature = [(t.shape, t.dtype, t.device) for t in inputs]
    if not JIT or not self.warm:  # first call (or JIT=0): just run; a call that raised leaves the next one first
      out, self.warm = _realize_outputs(self.fn(*args, **kwargs)), True
      return out
    if self.captured is None:  # second call: run and capture; a capture that raised is dropped, the next call captures
      self.signature, self.others, self.input_buffers = signature, others, [_buffer_of(t.uop) for t in inputs]
      existing = {id(b) for b in list(_buffers.values())}
      _capturing = []
      try: self.output, self.captured = _realize_outputs(self.fn(*args, **kwargs)), _capturing  # the list, whole once it ran
      finally: _capturing = None
      self.fresh = [t for t in _returned(self.output) if id(_buffer_of(t.uop)) not in existing]
      return self.output
    if signature != self.signature:
      raise JitError(f"TinyJit captured inputs {self.signature}, called with {signature}: shapes, dtypes and devices must match")
    if others != self.others:
      raise JitError(f"TinyJit captured non-tensor arguments {self.others}, called with {others}: they are baked into the "
                     "captured kernels, so they must not change; pass a Tensor for a value that changes")
    swap = {id(old): _buffer_of(t.uop) for old, t in zip(self.input_buffers, inputs)}
    outputs = {id(t): Tensor(_reshape(_buffer_uop(Buffer(t.device, t.numel(), t.dtype)), t.shape)) for t in self.fresh}
    swap |= {id(_buffer_of(t.uop)): _buffer_of(outputs[id(t)].uop) for t in self.fresh}
    for kind, bufs, extra in self.captured:
      bufs = [swap.get(id(b), b) for b in bufs]
      if kind == "rng": bufs[0].copyin(Tensor._rng_key(extra))
      else: run_item(extra, bufs)
    def fresh(x: Any) -> Any: return outputs.get(id(x), x)
    return type(self.output)(fresh(x) for x in self.output) if isinstance(self.output, (tuple, list)) else fresh(self.output)

def _returned(out: Any) -> list[Tensor]: return [t for t in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(t, Tensor)]
def _realize_outputs(out: Any) -> Any:
  if tensors := _returned(out): Tensor.realize(*tensors)
  return out

# # 15. The reference device
#
# PYTHON is tiny's reference: a device that needs nothing but Python, whose
# semantics are by definition right. Its "source code" is the linear program
# itself, one UOp per line written as a Python literal
# `(op, dtype, sources, arg)`, and its "compiler" just stores that text. Its
# runtime parses the lines back and interprets them one by one: a program
# counter walks the list, `RANGE` starts a loop, `END` jumps back to the top
# of the loop until the range is done, and every ALU op calls `exec_alu`,
# the table from chapter 3. Slow, but every other device is tested against
# it.

# ## Memory, rendering, compiling
#
# PYTHON's memory is a `bytearray`, its source the program as literals, its
# binary that text's bytes.
class PythonAllocator(Allocator):
  def _alloc(self, nbytes: int) -> bytearray: return bytearray(nbytes)
  def copyin(self, dst: bytearray, src: memoryview) -> None: dst[:] = src
  def copyout(self, src: bytearray, nbytes: int) -> memoryview: return memoryview(bytes(src))

class PythonRenderer(Renderer):
  device = "PYTHON"
  def render(self, name: str, program: list[UOp]) -> str:
    index = {u: i for i, u in enumerate(program)}
    return "\n".join([f"# {name}"] + [repr((u.op.name, u.dtype.name, tuple(index[s] for s in u.src), u.arg)) for u in program])

class PythonCompiler(Compiler):
  def compile(self, src: str) -> bytes: return src.encode()

class _HalfView:
  """memoryview cannot view bytes as float16, so this does it with struct, one element at a time."""
  def __init__(self, block: bytearray): self.block = block
  def __getitem__(self, i: int) -> float: return struct.unpack_from("<e", self.block, 2 * i)[0]
  def __setitem__(self, i: int, value: float) -> None: struct.pack_into("<e", self.block, 2 * i, value)

def _typed_view(block: bytearray, dtype: DType) -> Any: return _HalfView(block) if dtype == dtypes.float16 else memoryview(block).cast(dtype.fmt)

# ## The interpreter
#
# Each buffer is viewed as an array of its dtype (float16 through `struct`),
# each op's value lives in a slot of `values`, and an accumulator's updates
# write back into its own slot.
class PythonProgram:
  def __init__(self, name: str, lib: bytes):
    literals = {"__builtins__": {}, "inf": math.inf, "nan": math.nan}
    rows = [eval(line, literals) for line in lib.decode().splitlines() if not line.startswith("#")]
    self.program = [(Ops[op], getattr(dtypes, dtype), src, arg) for op, dtype, src, arg in rows]
    # an accumulator's ACCUMULATE is read through the accumulator's own slot
    self.slot = [src[0] if op is Ops.ACCUMULATE else i for i, (op, _, src, _) in enumerate(self.program)]
    self.loop_end = {src[0]: i for i, (op, _, src, _) in enumerate(self.program) if op is Ops.END}  # RANGE -> its END

  def __call__(self, *blocks: bytearray) -> None:
    program, slot = self.program, self.slot
    values: list[Any] = [None] * len(program)
    pc = 0
    while pc < len(program):
      op, dtype, src, arg = program[pc]
      x = [values[slot[s]] for s in src]
      if op is Ops.RANGE:
        values[pc] = 0
        if x[0] <= 0: pc = self.loop_end[pc]
      elif op is Ops.END:
        values[src[0]] += 1
        if values[src[0]] < values[program[src[0]][2][0]]: pc = src[0]
      elif op is Ops.PARAM: values[pc] = _typed_view(blocks[arg[0]], dtype)
      elif op is Ops.CONST: values[pc] = arg
      elif op is Ops.INDEX: values[pc] = x
      elif op is Ops.LOAD: values[pc] = x[0][0][x[0][1]] if x[0][2] else to_dtype(0, dtype)
      elif op is Ops.STORE:
        if x[0][2]: x[0][0][x[0][1]] = x[1]
      elif op is Ops.DEFINE_ACC: values[pc] = x[0]
      elif op is Ops.ACCUMULATE: values[src[0]] = x[1]
      elif op is Ops.CAST: values[pc] = to_dtype(x[0], dtype)
      elif op is Ops.BITCAST: values[pc] = bitcast_value(x[0], program[src[0]][1], dtype)
      else: values[pc] = exec_alu(op, dtype, x)
      pc += 1

def PythonDevice() -> Compiled: return Compiled("PYTHON", PythonAllocator(), PythonRenderer(), PythonCompiler(), PythonProgram)

# # 16. The rest of the Tensor API
#
# Everything in this chapter is a composition of the core of chapter 7:
# elementwise ops, movement, reduces. None of it adds an idea to the compiler,
# so it is written to be skimmed: one family of methods per section, a line of
# prose saying how the family is built, then the methods, short and in
# tinygrad's (and mostly PyTorch's) names and semantics.

# ## Creation
# Ramps and identity matrices are arange, compared or scaled.
@tensor_methods
class TensorCreation:
  @staticmethod
  def linspace(start: float, stop: float, steps: int, device: str | None = None, dtype: DType | None = None) -> Tensor:
    dtype = _dtype_arg(dtype or dtypes.default_float)
    if steps < 0 or dtype == dtypes.bool: raise ArgumentError(f"linspace: steps must be non-negative and the dtype not bool, got {steps}, {dtype}")
    if steps == 1: return Tensor.full((1,), start, device=device, dtype=dtype)
    return (Tensor.arange(steps, device=device).cast(dtypes.float32) * ((stop - start) / max(steps - 1, 1)) + start).cast(dtype)
  @staticmethod
  def eye(n: int, m: int | None = None, device: str | None = None, dtype: DType | None = None) -> Tensor:
    if n < 0 or (m is not None and m < 0): raise ArgumentError(f"eye: sizes must be non-negative, got n={n}, m={m}")
    rows, cols = Tensor.arange(n, device=device).reshape(n, 1), Tensor.arange(m if m is not None else n, device=device).reshape(1, -1)
    return (rows == cols).cast(dtype or dtypes.default_float)

# ## Random numbers
# Random numbers are computed, not loaded: element `i` of a random tensor is
# a hash of `(seed, counter + i)`, with the murmur3 finalizer, in uint32
# arithmetic that every device computes identically. So the same seed gives
# the same numbers on every device. Each call advances the counter; the
# seed and counter travel in a tiny buffer, so the kernel is the same from
# call to call and is compiled once. (TinyJit refills that buffer when it
# replays a step, so replays draw fresh numbers too.)
@tensor_methods
class TensorRandom:
  _seed: int = 0
  _rng_counter: int = 0
  @staticmethod
  def manual_seed(seed: int = 0) -> None: Tensor._seed, Tensor._rng_counter = seed, 0
  @staticmethod
  def _rng_key(n: int) -> bytes:
    key = struct.pack("<2I", Tensor._seed & 0xFFFFFFFF, Tensor._rng_counter & 0xFFFFFFFF)
    Tensor._rng_counter += n
    return key
  @staticmethod
  def _random_bits(shape: tuple[int, ...], device: str | None) -> Tensor:
    n = prod(shape)
    key = Tensor(_buffer_from_bytes(Tensor._rng_key(n), dtypes.uint32, (2,), Device.canonicalize(device)))
    if _capturing is not None: _capturing.append(("rng", [_buffer_of(key.uop)], n))
    x = Tensor.arange(n, device=device, dtype=dtypes.uint32) + key[1]
    for mix in (key[0] * 0x9E3779B9 + 0x7F4A7C15, key[0] ^ 0x5BD1E995):
      x = x ^ mix
      x = (x ^ (x >> 16)) * 0x85EBCA6B
      x = (x ^ (x >> 13)) * 0xC2B2AE35
      x = x ^ (x >> 16)
    return x.reshape(shape)
  @staticmethod
  def rand(*shape: Any, device: str | None = None, dtype: DType | None = None, requires_grad: bool | None = None) -> Tensor:
    """Uniform in [0, 1): the top 24 bits of a hash, scaled exactly."""
    bits = Tensor._random_bits(_new_shape(shape), device)
    return Tensor(((bits >> 8).cast(dtypes.float32) * (1.0 / (1 << 24))).cast(dtype or dtypes.default_float).uop, requires_grad=requires_grad)
  @staticmethod
  def randn(*shape: Any, device: str | None = None, dtype: DType | None = None, requires_grad: bool | None = None) -> Tensor:
    """Standard normal, by the Box-Muller transform of two uniforms."""
    shape = _shape_arg(shape)
    u = Tensor.rand(2, *shape, device=device, dtype=dtypes.float32)
    normal = ((1 - u[0]).log() * -2).sqrt().mul((u[1] * (2 * math.pi)).cos())
    return Tensor(normal.cast(dtype or dtypes.default_float).uop, requires_grad=requires_grad)
  @staticmethod
  def uniform(*shape: Any, low: float = 0.0, high: float = 1.0, **kw: Any) -> Tensor: return Tensor.rand(*shape, **kw) * (high - low) + low
  @staticmethod
  def randint(*shape: Any, low: int = 0, high: int = 10, dtype: DType = dtypes.int32, **kw: Any) -> Tensor:
    """Ints uniform in [low, high)."""
    if not isinstance(low, int) or not isinstance(high, int) or low >= high:
      raise ArgumentError(f"randint needs ints low < high, got low={low!r}, high={high!r}")
    if not dtype.is_int: raise TypeError(f"randint needs an int dtype, got {dtype}")
    return (Tensor.rand(*shape, **kw) * (high - low)).floor().cast(dtype) + low
  @staticmethod
  def normal(*shape: Any, mean: float = 0.0, std: float = 1.0, requires_grad: bool | None = None, **kw: Any) -> Tensor:
    return Tensor((Tensor.randn(*shape, **kw) * std + mean).uop, requires_grad=requires_grad)
  @staticmethod
  def randperm(n: int, device: str | None = None, dtype: DType = dtypes.int32) -> Tensor: return Tensor.rand(n, device=device).argsort().cast(dtype)
  # The initializers of tinygrad's nn, by name: the fan-in is the product of all but the first dimension.
  @staticmethod
  def scaled_uniform(*shape: Any, **kw: Any) -> Tensor: return Tensor.uniform(*shape, low=-1.0, high=1.0, **kw) * prod(_new_shape(shape)) ** -0.5
  @staticmethod
  def glorot_uniform(*shape: Any, **kw: Any) -> Tensor:
    s = _new_shape(shape)
    return Tensor.uniform(*shape, low=-1.0, high=1.0, **kw) * (6 / (s[0] + prod(s[1:]))) ** 0.5
  @staticmethod
  def kaiming_uniform(*shape: Any, a: float = 0.01, **kw: Any) -> Tensor:
    bound = math.sqrt(3.0) * math.sqrt(2.0 / (1 + a ** 2)) / math.sqrt(prod(_new_shape(shape)[1:]))
    return Tensor.uniform(*shape, low=-bound, high=bound, **kw)
  @staticmethod
  def kaiming_normal(*shape: Any, a: float = 0.01, **kw: Any) -> Tensor:
    return Tensor.normal(*shape, std=math.sqrt(2.0 / (1 + a ** 2)) / math.sqrt(prod(_new_shape(shape)[1:])), **kw)
  def rand_like(self, **kw: Any) -> Tensor: return Tensor.rand(self.shape, **{"device": self.device, "dtype": self.dtype, **kw})
  def randn_like(self, **kw: Any) -> Tensor: return Tensor.randn(self.shape, **{"device": self.device, "dtype": self.dtype, **kw})

# ## Math
# Functions built from the ALU ops: exp and log through exp2 and log2, cos
# through sin, rounding through TRUNC and comparisons.
@tensor_methods
class TensorMath:
  def exp(self) -> Tensor: return (self._float() * (1 / math.log(2))).exp2()
  def log(self) -> Tensor: return self.log2() * math.log(2)
  def cos(self) -> Tensor: return ((math.pi / 2) - self._float()).sin()
  def tan(self) -> Tensor: return self.sin() / self.cos()
  def trunc(self) -> Tensor: return self._alu(Ops.TRUNC) if self.dtype.is_float else self
  def floor(self) -> Tensor:
    t = self.trunc()
    return (self < t).where(t - 1, t) if self.dtype.is_float else self
  def ceil(self) -> Tensor: return -(-self).floor() if self.dtype.is_float else self
  def round(self) -> Tensor:
    """Round half to even, as numpy and PyTorch do."""
    if not self.dtype.is_float: return self
    f = self.floor()
    up = (self - f > 0.5) | ((self - f == 0.5) & (f % 2 == 1))  # f % 2 is 0 or 1, as % takes the divisor's sign
    return up.where(f + 1, f)
  def abs(self) -> Tensor:  # the gradient at 0 is 0, as PyTorch's
    return (self < 0).where(-self, (self == 0).where(0, self)) if self.dtype != dtypes.bool and not self.dtype.is_unsigned else self
  def sign(self) -> Tensor:
    s = (self < 0).where(-1, (self > 0).where(1, 0)).cast(self.dtype)
    return (self != self).where(self, s) if self.dtype.is_float else s  # nan stays nan
  def clip(self, min_: Any = None, max_: Any = None) -> Tensor:
    """Values below min_ become min_, above max_ become max_ (max_ wins if min_ > max_); the gradient is 1 inside, bounds included."""
    if min_ is None and max_ is None: raise ArgumentError("clip needs at least one of min_ and max_")
    out = self if min_ is None else (self < min_).where(min_, self)
    return out if max_ is None else (out > max_).where(max_, out)
  clamp = clip
  def square(self) -> Tensor: return self * self
  def log10(self) -> Tensor: return self.log2() * math.log10(2)
  def sinh(self) -> Tensor: return (self.exp() - (-self).exp()) / 2
  def cosh(self) -> Tensor: return (self.exp() + (-self).exp()) / 2
  def asinh(self) -> Tensor: return self._float().sign() * (self.abs() + (self * self + 1).sqrt()).log()  # odd: no cancellation below 0
  def acosh(self) -> Tensor: return (self + (self * self - 1).sqrt()).log()
  def atanh(self) -> Tensor: return ((1 + self) / (1 - self)).log() / 2
  def asin(self) -> Tensor:
    # Abramowitz and Stegun 4.4.46 on [0, 1], error below 2e-8, and odd symmetry
    x = self._float().abs()
    coefficients = [-0.0012624911, 0.0066700901, -0.0170881256, 0.0308918810, -0.0501743046, 0.0889789874, -0.2145988016, 1.5707963050]
    return self._float().sign() * (math.pi / 2 - (1 - x).sqrt() * _polynomial(x, coefficients))
  def acos(self) -> Tensor: return math.pi / 2 - self.asin()
  def atan(self) -> Tensor:
    big = self.abs() > 1  # atan(x) = pi/2 - atan(1/x) there, so y*y below cannot overflow
    y = big.where(1 / big.where(self, 1), self)
    a = (y / (1 + y * y).sqrt()).asin()
    return big.where(self._float().sign() * (math.pi / 2) - a, a)
  def erf(self) -> Tensor:
    # Abramowitz and Stegun 7.1.26, error below 1.5e-7
    t = 1.0 / (1.0 + 0.3275911 * self._float().abs())
    poly = _polynomial(t, [1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592])
    return self._float().sign() * (1.0 - t * poly * (-self.square()).exp())
  def copysign(self, other: Any) -> Tensor:
    x, other = self._float()._broadcasted(other)
    negative = (other < 0) | ((other == 0) & (other.reciprocal() < 0))  # -0.0 is negative too
    return negative.where(-x.abs(), x.abs())
  def fmod(self, y: Any) -> Tensor:
    """C's fmod: the remainder takes the dividend's sign (`%` takes the divisor's)."""
    x, y = self._broadcasted(y)
    return x - y * (x / y).trunc() if x.dtype.is_float else x._alu(Ops.MOD, y)
  def lerp(self, end: Tensor, weight: Any) -> Tensor: return self + (end - self) * weight
  def logaddexp(self, y: Any) -> Tensor:
    x, y = self._float()._broadcasted(y)
    m = x.maximum(y)  # subtracted first, so nothing overflows
    return m.isinf().where(m, m + ((x - m).exp() + (y - m).exp()).log())

def _polynomial(x: Tensor, coefficients: Sequence[float]) -> Tensor:
  """c0*x^(n-1) + ... + c(n-1), by Horner's rule."""
  return functools.reduce(lambda acc, c: acc * x + c, coefficients[1:], x * 0 + coefficients[0])

# ## Tests of values
# Each returns a bool tensor; infinities are the only floats with x - x != 0 that equal themselves.
@tensor_methods
class TensorPredicates:
  def isnan(self) -> Tensor: return self != self
  def isinf(self, detect_positive: bool = True, detect_negative: bool = True) -> Tensor:
    return ((self == math.inf) & detect_positive) | ((self == -math.inf) & detect_negative)
  def isfinite(self) -> Tensor: return (self.isinf() | self.isnan()).logical_not()
  def isclose(self, other: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Tensor:
    """|self - other| <= atol + rtol*|other|; an infinity is close only to itself, NaN to NaN only with `equal_nan`."""
    x, other = self._broadcasted(other)
    finite_close = x.isfinite() & other.isfinite() & ((x - other).abs() <= atol + rtol * other.abs())
    return finite_close | ((x.isinf() | other.isinf()) & (x == other)) | (x.isnan() & other.isnan() & equal_nan)
  def allclose(self, other: Any, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:
    return bool(self.isclose(other, rtol, atol, equal_nan).all().item())

# ## Activations
# Each is a formula over the math above, as in the papers that named them.
@tensor_methods
class TensorActivations:
  def sigmoid(self) -> Tensor:
    # each branch sees only the inputs it is chosen for, so its exp is at most 1: no overflow in the value or the gradient
    positive = self >= 0
    low, high = positive.where(0, self._float()).exp(), (-positive.where(self._float(), 0)).exp()
    return positive.where(1 / (1 + high), low / (1 + low))
  def tanh(self) -> Tensor: return 2.0 * (2.0 * self._float()).sigmoid() - 1.0
  def relu(self) -> Tensor: return (self > 0).where(self, 0)
  def leaky_relu(self, neg_slope: float = 0.01) -> Tensor: return (self < 0).where(self * neg_slope, self)
  def gelu(self, approximate: str = "tanh") -> Tensor:
    """x times the normal CDF at x: by tanh (tinygrad's default) or exactly, through erf (`approximate='none'`, PyTorch's default)."""
    if approximate not in ("tanh", "none"): raise ArgumentError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")
    if approximate == "none": return 0.5 * self * (1 + (self * (1 / math.sqrt(2))).erf())
    return 0.5 * self * (1 + (math.sqrt(2 / math.pi) * (self + 0.044715 * self * self * self)).tanh())
  def silu(self) -> Tensor: return self * self.sigmoid()
  def swish(self) -> Tensor: return self.silu()
  def quick_gelu(self) -> Tensor: return self * (self * 1.702).sigmoid()
  def elu(self, alpha: float = 1.0) -> Tensor: return self.relu() - alpha * (1 - self.exp()).relu()
  def celu(self, alpha: float = 1.0) -> Tensor: return self.maximum(0) + (alpha * ((self / alpha).exp() - 1)).minimum(0)
  def selu(self, alpha: float = 1.67326, gamma: float = 1.0507) -> Tensor: return gamma * (self >= 0).where(self, alpha * (self.exp() - 1))
  def relu6(self) -> Tensor: return self.relu() - (self - 6).relu()
  def hardtanh(self, min_val: float = -1, max_val: float = 1) -> Tensor: return self.clip(min_val, max_val)
  def hardsigmoid(self, alpha: float = 1 / 6, beta: float = 0.5) -> Tensor: return (alpha * self + beta).relu() - (alpha * self + beta - 1).relu()
  def hardswish(self) -> Tensor: return self * (self + 3).relu6() * (1 / 6)
  def softplus(self, beta: float = 1.0) -> Tensor: return (self * beta).logaddexp(0.0) * (1 / beta)  # log(1 + e^x) without overflow
  def mish(self) -> Tensor: return self * self.softplus().tanh()
  def softsign(self) -> Tensor: return self / (1 + self.abs())
  def logsigmoid(self) -> Tensor: return -(-self).softplus()
  def softmin(self, axis: int = -1) -> Tensor: return (-self).softmax(axis)

# ## More movement
# Reshapes and expands with friendlier arguments.
@tensor_methods
class TensorMovement:
  def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if self.ndim == 0: return self.reshape(1)
    a, b = _axis(start_dim, self.ndim, self.shape), _axis(end_dim, self.ndim, self.shape)
    return self.reshape(self.shape[:a] + (prod(self.shape[a:b+1]),) + self.shape[b+1:])
  def unflatten(self, dim: int, sizes: Sequence[int]) -> Tensor:
    d = _axis(dim, self.ndim, self.shape)
    return self.reshape(self.shape[:d] + tuple(sizes) + self.shape[d+1:])
  def squeeze(self, dim: int | None = None) -> Tensor:
    if dim is None: return self.reshape(tuple(s for s in self.shape if s != 1))
    d = _axis(dim, self.ndim, self.shape)
    return self if self.ndim == 0 or self.shape[d] != 1 else self.reshape(self.shape[:d] + self.shape[d+1:])
  def unsqueeze(self, dim: int) -> Tensor:
    d = _axis(dim, self.ndim + 1, self.shape)
    return self.reshape(self.shape[:d] + (1,) + self.shape[d:])
  def _pad_from_inside(self, pairs: list[tuple[int, int]], mode: str) -> Tensor:
    """reflect, replicate and circular padding: slices of the tensor (flipped for reflect) joined on with cat."""
    x = self
    for d, (b, a) in enumerate(pairs):
      n = x.shape[d]
      if b < 0 or a < 0 or (mode == "reflect" and max(b, a) >= n) or (mode == "circular" and max(b, a) > n) or (n == 0 and b + a):
        raise ArgumentError(f"pad: padding ({b}, {a}) of axis {d} (size {n}) does not fit mode {mode!r}")
      if mode == "reflect": before, after = x._slice_axis(d, slice(1, b + 1)).flip(d), x._slice_axis(d, slice(n - 1 - a, n - 1)).flip(d)
      elif mode == "circular": before, after = x._slice_axis(d, slice(n - b, n)), x._slice_axis(d, slice(0, a))
      else: before, after = x._slice_axis(d, slice(0, 1)).repeat_interleave(b, d), x._slice_axis(d, slice(n - 1, n)).repeat_interleave(a, d)
      x = Tensor.cat(*(t for t in (before, x, after) if t.shape[d]), dim=d)
    return x
  def repeat(self, *repeats: Any) -> Tensor:
    repeats = _shape_arg(repeats)
    if len(repeats) < self.ndim: raise ArgumentError(f"repeat {repeats} needs at least {self.ndim} counts for shape {self.shape}")
    base = (1,) * (len(repeats) - self.ndim) + self.shape
    t = self.reshape(flatten((1, s) for s in base)).expand(flatten(zip(repeats, base)))
    return t.reshape(tuple(r * s for r, s in zip(repeats, base)))
  def repeat_interleave(self, repeats: int, dim: int | None = None) -> Tensor:
    x, d = (self.flatten(), 0) if dim is None else (self, _axis(dim, self.ndim, self.shape))
    return x.unsqueeze(d + 1).expand(x.shape[:d + 1] + (repeats,) + x.shape[d + 1:]).flatten(d, d + 1)
  def roll(self, shifts: int | Sequence[int], dims: int | Sequence[int] | None = None) -> Tensor:
    """Shift elements along dims, wrapping around: two copies side by side, and the window that starts at n - shift."""
    if dims is None: return self.flatten().roll(shifts, 0).reshape(self.shape)
    shifts, dims = (shifts,) if isinstance(shifts, int) else tuple(shifts), (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims): raise ArgumentError(f"roll: {len(shifts)} shifts for {len(dims)} dims")
    x = self
    for shift, dim in zip(shifts, dims):
      d = _axis(dim, self.ndim, self.shape)
      if (n := self.shape[d]) == 0: continue
      x = x.repeat(tuple(2 if k == d else 1 for k in range(self.ndim)))._slice_axis(d, slice(n - shift % n, 2 * n - shift % n))
    return x
  def unfold(self, dim: int, size: int, step: int) -> Tensor:
    """Windows of `size` elements every `step` along dim, as a new last axis."""
    d = _axis(dim, self.ndim, self.shape)
    if size < 0 or step <= 0 or size > self.shape[d]:
      raise ArgumentError(f"unfold: size={size}, step={step} do not fit axis {d} of size {self.shape[d]}")
    order = [k for k in range(self.ndim) if k != d] + [d]
    return self.permute(order)._pool((size,), (step,), (1,)).permute(argsort(order) + [self.ndim])
  def diag(self) -> Tensor:
    """The square matrix with this 1-d tensor on its diagonal: pad each element with n zeros, keep n*n of them."""
    if self.ndim != 1: raise ArgumentError(f"diag needs a 1-d tensor, got shape {self.shape}")
    n = self.shape[0]
    return self.unsqueeze(-1).pad((None, (0, n))).flatten().shrink(((0, n * n),)).reshape(n, n)
  def diagonal(self) -> Tensor:
    """The diagonal of a square matrix: read it in rows one element longer, and the diagonal is the first column."""
    if self.ndim != 2 or self.shape[0] != self.shape[1]: raise ArgumentError(f"diagonal needs a square matrix, got shape {self.shape}")
    n = self.shape[0]
    return self.flatten().pad(((0, n),)).reshape(n, n + 1)[:, 0]
  def meshgrid(self, *args: Tensor, indexing: str = "ij") -> tuple[Tensor, ...]:
    if indexing not in ("ij", "xy"): raise ArgumentError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    tensors = (self, *args)
    axes = [1, 0] + list(range(2, len(tensors))) if indexing == "xy" and len(tensors) > 1 else list(range(len(tensors)))
    shape = tuple(tensors[axes.index(k)].numel() for k in range(len(tensors)))
    return tuple(t.reshape(tuple(-1 if k == a else 1 for k in range(len(tensors)))).expand(shape) for t, a in zip(tensors, axes))

# ## Indexing
# `t[...]` with ints, slices (any step, negative too), None, Ellipsis and
# int tensors or lists. Basic indexing is movement: a slice is a shrink, a
# negative step a flip, a step of k a reshape that keeps every k-th element.
# Tensor indices gather: they compare against `arange` to make a one-hot mask
# and sum it against the data, which is how tinygrad gathers too. So an index
# held in a tensor that is out of range matches no element and reads 0 (its
# value is not known until the kernel runs); ints and lists are checked when
# the index is built and raise IndexError.
#
# `t[index] = value` is an assign of the whole tensor, with assign's value
# semantics: the new value is the old one with `value` (broadcast to the
# shape of `t[index]`) where `t[index]` reads. For basic indices that is the
# indexing run backwards (pads instead of shrinks) and a `where`; for tensor
# indices, it is a `scatter` (below) of the values into the flat positions
# that `t[index]` reads (work of size t.numel() times the number of indexed
# elements). A repeated index takes the last value given, as numpy does; an
# out-of-range one writes nowhere. Writing through a view (`t[0][1] = x`)
# changes the view's own copy, not t.
@tensor_methods
class TensorIndexing:
  def __getitem__(self, index: Any) -> Tensor:
    index = list(index) if isinstance(index, tuple) else [index]
    if sum(i is Ellipsis for i in index) > 1: raise IndexError("an index can only have a single ellipsis")
    used = sum(1 for i in index if i is not None and i is not Ellipsis)
    if used > self.ndim: raise IndexError(f"too many indices for tensor of shape {self.shape}: {used} given")
    at = next((n for n, i in enumerate(index) if i is Ellipsis), len(index))
    index[at:at+1] = [slice(None)] * (self.ndim - used)  # the ellipsis (or the end) stands for the axes not named
    t, dim, axes, indices = self, 0, [], []  # dim: the axis of t that the next index reads; axes: the axes tensor indices read
    for i in index:
      if i is None: t, dim = t.unsqueeze(dim), dim + 1
      elif isinstance(i, bool) or not isinstance(i, (int, slice, Tensor, list, tuple)):
        raise IndexError(f"cannot index with {type(i).__name__}")
      elif isinstance(i, int):
        n = t.shape[dim]
        if not -n <= i < n: raise IndexError(f"index {i} is out of bounds for axis {dim} with size {n}")
        t = t._slice_axis(dim, slice(i % n, i % n + 1)).squeeze(dim)
      elif isinstance(i, slice): t, dim = t._slice_axis(dim, i), dim + 1
      else:
        bad = [] if isinstance(i, Tensor) else [v for v in _fully_flatten(i)[0] if not isinstance(v, int) or not -t.shape[dim] <= v < t.shape[dim]]
        if bad:
          raise IndexError(f"index {bad[0]} is out of bounds for axis {dim} with size {t.shape[dim]}")
        if not isinstance(i, Tensor) and all(isinstance(v, bool) for v in _fully_flatten(i)[0]):  # numpy would read a mask
          raise IndexError(f"a list of bools {i} as an index: boolean masks are not supported, use masked_select")
        indices.append(i if isinstance(i, Tensor) else Tensor(list(i), device=self.device, dtype=dtypes.int32))
        axes, dim = axes + [dim], dim + 1
    return t._gather_axes(axes, indices) if axes else t
  def __setitem__(self, index: Any, value: Any) -> None:
    view = self[index]  # checks the index, and gives the shape value broadcasts to
    value = (value if isinstance(value, Tensor) else Tensor(value, device=self.device, dtype=self.dtype)).cast(self.dtype).expand(view.shape)
    items = list(index) if isinstance(index, tuple) else [index]
    if all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items):
      used = sum(1 for i in items if i is not None and i is not Ellipsis)
      at = next((n for n, i in enumerate(items) if i is Ellipsis), len(items))
      items[at:at+1] = [slice(None)] * (self.ndim - used)
      inside, axis = Tensor.ones(view.shape, device=self.device, dtype=dtypes.bool), 0
      for i in items:  # undo each step of the indexing, in order: axes before `axis` are already full size
        if i is None: value, inside = value.squeeze(axis), inside.squeeze(axis)
        else:
          if isinstance(i, int):
            value, inside, i = value.unsqueeze(axis), inside.unsqueeze(axis), slice(i % self.shape[axis], i % self.shape[axis] + 1)
          value, inside, axis = value._unslice_axis(axis, i, self.shape[axis]), inside._unslice_axis(axis, i, self.shape[axis]), axis + 1
      self.assign(inside.where(value, self))
      return
    n = self.numel()
    position = (Tensor.arange(1, n + 1, device=self.device).reshape(self.shape)[index] - 1).flatten()  # -1: an out-of-range tensor index
    self.assign(self.flatten().scatter(0, position, value.flatten()).reshape(self.shape))
  def _unslice_axis(self, dim: int, s: slice, n: int) -> Tensor:
    """The inverse of `_slice_axis(dim, s)` on an axis of size n: self's elements where the slice read them, zeros elsewhere."""
    start, stop, step = s.indices(n)
    if step < 0: return self._unslice_axis(dim, slice(n - 1 - start, None, -step), n).flip(dim)
    # step - 1 zeros after each element (none for step 1: the unsqueeze and flatten cancel), then the rest around them
    t = self.unsqueeze(dim + 1).pad([None] * (dim + 1) + [(0, step - 1)] + [None] * (self.ndim - dim - 1)).flatten(dim, dim + 1)
    return t.pad([None] * dim + [(start, n - start - t.shape[dim])] + [None] * (t.ndim - dim - 1))
  def _slice_axis(self, dim: int, s: slice) -> Tensor:
    n = self.shape[dim]
    start, stop, step = s.indices(n)
    if step < 0: return self.flip(dim)._slice_axis(dim, slice(n - 1 - start, n - 1 - stop, -step))
    length = len(range(start, stop, step))
    # keep every step-th element: the length*step elements from start (a negative pad cuts, a positive one fills in
    # past the end), viewed as (length, step), column 0. For step 1 that is the cut alone.
    t = self.pad([None] * dim + [(-start, length * step + start - n)] + [None] * (self.ndim - dim - 1))
    return t if step == 1 else t.unflatten(dim, (length, step))._slice_axis(dim + 1, slice(0, 1)).squeeze(dim + 1)
  def _gather_axes(self, axes: list[int], indices: list[Tensor]) -> Tensor:
    # one flat index over the indexed axes, negative indices wrapped as numpy does
    bshape = functools.reduce(_broadcast_shape, [i.shape for i in indices])
    flat = Tensor.zeros(bshape, device=self.device, dtype=dtypes.int32)
    for d, idx in zip(axes, indices):
      if idx.dtype.is_float or idx.dtype == dtypes.bool: raise IndexError(f"tensor indices must be integers, got {idx.dtype}")
      idx = idx.cast(dtypes.int32)
      flat = flat * self.shape[d] + (idx < 0).where(idx + self.shape[d], idx)._broadcast_to(bshape)
    rest = [d for d in range(self.ndim) if d not in axes]
    n = prod(self.shape[d] for d in axes)
    data = self.permute(axes + rest).reshape((n,) + tuple(self.shape[d] for d in rest))
    onehot = flat.reshape(bshape + (1,)) == Tensor.arange(n, device=self.device)
    picked = (onehot.reshape(onehot.shape + (1,) * len(rest)).where(data.reshape((1,) * len(bshape) + data.shape), 0)).sum(len(bshape))
    # numpy puts the gathered axes where the indexed axes were if they are adjacent, else first
    if axes == list(range(axes[0], axes[0] + len(axes))) and axes[0] > 0:
      k, b = axes[0], len(bshape)
      picked = picked.permute(list(range(b, b + k)) + list(range(b)) + list(range(b + k, picked.ndim)))
    return picked.cast(self.dtype)

# ## Gathering and scattering
# Reading and writing along one axis at positions held in a tensor, as
# PyTorch's gather and scatter. Like tensor indexing, each compares the
# positions with an `arange` to make a one-hot mask and reduces over it; a
# position outside the axis matches nothing: gather reads 0 there and
# scatter writes nowhere. `nonzero` and `masked_select` return as many
# elements as there are hits, so they read the values first.
@tensor_methods
class TensorGathering:
  def _one_hot_along(self, n: int, dim: int) -> Tensor:
    """True where this tensor of positions (size 1 at dim) names position j of an axis of n laid along dim."""
    return self == Tensor.arange(n, device=self.device).reshape((n,) + (1,) * (self.ndim - dim - 1))
  def gather(self, dim: int, index: Tensor) -> Tensor:
    """out[i][j] = self[index[i][j]][j] for dim 0, and likewise for other dims."""
    d = _axis(dim, self.ndim, self.shape)
    if index.ndim != self.ndim or any(i > s for k, (i, s) in enumerate(zip(index.shape, self.shape)) if k != d):
      raise ArgumentError(f"gather: index of shape {index.shape} does not fit a tensor of shape {self.shape} outside dim {d}")
    x = self.shrink(tuple((0, i) if k != d else None for k, i in enumerate(index.shape))).unsqueeze(d)  # (..., 1, n, ...)
    return index.unsqueeze(d + 1)._one_hot_along(self.shape[d], d + 1).where(x, 0).sum(d + 1, dtype=self.dtype)
  def _scatter_mask(self, dim: int, index: Tensor, src: Tensor) -> tuple[Tensor, Tensor]:
    """src and a one-hot mask, both of self's shape plus a last axis with one entry per element of index along dim."""
    d = _axis(dim, self.ndim, self.shape)
    too_big = any((k != d and i > s) or i > r for k, (i, s, r) in enumerate(zip(index.shape, self.shape, src.shape)))
    if not index.ndim == self.ndim == src.ndim or too_big:
      raise ArgumentError(f"scatter: index of shape {index.shape} must fit src {src.shape}, and self {self.shape} outside dim {d}")
    if src.dtype != self.dtype: raise ArgumentTypeError(f"scatter: src has dtype {src.dtype}, self has {self.dtype}")
    src = src.shrink(tuple((0, s) for s in index.shape)).unsqueeze(-1).transpose(-1, d)
    mask = index.unsqueeze(-1).transpose(-1, d)._one_hot_along(self.shape[d], d)
    pads = [(0, self.shape[k] - index.shape[k]) if k != d else None for k in range(self.ndim)] + [None]
    return src.pad(pads), mask.pad(pads)
  def scatter(self, dim: int, index: Tensor, src: Tensor | float, reduce: str | None = None) -> Tensor:
    """self with src's values written at the positions in index; where a position repeats, the last write wins."""
    if reduce not in (None, "add", "multiply"): raise ArgumentError(f"scatter: reduce must be None, 'add' or 'multiply', got {reduce!r}")
    if reduce is not None and isinstance(src, Tensor): raise ArgumentTypeError("scatter: a Tensor src does not take reduce; use scatter_reduce")
    if not isinstance(src, Tensor): src = Tensor.full(index.shape, src, device=self.device, dtype=self.dtype)
    if reduce is not None: return self.scatter_reduce(dim, index, src, {"add": "sum", "multiply": "prod"}[reduce])
    src, mask = self._scatter_mask(dim, index, src)
    order = Tensor.arange(mask.shape[-1], device=self.device)
    last = mask.where(order, -1).max(-1, keepdim=True)
    return mask.any(-1).where((mask & (order == last)).where(src, 0).sum(-1, dtype=self.dtype), self)
  def scatter_reduce(self, dim: int, index: Tensor, src: Tensor, reduce: str, include_self: bool = True) -> Tensor:
    """src's values combined into self at the positions in index, by sum, prod, mean, amax or amin."""
    identity = {"sum": 0, "prod": 1, "mean": 0, "amax": self.dtype.min, "amin": self.dtype.max}
    if reduce not in identity: raise ArgumentError(f"scatter_reduce: reduce must be one of {list(identity)}, got {reduce!r}")
    src, mask = self._scatter_mask(dim, index, src)
    hit = mask.any(-1)
    base, values = self if include_self else hit.where(identity[reduce], self), mask.where(src, identity[reduce])
    if reduce == "mean":
      count = mask.sum(-1) + (1 if include_self else hit.logical_not().cast(dtypes.int32))
      out = (values.sum(-1, dtype=self.dtype) + base) / count
      return out if self.dtype.is_float else out.floor().cast(self.dtype)
    if reduce == "sum": return values.sum(-1, dtype=self.dtype) + base
    if reduce == "prod": return values.prod(-1, dtype=self.dtype) * base
    return values.max(-1).maximum(base) if reduce == "amax" else values.min(-1).minimum(base)
  def masked_fill(self, mask: Tensor, value: Any) -> Tensor: return mask.where(value, self)
  def nonzero(self) -> Tensor:
    """The (count, ndim) positions of the nonzero elements, in order."""
    hits = [i for i, v in enumerate(self.flatten().tolist()) if v]
    strides = [prod(self.shape[k + 1:]) for k in range(self.ndim)]
    positions = [[i // stride % n for stride, n in zip(strides, self.shape)] for i in hits]
    return Tensor(positions, device=self.device, dtype=dtypes.int32).reshape(len(hits), self.ndim)
  def masked_select(self, mask: Tensor) -> Tensor:
    """The elements where mask (broadcast with self) is True, flattened."""
    if mask.dtype != dtypes.bool: raise TypeError(f"masked_select needs a bool mask, got {mask.dtype}")
    shape = _broadcast_shape(self.shape, mask.shape)
    return self._broadcast_to(shape).flatten()[mask._broadcast_to(shape).flatten().nonzero().reshape(-1)]

# ## Sorting
# A place in sorted order is a count: the elements that sort before this
# one (smaller ones, and equal ones earlier in the axis, which makes the sort
# stable). Counting compares every pair, n*n work for an axis of n, where
# tinygrad runs a bitonic network of n*log(n)^2 steps; the results are the
# same. NaN sorts after every number, as in PyTorch.
@tensor_methods
class TensorSorting:
  def sort(self, dim: int = -1, descending: bool = False) -> tuple[Tensor, Tensor]:
    """(values, indices) along dim, ascending unless `descending`; equal elements keep their order."""
    d = _axis(dim, self.ndim, self.shape)
    x = self.transpose(d, -1) if self.ndim else self.reshape(1)
    n = x.shape[-1]
    a, b = x.unsqueeze(-1), x.unsqueeze(-2)  # a: the element being placed, b: each element it is compared with
    if descending: before = (b > a) | (b.isnan() & a.isnan().logical_not())
    else: before = (b < a) | (a.isnan() & b.isnan().logical_not())
    earlier = Tensor.arange(n, device=self.device).reshape(1, n) < Tensor.arange(n, device=self.device).reshape(n, 1)
    place = (before | (((a == b) | (a.isnan() & b.isnan())) & earlier)).sum(-1)  # (..., n): where each element goes
    goes_to = place.unsqueeze(-1) == Tensor.arange(n, device=self.device)  # (..., element, place)
    values = goes_to.where(x.unsqueeze(-1), 0).sum(-2, dtype=self.dtype)
    indices = goes_to.where(Tensor.arange(n, device=self.device).reshape(n, 1), 0).sum(-2)
    if not self.ndim: return values.reshape(()), indices.reshape(())
    return values.transpose(d, -1), indices.transpose(d, -1)
  def argsort(self, dim: int = -1, descending: bool = False) -> Tensor: return self.sort(dim, descending)[1]
  def topk(self, k: int, dim: int = -1, largest: bool = True, sorted_: bool = True) -> tuple[Tensor, Tensor]:
    """The k largest (or smallest) elements along dim, in sorted order, and their indices."""
    d = _axis(dim, self.ndim, self.shape)
    if not 0 <= k <= (self.shape[d] if self.ndim else 1): raise ArgumentError(f"topk: k={k} is out of range for axis {d} of shape {self.shape}")
    values, indices = self.sort(d, descending=largest)
    return (values._slice_axis(d, slice(0, k)), indices._slice_axis(d, slice(0, k))) if self.ndim else (values, indices)

# ## Joining and splitting
# `cat` pads each piece to the full length and adds them; `split` is shrinks.
@tensor_methods
class TensorJoining:
  def cat(self, *others: Tensor, dim: int = 0) -> Tensor:
    """Concatenate along dim: pad each tensor to the full length and add them up."""
    if isinstance(self, (list, tuple)) and others: raise ArgumentError("cat takes tensors, or one sequence of them, not both")
    if isinstance(self, (list, tuple)): self, others = self[0], tuple(self[1:])  # Tensor.cat((a, b)), as tinygrad allows
    first, tensors = self, (self,) + others
    d = _axis(dim, first.ndim, first.shape)
    for t in tensors[1:]:
      if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != d):
        raise ArgumentError(f"cat: shapes {first.shape} and {t.shape} differ outside axis {d}")
    dtype = least_upper_dtype(*(t.dtype for t in tensors))
    starts = [0, *itertools.accumulate(t.shape[d] for t in tensors)]  # each tensor's place along d; the last is the total
    pieces = [t.cast(dtype)._unslice_axis(d, slice(start, end), starts[-1]) for t, start, end in zip(tensors, starts, starts[1:])]
    return sum(pieces[1:], pieces[0])
  def stack(self, *others: Tensor, dim: int = 0) -> Tensor:
    if isinstance(self, (list, tuple)) and others: raise ArgumentError("stack takes tensors, or one sequence of them, not both")
    if isinstance(self, (list, tuple)): self, others = self[0], tuple(self[1:])
    tensors = (self,) + others
    if not all_same([t.shape for t in tensors]): raise ArgumentError(f"stack needs tensors of one shape, got {[t.shape for t in tensors]}")
    d = _axis(dim, self.ndim + 1, self.shape)
    return Tensor.cat(*(t.unsqueeze(d) for t in tensors), dim=d)
  def split(self, sizes: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
    d = _axis(dim, self.ndim, self.shape)
    n = self.shape[d]
    sizes = [min(sizes, n - i) for i in range(0, n, sizes)] if isinstance(sizes, int) else list(sizes)
    if sum(sizes) != n: raise ArgumentError(f"split sizes {sizes} do not add up to {n}, the size of axis {d}")
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    return tuple(self._slice_axis(d, slice(o, o + s)) for o, s in zip(offsets, sizes))
  def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    d = _axis(dim, self.ndim, self.shape)
    return self.split(max(1, math.ceil(self.shape[d] / chunks)), d)

# ## Statistics and softmax
# Reductions composed with elementwise ops; each max is subtracted before an
# exp so nothing overflows.
@tensor_methods
class TensorReductions:
  def var(self, axis: int | Sequence[int] | None = None, keepdim: bool = False, correction: int = 1) -> Tensor:
    squares = (self._float() - self._float().mean(axis, keepdim=True)).square()
    n = prod(self.shape) // max(1, prod(squares.sum(axis, keepdim).shape))
    return squares.sum(axis, keepdim) / max(0, n - correction)
  def std(self, axis: int | Sequence[int] | None = None, keepdim: bool = False, correction: int = 1) -> Tensor:
    return self.var(axis, keepdim, correction).sqrt()
  def all(self, axis: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
    return self.logical_not().any(axis, keepdim).logical_not()
  def any(self, axis: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor: return self.bool().max(axis, keepdim)
  def argmax(self, axis: int | None = None, keepdim: bool = False) -> Tensor:
    """The index of the first maximum, NaN counting as the maximum (as numpy): count down from n at each maximum,
    take the largest count."""
    if axis is None: return self.flatten().argmax(0)
    d = _axis(axis, self.ndim, self.shape)
    n = self.shape[d]
    if n == 0: raise ArgumentError(f"argmax of an empty axis {d} (shape {self.shape})")
    countdown = Tensor.arange(n, 0, -1, device=self.device).reshape((n,) + (1,) * (self.ndim - d - 1))
    if self.dtype.is_float: best = self.isnan().any(d, keepdim=True).where(math.nan, self.max(d, keepdim=True))
    else: best = self.max(d, keepdim=True)
    hit = (self == best) | (self.isnan() & best.isnan())
    return (n - hit.where(countdown, 0).max(d, keepdim)).cast(dtypes.int32)
  def argmin(self, axis: int | None = None, keepdim: bool = False) -> Tensor:
    return (self.neg() if self.dtype.is_float else self.bitwise_not()).argmax(axis, keepdim)
  def softmax(self, axis: int = -1) -> Tensor:
    e = (self - self.max(axis, keepdim=True)).exp()
    return e / e.sum(axis, keepdim=True)
  def log_softmax(self, axis: int = -1) -> Tensor:
    shifted = self - self.max(axis, keepdim=True)
    return shifted - shifted.exp().sum(axis, keepdim=True).log()
  def logsumexp(self, axis: int | None = None, keepdim: bool = False) -> Tensor:
    m = self.max(axis, keepdim=True)
    out = (self - m).exp().sum(axis, keepdim=True).log() + m
    return out if keepdim else out.reshape(self.max(axis).shape)
  def std_mean(self, axis: int | Sequence[int] | None = None, keepdim: bool = False, correction: int = 1) -> tuple[Tensor, Tensor]:
    return self.std(axis, keepdim, correction), self.mean(axis, keepdim)
  def var_mean(self, axis: int | Sequence[int] | None = None, keepdim: bool = False, correction: int = 1) -> tuple[Tensor, Tensor]:
    return self.var(axis, keepdim, correction), self.mean(axis, keepdim)

# ## Running reductions
# Output element i reduces the inputs at or before i: a triangular mask over
# a new axis, then the reduce. That is one kernel of n*n work for an axis of
# n (tinygrad splits long axes into blocks to do less).
@tensor_methods
class TensorCumulative:
  def _cumulative(self, axis: int, reduce: Callable[[Tensor], Tensor], identity: Any) -> Tensor:
    d = _axis(axis, self.ndim, self.shape)
    x = self.transpose(d, -1) if self.ndim else self.reshape(1)
    n = x.shape[-1]
    mask = Tensor.arange(n, device=self.device).reshape(1, n) <= Tensor.arange(n, device=self.device).reshape(n, 1)
    out = reduce(mask.where(x.unsqueeze(-2), identity))
    return out.transpose(d, -1) if self.ndim else out.reshape(())
  def cumsum(self, axis: int = 0) -> Tensor:
    return self._cumulative(axis, lambda w: w.sum(-1, dtype=None if self.dtype.is_float else self._acc_dtype()), 0)
  def cumprod(self, axis: int = 0) -> Tensor: return self._cumulative(axis, lambda w: w.prod(-1), 1)
  def cummax(self, axis: int = 0) -> Tensor: return self._cumulative(axis, lambda w: w.max(-1), self.dtype.min)
  def cummin(self, axis: int = 0) -> Tensor: return self._cumulative(axis, lambda w: w.min(-1), self.dtype.max)
  # logsumexp subtracts each row's maximum, the running maximum here, so small early terms do not underflow
  def logcumsumexp(self, axis: int = 0) -> Tensor: return self._cumulative(axis, lambda w: w.logsumexp(-1), -math.inf)

# ## Matrix multiplication
# There is no matmul op. `x @ w` lines up x's rows and w's columns by
# broadcasting, multiplies elementwise, and sums the shared axis:
# `(n, 1, k) * (1, m, k)` summed over k is `(n, m)`. Scheduling fuses the
# multiply into the sum, so this is one kernel with a loop over k.
@tensor_methods
class TensorLinalg:
  def matmul(self, w: Tensor) -> Tensor:
    if self.ndim == 0 or w.ndim == 0: raise ArgumentError(f"matmul needs tensors of at least one dimension, got shapes {self.shape} and {w.shape}")
    k = self.shape[-1]
    if (wk := w.shape[-2] if w.ndim > 1 else w.shape[0]) != k:
      raise ArgumentError(f"cannot matmul shapes {self.shape} and {w.shape}: inner sizes {k} and {wk} differ")
    x = self.reshape(self.shape[:-1] + (1, k))
    wt = w.reshape(k, 1).transpose(-1, -2) if w.ndim == 1 else w.transpose(-1, -2)
    out = (x * wt.reshape(wt.shape[:-2] + (1,) + wt.shape[-2:])).sum(-1, dtype=least_upper_dtype(self._acc_dtype(), w._acc_dtype()))
    out = out.cast(least_upper_dtype(self.dtype, w.dtype))
    if self.ndim == 1: out = out.squeeze(-2)
    return out.squeeze(-1) if w.ndim == 1 else out
  def dot(self, w: Tensor) -> Tensor: return self.matmul(w)
  @staticmethod
  def einsum(formula: str, *operands: Tensor | Sequence[Tensor], dtype: DType | None = None) -> Tensor:
    """Sums of products named by letters, as numpy.einsum: 'ij,jk->ik' is matmul. Each operand is lined up on one
    axis per letter (a letter repeated in one operand takes the diagonal), they are multiplied, and the letters
    missing from the output are summed away."""
    xs = list(operands[0]) if len(operands) == 1 and isinstance(operands[0], (list, tuple)) else list(operands)
    formula = formula.replace(" ", "")
    lhs, rhs = formula.split("->") if "->" in formula else (formula, None)
    if rhs is None: rhs = "..." * ("..." in lhs) + "".join(sorted(c for c in lhs if lhs.count(c) == 1 and c.isalpha()))
    inputs = lhs.split(",")
    if len(inputs) != len(xs): raise ArgumentError(f"einsum: {formula!r} names {len(inputs)} operands, {len(xs)} given")
    if "..." in lhs:  # an ellipsis stands for the same unnamed letters in every operand, aligned on the right
      spare = [c for c in string.ascii_letters if c not in formula]
      counts = [x.ndim - len(s) + 3 if "..." in s else 0 for s, x in zip(inputs, xs)]
      inputs = [s.replace("...", "".join(spare[max(counts) - c:max(counts)])) for s, c in zip(inputs, counts)]
      rhs = rhs.replace("...", "".join(spare[:max(counts)]))
    sizes: dict[str, int] = {}
    for i, (letters, x) in enumerate(zip(inputs, xs)):
      if len(letters) != x.ndim: raise ArgumentError(f"einsum: operand {i} has shape {x.shape}, {letters!r} names {len(letters)} axes")
      for c in dict.fromkeys(letters):
        while letters.count(c) > 1:  # keep the diagonal of two axes of one letter: read in rows one longer, first column
          j, k = letters.index(c), letters.index(c, letters.index(c) + 1)
          x = x.permute([a for a in range(x.ndim) if a not in (j, k)] + [j, k])
          n = x.shape[-1]
          x = x.flatten(-2).pad([None] * (x.ndim - 2) + [(0, n)]).unflatten(-1, (n, n + 1))[..., 0]
          letters = letters[:j] + letters[j + 1:k] + letters[k + 1:] + c
      for c, n in zip(letters, x.shape):
        if sizes.setdefault(c, n) != n: raise ArgumentError(f"einsum: letter {c!r} has sizes {sizes[c]} and {n}")
      inputs[i], xs[i] = letters, x
    alphabet = sorted(sizes)
    full = [sizes[c] for c in alphabet]
    lined_up = [x.permute([s.index(c) for c in sorted(s)]).reshape([sizes[c] if c in s else 1 for c in alphabet]).expand(full)
                for s, x in zip(inputs, xs)]
    out = functools.reduce(lambda a, b: a * b, lined_up).sum([i for i, c in enumerate(alphabet) if c not in rhs], dtype=dtype)
    return out.permute(argsort(argsort(list(rhs)))) if rhs else out
  def _upper(self, diagonal: int) -> Tensor:
    """True on and above the diagonal'th diagonal of the last two axes (0 is the main one, 1 the one above it)."""
    rows, cols = self.shape[-2:]
    return Tensor.arange(rows, device=self.device).reshape(rows, 1) + diagonal <= Tensor.arange(cols, device=self.device).reshape(1, cols)
  def triu(self, diagonal: int = 0) -> Tensor: return self._upper(diagonal).where(self, self.zeros_like())
  def tril(self, diagonal: int = 0) -> Tensor: return self._upper(diagonal + 1).where(self.zeros_like(), self)

# ## Pooling and convolution
# Convolution is movement plus multiply plus sum, like matmul. `_pool`
# turns each spatial axis of size i into two axes, (o, k): output position
# and offset in the window, so that `windows[..., a, b] = x[..., a*stride +
# b*dilation]`. It does so without a gather: repeat the axis k times,
# flatten, and read the result back in rows one element longer than a
# dilation step, which skews row b by b*dilation; a strided slice then
# keeps every stride-th column. Everything stays a view: the kernel that
# consumes the windows computes these indices, and no window is stored.
#
# conv2d brings its own gradient (chapter 8). Walked back by the rules, the
# window trick's views would give the input gradient as sums over window
# copies whose indices wrap around inside the rows (a div and a mod at every
# read, no vector lanes), 7 of 16 copies never valid, around the sum over
# output channels: 10x slower than the forward pass. It is the transposed
# convolution, which is a plain one over the incoming gradient, padded
# (stored padded, as the forward's input is); the weight gradient is the
# windows times the incoming gradient, summed, as the rules would give.
@tensor_methods
class TensorConvolution:
  def _pool(self, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]) -> Tensor:
    x, n = self, len(kernel)
    lead = self.ndim - n
    for j, (k, s, d) in enumerate(zip(kernel, stride, dilation)):
      axis = lead + 2 * j  # spatial axis j, after the earlier ones became (o, k) pairs
      x = x.permute([a for a in range(x.ndim) if a != axis] + [axis])
      i = x.shape[-1]
      o = (i - d * (k - 1) - 1) // s + 1
      if o <= 0: raise ArgumentError(f"window of size {k} (dilation {d}) does not fit in axis {axis} of size {i}")
      skewed = x.repeat((1,) * (x.ndim - 1) + (math.ceil(k * (i + d) / i),)).reshape(x.shape[:-1] + (-1,))
      skewed = skewed.shrink([None] * (x.ndim - 1) + [(0, k * (i + d))]).reshape(x.shape[:-1] + (k, i + d))
      x = skewed._slice_axis(skewed.ndim - 1, slice(0, (o - 1) * s + 1, s)).transpose(-1, -2)  # (..., o, k)
      x = x.permute(list(range(axis)) + [x.ndim - 2, x.ndim - 1] + list(range(axis, x.ndim - 2)))
    # axes are now (..., o0, k0, o1, k1, ...): gather the outputs, then the windows
    lead = list(range(self.ndim - n))
    return x.permute(lead + [len(lead) + 2 * j for j in range(n)] + [len(lead) + 2 * j + 1 for j in range(n)])

  def conv2d(self, weight: Tensor, bias: Tensor | None = None, groups: int = 1, stride: int | tuple[int, ...] = 1,
             dilation: int | tuple[int, ...] = 1, padding: int | str | tuple[int, ...] = 0) -> Tensor:
    """N-d convolution (2-d in the common case) of (batch, cin, *spatial) by (cout, cin/groups, *kernel);
    `padding` takes PyTorch's forms (see `_pool_padding`)."""
    (bs, cin), (cout, cin_g), hw = self.shape[:2], weight.shape[:2], weight.shape[2:]
    if cin != cin_g * groups:
      raise ArgumentError(f"conv2d: input has {cin} channels, weight {weight.shape} with groups={groups} expects {cin_g * groups}")
    if cout % groups: raise ArgumentError(f"conv2d: {cout} output channels do not divide into {groups} groups")
    n, s, d, acc = len(hw), _spatial(stride, len(hw)), _spatial(dilation, len(hw)), least_upper_dtype(self._acc_dtype(), weight._acc_dtype())
    pads = _pool_padding(padding, hw, d)
    x = self.pad([None, None] + pads)._pool(hw, s, d)
    out_hw = x.shape[2:2 + n]
    x = x.reshape(bs, groups, 1, cin_g, *out_hw, *hw)
    w = weight.reshape(1, groups, cout // groups, cin_g, *([1] * n), *hw)
    out = (x * w).sum([3] + list(range(4 + n, 4 + 2 * n)), dtype=acc).cast(least_upper_dtype(self.dtype, weight.dtype)).reshape(bs, cout, *out_hw)
    def gradient(g: Tensor, x: UOp = x.uop, src: UOp = self.uop, wu: UOp = weight.uop, in_hw: tuple = self.shape[2:]) -> list[tuple[UOp, Tensor]]:
      # the weight's: each window times the gradient at its output, summed over the batch and the outputs. The
      # input's: the transposed convolution, cut to the input (the rest of the padded input, past the last window, gets 0)
      dw = (Tensor(x) * g.reshape(bs, groups, cout // groups, 1, *out_hw, *([1] * n))).sum([0] + list(range(4, 4 + n)), dtype=acc)
      rest = [i + 2 * b - (o - 1) * sj - dj * (k - 1) - 1 for i, o, sj, dj, k, (b, _) in zip(in_hw, out_hw, s, d, hw, pads)]
      dx = g.conv_transpose2d(Tensor(wu), groups=groups, stride=s, dilation=d, padding=[b for b, _ in pads], output_padding=rest)
      return [(src, dx.cast(src.dtype)), (wu, dw.reshape(wu.shape).cast(wu.dtype))]
    _custom_gradients[out.uop] = gradient
    return out if bias is None else out + bias.reshape(1, -1, *([1] * n))

  def conv_transpose2d(self, weight: Tensor, bias: Tensor | None = None, groups: int = 1, stride: int | tuple[int, ...] = 1,
                       dilation: int | tuple[int, ...] = 1, padding: int | tuple[int, ...] = 0, output_padding: int | tuple[int, ...] = 0) -> Tensor:
    """The transpose (gradient) of conv2d: spread the input out by the stride, then convolve with the flipped kernel."""
    hw = weight.shape[2:]
    n = len(hw)
    s, d, p, op = _spatial(stride, n), _spatial(dilation, n), _spatial(padding, n), _spatial(output_padding, n)
    cin, cout_g = weight.shape[:2]
    w = weight.reshape(groups, cin // groups, cout_g, *hw).transpose(1, 2).reshape(groups * cout_g, cin // groups, *hw).flip(tuple(range(2, 2 + n)))
    x = self
    for j, sj in enumerate(s):  # insert stride-1 zeros between input elements: the inverse of reading every sj-th
      x = x._unslice_axis(2 + j, slice(None, None, sj), (x.shape[2 + j] - 1) * sj + 1)
    pads = [(dj * (kj - 1) - pj, dj * (kj - 1) - pj + oj) for kj, dj, pj, oj in zip(hw, d, p, op)]
    return x.pad([None, None] + pads).conv2d(w, bias, groups=groups, dilation=d)

  # Pools take a kernel of any number of spatial axes (its length says how many; an int means 2), PyTorch's padding
  # forms, and `ceil_mode`, which pads the end so that a last, partial window fits (if it starts inside the input).
  def _pool_args(self, kernel_size: int | tuple[int, ...], stride: Any, dilation: Any, padding: Any, ceil_mode: bool, n: int = 2) -> tuple:
    k = _spatial(kernel_size, n)
    s, d = _spatial(stride if stride is not None else k, len(k)), _spatial(dilation, len(k))
    pads = _pool_padding(padding, k, d)
    if ceil_mode:
      for j, (i, kj, sj, dj) in enumerate(zip(self.shape[-len(k):], k, s, d)):
        (b, a), window = pads[j], dj * (kj - 1) + 1
        o = -(-(i + b + a - window) // sj) + 1
        if (o - 1) * sj >= i + b: o -= 1
        pads[j] = (b, a + max(0, (o - 1) * sj + window - (i + b + a)))
    return k, s, d, pads
  def max_pool2d(self, kernel_size: int | tuple[int, ...] = 2, stride: int | tuple[int, ...] | None = None, dilation: int | tuple[int, ...] = 1,
                 padding: int | tuple[int, ...] = 0, ceil_mode: bool = False, return_indices: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The maximum of each window; with `return_indices`, also the flat position of the first maximum in each (for max_unpool2d)."""
    k, s, d, pads = self._pool_args(kernel_size, stride, dilation, padding, ceil_mode)
    axes = tuple(range(-len(k), 0))
    windows = self.pad([None] * (self.ndim - len(k)) + pads, value=self.dtype.min)._pool(k, s, d)
    if not return_indices: return windows.max(axes)
    spatial = self.shape[-len(k):]
    countdown = Tensor.arange(prod(spatial), 0, -1, device=self.device).reshape(spatial).pad(pads)._pool(k, s, d)
    first = (windows == windows.max(axes, keepdim=True)).where(countdown, 0).max(axes)
    return windows.max(axes), (prod(spatial) - first).cast(dtypes.int32)
  def avg_pool2d(self, kernel_size: int | tuple[int, ...] = 2, stride: int | tuple[int, ...] | None = None, dilation: int | tuple[int, ...] = 1,
                 padding: int | tuple[int, ...] = 0, ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    """The mean of each window. The padding counts as zeros with `count_include_pad`; what ceil_mode adds never counts."""
    k, s, d, pads = self._pool_args(kernel_size, stride, dilation, padding, ceil_mode)
    axes, lead = tuple(range(-len(k), 0)), [None] * (self.ndim - len(k))
    windows = self.pad(lead + pads)._pool(k, s, d)
    if count_include_pad and not ceil_mode: return windows.mean(axes)
    counted = _pool_padding(padding, k, d) if count_include_pad else [(0, 0)] * len(k)
    ones = Tensor.ones(self.shape[-len(k):], device=self.device).pad(counted, value=1.0)
    return windows.sum(axes) / ones.pad([(b - cb, a - ca) for (b, a), (cb, ca) in zip(pads, counted)])._pool(k, s, d).sum(axes)
  def max_unpool2d(self, indices: Tensor, kernel_size: int | tuple[int, ...] = 2, stride: int | tuple[int, ...] | None = None,
                   dilation: int | tuple[int, ...] = 1, padding: int | tuple[int, ...] = 0, output_size: Sequence[int] | None = None) -> Tensor:
    """Put each pooled value back at the position max_pool2d's `return_indices` gave, zeros elsewhere."""
    bs, c, *spatial = self.shape
    k, s, d, pads = self._pool_args(kernel_size, stride, dilation, padding, False, len(spatial))
    if output_size is None:
      output_size = [(i - 1) * sj - (b + a) + dj * (kj - 1) + 1 for i, kj, sj, dj, (b, a) in zip(spatial, k, s, d, pads)]
    output_size = tuple(output_size)[-len(spatial):]
    hits = indices.reshape(bs, c, -1, 1) == Tensor.arange(prod(output_size), device=self.device)
    return hits.where(self.reshape(bs, c, -1, 1), 0).sum(2, dtype=self.dtype).reshape(bs, c, *output_size)
  def interpolate(self, size: Sequence[int], mode: str = "linear", align_corners: bool = False) -> Tensor:
    """Resample the last len(size) axes to `size`: each axis reads the nearest input ('nearest', 'nearest-exact') or
    blends the two neighbours ('linear'), one axis at a time, by gathers."""
    if not isinstance(size, (tuple, list)) or not 0 < len(size) <= self.ndim:
      raise ArgumentError(f"interpolate: size {size!r} does not fit shape {self.shape}")
    if mode not in ("linear", "nearest", "nearest-exact"):
      raise ArgumentError(f"interpolate: mode must be 'linear', 'nearest' or 'nearest-exact', got {mode!r}")
    if align_corners and mode != "linear": raise ArgumentError("interpolate: align_corners needs mode 'linear'")
    x, full = self, list(self.shape)
    for i in range(-1, -len(size) - 1, -1):
      scale = (self.shape[i] - int(align_corners)) / max(size[i] - int(align_corners), 1)
      positions, shape = Tensor.arange(size[i], device=self.device, dtype=dtypes.float32), [1] * self.ndim
      shape[i] = full[i] = size[i]
      if mode == "linear":
        where = (scale * positions if align_corners else scale * (positions + 0.5) - 0.5).clip(0, self.shape[i] - 1)
        ends = (where.floor().cast(dtypes.int32), where.ceil().cast(dtypes.int32), where - where.floor())
        low, high, frac = [t.reshape(shape).expand(full) for t in ends]
        x = x.gather(i, low).lerp(x.gather(i, high), frac)
      else:
        nearest = scale * (positions + 0.5) if mode == "nearest-exact" else scale * positions
        x = x.gather(i, nearest.cast(dtypes.int32).reshape(shape).expand(full))
    return x.cast(self.dtype)

def _pool_padding(padding: int | str | Sequence[int], kernel: tuple[int, ...], dilation: tuple[int, ...]) -> list[tuple[int, int]]:
  """(before, after) for each spatial axis from PyTorch's forms: an int for every side, one int per axis, flat pairs
  last axis first (as `pad` takes them), 'valid' (none) or 'same' (at stride 1, the output as large as the input)."""
  n = len(kernel)
  if padding == "valid": return [(0, 0)] * n
  if padding == "same": return [(dj * (kj - 1) // 2, dj * (kj - 1) - dj * (kj - 1) // 2) for kj, dj in zip(kernel, dilation)]
  if isinstance(padding, int): return [(padding, padding)] * n
  if not isinstance(padding, str) and len(padding) == n: return [(p, p) for p in padding]
  if not isinstance(padding, str) and len(padding) == 2 * n: return [(padding[2 * j], padding[2 * j + 1]) for j in range(n)][::-1]
  raise ArgumentError(f"padding {padding!r} is not an int, {n} ints, {2 * n} ints, 'same' or 'valid' for {n} spatial axes")

def _spatial(x: int | Sequence[int], n: int) -> tuple[int, ...]: return (x,) * n if isinstance(x, int) else tuple(x)

# ## The functional forms of layers
# What nn's layers call: linear, dropout, normalizations, attention.
@tensor_methods
class TensorLayers:
  def linear(self, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`x @ weight + bias`, with weight of shape (in, out) (nn.Linear passes its weight transposed)."""
    out = self * weight if weight.ndim == 1 else self.matmul(weight)
    return out if bias is None else out + bias
  def dropout(self, p: float = 0.5) -> Tensor:
    if not (Tensor.training or TRAINING) or p == 0: return self
    if p >= 1: return self.zeros_like()
    return (Tensor.rand(self.shape, device=self.device) >= p).where(self, 0) * (1 / (1 - p))
  def layernorm(self, axis: int | tuple[int, ...] = -1, eps: float = 1e-5) -> Tensor:
    centered = self - self.mean(axis, keepdim=True)
    return centered * (centered.square().mean(axis, keepdim=True) + eps).rsqrt()
  def batchnorm(self, weight: Tensor | None, bias: Tensor | None, mean: Tensor, invstd: Tensor) -> Tensor:
    """Normalize over channels (axis 1) with the given statistics."""
    shape = (1, -1) + (1,) * (self.ndim - 2)
    x = self - mean.reshape(shape)
    scale = invstd if weight is None else invstd * weight
    x = x * scale.reshape(shape)
    return x if bias is None else x + bias.reshape(shape)
  def normalize(self, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """self divided by its p-norm along dim (at least eps), as torch.nn.functional.normalize."""
    return self / (self.abs() ** p).sum(dim, keepdim=True).pow(1 / p).maximum(eps)
  def scaled_dot_product_attention(self, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                   dropout_p: float = 0.0, is_causal: bool = False, enable_gqa: bool = False) -> Tensor:
    """softmax(q @ k^T / sqrt(d) + mask) @ v, where self is q; a bool mask keeps the True positions. With
    `enable_gqa`, each key and value head serves a group of query heads (axis -3)."""
    if is_causal and attn_mask is not None: raise ArgumentError("scaled_dot_product_attention: give attn_mask or is_causal, not both")
    if enable_gqa:
      if self.shape[-3] % key.shape[-3]:
        raise ArgumentError(f"scaled_dot_product_attention: {self.shape[-3]} query heads do not group into {key.shape[-3]} key heads")
      key, value = key.repeat_interleave(self.shape[-3] // key.shape[-3], -3), value.repeat_interleave(self.shape[-3] // value.shape[-3], -3)
    scores = self @ key.transpose(-2, -1) / math.sqrt(self.shape[-1])
    if is_causal: attn_mask = Tensor.ones(scores.shape[-2], scores.shape[-1], device=self.device, dtype=dtypes.bool).tril()
    if attn_mask is not None: scores = attn_mask.where(scores, float("-inf")) if attn_mask.dtype == dtypes.bool else scores + attn_mask
    return scores.softmax(-1).dropout(dropout_p) @ value

# ## Losses
# Log-softmax and a one-hot mask, summed; the reduction is picked by name.
@tensor_methods
class TensorLosses:
  def one_hot(self, num_classes: int = -1) -> Tensor:
    """(..., num_classes) of 0 and 1; -1 takes the classes from the largest label (which reads it). A label outside
    [0, num_classes) gives a row of zeros."""
    if self.dtype.is_float or self.dtype == dtypes.bool: raise ArgumentTypeError(f"one_hot needs int labels, got {self.dtype}")
    if num_classes == -1: num_classes = int(self.max().item()) + 1 if self.numel() else 0
    return (self.unsqueeze(-1) == Tensor.arange(num_classes, device=self.device)).cast(dtypes.int32)
  def sparse_categorical_crossentropy(self, Y: Tensor, ignore_index: int = -1, label_smoothing: float = 0.0, reduction: str = "mean") -> Tensor:
    """Cross entropy of logits (..., classes) against int labels Y (...); labels equal to ignore_index don't count,
    and a label outside [0, classes) adds only its smoothing term."""
    log_probs = self.log_softmax(-1)
    keep = (Y != ignore_index).unsqueeze(-1)
    picked = (Y.unsqueeze(-1) == Tensor.arange(self.shape[-1], device=self.device)) & keep
    loss = -(1 - label_smoothing) * picked.where(log_probs, 0).sum(-1) - label_smoothing * keep.where(log_probs, 0).mean(-1)
    return loss.sum() / keep.sum().maximum(1) if reduction == "mean" else _reduction(loss, reduction)
  def cross_entropy(self, Y: Tensor, reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross entropy of logits (N, C, ...) against class indices (N, ...) or probabilities (N, C, ...), as PyTorch's;
    an index outside [0, C) matches no class (a tensor's values are not checked)."""
    axis = 1 if self.ndim > 1 else 0
    log_probs = self.log_softmax(axis)
    if Y.dtype.is_float: target = Y
    else: target = Y.unsqueeze(axis)._one_hot_along(self.shape[axis], axis).cast(log_probs.dtype)
    if target.shape != self.shape: raise ArgumentError(f"cross_entropy: logits of shape {self.shape} and targets of shape {Y.shape} do not match")
    target = target * (1 - label_smoothing) + label_smoothing / self.shape[axis]
    return _reduction(-(target * log_probs).sum(axis), reduction)
  def nll_loss(self, Y: Tensor, weight: Tensor | None = None, ignore_index: int | None = None, reduction: str = "mean") -> Tensor:
    """Negative log likelihood of log-probabilities (N, C, ...) at class indices Y (N, ...), each weighted by its
    class's weight; the mean divides by the total weight. A label outside [0, C) picks nothing and adds 0."""
    w = Tensor.ones(Y.shape, device=self.device) if weight is None else weight[Y]
    if ignore_index is not None: w = w * (Y != ignore_index)
    nll = -self.gather(1, Y.unsqueeze(1)).squeeze(1) * w
    return nll.sum() / w.sum() if reduction == "mean" else _reduction(nll, reduction)
  def binary_crossentropy(self, Y: Tensor, reduction: str = "mean") -> Tensor:
    """Binary cross entropy of probabilities (self) against targets Y."""
    return _reduction(-(Y * self.clip(1e-12, None).log() + (1 - Y) * (1 - self).clip(1e-12, None).log()), reduction)
  def binary_crossentropy_logits(self, Y: Tensor, reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """Binary cross entropy of logits, through logsigmoid so nothing overflows; `pos_weight` scales the positive term."""
    return _reduction(-((1 if pos_weight is None else pos_weight) * Y * self.logsigmoid() + (1 - Y) * (-self).logsigmoid()), reduction)

def _reduction(loss: Tensor, reduction: str) -> Tensor:
  if reduction not in ("mean", "sum", "none"): raise ArgumentError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
  return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss

# # 17. nn
#
# Layers, optimizers and saving are thin: a layer is a plain class holding
# Tensors and a `__call__`; there is no Module base class, and parameters are
# found by walking an object's attributes (`get_parameters`). This is
# tinygrad's style, and its names: code written for `tinygrad.nn` works with
# `tiny.nn`.
#
# ## Layers
#
# Initialization follows PyTorch's defaults (uniform in +-1/sqrt(fan_in)), so
# models train the way their authors expect.

def _uniform_init(shape: tuple[int, ...], fan_in: int) -> Tensor:
  bound = 1 / math.sqrt(max(fan_in, 1))
  weight = Tensor.uniform(*shape, low=-bound, high=bound)
  weight.requires_grad = True  # a parameter: backward() fills its .grad
  return weight

class Linear:
  def __init__(self, in_features: int, out_features: int, bias: bool = True):
    self.weight = _uniform_init((out_features, in_features), in_features)
    self.bias = _uniform_init((out_features,), in_features) if bias else None
  def __call__(self, x: Tensor) -> Tensor: return x.linear(self.weight.transpose(), self.bias)

class Conv2d:
  def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...], stride: int = 1, padding: int = 0,
               dilation: int = 1, groups: int = 1, bias: bool = True):
    self.kernel_size = _spatial(kernel_size, 2)
    self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
    fan_in = in_channels // groups * prod(self.kernel_size)
    self.weight = _uniform_init((out_channels, in_channels // groups, *self.kernel_size), fan_in)
    self.bias = _uniform_init((out_channels,), fan_in) if bias else None
  def __call__(self, x: Tensor) -> Tensor: return x.conv2d(self.weight, self.bias, self.groups, self.stride, self.dilation, self.padding)

class ConvTranspose2d(Conv2d):
  def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, ...], stride: int = 1, padding: int = 0,
               output_padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = True):
    # PyTorch's weight, (in, out/groups, *kernel), and its fan-in, are a Conv2d's from out to in; the bias is per output
    super().__init__(out_channels, in_channels, kernel_size, stride, padding, dilation, groups, bias=False)
    self.output_padding = output_padding
    self.bias = _uniform_init((out_channels,), self.weight.shape[1] * prod(self.kernel_size)) if bias else None
  def __call__(self, x: Tensor) -> Tensor:
    return x.conv_transpose2d(self.weight, self.bias, self.groups, self.stride, self.dilation, self.padding, self.output_padding)

def Conv1d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int | str = 0, dilation: int = 1,
           groups: int = 1, bias: bool = True) -> Conv2d:
  """A Conv2d of one spatial axis: conv2d takes as many axes as the kernel has."""
  return Conv2d(in_channels, out_channels, (kernel_size,), stride, padding, dilation, groups, bias)

def ConvTranspose1d(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0, output_padding: int = 0,
                    dilation: int = 1, groups: int = 1, bias: bool = True) -> ConvTranspose2d:
  return ConvTranspose2d(in_channels, out_channels, (kernel_size,), stride, padding, output_padding, dilation, groups, bias)

# ## Normalization
#
# Each normalizes over some axes, then scales (and most also shift) by learned
# weights; BatchNorm alone keeps running statistics for evaluation.
class BatchNorm:
  """Batch normalization over axis 1. In training it uses the batch's statistics and updates running ones."""
  def __init__(self, sz: int, eps: float = 1e-5, affine: bool = True, track_running_stats: bool = True, momentum: float = 0.1):
    self.eps, self.momentum, self.track_running_stats = eps, momentum, track_running_stats
    self.weight, self.bias = (Tensor.ones(sz, requires_grad=True), Tensor.zeros(sz, requires_grad=True)) if affine else (None, None)
    self.running_mean, self.running_var = Tensor.zeros(sz).contiguous(), Tensor.ones(sz).contiguous()
    self.num_batches_tracked = Tensor.zeros(1, dtype=dtypes.int32).contiguous()
    for t in (self.running_mean, self.running_var, self.num_batches_tracked): t.requires_grad = False  # statistics, not parameters
  def __call__(self, x: Tensor) -> Tensor:
    axes = tuple(i for i in range(x.ndim) if i != 1)
    if Tensor.training or TRAINING or not self.track_running_stats:
      mean = x.mean(axes)
      var = (x - mean.reshape((1, -1) + (1,) * (x.ndim - 2))).square().mean(axes)
      if self.track_running_stats:
        n = x.numel() / x.shape[1]
        self.running_mean.assign((1 - self.momentum) * self.running_mean + self.momentum * mean.detach())
        self.running_var.assign((1 - self.momentum) * self.running_var + self.momentum * var.detach() * n / max(n - 1, 1))
        self.num_batches_tracked.assign(self.num_batches_tracked + 1)
    else: mean, var = self.running_mean, self.running_var
    return x.batchnorm(self.weight, self.bias, mean, (var + self.eps).rsqrt())
BatchNorm2d = BatchNorm

class LayerNorm:
  def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True):
    self.shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    self.eps = eps
    self.weight, self.bias = (None, None) if not elementwise_affine else \
      (Tensor.ones(*self.shape, requires_grad=True), Tensor.zeros(*self.shape, requires_grad=True))
  def __call__(self, x: Tensor) -> Tensor:
    if x.shape[-len(self.shape):] != self.shape: raise ValueError(f"LayerNorm{self.shape} got input of shape {x.shape}")
    x = x.layernorm(tuple(range(-len(self.shape), 0)), self.eps)
    return x if self.weight is None else x * self.weight + self.bias

class RMSNorm:
  def __init__(self, dim: int, eps: float = 1e-6):
    self.eps, self.weight = eps, Tensor.ones(dim, requires_grad=True)
  def __call__(self, x: Tensor) -> Tensor: return x * (x.square().mean(-1, keepdim=True) + self.eps).rsqrt() * self.weight

class GroupNorm:
  """Normalize each group of channels (axis 1) of each sample over the group and all spatial axes."""
  def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True):
    if num_channels % num_groups: raise ArgumentError(f"GroupNorm: {num_channels} channels do not divide into {num_groups} groups")
    self.num_groups, self.eps = num_groups, eps
    self.weight = Tensor.ones(num_channels, requires_grad=True) if affine else None
    self.bias = Tensor.zeros(num_channels, requires_grad=True) if affine else None
  def __call__(self, x: Tensor) -> Tensor:
    x = x.reshape(x.shape[0], self.num_groups, -1).layernorm(eps=self.eps).reshape(x.shape)
    if self.weight is None: return x
    shape = (1, -1) + (1,) * (x.ndim - 2)  # one weight and bias per channel
    return x * self.weight.reshape(shape) + self.bias.reshape(shape)

class InstanceNorm(GroupNorm):
  """GroupNorm with one group per channel."""
  def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True): super().__init__(num_features, num_features, eps, affine)

class LayerNorm2d(LayerNorm):
  """LayerNorm over the channels (axis 1) of (batch, channels, height, width)."""
  def __call__(self, x: Tensor) -> Tensor: return super().__call__(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

# ## Recurrence and embeddings
#
# An LSTM cell is four gates computed by two matrix multiplies; an embedding
# is a lookup of rows of its weight.
class LSTMCell:
  """One step of an LSTM: from input x and state (h, c), the new (h, c). Gates and initialization as PyTorch's."""
  def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
    self.weight_ih = _uniform_init((4 * hidden_size, input_size), hidden_size)
    self.weight_hh = _uniform_init((4 * hidden_size, hidden_size), hidden_size)
    self.bias_ih = _uniform_init((4 * hidden_size,), hidden_size) if bias else None
    self.bias_hh = _uniform_init((4 * hidden_size,), hidden_size) if bias else None
  def __call__(self, x: Tensor, hc: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    h, c = hc if hc is not None else (Tensor.zeros(x.shape[0], self.weight_hh.shape[1], device=x.device),) * 2
    i, f, g, o = (x.linear(self.weight_ih.T, self.bias_ih) + h.linear(self.weight_hh.T, self.bias_hh)).chunk(4, dim=1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c

class Embedding:
  def __init__(self, vocab_size: int, embed_size: int):
    self.vocab_size, self.weight = vocab_size, Tensor.randn(vocab_size, embed_size, requires_grad=True)
  def __call__(self, idx: Tensor) -> Tensor: return self.weight[idx]

# ## Finding and saving parameters
#
# A model's state is every Tensor reachable through its attributes, lists and
# dicts, named by the path to it (`layers.0.weight`). `safe_save` writes it in
# the safetensors format, which any safetensors reader can open: 8 bytes of
# little-endian header length, a JSON header giving each tensor's dtype,
# shape and byte range, then the raw little-endian data.

def get_state_dict(obj: Any, prefix: str = "") -> dict[str, Tensor]:
  if isinstance(obj, Tensor): return {prefix.rstrip("."): obj}
  if isinstance(obj, (list, tuple)): obj = dict(enumerate(obj))
  if not isinstance(obj, dict): obj = vars(obj) if hasattr(obj, "__dict__") else {}  # an object's attributes; a number holds no tensor
  return {name: t for k, v in obj.items() for name, t in get_state_dict(v, f"{prefix}{k}.").items()}

def get_parameters(obj: Any) -> list[Tensor]: return list(get_state_dict(obj).values())

def load_state_dict(model: Any, state_dict: dict[str, Tensor], strict: bool = True) -> None:
  own = get_state_dict(model)
  if strict and (missing := sorted(set(own) - set(state_dict))): raise KeyError(f"state dict is missing {missing}")
  for name, t in own.items():
    if name not in state_dict: continue
    value = state_dict[name]
    if value.shape != t.shape: raise ValueError(f"{name}: model has shape {t.shape}, state dict has {value.shape}")
    t.assign(value.to(t.device).cast(t.dtype)).realize()

_safetensors_dtypes = {dtypes.bool: "BOOL", dtypes.int8: "I8", dtypes.uint8: "U8", dtypes.int16: "I16", dtypes.uint16: "U16",
                       dtypes.int32: "I32", dtypes.uint32: "U32", dtypes.int64: "I64", dtypes.uint64: "U64",
                       dtypes.float16: "F16", dtypes.float32: "F32", dtypes.float64: "F64"}

def safe_save(tensors: dict[str, Tensor], fn: str, metadata: dict[str, str] | None = None) -> None:
  header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
  offset, blobs = 0, []
  for name, t in tensors.items():
    data = bytes(t._bytes()) if sys.byteorder == "little" else t.numpy().astype(f"<{t.numpy().dtype.str[1:]}").tobytes()
    header[name] = {"dtype": _safetensors_dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
  text = json.dumps(header, separators=(",", ":")).encode()
  text += b" " * (-len(text) % 8)  # pad so the data starts 8-byte aligned
  with open(fn, "wb") as f: f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

def safe_load(fn: str, device: str | None = None) -> dict[str, Tensor]:
  with open(fn, "rb") as f: raw = f.read()
  (n,) = struct.unpack("<Q", raw[:8])
  header = json.loads(raw[8:8 + n])
  by_name = {v: k for k, v in _safetensors_dtypes.items()}
  out = {}
  for name, info in header.items():
    if name == "__metadata__": continue
    begin, end = info["data_offsets"]
    dtype, shape = by_name[info["dtype"]], tuple(info["shape"])
    out[name] = Tensor(_buffer_from_bytes(raw[8 + n + begin:8 + n + end], dtype, shape, Device.canonicalize(device)))
  return out

# ## Optimizers
#
# An optimizer step is a set of assigns: each parameter (and each piece of
# optimizer state, such as Adam's moments) is assigned its new value, and
# `step()` realizes them all at once, so the whole update (and the backward
# pass it depends on) is scheduled together. No global "training mode" is
# needed to call it. The learning rate is a tensor, so changing it does not
# change the kernels.

class Optimizer:
  def __init__(self, params: list[Tensor], lr: float):
    for p in params:
      if p.requires_grad is None: p.requires_grad = True
    self.params = list({id(p): p for p in params if p.requires_grad}.values())  # frozen tensors are not trained
    for p in self.params:
      if not _is_stored(p.uop): p.realize()
    self.lr = Tensor([lr], device=self.params[0].device if self.params else None)
  def zero_grad(self) -> None:
    for p in self.params: p.grad = None
  def step(self) -> None:  # realizes pending assigns too (BatchNorm statistics)
    Tensor.realize(*self.schedule_step(), *[t for t in list(_tensors.values()) if t.uop.op is Ops.ASSIGN])
  def schedule_step(self) -> list[Tensor]:
    """Assign every update (lazily) and return the tensors to realize."""
    missing = [i for i, p in enumerate(self.params) if p.grad is None]
    if missing: raise RuntimeError(f"parameters {missing} have no gradient: call backward() on a loss that depends on them")
    return self._update()
  def _update(self) -> list[Tensor]: raise NotImplementedError
  def _state(self) -> list[Tensor]: return [Tensor.zeros(p.shape, device=p.device, dtype=p.dtype).contiguous().realize() for p in self.params]

class SGD(Optimizer):
  def __init__(self, params: list[Tensor], lr: float = 0.001, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
    super().__init__(params, lr)
    self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov
    self.buffers = self._state() if momentum else []
  def _update(self) -> list[Tensor]:
    for i, p in enumerate(self.params):
      g = p.grad + self.weight_decay * p.detach() if self.weight_decay else p.grad
      if self.momentum:
        b = self.buffers[i].assign(self.momentum * self.buffers[i] + g)
        g = g + self.momentum * b if self.nesterov else b
      p.assign(p.detach() - self.lr * g)
    return self.params + self.buffers

class Adam(Optimizer):
  """Adam; with `decoupled=True` (AdamW) weight decay shrinks the weights directly instead of joining the gradient."""
  def __init__(self, params: list[Tensor], lr: float = 0.001, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
               weight_decay: float = 0.0, decoupled: bool = False):
    super().__init__(params, lr)
    self.b1, self.b2, self.eps, self.weight_decay, self.decoupled = b1, b2, eps, weight_decay, decoupled
    self.m, self.v = self._state(), self._state()
    self.b1_t, self.b2_t = Tensor([1.0], device=self.lr.device), Tensor([1.0], device=self.lr.device)
  def _update(self) -> list[Tensor]:
    self.b1_t.assign(self.b1_t * self.b1)
    self.b2_t.assign(self.b2_t * self.b2)
    for p, m, v in zip(self.params, self.m, self.v):
      g = p.grad if self.decoupled or not self.weight_decay else p.grad + self.weight_decay * p.detach()
      m.assign(self.b1 * m + (1 - self.b1) * g)
      v.assign(self.b2 * v + (1 - self.b2) * g.square())
      update = (m / (1 - self.b1_t)) / ((v / (1 - self.b2_t)).sqrt() + self.eps)
      if self.decoupled and self.weight_decay: update = update + self.weight_decay * p.detach()
      p.assign(p.detach() - self.lr * self._scale(p.detach(), update))
    return self.params + self.m + self.v + [self.b1_t, self.b2_t]

  def _scale(self, p: Tensor, update: Tensor) -> Tensor: return update

class LAMB(Adam):
  """Adam (weight decay joining the update) whose step for each parameter is scaled by the trust ratio
  |p| / |update| (You et al., 2019), so that large batches can take large learning rates."""
  def __init__(self, params: list[Tensor], lr: float = 0.001, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6, weight_decay: float = 0.0):
    super().__init__(params, lr, b1, b2, eps, weight_decay, decoupled=True)
  def _scale(self, p: Tensor, update: Tensor) -> Tensor:
    p_norm, update_norm = p.square().sum().sqrt(), update.square().sum().sqrt()
    return ((p_norm > 0) & (update_norm > 0)).where(p_norm / update_norm, 1.0) * update

def AdamW(params: list[Tensor], lr: float = 0.001, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.01) -> Adam:
  return Adam(params, lr, b1, b2, eps, weight_decay, decoupled=True)

# ## Datasets
#
# `mnist(folder)` reads the four standard MNIST files (IDX format, gzipped or
# not) that a user has downloaded: a big-endian header of dimension sizes,
# then unsigned bytes. tiny downloads nothing.

def _read_idx(path: pathlib.Path) -> Tensor:
  raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
  if raw[:2] != b"\0\0" or raw[2] != 0x08: raise ValueError(f"{path} is not an IDX file of unsigned bytes")
  ndim = raw[3]
  shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
  if len(raw) != 4 + 4 * ndim + prod(shape):
    raise ValueError(f"{path} has {len(raw) - 4 - 4 * ndim} bytes of data, its IDX header promises {prod(shape)} (shape {shape})")
  return Tensor(_buffer_from_bytes(raw[4 + 4 * ndim:], dtypes.uint8, shape, Device.DEFAULT))

def mnist(folder: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
  """X_train (60000, 1, 28, 28), Y_train, X_test, Y_test from the IDX files in `folder`, as uint8 tensors."""
  def find(stem: str) -> pathlib.Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
      if (path := pathlib.Path(folder) / name).exists(): return path
    raise FileNotFoundError(f"no {stem}[.gz] in {folder}")
  X_train, Y_train = _read_idx(find("train-images-idx3-ubyte")), _read_idx(find("train-labels-idx1-ubyte"))
  X_test, Y_test = _read_idx(find("t10k-images-idx3-ubyte")), _read_idx(find("t10k-labels-idx1-ubyte"))
  return X_train.reshape(-1, 1, *X_train.shape[1:]), Y_train, X_test.reshape(-1, 1, *X_test.shape[1:]), Y_test

# `tiny.nn`, `tiny.nn.optim`, `tiny.nn.state` and `tiny.datasets` are views
# of this file under tinygrad's module names, so `from tiny.nn.optim import
# Adam` works as `from tinygrad.nn.optim import Adam` does.
def _namespace(name: str, **members: Any) -> types.ModuleType:
  module = types.ModuleType(f"{__name__}.{name}")
  module.__dict__.update(members)
  sys.modules[module.__name__] = module
  return module

optim = _namespace("nn.optim", Optimizer=Optimizer, SGD=SGD, Adam=Adam, AdamW=AdamW, LAMB=LAMB)
state = _namespace("nn.state", get_state_dict=get_state_dict, get_parameters=get_parameters, load_state_dict=load_state_dict,
                   safe_save=safe_save, safe_load=safe_load)
nn = _namespace("nn", Linear=Linear, Conv1d=Conv1d, Conv2d=Conv2d, ConvTranspose1d=ConvTranspose1d, ConvTranspose2d=ConvTranspose2d,
                BatchNorm=BatchNorm, BatchNorm2d=BatchNorm2d, GroupNorm=GroupNorm, InstanceNorm=InstanceNorm, LayerNorm=LayerNorm,
                LayerNorm2d=LayerNorm2d, RMSNorm=RMSNorm, LSTMCell=LSTMCell, Embedding=Embedding, optim=optim, state=state)
datasets = _namespace("datasets", mnist=mnist)

# # 18. Seeing inside
#
# A compiler made of rewrites is easy to read one rule at a time and hard to
# follow as a whole: `(a*b).sum()` goes through every pass of chapters 9 to
# 11, and dozens of rule firings, before it becomes C. Two tools show what happened.
#
# `DEBUG` prints as it goes, and you have met its levels where they print: 1 a
# line per realize, 2 a line per kernel run, 3 the kernel's UOps and opts, 4
# its generated source, 5 the linearized program (each op with the numbers of
# its sources), each under a `=== kernel ...` heading. It answers "what ran?".
#
# `VIZ=1` answers "why does the kernel look like this?". It installs a `Tracer`
# (chapter 4) that records every named `graph_rewrite`: the graph that went in,
# every match (the UOp before, the UOp after, the rule that fired) and the graph
# that came out. Passes called from inside a rule of another pass are recorded
# as its children, and the `@traced` stages group the passes into realizes and
# kernels; a kernel also keeps its generated source. At exit the record becomes
# one HTML page: pick a pass, see its graph, step through the matches one at a
# time with the changed nodes highlighted and the rule's source beside them.
# Each group names the line of your program that started it, a filter finds
# groups by kernel name or line, and a legend says what colours, outlines and
# folded labels mean. `VIZ=text` prints the same record as a compact diff.
#
# Three choices keep it small and harmless:
#
# - The record holds *numbers*, not UOps. Each UOp seen gets an id and one row
#   (op, dtype, source ids, arg, shape) in a node table, and events refer to
#   ids. Holding the UOps would keep every buffer they name alive for the life
#   of the program; the ids are kept in a weak dictionary instead, so a UOp
#   seen twice is written once while it lives (and one that died and was
#   built again is merged with its old row when the page is written).
# - Only the matches are recorded, not the graph after each one. The page
#   rebuilds the graph at step k itself: it replays the first k matches on the
#   input graph the way `graph_rewrite` applies rules (sources first, a result
#   rewritten again), treating the recorded matches as a table of rules. This
#   is exact because UOps are hash-consed: a rebuilt node with the same fields
#   is the same node, so it finds the same id in the table.
# - The page is a string in this file, with its own layout code (longest-path
#   layers, barycenter ordering, SVG). A vendored `tiny.py` alone can show it,
#   with no network and no other files.
#
# What tinygrad's VIZ does beyond this: a profiler timeline of rewrites and
# kernel runs, a diff of the rendered UOp at each match, the timing of each
# rule, views of the disassembly and of hardware counters, and a command-line
# browser of the same record.

VIZ_PORT = ContextVar("VIZ_PORT", 8000, "the port VIZ=1 serves its page on, when stdout is a terminal")

# ## How a node is shown
#
# Nodes are colored by what kind of thing they are, so the shape of a kernel
# (loads feeding arithmetic feeding an accumulator) shows before any label is
# read. The page maps each kind to a color.
_KINDS = {"buffer": {Ops.BUFFER, Ops.PARAM, Ops.DEVICE, Ops.COPY}, "memory": {Ops.AT, Ops.INDEX, Ops.LOAD, Ops.STORE},
          "movement": GroupOp.Movement, "reduce": {Ops.REDUCE_AXIS, Ops.REDUCE, Ops.DEFINE_ACC, Ops.ACCUMULATE},
          "loop": {Ops.RANGE, Ops.END}, "const": {Ops.CONST, Ops.DEFINE_VAR, Ops.ARANGE}, "alu": GroupOp.Elementwise}
_KIND_OF = {op: kind for kind, ops in _KINDS.items() for op in ops}

def _shape_text(u: UOp) -> str:
  try: return "" if u.shape is None else str(u.shape)
  except Exception: return ""  # a malformed graph has no shape; the viewer still shows it

# The compact one-line form of a graph that `VIZ=text` prints: loads, loops
# and constants by short names, everything else as `OP(sources)`, cut off
# below a few levels. The page's step list shows the same form, made by its
# own copy of this function, for the pass on screen only.
def _expr(nodes: list[list[Any]], i: int, depth: int = 3) -> str:
  op, _, srcs, arg = nodes[i][:4]
  if op == "CONST": return arg
  if op in ("RANGE", "PARAM", "BUFFER"): return {"RANGE": "r", "PARAM": "data", "BUFFER": "buf"}[op] + arg.strip("()").split(",")[0]
  inner = "…" if depth == 0 else ", ".join([_expr(nodes, s, depth - 1) for s in srcs[:4]] + ["…"] * (len(srcs) > 4))
  return op + ("" if arg == "None" else f"[{arg}]") + (f"({inner})" if srcs else "")

# ## The tracer
#
# A group names the line of the user's program that started it (the first
# frame outside tiny.py and the standard library), so a reader can find their
# own code among the passes.
def _user_line() -> str:
  frame, stdlib = sys._getframe(1), os.path.dirname(contextlib.__file__)
  while frame is not None and (frame.f_code.co_filename == __file__ or frame.f_code.co_filename.startswith(stdlib)): frame = frame.f_back
  if frame is None: return ""
  return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}: {linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()}"

def _short(text: str, width: int = 110) -> str: return text if len(text) <= width else text[:width - 1] + "…"

class VizTracer(Tracer):
  def __init__(self) -> None:
    self.nodes: list[list[Any]] = []  # id -> [op, dtype, source ids, arg, shape, kind]
    self.ids: weakref.WeakKeyDictionary[UOp, int] = weakref.WeakKeyDictionary()
    self.rules: list[dict[str, Any]] = []
    self.rule_ids: dict[tuple[UPat, Any], int] = {}
    self.groups: list[dict[str, Any]] = []
    self.passes: list[dict[str, Any]] = []
    self.open_groups: list[tuple[int, int, bool]] = []  # (group, how many passes were open when it opened, implicit?)
    self.open_passes: list[tuple[int, PatternMatcher]] = []
    self.counts: dict[str, int] = {}

  def node(self, u: UOp) -> int:
    """The id of u, giving ids to u and every not yet numbered UOp below it (sources first)."""
    if (i := self.ids.get(u)) is not None: return i
    for n in u.toposort(lambda n: n not in self.ids):
      self.ids[n] = len(self.nodes)
      self.nodes.append([n.op.name, n.dtype.name, [self.ids[s] for s in n.src], repr(n.arg), _shape_text(n), _KIND_OF.get(n.op, "other")])
    return self.ids[u]

  # ### Groups
  # A group is a realize or a kernel (from `@traced`), nested like the calls
  # that made them. A pass run outside any group, such as a `simplify()` you
  # call yourself, gets a group of its own. A kernel found in the program
  # cache runs no passes, and its empty group is dropped.
  def open_group(self, name: str, implicit: bool) -> int:
    parent = self.open_groups[-1][0] if self.open_groups else -1
    self.groups.append({"name": name, "parent": parent, "passes": [], "src": None, "where": _user_line()})
    self.open_groups.append((len(self.groups) - 1, len(self.open_passes), implicit))
    return len(self.groups) - 1

  @contextlib.contextmanager
  def group(self, kind: str) -> Iterator[None]:
    self.counts[kind] = self.counts.get(kind, 0) + 1
    g = self.open_group(f"{kind} {self.counts[kind]}", False)
    try: yield
    finally:
      _, base, _ = self.open_groups.pop()
      del self.open_passes[base:]  # passes left open by an exception
      kernels = sum(1 for other in self.groups[g + 1:] if other["parent"] == g)
      if kernels: self.groups[g]["name"] += f" · {kernels} kernel{'s' * (kernels > 1)}"
      if g == len(self.groups) - 1 and not self.groups[g]["passes"]: self.groups.pop()

  def kernel(self, name: str, src: str) -> None:
    self.groups[self.open_groups[-1][0]].update(name=f"kernel {name}", src=src)

  # ### Passes and matches
  def begin(self, name: str, root: UOp, pm: PatternMatcher) -> None:
    if not self.open_groups: self.open_group(name, True)
    g, base, _ = self.open_groups[-1]
    self.passes.append({"name": name, "group": g, "depth": len(self.open_passes) - base, "root": self.node(root), "out": None, "matches": []})
    self.groups[g]["passes"].append(len(self.passes) - 1)
    self.open_passes.append((len(self.passes) - 1, pm))

  def match(self, before: UOp, after: UOp, rule: UPat) -> None:
    p, pm = self.open_passes[-1]
    self.passes[p]["matches"].append([self.node(before), self.node(after), self.rule(rule, pm)])

  def end(self, result: UOp) -> None:
    p, _ = self.open_passes.pop()
    self.passes[p]["out"] = self.node(result)
    if self.open_groups and self.open_groups[-1][2] and len(self.open_passes) == self.open_groups[-1][1]: self.open_groups.pop()

  def rule(self, pat: UPat, pm: PatternMatcher) -> int:
    """The id of a rule: where its pattern was written, that line's text, and its function, read now while the files are at hand."""
    fn = next(f for p, f in pm.patterns if p is pat)  # a scan, but only while recording
    if (key := (pat, fn)) not in self.rule_ids:
      code = getattr(fn, "__code__", None)
      try: fn_lines, fn_line = inspect.getsourcelines(fn)
      except (OSError, TypeError): fn_lines, fn_line = [], 0
      same_line = fn.__name__ == "<lambda>" and fn_line == pat.location[1] and len(fn_lines) == 1
      self.rule_ids[key] = len(self.rules)
      name = f"{os.path.basename(pat.location[0])}:{pat.location[1]}" if fn.__name__ == "<lambda>" else fn.__name__  # a lambda by its place
      self.rules.append({"file": pat.location[0], "line": pat.location[1], "text": linecache.getline(*pat.location).strip(),
                         "fn": name, "fn_file": code.co_filename if code else "", "fn_line": fn_line,
                         "fn_src": "" if same_line else "".join(fn_lines[:40])})
    return self.rule_ids[key]

  # ### Output
  def data(self) -> dict[str, Any]:
    """The whole record as plain data: nodes, rules, groups, and passes whose matches are (before, after, rule)."""
    # A UOp that died and was built again later got a second id. Equal rows become one here, so that equal
    # nodes have equal ids, as equal UOps are one object: the page's replay relies on it.
    same: dict[str, int] = {}
    new_id: list[int] = []
    nodes: list[list[Any]] = []
    for op, dtype, srcs, *rest in self.nodes:
      row = [op, dtype, [new_id[s] for s in srcs], *rest]
      key = repr(row[:4])
      if key not in same:
        same[key] = len(nodes)
        nodes.append(row)
      new_id.append(same[key])
    passes = [{**p, "root": new_id[p["root"]], "out": None if p["out"] is None else new_id[p["out"]],
               "matches": [[new_id[b], new_id[a], r] for b, a, r in p["matches"]]} for p in self.passes]
    return {"nodes": nodes, "rules": self.rules, "groups": self.groups, "passes": passes}

  def text(self) -> str:
    data, lines = self.data(), []
    for g in data["groups"]:
      indent, parent = "", g["parent"]
      while parent != -1: indent, parent = indent + "  ", data["groups"][parent]["parent"]
      lines.append(f"{indent}{g['name']}" + (f"    [{g['where']}]" if g["where"] else ""))
      for p in (data["passes"][i] for i in g["passes"]):
        pad = indent + "  " * (p["depth"] + 1)
        lines.append(f"{pad}{p['name']}: {len(p['matches'])} match{'es' * (len(p['matches']) != 1)}")
        for k, (b, a, r) in enumerate(p["matches"], 1):
          rule, before, after = data["rules"][r], _short(_expr(data["nodes"], b)), _short(_expr(data["nodes"], a))
          lines.append(f"{pad}  {k:3d} {before}\n{pad}      -> {after}    [{os.path.basename(rule['file'])}:{rule['line']} {rule['fn']}]")
    return "\n".join(lines)

  def page(self) -> str:
    # `</` is escaped so no string in the data can close the script tag that holds it
    return VIZ_PAGE.replace("__DATA__", json.dumps(self.data()).replace("</", "<\\/"))

# ## Writing and serving the page
#
# At exit the record is printed (`VIZ=text`) or written to a page, and its
# path printed: `tiny-viz.html` in the current folder, where the user looks
# first, or the path VIZ names when it ends in `.html`. When a person is watching (stdout is a
# terminal) the page is also served on 127.0.0.1, so a browser, or an ssh
# tunnel from the machine in front of you, opens it by URL; Ctrl-C stops the
# server and ends the program.
def serve(page: bytes, port: int) -> None:
  class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
      self.send_response(200)
      self.send_header("Content-Type", "text/html; charset=utf-8")
      self.end_headers()
      self.wfile.write(page)
    def log_message(self, *args: Any) -> None: pass
  try: server = http.server.HTTPServer(("127.0.0.1", port), Handler)
  except OSError as e:
    print(f"VIZ: cannot serve on port {port} ({e}); set VIZ_PORT to another port")
    return
  print(f"VIZ: serving http://127.0.0.1:{port} (Ctrl-C to stop)")
  with server:
    try: server.serve_forever()
    except KeyboardInterrupt: pass

def _viz_at_exit(viz: VizTracer) -> None:
  if VIZ.value == "text":
    print(viz.text())
    return
  page, path = viz.page(), pathlib.Path(VIZ.value if VIZ.value.endswith(".html") else "tiny-viz.html").resolve()
  path.write_text(page, encoding="utf-8")
  print(f"VIZ: {len(viz.passes)} passes in {len(viz.groups)} groups written to {path}")
  if sys.stdout.isatty(): serve(page.encode(), VIZ_PORT.value)

# ## The page
#
# The page. Its code (HTML, CSS and JavaScript) has a line budget of its own
# in LINECOUNT, apart from tiny.py's. It reads the record from the JSON in its
# `data` script, and its state from the URL hash (`#p=3&s=2`: pass 3, step 2),
# so a link or a reload shows the same step.
VIZ_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tiny VIZ</title>
<style>
* { box-sizing: border-box; }
body { margin: 0; height: 100vh; display: grid; grid-template-columns: 270px minmax(0, 1fr) 420px; }
body { font: 13px system-ui, sans-serif; color: #222; background: #fafafa; }
nav, aside { overflow: auto; background: #fff; }
nav { border-right: 1px solid #ddd; padding: 4px 0; }
aside { border-left: 1px solid #ddd; padding: 4px 12px; }
nav div { padding: 3px 8px; cursor: pointer; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
nav .group { font-weight: 600; margin-top: 2px; }
nav .group.open { background: #eef2ff; }
nav .where { font: 11px ui-monospace, SFMono-Regular, Menlo, monospace; color: #666; font-weight: 400; }
nav .cur { background: #2563eb; color: #fff; }
nav .count { color: #888; font-size: 11px; }
nav .cur .count { color: #dbe4ff; }
main { display: flex; flex-direction: column; min-height: 0; }
header { padding: 6px 10px; border-bottom: 1px solid #ddd; background: #fff; display: flex; gap: 8px; align-items: center; white-space: nowrap; }
header input { flex: 1; min-width: 80px; }
#warn { color: #b91c1c; }
svg { flex: 1; min-height: 0; cursor: grab; user-select: none; }
.node rect { stroke: #777; stroke-width: 1; }
.node text { font: 11px ui-monospace, SFMono-Regular, Menlo, monospace; fill: #222; }
.node text.op { font-weight: bold; }
.node.new rect { stroke: #ea580c; stroke-width: 3; }
.node.hit rect { stroke: #dc2626; stroke-width: 4; }
.edge { fill: none; stroke: #9ca3af; stroke-width: 1.2; }
.k-buffer rect { fill: #cfe3ff; } .k-memory rect { fill: #ffe3a8; } .k-movement rect { fill: #d4f0c8; } .k-reduce rect { fill: #f8c6c6; }
.k-loop rect { fill: #e4d2f8; } .k-const rect { fill: #ececec; } .k-alu rect { fill: #fff; } .k-other rect { fill: #fdf4c8; }
h3 { margin: 12px 0 4px; font-size: 11px; letter-spacing: .05em; text-transform: uppercase; color: #666; }
pre { background: #f4f4f5; padding: 6px 8px; margin: 4px 0; overflow: auto; font: 11.5px ui-monospace, SFMono-Regular, Menlo, monospace; }
pre.wrap { white-space: pre-wrap; overflow-wrap: anywhere; }
.loc { color: #1d4ed8; font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
#steps { margin: 0; padding: 0; list-style: none; max-height: 34vh; overflow: auto; border: 1px solid #eee; }
#steps li { padding: 2px 6px; cursor: pointer; font: 11.5px ui-monospace, SFMono-Regular, Menlo, monospace; }
#steps li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#steps li.cur { background: #2563eb; color: #fff; }
</style></head><body>
<nav><input id="filter" placeholder="filter: kernel name, file:line, code" style="width:calc(100% - 16px);margin:4px 8px">
  <label style="display:block;padding:2px 8px"><input type="checkbox" id="quiet"> hide groups with no matches</label><div id="groups"></div></nav>
<main>
  <header><b id="title"></b><button id="prev" title="previous step (←)">◀</button><input id="slider" type="range" min="0" value="0">
    <button id="next" title="next step (→)">▶</button><span id="stepinfo"></span><span id="warn"></span></header>
  <svg id="graph"><defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" orient="auto">
    <path d="M0,0L8,4L0,8z" fill="#9ca3af"/></marker></defs><g id="view"></g></svg>
</main>
<aside><h3>Match</h3><div id="match"></div><h3>Steps</h3><ol id="steps"></ol>
  <div id="kernel"><h3>Kernel source</h3><pre id="src" class="wrap"></pre></div>
  <details id="legend" open><summary><h3 style="display:inline">Legend</h3></summary><div class="graph-legend"></div>
  <p>An <b>outline</b>: orange, a node this step made; red, the node the rule returned. A node shows its op, dtype and shape,
    then its arg. Constants and devices are not drawn as nodes but folded into their users: <code>(·, ·, True)</code> means
    the third source is the constant <code>True</code> and the others (<code>·</code>) are the drawn edges, in order.</p>
  <p><b>AT</b> is lowering's own op, never seen outside it: <code>AT(x, i, j, …)</code> is the element of <code>x</code> at one
    index per axis. Lowering pushes it down through movement ops (each turns the indices into new ones) until it reaches
    a buffer, where it becomes <code>INDEX</code> and <code>LOAD</code>.</p>
  <p>A group is a realize or a kernel; the line under it is the line of your program that started it. Groups whose passes
    matched nothing can be hidden, and the filter box keeps the groups whose name or line contains its text.</p></details></aside>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent), N = D.nodes;  // node: [op, dtype, srcs, arg, shape, kind]
const $ = (id) => document.getElementById(id), base = (path) => path.split(/[\\/]/).pop();
function el(tag, attrs, parent, text) {
  const svg = ["g", "rect", "text", "path", "title"].includes(tag) && parent && parent.namespaceURI.endsWith("svg");
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

// Hash-consing, as in tiny: a node rebuilt with the same fields is the same node, so it finds its recorded id.
const key = (op, dtype, srcs, arg) => `${op}|${dtype}|${arg}|${srcs.join(",")}`;
const byKey = new Map(N.map((n, i) => [key(n[0], n[1], n[2], n[3]), i]));
function rebuild(i, srcs) {
  if (srcs.every((s, j) => s === N[i][2][j])) return i;
  const k = key(N[i][0], N[i][1], srcs, N[i][3]);
  if (!byKey.has(k)) { byKey.set(k, N.length); N.push([N[i][0], N[i][1], srcs, ...N[i].slice(3)]); }
  return byKey.get(k);
}
function toposort(root) {  // every node reachable from root, sources first
  const order = [], seen = new Set(), stack = [[root, false]];
  while (stack.length) {
    const [n, srcsDone] = stack.pop();
    if (srcsDone) { order.push(n); continue; }
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push([n, true]);
    for (let j = N[n][2].length - 1; j >= 0; j--) if (!seen.has(N[n][2][j])) stack.push([N[n][2][j], false]);
  }
  return order;
}

// The graph after the first k matches of a pass: graph_rewrite again, in the same order, with those matches as its
// only rules. A node offered twice may have been rewritten twice differently (a rule with a context, like one that
// opens a new loop): the recorded results are used in turn. Step 0 is the input, the step after the last match the
// recorded output.
function replay(P, k) {
  if (k === 0) return P.root;
  if (k > P.matches.length) return P.out;
  const rules = new Map(), done = new Map(), active = new Set(), stack = [[P.root, 0]];
  for (const m of P.matches.slice(0, k)) rules.set(m[0], [...(rules.get(m[0]) || []), m[1]]);
  const fire = (n, r) => {  // n became r: rewrite r too, its value is n's
    if (done.has(r)) done.set(n, done.get(r));
    else if (active.has(r)) done.set(n, r);  // the pass looped (it raised): stop here
    else { active.add(n); stack.push([n, 2, r], [r, 0]); }
  };
  while (stack.length) {
    const [n, stage, r] = stack.pop();
    if (stage === 2) { done.set(n, done.get(r)); active.delete(n); }
    else if (done.has(n)) continue;
    else if (stage === 0 && rules.get(n)?.length) fire(n, rules.get(n).shift());
    else if (stage === 0) { stack.push([n, 1]); for (const s of [...N[n][2]].reverse()) if (!done.has(s)) stack.push([s, 0]); }
    else {
      const b = rebuild(n, N[n][2].map((s) => done.get(s) ?? s));
      if (rules.get(b)?.length) fire(n, rules.get(b).shift()); else { done.set(n, b); done.set(b, b); }
    }
  }
  return done.get(P.root);
}

// Layout. Constants and devices, shared by many users, would pull long edges across the whole graph: they are
// folded into their users' labels instead (`(·, 3)`: a second source that is the constant 3), unless they just
// changed. Layers count up from the root, a node one layer above its deepest user; an edge that skips layers gets a
// point on each. Each layer is then ordered by the mean position of its neighbors, sweeping down and up, and nodes
// slide toward their neighbors without overlapping.
const CH = 6.7, LH = 14, GAP_X = 16, GAP_Y = 40, cut = (s) => (s.length > 36 ? s.slice(0, 35) + "…" : s);
function label(i, folded) {
  const [op, dtype, srcs, arg, shape] = N[i], lines = [op, `${dtype === "void" ? "" : dtype} ${shape}`.trim()];
  if (arg !== "None") lines.push(cut(arg));
  if (srcs.some(folded)) lines.push(cut(`(${srcs.map((s) => (folded(s) ? N[s][3] : "·")).join(", ")})`));
  return lines.filter((l) => l);
}
function layout(root, keep) {
  const folded = (i) => (N[i][0] === "CONST" || N[i][0] === "DEVICE") && i !== root && !keep.has(i);
  const ids = toposort(root).filter((i) => !folded(i)), depth = new Map([[root, 0]]), items = [], at = new Map(), edges = [];
  for (let j = ids.length - 1; j >= 0; j--) for (const s of N[ids[j]][2]) depth.set(s, Math.max(depth.get(s) ?? 0, depth.get(ids[j]) + 1));
  const top = ids.reduce((m, i) => Math.max(m, depth.get(i)), 0), layers = Array.from({ length: top + 1 }, () => []);
  const add = (id, layer, lines) => {
    const w = lines.length ? Math.max(...lines.map((l) => l.length)) * CH + 14 : 4;
    items.push({ id, layer, lines, w, h: lines.length ? lines.length * LH + 8 : 0, up: [], down: [] });
    layers[layer].push(items.length - 1);
    return items.length - 1;
  };
  for (const i of ids) at.set(i, add(i, top - depth.get(i), label(i, folded)));
  for (const i of ids) for (const s of new Set(N[i][2].filter((s) => !folded(s)))) {
    const chain = [at.get(s)];
    for (let l = items[at.get(s)].layer + 1; l < items[at.get(i)].layer; l++) chain.push(add(-1, l, []));
    chain.push(at.get(i));
    for (let j = 1; j < chain.length; j++) { items[chain[j]].up.push(chain[j - 1]); items[chain[j - 1]].down.push(chain[j]); }
    edges.push(chain);
  }
  const x = new Float64Array(items.length), mean = (ks, dflt) => (ks.length ? ks.reduce((a, k) => a + x[k], 0) / ks.length : dflt);
  const place = () => layers.forEach((L) => L.forEach((k, j) => (x[k] = j)));
  place();
  for (let iter = 0; iter < 8; iter++) {
    const down = iter % 2 === 0, bary = new Map();
    for (const L of down ? layers : [...layers].reverse()) {
      for (const k of L) bary.set(k, mean(down ? items[k].up : items[k].down, x[k]));
      L.sort((a, b) => bary.get(a) - bary.get(b));
      L.forEach((k, j) => (x[k] = j));
    }
  }
  for (const L of layers) L.reduce((left, k) => ((x[k] = left + items[k].w / 2), left + items[k].w + GAP_X), 0);
  for (let iter = 0; iter < 12; iter++) {
    for (const L of iter % 2 ? [...layers].reverse() : layers) {  // pack left and pack right, then average: never overlaps
      const want = L.map((k) => mean(items[k].up.concat(items[k].down), x[k])), a = want.slice(), b = want.slice();
      const sep = (j) => (items[L[j - 1]].w + items[L[j]].w) / 2 + GAP_X;
      for (let j = 1; j < L.length; j++) a[j] = Math.max(want[j], a[j - 1] + sep(j));
      for (let j = L.length - 2; j >= 0; j--) b[j] = Math.min(want[j], b[j + 1] - sep(j + 1));
      L.forEach((k, j) => (x[k] = (a[j] + b[j]) / 2));
    }
  }
  const y = [];
  layers.reduce((top, L) => { const h = Math.max(0, ...L.map((k) => items[k].h)); y.push(top + h / 2); return top + h + GAP_Y; }, 0);
  return { items, edges, x, y: (k) => y[items[k].layer] };
}

// Drawing, and panning (drag) and zooming (wheel) the drawing; a double click or the f key fits it to the window.
const svg = $("graph"), T = { x: 0, y: 0, s: 1 };
const applyView = () => $("view").setAttribute("transform", `translate(${T.x},${T.y}) scale(${T.s})`);
function draw(root, fresh, hit, refit) {
  const { items, edges, x, y } = layout(root, new Set([...fresh, hit])), view = $("view");
  view.replaceChildren();
  for (const chain of edges) {
    const pts = chain.map((k, j) => [x[k], y(k) + (j === 0 ? items[k].h / 2 : j === chain.length - 1 ? -items[k].h / 2 : 0)]);
    let d = `M${pts[0][0]},${pts[0][1]}`;
    for (let j = 1; j < pts.length; j++) {
      const m = (pts[j - 1][1] + pts[j][1]) / 2;
      d += ` C${pts[j - 1][0]},${m} ${pts[j][0]},${m} ${pts[j][0]},${pts[j][1]}`;
    }
    el("path", { d, class: "edge", "marker-end": "url(#arrow)" }, view);
  }
  let box = [Infinity, Infinity, -Infinity, -Infinity];
  items.forEach((it, k) => {
    if (it.id < 0) return;
    const left = x[k] - it.w / 2, top = y(k) - it.h / 2, n = N[it.id];
    box = [Math.min(box[0], left), Math.min(box[1], top), Math.max(box[2], left + it.w), Math.max(box[3], top + it.h)];
    const cls = `node k-${n[5]}${fresh.has(it.id) ? " new" : ""}${it.id === hit ? " hit" : ""}`;
    const g = el("g", { class: cls, transform: `translate(${left},${top})`, "data-id": it.id }, view);
    el("rect", { width: it.w, height: it.h, rx: 4 }, g);
    it.lines.forEach((l, j) => el("text", { x: 7, y: 15 + j * LH, class: j ? "" : "op" }, g, l));
    el("title", {}, g, `#${it.id} ${n[0]} ${n[1]} ${n[4]}\narg: ${n[3]}\nsrc: ${n[2].map((s) => "#" + s).join(" ")}`);
  });
  if (refit) {  // fit the whole graph, but never so small that labels cannot be read: then show its top, centered
    const W = svg.clientWidth, H = svg.clientHeight, w = box[2] - box[0], h = box[3] - box[1];
    T.s = Math.max(0.6, Math.min(1.1, (W - 30) / w, (H - 30) / h));
    T.x = (W - w * T.s) / 2 - box[0] * T.s;
    T.y = Math.max(15, (H - h * T.s) / 2) - box[1] * T.s;
  }
  applyView();
  return items.filter((it) => it.id >= 0).length;
}
svg.addEventListener("wheel", (e) => {
  e.preventDefault();
  const f = Math.exp(-e.deltaY / 400), r = svg.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
  Object.assign(T, { x: mx - (mx - T.x) * f, y: my - (my - T.y) * f, s: T.s * f });
  applyView();
}, { passive: false });
let drag = null;
svg.addEventListener("mousedown", (e) => (drag = [e.clientX - T.x, e.clientY - T.y]));
addEventListener("mousemove", (e) => { if (drag) { T.x = e.clientX - drag[0]; T.y = e.clientY - drag[1]; applyView(); } });
addEventListener("mouseup", () => (drag = null));

// The side panels: groups and their passes, the match at this step, the list of steps, the kernel's source.
// A match is shown in the one-line form VIZ=text prints (tiny's _expr), made here for the open pass only: made for
// every match of a long run in Python, it was most of the page.
function expr(i, depth = 3) {
  const [op, , srcs, arg] = N[i], name = { RANGE: "r", PARAM: "data", BUFFER: "buf" }[op];
  if (op === "CONST") return arg;
  if (name) return name + arg.replace(/^[()]+|[()]+$/g, "").split(",")[0];
  const inner = depth === 0 ? "…" : srcs.slice(0, 4).map((s) => expr(s, depth - 1)).concat(srcs.length > 4 ? ["…"] : []).join(", ");
  return op + (arg === "None" ? "" : `[${arg}]`) + (srcs.length ? `(${inner})` : "");
}
const short = (text) => (text.length <= 110 ? text : text.slice(0, 109) + "…");
const depthOf = (g) => (g.parent < 0 ? 0 : 1 + depthOf(D.groups[g.parent]));
// A long run records hundreds of groups: only the open group's passes are drawn, and the filter and the checkbox
// keep the list to the groups a reader is looking for (their own line, a kernel by name).
const matchCount = (g) => g.passes.reduce((n, pi) => n + D.passes[pi].matches.length, 0);
function sidebar(p) {
  const nav = $("groups"), want = $("filter").value.toLowerCase(), quiet = $("quiet").checked;
  nav.replaceChildren();
  D.groups.forEach((g, gi) => {
    const open = gi === D.passes[p].group, pad = 8 + 14 * depthOf(g);
    if (!open && ((quiet && !matchCount(g)) || (want && !`${g.name} ${g.where}`.toLowerCase().includes(want)))) return;
    const row = el("div", { class: "group" + (open ? " open" : ""), style: `padding-left:${pad}px`, title: g.where }, nav, g.name);
    if (g.where) el("div", { class: "where" }, row, g.where);
    row.onclick = () => select(g.passes[0], 0);
    if (open) for (const pi of g.passes) {
      const P = D.passes[pi];
      const row = el("div", { class: pi === p ? "cur" : "", style: `padding-left:${pad + 14 + 14 * P.depth}px` }, nav, P.name + " ");
      el("span", { class: "count" }, row, `${P.matches.length} match${P.matches.length === 1 ? "" : "es"}`);
      row.onclick = () => select(pi, 0);
    }
  });
  nav.querySelector(".cur")?.scrollIntoView({ block: "nearest" });  // a pass opened by the link or the keys is in view
}
function stepList(P) {
  const ol = $("steps"), item = (text) => el("li", { title: text }, ol, text);
  ol.replaceChildren();
  ol.onclick = (e) => e.target.tagName === "LI" && select(cur.p, [...ol.children].indexOf(e.target));
  const drawnCount = (root) => toposort(root).filter((i) => i === root || (N[i][0] !== "CONST" && N[i][0] !== "DEVICE")).length;
  item(`input: ${drawnCount(P.root)} nodes`);  // as drawn: constants and devices are folded into labels
  P.matches.forEach((m, j) => item(`${j + 1}. ${D.rules[m[2]].fn}: ${short(expr(m[0]))} → ${short(expr(m[1]))}`));
  if (P.out !== null) item(`output: ${drawnCount(P.out)} nodes`);
}
function matchPanel(P, s) {
  const box = $("match"), m = P.matches[s - 1];
  box.replaceChildren();
  if (!m) return el("div", {}, box, s === 0 ? "The graph this pass was given." : "The graph this pass returned.");
  const R = D.rules[m[2]];
  el("div", { class: "loc" }, box, `rule at ${base(R.file)}:${R.line}`);
  el("pre", { id: "rule", class: "wrap" }, box, R.text);
  el("div", { class: "loc" }, box, `function ${R.fn}` + (R.fn_file ? ` at ${base(R.fn_file)}:${R.fn_line}` : ""));
  if (R.fn_src) el("pre", { class: "wrap" }, box, R.fn_src);
  el("pre", { class: "wrap" }, box, `${short(expr(m[0]))}\n→ ${short(expr(m[1]))}`);
}

let cur = { p: -1, s: 0 };
function select(p, s, fit) {
  const P = D.passes[p], last = P.matches.length + (P.out === null ? 0 : 1), G = D.groups[P.group];
  s = Math.max(0, Math.min(s, last));
  const newPass = p !== cur.p;
  cur = { p, s };
  history.replaceState(null, "", `#p=${p}&s=${s}`);
  if (newPass) {
    sidebar(p);
    stepList(P);
    $("title").textContent = `${G.name} › ${P.name}`;
    $("kernel").style.display = G.src ? "" : "none";
    $("src").textContent = G.src || "";
    $("slider").max = last;
    $("warn").textContent = P.out !== null && replay(P, P.matches.length) !== P.out ? "replay differs from the recorded output" : "";
  }
  [...$("steps").children].forEach((li, j) => { li.className = j === s ? "cur" : ""; if (j === s) li.scrollIntoView({ block: "nearest" }); });
  $("slider").value = s;
  $("stepinfo").textContent = `step ${s} / ${last}`;
  matchPanel(P, s);
  const root = replay(P, s), m = P.matches[s - 1], before = new Set(s ? toposort(replay(P, s - 1)) : []);
  const fresh = new Set(m ? toposort(m[1]).filter((i) => !before.has(i)) : []);
  const drawn = draw(root, fresh, m ? m[1] : -1, newPass || fit);
  Object.assign(document.body.dataset, { pass: p, step: s, nodes: drawn, fresh: $("view").querySelectorAll(".new").length });
}
$("filter").oninput = $("quiet").onchange = () => sidebar(cur.p);
const KINDS = { buffer: "buffers, params, copies", memory: "AT, INDEX, LOAD, STORE", movement: "reshape, permute, pad…",
  reduce: "reduces, accumulators", loop: "RANGE, END", const: "constants", alu: "arithmetic", other: "the rest" };
for (const [k, what] of Object.entries(KINDS)) {
  const row = el("div", { class: "node k-" + k }, document.querySelector(".graph-legend"));
  row.innerHTML = '<svg width="16" height="11"><rect width="16" height="11"/></svg> ';
  row.append(what);
}
$("prev").onclick = () => select(cur.p, cur.s - 1);
$("next").onclick = () => select(cur.p, cur.s + 1);
$("slider").oninput = (e) => select(cur.p, +e.target.value);
svg.addEventListener("dblclick", () => select(cur.p, cur.s, true));
addEventListener("keydown", (e) => {
  if (e.target.id === "filter") return;  // typing a filter is not a key command
  if (e.key === "f") return select(cur.p, cur.s, true);
  const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] }, mv = moves[e.key];
  if (!mv) return;
  e.preventDefault();
  if (mv[0]) select(Math.max(0, Math.min(D.passes.length - 1, cur.p + mv[0])), 0); else select(cur.p, cur.s + mv[1]);
});

// Start where the URL hash says (#p=3&s=2), else at the first pass with a match.
// #check replays every pass to its end and reports those whose result differs from the recorded one (a self-test).
const hash = new URLSearchParams(location.hash.slice(1));
if (!D.passes.length) document.body.textContent = "VIZ recorded no graph rewrites.";
else select(hash.has("p") ? +hash.get("p") : Math.max(0, D.passes.findIndex((P) => P.matches.length)), +hash.get("s") || 0);
const replayFailures = () => D.passes.flatMap((P, i) => (P.out !== null && replay(P, P.matches.length) !== P.out ? [i] : []));
if (hash.has("check")) document.body.dataset.replayFailures = replayFailures().join(",") || "none";
</script>
</body></html>
"""

if VIZ.value not in ("", "0"):
  tracer = VizTracer()
  atexit.register(_viz_at_exit, tracer)
