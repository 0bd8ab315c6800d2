"""Chapter 5: every symbolic rule fires on an example and keeps values; constant folding at edge values; value bounds.

The oracle is a tiny evaluator that walks a graph and computes each node with `exec_alu`, the same table the
reference device runs. A rewrite is correct when the graph before and after it computes the same value for every
assignment of its variables within their bounds."""
import math, os, random
import numpy as np
import pytest
import tiny
from tiny import UOp, Ops, GroupOp, dtypes, exec_alu, to_dtype, bitcast_value, Tracer

# ## The evaluator

def evaluate(root: UOp, env: dict[str, object]) -> object:
  values: dict[UOp, object] = {}
  for u in root.toposort():
    srcs = [values[s] for s in u.src]
    if u.op is Ops.CONST: values[u] = u.arg
    elif u.op is Ops.DEFINE_VAR: values[u] = env[u.arg[0]]
    elif u.op is Ops.CAST: values[u] = to_dtype(srcs[0], u.dtype)
    elif u.op is Ops.BITCAST: values[u] = bitcast_value(srcs[0], u.src[0].dtype, u.dtype)
    elif u.op in GroupOp.ALU: values[u] = exec_alu(u.op, u.dtype, srcs)
    else: raise NotImplementedError(f"the evaluator does not know {u.op}")
  return values[root]

FLOAT_SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, math.inf, -math.inf, math.nan, 3e38, -1e-40]

def random_env(root: UOp, rng: random.Random) -> dict[str, object]:
  """Values for the variables of `root` within their bounds (endpoints included). A float variable bounded by
  +-inf may also be nan: the float rules must hold for every float."""
  env: dict[str, object] = {}
  for v in root.toposort():
    if v.op is not Ops.DEFINE_VAR: continue
    name, lo, hi = v.arg
    if v.dtype.is_float and (lo, hi) == (-math.inf, math.inf):
      env[name] = to_dtype(rng.choice(FLOAT_SPECIALS) if rng.random() < 0.4 else rng.uniform(-100, 100), v.dtype)
    elif v.dtype.is_float: env[name] = to_dtype(rng.choice([lo, hi, rng.uniform(lo, hi)]), v.dtype)
    else: env[name] = to_dtype(rng.choice([lo, hi, rng.randint(lo, hi), rng.randint(lo, hi)]), v.dtype)
  return env

def same(a: object, b: object) -> bool: return (a != a and b != b) or a == b  # nan equals nan here

def assert_same_values(before: UOp, after: UOp, seed: int = 0, n: int = 100) -> None:
  assert after.dtype == before.dtype
  rng = random.Random(seed)
  for _ in range(n):
    env = random_env(before, rng)
    want, got = evaluate(before, env), evaluate(after, env)
    assert same(want, got), f"{env}: before simplify {want!r}, after {got!r}\nbefore:\n{before.listing()}\nafter:\n{after.listing()}"

class RuleRecorder(Tracer):
  def __init__(self): self.fired: list[tiny.UPat] = []
  def match(self, before, after, rule): self.fired.append(rule)

def simplify_recording_rules(u: UOp) -> tuple[UOp, list[tiny.UPat]]:
  recorder, saved = RuleRecorder(), tiny.tracer
  tiny.tracer = recorder
  try: return u.simplify(), recorder.fired
  finally: tiny.tracer = saved

def location(rule: tiny.UPat) -> str: return f"{os.path.basename(rule.location[0])}:{rule.location[1]}"

# ## Variables of the examples

x, y = UOp.variable("x", 0, 9), UOp.variable("y", 0, 3)
w = UOp.variable("w", 0, 100)
n = UOp.variable("n", -5, 5)  # may be negative: where C's truncating division differs from floor division
f, g = UOp.variable("f", -math.inf, math.inf, dtypes.float32), UOp.variable("g", -math.inf, math.inf, dtypes.float32)
p = UOp.variable("p", False, True, dtypes.bool)
def i32(v: int) -> UOp: return UOp.const(dtypes.int32, v)
def f32(v: float) -> UOp: return UOp.const(dtypes.float32, v)
def b(v: bool) -> UOp: return UOp.const(dtypes.bool, v)
def neg(u: UOp) -> UOp: return UOp(Ops.NEG, u.dtype, (u,))

# ## One example per rule (and more): the expression and, where it is certain, its simplified form
#
# Each example runs through `simplify`; the coverage test below checks that together they fire every rule of
# `tiny.symbolic`, and every example is checked against the evaluator.

EXAMPLES: dict[str, tuple[UOp, UOp | None]] = {
  # constant folding
  "fold int add": (i32(2) + i32(3), i32(5)),
  "fold int8 wraps": (UOp.const(dtypes.int8, 127) + 1, UOp.const(dtypes.int8, -128)),
  "fold C division": (i32(-7) // i32(2), i32(-3)),
  "fold float mul": (f32(1.5) * f32(2.0), f32(3.0)),
  "fold inf - inf is nan": (f32(math.inf) + f32(-math.inf), f32(math.nan)),
  "fold comparison": (i32(3) < i32(4), b(True)),
  "fold where": (b(False).where(f32(1.0), f32(-0.0)), f32(-0.0)),
  "fold nested": ((i32(2) * i32(3) + i32(4)) // i32(3), i32(3)),
  "fold cast float to int": (f32(2.7).cast(dtypes.int32), i32(2)),
  "fold cast overflows to inf": (UOp.const(dtypes.float64, 1e300).cast(dtypes.float32), f32(math.inf)),
  "fold cast int to bool": (i32(5).cast(dtypes.bool), b(True)),
  "fold bitcast": (f32(1.0).bitcast(dtypes.int32), i32(0x3f800000)),
  "fold bitcast negative zero": (f32(-0.0).bitcast(dtypes.uint32), UOp.const(dtypes.uint32, 0x80000000)),
  # identities for every dtype
  "x + 0": (x + 0, x),
  "x * 1": (x * 1, x),
  "f * 1.0": (1.0 * f, f),
  "x // 1": (n // 1, n),
  "-(-f)": (-(-f), f),
  "int neg of neg": (neg(neg(n)), n),
  "cast to same dtype": (UOp(Ops.CAST, dtypes.int32, (x,)), x),
  "float cast to same dtype": (UOp(Ops.CAST, dtypes.float32, (f,)), f),
  "max(x, x)": (x.maximum(x), x),
  "max(f, f)": (f.maximum(f), f),
  "where(True, x, y)": (b(True).where(x, y), x),
  "where(False, f, g)": (b(False).where(f, g), g),
  "where(c, f, f)": ((f < g).where(f, f), f),
  "x < x": (n < n, b(False)),
  "f < f": (f < f, b(False)),
  # identities for integers only
  "x * 0": (n * 0, i32(0)),
  "x % 1": (n % 1, i32(0)),
  "x != x": (n.ne(n), b(False)),
  "x ^ x": (n ^ n, i32(0)),
  "p ^ p": (p ^ p, b(False)),
  "x & x": (n & n, n),
  "x | x": (n | n, n),
  "p & p": (p & p, p),
  # bool algebra
  "p & True": (p & True, p),
  "p & False": (p & False, b(False)),
  "p | False": (p | False, p),
  "p | True": (p | True, b(True)),
  "True & p": (b(True) & p, p),
  # bounds pin a value
  "x < 10 by bounds": (x < 10, b(True)),
  "n < -5 by bounds": (n < -5, b(False)),
  "x // 10 by bounds": (x // 10, i32(0)),
  "x != 12 by bounds": (x.ne(12), b(True)),
  "max(x, 20) by bounds": (x.maximum(20), i32(20)),
  # canonical order
  "3 + x": (3 + x, x + 3),
  "5 * x": (5 * x, x * 5),
  # like terms and constants
  "x + x": (x + x, x * 2),
  "x*3 + x*5": (x * 3 + x * 5, x * 8),
  "x*3 + x": (x * 3 + x, x * 4),
  "(x + 3) + 5": ((x + 3) + 5, x + 8),
  "(x * 3) * 5": ((x * 3) * 5, x * 15),
  "(x + 3) + y": ((x + 3) + y, None),
  "(x + 3) * 5": ((x + 3) * 5, x * 5 + 15),
  "x - x": (n - n, i32(0)),
  "(x + 3) - (x + 1)": ((x + 3) - (x + 1), i32(2)),
  # division and remainder by constants
  "x % 10 when 0 <= x < 10": (x % 10, x),
  "(x*4 + y) // 4": ((x * 4 + y) // 4, x),
  "(x*4 + y) % 4": ((x * 4 + y) % 4, y),
  "(x*4) // 2": ((x * 4) // 2, x * 2),
  "(x*4) % 2": ((x * 4) % 2, i32(0)),
  "(w // 2) // 3": ((w // 2) // 3, w // 6),
  "(w % 6) % 3": ((w % 6) % 3, w % 3),
  "index of a reshape": ((x * 4 + y) % 40, (x * 4 + y).simplify()),
  "divide a sum term by term": ((x * 12 + y * 3 + 5) // 3, (x * 4 + y + 1).simplify()),
  "remainder of a sum keeps the remainders": ((x * 11 + y) % 10, ((x + y) % 10).simplify()),
}

# Expressions a careless rule would break: the rules must leave their values alone.
GUARDED: dict[str, UOp] = {
  "(n*4 + y) // 4 truncates toward zero": (n * 4 + y) // 4,
  "(n*4 + y) % 4 takes the dividend's sign": (n * 4 + y) % 4,
  "(n // 2) // 3": (n // 2) // 3,
  "(n % 6) % 3": (n % 6) % 3,
  "n // -2": n // -2,
  "n % -3": n % -3,
  "x // 4 with x up to 9": x // 4,
  "f * 0.0 (inf * 0 is nan)": f * 0.0,
  "f + 0.0 (-0.0 + 0.0 is 0.0)": f + 0.0,
  "f != f (nan != nan)": f.ne(f),
  "f + f": f + f,
  "(f + 1.0) + 2.0 (floats do not reassociate)": (f + 1.0) + 2.0,
  "-(-n) as ints": -(-n),
  "bool add is or": p + p,
  "where on a variable": (n < 0).where(n * -1, n),
  # integers wrap around (chapter 2): a rule may not assume x*c is the exact product
  "(j*4) // 2 where j*4 wraps in int8": (UOp.variable("j", 0, 100, dtypes.int8) * 4) // 2,
  "(j*3) % 3 where j*3 wraps in int8": (UOp.variable("j", 0, 100, dtypes.int8) * 3) % 3,
  "(u*4 + k) // 4 where u*4 wraps in uint8": (UOp.variable("u", 0, 100, dtypes.uint8) * 4 + UOp.variable("k", 0, 3, dtypes.uint8)) // 4,
  "(u*6 + k) % 6 where u*6 wraps in uint8": (UOp.variable("u", 0, 100, dtypes.uint8) * 6 + UOp.variable("k", 0, 3, dtypes.uint8)) % 6,
}

@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_simplifies_and_keeps_its_values(name):
  before, want = EXAMPLES[name]
  after, fired = simplify_recording_rules(before)
  assert fired, f"no rule fired on {name}"
  if want is not None: assert after is want, f"{name}: got\n{after.listing()}"
  assert_same_values(before, after)

@pytest.mark.parametrize("name", list(GUARDED))
def test_guarded_expression_keeps_its_values(name):
  assert_same_values(GUARDED[name], GUARDED[name].simplify(), n=300)

def test_every_symbolic_rule_fires_on_an_example():
  fired = {id(rule) for before, _ in EXAMPLES.values() for rule in simplify_recording_rules(before)[1]}
  missing = [location(pat) for pat, _ in tiny.symbolic.patterns if id(pat) not in fired]
  assert not missing, f"rules of tiny.symbolic with no example that fires them: {', '.join(missing)}"

def test_symbolic_simple_is_a_prefix_of_symbolic():
  simple = tiny.symbolic_simple.patterns
  assert all(r is s for r, s in zip(tiny.symbolic.patterns, simple)) and len(tiny.symbolic.patterns) > len(simple)

def test_int_only_rules_leave_floats_alone():
  for e in (f * 0.0, f.ne(f), f + f, (f + 1.0) + 2.0, (f * 2.0) * 3.0, f * 3.0 + f, (f + 1.0) * 2.0):
    assert len(e.simplify().toposort()) == len(e.toposort()), e.simplify().listing()  # nothing folded away

def test_commutative_ops_are_put_in_canonical_order():
  assert (y + x).simplify() is (x + y).simplify()
  assert (y * x).simplify() is (x * y).simplify()
  assert (w.maximum(x)).simplify() is (x.maximum(w)).simplify()
  assert ((x + 3) + y).simplify() is (y + (3 + x)).simplify()

def test_simplify_is_idempotent():
  for before, _ in EXAMPLES.values():
    once = before.simplify()
    assert once.simplify() is once

# ## Constant folding at edge values: exec_alu and the folded constant agree with C

inf, nan = math.inf, math.nan
EDGES = [
  # IEEE: nan, inf, signed zeros, overflow to inf at the dtype's width
  (Ops.ADD, dtypes.float32, [inf, -inf], nan), (Ops.MUL, dtypes.float32, [0.0, inf], nan),
  (Ops.MUL, dtypes.float32, [-0.0, 5.0], -0.0), (Ops.ADD, dtypes.float32, [-0.0, -0.0], -0.0),
  (Ops.ADD, dtypes.float32, [-0.0, 0.0], 0.0), (Ops.MUL, dtypes.float32, [1e38, 10.0], inf),
  (Ops.ADD, dtypes.float16, [65504.0, 32.0], inf), (Ops.MUL, dtypes.float64, [1e300, 1e300], inf),
  (Ops.NEG, dtypes.float32, [0.0], -0.0), (Ops.NEG, dtypes.float32, [nan], nan),
  (Ops.RECIPROCAL, dtypes.float32, [0.0], inf), (Ops.RECIPROCAL, dtypes.float32, [-0.0], -inf),
  (Ops.RECIPROCAL, dtypes.float32, [-inf], -0.0), (Ops.SQRT, dtypes.float32, [-1.0], nan),
  (Ops.SQRT, dtypes.float32, [-0.0], -0.0), (Ops.SQRT, dtypes.float32, [inf], inf),
  (Ops.LOG2, dtypes.float32, [0.0], -inf), (Ops.LOG2, dtypes.float32, [-0.0], -inf),
  (Ops.LOG2, dtypes.float32, [-1.0], nan), (Ops.LOG2, dtypes.float32, [inf], inf), (Ops.LOG2, dtypes.float32, [nan], nan),
  (Ops.EXP2, dtypes.float32, [200.0], inf), (Ops.EXP2, dtypes.float64, [2000.0], inf), (Ops.EXP2, dtypes.float32, [-inf], 0.0),
  (Ops.EXP2, dtypes.float32, [3.0], 8.0), (Ops.SIN, dtypes.float32, [inf], nan), (Ops.SIN, dtypes.float32, [-0.0], -0.0),
  (Ops.TRUNC, dtypes.float32, [-0.5], -0.0), (Ops.TRUNC, dtypes.float32, [2.75], 2.0), (Ops.TRUNC, dtypes.float32, [-inf], -inf),
  (Ops.TRUNC, dtypes.float32, [nan], nan),
  # MAX propagates nan from either side
  (Ops.MAX, dtypes.float32, [nan, 1.0], nan), (Ops.MAX, dtypes.float32, [1.0, nan], nan), (Ops.MAX, dtypes.float32, [-inf, -1.0], -1.0),
  # comparisons with nan are false, except !=
  (Ops.CMPLT, dtypes.float32, [nan, 1.0], False), (Ops.CMPLT, dtypes.float32, [1.0, nan], False),
  (Ops.CMPNE, dtypes.float32, [nan, nan], True), (Ops.CMPLT, dtypes.float32, [-0.0, 0.0], False),
  (Ops.CMPNE, dtypes.float32, [-0.0, 0.0], False), (Ops.CMPLT, dtypes.float32, [-inf, inf], True),
  (Ops.WHERE, dtypes.float32, [True, 1.0, nan], 1.0), (Ops.WHERE, dtypes.float32, [False, 1.0, -0.0], -0.0),
  # integers wrap around
  (Ops.ADD, dtypes.int8, [127, 1], -128), (Ops.ADD, dtypes.uint8, [255, 1], 0), (Ops.MUL, dtypes.int32, [65536, 65536], 0),
  (Ops.MUL, dtypes.int32, [2**31 - 1, 2], -2), (Ops.MUL, dtypes.uint64, [2**63, 2], 0), (Ops.NEG, dtypes.int8, [-128], -128),
  (Ops.NEG, dtypes.uint8, [1], 255), (Ops.SHL, dtypes.int8, [1, 7], -128), (Ops.SHL, dtypes.uint8, [255, 1], 254),
  (Ops.SHR, dtypes.uint8, [128, 7], 1), (Ops.XOR, dtypes.int8, [-1, 127], -128), (Ops.AND, dtypes.uint8, [0xF0, 0x3C], 0x30),
  (Ops.OR, dtypes.uint8, [0xF0, 0x0F], 0xFF), (Ops.MAX, dtypes.int8, [-128, 127], 127), (Ops.CMPLT, dtypes.uint8, [0, 255], True),
  # C division truncates toward zero; the remainder takes the dividend's sign
  (Ops.IDIV, dtypes.int32, [-7, 2], -3), (Ops.MOD, dtypes.int32, [-7, 2], -1), (Ops.IDIV, dtypes.int32, [7, -2], -3),
  (Ops.MOD, dtypes.int32, [7, -2], 1), (Ops.IDIV, dtypes.int32, [-7, -2], 3), (Ops.MOD, dtypes.int32, [-7, -2], -1),
  (Ops.IDIV, dtypes.int32, [7, 2], 3), (Ops.MOD, dtypes.int32, [7, 2], 1), (Ops.IDIV, dtypes.int32, [-1, 5], 0),
  (Ops.IDIV, dtypes.uint32, [2**32 - 1, 2], 2**31 - 1), (Ops.MOD, dtypes.int8, [-128, 3], -2),
  # bool: + is or, * is and, - is not
  (Ops.ADD, dtypes.bool, [True, True], True), (Ops.MUL, dtypes.bool, [True, False], False), (Ops.NEG, dtypes.bool, [True], False),
  (Ops.MAX, dtypes.bool, [False, True], True), (Ops.CMPLT, dtypes.bool, [False, True], True),
]

def identical(a: object, b: object) -> bool:
  """Same value, and for floats the same sign of zero."""
  if isinstance(a, float) or isinstance(b, float):
    return isinstance(a, float) and isinstance(b, float) and ((a != a and b != b) or (a == b and math.copysign(1, a) == math.copysign(1, b)))
  return type(a) is type(b) and a == b

@pytest.mark.parametrize("op,dtype,srcs,want", EDGES, ids=lambda v: v.name if isinstance(v, Ops) else str(v))
def test_constant_folding_at_edge_values(op, dtype, srcs, want):
  out = dtypes.bool if op in GroupOp.Comparison else dtype
  assert identical(exec_alu(op, out, srcs), want)
  consts = tuple(UOp.const(dtypes.bool if op is Ops.WHERE and i == 0 else dtype, v) for i, v in enumerate(srcs))
  folded = UOp(op, out, consts).simplify()
  assert folded.op is Ops.CONST and identical(folded.arg, want)

def test_integer_division_matches_c_on_random_values():
  rng = random.Random(0)
  for _ in range(2000):
    num, den = rng.randint(-2**31, 2**31 - 1), rng.choice([rng.randint(-2**31, -1), rng.randint(1, 2**31 - 1), rng.randint(-9, 9) or 1])
    rem = int(np.fmod(np.int64(num), np.int64(den)))  # numpy's fmod is C's %
    assert exec_alu(Ops.MOD, dtypes.int64, [num, den]) == rem
    assert exec_alu(Ops.IDIV, dtypes.int64, [num, den]) == (num - rem) // den

@pytest.mark.parametrize("dtype", [dtypes.float16, dtypes.float32], ids=str)
def test_float_alu_rounds_like_numpy(dtype):
  rng, npd = random.Random(0), {dtypes.float16: np.float16, dtypes.float32: np.float32}[dtype]
  values = [to_dtype(rng.choice([-1, 1]) * rng.uniform(1, 2) * 2.0 ** rng.randint(-30, 30), dtype) for _ in range(300)]
  values += [0.0, -0.0, inf, -inf, nan, float(np.finfo(npd).max)]
  with np.errstate(all="ignore"):
    for _ in range(1000):
      a, c = rng.choice(values), rng.choice(values)
      for op, ref in [(Ops.ADD, lambda: npd(a) + npd(c)), (Ops.MUL, lambda: npd(a) * npd(c)), (Ops.MAX, lambda: np.maximum(npd(a), npd(c))),
                      (Ops.RECIPROCAL, lambda: npd(1) / npd(a)), (Ops.SQRT, lambda: np.sqrt(npd(a)))]:
        srcs = [a] if op in GroupOp.Unary else [a, c]
        want, got = float(ref()), exec_alu(op, dtype, srcs)
        if op is Ops.MAX and a == c == 0: continue  # the sign of max(0.0, -0.0) is not pinned down
        assert identical(got, want), (op, dtype, srcs, got, want)

# ## Value bounds

r = UOp(Ops.RANGE, dtypes.int32, (i32(10),), arg=0)

BOUNDS = [
  (x, 0, 9), (r, 0, 9), (r * 4 + 3, 3, 39), ((r * 4 + 3) // 64, 0, 0), (x % 4, 0, 3), (n % 4, -3, 3), (x % 20, 0, 9),
  (n // 2, -2, 2), (w // -3, -33, 0), (-x, -9, 0), (x - y, -3, 9), (x * n, -45, 45), (x.maximum(5), 5, 9),
  ((x < 5).where(x, y + 20), 0, 23), (x & 7, 0, 7), (x.cast(dtypes.int8), 0, 9), (w.cast(dtypes.uint8), 0, 100),
  (x < 10, True, True), (x < 5, False, True), (x.ne(10), True, True), (n.ne(0), False, True),
  ((x < 10) & (n < 6), True, True), ((x < 5) | (x < 20), True, True),
  # where an op could overflow, the bounds widen to the whole dtype
  (UOp.variable("j", 0, 100, dtypes.int8) * 2, -128, 127), (UOp.variable("u", 0, 40, dtypes.uint8) - 1, 0, 255),
  (UOp.variable("big", 0, 300, dtypes.int16).cast(dtypes.int8), -128, 127),
  (x ^ y, -2**31, 2**31 - 1), (f, -inf, inf), (f + 1.0, -inf, inf),
]

@pytest.mark.parametrize("u,lo,hi", BOUNDS, ids=lambda v: None)
def test_exact_bounds(u, lo, hi):
  assert (u.vmin, u.vmax) == (lo, hi)

def test_index_bounds_let_division_fold():
  assert ((r * 4 + 3) // 64).simplify() is i32(0)
  assert ((r * 4 + 3) % 64).simplify() is r * 4 + 3

def test_cast_of_float_constant_is_bounded_by_the_truncated_value():
  u = UOp(Ops.CAST, dtypes.int32, (f32(2.5),))  # not yet folded: its value is 2
  assert u.vmin <= evaluate(u, {}) <= u.vmax

# ## Random expressions: bounds are sound and simplify keeps values

INT_VARS = {dtypes.int8: [UOp.variable("i", -20, 20, dtypes.int8), UOp.variable("j", 0, 100, dtypes.int8)],
            dtypes.uint8: [UOp.variable("u", 0, 40, dtypes.uint8), UOp.variable("v", 0, 255, dtypes.uint8)],
            dtypes.int32: [x, y, w, n]}

def random_int(rng: random.Random, d, depth: int) -> UOp:
  if depth == 0 or rng.random() < 0.15:
    return rng.choice(INT_VARS[d]) if rng.random() < 0.7 else UOp.const(d, rng.randint(0 if d.is_unsigned else -8, 8))
  def sub() -> UOp: return random_int(rng, d, depth - 1)
  kind = rng.choice(["add", "sub", "mul", "neg", "max", "where", "div", "mod", "index", "and", "xor", "cast"])
  if kind == "add": return sub() + sub()
  if kind == "sub": return sub() - sub()
  if kind == "mul": return sub() * (sub() if rng.random() < 0.3 else rng.randint(-4, 8))
  if kind == "neg": return -sub() if rng.random() < 0.5 else neg(sub())
  if kind == "max": return sub().maximum(sub())
  if kind == "where": return random_bool(rng, depth - 1).where(sub(), sub())
  divisor = rng.choice([1, 2, 3, 4, 6, 8] + ([] if d.is_unsigned else [-2, -3]))
  if kind == "div": return sub() // divisor
  if kind == "mod": return sub() % divisor
  if kind == "index": return (sub() * rng.choice([2, 4, 6, 8]) + sub()) // divisor if rng.random() < 0.5 else (sub() * rng.choice([2, 4, 6]) + sub()) % divisor
  if kind == "and": return sub() & rng.randint(0, 15)
  if kind == "xor": return sub() ^ sub()
  return random_int(rng, rng.choice([o for o in INT_VARS if o != d]), depth - 1).cast(d)

def random_bool(rng: random.Random, depth: int) -> UOp:
  if depth == 0 or rng.random() < 0.15: return p if rng.random() < 0.7 else b(rng.random() < 0.5)
  d = rng.choice(list(INT_VARS))
  kind = rng.choice(["lt", "ne", "and", "or", "cast"])
  if kind == "lt": return random_int(rng, d, depth - 1) < random_int(rng, d, depth - 1)
  if kind == "ne": return random_int(rng, d, depth - 1).ne(random_int(rng, d, depth - 1))
  if kind == "and": return random_bool(rng, depth - 1) & random_bool(rng, depth - 1)
  if kind == "or": return random_bool(rng, depth - 1) | random_bool(rng, depth - 1)
  return random_int(rng, d, depth - 1).cast(dtypes.bool)

def random_exprs(seed: int, count: int) -> list[UOp]:
  rng = random.Random(seed)
  return [random_bool(rng, 4) if i % 4 == 3 else random_int(rng, list(INT_VARS)[i % 3], 4) for i in range(count)]

def test_bounds_hold_on_random_expressions():
  rng = random.Random(1)
  for e in random_exprs(0, 300):
    for node in e.toposort():  # every subexpression too
      if node.op is Ops.DEFINE_VAR: continue
      for _ in range(5):
        env = random_env(e, rng)
        assert node.vmin <= evaluate(node, env) <= node.vmax, f"{env}: {evaluate(node, env)} outside [{node.vmin}, {node.vmax}]\n{node.listing()}"

def test_simplify_keeps_values_on_random_expressions():
  for i, e in enumerate(random_exprs(1, 300)):
    assert_same_values(e, e.simplify(), seed=i, n=30)
