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
from tiny import OptError, _affine, _coefficient, _ranges, _strides, _terms, apply_opt, substitute

# A backend may be the default device. It says so, and how strongly: the device
# with the highest priority that opens here is `Device.DEFAULT`. A GPU beats
# the CPU (1).
DEFAULT_PRIORITY = 2

# ## The driver and nvrtc
#
# Every driver call returns a status code; `cuda(call, ...)` makes the call
# and turns a failure into an exception that names the call and the driver's
# own words for it. The libraries (`library("cuda")`, `library("nvrtc")`) are
# looked up the usual way (the loader's path), then in the CUDA toolkit's
# folders.
SONAMES = {"cuda": (".1", ""), "nvrtc": ("", ".13", ".12")}  # the driver's, and nvrtc's of CUDA 13 and 12

@functools.cache
def library(name: str) -> ctypes.CDLL:
  candidates = [f"lib{name}.so{v}" for v in SONAMES[name]] + [p for p in [ctypes.util.find_library(name)] if p]
  for folder in (os.environ.get("CUDA_PATH", ""), "/usr/local/cuda", "/opt/cuda"):
    candidates += sorted(glob.glob(os.path.join(folder, "lib*", f"lib{name}.so*")), reverse=True)
  for path in candidates:
    try: return ctypes.CDLL(path)
    except OSError: continue
  raise RuntimeError(f"lib{name}.so not found: no CUDA {'driver' if name == 'cuda' else 'toolkit library'} on this machine")

def cuda(call: str, *args: Any) -> None:
  if (status := getattr(library("cuda"), call)(*args)) == 0: return
  message = ctypes.c_char_p()
  library("cuda").cuGetErrorString(status, ctypes.byref(message))
  raise RuntimeError(f"{call} failed: CUDA error {status} ({(message.value or b'unknown').decode()})")

class GPU:
  """One GPU: its driver context, made current before every call that touches the device."""
  def __init__(self, ordinal: int):
    cuda("cuInit", 0)
    self.handle, self.context = ctypes.c_int(), ctypes.c_void_p()
    cuda("cuDeviceGet", ctypes.byref(self.handle), ordinal)  # a GPU this machine lacks: "invalid device ordinal"
    cuda("cuDevicePrimaryCtxRetain", ctypes.byref(self.context), self.handle)
    # the compute capability (sm_90 for Hopper), and the threads it holds at once: multiprocessors x threads each
    self.arch, self.threads = f"sm_{self.attribute(75)}{self.attribute(76)}", self.attribute(16) * self.attribute(39)
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
    address, size = ctypes.c_uint64(), ctypes.c_size_t(max(nbytes, 1))  # the driver refuses 0 bytes
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
# - A plain matrix product big enough gets the GPU's own opt, TILE (below).
# - Any other reduce with a thread per output gets a register tile of
#   copies, as on the CPU: 4x4 outputs, or 2x4 where there would be fewer
#   tiles than the GPU holds threads. (On an H200, a square block of 16x16
#   threads, an unrolled reduce and 8x4 tiles were each no faster.)
def choose_opts(kernel: UOp, gpu_threads: int) -> list[Opt]:
  if tile_matmul(kernel, gpu_threads): return [Opt("TILE", 0, TILE)]
  ranges = _ranges(kernel)
  if prod(r.src[0].arg for r in ranges) < 1024: return []  # too small to gain
  stores = [s.src[0].src[1] for s in kernel.src if s.op is Ops.STORE]
  loops, reduces = ([(i, r) for i, r in enumerate(ranges) if r.kind == kind] for kind in ("LOOP", "REDUCE"))
  if not reduces:
    return next(([Opt("UPCAST", i, 4)] for i, r in loops if r.src[0].arg % 4 == 0 and all(_coefficient(x, r) == 1 for x in stores)), [])
  outputs = prod(r.src[0].arg for _, r in loops) * len(stores)
  if few_outputs(outputs, gpu_threads):
    i, r = reduces[-1]
    return [Opt("UNROLL", i, 4)] if r.src[0].arg % 4 == 0 and prod(r.src[0].arg for _, r in reduces) >= 1024 else []
  loads = [u.src[1] for u in kernel.toposort() if u.op is Ops.INDEX and u.src[1] not in stores]
  tile = (4 if outputs // 16 >= gpu_threads else 2, 4)  # 4x4, or 2x4 where 4x4 tiles would leave threads idle
  # the two innermost output axes, each if some input stays put along it (and so is reused by every copy)
  return [Opt("UPCAST", i, n) for n, (i, r) in zip(tile, loops[-2:]) if r.src[0].arg % n == 0 and any(_coefficient(x, r) == 0 for x in loads)]

# ## Matrix products in tiles
#
# A matrix product is the one kernel whose speed is arithmetic, not memory,
# and a GPU computes it fastest with a block of threads working together:
# the block copies a tile of A (128 rows, 64 bytes of K) and one of B (64
# bytes of K, 128 columns) into shared memory, and every thread computes
# its part of the block's 128x128 outputs from there, each value it loads
# read by many threads. While the block computes one pair of tiles, the next
# pair is on its way (`cp.async`, a copy that needs no registers). For
# float16 the arithmetic is done by the tensor cores: each warp computes 64x32
# outputs as 4x4 `mma` instructions of 16x8 outputs over 16 of K, fed from
# shared memory by `ldmatrix`, which hands each thread exactly the values
# that the instruction expects of it. For float32 each thread computes 8x8
# outputs with fused multiply-adds.
#
# This is one opt of the GPU's own, `TILE`: `choose_opts` picks it for a
# kernel that is a plain product of row-major matrices (every address a
# constant plus each loop times a constant: A and B move along K by one
# element and by a row, C by a row and by one element), whose sides the tiles
# divide, with at least as many tiles as the GPU has multiprocessors.
# Applied (`apply_opt`), it rewrites the kernel into one `MMA` UOp per tile,
# stored: two loops over the tiles, which the block indices share, and the
# addresses where the tiles of A, B and C start. The renderer prints it as a
# call of `matmul_tile`, which loops over K: a routine in CUDA C++ among the
# helpers below, which every kernel's source begins with (the folds of a
# reduce split over a block or the grid are calls of helpers too).
# The fused multiply-add rounds once where tiny's reference rounds twice:
# like every GPU library's matrix product, this one is a little more exact.
TILE, TILE_TYPES = 128, (dtypes.float16, dtypes.float32)
CUDA_HELPERS = r"""
// bits of one type read as another
template <class T, class F> __device__ T bitcast(F x) { union { F from; T to; } u; u.from = x; return u.to; }
// every thread's x into shared memory, then pairs combined in steps of 1, 2, 4...: the total, to every thread
template <class T, class F> __device__ T block_fold(T x, T* shared, F op) {
  shared[threadIdx.x] = x;
  __syncthreads();
  for (int step = 1; step < blockDim.x; step *= 2) {
    if (threadIdx.x % (2 * step) == 0 && threadIdx.x + step < blockDim.x)
      shared[threadIdx.x] = op(shared[threadIdx.x], shared[threadIdx.x + step]);
    __syncthreads();
  }
  x = shared[0];
  __syncthreads();
  return x;
}
__device__ bool last_block(unsigned int* done) {
  __shared__ bool last;
  if (threadIdx.x == 0) {
    __threadfence();  // the block's partial values are seen by every block before it counts as done
    last = atomicAdd(done, 1) == gridDim.x - 1;
  }
  __syncthreads();
  return last;
}
template <class T, class F> __device__ T grid_fold(T x, const T* partial, T* shared, F op) {
  for (int i = threadIdx.x; i < gridDim.x; i += blockDim.x) x = op(x, partial[i]);
  return block_fold(x, shared, op);
}
// cp.async: 16 bytes from device memory straight into shared memory, waited for by cp.async.wait_group
__device__ void fetch16(void* to, const void* from) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"((unsigned)__cvta_generic_to_shared(to)), "l"(from));
}
// One block's 128x128 tile of C = A @ B (row-major, leading dimensions lda, ldb, ldc), over the whole of K.
template <class T, int BK = 64 / sizeof(T), int E = 16 / sizeof(T)>
__device__ void matmul_tile(T* C, const T* A, const T* B, int K, int lda, int ldb, int ldc) {
  // two stages of 128xBK of A and BKx128 of B, rows padded by 16 bytes so that no two rows start in one bank
  __shared__ __align__(16) T As[2][128][BK + E], Bs[2][BK][128 + E];
  int t = threadIdx.x, lane = t % 32;
  float acc[64] = {};
  auto fetch = [&](int s, int k) {  // each thread moves 2 chunks of 16 bytes of each tile
    for (int c = t; c < 512; c += 256) {
      fetch16(&As[s][c / 4][c % 4 * E], A + (c / 4) * lda + k + c % 4 * E);
      fetch16(&Bs[s][c * E / 128][c * E % 128], B + (k + c * E / 128) * ldb + c * E % 128);
    }
    asm volatile("cp.async.commit_group;");
  };
  fetch(0, 0);
  for (int k = 0; k < K; k += BK) {
    int s = k / BK % 2;
    if (k + BK < K) fetch(s ^ 1, k + BK);  // the next stage loads while this one is computed
    else asm volatile("cp.async.commit_group;");
    asm volatile("cp.async.wait_group 1;" ::: "memory");
    __syncthreads();
    if constexpr (sizeof(T) == 2) {
      // tensor cores: warp w computes rows w/4*64.. (4 blocks of 16) and columns w%4*32.. (4 blocks of 8)
      int wm = t / 128 * 64, wn = t / 32 % 4 * 32;
      for (int kk = 0; kk < BK; kk += 16) {
        unsigned a[4][4], b[4][2];
        for (int i = 0; i < 4; i++)
          asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(a[i][0]), "=r"(a[i][1]), "=r"(a[i][2]),
                       "=r"(a[i][3]) : "r"((unsigned)__cvta_generic_to_shared(&As[s][wm + i * 16 + lane % 16][kk + lane / 16 * 8])));
        for (int j = 0; j < 4; j += 2)
          asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(b[j][0]), "=r"(b[j][1]), "=r"(b[j + 1][0]),
                       "=r"(b[j + 1][1]) : "r"((unsigned)__cvta_generic_to_shared(&Bs[s][kk + lane % 16][wn + j * 8 + lane / 16 * 8])));
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) {
            float* d = &acc[(i * 4 + j) * 4];
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                         : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                         : "r"(a[i][0]), "r"(a[i][1]), "r"(a[i][2]), "r"(a[i][3]), "r"(b[j][0]), "r"(b[j][1]));
          }
      }
    } else {
      // CUDA cores: thread (ty, tx) of 16x16 computes rows ty, ty+16, ... and columns tx*4.., 64+tx*4..
      int tx = t % 16, ty = t / 16;
      for (int kk = 0; kk < BK; kk += 4) {
        float4 a[8];
        for (int r = 0; r < 8; r++) a[r] = *(const float4*)&As[s][ty + 16 * r][kk];
        for (int q = 0; q < 4; q++) {
          float4 b0 = *(const float4*)&Bs[s][kk + q][tx * 4], b1 = *(const float4*)&Bs[s][kk + q][64 + tx * 4];
          float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
          for (int r = 0; r < 8; r++)
            for (int c = 0; c < 8; c++) acc[r * 8 + c] = fmaf(((const float*)&a[r])[q], b[c], acc[r * 8 + c]);
        }
      }
    }
    __syncthreads();
  }
  if constexpr (sizeof(T) == 2) {  // a fragment's 4 values: rows lane/4 and lane/4+8, columns lane%4*2 and the one after
    int wm = t / 128 * 64, wn = t / 32 % 4 * 32;
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 4; j++)
        for (int h = 0; h < 2; h++)
          for (int e = 0; e < 2; e++) C[(wm + i * 16 + lane / 4 + h * 8) * ldc + wn + j * 8 + lane % 4 * 2 + e] = T(acc[(i * 4 + j) * 4 + h * 2 + e]);
  } else {
    int tx = t % 16, ty = t / 16;
    for (int r = 0; r < 8; r++)
      for (int h = 0; h < 2; h++) *(float4*)&C[(ty + 16 * r) * ldc + h * 64 + tx * 4] = *(float4*)&acc[r * 8 + h * 4];
  }
}
"""

def tile_matmul(kernel: UOp, gpu_threads: int) -> UOp | None:
  """The kernel as one MMA per 128x128 tile, if it is a plain product of row-major matrices that the tiles fit; else None."""
  ranges, stores, v = _ranges(kernel), [s for s in kernel.src if s.op is Ops.STORE], kernel.src[0].src[1]
  loops, k = [r for r in ranges if r.kind == "LOOP"], [r for r in ranges if r.kind == "REDUCE"]
  while v.op is Ops.CAST and v.dtype in TILE_TYPES or v.op is Ops.REDUCE and v.arg is Ops.ADD: v = v.src[0]  # to the product
  if len(stores) != 1 or len(loops) != 2 or not k or (t := stores[0].src[0].dtype) not in TILE_TYPES or v.op is not Ops.MUL or \
     any(x.op is not Ops.LOAD or x.dtype != t or x.src[0].valid.arg is not True for x in v.src): return None
  c, a, b = stores[0].src[0], *sorted((x.src[0] for x in v.src), key=lambda x: _coefficient(x.src[1], loops[0]) == 0)
  if None in (found := [_affine(x.src[1], ranges) for x in (c, a, b)]): return None
  # C runs along its rows by ldc and along j by 1, A by lda and along K by 1, B along j by 1 and along K by ldb: K's loops
  # step as the flat index lowering made of them
  (c0, (ldc, *sc)), (a0, (lda, *sa)), (b0, sb), steps = *found, _strides([r.src[0].arg for r in k])
  K, ldb = prod(r.src[0].arg for r in k), sb[-1]
  if sc != [1] + [0] * len(k) or sa != [0] + steps or sb != [0, 1] + [ldb * s for s in steps] or K % (64 // t.itemsize) \
     or any(x % (16 // t.itemsize) for x in (c0, a0, b0, lda, ldb, ldc)) or any(r.src[0].arg % TILE for r in loops) \
     or prod(r.src[0].arg // TILE for r in loops) < gpu_threads // 2048: return None  # fewer tiles than multiprocessors
  # where the tiles start: the output loops count tiles, K starts at 0
  at = {r: r.replace(src=(UOp.const(dtypes.int32, r.src[0].arg // TILE),)) * TILE if r in loops else UOp.const(dtypes.int32, 0) for r in ranges}
  def start(x: UOp) -> UOp: return x.replace(src=(x.src[0], substitute(x.src[1], at), x.src[2]))
  return UOp.sink(UOp(Ops.STORE, dtypes.void, (start(c), UOp(Ops.MMA, t, (start(a), start(b)), (K, lda, ldb, ldc)))), *kernel.src[1:])

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
    opened, enclosing = [], {}  # each RANGE -> the RANGEs around it
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
    users, updates = {}, {f.src[1] for f in final.values()}  # users: each UOp -> the UOps that read it
    for u, src in ((u, s) for u in program for s in u.src): users.setdefault(src, []).append(u)
    def folds_up(v: UOp, op: Ops) -> bool:  # v's users reach accumulators' updates through the same fold only (copies add as a tree)
      return bool(users.get(v)) and all(w.op is op and (w in updates or folds_up(w, op)) for w in users[v])
    # lanes: each RANGE whose trips are shared by threads -> (its top, stride); flat_size: each top -> the trips of
    # the flat loop; split (below): each reduce RANGE at the top -> the accumulators combined after it, (acc, op)s
    self.lanes, self.flat_size = {}, {}
    accs = {root: [(acc, final[acc].src[1].op) for acc in final if root in acc.src[1:]] for root in top if root.kind == "REDUCE" and few}
    self.split = accs if all(op in FOLDS and acc in final[acc].src[1].src for a in accs.values() for acc, op in a) else {}  # folds only
    for root in self.split:
      # A nest of reduce loops, one in the other (a float sum, blocked), is shared as one flat loop when the
      # accumulators of its inner loops only add into the ones around them: each thread then sums its share.
      chain = [root]
      while (inner := [c for c, around in enclosing.items() if around and around[-1] is chain[-1]]) and len(inner) == 1: chain += inner
      inner_accs = [acc for acc in final if set(acc.src[1:]) <= set(chain[1:])]
      nested = not inner and all(final[acc].src[1].op in FOLDS and folds_up(final[acc], final[acc].src[1].op) for acc in inner_accs)
      for i, r in enumerate(chain if nested else [root]): self.lanes[r] = (root, prod(c.src[0].arg for c in chain[i + 1:]) if nested else 1)
      self.flat_size[root] = prod(r.src[0].arg for r in chain) if nested else root.src[0].arg
    if any(n < BLOCK for n in self.flat_size.values()): self.split, self.lanes = {}, {}  # shorter than a block: a thread per output
    # a reduce to one value is spread over the grid; a matrix product in tiles (MMA) has a block per tile
    self.gpu_threads, self.grid_wide, self.tiled = gpu_threads, not outer and len(self.split) == 1, any(u.op is Ops.MMA for u in program)
    self.partials = {acc: f"partial{i}" for accs in self.split.values() for i, (acc, _) in enumerate(accs)} if self.grid_wide else {}
  def launch(self) -> dict[str, tuple[int, int, int]]:
    if self.grid_wide: return {"global_size": (min(-(-max(*self.flat_size.values(), 1) // BLOCK), GRID), 1, 1), "local_size": (BLOCK, 1, 1)}
    # the driver's limits on the grid, and at least one of everything (a loop of size 0 still launches)
    limits, sizes = {"x": 2**31 - 1, "y": 65535, "z": 65535}, {a: max(n, 1) for a, n in self.sizes.items()}
    if self.split or self.tiled: return {"global_size": tuple(min(sizes[a], limits[a]) for a in "xyz"), "local_size": (BLOCK, 1, 1)}
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
  if ctx.plan.split or ctx.plan.tiled: return f"for (int {i} = blockIdx.{a}; {i} < {n}; {i} += gridDim.{a}) {{"
  return f"for (int {i} = blockIdx.{a}*blockDim.{a}+threadIdx.{a}; {i} < {n}; {i} += gridDim.{a}*blockDim.{a}) {{"

# The folds are routines of CUDA_HELPERS: `block_fold` combines the block's values, `last_block` tells the last block of
# the grid to be done (each block's thread 0 has written the block's partial values), `grid_fold` folds those.
def _block_fold(ctx: CUDARenderer, acc: UOp, op: Ops, partials: str = "") -> str:
  a, t, fold = ctx[acc], ctx.types[acc.dtype], ctx.code_for_op[op]("x", "y", acc.dtype)
  what = f"grid_fold({ctx[acc.src[0]]}, {partials}, " if partials else f"block_fold({a}, "  # the grid's: from the identity
  return f"{a} = {what}{a}_shared, []({t} x, {t} y) {{ return ({t}){fold}; }});"

def _combine(ctx: CUDARenderer, x: UOp) -> str | None:
  if (accs := ctx.plan.split.get(x.src[0])) is None: return None
  lines = ["}"] + [f"__shared__ {ctx.types[acc.dtype]} {ctx[acc]}_shared[{BLOCK}];" for acc, _ in accs]
  lines += [_block_fold(ctx, acc, op) for acc, op in accs]
  if not ctx.plan.grid_wide: return "\n".join(lines)
  lines += [f"if (threadIdx.x == 0) {ctx.plan.partials[acc]}[blockIdx.x] = {ctx[acc]};" for acc, _ in accs]
  lines += ["if (!last_block(&blocks_done)) return;"] + [_block_fold(ctx, acc, op, ctx.plan.partials[acc]) for acc, op in accs]
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
  # at most a block of BLOCK threads, and two blocks on each multiprocessor: each thread gets at most 128 registers
  kernel_prefix = f'extern "C" __global__ void __launch_bounds__({BLOCK}, 2)'
  restrict = "__restrict__"
  nan, infinity = "__int_as_float(0x7fc00000)", "__int_as_float(0x7f800000)"
  types = {**CStyleRenderer.types, dtypes.bool: "bool", dtypes.float16: "half"}
  code_for_op = {op: _in_float(_wrapping(fn) if op in (Ops.ADD, Ops.MUL, Ops.NEG, Ops.SHL) else fn) for op, fn in
                 {**CStyleRenderer.code_for_op, Ops.SQRT: _math("sqrt"), Ops.EXP2: _math("exp2"), Ops.LOG2: _math("log2"),
                  Ops.SIN: _math("sin"), Ops.TRUNC: _math("trunc")}.items()}
  def __init__(self, gpu_threads: int = 1): self.gpu_threads = gpu_threads
  def choose_opts(self, kernel: UOp) -> list[Opt]: return choose_opts(kernel, self.gpu_threads)
  def apply_opt(self, kernel: UOp, opt: Opt) -> UOp:
    if opt.op == "TILE" and (tiled := tile_matmul(kernel, self.gpu_threads)) is None: raise OptError(f"{opt}: no matrix product that tiles fit")
    return tiled if opt.op == "TILE" else apply_opt(kernel, opt)
  def render(self, name: str, program: list[UOp]) -> str:
    self.plan, self.vector = Plan(program, self.gpu_threads), _vector_groups(program)
    # `half` is declared in a header that takes nvrtc long to read: only kernels that use it include it
    self.prefix = ("#include <cuda_fp16.h>\n" if any(u.dtype == dtypes.float16 for u in program) else "") + CUDA_HELPERS
    program = [u for u in program if u.op is not Ops.MMA]  # an MMA is printed as a call where it is stored
    if self.plan.grid_wide:
      self.prefix += "".join(f"__device__ {self.types[acc.dtype]} {p}[{GRID}];\n" for acc, p in self.plan.partials.items())
      self.prefix += "__device__ unsigned int blocks_done = 0;\n"
    return "".join(line + "\n" for line in super().render(name, program).splitlines() if line.strip())  # a store merged away leaves no line
  def render_uop(self, u: UOp) -> str:
    if u.op is Ops.STORE and (m := u.src[1]).op is Ops.MMA:
      return f"matmul_tile(&{self[u.src[0]]}, &{self[m.src[0]]}, &{self[m.src[1]]}, {', '.join(map(str, m.arg))});"
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
    library("nvrtc").nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    folders = [os.path.join(p, "include") for p in (os.environ.get("CUDA_PATH", ""), "/usr/local/cuda", "/opt/cuda") if p]
    self.options = [f"--gpu-architecture={arch}", "--fmad=false"] + [f"-I{f}" for f in folders if os.path.isdir(f)]
    self.cache_key = f"nvrtc {major.value}.{minor.value} " + " ".join(self.options)
  def compile(self, src: str) -> bytes:
    nvrtc, program = library("nvrtc"), ctypes.c_void_p()
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
    if self.module: library("cuda").cuModuleUnload(self.module)

def open_device(name: str) -> Compiled:
  gpu = GPU(int(name.partition(":")[2] or 0))
  return Compiled(name, CUDAAllocator(gpu), CUDARenderer(gpu.threads), CUDACompiler(gpu.arch), functools.partial(CUDAProgram, gpu), gpu.synchronize)
