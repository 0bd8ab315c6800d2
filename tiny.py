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
# 6. Tensors
# 7. Autograd
# 8. Scheduling
# 9. Lowering
# 10. Optimizing
# 11. Linearizing and rendering
# 12. Devices and running
# 13. The reference device
# 14. nn
# 15. Seeing inside
#
# tiny consumes nothing: this file imports only the Python standard library.
from __future__ import annotations
import contextlib, ctypes, functools, hashlib, inspect, itertools, math, os, struct, sys, weakref
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
# A `ContextVar` is one named setting. Its value is read from the environment
# once, when it is created; `Context` swaps values in and restores them on
# exit. Every setting registers itself in `ContextVar.registry`, so the docs
# can list them all and nothing is hidden.

def getenv(key: str, default: Any = 0) -> Any:
  """Read an environment variable, converted to the type of `default`."""
  value = os.environ.get(key)
  return default if value is None else type(default)(value)

class ContextVar:
  registry: dict[str, ContextVar] = {}
  def __init__(self, key: str, default: Any, doc: str = ""):
    self.key, self.doc, self.value = key, doc, getenv(key, default)
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
    unknown = [k for k in overrides if k not in ContextVar.registry]
    if unknown: raise KeyError(f"unknown setting(s) {unknown}; known: {sorted(ContextVar.registry)}")
    self.overrides = overrides
  def __enter__(self) -> Context:
    self.saved = {k: ContextVar.registry[k].value for k in self.overrides}
    for k, v in self.overrides.items(): ContextVar.registry[k].value = v
    return self
  def __exit__(self, *exc: Any) -> None:
    for k, v in self.saved.items(): ContextVar.registry[k].value = v

DEBUG = ContextVar("DEBUG", 0, "1: a line per realize; 2: a line per kernel; 3: kernel UOps; 4: generated source; 5: linearized program")
DEVICE = ContextVar("DEVICE", "", "default device (PYTHON, CPU, ...); empty means the fastest that works")
NOOPT = ContextVar("NOOPT", 0, "1 turns kernel optimizations off, leaving plain loops")
JIT = ContextVar("JIT", 1, "0 makes TinyJit run the function every time instead of replaying kernels")
VIZ = ContextVar("VIZ", "", "1 records every graph rewrite and writes a viewer page at exit; 'text' prints them")
SPEC = ContextVar("SPEC", 0, "1 checks kernels against the UOp spec before they are compiled")

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
# `void` is the type of things that are not values (a kernel, a store).

@dataclass(frozen=True, eq=True)
class DType:
  priority: int
  itemsize: int
  name: str
  fmt: str  # struct format character
  def __repr__(self) -> str: return f"dtypes.{self.name}"
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
  default_float, default_int = float32, int32
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
# default float (chapter 6).
_promotes_to: dict[DType, list[DType]] = {
  dtypes.bool: [dtypes.int8, dtypes.uint8], dtypes.int8: [dtypes.int16], dtypes.int16: [dtypes.int32],
  dtypes.int32: [dtypes.int64], dtypes.int64: [dtypes.float16], dtypes.uint8: [dtypes.int16, dtypes.uint16],
  dtypes.uint16: [dtypes.int32, dtypes.uint32], dtypes.uint32: [dtypes.int64, dtypes.uint64], dtypes.uint64: [dtypes.float16],
  dtypes.float16: [dtypes.float32], dtypes.float32: [dtypes.float64], dtypes.float64: []}

@functools.cache
def _upward(d: DType) -> frozenset[DType]:
  return frozenset([d]).union(*(_upward(p) for p in _promotes_to[d]))

def least_upper_dtype(*ds: DType) -> DType:
  return min(frozenset.intersection(*(_upward(d) for d in ds)), key=lambda d: d.priority)

# ## Truncation
#
# The reference device and constant folding compute in Python, whose ints are
# unbounded and whose floats are all 64-bit. To agree bit for bit with C, every
# result is pushed through `truncate`: integers wrap around modulo 2^bits,
# floats are rounded to their width (overflowing to infinity, as a C cast
# does). ctypes performs the same double-to-float conversion C does.

def _wrap_int(bits: int, signed: bool) -> Callable[[Any], int]:
  def wrap(x: Any) -> int:
    x = int(x) % (1 << bits)
    return x - (1 << bits) if signed and x >= 1 << (bits - 1) else x
  return wrap

def _to_half(x: float) -> float:
  try: return struct.unpack("e", struct.pack("e", x))[0]
  except OverflowError: return math.copysign(math.inf, x)

truncate: dict[DType, Callable[[Any], Any]] = {
  dtypes.bool: bool, dtypes.float16: _to_half, dtypes.float32: lambda x: ctypes.c_float(x).value, dtypes.float64: float,
  **{d: _wrap_int(8*d.itemsize, not d.is_unsigned) for d in dtypes.all() if d.is_int}}

def to_dtype(x: Any, dtype: DType) -> Any:
  """Convert a Python value the way a C cast to `dtype` would (floats to ints truncate toward zero)."""
  if dtype.is_int and isinstance(x, float): x = 0 if math.isnan(x) or math.isinf(x) else math.trunc(x)
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

class Ops(Enum):
  # tensor graph: where data comes from and how it is viewed
  SINK = auto(); DEVICE = auto(); BUFFER = auto(); CONST = auto(); DEFINE_VAR = auto(); ARANGE = auto()
  COPY = auto(); CONTIGUOUS = auto(); DETACH = auto(); ASSIGN = auto()
  RESHAPE = auto(); PERMUTE = auto(); EXPAND = auto(); PAD = auto(); SHRINK = auto(); FLIP = auto()
  REDUCE_AXIS = auto()
  # kernels: loops, memory, accumulators
  PARAM = auto(); AT = auto(); RANGE = auto(); END = auto(); INDEX = auto(); LOAD = auto(); STORE = auto()
  REDUCE = auto(); DEFINE_ACC = auto()
  # arithmetic (the ALU ops)
  CAST = auto(); BITCAST = auto()
  NEG = auto(); RECIPROCAL = auto(); SQRT = auto(); EXP2 = auto(); LOG2 = auto(); SIN = auto(); TRUNC = auto()
  ADD = auto(); MUL = auto(); IDIV = auto(); MOD = auto(); MAX = auto(); CMPLT = auto(); CMPNE = auto()
  AND = auto(); OR = auto(); XOR = auto(); SHL = auto(); SHR = auto()
  WHERE = auto()
  def __repr__(self) -> str: return f"Ops.{self.name}"

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
# (chapter 13) runs it, constant folding (chapter 5) runs it, and every other
# device is tested against it. Where C leaves a case undefined (integer
# division by zero, shifting by the bit width or more, casting an out-of-range
# float to an int) tiny leaves it undefined too and the spec suite does not
# test it; everywhere else the C backends must agree with this table exactly.
#
# A few choices worth knowing:
#
# - `IDIV` and `MOD` are C's: division truncates toward zero and the remainder
#   takes the dividend's sign. Python's floor `//` is built from them in
#   chapter 6.
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

python_alu: dict[Ops, Callable[..., Any]] = {
  Ops.NEG: lambda x: not x if isinstance(x, bool) else -x, Ops.RECIPROCAL: _recip, Ops.SQRT: _sqrt,
  Ops.EXP2: _exp2, Ops.LOG2: _log2, Ops.SIN: _sin, Ops.TRUNC: _trunc,
  Ops.ADD: lambda x, y: x + y, Ops.MUL: lambda x, y: x * y, Ops.IDIV: _cdiv, Ops.MOD: lambda x, y: x - _cdiv(x, y) * y,
  Ops.MAX: lambda x, y: x if (x != x or x > y) else y, Ops.CMPLT: lambda x, y: x < y, Ops.CMPNE: lambda x, y: x != y,
  Ops.AND: lambda x, y: x & y, Ops.OR: lambda x, y: x | y, Ops.XOR: lambda x, y: x ^ y,
  Ops.SHL: lambda x, y: x << y, Ops.SHR: lambda x, y: x >> y, Ops.WHERE: lambda c, x, y: x if c else y}

def exec_alu(op: Ops, dtype: DType, srcs: Sequence[Any]) -> Any:
  """Run one ALU op on Python values and truncate the result to `dtype`."""
  if dtype.fmt == "?" and op in (Ops.ADD, Ops.MUL): op = Ops.OR if op is Ops.ADD else Ops.AND  # bool + is or, * is and
  return truncate[dtype](python_alu[op](*srcs))

def bitcast_value(x: Any, src: DType, dst: DType) -> Any:
  return struct.unpack(dst.fmt, struct.pack(src.fmt, x))[0]

# ## The UOp class
#
# The metaclass intercepts construction to look in the cache first. The key
# must tell apart values that Python calls equal but that are different
# constants: `0.0 == -0.0` and `True == 1`, while `nan != nan` would never
# find itself. `_key` makes floats compare by sign and nan-ness too.

def _key(x: Any) -> Any:
  if isinstance(x, float): return ("nan",) if x != x else (x, math.copysign(1.0, x), float)
  if isinstance(x, tuple): return tuple(_key(v) for v in x)
  return (x, type(x)) if isinstance(x, (bool, int)) else x

class UOpMetaClass(type):
  cache: dict[tuple, weakref.ref] = {}
  def __call__(cls, op: Ops, dtype: DType = dtypes.void, src: tuple[UOp, ...] = (), arg: Any = None) -> UOp:
    key = (op, dtype, src, _key(arg))
    if (ref := UOpMetaClass.cache.get(key)) is not None and (live := ref()) is not None: return live
    uop = super().__call__(op, dtype, src, arg)
    UOpMetaClass.cache[key] = weakref.ref(uop, functools.partial(_uncache, key))
    return uop

def _uncache(key: tuple, ref: weakref.ref) -> None:
  if UOpMetaClass.cache.get(key) is ref: del UOpMetaClass.cache[key]

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
    if name not in self.__dict__:
      for u in self.toposort(lambda u: name not in u.__dict__): u.__dict__[name] = fn(u)
    return self.__dict__[name]
  return property(get, doc=fn.__doc__)

class MathMixin:
  # Operators build graphs. The same mixin serves UOp here and UPat in
  # chapter 4, so `x + 1` makes an ADD node and `UPat.var("x") + 1` a pattern
  # that matches one. Subtraction is addition of a negation: there is no SUB op.
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

  def listing(self) -> str:
    """A numbered, one-line-per-UOp listing of the graph: how DEBUG prints a kernel."""
    ids = {u: i for i, u in enumerate(self.toposort())}
    return "\n".join(f"{i:4d} {u.op.name:12s} {u.dtype.name:8s} {[ids[s] for s in u.src]!s:16s} {u.arg!r}" for u, i in ids.items())

  # ### Building UOps
  # Small constructors keep the rest of the file readable. `const` puts the
  # value through the dtype first, so `UOp.const(dtypes.float32, 1)` stores
  # `1.0` and matches a float pattern.
  @staticmethod
  def const(dtype: DType, value: Any) -> UOp: return UOp(Ops.CONST, dtype, arg=to_dtype(value, dtype))
  def const_like(self, b: Any) -> UOp: return UOp.const(self.dtype, b)
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
  def replace(self, **kwargs: Any) -> UOp:
    fields = {"op": self.op, "dtype": self.dtype, "src": self.src, "arg": self.arg, **kwargs}
    return UOp(fields["op"], fields["dtype"], fields["src"], fields["arg"])
  def simplify(self) -> UOp: return graph_rewrite(self, symbolic, name="simplify")

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
  if u.op is Ops.BUFFER: return (u.arg[1],)
  if u.op is Ops.PARAM: return (u.arg[1],)
  if u.op is Ops.ARANGE: return (u.arg,)
  if u.op in (Ops.CONST, Ops.DEFINE_VAR): return ()
  if u.op in (Ops.RESHAPE, Ops.EXPAND): return u.arg
  if u.op is Ops.PERMUTE: return tuple(u.src[0].shape[i] for i in u.arg)
  if u.op is Ops.PAD: return tuple(s + b + a for s, (b, a) in zip(u.src[0].shape, u.arg))
  if u.op is Ops.SHRINK: return tuple(e - b for b, e in u.arg)
  if u.op is Ops.REDUCE_AXIS: return tuple(1 if i in u.arg[1] else s for i, s in enumerate(u.src[0].shape))
  if u.op in GroupOp.Elementwise | {Ops.FLIP, Ops.COPY, Ops.CONTIGUOUS, Ops.DETACH, Ops.ASSIGN}:
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
  elif u.op is Ops.CAST: lo, hi = (s[0][0], s[0][1]) if d.min <= s[0][0] and s[0][1] <= d.max else (d.min, d.max)
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

Rule = tuple[UPat, Callable[..., Any]]

class PatternMatcher:
  def __init__(self, patterns: list[Rule]):
    self.patterns = patterns
    self.pdict: dict[Ops, list[tuple[UPat, Callable[..., Any], bool]]] = {op: [] for op in Ops}
    for pat, fn in patterns:
      wants_ctx = "ctx" in inspect.signature(fn).parameters
      for op in (pat.op or tuple(Ops)): self.pdict[op].append((pat, fn, wants_ctx))
  def __add__(self, other: PatternMatcher) -> PatternMatcher: return PatternMatcher(self.patterns + other.patterns)

  def rewrite(self, uop: UOp, ctx: Any = None) -> UOp | None:
    result = self.rewrite_with_rule(uop, ctx)
    return None if result is None else result[0]

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
# (a cycle, like `a+b -> b+a -> a+b`), and a chain of more than
# `REWRITE_LIMIT` rewrites of one node. Both raise `RewriteError` naming the
# pass and the rules that fired.
#
# Every call is named. When a tracer is installed (VIZ, chapter 15, installs
# one), each call reports its input, every match (before, after, rule) and its
# output; when none is, the cost is one check of a global.

REWRITE_LIMIT = ContextVar("REWRITE_LIMIT", 1000, "most consecutive rewrites of one node before graph_rewrite gives up")

class RewriteError(RuntimeError): pass

class Tracer:
  """Receives the events of every graph_rewrite. Subclass it to watch rewrites (VIZ does)."""
  def begin(self, name: str, root: UOp) -> None: pass
  def match(self, before: UOp, after: UOp, rule: UPat) -> None: pass
  def end(self, result: UOp) -> None: pass

tracer: Tracer | None = None

def graph_rewrite(root: UOp, pm: PatternMatcher, ctx: Any = None, *, name: str) -> UOp:
  if tracer is not None: tracer.begin(name, root)
  done: dict[UOp, UOp] = {}
  active: dict[UOp, list[UPat]] = {}  # nodes whose rewritten value is still being computed -> rules fired so far
  stack: list[tuple[UOp, int, Any]] = [(root, 0, None)]
  while stack:
    node, stage, extra = stack.pop()
    if stage == 0:  # first visit: schedule the sources, then come back
      if node in done: continue
      if node in active: raise RewriteError(_loop_message(name, "a rewrite leads back to a node still being rewritten", active[node]))
      active[node] = []
      stack.append((node, 1, None))
      stack.extend((s, 0, None) for s in reversed(node.src) if s not in done)
    elif stage == 1:  # sources are done: rebuild and offer to the rules
      new_src = tuple(done[s] for s in node.src)
      rebuilt = node if new_src == node.src else UOp(node.op, node.dtype, new_src, node.arg)
      if (fired := pm.rewrite_with_rule(rebuilt, ctx)) is None:
        done[node] = done[rebuilt] = rebuilt  # a fixed point: nothing applies to it any more
        del active[node]
        continue
      result, rule = fired
      if tracer is not None: tracer.match(rebuilt, result, rule)
      rules = active[node] + [rule]
      if len(rules) > REWRITE_LIMIT.value: raise RewriteError(_loop_message(name, f"more than {REWRITE_LIMIT.value} rewrites of one node", rules))
      if result in done:
        done[node] = done[result]
        del active[node]
        continue
      if result in active: raise RewriteError(_loop_message(name, "a rewrite leads back to a node still being rewritten", rules + active[result]))
      active[result] = rules  # the result inherits the chain, so long chains are counted across nodes
      stack.append((node, 2, result))
      stack.append((result, 1, None))
      stack.extend((s, 0, None) for s in reversed(result.src) if s not in done)
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
# The lowering in chapter 9 turns movement ops into index arithmetic:
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

def _fold(x: UOp) -> UOp | None:
  if not all(s.op is Ops.CONST for s in x.src): return None
  return UOp.const(x.dtype, exec_alu(x.op, x.dtype, [s.arg for s in x.src]))

def _is_int(*us: UOp) -> bool: return all(u.dtype.is_int for u in us)

def _pinned(x: UOp) -> UOp | None:
  """An integer or bool node whose bounds allow a single value is that value."""
  if x.op in (Ops.CONST, Ops.DEFINE_VAR) or not (x.dtype.is_int or x.dtype.fmt == "?"): return None
  return UOp.const(x.dtype, x.vmin) if x.vmin == x.vmax else None

def _order_commutative(x: UOp) -> UOp | None:
  a, b = x.src
  def rank(u: UOp) -> tuple: return (u.op is Ops.CONST, u.key)
  return x.replace(src=(b, a)) if rank(b) < rank(a) else None

def _divmod_nonneg(*us: UOp) -> bool: return all(u.vmin >= 0 for u in us)

x_, y_, z_ = UPat.var("x"), UPat.var("y"), UPat.var("z")
c1_, c2_ = UPat.cvar("c1"), UPat.cvar("c2")

symbolic_simple = PatternMatcher([
  # constant folding: every ALU op, and casts and bitcasts of constants
  (UPat(GroupOp.ALU, name="x"), _fold),
  (UPat(Ops.CAST, src=(UPat.cvar("c"),), name="x"), lambda x, c: UOp.const(x.dtype, c.arg)),
  (UPat(Ops.BITCAST, src=(UPat.cvar("c"),), name="x"), lambda x, c: UOp.const(x.dtype, bitcast_value(c.arg, c.dtype, x.dtype))),
  # identities that hold for every dtype
  (x_ + 0, lambda x: x),
  (x_ * 1, lambda x: x),
  (x_ // 1, lambda x: x),
  (UPat(Ops.NEG, src=(UPat(Ops.NEG, src=(x_,)),)), lambda x: x),
  (UPat(Ops.CAST, name="c"), lambda c: c.src[0] if c.src[0].dtype == c.dtype else None),
  (UPat(Ops.MAX, src=(x_, x_)), lambda x: x),
  (UPat(Ops.WHERE, src=(UPat.const(dtypes.bool, True), x_, y_)), lambda x, y: x),
  (UPat(Ops.WHERE, src=(UPat.const(dtypes.bool, False), x_, y_)), lambda x, y: y),
  (UPat(Ops.WHERE, src=(UPat.var(), x_, x_)), lambda x: x),
  (UPat(Ops.CMPLT, src=(x_, x_)), lambda x: UOp.const(dtypes.bool, False)),
  # identities that only hold for integers (for floats, inf*0 and nan != nan differ)
  (x_ * 0, lambda x: x.const_like(0) if _is_int(x) else None),
  (x_ % 1, lambda x: x.const_like(0) if _is_int(x) else None),
  (UPat(Ops.CMPNE, src=(x_, x_)), lambda x: UOp.const(dtypes.bool, False) if _is_int(x) else None),
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
  (UPat(GroupOp.Commutative, src=(x_, y_), name="x"), _order_commutative),
  # like terms and constants, integers only
  (x_ + x_, lambda x: x * 2 if _is_int(x) else None),
  (x_ * c1_ + x_ * c2_, lambda x, c1, c2: x * (c1.arg + c2.arg) if _is_int(x) else None),
  (x_ * c1_ + x_, lambda x, c1: x * (c1.arg + 1) if _is_int(x) else None),
  ((x_ + c1_) + c2_, lambda x, c1, c2: x + (c1.arg + c2.arg) if _is_int(x) else None),
  ((x_ * c1_) * c2_, lambda x, c1, c2: x * (c1.arg * c2.arg) if _is_int(x) else None),
  ((x_ + c1_) + y_, lambda x, c1, y: (x + y) + c1 if _is_int(x) and y.op is not Ops.CONST else None),
  ((x_ + c1_) * c2_, lambda x, c1, c2: x * c2 + c1.arg * c2.arg if _is_int(x) else None),
  # division and remainder by a positive constant
  (x_ // c1_, lambda x, c1: x.const_like(0) if _is_int(x) and c1.arg > 0 and x.vmin >= 0 and x.vmax < c1.arg else None),
  (x_ % c1_, lambda x, c1: x if _is_int(x) and c1.arg > 0 and x.vmin >= 0 and x.vmax < c1.arg else None),
  ((x_ * c1_ + y_) // c2_, lambda x, c1, y, c2: x * (c1.arg // c2.arg) + y // c2
   if c2.arg > 0 and c1.arg % c2.arg == 0 and _divmod_nonneg(x * c1 + y, y) else None),
  ((x_ * c1_ + y_) % c2_, lambda x, c1, y, c2: y % c2 if c2.arg > 0 and c1.arg % c2.arg == 0 and _divmod_nonneg(x * c1 + y, y) else None),
  ((x_ * c1_) // c2_, lambda x, c1, c2: x * (c1.arg // c2.arg) if c2.arg > 0 and c1.arg % c2.arg == 0 else None),
  ((x_ * c1_) % c2_, lambda x, c1, c2: x.const_like(0) if c2.arg > 0 and c1.arg % c2.arg == 0 else None),
  ((x_ // c1_) // c2_, lambda x, c1, c2: x // (c1.arg * c2.arg) if c1.arg > 0 and c2.arg > 0 and x.vmin >= 0 else None),
  ((x_ % c1_) % c2_, lambda x, c1, c2: x % c2 if c2.arg > 0 and c1.arg % c2.arg == 0 and x.vmin >= 0 else None),
])
