"""Chapter 18, VIZ: the record of every rewrite, its text view, and its page as headless Chromium draws it.

The page tests need Chromium (`apt-get install chromium`); without it they skip and say so.
"""
import html, linecache, os, pty, re, select, shutil, signal, socket, subprocess, sys, time, urllib.request
import pytest
import tiny
from tiny import Tensor, UOp, UPat, PatternMatcher, Ops, dtypes, graph_rewrite

viz = tiny  # chapter 16 lives at the end of tiny.py

@pytest.fixture
def record(monkeypatch):
  """A fresh VizTracer installed for one test, with an empty program cache so kernels are compiled (and traced) again."""
  recorder = viz.VizTracer()
  monkeypatch.setattr(tiny, "tracer", recorder)
  monkeypatch.setattr(tiny, "_programs", {})
  return recorder

def multiply_and_sum() -> float:
  a = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
  b = Tensor([[6.0, 5.0, 4.0], [3.0, 2.0, 1.0]])
  return (a * b).sum().item()

def pass_named(data, name):
  return next(i for i, p in enumerate(data["passes"]) if p["name"] == name)

# ## The record

def test_a_realize_is_a_group_holding_its_kernel_with_their_passes(record):
  assert multiply_and_sum() == 56.0
  data = record.data()
  realize, kernel = data["groups"]
  assert realize["name"] == "realize 1 · 1 kernel" and realize["parent"] == -1 and realize["src"] is None
  assert kernel["name"].startswith("kernel r_") and kernel["parent"] == 0 and kernel["name"][len("kernel "):] in kernel["src"]
  names = lambda g: [(data["passes"][i]["name"], data["passes"][i]["depth"]) for i in g["passes"]]
  assert ("kernelize", 0) in names(realize) and ("buffers to params", 1) in names(realize)  # called inside a kernelize rule
  assert [n for n, _ in names(kernel)] == ["lower", "reduces to accumulators"]

def test_each_pass_records_its_input_matches_and_output_as_node_ids(record):
  multiply_and_sum()
  data = record.data()
  nodes, lower = data["nodes"], data["passes"][pass_named(data, "lower")]
  assert nodes[lower["root"]][0] == "SINK" and nodes[lower["out"]][0] == "SINK"
  assert len(lower["matches"]) > 3
  ops_after = {nodes[after][0] for _, after, *_ in lower["matches"]}
  assert "REDUCE" in ops_after and "LOAD" in ops_after  # the reduce became a loop, the reads became loads
  accumulate = data["passes"][pass_named(data, "reduces to accumulators")]
  (before, after, rule), = accumulate["matches"]
  assert nodes[before][0] == "REDUCE" and nodes[after][0] == "ACCUMULATE"
  assert viz._expr(nodes, before).startswith("REDUCE[Ops.ADD](") and viz._expr(nodes, after).startswith("ACCUMULATE(DEFINE_ACC[0](")
  assert data["rules"][rule]["fn"] == "reduce_to_accumulator"

def test_each_node_row_holds_op_dtype_sources_arg_shape_and_kind(record):
  a = Tensor([1.0, 2.0]).realize()
  (a + 1).realize()
  nodes = record.data()["nodes"]
  op, dtype, srcs, arg, shape, kind = next(n for n in nodes if n[0] == "BUFFER")
  assert dtype == "float32" and nodes[srcs[0]][0] == "DEVICE" and arg.endswith(", 2)") and shape == "(2,)" and kind == "buffer"
  assert len({repr(n[:4]) for n in nodes}) == len(nodes)  # equal nodes share one row, as equal UOps are one object

def test_every_rule_is_located_at_the_line_that_writes_it(record):
  multiply_and_sum()
  (Tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(4)[1:] * 2).max().item()
  rules = record.data()["rules"]
  assert len(rules) > 5
  backends = os.path.join(os.path.dirname(tiny.__file__), "backends")
  for rule in rules:
    assert rule["file"] == tiny.__file__ or os.path.dirname(rule["file"]) == backends, rule
    assert rule["text"] == linecache.getline(rule["file"], rule["line"]).strip() != "", rule
    assert rule["fn"] != "<lambda>", rule
    if rule["fn"] == f"{os.path.basename(rule['file'])}:{rule['line']}":  # a lambda is named by the place of its rule
      assert "lambda" in "".join(linecache.getline(rule["file"], rule["line"] + k) for k in range(3)), rule
    else:  # a named function is named where its rule is written, and its source is kept
      assert rule["fn"] in "".join(linecache.getline(rule["file"], rule["line"] + k) for k in range(3)), rule
      assert rule["fn_src"].lstrip().startswith(f"def {rule['fn']}(") and rule["fn_file"] == rule["file"]

def test_a_pass_inside_a_rule_is_a_child_and_a_pass_outside_any_stage_is_its_own_group(record):
  a, b = UOp.variable("a", 0, 10), UOp.variable("b", 0, 10)
  inner = PatternMatcher([(UPat(Ops.DEFINE_VAR, name="v"), lambda v: UOp.const(dtypes.int32, 0) if v is b else None)])
  outer = PatternMatcher([(UPat(Ops.SINK, name="s"), lambda s: graph_rewrite(s.src[0], inner, name="inner") if s.src[0] is b else None)])
  graph_rewrite(UOp.sink(b), outer, name="outer")
  (a + 0).simplify()
  data = record.data()
  assert [(g["name"], g["parent"], [(data["passes"][i]["name"], data["passes"][i]["depth"]) for i in g["passes"]]) for g in data["groups"]] == \
    [("outer", -1, [("outer", 0), ("inner", 1)]), ("simplify", -1, [("simplify", 0)])]

def test_a_kernel_found_in_the_program_cache_adds_no_group(record):
  multiply_and_sum()
  multiply_and_sum()
  names = [g["name"] for g in record.data()["groups"]]
  assert names[0] == "realize 1 · 1 kernel" and names[2] == "realize 2" and len(names) == 3

def test_an_exception_inside_a_stage_closes_its_open_passes(record):
  loop = PatternMatcher([(UPat(Ops.DEFINE_VAR, name="v"), lambda v: UOp.variable("w" if v.arg[0] == "v" else "v", 0, 1))])
  with pytest.raises(tiny.RewriteError), record.group("test"): graph_rewrite(UOp.variable("v", 0, 1), loop, name="loop")
  (UOp.variable("x", 0, 1) + 0).simplify()
  data = record.data()
  assert [(g["name"], g["parent"]) for g in data["groups"]] == [("test 1", -1), ("simplify", -1)]
  assert data["passes"][0]["out"] is None and data["passes"][1]["depth"] == 0

def test_text_view_prints_each_pass_with_its_matches_and_rules(record):
  multiply_and_sum()
  text = record.text()
  assert text.startswith("realize 1 · 1 kernel    [test_viz.py:")  # the line of this file that realized
  assert re.search(r"\n  kernel r_\S+    \[test_viz.py:\d+: .*\]\n    lower: \d+ matches\n", text)
  assert re.search(r"\n +1 REDUCE\[Ops.ADD\]\(.*\n +-> ACCUMULATE\(DEFINE_ACC\[0\]\(.*\[tiny.py:\d+ reduce_to_accumulator\]", text)

# ## The page

def test_page_is_one_self_contained_file(record):
  multiply_and_sum()
  page = record.page()
  assert "__DATA__" not in page and page.count("<script") == 2
  assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//""", page), "the page must load nothing"

def test_no_string_in_the_record_can_close_the_script_tag_that_holds_it(record):
  graph_rewrite(UOp.variable("</script><b>", 0, 1) + 0, tiny.symbolic, name="a hostile name")
  page = record.page()
  assert page.count("</script>") == 2 and "<\\/script><b>" in page

# VIZ is set when tiny is imported, so the at-exit behaviour is checked in a fresh process.
def run_python(code: str, env: dict, **kwargs):
  path = os.pathsep.join(dict.fromkeys([os.path.dirname(tiny.__file__), os.path.dirname(viz.__file__)]))
  return subprocess.run([sys.executable, "-c", f"import {viz.__name__}\n{code}"], env={**os.environ, "PYTHONPATH": path, **env},
                        capture_output=True, text=True, timeout=120, **kwargs)

PROGRAM = "from tiny import Tensor\nprint((Tensor([1.0, 2.0]) * Tensor([3.0, 4.0])).sum().item())"

def test_viz_at_exit_writes_the_page_in_the_current_folder_and_prints_its_path(tmp_path):
  out = run_python(PROGRAM, {"VIZ": "1"}, cwd=tmp_path)
  assert out.returncode == 0, out.stderr
  assert out.stdout.startswith("11.0\nVIZ: ")
  path = re.search(r"written to (\S+)", out.stdout).group(1)
  assert path == str(tmp_path / "tiny-viz.html") and "<svg" in open(path).read()

def test_viz_naming_an_html_file_writes_the_page_there(tmp_path):
  out = run_python(PROGRAM, {"VIZ": str(tmp_path / "sub.html")}, cwd=tmp_path)
  assert out.returncode == 0 and f"written to {tmp_path / 'sub.html'}" in out.stdout, out.stdout + out.stderr

def test_each_group_names_the_users_line_that_started_it_and_lambdas_are_named_by_place():
  text = run_python(PROGRAM, {"VIZ": "text"}).stdout
  assert "realize 1 · 1 kernel    [<string>:3: ]" in text, text[:500]
  assert "<lambda>" not in text and re.search(r"\[tiny\.py:\d+ tiny\.py:\d+\]", text), text[:2000]

def test_viz_text_prints_the_record_and_viz_0_records_nothing():
  text = run_python(PROGRAM, {"VIZ": "text"}).stdout
  assert text.startswith("11.0\nrealize 1 · 1 kernel    [<string>:3: ]\n") and "lower:" in text and "->" in text
  assert run_python(PROGRAM, {"VIZ": "0"}).stdout == "11.0\n"

def test_on_a_terminal_the_page_is_served_until_ctrl_c(tmp_path):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  leader, follower = pty.openpty()
  path = os.pathsep.join(dict.fromkeys([os.path.dirname(tiny.__file__), os.path.dirname(viz.__file__)]))
  proc = subprocess.Popen([sys.executable, "-c", f"import {viz.__name__}\n{PROGRAM}"], stdout=follower, stderr=follower,
                          env={**os.environ, "PYTHONPATH": path, "VIZ": "1", "VIZ_PORT": str(port)}, cwd=tmp_path)  # the page lands there
  os.close(follower)
  try:
    printed, deadline = b"", time.time() + 60
    while b"Ctrl-C" not in printed and time.time() < deadline:
      if select.select([leader], [], [], 1)[0]: printed += os.read(leader, 4096)
    assert f"serving http://127.0.0.1:{port}".encode() in printed, printed
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
    assert page.startswith("<!doctype html>") and '"passes"' in page
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
  finally:
    if proc.poll() is None: proc.kill()
    os.close(leader)

# ## The page, drawn
#
# Headless Chromium loads the page at a URL hash that picks a pass and a step (`#p=4&s=3`), runs its script,
# and prints the resulting DOM; the page also reports what it drew as data attributes on <body>.

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found; `apt-get install chromium` runs the page tests")

def chromium(tmp_path, *args: str) -> str:
  flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
  return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120).stdout

def dom_at(tmp_path, page: str, hash: str) -> tuple[dict[str, str], str]:
  """The <body> data attributes and the DOM of the page after its script ran at the given URL hash."""
  path = tmp_path / "viz.html"
  path.write_text(page)
  dom = chromium(tmp_path, "--dump-dom", f"{path.as_uri()}{hash}")
  body = re.search(r"<body([^>]*)>", dom)
  assert body, f"Chromium printed no page: {dom[:500]!r}"
  return {k: html.unescape(v) for k, v in re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1))}, dom

def drawn_nodes(data, root: int, keep: set[int]) -> int:
  """How many nodes the page draws for a graph: all but the constants and devices, folded into their users' labels."""
  seen, stack = set(), [root]
  while stack:
    if (i := stack.pop()) not in seen: seen.add(i); stack.extend(data["nodes"][i][2])
  return sum(1 for i in seen if data["nodes"][i][0] not in ("CONST", "DEVICE") or i == root or i in keep)

@needs_chromium
def test_page_draws_the_input_graph_of_a_pass(record, tmp_path):
  multiply_and_sum()
  data, p = record.data(), pass_named(record.data(), "lower")
  state, dom = dom_at(tmp_path, record.page(), f"#p={p}&s=0")
  assert (state["pass"], state["step"], state["fresh"]) == (str(p), "0", "0")
  assert int(state["nodes"]) == len(re.findall(r'<g class="node ', dom)) == drawn_nodes(data, data["passes"][p]["root"], set())
  assert len(re.findall(r"<path d=\"M", dom)) >= int(state["nodes"]) - 1  # connected: at least a tree's worth of edges
  steps = re.search(r'<ol id="steps">(.*?)</ol>', dom, re.S).group(1)
  assert len(re.findall(r"<li", steps)) == len(data["passes"][p]["matches"]) + 2  # input, each match, output
  said = re.search(r'<li[^>]*class="cur"[^>]*>input: (\d+) nodes</li>', steps)
  shown = [html.unescape(li) for li in re.findall(r"<li[^>]*>(.*?)</li>", steps)[1:-1]]  # the page's one-line forms are VIZ=text's
  nodes, rules = data["nodes"], data["rules"]
  assert shown == [f"{k}. {rules[r]['fn']}: {viz._short(viz._expr(nodes, b))} → {viz._short(viz._expr(nodes, a))}"
                   for k, (b, a, r) in enumerate(data["passes"][p]["matches"], 1)]
  assert said and said.group(1) == state["nodes"], "the step list's node count is not the number of nodes drawn"
  assert html.unescape(re.search(r'<pre id="src"[^>]*>(.*?)</pre>', dom, re.S).group(1)) == data["groups"][1]["src"]
  assert "<b>AT</b> is lowering's own op" in dom and dom.count('class="node k-') >= len(re.findall(r'<g class="node ', dom)) + 8  # the legend

@needs_chromium
def test_stepping_to_a_match_highlights_what_it_changed_and_shows_its_rule(record, tmp_path):
  multiply_and_sum()
  data = record.data()
  p = pass_named(data, "reduces to accumulators")
  state, dom = dom_at(tmp_path, record.page(), f"#p={p}&s=1")
  (_, after, rule), = data["passes"][p]["matches"]
  assert state["step"] == "1" and int(state["fresh"]) >= 2  # the ACCUMULATE and its DEFINE_ACC are new
  assert re.search(rf'<g class="node k-reduce[^"]* hit" [^>]*data-id="{after}"', dom)
  assert len(re.findall(r'<g class="node [^"]*\bnew\b', dom)) == int(state["fresh"])
  assert html.unescape(re.search(r'<pre id="rule"[^>]*>(.*?)</pre>', dom, re.S).group(1)) == data["rules"][rule]["text"]
  assert re.search(r'<li[^>]*class="cur"[^>]*>1\. reduce_to_accumulator: REDUCE', dom)

@needs_chromium
def test_replaying_the_matches_of_every_pass_gives_its_recorded_output(record, tmp_path):
  multiply_and_sum()
  x = Tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
  (x.softmax(axis=1) @ Tensor([[1.0], [2.0], [3.0]])).relu().numpy()
  state, _ = dom_at(tmp_path, record.page(), "#check")
  assert len(record.passes) > 10 and state["replay-failures"] == "none"

DRIVE = """<script>{  // a block: the page's own script already declares names at the top level
const log = [], step = () => document.body.dataset.pass + "/" + document.body.dataset.step;
const key = (k) => dispatchEvent(new KeyboardEvent("keydown", { key: k }));
key("ArrowRight"); key("ArrowRight"); log.push(step());
key("ArrowLeft"); log.push(step());
document.querySelectorAll("#steps li")[5].click(); log.push(step());
const slider = document.getElementById("slider"); slider.value = 2; slider.dispatchEvent(new Event("input")); log.push(step());
document.getElementById("next").click(); log.push(step());
key("ArrowDown"); log.push(step());
[...document.querySelectorAll("nav .group")].find((g) => g.textContent.startsWith("realize")).click(); log.push(step());
document.body.dataset.log = log.join(" ") + " " + location.hash;
}</script>
</body>"""

@needs_chromium
def test_keys_clicks_and_the_slider_move_through_passes_and_steps(record, tmp_path):
  multiply_and_sum()
  data = record.data()
  p = pass_named(data, "lower")
  state, _ = dom_at(tmp_path, record.page().replace("</body>", DRIVE), f"#p={p}&s=0")
  realize = data["groups"][0]["passes"][0]  # a click on a group opens its first pass
  assert state["log"] == f"{p}/2 {p}/1 {p}/5 {p}/2 {p}/3 {p + 1}/0 {realize}/0 #p={realize}&s=0"
