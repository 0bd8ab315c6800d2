"""Every rule of every PatternMatcher: an example on which it fires, and a check that the rewritten graph computes
the same values as the graph before, on the device under test.

The rules are found, not listed: every `PatternMatcher` among the globals of tiny and of each backend module is
walked, and each of its `(UPat, function)` rules is one test (`rule` ids like `pm_lower.3`: the matcher, then the
rule's place in it; a rule shared by two matchers, as `symbolic` shares the rules of `symbolic_simple`, belongs to
the smaller one). The examples are written here; which rules they fire is seen, not claimed: while an example
runs, a `tiny.Tracer` records every match of every `graph_rewrite`, and the matchers that tiny applies directly
with `.rewrite` (`pm_gradient` for gradients, `string_rewrite` for rendering) are swapped for recording copies.

Three kinds of example, each with its own check:

- **expressions** (the symbolic rules): the examples of spec/test_symbolic.py, where the same expressions are
  checked with the reference alone. Here, for every match, the node before the rewrite is evaluated by the
  reference (`exec_alu`), and the node after it runs as a kernel on the device, on random values of its variables
  within their bounds (floats include inf and nan), and the two must agree bit for bit (-0.0 is not 0.0);
- **tensor programs** (lowering, accumulators, scheduling, rendering): realized on the device and compared with
  numpy. A kernel-level rule's "before" graph is a kernel AST that no device can run until it is lowered, so the
  check is on the pass as a whole: the lowered kernel computes the AST's values;
- **gradients** (`pm_gradient`): float64 gradients on the device against central differences of the numpy
  function (spec/test_autograd.py checks every differentiable Tensor op the same way).

A rule passes on a device when some example fires it there and no example that fires it computes wrong values
with the rule to blame (see `is_suspect`: a wrong tensor program is blamed on the rules that fired only in wrong
programs). Rules of `string_rewrite` only fire on devices whose renderer is C-style; elsewhere they are skipped.
"""
from __future__ import annotations
import contextlib, functools, math, random
from dataclasses import dataclass
from typing import Callable
import numpy as np
import pytest
import tiny
from tiny import UOp, Ops, GroupOp, UPat, PatternMatcher, dtypes, exec_alu, to_dtype, bitcast_value, Tensor, Device
from conftest import check, available_devices
from test_uop_ops import Kernel, loop, load, store, same, skip_unsupported, check_gated_store
import test_symbolic

# ## Finding the rules

def backend_globals() -> dict[str, dict]:
  """The module globals of each backend that opens here, found through the functions of its device's parts."""
  found = {}
  for name in available_devices():
    dev = Device[name]
    for part in (dev.allocator, dev.renderer, dev.compiler, dev.runtime):
      for klass in (part if isinstance(part, type) else type(part)).__mro__:
        for fn in vars(klass).values():
          g = getattr(fn, "__globals__", None)
          if g is not None and g is not vars(tiny): found.setdefault(name, g)
  return found

def matchers() -> dict[str, PatternMatcher]:
  """Every PatternMatcher among the globals of tiny and of the backends, by name (a backend's prefixed with its device)."""
  out = {name: pm for name, pm in vars(tiny).items() if isinstance(pm, PatternMatcher)}
  for device, g in backend_globals().items():
    out.update({f"{device}.{name}": pm for name, pm in g.items() if isinstance(pm, PatternMatcher)})
  return out

@dataclass(frozen=True)
class Rule:
  matcher: str
  index: int
  pattern: UPat
  def __str__(self) -> str: return f"{self.matcher}.{self.index}"
  def describe(self) -> str:
    file, line = self.pattern.location
    return f"{self} ({file.rsplit('/', 1)[-1]}:{line}, {self.pattern!r})"

def find_rules() -> list[Rule]:
  owner: dict[int, Rule] = {}
  for name, pm in sorted(matchers().items(), key=lambda kv: len(kv[1].patterns)):  # the smallest matcher owns a shared rule
    for i, (pattern, _) in enumerate(pm.patterns): owner.setdefault(id(pattern), Rule(name, i, pattern))
  return sorted(owner.values(), key=lambda r: (r.matcher, r.index))

RULES = find_rules()

# ## Recording which rules fire

class Recorder(tiny.Tracer):
  def __init__(self): self.matches: list[tuple[object, object, UPat]] = []
  def match(self, before, after, rule): self.matches.append((before, after, rule))

class RecordingMatcher(PatternMatcher):
  """Stands in for a matcher while an example runs and records its matches, also those made with `.rewrite`."""
  def __init__(self, pm: PatternMatcher, recorder: Recorder):
    self.__dict__.update(vars(pm))
    self.recorder = recorder
  def rewrite_with_rule(self, uop, ctx=None):
    out = PatternMatcher.rewrite_with_rule(self, uop, ctx)
    if out is not None: self.recorder.matches.append((uop, out[0], out[1]))
    return out

@contextlib.contextmanager
def recording():
  """Record every rule that fires inside. The program cache starts empty, so kernels built before are lowered and
  rendered again (their binaries still come from the compiler's cache on disk)."""
  recorder, saved = Recorder(), (tiny.tracer, tiny._programs)
  swaps = [(g, name, pm) for g in [vars(tiny), *backend_globals().values()] for name, pm in list(g.items()) if isinstance(pm, PatternMatcher)]
  tiny.tracer, tiny._programs = recorder, {}
  for g, name, pm in swaps: g[name] = RecordingMatcher(pm, recorder)
  try: yield recorder
  finally:
    for g, name, pm in swaps: g[name] = pm
    tiny.tracer, tiny._programs = saved

# ## Expressions: before by the reference, after on the device

def evaluate(root: UOp, env: dict[UOp, object]) -> object:
  """The reference value of an expression over DEFINE_VARs: exec_alu, to_dtype and bitcast_value, as PYTHON runs them."""
  values: dict[UOp, object] = {}
  for u in root.toposort():
    srcs = [values[s] for s in u.src]
    if u.op is Ops.CONST: values[u] = u.arg
    elif u.op is Ops.DEFINE_VAR: values[u] = env[u]
    elif u.op is Ops.CAST: values[u] = to_dtype(srcs[0], u.dtype)
    elif u.op is Ops.BITCAST: values[u] = bitcast_value(srcs[0], u.src[0].dtype, u.dtype)
    else: values[u] = exec_alu(u.op, u.dtype, srcs)
  return values[root]

FLOAT_SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, math.inf, -math.inf, math.nan, 3e38, -1e-40]
SAMPLES = 32

def samples(var: UOp, rng: random.Random) -> list:
  """Values of a variable within its bounds, endpoints included; an unbounded float also takes inf and nan."""
  _, lo, hi = var.arg
  out = [lo, hi]
  while len(out) < SAMPLES:
    if not var.dtype.is_float: out.append(rng.randint(lo, hi))
    elif math.isinf(hi - lo): out.append(rng.choice(FLOAT_SPECIALS) if rng.random() < 0.4 else rng.uniform(-100, 100))
    else: out.append(rng.uniform(lo, hi))
  return [to_dtype(v, var.dtype) for v in out]

EXPRESSIONS: dict[str, UOp] = {**{f"test_symbolic: {k}": before for k, (before, _) in test_symbolic.EXAMPLES.items()},
                               **{f"test_symbolic guarded: {k}": e for k, e in test_symbolic.GUARDED.items()}}

@functools.cache
def expression_matches() -> dict[str, list[tuple[UOp, UOp, UPat]]]:
  """Simplify every expression example, recording each match (the node before, the node after, the rule)."""
  out = {}
  for name, expr in EXPRESSIONS.items():
    with recording() as rec: expr.simplify()
    out[name] = [(b, a, r) for b, a, r in rec.matches if isinstance(a, UOp)]
  return out

@functools.cache
def expression_results(device: str) -> dict[tuple[UOp, UOp], str | None]:
  """Run the after-node of every match as a kernel on the device; per (before, after), None or what went wrong."""
  pairs = list(dict.fromkeys((b, a) for ms in expression_matches().values() for b, a, _ in ms))
  supported = Device[device].renderer.supported_dtypes
  results: dict[tuple[UOp, UOp], str | None] = {}
  for start in range(0, len(pairs), 48):  # a few dozen outputs per kernel
    chunk = [p for p in pairs[start:start + 48] if all(u.dtype in supported for u in p[1].toposort())]
    variables = sorted({u for _, a in chunk for u in a.toposort() if u.op is Ops.DEFINE_VAR} |
                       {u for b, _ in chunk for u in b.toposort() if u.op is Ops.DEFINE_VAR}, key=lambda v: v.arg)
    rng = random.Random(start)
    values = {v: samples(v, rng) for v in variables}
    k, r = Kernel(), loop(SAMPLES, 0)
    loads = {v: load(k.input(v.dtype, values[v]), r) for v in variables}
    stores, outs = [], []
    for _, after in chunk:
      body = substitute(after, loads)
      outs.append(k.output(after.dtype, SAMPLES))
      stores.append(store(outs[-1], r, body))
    try: got = k.run(device, f"rules_{start}", *stores)
    except Exception as e:
      results.update({p: f"{type(e).__name__}: {e}" for p in chunk})
      continue
    for (before, after), out in zip(chunk, outs):
      bad = []
      for i, g in enumerate(got[out.arg[0]]):
        env = {v: values[v][i] for v in variables}
        if not same(after.dtype, g, want := evaluate(before, env)):
          bad.append(f"{ {v.arg[0]: x for v, x in env.items() if v in before.toposort()} }: before {want!r}, after {g!r}")
      results[(before, after)] = None if not bad else f"before:\n{before.listing()}\nafter:\n{after.listing()}\n" + "\n".join(bad[:5])
  return results

def substitute(root: UOp, mapping: dict[UOp, UOp]) -> UOp:
  """root with every UOp in mapping replaced (the graph is rebuilt bottom-up, never simplified)."""
  done: dict[UOp, UOp] = {}
  for u in root.toposort():
    done[u] = mapping[u] if u in mapping else u.replace(src=tuple(done[s] for s in u.src))
  return done[root]

# ## Tensor programs (and two hand-built kernels): realized on the device, against numpy

def rng_data(*shape, seed=0, lo=-3.0, hi=3.0) -> np.ndarray: return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)
def other_device(device: str) -> str:
  others = [d for d in available_devices() if d != device]
  if not others: pytest.skip("needs a second device")
  return others[0]

def ex_broadcast_chain(device):
  a, b = rng_data(2, 3), rng_data(3, seed=1)
  check((Tensor(a, device=device) * Tensor(b, device=device) + 1.5).maximum(0.25), np.maximum(a * b + 1.5, 0.25))

def ex_permute_flip_reshape(device):
  a = rng_data(2, 3, 4)
  check(Tensor(a, device=device).permute(2, 0, 1).flip(1).reshape(4, 6) * 2, a.transpose(2, 0, 1)[:, ::-1].reshape(4, 6) * 2)

def ex_pad_shrink(device):
  a = rng_data(3, 4)
  check(Tensor(a, device=device).pad(((1, 2), (0, 1))).shrink(((0, 5), (1, 5))) + 1, np.pad(a, ((1, 2), (0, 1)))[0:5, 1:5] + 1)

def ex_reductions(device):
  a = rng_data(3, 4, lo=0.5, hi=2.0)
  t = Tensor(a, device=device)
  check(t.sum(1), a.sum(1)); check(t.max(0), a.max(0)); check(t.prod(1), a.prod(1))
  check((t * 2).sum(), (a * 2).sum())

def ex_matmul(device):
  a, b = rng_data(3, 5), rng_data(5, 2, seed=1)
  check(Tensor(a, device=device) @ Tensor(b, device=device), a @ b)

def ex_arange_cast_bitcast(device):
  check((Tensor.arange(6, device=device) * 3).cast(dtypes.float32) + 0.5, np.arange(6) * 3 + 0.5)
  a = rng_data(4)
  check(Tensor(a, device=device).bitcast(dtypes.int32) + 1, a.view(np.int32) + 1)

def ex_softmax(device):
  a = rng_data(2, 5)
  e = np.exp(a - a.max(1, keepdims=True))
  check(Tensor(a, device=device).softmax(1), e / e.sum(1, keepdims=True), kind="transcendental")

def ex_reuse_realized(device):
  a = rng_data(4)
  b = Tensor(a, device=device) * 2
  c = b + 1          # holds b's graph, which realizing b then computes and stores
  b.realize()
  check(c, a * 2 + 1)

def ex_gradient_after_a_read(device):
  a = rng_data(4)
  w = Tensor(a, device=device, requires_grad=True)
  loss = (w * w).sum()
  loss.item()        # stores the loss; backward() then walks the graph it was computed from
  loss.backward()
  check(w.grad, 2 * a)

def ex_reduce_read_by_two_kernels(device):
  a = rng_data(3, 4)
  s = Tensor(a, device=device).sum(1)  # read by both outputs' kernels: stored once
  x, y = s + 1, s * 2
  Tensor.realize(x, y)
  check(x, a.sum(1) + 1); check(y, a.sum(1) * 2)

def ex_contiguous_detach(device):
  a = rng_data(3, 4)
  check(Tensor(a, device=device).permute(1, 0).contiguous().detach() * 2, a.T * 2)

def ex_assign_then_read(device):
  x = Tensor(np.array([1, 2, 3], dtype=np.int32), device=device)
  x.assign(x + 5)
  check(x * 10, np.array([60, 70, 80]))

def ex_copy(device):
  a = rng_data(5)
  check((Tensor(a, device=device) * 2).to(other_device(device)) + 1, a * 2 + 1)

def ex_empty_reduce(device):
  check(Tensor(np.zeros((0,), np.float32), device=device).sum(), np.float32(0))

def ex_variable_in_a_kernel(device):
  # No Tensor op makes a DEFINE_VAR yet, so this kernel AST is built by hand: out = in + v. After lowering, v is
  # given a value (no device runs DEFINE_VAR itself) and the kernel runs on the device.
  skip_unsupported(device, dtypes.int32)
  v = UOp.variable("v", 0, 10)
  src, out = UOp(Ops.PARAM, dtypes.int32, (), (1, 4)), UOp(Ops.PARAM, dtypes.int32, (), (0, 4))
  lowered = tiny.lower(UOp.sink(UOp(Ops.STORE, dtypes.void, (out, src + v))))
  k = Kernel()
  k.output(dtypes.int32, 4)                   # PARAM 0
  k.input(dtypes.int32, [1, -2, 30, 4])       # PARAM 1
  got = k.run(device, "define_var", *substitute(lowered, {v: UOp.const(dtypes.int32, 7)}).src)[0]
  assert got == [8, 5, 37, 11], f"a lowered kernel with a variable set to 7 computed {got}"

def ex_optimized_matmul(device):
  # the heuristic upcasts the rows (copies of the stores; the split row index spread over the row stride)
  a, b = rng_data(16, 16), rng_data(16, 16, seed=1)
  with tiny.Context(NOOPT=0): got = (Tensor(a, device=device) @ Tensor(b, device=device)).numpy()  # also when the suite runs NOOPT=1
  # 16 products of up to 9 in size, summed in another order than numpy's: float32 rounding leaves about 1e-5 absolute
  np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-5, atol=2e-5)
  c = rng_data(64, 64)  # a GPU copies an elementwise kernel's contiguous axis by 4, here read at a stride of 64
  with tiny.Context(NOOPT=0): check(Tensor(c, device=device).T * 2, c.T * 2)

def ex_linear_with_lanes_along_the_reduce(device):
  # x @ W.T reads both inputs along the reduced axis: its lanes are partial sums, combined after every other loop
  x, w = rng_data(8, 64), rng_data(16, 64, seed=1)
  with tiny.Context(NOOPT=0): check((Tensor(x, device=device) @ Tensor(w, device=device).T).relu(), np.maximum(x @ w.T, 0))
  # 64 = 4*16 terms: lanes of 8 leave the level of 16 two trips, which join the level of 4 around it (in float64 too,
  # whose lanes are 4 or 8: AVX-512's 16 float32 lanes leave nothing to join)
  if dtypes.float64 in Device[device].renderer.supported_dtypes:
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    with tiny.Context(NOOPT=0): check(Tensor(x64, device=device) @ Tensor(w64, device=device).T, x64 @ w64.T)

def ex_unrolled_max(device):
  # a reduce longer than 16 is unrolled by 4: the REDUCE then names the two halves of its split loop
  a = np.random.default_rng(0).integers(-1000, 1000, 4096).astype(np.int32)
  with tiny.Context(NOOPT=0): check(Tensor(a, device=device).max(), a.max())

def ex_gated_store(device):
  check_gated_store(device)  # a hand-built kernel too: the lowering never makes a store that may not happen

TENSOR_EXAMPLES: dict[str, Callable[[str], None]] = {fn.__name__.removeprefix("ex_"): fn for fn in [
  ex_broadcast_chain, ex_permute_flip_reshape, ex_pad_shrink, ex_reductions, ex_matmul, ex_arange_cast_bitcast, ex_softmax,
  ex_reuse_realized, ex_gradient_after_a_read, ex_reduce_read_by_two_kernels, ex_contiguous_detach, ex_assign_then_read, ex_copy, ex_empty_reduce, ex_variable_in_a_kernel, ex_optimized_matmul, ex_linear_with_lanes_along_the_reduce, ex_unrolled_max, ex_gated_store]}

# ## Gradients: on the device, against central differences of numpy

@dataclass(frozen=True)
class Gradient:
  fn: Callable             # tiny: tensors -> tensor
  ref: Callable            # numpy, float64: arrays -> array
  inputs: tuple            # shapes, and "pos" for inputs that must stay positive, "distinct" for no ties

def other_device_copy(x: Tensor) -> Tensor: return x.to(other_device(x.device)) * 1

GRADIENTS: dict[str, Gradient] = {
  "cast": Gradient(lambda x: x.cast(dtypes.float32) * 2, lambda x: x * 2, ((3,),)),
  "neg": Gradient(lambda x: -x, lambda x: -x, ((3,),)),
  "reciprocal": Gradient(lambda x: x.reciprocal(), lambda x: 1 / x, (("pos", 3),)),
  "sqrt": Gradient(lambda x: x.sqrt(), np.sqrt, (("pos", 3),)),
  "exp2": Gradient(lambda x: x.exp2(), np.exp2, ((3,),)),
  "log2": Gradient(lambda x: x.log2(), np.log2, (("pos", 3),)),
  "sin": Gradient(lambda x: x.sin(), np.sin, ((3,),)),
  "add and mul": Gradient(lambda x, y: x * y + x, lambda x, y: x * y + x, ((2, 3), (2, 3))),
  "maximum": Gradient(lambda x, y: x.maximum(y), np.maximum, (("distinct", 4), ("distinct", 4))),
  "trunc (no gradient)": Gradient(lambda x: x.trunc() * 0.5 + x, lambda x: np.trunc(x) * 0.5 + x, ((4,),)),
  "where and comparison": Gradient(lambda x, y: (x < y).where(x, y * 3), lambda x, y: np.where(x < y, x, y * 3), (("distinct", 4), ("distinct", 4))),
  "sum, prod, max": Gradient(lambda x: x.sum(1) + x.prod(1) + x.max(1), lambda x: x.sum(1) + x.prod(1) + x.max(1), (("distinct", 2, 3),)),
  "reshape, permute, expand": Gradient(lambda x: x.reshape(3, 2).permute(1, 0).reshape(2, 3, 1).expand(2, 3, 4),
                                       lambda x: np.broadcast_to(x.reshape(3, 2).T.reshape(2, 3, 1), (2, 3, 4)), ((6,),)),
  "pad, shrink, flip": Gradient(lambda x: x.pad(((1, 2), (0, 1))).shrink(((0, 4), (1, 3))).flip(0),
                                lambda x: np.pad(x, ((1, 2), (0, 1)))[0:4, 1:3][::-1], ((2, 3),)),
  "contiguous": Gradient(lambda x: x.permute(1, 0).contiguous() * 2, lambda x: x.T * 2, ((2, 3),)),
  "copy": Gradient(other_device_copy, lambda x: x, ((3,),)),
}

def gradient_inputs(spec: tuple, seed: int) -> list[np.ndarray]:
  rng, out = np.random.default_rng(seed), []
  for s in spec:
    kind, shape = (s[0], s[1:]) if isinstance(s[0], str) else ("any", s)
    n = math.prod(shape)
    if kind == "pos": out.append(rng.uniform(0.5, 2.0, shape))
    elif kind == "distinct": out.append((rng.permutation(n) * 0.37 - n * 0.15 + rng.uniform(-0.05, 0.05, n)).reshape(shape))
    else: out.append(rng.uniform(-2, 2, shape))
  return out

def check_gradient(device: str, g: Gradient) -> None:
  skip_unsupported(device, dtypes.float64)
  xs = gradient_inputs(g.inputs, 0)
  weights = np.random.default_rng(1).uniform(-1, 1, np.shape(g.ref(*xs)))
  loss = lambda *arrays: float((g.ref(*arrays) * weights).sum())
  ts = [Tensor(x, device=device, requires_grad=True) for x in xs]
  out = g.fn(*ts)
  (out * Tensor(weights, device=out.device)).sum().backward()
  for i, (x, t) in enumerate(zip(xs, ts)):
    fd = np.zeros_like(x)
    for j in np.ndindex(x.shape):
      up, down = [a.copy() for a in xs], [a.copy() for a in xs]
      up[i][j] += 1e-6; down[i][j] -= 1e-6
      fd[j] = (loss(*up) - loss(*down)) / 2e-6
    np.testing.assert_allclose(t.grad.numpy(), fd, rtol=1e-5, atol=1e-6, err_msg=f"gradient of input {i} on {device}")

# ## Running the examples

@dataclass(frozen=True)
class Run:
  fired: dict[int, str | None]   # id(UPat) -> None if the values were right, else what went wrong
  skipped: str | None = None     # why the example could not run on this device
  per_match: bool = False        # were the values checked match by match (expressions), or for the whole example?

def _run_recorded(fn: Callable[[], None]) -> Run:
  with recording() as rec:
    try: fn()
    except pytest.skip.Exception as e: return Run({}, str(e))
    except Exception as e: failure = f"{type(e).__name__}: {e}"
    else: failure = None
  return Run({id(rule): failure for _, _, rule in rec.matches})

EXAMPLE_NAMES = [f"expression: {n}" for n in EXPRESSIONS] + [f"tensor: {n}" for n in TENSOR_EXAMPLES] + [f"gradient: {n}" for n in GRADIENTS]

@functools.cache
def run_example(name: str, device: str) -> Run:
  kind, _, key = name.partition(": ")
  if kind == "expression":
    results = expression_results(device)
    fired: dict[int, str | None] = {}
    for before, after, rule in expression_matches()[key]:
      if (before, after) not in results: return Run({}, f"{device} does not support a dtype of this expression")
      fired[id(rule)] = fired.get(id(rule)) or results[(before, after)]
    return Run(fired, per_match=True)
  if kind == "tensor": return _run_recorded(lambda: TENSOR_EXAMPLES[key](device))
  return _run_recorded(lambda: check_gradient(device, GRADIENTS[key]))

class ProbeRenderer(tiny.CStyleRenderer):
  """A C-style renderer that spells every ALU op, to see which string_rewrite rules fire where no C device is."""
  code_for_op = {**tiny.CStyleRenderer.code_for_op,
                 **{op: (lambda *a, name=op.name: f"{name}({', '.join(a[:-1])})") for op in GroupOp.ALU if op not in tiny.CStyleRenderer.code_for_op}}

@functools.cache
def discover() -> dict[int, list[str]]:
  """Which examples fire each rule (by id of its UPat), on every device that works here, and rendered as C."""
  fired: dict[int, list[str]] = {}
  for device in available_devices():
    for name in EXAMPLE_NAMES:
      for rule in run_example(name, device).fired: fired.setdefault(rule, []).append(f"{name} on {device}")
  programs, linearize = [], tiny.linearize  # every program the tensor examples make on PYTHON, rendered as C too
  tiny.linearize = lambda sink: programs.append(linearize(sink)) or programs[-1]
  try:
    for name in TENSOR_EXAMPLES:
      with contextlib.suppress(Exception): TENSOR_EXAMPLES[name]("PYTHON")
  finally: tiny.linearize = linearize
  with recording() as rec:
    for program in programs: ProbeRenderer().render("probe", program)
  for _, _, rule in rec.matches: fired.setdefault(id(rule), []).append("a tensor example rendered as C")
  return fired

# ## The test

@pytest.mark.parametrize("rule", RULES, ids=str)
def test_rule(device, rule):
  if rule.matcher == "string_rewrite" and not isinstance(Device[device].renderer, tiny.CStyleRenderer):
    pytest.skip(f"{device}'s renderer does not render through string_rewrite")
  if rule.matcher == "pm_lanes_last" and not Device[device].renderer.vector_bytes: pytest.skip(f"{device} has no vector lanes")
  if "." in rule.matcher and rule.matcher.split(".")[0] != device: pytest.skip(f"a rule of the {rule.matcher.split('.')[0]} backend")
  runs = {name: run_example(name, device) for name in EXAMPLE_NAMES}
  fired = {name: run.fired[id(rule.pattern)] for name, run in runs.items() if id(rule.pattern) in run.fired}
  if not fired:
    skipped = [f"{name}: {run.skipped}" for name, run in runs.items() if run.skipped]
    if skipped and id(rule.pattern) in discover(): pytest.skip(f"the examples that fire it could not run here: {'; '.join(skipped)}")
    pytest.fail(f"no example fires rule {rule.describe()} on {device}: add one to spec/test_rules.py")
  bad = [f"--- {name}:\n{failure}" for name, failure in fired.items() if failure and is_suspect(rule, runs[name], runs)]
  assert not bad, f"rule {rule.describe()} fired, and the rewritten graph computed wrong values on {device}:\n" + "\n".join(bad[:3])

def is_suspect(rule: Rule, wrong: Run, runs: dict[str, Run]) -> bool:
  """Is this rule to blame for an example that computed wrong values? A match-by-match check names its rule. A whole
  example fires many rules: blame those of them that fire in no example that computed right values, or, if every
  one of them does, all of them. (A wrong example is always blamed on some rule: the suite never hides it.)"""
  if wrong.per_match: return True
  cleared = {r for run in runs.values() for r, failure in run.fired.items() if failure is None}
  unique = {r for r in wrong.fired if r not in cleared}
  return id(rule.pattern) in unique or not unique
