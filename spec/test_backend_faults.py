"""The suite catches broken backends, and the backend walkthrough in docs/writing-a-backend.md builds a working one.

Each planted fault is a copy of backends/cpu.py with one mistake a backend author could make: the wrong operator
for ADD, a loop bound off by one (RANGE rendered with `<=`), a cast to bool that truncates instead of testing for
nonzero. The op suite (spec/test_uop_ops.py) runs on each in a subprocess, against a vendored copy of tiny with
these backends beside it, and must fail naming the op, and only tests that use it. The walkthrough's backend is
written from the page's blocks titled `backends/mycpu.py` and must pass the same suite.

The suite also runs on the unchanged CPU backend of the same copy, as the baseline: a test that fails there (a
compiler bug of this machine, say) is not the planted fault's doing, so each fault is judged by the tests it fails
beyond the baseline's, and the walkthrough's backend by failing none beyond them.

The subprocesses run in parallel with each other and with the rest of the session, and share the compiled-kernel
cache on disk, so only the kernels a fault changes are compiled again.
"""
import os, pathlib, re, shutil, subprocess, sys, tempfile
import pytest
import tiny

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "writing-a-backend.md"

# device name -> (the op it breaks, the code appended to a copy of backends/cpu.py)
FAULTS = {
  "CPU_BAD_ADD": ("ADD", 'CPURenderer.code_for_op = {**CPURenderer.code_for_op, Ops.ADD: lambda a, b, dt: f"({a}-{b})"}'),
  "CPU_BAD_RANGE": ("RANGE", 'import re\n_render = CPURenderer.render\n'
                             'CPURenderer.render = lambda self, name, program: re.sub(r"; (ridx\\d+) < ", r"; \\1 <= ", _render(self, name, program))'),
  "CPU_BAD_CAST": ("CAST", '_render = CPURenderer.render\n'
                           'CPURenderer.render = lambda self, name, program: _render(self, name, program).replace("((_Bool)(", "((unsigned char)(")'),
}

def backend_from_the_page() -> str:
  """The blocks of docs/writing-a-backend.md titled backends/mycpu.py, in order: the walkthrough's backend file."""
  blocks = re.findall(r'^```python title="backends/mycpu\.py"\n(.*?)^```$', PAGE.read_text(), re.M | re.S)
  assert len(blocks) >= 5, "the walkthrough's file blocks are missing from docs/writing-a-backend.md"
  return "\n".join(blocks)

def vendored_copy(tmp: pathlib.Path) -> pathlib.Path:
  """tiny.py, its backends plus the faulty ones and the walkthrough's, and the op suite, in a fresh folder."""
  (tmp / "backends").mkdir()
  (tmp / "spec" / "manifest").mkdir(parents=True)
  shutil.copy(ROOT / "tiny.py", tmp / "tiny.py")
  shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
  for name in ("conftest.py", "test_uop_ops.py"): shutil.copy(ROOT / "spec" / name, tmp / "spec" / name)
  cpu = (ROOT / "backends" / "cpu.py").read_text()
  (tmp / "backends" / "cpu.py").write_text(cpu)
  for device, (_, fault) in FAULTS.items(): (tmp / "backends" / f"{device.lower()}.py").write_text(cpu + "\n# a planted fault\n" + fault + "\n")
  (tmp / "backends" / "mycpu.py").write_text(backend_from_the_page())
  known = ROOT / "spec" / "manifest" / "CPU.txt"  # copies of CPU, and C backends, share the C-style renderer's known failures
  for device in [*FAULTS, "MYCPU"]:
    if known.exists(): (tmp / "spec" / "manifest" / f"{device}.txt").write_text(re.sub(r"\[CPU([-\]])", rf"[{device}\1", known.read_text()))
  return tmp

# The runs take a while, so they start as soon as the session has collected a test of this file (conftest.py calls
# `start_suite_runs`), on the cores the other tests leave idle, and the tests here, which run last, collect them.
RUNS: dict[str, subprocess.Popen] = {}
FOLDER: list[pathlib.Path] = []

def start_suite_runs() -> None:
  """Start the op suite on every faulty backend and on the walkthrough's, all at once, each logging to a file."""
  try: tiny.Device["CPU"]
  except Exception: return  # no C compiler here: the tests skip
  folder = vendored_copy(pathlib.Path(tempfile.mkdtemp(prefix="tiny-backend-faults-")))
  FOLDER.append(folder)
  env = {k: v for k, v in os.environ.items() if k not in tiny.ContextVar.registry and k != "PYTHONPATH"}
  for device in ["CPU", *FAULTS, "MYCPU"]:  # output to files: a full pipe would stall a run while nobody reads it
    with open(folder / f"{device}.log", "w") as log:
      # -u and -v: each test's outcome reaches the log as it happens, even if a broken kernel crashes the process later
      RUNS[device] = subprocess.Popen([sys.executable, "-u", "-m", "pytest", "spec/test_uop_ops.py", "--device", device, "-v", "-rfE",
                                       "--tb=line", "-p", "no:cacheprovider"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)

def stop_suite_runs() -> None:
  """End the runs still going (the session stopped early) and remove their folder."""
  for p in RUNS.values():
    if p.poll() is None: p.kill()
    p.wait()
  RUNS.clear()
  while FOLDER: shutil.rmtree(FOLDER.pop(), ignore_errors=True)

@pytest.fixture(scope="module")
def suite_runs() -> dict[str, tuple[int | str, str]]:
  """device -> (exit code, output) of each run."""
  if not RUNS: start_suite_runs()  # this file was imported some other way than by a pytest session's collection
  if not RUNS: pytest.skip("the CPU backend does not open here")
  out = {}
  for device, p in RUNS.items():
    try: code = p.wait(timeout=300)
    except subprocess.TimeoutExpired:
      p.kill()
      code = "timed out after 300 s"
    out[device] = (code, (FOLDER[0] / f"{device}.log").read_text(errors="replace"))
  return out

def failed_tests(output: str, device: str) -> set[str]:
  """The tests of one run that failed, their ids without the device (`test_alu[ADD-int8-const]`), to compare runs."""
  return {re.sub(rf"\[{device}-?", "[", t) for t in re.findall(r"^spec/test_uop_ops\.py::(\S+) FAILED", output, re.M)}

def new_failures(suite_runs, device: str) -> list[str]:
  """The tests that fail on `device` and pass on the unchanged CPU backend."""
  code, output = suite_runs["CPU"]
  assert "spec scorecard" in output, f"the baseline run on the unchanged CPU backend did not finish:\n{output[-3000:]}"
  return sorted(failed_tests(suite_runs[device][1], device) - failed_tests(output, "CPU"))

def ops_failing(output: str, device: str) -> list[str] | None:
  """The scorecard's failing ops, or None if the run crashed before printing it."""
  if "spec scorecard" not in output: return None
  line = re.search(rf"^{device}: ops failing: (.*)$", output, re.M)
  return line.group(1).split(", ") if line else []

@pytest.mark.parametrize("fault", list(FAULTS))
def test_op_suite_fails_on_a_planted_fault_naming_the_op(suite_runs, fault):
  # A broken kernel may write past its buffers and crash the run before it ends: the tests that failed until then
  # are in the log all the same, and the scorecard, when there is one, names the op.
  op, device = FAULTS[fault][0], fault
  code, output = suite_runs[device]
  failed = new_failures(suite_runs, device)
  assert code != 0 and failed, f"the op suite passed on {device}, whose {op} is broken:\n{output[-3000:]}"
  named = ops_failing(output, device)
  assert named is None or op in named, f"the scorecard does not name {op} on {device}:\n{output[-3000:]}"
  one_op = [t for t in failed if t.startswith(("test_alu[", "test_cast[", "test_bitcast["))]
  if op == "RANGE":  # every kernel has loops: everything fails, and the loop test says how
    assert any(t.startswith("test_range_runs_exactly_n_times[") for t in failed), failed
  elif op == "ADD":  # of the one-op kernels, exactly those of ADD fail, and lanes that address bools one by one, at sums
    assert one_op and all(t.startswith("test_alu[ADD-") or t.endswith("-lanes]") for t in one_op), one_op
    assert any(t.startswith("test_alu[ADD-") and not t.endswith("-lanes]") for t in one_op), one_op
  else:  # of the one-op kernels, exactly the casts to bool fail
    assert one_op and all(re.match(r"test_cast\[\w+-bool-", t) for t in one_op), one_op

def test_the_backend_written_from_the_walkthrough_passes_the_op_suite(suite_runs):
  code, output = suite_runs["MYCPU"]
  assert "spec scorecard" in output and not new_failures(suite_runs, "MYCPU"), \
    f"the backend built from docs/writing-a-backend.md fails the op suite:\n{output[-5000:]}"
  assert re.search(r"^MYCPU\s+\d+/\d+", output, re.M), f"no scorecard line for MYCPU:\n{output[-2000:]}"
