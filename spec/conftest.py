"""Shared by the specs: the devices under test, the numpy reference dtypes, the one tolerance table, known-failure
manifests, and the scorecard printed at the end of a run.

`pytest spec` runs every device-parametrized test on every device that works on this machine (PYTHON, the
reference interpreter, and each `backends/<name>.py` that opens); `pytest spec --device CPU` (or
`--device PYTHON,CPU`) picks the devices, which is how a backend author points the suite at theirs. A device that is
named but does not open here (`--device CUDA` on a machine without a GPU) has its tests skipped, with the reason.

A device may list the tests it is known to fail in `spec/manifest/<DEVICE>.txt`, one test id a line (`*` matches
any text, `#` starts a comment). Those tests still run, as expected failures; one that starts passing is reported
at the end, so the manifest only ever shrinks.
"""
import contextlib, pathlib, re, sys
import numpy as np
import pytest
import tiny
from tiny import Tensor, dtypes, Ops, DType

MANIFESTS = pathlib.Path(__file__).resolve().parent / "manifest"

def available_devices() -> list[str]:
  """Every device tiny knows (PYTHON and each backends/<name>.py) that opens on this machine."""
  out = []
  for name in tiny.Device.names():
    try: tiny.Device[name]
    except Exception: continue
    out.append(name)
  return out

def pytest_addoption(parser):
  parser.addoption("--device", default="", help="comma-separated devices under test (default: every device that works here)")

def pytest_configure(config):
  config.addinivalue_line("markers", "ops(*ops): the tiny Ops this test covers (read by the scorecard and spec/test_coverage.py)")
  wanted = config.getoption("device")
  config.devices_under_test = [d.strip().upper() for d in wanted.split(",") if d.strip()] if wanted else available_devices()
  unknown = [d for d in config.devices_under_test if d.partition(":")[0] not in tiny.Device.names()]
  if unknown: raise pytest.UsageError(f"--device: unknown device(s) {', '.join(unknown)}; tiny knows {', '.join(tiny.Device.names())}")
  config.unusable = {}
  for d in config.devices_under_test:
    try: tiny.Device[d]
    except Exception as e: config.unusable[d] = f"{d} does not open here: {e}"
  global SCORECARD
  config.scorecard = SCORECARD = Scorecard(config.devices_under_test)

SCORECARD = None  # this run's scorecard, filled as test reports arrive

def pytest_generate_tests(metafunc):
  if "device" in metafunc.fixturenames: metafunc.parametrize("device", metafunc.config.devices_under_test)

NP = {dtypes.bool: np.bool_, dtypes.int8: np.int8, dtypes.uint8: np.uint8, dtypes.int16: np.int16, dtypes.uint16: np.uint16,
      dtypes.int32: np.int32, dtypes.uint32: np.uint32, dtypes.int64: np.int64, dtypes.uint64: np.uint64,
      dtypes.float16: np.float16, dtypes.float32: np.float32, dtypes.float64: np.float64}

# The one tolerance table: (rtol, atol) by the dtype of the result. References
# are computed in float64, so these bound tiny's own rounding. Ints and bools
# must match exactly. "transcendental" covers exp, log, sin, pow... which tiny
# builds from exp2, log2 and sin and so round a few times more.
TOLERANCE = {
  dtypes.float16: (2e-3, 2e-3), dtypes.float32: (1e-5, 1e-6), dtypes.float64: (1e-12, 1e-12),
  ("transcendental", dtypes.float16): (5e-3, 5e-3), ("transcendental", dtypes.float32): (1e-5, 1e-5),
  ("transcendental", dtypes.float64): (1e-10, 1e-10),
}

def check(t: Tensor, expected, kind: str | None = None, dtype=None) -> None:
  """Assert that tensor t has expected's shape, the given dtype (if any), and values within the tolerance table (ints exactly)."""
  expected = np.asarray(expected)
  got = t.numpy()
  assert t.shape == expected.shape, f"shape {t.shape}, expected {expected.shape}"
  if dtype is not None: assert t.dtype == dtype, f"dtype {t.dtype}, expected {dtype}"
  if t.dtype.is_float:
    rtol, atol = TOLERANCE[(kind, t.dtype) if kind else t.dtype]
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol)
  else: np.testing.assert_array_equal(got, expected)  # ints and bools exactly, compared as numbers

@contextlib.contextmanager
def watching_rewrites():
  """Record the name of every graph_rewrite pass and every kernel compiled while the block runs, through the Tracer
  hook that VIZ uses (chapter 4)."""
  seen = {"passes": [], "kernels": []}
  class Watch(tiny.Tracer):
    def begin(self, name, root, pm): seen["passes"].append(name)
    def kernel(self, name, src): seen["kernels"].append(name)
  saved, tiny.tracer = tiny.tracer, Watch()
  try: yield seen
  finally: tiny.tracer = saved

# ## Known failures

def read_manifest(device: str) -> list[str]:
  path = MANIFESTS / f"{device}.txt"
  if not path.exists(): return []
  return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]

def manifest_pattern(entry: str) -> re.Pattern:
  """A manifest line as a pattern over test ids: `*` is any text, everything else literal (brackets included)."""
  return re.compile("(.*/)?" + ".*".join(re.escape(part) for part in entry.split("*")))

# ## Tagging tests for the scorecard
#
# Each test is tagged with its device and what it covers: the `Ops` and `DType` values among its parameters, the
# ops of its `ops` marker, and the rule it checks (a `rule` parameter).

def _values(x) -> list:
  return [v for item in x for v in _values(item)] if isinstance(x, (tuple, list)) else [x]

def tags(item) -> dict:
  params = getattr(getattr(item, "callspec", None), "params", {})
  values = [v for p in params.values() for v in _values(p)]
  ops = {v for v in values if isinstance(v, Ops)} | {op for m in item.iter_markers("ops") for op in m.args}
  return {"device": params.get("device"), "ops": sorted(op.name for op in ops), "dtypes": sorted({v.name for v in values if isinstance(v, DType)}),
          "rule": str(params["rule"]) if "rule" in params else None}

def pytest_collection_modifyitems(config, items):
  patterns = {d: [(entry, manifest_pattern(entry)) for entry in read_manifest(d)] for d in config.devices_under_test}
  for item in items:
    t = tags(item)
    item.user_properties.append(("scorecard", t))
    if t["device"] in config.unusable: item.add_marker(pytest.mark.skip(reason=config.unusable[t["device"]]))
    for entry, pattern in patterns.get(t["device"], []):
      if pattern.fullmatch(item.nodeid):
        config.scorecard.manifest_used.add((t["device"], entry))
        item.add_marker(pytest.mark.xfail(reason=f"known failure on {t['device']}: spec/manifest/{t['device']}.txt", strict=False))
        break
  if not (config.getoption("keyword") or config.getoption("markexpr")):  # a whole file ran: its stale entries can be told
    files = {item.nodeid.split("::")[0] for item in items}
    config.scorecard.manifest_entries = {(d, entry) for d, entries in patterns.items() for entry, _ in entries if entry.split("::")[0] in files}
  items.sort(key=lambda item: "test_backend_faults.py" in item.nodeid)  # last: see pytest_collection_finish

# The planted-fault and walkthrough tests run the op suite in subprocesses, which take a while: they start as soon as
# such a test is collected, on the cores the other tests leave idle, and their tests run last.
def pytest_collection_finish(session):
  if not session.config.option.collectonly and any("test_backend_faults.py" in item.nodeid for item in session.items):
    import test_backend_faults
    test_backend_faults.start_suite_runs()

def pytest_sessionfinish(session):
  if "test_backend_faults" in sys.modules: sys.modules["test_backend_faults"].stop_suite_runs()

# ## The scorecard

class Scorecard:
  def __init__(self, devices: list[str]):
    self.devices, self.outcomes, self.tags = devices, {}, {}
    self.manifest_used: set[tuple[str, str]] = set()
    self.manifest_entries: set[tuple[str, str]] = set()

  def record(self, report) -> None:
    t = dict(report.user_properties).get("scorecard")
    if t is None or t["device"] is None: return
    if report.when == "call" and hasattr(report, "wasxfail"): outcome = "xpassed" if report.passed else "xfailed"
    elif report.failed: outcome = "failed"
    elif report.skipped: outcome = "skipped"
    elif report.when == "call": outcome = "passed"
    else: return
    self.tags[report.nodeid] = t
    if self.outcomes.get(report.nodeid) != "failed": self.outcomes[report.nodeid] = outcome

  def tally(self, device: str, key: str) -> tuple[int, int, list[str], list[str]]:
    """(passed, tested, failing names, names failing only as known failures) of the ops, dtypes or rules on one device:
    a name passes when every test of it that ran passed."""
    by_name: dict[str, set[str]] = {}
    for nodeid, outcome in self.outcomes.items():
      t = self.tags[nodeid]
      if t["device"] != device or outcome == "skipped": continue
      for name in (t[key] if key != "rule" else [t["rule"]] if t["rule"] else []): by_name.setdefault(name, set()).add(outcome)
    failing = sorted(n for n, outs in by_name.items() if "failed" in outs)
    known = sorted(n for n, outs in by_name.items() if "xfailed" in outs and "failed" not in outs)
    return len(by_name) - len(failing) - len(known), len(by_name), failing, known

  def lines(self) -> list[str]:
    if not self.outcomes: return []
    out = [f"{'device':10s} {'ops':>9s} {'dtypes':>9s} {'rules':>9s}   tests"]
    notes = []
    for d in self.devices:
      counts = {}
      for nodeid, outcome in self.outcomes.items():
        if self.tags[nodeid]["device"] == d: counts[outcome] = counts.get(outcome, 0) + 1
      if not counts: continue
      cells = []
      for key in ("ops", "dtypes", "rule"):
        passed, tested, failing, known = self.tally(d, key)
        cells.append(f"{passed}/{tested}" if tested else "-")
        what = "rules" if key == "rule" else key
        if failing: notes.append(f"{d}: {what} failing: {', '.join(failing)}")
        if known: notes.append(f"{d}: {what} with known failures (spec/manifest/{d}.txt): {', '.join(known)}")
      words = {"passed": "passed", "failed": "failed", "xfailed": "known failure(s)", "xpassed": "known failure(s) now passing", "skipped": "skipped"}
      summary = ", ".join(f"{counts[k]} {w}" for k, w in words.items() if counts.get(k))
      out.append(f"{d:10s} {cells[0]:>9s} {cells[1]:>9s} {cells[2]:>9s}   {summary}")
    not_runnable = getattr(sys.modules.get("test_uop_ops"), "NOT_RUNNABLE", {})
    out.append(f"(of {len(Ops)} Ops" + (f", {len(not_runnable)} of which no device runs yet: {', '.join(op.name for op in not_runnable)}" if not_runnable else "") +
               "; an op, dtype or rule passes on a device when every test of it that ran there passed)")
    out += notes
    now_passing = sorted(nodeid for nodeid, outcome in self.outcomes.items() if outcome == "xpassed")
    for nodeid in now_passing:
      out.append(f"KNOWN FAILURE NOW PASSES, remove it from spec/manifest/{self.tags[nodeid]['device']}.txt: {nodeid}")
    for d, entry in sorted(self.manifest_entries - self.manifest_used):
      out.append(f"spec/manifest/{d}.txt lists {entry!r}, which matches no test that was collected")
    return out

def pytest_runtest_logreport(report):
  if SCORECARD is not None: SCORECARD.record(report)

def pytest_terminal_summary(terminalreporter, exitstatus, config):
  lines = config.scorecard.lines()
  if not lines: return
  terminalreporter.section("spec scorecard")
  for line in lines: terminalreporter.write_line(line)
