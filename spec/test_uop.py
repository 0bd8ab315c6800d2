"""Chapter 3: UOps are immutable and hash-consed, walks are iterative, derived properties are lazy."""
import dataclasses, gc, math, os, pickle, random, subprocess, sys
import pytest
import tiny
from tiny import UOp, UOpMetaClass, Ops, GroupOp, dtypes, PatternMatcher, UPat, graph_rewrite, exec_alu, python_alu

x = UOp.variable("x", 0, 9)
y = UOp.variable("y", 0, 3)

# ## Hash-consing: equal graphs are one object

def test_structurally_equal_graphs_are_the_same_object():
  a = (UOp.variable("x", 0, 9) * 3 + UOp.const(dtypes.int32, 2)).maximum(UOp.variable("y", 0, 3))
  b = (x * 3 + 2).maximum(y)
  assert a is b
  assert UOp(Ops.ADD, dtypes.int32, (x, y)) is x + y

def test_different_fields_make_different_uops():
  assert x + y is not y + x  # src order is part of the structure
  assert UOp.variable("x", 0, 9) is not UOp.variable("x", 0, 10)
  assert UOp(Ops.CONST, dtypes.int32, arg=1) is not UOp(Ops.CONST, dtypes.int64, arg=1)

def test_common_subexpressions_are_shared():
  e = x * y + x * y
  assert e.src[0] is e.src[1]
  assert len(e.toposort()) == 4  # x, y, x*y, the sum

def test_replace_with_same_fields_returns_the_same_uop():
  e = x + y
  assert e.replace() is e
  assert e.replace(src=(x, y)) is e
  assert e.replace(op=Ops.MUL) is x * y

def test_uops_are_immutable():
  with pytest.raises(dataclasses.FrozenInstanceError): x.arg = ("z", 0, 1)

def test_pickle_round_trip_returns_the_same_uop():
  e = (x * 3 + y) // 2
  assert pickle.loads(pickle.dumps(e)) is e

def test_cache_does_not_leak():
  gc.collect()
  before = len(UOpMetaClass.cache)
  def build_and_drop() -> int:
    v = UOp.variable("leak", 0, 100)
    u = v
    for i in range(500): u = (u * 3 + i).maximum(v) // 2
    u.simplify(), u.key, u.vmin, u.shape  # rewrites and cached properties must not pin anything either
    return len(UOpMetaClass.cache)
  during = build_and_drop()
  gc.collect()
  assert during > before + 1000
  assert len(UOpMetaClass.cache) == before

# ## Constants that Python calls equal are different UOps

def test_negative_zero_and_zero_are_different_consts():
  pz, nz = UOp.const(dtypes.float32, 0.0), UOp.const(dtypes.float32, -0.0)
  assert pz is not nz
  assert math.copysign(1, nz.arg) == -1 and math.copysign(1, pz.arg) == 1
  assert UOp.const(dtypes.float32, -0.0) is nz
  assert pz.key != nz.key

def test_nan_consts_intern_to_one_object():
  a = UOp.const(dtypes.float32, float("nan"))
  b = UOp.const(dtypes.float32, math.inf - math.inf)  # a different nan object
  assert a is b
  assert UOp.const(dtypes.float64, math.nan) is not a  # the dtype still matters

def test_int_one_and_bool_true_are_different_consts():
  one, true = UOp(Ops.CONST, dtypes.int32, arg=1), UOp(Ops.CONST, dtypes.int32, arg=True)
  assert one is not true
  assert one.key != true.key
  assert UOp(Ops.CONST, dtypes.float32, arg=1) is not UOp(Ops.CONST, dtypes.float32, arg=1.0)

def test_float_keys_reach_inside_tuple_args():
  assert UOp(Ops.RESHAPE, dtypes.float32, (x,), arg=(0.0,)) is not UOp(Ops.RESHAPE, dtypes.float32, (x,), arg=(-0.0,))
  assert UOp(Ops.RESHAPE, dtypes.float32, (x,), arg=(1,)) is not UOp(Ops.RESHAPE, dtypes.float32, (x,), arg=(True,))

def test_const_converts_the_value_through_the_dtype():
  assert UOp.const(dtypes.float32, 1).arg == 1.0 and type(UOp.const(dtypes.float32, 1).arg) is float
  assert UOp.const(dtypes.float32, 1) is UOp.const(dtypes.float32, 1.0)
  assert UOp.const(dtypes.int8, 200).arg == -56
  assert UOp.const(dtypes.float32, 0.1).arg == 0.10000000149011612
  assert UOp.const(dtypes.bool, 2).arg is True

# ## Building graphs with operators

def test_operators_build_alu_uops():
  assert (x + 1).op is Ops.ADD and (x + 1).src == (x, UOp.const(dtypes.int32, 1))
  assert (1 + x).src == (UOp.const(dtypes.int32, 1), x)  # reflected operators keep the written order
  assert (x // 2).op is Ops.IDIV and (x % 2).op is Ops.MOD and (x ^ y).op is Ops.XOR
  assert (x << 1).op is Ops.SHL and (x >> 1).op is Ops.SHR and (x & y).op is Ops.AND and (x | y).op is Ops.OR

def test_int_subtraction_is_addition_of_times_minus_one():
  assert x - y is x + y * -1
  assert -x is x * -1
  assert 3 - x is x * -1 + 3

def test_float_subtraction_uses_neg():
  f, g = UOp.variable("f", -1, 1, dtypes.float32), UOp.variable("g", -1, 1, dtypes.float32)
  assert f - g is f + UOp(Ops.NEG, dtypes.float32, (g,))

def test_comparisons_are_bool_and_gt_swaps_sources():
  assert (x < y).dtype == dtypes.bool and (x < y).src == (x, y)
  assert (x > y) is (y < x)
  assert x.ne(3).op is Ops.CMPNE and x.ne(3).dtype == dtypes.bool

def test_where_takes_the_dtype_of_its_branches():
  f = UOp.variable("f", -1, 1, dtypes.float32)
  w = (x < 3).where(f, 0.5)
  assert w.op is Ops.WHERE and w.dtype == dtypes.float32 and w.src[2] is UOp.const(dtypes.float32, 0.5)
  assert (x < 3).where(1.5, f).src[1] is UOp.const(dtypes.float32, 1.5)

def test_cast_to_the_same_dtype_is_a_no_op():
  assert x.cast(dtypes.int32) is x
  assert x.cast(dtypes.float32).op is Ops.CAST and x.cast(dtypes.float32).dtype == dtypes.float32
  assert x.bitcast(dtypes.uint32).op is Ops.BITCAST

# ## Walks are iterative

def test_toposort_puts_sources_before_users_each_once():
  e = (x * y + x) // (y + 1)
  order = list(e.toposort())
  assert order[-1] is e and len(order) == len(set(order))
  for i, u in enumerate(order):
    assert all(order.index(s) < i for s in u.src)
  assert set(order) == {x, y, x * y, x * y + x, UOp.const(dtypes.int32, 1), y + 1, e}

def test_toposort_gate_stops_the_walk():
  e = (x * y) + 1
  inside = e.toposort(lambda u: u.op is not Ops.MUL)  # a gated-out node is left out, and so is all below it
  assert list(inside) == [UOp.const(dtypes.int32, 1), e]

def test_listing_numbers_each_uop_once():
  lines = ((x + y) * 2).listing().splitlines()
  assert len(lines) == 5
  assert lines[-1].split()[:2] == ["4", "MUL"]

def test_chain_of_100000_uops_walks_and_rewrites_without_recursion():
  n = 100_000
  u, zero = x, UOp.const(dtypes.int32, 0)
  for _ in range(n): u = u + zero
  assert len(u.toposort()) == n + 2  # x, the constant 0, and n ADDs
  assert u.shape == () and (u.vmin, u.vmax) == (0, 9) and len(u.key) == 32
  assert u.simplify() is x  # n identities removed
  ones = graph_rewrite(u, PatternMatcher([(UPat.const(dtypes.int32, 0), lambda: UOp.const(dtypes.int32, 1))]), name="zeros to ones")
  assert (ones.vmin, ones.vmax) == (n, n + 9)

# ## Derived properties

def test_key_is_a_content_hash_equal_across_processes():
  e = (x * 3 + y) // 2
  code = "import tiny; x, y = tiny.UOp.variable('x', 0, 9), tiny.UOp.variable('y', 0, 3); print(((x * 3 + y) // 2).key.hex())"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=os.path.dirname(tiny.__file__))
  assert out.stdout.strip() == e.key.hex()
  assert e.key != ((x * 3 + y) // 3).key and (x + y).key != (y + x).key

def test_shape_follows_movement_ops():
  c = UOp.const(dtypes.float32, 1.0)
  assert c.shape == () and x.shape == ()
  r = UOp(Ops.RESHAPE, dtypes.float32, (c,), arg=(1, 1))
  e = UOp(Ops.EXPAND, dtypes.float32, (r,), arg=(2, 3))
  p = UOp(Ops.PERMUTE, dtypes.float32, (e,), arg=(1, 0))
  pad = UOp(Ops.PAD, dtypes.float32, (p,), arg=((1, 0), (0, 2)))
  s = UOp(Ops.SHRINK, dtypes.float32, (pad,), arg=((0, 2), (1, 3)))
  red = UOp(Ops.REDUCE_AXIS, dtypes.float32, (s,), arg=(Ops.ADD, (0,)))
  assert [u.shape for u in (r, e, p, pad, s, red)] == [(1, 1), (2, 3), (3, 2), (4, 4), (2, 2), (1, 2)]
  assert (s + s).shape == (2, 2) and (s < s).shape == (2, 2) and s.cast(dtypes.int32).shape == (2, 2)

def test_elementwise_shape_ignores_scalar_constants():
  e = UOp(Ops.EXPAND, dtypes.float32, (UOp(Ops.RESHAPE, dtypes.float32, (UOp.const(dtypes.float32, 1.0),), arg=(1,)),), arg=(5,))
  assert (UOp.const(dtypes.float32, 2.0) * e).shape == (5,)

def test_kernel_level_uops_have_no_shape():
  assert UOp.sink(x).shape is None

def test_device_comes_from_a_device_source_or_copy_target():
  dev = UOp(Ops.DEVICE, arg="PYTHON")
  assert dev.device == "PYTHON"
  t = UOp(Ops.CONTIGUOUS, dtypes.float32, (UOp(Ops.CONST, dtypes.float32, (dev,), 1.0),))
  assert t.device == "PYTHON"
  assert UOp(Ops.COPY, dtypes.float32, (t, UOp(Ops.DEVICE, arg="CPU")), "CPU").device == "CPU"
  assert x.device is None

# ## The ALU table

def test_every_alu_op_has_a_python_definition():
  assert set(python_alu) == GroupOp.ALU

def test_commutative_ops_commute():
  rng = random.Random(0)
  for op in GroupOp.Commutative:
    for d in (dtypes.int8, dtypes.uint32, dtypes.bool) + (() if op in GroupOp.IntOnly else (dtypes.float32,)):
      for _ in range(50):
        a, b = (rng.random() < 0.5 if d == dtypes.bool else tiny.to_dtype(rng.randint(-300, 300), d) for _ in range(2))
        if d.is_float: a, b = float(a), float(b)
        assert exec_alu(op, d, [a, b]) == exec_alu(op, d, [b, a]), (op, d, a, b)
