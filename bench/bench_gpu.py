"""Speed of tiny on a GPU beside PyTorch (and tinygrad, when installed), measured in one process.

    python bench/bench_gpu.py [--device CUDA] [--only matmul] [--small]

Each row computes the same thing in each framework on fresh random data, checks that tiny's result agrees with
PyTorch's (relative error in the Frobenius norm, against PyTorch in float64), and times it after a warm-up run (so
compilation is not counted) as the median of several runs. tiny's step is a TinyJit replay of the kernels the
computation schedules, so the time is the GPU's plus tiny's launch cost; PyTorch's is timed with CUDA events,
with TF32 off so float32 matrix products are true float32. Speed is only ever measured here, never in tests.
"""
import argparse, os, statistics, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import numpy as np
import tiny
from tiny import Tensor, TinyJit, dtypes

def cases(small: bool):
  """(name, unit, work per run, numpy inputs, the computation written once for tiny and torch)."""
  gib = (1 << 28) if not small else (1 << 20)  # 1 GiB of float32
  for n, dt in ((4096, "float32"), (1024, "float32"), (8192, "float16")):
    n = n if not small else 256
    yield f"matmul {n} {dt}", "TFLOP/s", 2 * n**3 / 1e12, [(n, n, dt), (n, n, dt)], lambda a, b: a @ b
  yield "x*2 over 1 GiB float32", "GB/s", 2 * 4 * gib / 1e9, [(gib, "float32")], lambda x: x * 2
  yield "sum of 1 GiB float32", "GB/s", 4 * gib / 1e9, [(gib, "float32")], lambda x: x.sum()
  rows = 16384 if not small else 512
  yield f"softmax {rows}x{rows} float32", "ms", None, [(rows, rows, "float32")], lambda x: x.softmax(-1)

def random_inputs(specs, rng):
  return [rng.standard_normal(s[:-1], dtype=np.float32).astype(s[-1]) for s in specs]

def time_tiny(fn, inputs, device, repeat):
  xs = [Tensor(x, device=device) for x in inputs]
  out = fn(*xs).realize()
  target = Tensor.empty(*out.shape, dtype=out.dtype, device=device).realize()
  step = TinyJit(lambda: target.assign(fn(*xs)).realize())
  for _ in range(3): step()  # run, capture, replay once
  sync = tiny.Device[device].synchronize
  sync()
  times = []
  for _ in range(repeat):
    start = time.perf_counter()
    step()
    sync()
    times.append(time.perf_counter() - start)
  return statistics.median(times), out.numpy()

def time_torch(fn, inputs, repeat):
  import torch
  xs = [torch.from_numpy(x).cuda() for x in inputs]
  fn(*xs)
  torch.cuda.synchronize()
  times = []
  for _ in range(repeat):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn(*xs)
    end.record()
    torch.cuda.synchronize()
    times.append(start.elapsed_time(end) / 1e3)
  reference = fn(*[x.double() for x in xs]).cpu().numpy()
  return statistics.median(times), reference

def rate(unit, work, seconds):
  return seconds * 1e3 if unit == "ms" else work / seconds

def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--device", default="CUDA")
  parser.add_argument("--repeat", type=int, default=10)
  parser.add_argument("--only", default="", help="run only the cases whose name contains this")
  parser.add_argument("--small", action="store_true", help="small sizes, to check that everything runs")
  args = parser.parse_args()
  import torch
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
  print(f"tiny on {args.device} ({torch.cuda.get_device_name()}), torch {torch.__version__}; medians of {args.repeat} runs")
  print(f"{'case':34s} {'unit':>8s} {'torch':>10s} {'tiny':>10s} {'tiny/torch':>10s} {'rel err':>9s}")
  rng = np.random.default_rng(0)
  for name, unit, work, specs, fn in cases(args.small):
    if args.only not in name: continue
    inputs = random_inputs(specs, rng)
    try:
      t_torch, reference = time_torch(fn, inputs, args.repeat)
      t_tiny, got = time_tiny(fn, inputs, args.device, args.repeat)
    except Exception as e:
      print(f"{name:34s} failed: {type(e).__name__}: {str(e)[:300]}")
      continue
    err = np.linalg.norm(got.astype(np.float64) - reference) / max(np.linalg.norm(reference), 1e-30)
    a, b = rate(unit, work, t_torch), rate(unit, work, t_tiny)
    ratio = t_torch / t_tiny
    print(f"{name:34s} {unit:>8s} {a:10.2f} {b:10.2f} {ratio:10.3f} {err:9.1e}", flush=True)

if __name__ == "__main__":
  main()
