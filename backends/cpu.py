# # The CPU device
#
# CPU runs kernels as native code: tiny renders each kernel as C, compiles it
# with the system's C compiler (`$CC`, default `cc`) into a shared library,
# and calls it through ctypes. ctypes releases the GIL during the call, so a
# kernel that the optimizer split over threads runs on every core at once.
#
# Like every backend, this file has four parts, in order: allocator,
# renderer, compiler, program. `open_device()` puts them together.
from __future__ import annotations
import concurrent.futures, ctypes, functools, math, os, shutil, struct, subprocess, tempfile
from typing import Any
from tiny import Allocator, CStyleRenderer, Compiler, CompileError, Compiled, DType, Ops, UOp, dtypes

# Where no `DEVICE` is set, CPU is the default device unless a faster one (a
# GPU: priority 2) works here.
DEFAULT_PRIORITY = 1

# ## Allocator
#
# Memory is a ctypes byte array; a kernel receives its address. A copy in
# writes through a memoryview of that array, straight from Python's buffer
# (a numpy array's own memory, say): one copy, no temporary on the way.
class CPUAllocator(Allocator):
  def _alloc(self, nbytes: int) -> ctypes.Array: return (ctypes.c_uint8 * nbytes)()
  def copyin(self, dst: ctypes.Array, src: memoryview) -> None: memoryview(dst).cast("B")[:src.nbytes] = src
  def copyout(self, src: ctypes.Array, nbytes: int) -> memoryview: return memoryview(bytes(src)[:nbytes])

# ## Renderer
#
# The C-style renderer of chapter 12 does the work; the CPU adds the math
# functions, spelled as compiler builtins so no libm call is needed when the
# compiler can inline them. `_Float16` math is done in float and rounded back,
# as the narrow-type rule of the base renderer expects. Its dialect is the base
# renderer's, plain C, with `<math.h>` for the `NAN` and `INFINITY` it spells.
# For the optimizer (chapter 11) it has one worker thread per core: a THREAD
# range is the kernel's last parameter, `core_id`, instead of a loop.
def _math(fn: str) -> Any:
  def render(x: str, dtype: DType) -> str:
    if dtype == dtypes.float64: return f"__builtin_{fn}({x})"
    return f"__builtin_{fn}f({x})" if dtype == dtypes.float32 else f"__builtin_{fn}f((float){x})"
  return render

# Vector math. The lanes of chapter 11 are GCC and clang vector types, on
# which C's arithmetic works lane by lane, but not its `?:` and not libm: a
# kernel with a max, a where, an exp2 or a log2 would be computed one lane at a time.
# So the CPU brings vector forms of these, as macros in the kernel's prelude
# that work for a vector of any width:
#
# - a comparison of two vectors gives a *mask*, -1 (all bits set) or 0 in each
#   lane, in ints as wide as the lanes compared. A bool lane holds 0 or 1 in an
#   int, like a scalar `_Bool` (chapter 12), so `-(a<b)` is the bool vector;
# - `where(c, a, b)` and `max(a, b)` choose bits: `(m & a) | (~m & b)` with the
#   mask m, the float lanes read as ints of the same size. max's mask is
#   `a != a | a > b`, as the scalar form: a nan in either operand is the result;
# - `exp2(x)`: x = n + f with n an integer and |f| <= 1/2; 2^f is the Taylor
#   series of e^(f ln 2) to degree 7 for float (its first dropped term is below
#   half a float's ulp) and 13 for double; 2^n is built as exponent bits,
#   in two halves so that each is a normal number: the product rounds once,
#   also into the subnormal range. Below -151 (-1076 for double) every result
#   rounds to 0 and above 129 (1025) to inf, so x is clamped there first; a nan
#   passes through f. n is rounded by adding a magic number, and read as an
#   int from the sum's bits: no float-to-int conversion, which a nan would make
#   undefined.
# - `log2(x)`: x = m * 2^e read off its bits (a subnormal x scaled by 2^mantissa-bits
#   first), m moved into [sqrt(1/2), sqrt(2)); log2(m) = 2/ln 2 * atanh(s) with
#   s = (m-1)/(m+1), |s| < 0.18, the odd series s + s^3/3 + ... to s^9 for float
#   and s^21 for double; then 0 gives -inf, a negative number nan, inf and nan
#   themselves.
#
# Each macro evaluates its operands once (`__auto_type` holds them), so nested
# uses print linearly; that is why the fold of a max over the lanes (the end
# of a max reduce) uses a macro too, `tiny_max`, where the scalar form would
# print each operand three times at each of 4 levels. (clang 14 miscompiles a
# max whose operand is the constant -0.0 in these forms, choosing -0.0 over
# 0.0; gcc does not, and the fold's operands are never constants.)
def _exp2_macro(name: str, suffix: str, degree: int, bits: int, bias: int, lo: int, hi: int) -> str:
  coefficients = [f"{math.log(2) ** k / math.factorial(k)!r}{suffix}" for k in range(degree + 1)]
  poly = functools.reduce(lambda inner, c: f"{c} + f_ * ({inner})", reversed(coefficients[:-1]), coefficients[-1])
  # adding 1.5 * 2^(mantissa bits) rounds to an integer, n, held in the sum's low bits: n = bits(sum) - bits(magic)
  magic, (int_format, float_format, int_suffix) = 1.5 * 2 ** bits, ("<q", "<d", "ll") if bits == 52 else ("<i", "<f", "")
  magic_bits = f"{struct.unpack(int_format, struct.pack(float_format, magic))[0]}{int_suffix}"
  return f"""#define {name}(v) ({{ __auto_type x_ = (v); __typeof__(x_) zero_ = {{}}; \\
  __typeof__(x_) c_ = tiny_blend(x_ > {hi}.0{suffix}, zero_ + {hi}.0{suffix}, x_); \\
  c_ = tiny_blend(c_ < {lo}.0{suffix}, zero_ + {lo}.0{suffix}, c_); \\
  __typeof__(x_) t_ = c_ + {magic!r}{suffix}, f_ = c_ - (t_ - {magic!r}{suffix}); \\
  __typeof__(x_ < x_) i_ = (__typeof__(x_ < x_))t_ - {magic_bits}, h_ = i_ >> 1; \\
  ({poly}) * (__typeof__(x_))((h_ + {bias}) << {bits}) * (__typeof__(x_))((i_ - h_ + {bias}) << {bits}); }})
"""

def _log2_macro(name: str, suffix: str, terms: int, bits: int, bias: int, smallest_normal: str) -> str:
  coefficients = [f"{2 / ((2 * k + 1) * math.log(2))!r}{suffix}" for k in range(terms)]
  poly = functools.reduce(lambda inner, c: f"{c} + z_ * ({inner})", reversed(coefficients[:-1]), coefficients[-1])
  one_bits, exponent_mask = ("0x3ff0000000000000ll", "0x7ff") if bits == 52 else ("0x3f800000", "0xff")
  return f"""#define {name}(v) ({{ __auto_type x_ = (v); __typeof__(x_) zero_ = {{}}; __typeof__(x_ < x_) sub_ = x_ < {smallest_normal}; \\
  __typeof__(x_) y_ = tiny_blend(sub_, x_ * {float(2 ** bits)!r}{suffix}, x_); __typeof__(sub_) k_ = (__typeof__(sub_))y_; \\
  __typeof__(sub_) e_ = ((k_ >> {bits}) & {exponent_mask}) - {bias} - (sub_ & {bits}); \\
  __typeof__(x_) m_ = (__typeof__(x_))((k_ & ((1ll << {bits}) - 1)) | {one_bits}); __typeof__(sub_) big_ = m_ > 1.4142135623730951{suffix}; \\
  m_ = tiny_blend(big_, m_ * 0.5{suffix}, m_); e_ -= big_; \\
  __typeof__(x_) s_ = (m_ - 1.0{suffix}) / (m_ + 1.0{suffix}), z_ = s_ * s_; \\
  __typeof__(x_) r_ = __builtin_convertvector(e_, __typeof__(x_)) + s_ * ({poly}); \\
  r_ = tiny_blend(x_ == 0, zero_ - INFINITY, r_); r_ = tiny_blend(x_ < 0, zero_ + NAN, r_); \\
  tiny_blend((x_ != x_) | (x_ == INFINITY), x_, r_); }})
"""

# A kernel's source starts with the macros it uses (and those they use), no others.
VECTOR_MATH = {
  "tiny_blend": "#define tiny_blend(m, a, b) ((__typeof__(b))(((m) & (__typeof__(m))(a)) | (~(m) & (__typeof__(m))(b))))\n",
  "tiny_max": "#define tiny_max(a, b) ({ __auto_type a_ = (a); __auto_type b_ = (b); (a_ != a_ || a_ > b_) ? a_ : b_; })\n",
  "tiny_vmax": "#define tiny_vmax(a, b) ({ __auto_type a_ = (a); __auto_type b_ = (b); tiny_blend((a_ != a_) | (a_ > b_), a_, b_); })\n",
  "tiny_vwhere": "#define tiny_vwhere(c, a, b) ({ __auto_type a_ = (a); __auto_type b_ = (b); \\\n"
                 "  tiny_blend(__builtin_convertvector((c) != 0, __typeof__(a_ < a_)), a_, b_); })\n",
  "tiny_vexp2f": _exp2_macro("tiny_vexp2f", "f", 7, 23, 127, -151, 129),
  "tiny_vexp2": _exp2_macro("tiny_vexp2", "", 13, 52, 1023, -1076, 1025),
  "tiny_vlog2f": _log2_macro("tiny_vlog2f", "f", 5, 23, 127, "1.1754943508222875e-38f"),
  "tiny_vlog2": _log2_macro("tiny_vlog2", "", 11, 52, 1023, "2.2250738585072014e-308")}

class CPURenderer(CStyleRenderer):
  device = "CPU"
  threads = os.cpu_count() or 1
  special_index, special_params = {"THREAD": "core_id"}, {"THREAD": "int core_id"}
  code_for_op = {**CStyleRenderer.code_for_op, Ops.SQRT: _math("sqrt"), Ops.EXP2: _math("exp2"), Ops.LOG2: _math("log2"),
                 Ops.SIN: _math("sin"), Ops.TRUNC: _math("trunc")}
  prefix = "#include <math.h>\n"
  # each operand a vector (a scalar is broadcast: `x - {}`, as `x + {}` would turn -0.0 into 0.0), the result vector's
  # type; bools are ints, so + on them is | and not is ^1, and &, |, ^ go through here for their scalar operands' sake
  vector_forms = {
    Ops.MAX: lambda a, b, dt, vt: f"tiny_vmax({a}, {b})", Ops.WHERE: lambda c, a, b, dt, vt: f"tiny_vwhere({c}, {a}, {b})",
    Ops.CMPLT: lambda a, b, dt, vt: f"__builtin_convertvector(-({a}<{b}), {vt})",
    Ops.CMPNE: lambda a, b, dt, vt: f"__builtin_convertvector(-({a}!={b}), {vt})",
    Ops.EXP2: lambda x, dt, vt: f"tiny_vexp2f({x})" if dt == dtypes.float32 else f"tiny_vexp2({x})",
    Ops.LOG2: lambda x, dt, vt: f"tiny_vlog2f({x})" if dt == dtypes.float32 else f"tiny_vlog2({x})",
    Ops.ADD: lambda a, b, dt, vt: f"({a}|{b})" if dt == dtypes.bool else None, Ops.NEG: lambda x, dt, vt: f"({x}^1)" if dt == dtypes.bool else None,
    # gcc broadcasts no scalar _Bool into a vector by itself: on bools these take the base renderer's form, broadcast here
    **{op: (lambda a, b, dt, vt, op=op: CStyleRenderer.code_for_op[op](a, b, dt) if dt == dtypes.bool else None)
       for op in (Ops.MUL, Ops.AND, Ops.OR, Ops.XOR)}}
  vector_ops = CStyleRenderer.vector_ops | set(vector_forms)
  vector_dtypes = CStyleRenderer.vector_dtypes + (dtypes.bool,)
  def render_vector(self, u: UOp, text: str) -> str:
    if u.op in self.vector_forms:  # None: the base renderer's form does
      scalar = lambda s: f"(int){self[s]}" if s.dtype == dtypes.bool else self[s]  # gcc broadcasts no _Bool
      args = [self[s] if s in self.vec else f"({scalar(s)}-({self.vector_type(s.dtype)}){{}})" for s in u.src]
      if (code := self.vector_forms[u.op](*args, u.src[-1].dtype, self.type_of(u))) is not None: return code
    return super().render_vector(u, text)
  def fold(self, u: UOp) -> str:  # a max of the lanes, as a tree of tiny_max: the scalar form would repeat each operand
    if u.src[1].op is not Ops.MAX: return super().fold(u)
    def tree(xs: list[str]) -> str: return xs[0] if len(xs) == 1 else f"tiny_max({tree(xs[:len(xs)//2])}, {tree(xs[len(xs)//2:])})"
    return tree([f"{self.names[u.src[0]]}[{i}]" for i in range(self.width)])
  def render(self, name: str, program: list[UOp]) -> str:
    src, macros = super().render(name, program), ""
    for macro, text in reversed(VECTOR_MATH.items()):  # tiny_blend, which the others use, is first
      if macro + "(" in src + macros: macros = text + macros
    return macros + src

# ## Compiler
#
# `-ffp-contract=off` keeps `a*b+c` as two rounded operations (no fused
# multiply-add), and `-fwrapv` makes signed overflow wrap: both so results
# match the reference device bit for bit. `-march=native` lets the compiler
# use every vector instruction this machine has, except AVX-512's float16
# instructions: gcc 12 and 13 emit some that their assembler rejects or
# miscompile them, and float16 math is done in float anyway (above).
#
# Which of these flags work depends on the compiler and the machine (clang 14
# has `_Float16` on x86 only with those very instructions; an ARM compiler
# knows no `-mno-avx512fp16`), so the compiler is probed once, when the device
# opens: the first set of flags that compiles a float16 kernel wins, and if
# none does, the device does without float16. The probe stops short of
# linking (`-c`): what it tests is the compiler and the assembler, and linking
# is a third of a small compile.
#
# A binary is only good for the compiler and CPU that made it, so the disk
# cache key holds the compiler's version text and the macros it predefines
# under these flags, which name every instruction set it may use: a cache
# shared between machines never hands one CPU another's binary.
FLAG_CHOICES = (["-march=native", "-mno-avx512fp16"], ["-march=native"], [])
HALF_PROBE = "void probe(_Float16* x) { x[0] = (_Float16)((float)x[0] + 1.0f); }\n"

class CPUCompiler(Compiler):
  joins_sources = True  # C compiles several kernels, one after another in one file, to one library
  def __init__(self) -> None:
    self.cc = os.environ.get("CC", "cc")
    if shutil.which(self.cc) is None: raise RuntimeError(f"C compiler {self.cc!r} not found (set CC)")
    base = ["-shared", "-O2", "-fPIC", "-ffp-contract=off", "-fwrapv", "-fno-math-errno"]
    for probe in (HALF_PROBE, HALF_PROBE.replace("_Float16", "float")):
      if (works := next((choice for choice in FLAG_CHOICES if self._run(base + choice + ['-c'], probe)[0] == 0), None)) is not None: break
    if works is None: raise RuntimeError(f"C compiler {self.cc!r} compiles no kernel: {self._run(base, probe)[1]}")
    self.flags, self.half = base + works, probe == HALF_PROBE
    version = subprocess.run([self.cc, "--version"], capture_output=True, text=True).stdout
    macros = subprocess.run([self.cc, *self.flags, "-dM", "-E", "-x", "c", "-"], input="", capture_output=True, text=True).stdout
    self.cache_key = " ".join([self.cc] + self.flags) + "\n" + version + "".join(sorted(macros.splitlines(keepends=True)))
  def _run(self, flags: list[str], src: str) -> tuple[int, str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, "kernel.so")
      result = subprocess.run([self.cc, *flags, "-x", "c", "-", "-o", out, "-lm"], input=src.encode(), capture_output=True)
      if result.returncode != 0: return result.returncode, result.stderr.decode(errors="replace"), b""
      with open(out, "rb") as f: return 0, "", f.read()
  def compile(self, src: str) -> bytes:
    code, message, lib = self._run(self.flags, src)
    if code != 0: raise CompileError(f"{self.cc} failed to compile this kernel:\n{message}\n--- kernel source ---\n{src}")
    return lib

# ## Program
#
# ctypes loads a library from a file, so the binary is written to a temporary
# file, loaded, and the file removed (the loaded copy stays mapped); a library
# that holds several kernels (compiled together) is loaded once. A call
# passes each buffer's address; a kernel split over threads (`global_size`)
# is called once per worker with its `core_id`, all at once on a thread pool.
class CPUProgram:
  def __init__(self, name: str, lib: bytes):
    self.fn = _load_library(lib)[name]
    self.fn.restype = None
  def __call__(self, *blocks: ctypes.Array, global_size: tuple[int, ...] = ()) -> None:
    if not global_size: return self.fn(*blocks)  # a ctypes array passes as a pointer to its memory
    # a kernel split over threads runs once per worker, told which it is; ctypes lets go of the GIL meanwhile. The
    # first part runs here, not on the pool: waking one worker fewer costs 30 us less per kernel
    others = [_workers.submit(self.fn, *blocks, core_id) for core_id in range(1, global_size[0])]
    self.fn(*blocks, 0)
    for part in others: part.result()

@functools.cache
def _load_library(lib: bytes) -> ctypes.CDLL:
  with tempfile.NamedTemporaryFile(suffix=".so") as f:
    f.write(lib)
    f.flush()
    return ctypes.CDLL(f.name)

_workers = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1)

def open_device(name: str) -> Compiled:
  compiler, renderer = CPUCompiler(), CPURenderer()
  if not compiler.half: renderer.supported_dtypes = tuple(d for d in renderer.supported_dtypes if d != dtypes.float16)
  if "__AVX512F__" in compiler.cache_key: renderer.vector_bytes = 64  # the compiler may use AVX-512's 64-byte registers
  return Compiled(name, CPUAllocator(), renderer, compiler, CPUProgram)
