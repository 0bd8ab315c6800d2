"""A differential fuzzer: random small Tensor programs run on the PYTHON reference and on the device under test must
give the same values.

Each program is a few lines of Python over one to three inputs of small shapes and several dtypes, holding edge
values (nan, infinities, -0.0, the ends of each int's range): elementwise math, comparisons and `where`, casts,
integer division, reductions and movement ops, in random order. On the device under test an input is sometimes a
constant (`Tensor.full`) rather than a buffer, so constant folding meets the reference too; the reference always
reads buffers.

The seeds are fixed, so a run is repeatable and its kernels come from the disk cache the second time.
`TINY_FUZZ_PROGRAMS=5000 pytest spec/test_fuzz.py` runs more (the default is 200), and `TINY_FUZZ_SEED` shifts
the seeds to new programs. A failing program is shrunk to the first line whose value differs and the lines it
needs, and printed as a script that reproduces it.
"""
import math, os, random, re
import numpy as np
import pytest
import tiny
from tiny import Tensor, dtypes, Device
from conftest import NP

PROGRAMS = int(os.environ.get("TINY_FUZZ_PROGRAMS", "200"))
FIRST_SEED = int(os.environ.get("TINY_FUZZ_SEED", "0"))

DTYPES = [dtypes.bool, dtypes.int8, dtypes.uint8, dtypes.int32, dtypes.int64, dtypes.uint32, dtypes.float16, dtypes.float32, dtypes.float64]
FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 2.5, -3.75, 100.0, 1e-3, 300.5, -1e5, math.nan, math.inf, -math.inf]

def value(rng: random.Random, d) -> object:
  if d == dtypes.bool: return rng.random() < 0.5
  if d.is_float: return rng.choice(FLOAT_EDGES) if rng.random() < 0.6 else round(rng.uniform(-10, 10), 2)
  v = rng.choice([0, 1, -1, 2, 7, -7, d.min, d.max, d.min + 1, d.max - 1]) if rng.random() < 0.6 else rng.randint(-50, 50)
  return v if d.min <= v <= d.max else v % (d.max + 1)  # negative values of unsigned types wrap, as they are written in C

def literal(v: object) -> str: return f"float('{v}')" if isinstance(v, float) and (math.isnan(v) or math.isinf(v)) else repr(v)

# ## Making a program
#
# A program is a list of lines `vN = <expression>`, each over earlier values. It is built from lazily evaluated
# tensors on the reference device, so every line knows its operands' shapes and dtypes and nothing runs yet.

UNARY = ["-{x}", "{x}.abs()", "{x}.relu()", "{x}.sqrt()", "{x}.exp2()", "{x}.log2()", "{x}.sin()", "{x}.trunc()", "{x}.reciprocal()",
         "{x}.square()", "{x}.sign()", "{x}.maximum(0)"]
BINARY = ["({x} + {y})", "({x} * {y})", "({x} - {y})", "{x}.maximum({y})", "({x} < {y})", "({x} == {y})", "({x} != {y})"]
INT_BINARY = ["({x} // {y})", "({x} % {y})", "({x} & {y})", "({x} | {y})", "({x} ^ {y})"]
TRUNCATING = ["{x}._alu(Ops.IDIV, {y})", "{x}._alu(Ops.MOD, {y})"]  # C's division itself: operands of one shape and dtype

class Program:
  def __init__(self, seed: int):
    self.rng = rng = random.Random(seed)
    self.inputs: list[tuple[str, list, object, bool]] = []  # name, flat values, dtype, shape, constant on the device?
    self.lines: list[tuple[str, str]] = []
    self.ns = {"Tensor": Tensor, "dtypes": dtypes, "Ops": tiny.Ops}
    shape = tuple(rng.randint(1, 4) for _ in range(rng.randint(0, 3)))
    for i in range(rng.randint(1, 3)):
      d = rng.choice(DTYPES)
      s = shape if rng.random() < 0.7 else tuple(1 if rng.random() < 0.5 else n for n in shape)  # some inputs broadcast
      constant = rng.random() < 0.25
      values = [value(rng, d)] * math.prod(s) if constant else [value(rng, d) for _ in range(math.prod(s))]
      self.inputs.append((f"x{i}", values, d, s, constant))
      with np.errstate(over="ignore"): self.ns[f"x{i}"] = Tensor(np.array(values, dtype=NP[d]).reshape(s), device="PYTHON")
    for _ in range(rng.randint(1, 6)): self.add_line()

  def vars(self) -> list[str]: return [name for name, *_ in self.inputs] + [name for name, _ in self.lines]

  def add_line(self) -> None:
    rng = self.rng
    for _ in range(20):  # an expression that fits the operands (right shapes and dtypes); retry a few times
      x = rng.choice(self.vars()[-3:])
      t = self.ns[x]
      kind = rng.choice(["unary", "binary", "binary", "cast", "reduce", "movement", "movement", "where"])
      if kind == "unary" and t.dtype.is_float: expr = rng.choice(UNARY).format(x=x)
      elif kind == "binary":
        y = rng.choice(self.vars())
        same = t.dtype.is_int and t.dtype == self.ns[y].dtype
        if rng.random() < 0.8: expr = rng.choice(BINARY + (INT_BINARY if same else []) + (TRUNCATING if same and t.shape == self.ns[y].shape else [])).format(x=x, y=y)
        else: expr = rng.choice(BINARY + (INT_BINARY if t.dtype.is_int else [])).format(x=x, y=literal(value(rng, t.dtype)))
      elif kind == "cast": expr = f"{x}.cast(dtypes.{rng.choice(DTYPES).name})"
      elif kind == "reduce" and t.ndim:
        fn = rng.choice(["sum", "max", "min"] + (["mean"] if t.dtype.is_float else []))
        expr = f"{x}.{fn}(axis={rng.randrange(t.ndim)}{', keepdim=True' if rng.random() < 0.5 else ''})"
      elif kind == "movement" and t.ndim: expr = self.movement(x, t)
      elif kind == "where":
        c, y = rng.choice(self.vars()), rng.choice(self.vars())
        expr = f"{c}.cast(dtypes.bool).where({x}, {y})"
      else: continue
      try: self.ns[name := f"v{len(self.lines)}"] = eval(expr, self.ns)  # lazily: builds the graph, checks shapes
      except Exception: continue  # shapes that do not broadcast, and the like: try another
      self.lines.append((name, expr))
      return

  def movement(self, x: str, t: Tensor) -> str:
    rng, shape = self.rng, t.shape
    choice = rng.choice(["permute", "flip", "reshape", "pad", "shrink", "expand"])
    if choice == "permute": return f"{x}.permute({tuple(rng.sample(range(t.ndim), t.ndim))})"
    if choice == "flip": return f"{x}.flip({rng.randrange(t.ndim)})"
    if choice == "reshape": return f"{x}.reshape({(math.prod(shape),) if rng.random() < 0.5 else shape[::-1] if math.prod(shape) == math.prod(shape[::-1]) else (-1,)})"
    if choice == "pad": return f"{x}.pad({tuple((rng.randint(0, 2), rng.randint(0, 2)) for _ in shape)})"
    if choice == "shrink": return f"{x}.shrink({tuple((b := rng.randrange(n), rng.randint(b + 1, n)) for n in shape)})"
    return f"{x}.expand({tuple(rng.randint(1, 3) if n == 1 else n for n in shape)})"

  # ## Running it
  def script(self, device: str, upto: int | None = None, keep: set[str] | None = None) -> str:
    """The program as a standalone script on `device`, up to line `upto`, with only the lines in `keep`."""
    lines = ["from tiny import Tensor, dtypes, Ops"]
    for name, values, d, s, constant in self.inputs:
      if keep is not None and name not in keep: continue
      if constant and device != "PYTHON": lines.append(f"{name} = Tensor.full({s}, {literal(values[0])}, dtype=dtypes.{d.name}, device={device!r})")
      else: lines.append(f"{name} = Tensor({nested(values, s)}, dtype=dtypes.{d.name}, device={device!r})")
    for name, expr in self.lines[:upto]:
      if keep is None or name in keep: lines.append(f"{name} = {expr}")
    return "\n".join(lines)

  def run(self, device: str, upto: int | None = None) -> tuple[np.ndarray, object] | Exception:
    """The value of line `upto` (the last by default) and its dtype, or the error it raised: a program that builds
    must also run, so an error is a finding too."""
    ns: dict = {}
    try:
      exec(self.script(device, upto), ns)
      out = ns[self.lines[:upto][-1][0]]
      return out.numpy(), out.dtype
    except Exception as e: return e

  def needed(self, upto: int) -> set[str]:
    """The values line `upto` reads, directly or not: the lines to keep in a reproducer."""
    want = {self.lines[upto - 1][0]}
    for name, expr in reversed(self.lines[:upto]):
      if name in want: want |= set(re.findall(r"[A-Za-z_]\w*", expr)) & set(self.vars())
    return want

def nested(values: list, shape: tuple) -> str:
  if not shape: return literal(values[0])
  n = len(values) // shape[0]
  return "[" + ", ".join(nested(values[i*n:(i+1)*n], shape[1:]) for i in range(shape[0])) + "]"

TOLERANCE = {dtypes.float16: (5e-3, 5e-3), dtypes.float32: (1e-4, 1e-5), dtypes.float64: (1e-9, 1e-9)}

def mismatch(reference, result) -> str | None:
  if isinstance(result, Exception) or isinstance(reference, Exception):
    return f"raised {result!r}" if isinstance(result, Exception) else f"the reference raised {reference!r}"
  (want, dtype), (got, _) = reference, result
  if want.shape != got.shape: return f"shape {got.shape}, reference {want.shape}"
  if dtype.is_float:
    rtol, atol = TOLERANCE[dtype]
    w, g = want.astype(np.float64), got.astype(np.float64)
    ok = np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True) | ((w == g) & np.isinf(w))  # infinities of one sign
  else: ok = want == got
  if ok.all(): return None
  i = np.argwhere(~ok)[0]
  return f"at index {tuple(int(v) for v in i)}: {got[tuple(i)]!r}, reference {want[tuple(i)]!r} ({int((~ok).sum())} of {ok.size} differ)"

def first_difference(p: Program, device: str) -> tuple[int, str] | None:
  """The first line whose value differs between the reference and the device, and how."""
  for upto in range(1, len(p.lines) + 1):
    if (why := mismatch(p.run("PYTHON", upto), p.run(device, upto))) is not None: return upto, why
  return None

@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + PROGRAMS))
def test_fuzz(device, seed):
  if device == "PYTHON": pytest.skip("PYTHON is the reference")
  p = Program(seed)
  if not p.lines: pytest.skip("no line fit the inputs")
  if any(d not in Device[device].renderer.supported_dtypes for _, _, d, _, _ in p.inputs) or \
     any(t.dtype not in Device[device].renderer.supported_dtypes for t in p.ns.values() if isinstance(t, Tensor)):
    pytest.skip(f"{device} lacks a dtype this program uses")
  if (why := mismatch(p.run("PYTHON"), p.run(device))) is None: return
  upto, why = first_difference(p, device) or (len(p.lines), why)
  keep = p.needed(upto)
  pytest.fail(f"{device} disagrees with PYTHON (seed {seed}) {why}. A reproducer; the last line differs:\n\n"
              f"{p.script(device, upto, keep)}\nprint({p.lines[upto - 1][0]}.tolist())\n", pytrace=False)
