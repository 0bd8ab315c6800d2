"""The CPU backend on machines other than the one it was written on: the flags it compiles with are probed, and its
disk-cache key names the compiler and the CPU it targets, so a shared cache never hands over a foreign binary.
Other machines are simulated by compilers named `cc` that wrap the real one."""
import os, shutil, stat, subprocess
import pytest
import tiny

@pytest.fixture
def CPUCompiler():
  try: return type(tiny.Device["CPU"].compiler)
  except Exception as e: pytest.skip(f"the CPU backend does not open here: {e}")

@pytest.fixture
def fake_cc(tmp_path, monkeypatch):
  """make(script) puts a `cc` running `script` (in which $REAL is the real compiler) first in CC."""
  real = shutil.which(os.environ.get("CC", "cc"))
  def make(script: str) -> str:
    path = tmp_path / "cc"
    path.write_text(f"#!/bin/sh\nREAL={real}\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CC", str(path))
    return str(path)
  return make

def test_cache_key_names_the_compiler_version_and_the_target_cpu(CPUCompiler, fake_cc):
  compiler = tiny.Device["CPU"].compiler
  version = subprocess.run([compiler.cc, "--version"], capture_output=True, text=True).stdout
  assert version.strip() and version in compiler.cache_key
  # the same command line on a CPU without BMI2: the compiler is told so behind the flags
  fake_cc('exec $REAL "$@"')
  here = CPUCompiler()
  fake_cc('exec $REAL "$@" -mno-bmi2')  # the same path: only what the compiler says tells the machines apart
  there = CPUCompiler()
  assert here.flags == there.flags and here.cache_key != there.cache_key, "two CPUs would share cached binaries"

def test_a_compiler_without_the_x86_flag_still_gets_native_code(CPUCompiler, fake_cc):
  fake_cc('case "$*" in *-mno-avx512fp16*) echo "unrecognized command-line option" >&2; exit 1;; esac\nexec $REAL "$@"')
  compiler = CPUCompiler()
  # float16 as far as the real compiler has it (clang 14 has no _Float16 on x86 at all)
  real_half = tiny.Device["CPU"].compiler.half
  assert "-march=native" in compiler.flags and "-mno-avx512fp16" not in compiler.flags and compiler.half == real_half

def test_a_compiler_without_float16_opens_a_device_without_float16(CPUCompiler, fake_cc, monkeypatch):
  fake_cc('src=$(cat)\ncase "$src" in *_Float16*) echo "_Float16 is not supported on this target" >&2; exit 1;; esac\n'
          'printf "%s" "$src" | $REAL "$@"')
  device = CPUCompiler.__init__.__globals__["open_device"]("CPU")  # the backend module is not in sys.modules
  assert not device.compiler.half and tiny.dtypes.float16 not in device.renderer.supported_dtypes
  assert tiny.dtypes.float32 in device.renderer.supported_dtypes
  monkeypatch.setitem(tiny.Device.opened, "CPU", device)
  with pytest.raises(TypeError, match="float16"): tiny.Tensor([1.0], device="CPU", dtype=tiny.dtypes.float16)
  assert (tiny.Tensor([1.5, 2.0], device="CPU") * 2).tolist() == [3.0, 4.0]
