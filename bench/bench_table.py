"""The workloads of issue 14, on tiny and, in the same process, on numpy and on tinygrad when it is installed.

    python bench/bench_table.py [--device CPU] [--repeat 5] [--only matmul,sum]

Each workload runs once to warm up (compiling its kernels, filling caches), then --repeat times; the best time
counts. Every framework's result is checked against a float64 numpy reference before it is timed, and a
disagreement is printed instead of a time. The last columns are ratios: tiny's time over numpy's and over
tinygrad's (below 1: tiny is faster). tinygrad is optional and never imported by tiny or its tests
(`pip install tinygrad` to compare). Speed is only ever measured here, never asserted in tests.
"""
import argparse, os, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
if "--device" in sys.argv[:-1]:  # before tinygrad is imported: it reads DEV once, tiny reads DEVICE at each use
  os.environ["DEVICE"] = os.environ["DEV"] = sys.argv[sys.argv.index("--device") + 1]
import numpy as np
import tiny
from tiny import Tensor, TinyJit, Context, nn
from tiny.nn.optim import SGD

try:
  import tinygrad
  from tinygrad import Tensor as TGTensor, TinyJit as TGJit, Context as TGContext, Device as TGDevice
  from tinygrad.nn import Linear as TGLinear
  from tinygrad.nn.optim import SGD as TGSGD
except ImportError:
  tinygrad = None

RNG = np.random.default_rng(0)
def rand(*shape) -> np.ndarray: return RNG.standard_normal(shape).astype(np.float32)

def best_of(fn, repeat: int) -> float:
  """The best time of `repeat` runs after a warm-up (a run that measures itself returns its own time)."""
  fn()
  times = []
  for _ in range(repeat):
    start = time.perf_counter()
    inner = fn()
    times.append(inner if isinstance(inner, float) else time.perf_counter() - start)
  return min(times)

def agrees(got, want, rtol=1e-3) -> bool:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return got.shape == want.shape and np.allclose(got, want, rtol=rtol, atol=rtol * (np.abs(want).max() + 1e-30))

# ## The workloads
# Each returns {framework: (run, result)}: `run` computes afresh (tiny: assigns into an output, so the graph is built
# and run every time, as a training step would), `result` reads the last value. `unit` turns a time into the number
# in the table.

def np_conv(x, w):  # im2col: the 3x3 windows of the padded input as columns, times the weights
  n, c, h, wd = x.shape
  cols = np.lib.stride_tricks.sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
  cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n * h * wd, c * 9)
  return (cols @ w.reshape(w.shape[0], -1).T).reshape(n, h, wd, -1).transpose(0, 3, 1, 2), cols

def np_conv_fwd_bwd(x, w, g):
  out, cols = np_conv(x, w)
  n, c, h, wd = x.shape
  gm = g.transpose(0, 2, 3, 1).reshape(n * h * wd, -1)
  dw = (gm.T @ cols).reshape(w.shape)
  dcols = (gm @ w.reshape(w.shape[0], -1)).reshape(n, h, wd, c, 3, 3)
  dx = np.zeros((n, c, h + 2, wd + 2), np.float32)
  for i in range(3):
    for j in range(3): dx[:, :, i:i + h, j:j + wd] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
  return out, dx[:, :, 1:-1, 1:-1], dw

def tiny_run(make, shape):
  out = Tensor.empty(*shape)
  return (lambda: out.assign(make()).realize()), (lambda: out.numpy())

def w_matmul(n):
  a, b = rand(n, n), rand(n, n)
  ta, tb = Tensor(a), Tensor(b)
  fw = {"tiny": tiny_run(lambda: ta @ tb, (n, n)), "numpy": ((lambda: np.matmul(a, b, out=npo)), lambda: npo)}
  npo = np.empty((n, n), np.float32)
  if tinygrad:
    ga, gb = TGTensor(a).realize(), TGTensor(b).realize()
    box = {}
    fw["tinygrad"] = ((lambda: box.__setitem__("r", (ga @ gb).realize())), lambda: box["r"].numpy())
  return fw, a.astype(np.float64) @ b

def w_elementwise():
  a, b, c = rand(1 << 22), rand(1 << 22), rand(1 << 22)
  ta, tb, tc = Tensor(a), Tensor(b), Tensor(c)
  ref = np.exp(np.maximum(a.astype(np.float64) * b + c, 0) * 0.5)
  box = {}
  fw = {"tiny": tiny_run(lambda: ((ta * tb + tc).relu() * 0.5).exp(), (1 << 22,)),
        "numpy": ((lambda: box.__setitem__("n", np.exp(np.maximum(a * b + c, 0) * 0.5))), lambda: box["n"])}
  if tinygrad:
    ga, gb, gc = TGTensor(a).realize(), TGTensor(b).realize(), TGTensor(c).realize()
    fw["tinygrad"] = ((lambda: box.__setitem__("g", ((ga * gb + gc).relu() * 0.5).exp().realize())), lambda: box["g"].numpy())
  return fw, ref

def w_sum():
  v = rand(1 << 24)
  tv, box = Tensor(v), {}
  fw = {"tiny": tiny_run(lambda: tv.sum(), ()), "numpy": ((lambda: box.__setitem__("n", v.sum())), lambda: box["n"])}
  if tinygrad:
    gv = TGTensor(v).realize()
    fw["tinygrad"] = ((lambda: box.__setitem__("g", gv.sum().realize())), lambda: box["g"].numpy())
  return fw, v.astype(np.float64).sum()

def w_softmax():
  x = rand(4096, 1024)
  tx, box = Tensor(x), {}
  def np_softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
  fw = {"tiny": tiny_run(lambda: tx.softmax(1), x.shape), "numpy": ((lambda: box.__setitem__("n", np_softmax(x))), lambda: box["n"])}
  if tinygrad:
    gx = TGTensor(x).realize()
    fw["tinygrad"] = ((lambda: box.__setitem__("g", gx.softmax(1).realize())), lambda: box["g"].numpy())
  return fw, np_softmax(x.astype(np.float64))

def w_conv(backward: bool):
  x, w, g = rand(32, 3, 32, 32), rand(32, 3, 3, 3), rand(32, 32, 32, 32)
  ref = np_conv_fwd_bwd(*(a.astype(np.float64) for a in (x, w, g)))
  box = {}
  if backward:
    def tiny_step():
      tx, tw = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
      out = tx.conv2d(tw, padding=1)
      (out * Tensor(g)).sum().backward()
      Tensor.realize(out, tx.grad, tw.grad)
      box["t"] = (out, tx.grad, tw.grad)
    fw = {"tiny": (tiny_step, lambda: [t.numpy() for t in box["t"]]),
          "numpy": ((lambda: box.__setitem__("n", np_conv_fwd_bwd(x, w, g))), lambda: box["n"])}
    want = ref
  else:
    tx, tw = Tensor(x), Tensor(w)
    fw = {"tiny": tiny_run(lambda: tx.conv2d(tw, padding=1), (32, 32, 32, 32)),
          "numpy": ((lambda: box.__setitem__("n", np_conv(x, w)[0])), lambda: box["n"])}
    want = ref[0]
  if tinygrad:
    if backward:
      def tg_step():
        gx, gw = TGTensor(x), TGTensor(w)
        out = gx.conv2d(gw, padding=1)
        dx, dw = (out * TGTensor(g)).sum().gradient(gx, gw)
        TGTensor.realize(out, dx, dw)
        box["g"] = (out, dx, dw)
      fw["tinygrad"] = (tg_step, lambda: [t.numpy() for t in box["g"]])
    else:
      gx, gw = TGTensor(x).realize(), TGTensor(w).realize()
      fw["tinygrad"] = ((lambda: box.__setitem__("g", gx.conv2d(gw, padding=1).realize())), lambda: box["g"].numpy())
  return fw, want

MLP_X, MLP_Y = rand(128, 784), RNG.integers(0, 10, 128)
MLP_W = [rand(784, 256) * 0.05, np.zeros(256, np.float32), rand(256, 10) * 0.05, np.zeros(10, np.float32)]

def np_mlp_step(p, lr=0.01):
  """One SGD step of the 784-256-10 relu MLP with softmax cross-entropy, by hand; returns the loss."""
  w1, b1, w2, b2 = p
  h = MLP_X @ w1 + b1
  a = np.maximum(h, 0)
  z = a @ w2 + b2
  e = np.exp(z - z.max(1, keepdims=True))
  s = e / e.sum(1, keepdims=True)
  loss = -np.log(s[np.arange(128), MLP_Y]).mean()
  dz = s.copy()
  dz[np.arange(128), MLP_Y] -= 1
  dz /= 128
  dw2, db2, da = a.T @ dz, dz.sum(0), dz @ w2.T
  dh = da * (h > 0)
  dw1, db1 = MLP_X.T @ dh, dh.sum(0)
  for w, d in zip(p, (dw1, db1, dw2, db2)): w -= lr * d
  return loss

def w_mlp(jit: bool):
  ref_params = [w.astype(np.float64) for w in MLP_W]
  want = [np_mlp_step(ref_params) for _ in range(3)]
  l1, l2 = nn.Linear(784, 256), nn.Linear(256, 10)
  for t, w in zip((l1.weight, l1.bias, l2.weight, l2.bias), (MLP_W[0].T, MLP_W[1], MLP_W[2].T, MLP_W[3])): t.assign(Tensor(np.ascontiguousarray(w))).realize()
  opt = SGD([l1.weight, l1.bias, l2.weight, l2.bias], lr=0.01)
  tx, ty = Tensor(MLP_X), Tensor(MLP_Y.astype(np.int32))
  def step(x, y):
    opt.zero_grad()
    loss = l2(l1(x).relu()).sparse_categorical_crossentropy(y)
    loss.backward()
    loss.realize()  # before the step: the loss of the weights it was computed with
    opt.step()
    return loss
  run = TinyJit(step) if jit else step
  box, losses = {}, []
  def tiny_step(): box["t"] = run(tx, ty)
  first = [tiny_step() or box["t"].item() for _ in range(3)]  # checked before timing: the first three steps' losses
  fw = {"tiny": (tiny_step, lambda: first)}
  if not jit:
    p = [w.copy() for w in MLP_W]
    np_first = [np_mlp_step(p) for _ in range(3)]
    fw["numpy"] = ((lambda: np_mlp_step(p)), lambda: np_first)
  if tinygrad:
    g1, g2 = TGLinear(784, 256), TGLinear(256, 10)
    for t, w in zip((g1.weight, g1.bias, g2.weight, g2.bias), (MLP_W[0].T, MLP_W[1], MLP_W[2].T, MLP_W[3])): t.assign(TGTensor(np.ascontiguousarray(w))).realize()
    gopt = TGSGD([g1.weight, g1.bias, g2.weight, g2.bias], lr=0.01)
    gx, gy = TGTensor(MLP_X).realize(), TGTensor(MLP_Y.astype(np.int32)).realize()
    def tg_step(x, y):
      with TGContext(TRAINING=1):
        gopt.zero_grad()
        loss = g2(g1(x).relu()).sparse_categorical_crossentropy(y)
        loss.backward()
        loss.realize()
        gopt.step()
        return loss
    tg_run = TGJit(tg_step) if jit else tg_step
    tg_first = [tg_run(gx, gy).item() for _ in range(3)]
    fw["tinygrad"] = ((lambda: tg_run(gx, gy)), lambda: tg_first)
  return fw, want

def chain(n: int, seed: float):
  x = Tensor(np.linspace(-1, 1, 16, dtype=np.float32))
  for i in range(n // 2): x = x * (1.0 + seed) + 0.001
  return x

def w_chain(n: int, cold: bool):
  """n elementwise ops on 16 floats; warm: the kernel is compiled already; cold: a new kernel, not cached on disk."""
  ref = np.linspace(-1, 1, 16)
  for _ in range(n // 2): ref = ref * (1.0 + 1e-4) + 0.001
  seeds = iter(np.linspace(1e-4, 2e-4, 100)[1:])
  box = {}
  def cold_run():
    with Context(DISABLE_COMPILER_CACHE=1): box["t"] = chain(n, next(seeds)).realize()
  fw = {"tiny": (cold_run if cold else (lambda: box.__setitem__("t", chain(n, 1e-4).realize())),
                 lambda: chain(n, 1e-4).numpy())}
  if not cold:
    def np_chain():
      x = np.linspace(-1, 1, 16, dtype=np.float32)
      for _ in range(n // 2): x = x * np.float32(1.0 + 1e-4) + np.float32(0.001)
      box["n"] = x
    fw["numpy"] = (np_chain, lambda: box["n"])
  if tinygrad and not cold:
    def tg_chain():
      x = TGTensor(np.linspace(-1, 1, 16, dtype=np.float32))
      for _ in range(n // 2): x = x * (1.0 + 1e-4) + 0.001
      box["g"] = x.realize()
    fw["tinygrad"] = (tg_chain, lambda: box["g"].numpy())
  return fw, ref

def w_first_kernel():
  """A fresh process runs one kernel never compiled before: import, build, lower, render, compile, run."""
  code = ("import time, sys; sys.path.insert(0, %r); from tiny import Tensor; import random\n"
          "t = time.perf_counter(); (Tensor([1.0, 2.0]) * random.random() + 3).realize(); print(time.perf_counter() - t)")
  root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
  def run() -> float:
    with tempfile.TemporaryDirectory() as cache:
      out = subprocess.run([sys.executable, "-c", code % root], capture_output=True, text=True, env={**os.environ, "XDG_CACHE_HOME": cache})
      return float(out.stdout.strip().splitlines()[-1])
  return {"tiny": (run, lambda: 0.0)}, 0.0

GB = lambda nbytes: (lambda s: nbytes / s / 1e9, "GB/s")
MS = (lambda s: s * 1e3, "ms")
WORKLOADS = {
  "matmul 1024": (lambda: w_matmul(1024), (lambda s: 2 * 1024**3 / s / 1e9, "GFLOP/s")),
  "matmul 256": (lambda: w_matmul(256), (lambda s: s * 1e6, "us")),
  "elementwise 4M": (w_elementwise, GB(4 * 4 * (1 << 22))),
  "sum 16M": (w_sum, GB(4 * (1 << 24))),
  "softmax 4096x1024": (w_softmax, MS),
  "conv2d": (lambda: w_conv(False), MS),
  "conv2d fwd+bwd": (lambda: w_conv(True), MS),
  "MLP step": (lambda: w_mlp(False), MS),
  "MLP step TinyJit": (lambda: w_mlp(True), MS),
  **{f"chain {n} warm": ((lambda n=n: w_chain(n, False)), MS) for n in (250, 500, 1000)},
  **{f"chain {n} cold": ((lambda n=n: w_chain(n, True)), MS) for n in (250, 500, 1000)},
  "first kernel, fresh process": (w_first_kernel, MS),
}

def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--device", help="the device both tiny and tinygrad run on (default: each one's own default)")
  parser.add_argument("--repeat", type=int, default=5)
  parser.add_argument("--only", default="", help="comma-separated workload names (substrings)")
  args = parser.parse_args()
  names = [n for n in WORKLOADS if not args.only or any(o in n for o in args.only.split(","))]
  print(f"tiny on {Tensor([0]).device}; numpy {np.__version__}; tinygrad {getattr(tinygrad, '__version__', 'installed') + ' on ' + TGDevice.DEFAULT if tinygrad else 'not installed'}; "
        f"best of {args.repeat}")
  print(f"{'workload':30s} {'unit':8s} {'tiny':>10s} {'numpy':>10s} {'tinygrad':>10s} {'t/np time':>10s} {'t/tg time':>10s}")
  for name in names:
    make, (convert, unit) = WORKLOADS[name]
    frameworks, want = make()
    times, cells = {}, {}
    for fw, (run, result) in frameworks.items():
      try:
        run()
        got = result()
      except Exception as e:  # another framework failing (tinygrad needs clang for some kernels) is a cell, not a crash
        if fw == "tiny": raise
        cells[fw] = "error"
        print(f"  {fw} failed on {name}: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
        continue
      ok = all(agrees(g, w) for g, w in zip(got, want)) if isinstance(want, (list, tuple)) else agrees(got, want)
      if not ok: cells[fw] = "WRONG"
      else: times[fw] = best_of(run, 1 if "cold" in name else args.repeat)
    row = {fw: (f"{convert(t):10.1f}" if t is not None else cells.get(fw, "")) for fw, t in times.items()}
    row.update({fw: c for fw, c in cells.items() if c})
    ratio = lambda other: f"{times['tiny'] / times[other]:10.2f}" if times.get("tiny") and times.get(other) else ""
    print(f"{name:30s} {unit:8s} {row.get('tiny', ''):>10s} {row.get('numpy', ''):>10s} {row.get('tinygrad', ''):>10s} "
          f"{ratio('numpy'):>10s} {ratio('tinygrad'):>10s}")

if __name__ == "__main__":
  main()
