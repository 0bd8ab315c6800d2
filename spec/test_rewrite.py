"""Chapter 4: UPat matching one feature at a time, PatternMatcher order, graph_rewrite to a fixed point, errors, tracing."""
import linecache, os, sys
import pytest
import tiny
from tiny import UOp, UPat, PatternMatcher, Ops, dtypes, graph_rewrite, RewriteError, Context, Tracer, REWRITE_LIMIT

a, b = UOp.variable("a", 0, 9), UOp.variable("b", 0, 9)
f = UOp.variable("f", -1, 1, dtypes.float32)
def const(v: int) -> UOp: return UOp.const(dtypes.int32, v)
def here() -> tuple[str, int]: return (__file__, sys._getframe(1).f_lineno)  # this file and the caller's line

# ## UPat: one feature at a time

def test_op_filter():
  assert UPat(Ops.ADD).match(a + b, {}) == [{}]
  assert UPat(Ops.ADD).match(a * b, {}) == []

def test_op_set_filter():
  pat = UPat((Ops.ADD, Ops.MUL))
  assert pat.match(a + b, {}) and pat.match(a * b, {}) and not pat.match(a // b, {})

def test_no_op_matches_every_op():
  assert all(UPat().match(u, {}) == [{}] for u in (a, const(1), a + b, a < b, UOp.sink()))

def test_dtype_filter():
  assert UPat(dtype=dtypes.float32).match(f, {}) and not UPat(dtype=dtypes.float32).match(a, {})
  pat = UPat(dtype=(dtypes.int32, dtypes.bool))
  assert pat.match(a, {}) and pat.match(a < b, {}) and not pat.match(f, {})

def test_arg_filter():
  assert UPat(Ops.CONST, arg=3).match(const(3), {}) and not UPat(Ops.CONST, arg=3).match(const(4), {})
  assert UPat(Ops.DEFINE_VAR, arg=("a", 0, 9)).match(a, {}) and not UPat(Ops.DEFINE_VAR, arg=("a", 0, 9)).match(b, {})

def test_tuple_src_matches_in_order():
  pat = UPat(Ops.CMPLT, src=(UPat(Ops.DEFINE_VAR, name="v"), UPat(Ops.CONST, name="c")))
  assert pat.match(a < 3, {}) == [{"v": a, "c": const(3)}]
  assert pat.match(a > 3, {}) == []  # CMPLT(3, a): wrong order

def test_tuple_src_requires_the_same_number_of_sources():
  pat = UPat(Ops.SINK, src=(UPat(), UPat()))
  assert pat.match(UOp.sink(a, b), {}) and not pat.match(UOp.sink(a), {}) and not pat.match(UOp.sink(a, b, a), {})

def test_list_src_matches_in_any_order():
  pat = UPat(Ops.ADD, src=[UPat(Ops.CONST, name="c"), UPat(Ops.DEFINE_VAR, name="v")])
  assert pat.match(a + 3, {}) == [{"c": const(3), "v": a}]
  assert pat.match(3 + a, {}) == [{"c": const(3), "v": a}]
  assert pat.match(a + b, {}) == []

def test_list_src_yields_every_way_to_match():
  matches = UPat(Ops.ADD, src=[UPat(name="p"), UPat(name="q")]).match(a + b, {})
  assert sorted((m["p"].arg[0], m["q"].arg[0]) for m in matches) == [("a", "b"), ("b", "a")]

@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_single_upat_matches_every_source_however_many(n):
  pat = UPat(Ops.SINK, src=UPat(Ops.CONST))
  assert pat.match(UOp.sink(*[const(i) for i in range(n)]), {}) == [{}]
  assert pat.match(UOp.sink(*[const(i) for i in range(n)], a), {}) == []

def test_single_named_upat_binds_every_source_to_the_same_uop():
  pat = UPat(Ops.SINK, src=UPat(name="s"))
  assert pat.match(UOp.sink(a, a, a), {}) == [{"s": a}]
  assert pat.match(UOp.sink(a, b), {}) == []

def test_allow_any_len_matches_a_prefix_of_the_sources():
  pat = UPat(Ops.SINK, src=(UPat(Ops.CONST, name="c"),), allow_any_len=True)
  assert pat.match(UOp.sink(const(1)), {}) == [{"c": const(1)}]
  assert pat.match(UOp.sink(const(1), a, b), {}) == [{"c": const(1)}]
  assert pat.match(UOp.sink(a, const(1)), {}) == []
  assert pat.match(UOp.sink(), {}) == []  # the prefix itself must be there

def test_no_src_matches_any_sources():
  assert UPat(Ops.SINK).match(UOp.sink(), {}) and UPat(Ops.SINK).match(UOp.sink(a, b, a), {})

def test_repeated_name_must_bind_same_uop():
  pat = UPat.var("x") + UPat.var("x")
  matches = pat.match(a + a, {})
  assert matches and all(m == {"x": a} for m in matches)
  assert pat.match(a + b, {}) == []

def test_repeated_name_must_bind_same_uop_across_levels():
  pat = (UPat.var("x") // UPat.var("y")) + UPat.var("x")
  assert pat.match(a // b + a, {}) == [{"x": a, "y": b}]
  assert pat.match(a // b + b, {}) == []

def test_captures_are_the_matched_uops():
  (m,) = (UPat.var("x") * UPat.cvar("c")).match(a * 3, {})
  assert m["x"] is a and m["c"] is const(3)

def test_pattern_arithmetic_builds_patterns():
  add = UPat.var("x") + 1
  assert add.op == (Ops.ADD,) and isinstance(add.src, list)  # commutative: any order
  assert add.match(a + 1, {}) == add.match(1 + a, {}) == [{"x": a}]
  div = UPat.var("x") // 2
  assert isinstance(div.src, tuple) and div.match(a // 2, {}) and not div.match(const(2) // a, {})
  assert (UPat.var("x") < UPat.var("y")).match(a < b, {}) == [{"x": a, "y": b}]

def test_const_patterns():
  assert UPat.cvar("c").match(const(7), {}) == [{"c": const(7)}] and not UPat.cvar("c").match(a, {})
  assert UPat.cvar("c", dtypes.float32).match(UOp.const(dtypes.float32, 2.0), {}) and not UPat.cvar("c", dtypes.float32).match(const(2), {})
  assert UPat.const(dtypes.int32, 3).match(const(3), {}) and not UPat.const(dtypes.int32, 3).match(UOp.const(dtypes.int64, 3), {})
  assert (UPat.var("x") * 1).match(f * 1.0, {}) == [{"x": f}]  # a pattern constant without dtype matches 1 and 1.0

def test_upat_location_is_the_line_where_it_was_written():
  pat, where = UPat(Ops.ADD), here()
  assert pat.location == where
  pat, where = (UPat.var("x") * UPat.cvar("c")) // 2 + UPat.var("y"), here()  # built through helpers and operators
  assert pat.location == where

def test_every_symbolic_rule_points_at_its_own_line_in_tiny():
  locations = [pat.location for pat, _ in tiny.symbolic.patterns]
  assert all(file == tiny.__file__ for file, _ in locations)
  assert len(set(locations)) == len(locations)
  for file, line in locations: assert linecache.getline(file, line).lstrip().startswith("("), (file, line)

# ## PatternMatcher

def test_earlier_rule_wins():
  pm = PatternMatcher([(UPat(Ops.ADD), lambda: const(1)), (UPat(Ops.ADD), lambda: const(2))])
  assert pm.rewrite(a + b) is const(1)

def test_rule_returning_none_falls_through_to_the_next():
  pm = PatternMatcher([(UPat(Ops.ADD, name="x"), lambda x: None), (UPat(Ops.ADD), lambda: const(2))])
  assert pm.rewrite(a + b) is const(2)

def test_rule_returning_its_input_falls_through_to_the_next():
  pm = PatternMatcher([(UPat(Ops.ADD, name="x"), lambda x: x), (UPat(Ops.ADD), lambda: const(2))])
  assert pm.rewrite(a + b) is const(2)

def test_no_matching_rule_gives_none():
  pm = PatternMatcher([(UPat(Ops.MUL), lambda: const(1))])
  assert pm.rewrite(a + b) is None and pm.rewrite_with_rule(a + b) is None

def test_rewrite_with_rule_reports_the_rule_that_fired():
  first, second = UPat(Ops.ADD, name="x"), UPat(Ops.ADD)
  pm = PatternMatcher([(first, lambda x: None), (second, lambda: const(2))])
  assert pm.rewrite_with_rule(a + b) == (const(2), second)

def test_rules_without_an_op_keep_their_place_in_the_order():
  pm = PatternMatcher([(UPat(Ops.MUL), lambda: const(1)), (UPat(), lambda: const(2)), (UPat(Ops.ADD), lambda: const(3))])
  assert pm.rewrite(a * b) is const(1)
  assert pm.rewrite(a + b) is const(2)  # the catch-all comes before the ADD rule

def test_ctx_is_passed_to_rules_that_ask_for_it():
  pm = PatternMatcher([(UPat(Ops.DEFINE_VAR, name="v"), lambda ctx, v: ctx.get(v.arg[0])), (UPat(Ops.ADD), lambda: const(0))])
  assert pm.rewrite(a, ctx={"a": const(5)}) is const(5)
  assert pm.rewrite(b, ctx={"a": const(5)}) is None
  assert pm.rewrite(a + b, ctx={"a": const(5)}) is const(0)  # a rule without ctx is called without it

def test_adding_matchers_tries_the_left_rules_first():
  pm1, pm2 = PatternMatcher([(UPat(Ops.ADD), lambda: const(1))]), PatternMatcher([(UPat(Ops.ADD), lambda: const(2))])
  assert (pm1 + pm2).rewrite(a + b) is const(1)
  assert (pm2 + pm1).rewrite(a + b) is const(2)
  assert (pm1 + pm2).patterns == pm1.patterns + pm2.patterns

# ## graph_rewrite

def test_graph_with_nothing_to_rewrite_comes_back_as_the_same_object():
  e = (a + b) * 3
  assert graph_rewrite(e, PatternMatcher([(UPat(Ops.IDIV), lambda: const(0))]), name="nothing") is e

def test_sources_are_rewritten_before_their_users():
  fold = PatternMatcher([(UPat(Ops.DEFINE_VAR, name="v"), lambda ctx, v: ctx[v.arg[0]]),
                         (UPat(Ops.ADD, src=(UPat.cvar("x"), UPat.cvar("y"))), lambda x, y: const(x.arg + y.arg))])
  assert graph_rewrite((a + b) + a, fold, {"a": const(3), "b": const(4)}, name="substitute") is const(10)

def test_rewrite_reaches_a_fixed_point():
  countdown = PatternMatcher([(UPat(Ops.CONST, name="c"), lambda c: const(c.arg - 1) if c.arg > 0 else None)])
  assert graph_rewrite(const(5), countdown, name="countdown") is const(0)
  assert graph_rewrite(a * 7 + 3, countdown, name="countdown") is a * 0 + 0

def test_new_sources_in_a_rule_result_are_rewritten_too():
  pm = PatternMatcher([(UPat.var("x") * 4, lambda x: (x * 2) * 2), (UPat.var("x") * 2, lambda x: x + x)])
  assert graph_rewrite(a * 4, pm, name="strength reduction") is (a + a) + (a + a)

def test_shared_nodes_are_rewritten_once():
  calls = []
  pm = PatternMatcher([(UPat(Ops.DEFINE_VAR, name="v"), lambda v: calls.append(v) or (const(1) if v is a else None))])
  e = (a + b) * (a + b) + a
  assert graph_rewrite(e, pm, name="count") is (const(1) + b) * (const(1) + b) + 1
  assert calls.count(a) == 1 and calls.count(b) == 1

def test_ctx_flows_through_graph_rewrite():
  rename = PatternMatcher([(UPat(Ops.DEFINE_VAR, name="v"), lambda ctx, v: UOp.variable(ctx[v.arg[0]], 0, 9) if v.arg[0] in ctx else None)])
  assert graph_rewrite(a + b * 2, rename, {"a": "p", "b": "q"}, name="rename") is UOp.variable("p", 0, 9) + UOp.variable("q", 0, 9) * 2

def test_every_pass_must_be_named():
  with pytest.raises(TypeError): graph_rewrite(a, PatternMatcher([]))

# ## Non-termination is an error, raised quickly

def test_cycle_raises_rewrite_error_naming_pass_and_rule():
  calls = []
  swap, where = (UPat(Ops.ADD, src=(UPat.var("x"), UPat.var("y"))), lambda x, y: calls.append(1) or y + x), here()
  with pytest.raises(RewriteError) as err: graph_rewrite(a * 2 + b, PatternMatcher([swap]), name="swap forever")
  assert len(calls) <= 2 * REWRITE_LIMIT.value, f"the cycle was followed for {len(calls)} rewrites"  # quickly: steps, not seconds
  assert "'swap forever'" in str(err.value)
  assert f"{os.path.basename(where[0])}:{where[1]}" in str(err.value)

def test_two_rule_cycle_names_both_rules():
  to_mul, where1 = (UPat(Ops.ADD, name="x"), lambda x: x.replace(op=Ops.MUL)), here()
  to_add, where2 = (UPat(Ops.MUL, name="x"), lambda x: x.replace(op=Ops.ADD)), here()
  with pytest.raises(RewriteError, match="ping pong") as err: graph_rewrite((a + b) // 2, PatternMatcher([to_mul, to_add]), name="ping pong")
  assert f"test_rewrite.py:{where1[1]}" in str(err.value) and f"test_rewrite.py:{where2[1]}" in str(err.value)

def test_unbounded_growth_raises_rewrite_error_naming_pass_and_rule():
  calls = []
  grow, where = (UPat.cvar("c"), lambda c: calls.append(1) or c.const_like(c.arg + 1)), here()
  with pytest.raises(RewriteError) as err: graph_rewrite(a + 1, PatternMatcher([grow]), name="grow forever")
  assert len(calls) <= 2 * REWRITE_LIMIT.value, f"the growth was followed for {len(calls)} rewrites"
  assert "'grow forever'" in str(err.value) and f"test_rewrite.py:{where[1]}" in str(err.value)

def test_rewrite_limit_is_a_setting():
  countdown = PatternMatcher([(UPat(Ops.CONST, name="c"), lambda c: const(c.arg - 1) if c.arg > 0 else None)])
  assert graph_rewrite(const(50), countdown, name="countdown") is const(0)
  with Context(REWRITE_LIMIT=10):  # the limit counts beyond the graph's size: here one node
    with pytest.raises(RewriteError, match="more than 11"): graph_rewrite(const(50), countdown, name="countdown")

def test_a_chain_as_long_as_the_graph_is_not_a_loop():
  # one rule walks a marker down a chain of 3,000 negations, rewriting the root once per node below it
  x = UOp.variable("x", 0, 10)
  chain = x
  for _ in range(3000): chain = UOp(Ops.NEG, dtypes.int32, (chain,))
  push = PatternMatcher([(UPat(Ops.NEG, src=(UPat(Ops.NEG, src=(UPat.var("y"),)),)), lambda y: y)])
  assert graph_rewrite(chain, push, name="cancel", pre_order=True) is x

# ## Tracing

class Recorder(Tracer):
  def __init__(self): self.events: list[tuple] = []
  def begin(self, name, root, pm=None): self.events.append(("begin", name, root))
  def match(self, before, after, rule): self.events.append(("match", before, after, rule))
  def end(self, result): self.events.append(("end", result))

@pytest.fixture
def recorder():
  saved, tiny.tracer = tiny.tracer, Recorder()
  try: yield tiny.tracer
  finally: tiny.tracer = saved

def test_tracer_sees_begin_each_match_and_end(recorder):
  rule = UPat(Ops.MUL, src=(UPat.var("x"), UPat.const(dtypes.int32, 1)))
  pm = PatternMatcher([(rule, lambda x: x)])
  out = graph_rewrite((a * 1) + (b * 1), pm, name="drop ones")
  assert out is a + b
  assert recorder.events == [("begin", "drop ones", (a * 1) + (b * 1)), ("match", a * 1, a, rule), ("match", b * 1, b, rule), ("end", a + b)]

def test_tracer_sees_nested_rewrites_inside_a_rule(recorder):
  inner = PatternMatcher([(UPat(Ops.DEFINE_VAR), lambda: const(0))])
  outer = PatternMatcher([(UPat(Ops.SINK, name="s"), lambda s: graph_rewrite(s.src[0], inner, name="inner"))])
  assert graph_rewrite(UOp.sink(a), outer, name="outer") is const(0)
  assert [e[0] + (":" + e[1] if e[0] == "begin" else "") for e in recorder.events] == \
    ["begin:outer", "begin:inner", "match", "end", "match", "end"]
  assert recorder.events[2][1:3] == (a, const(0)) and recorder.events[4][1:3] == (UOp.sink(a), const(0))

def test_each_match_reports_the_rule_written_at_its_line(recorder):
  pm = PatternMatcher([(UPat.var("x") + 0, lambda x: x), (UPat.var("x") * 0, lambda x: const(0))]); where = here()
  graph_rewrite((a + 0) * 0, pm, name="identities")
  rules = [e[3] for e in recorder.events if e[0] == "match"]
  assert len(rules) == 2 and rules[0] is pm.patterns[0][0] and rules[1] is pm.patterns[1][0]
  assert all(r.location == where for r in rules)

def test_tracer_reports_symbolic_rules_by_their_location_in_tiny(recorder):
  (a + 0).simplify()
  (_, name, _), (_, before, after, rule), _ = recorder.events
  assert name == "simplify" and before is a + 0 and after is a
  assert rule.location[0] == tiny.__file__ and "+ 0" in linecache.getline(*rule.location)
