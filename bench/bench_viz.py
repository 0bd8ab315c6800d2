"""What tracing costs: a realize-heavy workload with VIZ off, against the same workload with the tracing hooks gone.

    python bench/bench_viz.py [realizes]

Rows, each the best of several runs in this one process:

- hooks bypassed: `realize_tensors` and `get_program` without their `@traced` wrappers and no tracer, the
  baseline: tiny as if tracing did not exist;
- VIZ off: tiny as it runs, `tracer` is None (each graph_rewrite checks it, each traced stage checks it);
- Tracer(): the base class installed, every event a call that does nothing: the cost of the events alone;
- VizTracer: VIZ=1 recording (without writing the page at exit).

The workload realizes a small elementwise-then-sum graph on fresh inputs many times: each realize schedules
(three passes) and runs one kernel found in the program cache, so the fixed cost per realize, where hooks would
show, dominates. Speed is measured here, never asserted in tests.
"""
import pathlib, sys, time
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import tiny
from tiny import Tensor

viz = tiny  # chapter 16 lives at the end of tiny.py

def workload(realizes: int) -> None:
  for i in range(realizes):
    a, b = Tensor([float(i), 2.0, 3.0, 4.0]), Tensor([1.0, 2.0, 3.0, float(i)])
    ((a * b + 1).relu() * 0.5).sum().realize()

def main(realizes: int = 300, runs: int = 7) -> None:
  workload(20)  # warm the program cache and the compiler's disk cache
  saved = tiny.tracer, tiny.realize_tensors, tiny.get_program
  unwrapped = saved[1].__wrapped__, saved[2].__wrapped__
  setups = {  # name -> (tracer, realize_tensors, get_program)
    "hooks bypassed (baseline)": lambda: (None, *unwrapped),
    "VIZ off (tracer is None)": lambda: (None, saved[1], saved[2]),
    "Tracer() installed, no-op events": lambda: (tiny.Tracer(), saved[1], saved[2]),
    "VizTracer recording (VIZ=1)": lambda: (viz.VizTracer(), saved[1], saved[2]),
  }
  best = {name: float("inf") for name in setups}
  try:
    for _ in range(runs):  # the setups take turns, so drift in the machine's speed hits them alike
      for name, setup in setups.items():
        tiny.tracer, tiny.realize_tensors, tiny.get_program = setup()
        start = time.perf_counter()
        workload(realizes)
        best[name] = min(best[name], time.perf_counter() - start)
  finally:
    tiny.tracer, tiny.realize_tensors, tiny.get_program = saved
  base = best["hooks bypassed (baseline)"]
  print(f"{realizes} realizes on {tiny.Device.DEFAULT}, best of {runs} runs each")
  print(f"{'':34s} {'total ms':>9s} {'us/realize':>11s} {'ratio':>7s}")
  for name, t in best.items(): print(f"{name:34s} {t*1e3:9.1f} {t/realizes*1e6:11.1f} {t/base:7.3f}")

if __name__ == "__main__":
  main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
