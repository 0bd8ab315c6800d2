"""Speed of tiny against numpy (and tinygrad, when installed), measured in one process.

    python bench/bench_ops.py [--device CPU] [--repeat 5]

Each row times the same computation in each framework, after a warm-up run (so
compilation is not counted), as the best of --repeat runs. The ratio column is
tiny's time over numpy's: below 1 means tiny is faster. Speed is only ever
measured here, never asserted in tests.
"""
import argparse, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import numpy as np
from tiny import Tensor

def best_of(fn, repeat: int) -> float:
  fn()  # warm-up: compiles kernels, fills caches
  times = []
  for _ in range(repeat):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)

def cases(device: str):
  rng = np.random.default_rng(0)
  a, b = rng.standard_normal((256, 256), dtype=np.float32), rng.standard_normal((256, 256), dtype=np.float32)
  v = rng.standard_normal(1 << 20, dtype=np.float32)
  img, w = rng.standard_normal((16, 8, 16, 16), dtype=np.float32), rng.standard_normal((16, 8, 3, 3), dtype=np.float32)
  ta, tb, tv = Tensor(a, device=device), Tensor(b, device=device), Tensor(v, device=device)
  timg, tw = Tensor(img, device=device), Tensor(w, device=device)
  def np_conv():
    x = np.pad(img, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))  # (n, c, h, w, 3, 3)
    return np.einsum("nchwij,ocij->nohw", win, w)
  # tiny remembers realized results, so each run assigns into an output: a new computation every time
  def into(out: Tensor, make): return lambda: out.assign(make()).realize()
  yield "matmul 256x256", into(Tensor.empty(256, 256, device=device), lambda: ta @ tb), lambda: a @ b
  yield "elementwise x*2+1 (1M)", into(Tensor.empty(1 << 20, device=device), lambda: tv * 2 + 1), lambda: v * 2 + 1
  yield "sum (1M)", into(Tensor.empty((), device=device), lambda: tv.sum()), lambda: v.sum()
  yield "softmax 256x256", into(Tensor.empty(256, 256, device=device), lambda: ta.softmax(-1)), \
    lambda: np.exp(a - a.max(-1, keepdims=True)) / np.exp(a - a.max(-1, keepdims=True)).sum(-1, keepdims=True)
  yield "conv2d 16x8x16x16 * 16x8x3x3", into(Tensor.empty(16, 16, 16, 16, device=device), lambda: timg.conv2d(tw, padding=1)), np_conv

def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--device", default=None)
  parser.add_argument("--repeat", type=int, default=5)
  args = parser.parse_args()
  device = args.device or Tensor([0]).device
  print(f"device {device}; times are the best of {args.repeat} runs")
  print(f"{'case':34s} {'tiny ms':>10s} {'numpy ms':>10s} {'tiny/numpy':>11s}")
  for name, tiny_fn, np_fn in cases(device):
    t, n = best_of(tiny_fn, args.repeat), best_of(np_fn, args.repeat)
    print(f"{name:34s} {t*1e3:10.3f} {n*1e3:10.3f} {t/n:11.2f}")

if __name__ == "__main__":
  main()
