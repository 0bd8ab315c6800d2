"""The main job: examples/train_digits.py, run as a user runs it, reaches at least 97% test accuracy.

It trains a small convnet for a while, so `TINY_SKIP_SLOW=1` skips it; it runs by default.
"""
import os, pathlib, re, subprocess, sys
import pytest

# The one tolerance table: what the run must achieve.
TOLERANCE = {"min_test_accuracy_percent": 97.0, "timeout_s": 300}
ROOT = pathlib.Path(__file__).resolve().parent.parent

@pytest.mark.skipif(os.environ.get("TINY_SKIP_SLOW", "0") not in ("", "0"), reason="TINY_SKIP_SLOW is set")
def test_train_digits_reaches_97_percent_test_accuracy():
  result = subprocess.run([sys.executable, "examples/train_digits.py"], cwd=ROOT, capture_output=True, text=True, timeout=TOLERANCE["timeout_s"])
  output = result.stdout + result.stderr
  assert result.returncode == 0, f"train_digits.py exited with {result.returncode}:\n{output[-3000:]}"
  found = re.findall(r"test accuracy: (\d+(?:\.\d+)?)%", output)
  assert found, f"no 'test accuracy: XX.XX%' line in the output:\n{output[-3000:]}"
  accuracy = float(found[-1])
  assert accuracy >= TOLERANCE["min_test_accuracy_percent"], f"test accuracy {accuracy:.2f}% is below {TOLERANCE['min_test_accuracy_percent']}%"

# ## Its command line

def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "examples/train_digits.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, **(env or {})})

def test_an_unknown_device_is_rejected_with_the_devices_there_are():
  result = run_script("--device", "bogus")
  assert result.returncode == 2 and "unknown device 'BOGUS'; available: PYTHON" in result.stderr, result.stderr

def test_the_device_flag_is_honoured_over_the_environment_and_python_trains_the_linear_classifier_by_default():
  # The first line says where the data went and what trains; the rest is not waited for.
  with subprocess.Popen([sys.executable, "examples/train_digits.py", "--device", "python"], cwd=ROOT, stdout=subprocess.PIPE,
                        text=True, env={**os.environ, "DEVICE": "CPU"}) as proc:
    try: first = proc.stdout.readline()
    finally: proc.kill()
  assert first.startswith("training a linear on PYTHON: 1437 images") and first.rstrip().endswith(", 1 epoch"), first

# What PYTHON's default run must achieve: the 90 s on a quiet machine, with room for a loaded one.
PYTHON_RUN = {"min_test_accuracy_percent": 85.0, "timeout_s": 300}

@pytest.mark.skipif(os.environ.get("TINY_SKIP_SLOW", "0") not in ("", "0"), reason="TINY_SKIP_SLOW is set")
def test_the_default_run_on_python_finishes_and_learns():
  result = run_script("--device", "PYTHON", timeout=PYTHON_RUN["timeout_s"])
  assert result.returncode == 0, result.stderr[-3000:]
  found = re.findall(r"test accuracy: (\d+(?:\.\d+)?)%", result.stdout)
  assert found and float(found[-1]) >= PYTHON_RUN["min_test_accuracy_percent"], result.stdout[-2000:]

@pytest.mark.skipif(os.environ.get("TINY_SKIP_SLOW", "0") not in ("", "0"), reason="TINY_SKIP_SLOW is set")
def test_with_debug_on_the_progress_bar_and_kernel_lines_never_share_a_line():
  result = run_script("--device", "CPU", "--epochs", "1", env={"DEBUG": "2"}, timeout=TOLERANCE["timeout_s"])
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  bars, kernels = [l for l in lines if "img/s" in l], [l for l in lines if l.startswith("*** CPU")]
  assert bars and kernels, f"no progress lines or no kernel lines:\n{result.stdout[-2000:]}"
  assert not any("***" in l or "\r" in l for l in bars), [l for l in bars if "***" in l or "\r" in l][:3]
