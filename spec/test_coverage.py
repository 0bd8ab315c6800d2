"""The spec suite covers everything: every member of `Ops` has a test on every device (or a reason in the one table
of ops no device can run), and every rule of every PatternMatcher has an example that fires it.

These tests fail naming what is missing, so adding an op or a rule to tiny without a spec test is caught here.
"""
import inspect
import pytest
import tiny
from tiny import Ops, UPat, PatternMatcher, dtypes
import test_uop_ops, test_rules

def ops_without_a_test() -> list[str]:
  return [op.name for op in Ops if op not in test_uop_ops.COVERED and op not in test_uop_ops.NOT_RUNNABLE]

def rules_without_an_example() -> list[str]:
  fired = test_rules.discover()
  return [rule.describe() for rule in test_rules.find_rules() if id(rule.pattern) not in fired]

def test_every_op_has_a_spec_test_or_a_reason():
  missing = ops_without_a_test()
  assert not missing, f"Ops with no test in spec/test_uop_ops.py and no reason in its NOT_RUNNABLE table: {', '.join(missing)}"

def test_ops_no_device_can_run_are_not_also_tested():
  both = [op.name for op in test_uop_ops.NOT_RUNNABLE if op in test_uop_ops.COVERED]
  assert not both, f"NOT_RUNNABLE lists ops that now have tests: {', '.join(both)}; remove them from the table"
  assert all(reason.strip() for reason in test_uop_ops.NOT_RUNNABLE.values())

def test_every_op_test_runs_on_every_device_under_test():
  tests = {name for names in test_uop_ops.COVERED.values() for name in names}
  not_per_device = sorted(t for t in tests if "device" not in inspect.signature(getattr(test_uop_ops, t)).parameters)
  assert not not_per_device, f"these op tests do not take the `device` fixture: {not_per_device}"

def test_every_dtype_meets_every_alu_op_that_takes_it():
  # floats take every op but tiny's integer-only ones; ints every op but float math; bools the bitwise ops too
  def takes(op, d) -> bool:
    if d.is_float: return op not in tiny.GroupOp.IntOnly
    return op not in test_uop_ops.FLOAT_ONLY and (d.is_int or op not in {Ops.IDIV, Ops.MOD, Ops.SHL, Ops.SHR})
  cases = {(p.values[0], p.values[1]) for p in test_uop_ops.ALU_CASES}
  missing = [f"{op.name} {d.name}" for op in tiny.GroupOp.ALU for d in dtypes.all() if takes(op, d) and (op, d) not in cases]
  assert not missing, f"ALU op and dtype pairs with no test: {missing}"
  assert {p.values[0] for p in test_uop_ops.CAST_CASES} == {p.values[1] for p in test_uop_ops.CAST_CASES} == set(dtypes.all())

def test_every_rule_of_every_pattern_matcher_fires_on_an_example():
  missing = rules_without_an_example()
  assert not missing, "rules that no example in spec/test_rules.py fires:\n" + "\n".join(missing)

def test_rules_are_found_by_walking_the_matchers_not_listed():
  names = {r.matcher for r in test_rules.RULES}
  assert {"symbolic_simple", "symbolic", "pm_lower", "pm_accumulators", "pm_gradient", "string_rewrite"} <= names
  every = {id(p) for pm in test_rules.matchers().values() for p, _ in pm.patterns}
  assert every == {id(r.pattern) for r in test_rules.RULES}, "a rule of some matcher is missing from the rule tests"

# The coverage checks themselves: an op or a rule nobody wrote a test for is named.

def test_a_new_rule_without_an_example_is_named(monkeypatch):
  lonely = UPat(Ops.SHL, src=(UPat.cvar("c"), UPat.cvar("c")))
  monkeypatch.setattr(tiny, "pm_spec_probe", PatternMatcher([(lonely, lambda c: None)]), raising=False)
  missing = rules_without_an_example()
  assert len(missing) == 1 and missing[0].startswith("pm_spec_probe.0 (test_coverage.py:")

def test_a_new_op_without_a_test_is_named(monkeypatch):
  monkeypatch.delitem(test_uop_ops.COVERED, Ops.FLIP)
  assert ops_without_a_test() == ["FLIP"]
