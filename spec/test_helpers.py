"""Chapter 1: settings read from the environment, overridden with Context, and the small helpers."""
import os, pathlib, subprocess, sys
import pytest
import tiny
from tiny import Context, ContextVar, Device, Tensor, getenv, prod, argsort, flatten, all_same

ROOT = pathlib.Path(__file__).resolve().parent.parent

@pytest.fixture
def setting(monkeypatch):
  """Make a throwaway ContextVar (reading TINY_SPEC_SETTING) and take it out of the registry afterwards."""
  made = []
  def make(default, env=None):
    if env is None: monkeypatch.delenv("TINY_SPEC_SETTING", raising=False)
    else: monkeypatch.setenv("TINY_SPEC_SETTING", env)
    made.append(ContextVar("TINY_SPEC_SETTING", default, "a setting made by the spec suite"))
    return made[-1]
  yield make
  ContextVar.registry.pop("TINY_SPEC_SETTING", None)

# ## getenv

def test_getenv_returns_default_when_unset(monkeypatch):
  monkeypatch.delenv("TINY_SPEC_UNSET", raising=False)
  assert getenv("TINY_SPEC_UNSET", 7) == 7
  assert getenv("TINY_SPEC_UNSET") == 0

def test_getenv_converts_to_the_type_of_the_default(monkeypatch):
  monkeypatch.setenv("TINY_SPEC_VALUE", "12")
  assert getenv("TINY_SPEC_VALUE", 0) == 12 and type(getenv("TINY_SPEC_VALUE", 0)) is int
  assert getenv("TINY_SPEC_VALUE", "") == "12"
  assert getenv("TINY_SPEC_VALUE", 0.5) == 12.0 and type(getenv("TINY_SPEC_VALUE", 0.5)) is float

@pytest.mark.parametrize("setting, value", [("DEBUG", "abc"), ("JIT", "yes"), ("REWRITE_LIMIT", "1e3")])
def test_a_bad_setting_names_the_variable_and_what_it_allows(setting, value):
  # in a fresh interpreter: the settings are read when tiny is imported
  env = {**{k: v for k, v in os.environ.items() if k not in ContextVar.registry}, setting: value}
  result = subprocess.run([sys.executable, "-c", "import tiny"], env=env, capture_output=True, text=True, cwd=ROOT)
  last = result.stderr.strip().splitlines()[-1]
  assert result.returncode != 0 and last.startswith("ValueError:"), result.stderr
  assert f"{setting}={value!r}" in last and "integer" in last and ContextVar.registry[setting].doc in last, last

def test_a_missing_c_compiler_falls_back_to_python_with_one_warning():
  try: tiny.Device["CUDA"]
  except Exception: pass
  else: pytest.skip("a GPU works here: it is the default, and nothing falls back to PYTHON")
  env = {**{k: v for k, v in os.environ.items() if k not in ContextVar.registry}, "CC": "no-such-cc"}
  code = "import tiny; print(tiny.Device.DEFAULT, tiny.Tensor([1.0, 2.0]).sum().item(), tiny.Tensor([3]).tolist())"
  result = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
  assert result.returncode == 0 and result.stdout.split() == ["PYTHON", "3.0", "[3]"], result.stderr
  warnings = [line for line in result.stderr.splitlines() if "RuntimeWarning:" in line]
  assert len(warnings) == 1 and "no-such-cc" in warnings[0] and "PYTHON" in warnings[0], result.stderr

# ## ContextVar

def test_contextvar_reads_the_environment_when_created(setting):
  assert setting(3, env="5").value == 5
  assert setting(3).value == 3

def test_contextvar_registers_itself_by_name(setting):
  var = setting(0)
  assert ContextVar.registry["TINY_SPEC_SETTING"] is var

def test_contextvar_compares_and_tests_like_its_value(setting):
  var = setting(2)
  assert var >= 2 and var > 1 and var <= 2 and var < 3 and not var > 2
  assert bool(var) and not bool(setting(0))
  assert repr(var) == "TINY_SPEC_SETTING=2"

def test_every_builtin_setting_is_registered_with_a_doc():
  for name in ["DEBUG", "DEVICE", "JIT", "VIZ", "REWRITE_LIMIT", "DISABLE_COMPILER_CACHE"]:
    assert name in ContextVar.registry, name
    assert ContextVar.registry[name].doc, f"{name} has no doc"

# ## Context

def test_context_overrides_and_restores():
  before = tiny.DEBUG.value
  with Context(DEBUG=before + 2):
    assert tiny.DEBUG.value == before + 2 and tiny.DEBUG >= before + 2
  assert tiny.DEBUG.value == before

def test_context_restores_on_exception():
  before = tiny.DEBUG.value
  with pytest.raises(ValueError):
    with Context(DEBUG=before + 2): raise ValueError("boom")
  assert tiny.DEBUG.value == before

def test_nested_contexts_restore_in_order():
  before = tiny.DEBUG.value
  with Context(DEBUG=5):
    with Context(DEBUG=6, JIT=0):
      assert tiny.DEBUG.value == 6 and tiny.JIT.value == 0
    assert tiny.DEBUG.value == 5
  assert tiny.DEBUG.value == before

def test_context_works_as_a_decorator():
  before = tiny.DEBUG.value
  @Context(DEBUG=4)
  def read_debug(): return tiny.DEBUG.value
  assert read_debug() == 4 and tiny.DEBUG.value == before

def test_context_with_unknown_name_raises_keyerror_naming_it():
  before = tiny.DEBUG.value
  with pytest.raises(KeyError, match="NOT_A_SETTING"):
    Context(DEBUG=9, NOT_A_SETTING=1)
  assert tiny.DEBUG.value == before

# ## Small helpers

def test_prod():
  assert prod([2, 3, 4]) == 24
  assert prod([]) == 1
  assert prod((2, 3), start=5) == 30

def test_argsort_gives_indices_that_sort():
  xs = [3.0, 1.0, 2.0, 1.0]
  assert argsort(xs) == [1, 3, 2, 0]  # stable: equal values keep their order
  assert [xs[i] for i in argsort(xs)] == sorted(xs)

def test_flatten_one_level():
  assert flatten([[1], [2, 3], [], [[4]]]) == [1, 2, 3, [4]]

def test_all_same():
  assert all_same([]) and all_same([1]) and all_same([2, 2, 2])
  assert not all_same([1, 2])

def test_context_device_applies_after_tensors_exist():
  before = Device.DEFAULT
  Tensor([1.0]).realize()  # the default device has been used
  with Context(DEVICE="PYTHON"):
    assert Device.DEFAULT == "PYTHON" and Tensor([1.0]).device == "PYTHON" and Tensor.ones(2).device == "PYTHON"
  assert Device.DEFAULT == before

def test_the_device_environment_variable_is_read_when_a_device_is_chosen(monkeypatch):
  with Context(DEVICE=""):  # as when DEVICE was not set at import
    monkeypatch.setenv("DEVICE", "PYTHON")  # set after tiny was imported, as a script's argument parser would
    assert Device.DEFAULT == "PYTHON" and Tensor([1.0]).device == "PYTHON"
    monkeypatch.setenv("DEVICE", "NOSUCH")
    with pytest.raises(ValueError, match="NOSUCH"): Tensor([1.0])
