# # The CUDA device
#
# CUDA runs kernels on NVIDIA GPUs. tiny renders each kernel as CUDA C++,
# compiles it with nvrtc (NVIDIA's compiler as a library) to machine code for
# the GPU at hand, and launches it through the driver API (libcuda). Both are
# reached through ctypes: no Python package is needed, only the driver and
# nvrtc's shared library.
#
# Every GPU is its own device: `CUDA` (the same as `CUDA:0`), `CUDA:1`, ...
# Each has its own memory, its own compiled programs and its own driver
# context; a copy between two of them goes through the host. Where there is
# no driver or no GPU, `open_device` raises, and tiny leaves CUDA out of the
# devices that work here.
#
# Like every backend, this file has four parts, in order: allocator,
# renderer, compiler, program. The driver bindings come first, and
# `open_device()` puts everything together.
from __future__ import annotations
import ctypes, ctypes.util, functools, glob, os
from typing import Any
from tiny import Allocator, CStyleRenderer, Compiler, CompileError, Compiled, DType, Opt, Ops, PatternMatcher, UOp, UPat, dtypes, prod
from tiny import _coefficient, _ranges, _terms

# A backend may be the default device. It says so, and how strongly: the device
# with the highest priority that opens here is `Device.DEFAULT`. A GPU beats
# the CPU (1).
DEFAULT_PRIORITY = 2

# ## The driver and nvrtc
#
# Every driver and nvrtc call returns a status code; `check` turns a failure
# into an exception that names the call and the driver's own words for it.
# The libraries are looked up the usual way (the loader's path), then in the
# CUDA toolkit's folders.
def _find_library(name: str, versions: tuple[str, ...]) -> ctypes.CDLL:
  candidates = [f"lib{name}.so{v}" for v in versions] + [p for p in [ctypes.util.find_library(name)] if p]
  for folder in (os.environ.get("CUDA_PATH", ""), "/usr/local/cuda", "/opt/cuda"):
    candidates += sorted(glob.glob(os.path.join(folder, "lib*", f"lib{name}.so*")), reverse=True)
  for path in candidates:
    try: return ctypes.CDLL(path)
    except OSError: continue
  raise RuntimeError(f"lib{name}.so not found: no CUDA {'driver' if name == 'cuda' else 'toolkit library'} on this machine")

@functools.cache
def libcuda() -> ctypes.CDLL: return _find_library("cuda", (".1", ""))

@functools.cache
def libnvrtc() -> ctypes.CDLL: return _find_library("nvrtc", ("", ".13", ".12"))

def check(status: int, call: str) -> None:
  if status == 0: return
  message = ctypes.c_char_p()
  libcuda().cuGetErrorString(status, ctypes.byref(message))
  raise RuntimeError(f"{call} failed: CUDA error {status} ({(message.value or b'unknown').decode()})")

def cuda(call: str, *args: Any) -> None: check(getattr(libcuda(), call)(*args), call)

class GPU:
  """One GPU: its driver context, made current before every call that touches the device."""
  def __init__(self, ordinal: int):
    cuda("cuInit", 0)
    count, self.handle, self.context = ctypes.c_int(), ctypes.c_int(), ctypes.c_void_p()
    cuda("cuDeviceGetCount", ctypes.byref(count))
    if not 0 <= ordinal < count.value: raise RuntimeError(f"no GPU number {ordinal}: this machine has {count.value}")
    cuda("cuDeviceGet", ctypes.byref(self.handle), ordinal)
    cuda("cuDevicePrimaryCtxRetain", ctypes.byref(self.context), self.handle)
    self.arch = f"sm_{self.attribute(75)}{self.attribute(76)}"  # the compute capability: sm_90 for Hopper
    self.threads = self.attribute(16) * self.attribute(39)  # multiprocessors x threads each can hold at once
  def attribute(self, number: int) -> int:
    value = ctypes.c_int()
    cuda("cuDeviceGetAttribute", ctypes.byref(value), number, self.handle)
    return value.value
  def __call__(self, call: str, *args: Any) -> None:
    cuda("cuCtxSetCurrent", self.context)
    cuda(call, *args)
  def synchronize(self) -> None: self("cuCtxSynchronize")

# ## Allocator
#
# A block is a device address. Freed blocks wait in the base class's cache to
# be reused by size; when the GPU runs out of memory, the cache is given back
# to the driver and the allocation tried once more. Copies go through the
# driver: a copy out waits for the kernels before it, so what it reads is
# final.
class CUDAAllocator(Allocator):
  def __init__(self, gpu: GPU):
    super().__init__()
    self.gpu = gpu
  def _alloc(self, nbytes: int) -> int:
    address = ctypes.c_uint64()
    size = ctypes.c_size_t(max(nbytes, 1))  # the driver refuses 0 bytes
    try: self.gpu("cuMemAlloc_v2", ctypes.byref(address), size)
    except RuntimeError:
      self.release_cache()
      self.gpu("cuMemAlloc_v2", ctypes.byref(address), size)
    return address.value
  def release_cache(self) -> None:
    for blocks in self.free_blocks.values():
      for address in blocks: self.gpu("cuMemFree_v2", ctypes.c_uint64(address))
    self.free_blocks.clear()
  def copyin(self, dst: int, src: memoryview) -> None:
    if src.nbytes: self.gpu("cuMemcpyHtoD_v2", ctypes.c_uint64(dst), (ctypes.c_char * src.nbytes).from_buffer_copy(src), ctypes.c_size_t(src.nbytes))
  def copyout(self, src: int, nbytes: int) -> memoryview:
    out = bytearray(nbytes)
    if nbytes: self.gpu("cuMemcpyDtoH_v2", (ctypes.c_char * nbytes).from_buffer(out), ctypes.c_uint64(src), ctypes.c_size_t(nbytes))
    return memoryview(out)

# ## Renderer
#
# CUDA C++ is C with a few other words: the renderer sets the dialect fields
# of the C-style renderer (chapter 11) and the math functions. Two things C
# gets from compiler flags are spelled out here instead. `half` math is done in
# `float` and rounded back, as on the CPU: for +, -, *, / and sqrt, rounding to
# float first and then to half gives the same bits as rounding once. And C++
# leaves signed overflow undefined (nvrtc has no `-fwrapv`, and really does
# fold `INT_MIN + x` into nonsense), so signed adds, multiplies, negations and
# shifts are done in unsigned arithmetic, which wraps, and cast back.
#
# What is new on a GPU is parallelism. A kernel runs as a grid of blocks of
# threads, and the renderer decides which loops they share. Each parallel loop
# is written as a *grid-stride loop*: thread t of T runs iterations t, t+T,
# t+2T... That is correct for any number of threads, even one, so a wrong or
# missing launch size can only make a kernel slow, never wrong.
#
# - The output loops (kind LOOP, none of them inside a reduce) are spread over
#   all threads of the grid: the innermost over x, so neighbouring threads
#   touch neighbouring elements, the next two over y and z; deeper nests run
#   the outer loops in every thread.
# - A kernel with few outputs (under a quarter of the threads the GPU holds) and a reduce
#   gives each output a block instead, and splits the reduce over the block's
#   threads: each folds its share, then the block combines the partial values
#   in shared memory, in a tree of steps with a barrier after each. Every
#   thread of the block ends with the total. A reduce of fewer trips than a
#   block has threads stays in one thread, a loop in order as elsewhere.
# - A reduce to a single value (`sum` of a whole tensor) would leave all but
#   one block idle, so it is spread over the whole grid. Each block folds its
#   share and writes it to a small array of partial values beside the kernel;
#   the last block to finish (a counter, incremented atomically after a memory
#   fence, tells) folds the partial values in block order and alone goes on to
#   store the result. The order is fixed, so the result is the same every run.
BLOCK, GRID = 256, 1024  # threads in a block; blocks of a reduce to one value
FOLDS = (Ops.ADD, Ops.MUL, Ops.MAX)

def few_outputs(outputs: int, gpu_threads: int) -> bool: return outputs * 4 < gpu_threads  # too few for a thread each

# ## The GPU's opts
#
# Chapter 11's heuristic aims at a CPU: SIMD registers and a few cores. A GPU
# wants other things, so the renderer chooses its kernels' opts itself.
# Memory moves fastest in 16-byte accesses, neighbouring threads reading
# neighbouring chunks. CUDA C++ has no vector arithmetic to print lanes
# with, so the opts make 4 *copies* (UPCAST or UNROLL by 4), and the renderer
# turns 4 copies' loads or stores of neighbouring, 16-byte aligned elements
# into one `float4` access.
#
# - An elementwise kernel copies along the axis where its store is
#   contiguous: each thread moves 16 bytes per access.
# - A reduce split over a block (few outputs) unrolls its innermost loop by
#   4, so each thread reads 16 neighbouring bytes at a time and the warp 512.
#   (The CPU's unroll by 16 has each thread read 64 bytes: a warp's loads
#   then land 64 bytes apart.) A reduce too short to give every thread of
#   the block several trips is left as it is.
# - A reduce with a thread per output (a matmul) gets a register tile of
#   copies, as on the CPU: 4x4 outputs, or 2x4 where there would be fewer
#   tiles than the GPU holds threads. (On an H200, a square block of 16x16
#   threads, an unrolled reduce and 8x4 tiles were each no faster.)
VECTOR, UNROLL = 4, 4

def choose_opts(kernel: UOp, gpu_threads: int) -> list[Opt]:
  ranges = _ranges(kernel)
  if prod(r.src[0].arg for r in ranges) < 1024: return []  # too small to gain
  stores = [s.src[0].src[1] for s in kernel.src if s.op is Ops.STORE]
  loops = [(i, r) for i, r in enumerate(ranges) if r.kind == "LOOP"]
  reduces = [(i, r) for i, r in enumerate(ranges) if r.kind == "REDUCE"]
  if not reduces:
    return next(([Opt("UPCAST", i, VECTOR)] for i, r in loops if r.src[0].arg % VECTOR == 0 and all(_coefficient(x, r) == 1 for x in stores)), [])
  outputs = prod(r.src[0].arg for _, r in loops) * len(stores)
  if few_outputs(outputs, gpu_threads):
    i, r = reduces[-1]
    return [Opt("UNROLL", i, UNROLL)] if r.src[0].arg % UNROLL == 0 and prod(r.src[0].arg for _, r in reduces) >= 1024 else []
  loads = [u.src[1] for u in kernel.toposort() if u.op is Ops.INDEX and u.src[1] not in stores]
  tile = (4 if outputs // 16 >= gpu_threads else 2, 4)  # 4x4, or 2x4 where 4x4 tiles would leave threads idle
  # the two innermost output axes, each if some input stays put along it (and so is reused by every copy)
  return [Opt("UPCAST", i, n) for n, (i, r) in zip(tile, loops[-2:]) if r.src[0].arg % n == 0 and any(_coefficient(x, r) == 0 for x in loads)]

def _math(fn: str) -> Any: return lambda x, dtype: f"{fn}({x})" if dtype == dtypes.float64 else f"{fn}f({x})"

def _in_float(render: Any) -> Any:
  return lambda *args: render(*[f"((float){a})" for a in args[:-1]], dtypes.float32) if args[-1] == dtypes.float16 else render(*args)

def _wrapping(render: Any) -> Any:
  signed = {dtypes.int32: ("int", "unsigned int", dtypes.uint32), dtypes.int64: ("long long", "unsigned long long", dtypes.uint64)}
  def wrapped(*args: Any) -> str:
    if args[-1] not in signed: return render(*args)
    t, u, dtype = signed[args[-1]]
    return f"(({t}){render(*[f'(({u}){a})' for a in args[:-1]], dtype)})"
  return wrapped

class Plan:
  """How one kernel's loops map to the grid: the axis of each output loop, and the reduces split over threads."""
  def __init__(self, program: list[UOp], gpu_threads: int):
    opened: list[UOp] = []
    enclosing: dict[UOp, list[UOp]] = {}  # each RANGE -> the RANGEs around it
    for u in program:
      if u.op is Ops.RANGE: enclosing[u], opened = opened, opened + [u]
      if u.op is Ops.END: opened = opened[:-1]
    top = [r for r, around in enclosing.items() if all(o.kind != "REDUCE" for o in around)]  # inside no reduce
    outer = [r for r in top if r.kind != "REDUCE"]
    # the innermost output loop is x, the next two out y and z; loops further out run in every thread
    deepest = max((len(enclosing[r]) for r in outer), default=0)
    self.axis = {r: "xyz"[deepest - len(enclosing[r])] for r in outer if deepest - len(enclosing[r]) < 3}
    self.sizes = {a: max([r.src[0].arg for r in self.axis if self.axis[r] == a], default=1) for a in "xyz"}
    few = few_outputs(prod(r.src[0].arg for r in outer) * len([u for u in program if u.op is Ops.STORE]), gpu_threads)  # copies count
    final = {u.src[0]: u for u in program if u.op is Ops.ACCUMULATE}  # accumulator -> its update, also its final value
    users: dict[UOp, list[UOp]] = {}
    for u in program:
      for src in u.src: users.setdefault(src, []).append(u)
    updates = {f.src[1] for f in final.values()}
    def folds_up(v: UOp, op: Ops) -> bool:  # v's users reach accumulators' updates through the same fold only (copies add as a tree)
      return bool(users.get(v)) and all(w.op is op and (w in updates or folds_up(w, op)) for w in users[v])
    self.split: dict[UOp, list[tuple[UOp, Ops]]] = {}  # a reduce RANGE at the top -> the accumulators combined after it
    self.lanes: dict[UOp, tuple[UOp, int]] = {}  # each RANGE whose trips are shared by threads -> (its top, stride)
    self.flat_size: dict[UOp, int] = {}  # each top -> the trips of the flat loop
    roots = [r for r in top if r.kind == "REDUCE"] if few else []
    accs = {root: [(acc, final[acc].src[1].op) for acc in final if root in acc.src[1:]] for root in roots}
    if not all(op in FOLDS and acc in final[acc].src[1].src for a in accs.values() for acc, op in a): roots = []  # not folds
    for root in roots:
      self.split[root] = accs[root]
      # A nest of reduce loops, one in the other (a float sum, blocked), is shared as one flat loop when the
      # accumulators of its inner loops only add into the ones around them: each thread then sums its share.
      chain = [root]
      while (inner := [c for c, around in enclosing.items() if around and around[-1] is chain[-1]]) and len(inner) == 1: chain += inner
      inner_accs = [acc for acc in final if set(acc.src[1:]) <= set(chain[1:])]
      nested = not inner and all(final[acc].src[1].op in FOLDS and folds_up(final[acc], final[acc].src[1].op) for acc in inner_accs)
      for i, r in enumerate(chain if nested else [root]): self.lanes[r] = (root, prod(c.src[0].arg for c in chain[i + 1:]) if nested else 1)
      self.flat_size[root] = prod(r.src[0].arg for r in chain) if nested else root.src[0].arg
    if any(n < BLOCK for n in self.flat_size.values()): self.split, self.lanes = {}, {}  # shorter than a block: a thread per output
    self.gpu_threads, self.grid_wide = gpu_threads, not outer and len(self.split) == 1
    self.partials = {acc: f"partial{i}" for accs in self.split.values() for i, (acc, _) in enumerate(accs)} if self.grid_wide else {}
  def launch(self) -> dict[str, tuple[int, int, int]]:
    if self.grid_wide: return {"global_size": (min(-(-max(*self.flat_size.values(), 1) // BLOCK), GRID), 1, 1), "local_size": (BLOCK, 1, 1)}
    # the driver's limits on the grid, and at least one of everything (a loop of size 0 still launches)
    limits, sizes = {"x": 2**31 - 1, "y": 65535, "z": 65535}, {a: max(n, 1) for a, n in self.sizes.items()}
    if self.split: return {"global_size": tuple(min(sizes[a], limits[a]) for a in "xyz"), "local_size": (BLOCK, 1, 1)}
    # 16 blocks per block the GPU holds at once: each thread takes a few elements, and the GPU never waits for blocks
    local, limits["x"] = min(BLOCK, sizes["x"]), self.gpu_threads // BLOCK * 16
    grid = (min(-(-sizes["x"] // local), limits["x"]), min(sizes["y"], limits["y"]), min(sizes["z"], limits["z"]))
    return {"global_size": grid, "local_size": (local, 1, 1)}

def _parallel_range(ctx: CUDARenderer, x: UOp) -> str | None:
  i, n = ctx[x], ctx[x.src[0]]
  if x in ctx.plan.lanes:  # one flat loop over the whole nest, shared by the block's (or the grid's) threads
    root, stride = ctx.plan.lanes[x]
    flat = f"lane{root.number}"
    digit = f"{flat}" + (f"/{stride}" if stride > 1 else "") + (f"%{n}" if x is not root else "")
    if x is not root: return f"{{ int {i} = {digit};"
    start, step = ("blockIdx.x*blockDim.x+threadIdx.x", "gridDim.x*blockDim.x") if ctx.plan.grid_wide else ("threadIdx.x", "blockDim.x")
    return f"for (int {flat} = {start}; {flat} < {ctx.plan.flat_size[root]}; {flat} += {step}) {{ int {i} = {digit};"
  if (a := ctx.plan.axis.get(x)) is None: return None  # a plain loop, in every thread
  if ctx.plan.split: return f"for (int {i} = blockIdx.{a}; {i} < {n}; {i} += gridDim.{a}) {{"
  return f"for (int {i} = blockIdx.{a}*blockDim.{a}+threadIdx.{a}; {i} < {n}; {i} += gridDim.{a}*blockDim.{a}) {{"

def _block_fold(ctx: CUDARenderer, acc: UOp, op: Ops) -> list[str]:
  # every thread's value into shared memory, then pairs combined in steps of 1, 2, 4...: the total to every thread
  a, t = ctx[acc], ctx.types[acc.dtype]
  both = ctx.code_for_op[op](f"{a}_shared[threadIdx.x]", f"{a}_shared[threadIdx.x+step]", acc.dtype)
  if acc.dtype in ctx.narrow_types: both = f"(({t}){both})"
  return [f"{a}_shared[threadIdx.x] = {a};", "__syncthreads();", "for (int step = 1; step < blockDim.x; step *= 2) {",
          f"  if (threadIdx.x % (2*step) == 0 && threadIdx.x+step < blockDim.x) {a}_shared[threadIdx.x] = {both};",
          "  __syncthreads();", "}", f"{a} = {a}_shared[0];", "__syncthreads();"]

def _combine(ctx: CUDARenderer, x: UOp) -> str | None:
  if (accs := ctx.plan.split.get(x.src[0])) is None: return None
  lines = ["}"] + [f"__shared__ {ctx.types[acc.dtype]} {ctx[acc]}_shared[{BLOCK}];" for acc, _ in accs]
  for acc, op in accs: lines += _block_fold(ctx, acc, op)
  if not ctx.plan.grid_wide: return "\n".join(lines)
  lines += ["__shared__ bool last;", "if (threadIdx.x == 0) {"] + [f"  {ctx.plan.partials[acc]}[blockIdx.x] = {ctx[acc]};" for acc, _ in accs]
  lines += ["  __threadfence();", "  last = atomicAdd(&blocks_done, 1) == gridDim.x - 1;", "}", "__syncthreads();", "if (!last) return;"]
  for acc, op in accs:
    a, fold = ctx[acc], ctx.code_for_op[op](ctx[acc], f"{ctx.plan.partials[acc]}[i]", acc.dtype)
    lines += [f"{a} = {ctx[acc.src[0]]};", f"for (int i = threadIdx.x; i < gridDim.x; i += blockDim.x) {a} = (({ctx.types[acc.dtype]}){fold});"]
    lines += _block_fold(ctx, acc, op)
  return "\n".join(lines + ["if (threadIdx.x == 0) blocks_done = 0;  // ready for the next launch"])

cuda_rewrite = PatternMatcher([(UPat(Ops.RANGE, name="x"), _parallel_range), (UPat(Ops.END, name="x"), _combine)])

# The 16-byte accesses: 4 loads (or stores) of one buffer, at the addresses `base + 0..3` where every term of `base` is a
# multiple of 4 (the buffer itself starts 256-byte aligned), in one loop with nothing between them that could move
# them. Each maps to (the first, for loads, or the last, for stores, of the 4 in program order; its lane).
VECTOR_TYPES = {dtypes.float32: "float4", dtypes.int32: "int4", dtypes.uint32: "uint4"}

def _vector_groups(program: list[UOp]) -> dict[UOp, tuple[UOp, int]]:
  found: dict[tuple, dict[int, int]] = {}
  for n, u in enumerate(program):
    if u.op in (Ops.LOAD, Ops.STORE) and u.src[0].src[0].dtype in VECTOR_TYPES and u.src[0].valid.arg is True:
      base, offset = [t for t in _terms(u.src[0].src[1]) if t.op is not Ops.CONST], sum(t.arg for t in _terms(u.src[0].src[1]) if t.op is Ops.CONST)
      if all(t.op is Ops.MUL and t.src[1].op is Ops.CONST and t.src[1].arg % 4 == 0 for t in base):
        found.setdefault((u.op, u.src[0].src[0], frozenset(base), offset // 4), {})[offset % 4] = n
  groups: dict[UOp, tuple[UOp, int]] = {}
  for (op, buffer, _, _), lanes in found.items():
    first, last = min(lanes.values()), max(lanes.values())
    between = [u.op in (Ops.RANGE, Ops.END) or (op is Ops.STORE and u.op is Ops.LOAD and u.src[0].src[0] is buffer) for u in program[first:last]]
    if len(lanes) == 4 and not any(between) and (op is Ops.STORE or lanes[0] == first):
      groups.update({program[n]: (program[first if op is Ops.LOAD else last], lane) for lane, n in lanes.items()})
  return groups

class CUDARenderer(CStyleRenderer):
  device = "CUDA"
  vector_bytes = 0  # no lanes: CUDA C++ has no vector arithmetic; copies of loads and stores become float4 instead
  kernel_prefix = 'extern "C" __global__ void'
  restrict = "__restrict__"
  nan, infinity = "__int_as_float(0x7fc00000)", "__int_as_float(0x7f800000)"
  types = {**CStyleRenderer.types, dtypes.bool: "bool", dtypes.float16: "half"}
  code_for_op = {op: _in_float(_wrapping(fn) if op in (Ops.ADD, Ops.MUL, Ops.NEG, Ops.SHL) else fn) for op, fn in
                 {**CStyleRenderer.code_for_op, Ops.SQRT: _math("sqrt"), Ops.EXP2: _math("exp2"), Ops.LOG2: _math("log2"),
                  Ops.SIN: _math("sin"), Ops.TRUNC: _math("trunc")}.items()}
  def __init__(self, gpu_threads: int = 1): self.gpu_threads = gpu_threads
  def choose_opts(self, kernel: UOp) -> list[Opt]: return choose_opts(kernel, self.gpu_threads)
  def render(self, name: str, program: list[UOp]) -> str:
    self.plan, self.vector = Plan(program, self.gpu_threads), _vector_groups(program)
    # `half` is declared in a header that takes nvrtc long to read: only kernels that use it include it
    self.prefix = "#include <cuda_fp16.h>\n" if any(u.dtype == dtypes.float16 for u in program) else ""
    self.prefix += "template <class T, class F> __device__ T bitcast(F x) { union { F from; T to; } u; u.from = x; return u.to; }\n"
    if self.plan.grid_wide:
      self.prefix += "".join(f"__device__ {self.types[acc.dtype]} {p}[{GRID}];\n" for acc, p in self.plan.partials.items())
      self.prefix += "__device__ unsigned int blocks_done = 0;\n"
    return "".join(line + "\n" for line in super().render(name, program).splitlines() if line.strip())  # a store merged away leaves no line
  def render_uop(self, u: UOp) -> str:
    if u not in self.vector: return cuda_rewrite.rewrite(u, ctx=self) or super().render_uop(u)
    head, lane = self.vector[u]
    if u.op is Ops.LOAD: return f"*(const {self.type_of(u)}*)&{self[u.src[0]]}" if u is head else f"{self.names[head]}.{'xyzw'[lane]}"
    group, t = sorted((lane, s) for s, (h, lane) in self.vector.items() if h is head), VECTOR_TYPES[u.src[1].dtype]
    return f"*({t}*)&{self[group[0][1].src[0]]} = make_{t}({', '.join(self[s.src[1]] for _, s in group)});" if u is head else ""
  # the first load of 4 is a vector: its own lane is .x (a store is never read)
  def type_of(self, u: UOp) -> str: return VECTOR_TYPES[u.dtype] if self.vector.get(u, (None,))[0] is u else super().type_of(u)
  def __getitem__(self, u: UOp) -> str: return f"{self.names[u]}.x" if self.vector.get(u, (None,))[0] is u else super().__getitem__(u)
  def render_bitcast(self, x: str, src: DType, dst: DType) -> str: return f"bitcast<{self.types[dst]}>({x})"
  def render_const(self, value: Any, dtype: DType) -> str:  # a float nan becomes half 0x7fff; the reference's is 0x7e00
    return "__ushort_as_half(0x7e00)" if dtype == dtypes.float16 and value != value else super().render_const(value, dtype)
  def launch_dims(self, program: list[UOp]) -> dict[str, tuple[int, int, int]]: return Plan(program, self.gpu_threads).launch()

# ## Compiler
#
# nvrtc compiles for the exact GPU (`sm_90` on an H200), so the driver loads
# machine code and compiles nothing at start. `--fmad=false` keeps `a*b+c` as
# two rounded operations, as `-ffp-contract=off` does on the CPU, so results
# match the reference bit for bit. The toolkit's include folder holds
# `cuda_fp16.h`.
class CUDACompiler(Compiler):
  def __init__(self, arch: str):
    major, minor = ctypes.c_int(), ctypes.c_int()
    libnvrtc().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    folders = [os.path.join(p, "include") for p in (os.environ.get("CUDA_PATH", ""), "/usr/local/cuda", "/opt/cuda") if p]
    self.options = [f"--gpu-architecture={arch}", "--fmad=false"] + [f"-I{f}" for f in folders if os.path.isdir(f)]
    self.cache_key = f"nvrtc {major.value}.{minor.value} " + " ".join(self.options)
  def compile(self, src: str) -> bytes:
    nvrtc, program = libnvrtc(), ctypes.c_void_p()
    nvrtc.nvrtcCreateProgram(ctypes.byref(program), src.encode(), b"kernel.cu", 0, None, None)
    options = (ctypes.c_char_p * len(self.options))(*[o.encode() for o in self.options])
    failed = nvrtc.nvrtcCompileProgram(program, len(self.options), options) != 0
    size = ctypes.c_size_t()  # the compiler's messages if it failed, else the machine code
    getattr(nvrtc, "nvrtcGetProgramLogSize" if failed else "nvrtcGetCUBINSize")(program, ctypes.byref(size))
    out = ctypes.create_string_buffer(size.value)
    getattr(nvrtc, "nvrtcGetProgramLog" if failed else "nvrtcGetCUBIN")(program, out)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    if failed: raise CompileError(f"nvrtc failed to compile this kernel:\n{src}\n--- compiler output ---\n{out.value.decode(errors='replace')}")
    return out.raw

# ## Program
#
# The driver loads the machine code as a module and finds the kernel in it by
# name. A launch passes the address of each argument (here, each buffer's
# device address) and the grid and block sizes the renderer chose; it returns
# at once, and the GPU runs the kernel in order with the launches and copies
# before and after it. `synchronize` waits for all of them.
class CUDAProgram:
  def __init__(self, gpu: GPU, name: str, binary: bytes):
    self.gpu, self.module, self.function = gpu, ctypes.c_void_p(), ctypes.c_void_p()
    gpu("cuModuleLoadData", ctypes.byref(self.module), binary)
    gpu("cuModuleGetFunction", ctypes.byref(self.function), self.module, name.encode())
  def __call__(self, *blocks: int, global_size: tuple = (1, 1, 1), local_size: tuple = (1, 1, 1)) -> None:
    args = (ctypes.c_uint64 * len(blocks))(*blocks)
    pointers = (ctypes.c_void_p * len(blocks))(*[ctypes.addressof(args) + 8 * i for i in range(len(blocks))])
    self.gpu("cuLaunchKernel", self.function, *[ctypes.c_uint(v) for v in (*global_size, *local_size)], ctypes.c_uint(0), None, pointers, None)
  def __del__(self) -> None:  # at exit the driver may already be gone: then there is nothing left to unload
    if self.module: libcuda().cuModuleUnload(self.module)

def open_device(name: str) -> Compiled:
  gpu = GPU(int(name.partition(":")[2] or 0))
  return Compiled(name, CUDAAllocator(gpu), CUDARenderer(gpu.threads), CUDACompiler(gpu.arch), functools.partial(CUDAProgram, gpu), gpu.synchronize)
