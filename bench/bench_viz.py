"""What tracing costs: a realize-heavy workload with VIZ off, against the same workload with the tracing hooks gone;
and what the page of a real run costs: its size, and the time to write it and to open it.

    python bench/bench_viz.py [realizes]
    python bench/bench_viz.py page [epochs]

Rows, each the best of several runs in this one process:

- hooks bypassed: `realize_tensors` and `get_program` without their `@traced` wrappers and no tracer, the
  baseline: tiny as if tracing did not exist;
- VIZ off: tiny as it runs, `tracer` is None (each graph_rewrite checks it, each traced stage checks it);
- Tracer(): the base class installed, every event a call that does nothing: the cost of the events alone;
- VizTracer: VIZ=1 recording (without writing the page at exit).

The workload realizes a small elementwise-then-sum graph on fresh inputs many times: each realize schedules
(three passes) and runs one kernel found in the program cache, so the fixed cost per realize, where hooks would
show, dominates. Speed is measured here, never asserted in tests.

`page` records the main job (examples/train_digits.py on CPU, one epoch by default) with a VizTracer, and prints
the training time with VIZ, the record's size, the time to build and write the page, and, in headless Chromium,
the time from opening the page to its first drawn pass, and to filter the groups and open one.
"""
import importlib.util, json, pathlib, sys, tempfile, time
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

def page(epochs: int) -> None:
  root = pathlib.Path(__file__).resolve().parent.parent
  sys.path.insert(0, str(root / "examples"))
  import train_digits
  tiny.tracer = viz.VizTracer()
  sys.argv = ["train_digits.py", "--device", "CPU", "--epochs", str(epochs)]
  start = time.perf_counter()
  train_digits.main()
  trained = time.perf_counter() - start
  tracer, tiny.tracer = tiny.tracer, None
  start = time.perf_counter()
  html = tracer.page()
  path = pathlib.Path(tempfile.mkdtemp()) / "tiny-viz.html"
  path.write_text(html, encoding="utf-8")
  written = time.perf_counter() - start
  data = tracer.data()
  matches = sum(len(p["matches"]) for p in data["passes"])
  print(f"VIZ page of train_digits, {epochs} epoch(s) on CPU: trained (recording) in {trained:.1f} s")
  print(f"  {len(data['groups'])} groups, {len(data['passes'])} passes, {matches} matches, {len(data['nodes'])} nodes")
  size, table = len(html.encode()) / 1e6, len(json.dumps(data["nodes"])) / 1e6
  print(f"  page {size:.2f} MB ({table:.2f} MB of it the node table), built and written in {written:.2f} s")
  spec = importlib.util.spec_from_file_location("browser", root / "spec" / "test_docs_browser.py")
  browser_module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(browser_module)
  if browser_module.CHROMIUM is None: return print("  no chromium: not opened")
  browser = browser_module.Browser()
  try:
    start = time.perf_counter()
    browser.open(path.as_uri())
    browser.wait_for("document.body.dataset.pass !== undefined", timeout=300)
    opened = time.perf_counter() - start
    start = time.perf_counter()
    loaded = browser.evaluate('performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd') / 1000
    browser.evaluate('const f = document.getElementById("filter"); f.value = "opt.step()"; f.oninput(); '
                     '[...document.querySelectorAll("#groups .group")].pop().click()')
    browser.wait_for("document.body.dataset.pass !== undefined")
    clicked = time.perf_counter() - start
    shown = browser.evaluate('document.querySelectorAll("#groups .group").length')
    print(f"  Chromium: page parsed and its script run {loaded:.2f} s after navigating, first pass drawn {opened:.2f} s after opening")
    print(f"  filter the groups (opt.step()) and open one: {clicked:.2f} s ({shown} groups listed)")
  finally: browser.close()

if __name__ == "__main__":
  if sys.argv[1:2] == ["page"]: page(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
  else: main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
