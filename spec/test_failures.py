"""Failure injection for the compile path: a kernel that fails to compile, damaged and foreign entries in the disk
cache, and a cache folder that cannot be written. After each, kernels compile again and every tensor holds its value."""
import struct, warnings
import pytest
import tiny
from tiny import Tensor, Device

@pytest.fixture
def cache(tmp_path, monkeypatch):
  """An empty cache folder of this test's own, with the disk cache on and the in-memory program cache put aside."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  monkeypatch.setattr(tiny, "_programs", {})
  monkeypatch.setattr(tiny, "_cache_off", False)
  with tiny.Context(DISABLE_COMPILER_CACHE=0): yield tmp_path / "tiny"

def program(device: str, scale: float) -> tuple[str, str]:
  """A kernel's name and source, built like every kernel (scale makes it one no other test has)."""
  t = Tensor([1.0, 2.0, 3.0], device=device) * scale + 1
  items, _ = tiny.create_schedule([t.uop])
  kernel = [i for i in items if i.ast.op is not tiny.Ops.COPY][-1]
  tiny.get_program(kernel.ast, device)
  k = next(iter(tiny._programs.values()))
  return k.name, k.src

def runs(device: str, name: str, lib: bytes, scale: float) -> bool:
  out, inp = tiny.Buffer(device, 3, tiny.dtypes.float32), tiny.Buffer(device, 3, tiny.dtypes.float32)
  inp.copyin(struct.pack("<3f", 1.0, 2.0, 3.0))
  Device[device].runtime(name, lib)(out.block, inp.block)
  return list(out.copyout().cast("f")) == [v * scale + 1 for v in (1.0, 2.0, 3.0)]

@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "empty", "foreign"])
def test_a_bad_cache_entry_is_found_and_compiled_again(device, cache, damage):
  compiler = Device[device].compiler
  name, src = program(device, 1.25)
  _, other_src = program(device, 1.75)
  good = compiler.compile_cached(src)
  compiler.compile_cached(other_src)
  entry = next(p for p in cache.iterdir() if p.read_bytes().endswith(good))
  other = next(p for p in cache.iterdir() if p != entry)
  data = entry.read_bytes()
  bad = {"truncated": data[:len(data) // 2], "flipped byte": data[:-7] + bytes([data[-7] ^ 0x40]) + data[-6:], "empty": b"",
         "foreign": other.read_bytes()}[damage]
  entry.write_bytes(bad)
  lib = compiler.compile_cached(src)
  assert runs(device, name, lib, 1.25), f"a {damage} cache entry gave a wrong program"
  assert entry.read_bytes() != bad and compiler.compile_cached(src) == lib, "the entry was not rebuilt"

def test_an_unusable_cache_folder_means_compiling_without_it_with_one_warning(device, tmp_path, monkeypatch):
  blocker = tmp_path / "not-a-folder"
  blocker.write_text("a file where the cache folder would go")
  monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
  monkeypatch.setattr(tiny, "_programs", {})
  monkeypatch.setattr(tiny, "_cache_off", False)
  with tiny.Context(DISABLE_COMPILER_CACHE=0), warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    a = Tensor([1.0, 2.0], device=device) * 3.5
    b = Tensor([4, 5], device=device) * 7
    assert a.tolist() == [3.5, 7.0] and b.tolist() == [28, 35]
  said = [w for w in caught if "cache folder" in str(w.message)]
  assert len(said) == 1 and str(blocker) in str(said[0].message), [str(w.message) for w in caught]

def test_a_kernel_that_fails_to_compile_leaves_every_tensor_correct(device, cache, monkeypatch):
  compiler = Device[device].compiler
  a = Tensor([1.0, 2.0, 3.0], device=device).realize()
  b = a * 4.25 + 2
  real = type(compiler).compile
  def broken(self, src):
    if "4.25" in src: raise tiny.CompileError("a planted compile failure")
    return real(self, src)
  monkeypatch.setattr(type(compiler), "compile", broken)
  with pytest.raises(tiny.CompileError, match="planted"): b.realize()
  assert a.tolist() == [1.0, 2.0, 3.0] and (a + 1).tolist() == [2.0, 3.0, 4.0]
  monkeypatch.setattr(type(compiler), "compile", real)
  assert b.tolist() == [6.25, 10.5, 14.75] and a.tolist() == [1.0, 2.0, 3.0]
