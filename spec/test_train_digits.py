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
