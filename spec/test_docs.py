"""The docs are true: the generated pages are the source, the examples run, and the site builds with --strict."""
import codeop, importlib.util, json, os, pathlib, re, subprocess, sys, tempfile
import pytest
import tiny  # imported before any test changes the environment, so its settings are the defaults
from conftest import available_devices

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ["tiny.py", "backends/*.py"]  # what mkdocs.yml's nav turns into pages
EXAMPLE_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

def load_hook():
  spec = importlib.util.spec_from_file_location("tiny_docs_literate", ROOT / "docs" / "hooks" / "literate.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # its dataclasses look the module up while it runs
  spec.loader.exec_module(module)
  return module

literate = load_hook()

def generated_pages(pattern: str) -> list:
  return literate.pages_for_pattern(ROOT, pattern)

def source_files() -> list[pathlib.Path]:
  return [p for pattern in SOURCES for p in sorted(ROOT.glob(pattern))]

# ## Generated pages

CODE_FENCE = re.compile(r'^(`{3,})python linenums="(\d+)"$')

def split_page(markdown: str) -> tuple[list[tuple[int, list[str]]], list[str]]:
  """A generated page's code blocks (first line number, lines) and the lines outside them."""
  blocks, outside, lines, i = [], [], markdown.splitlines(), 0
  while i < len(lines):
    if m := CODE_FENCE.match(lines[i]):
      end = lines.index(m.group(1), i + 1)
      blocks.append((int(m.group(2)), lines[i + 1:end]))
      i = end + 1
    else:
      outside.append(lines[i])
      i += 1
  return blocks, outside

def is_subsequence(needles: list[str], haystack: list[str]) -> bool:
  it = iter(haystack)
  return all(any(n == h for h in it) for n in needles)

@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_pages_reproduce_every_line_of_the_source(path):
  source = path.relative_to(ROOT).as_posix()
  text = path.read_text()
  lines, prose = text.splitlines(), literate.prose_line_numbers(text, source)
  pages = literate.pages_for(path, source)
  code_seen, prose_seen = [], []
  for page in pages:
    blocks, outside = split_page(page.markdown())
    for start, block in blocks:  # each block is the file's lines from its first line number on, blank lines too
      assert block == lines[start - 1:start - 1 + len(block)], f"{page.uri}: block numbered {start} is not {source} from line {start}"
      code_seen += [line for line in block if line.strip()]
    prose_seen += [line.rstrip() for line in outside if line.strip()]
  expected_code = [line for n, line in enumerate(lines, 1) if line.strip() and n not in prose]
  expected_prose = [literate.strip_comment(lines[n - 1]).rstrip() for n in sorted(prose) if literate.strip_comment(lines[n - 1]).strip()]
  assert code_seen == expected_code, f"the code blocks of the pages of {source} are not its code, in order"
  assert is_subsequence(expected_prose, prose_seen), f"the pages of {source} leave out or reorder some of its prose"

def test_the_sources_checked_here_are_the_ones_mkdocs_yml_turns_into_pages():
  nav_sources = re.findall(r"^\s*- [^:\n]+: (\S+\.py)\b", (ROOT / "mkdocs.yml").read_text(), re.M)
  assert nav_sources == SOURCES

def test_tiny_py_chapters_come_in_the_order_of_their_numbers():
  titles = [page.title for page in generated_pages("tiny.py")]
  assert titles[0] == "Introduction"
  numbers = [int(t.split(".")[0]) for t in titles[1:]]
  assert numbers == list(range(1, len(numbers) + 1)), f"chapters not numbered 1, 2, 3, ... in order: {titles[1:]}"

# The chapter pages fit a line of 150 characters on one line at 1280 and 1920 pixels wide (spec/test_docs_browser.py
# checks it), so no code line may be longer: then no code block wraps or scrolls.
FITS = 150

@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_code_lines_fit_the_chapter_pages(path):
  text = path.read_text()
  prose = literate.prose_line_numbers(text, path.name)
  long = [(n, len(line.rstrip())) for n, line in enumerate(text.splitlines(), 1) if n not in prose and len(line.rstrip()) > FITS]
  assert not long, f"{path.name}: code lines longer than {FITS} characters wrap on a chapter page: {long}"

def test_every_chapter_page_opens_with_its_heading_and_prose_before_any_code():
  for page in generated_pages("tiny.py")[1:]:
    markdown, first = page.markdown(), page.segments[0]
    assert markdown.startswith(f"# {page.title}\n\n"), f"{page.uri} does not open with its chapter heading"
    assert first.kind == "prose" and any(line.strip() for line in first.lines[1:]), f"{page.title}: no prose before the first code"
  assert generated_pages("tiny.py")[1].uri == "tiny/01-helpers-and-settings.md"

def test_prose_and_code_are_told_apart_by_tokens_not_by_first_character():
  src = '# # Title\n#\n# Some *prose*.\nx = """\n# not prose: inside a string\n"""\n\n  # indented: stays in the code\ny = 1  # so does this\n'
  assert literate.prose_line_numbers(src, "t.py") == {1, 2, 3}
  segs = literate.segments(src.splitlines(), {1, 2, 3}, 1, 9)
  assert [(s.kind, s.start, len(s.lines)) for s in segs] == [("prose", 1, 3), ("code", 4, 6)]
  assert segs[0].lines == ["# Title", "", "Some *prose*."]

def test_an_indented_comment_block_is_prose_only_when_it_opens_with_a_sub_section_heading():
  src = ("class T:\n  x = 1\n  # ### Creation\n  # How tensors are made.\n  def f(self): pass  # end of line\n"
         "  # an ordinary comment\n  y = 2\n  # ## Next\n")
  prose = literate.prose_line_numbers(src, "t.py")
  assert prose == {3, 4, 8}
  segs = literate.segments(src.splitlines(), prose, 1, 8)
  assert [(s.kind, s.start) for s in segs] == [("code", 1), ("prose", 3), ("code", 5), ("prose", 8)]
  assert segs[1].lines == ["### Creation", "How tensors are made."]

def test_the_introduction_links_the_chapters_it_lists():
  pages = generated_pages("tiny.py")
  linked = pages[0].markdown(literate.chapter_links(pages, pages[0]))
  for page in pages[1:]:
    number, title = page.title.split(". ", 1)
    assert f"{number}. [{title}](/{page.uri})" in linked, f"the introduction does not link {page.title}"

def test_mentions_of_a_chapter_in_prose_become_links_but_not_in_code():
  pages = generated_pages("tiny.py")
  link = literate.chapter_links(pages, pages[3])  # on the page of chapter 3
  assert link("as chapter 4 shows; Chapter 2 too") == \
    "as [chapter 4](/tiny/04-the-rewrite-engine.md) shows; [Chapter 2](/tiny/02-data-types.md) too"
  assert link("this is chapter 3, and chapter 99 does not exist") == "this is chapter 3, and chapter 99 does not exist"
  assert link("`see chapter 4` and\n```\nchapter 4\n```") == "`see chapter 4` and\n```\nchapter 4\n```"
  assert "(see chapter 5)" in pages[3].markdown(link), "a docstring in the code was changed"

def test_a_code_block_cannot_be_closed_by_backticks_in_the_code():
  seg = literate.Segment("code", 7, ['doc = """', "```python", '"""'])
  assert "\n````python linenums=\"7\"\n" in literate.code_markdown("tiny.py", seg)

# ## Generated tables

def test_promotion_table_is_least_upper_dtype():
  rows = [line.strip("|").split("|") for line in literate.promotion_table(tiny, None).splitlines()[2:]]
  ds = tiny.dtypes.all()
  assert len(rows) == len(ds)
  for a, row in zip(ds, rows):
    assert row[0].strip() == f"`{a.name}`"
    assert [c.strip() for c in row[1:]] == [tiny.least_upper_dtype(a, b).name for b in ds]

def test_env_table_lists_every_setting_with_its_default_even_when_the_builder_set_it(monkeypatch):
  monkeypatch.setenv("DEBUG", "3")
  ctx = literate.BuildContext(ROOT, [], generated_pages("tiny.py"))
  table = literate.env_table(ctx.tiny, ctx)
  for key, var in tiny.ContextVar.registry.items():
    assert f"| `{key}` |" in table and var.doc.replace("|", "&#124;") in table
  assert "| `DEBUG` | `0` | `int` |" in table
  assert "(/tiny/01-helpers-and-settings.md#L" in table

# ## Examples in the docs
#
# Every ```python block of README.md and docs/**/*.md runs; the blocks of one
# file share a namespace, in order. A ```text block right after one (only blank
# lines between) is its expected output. In an expected line, `...` stands for
# any text, for the parts of an output that change from run to run (timings).
#
# The blocks of a file run as a new user would run them: in a fresh Python
# process that imports the repository's tiny, with none of tiny's settings in
# the environment. So what a page prints (buffer numbers, kernel counts, the
# default device) does not depend on which tests ran before it.

FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")

def fenced_blocks(markdown: str) -> list[tuple[str, str, int, int]]:
  """(language, code, first line, last line) of each fenced block at column 0."""
  blocks, lines, i = [], markdown.splitlines(), 0
  while i < len(lines):
    m = FENCE.match(lines[i])
    if m is None: i += 1; continue
    end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == m.group(1)), len(lines))
    blocks.append((m.group(2), "\n".join(lines[i + 1:end]) + "\n", i + 1, end + 1))
    i = end + 1
  return blocks

def examples(markdown: str) -> list[tuple[str, int, str | None]]:
  """(code, line, expected output or None) of each python block."""
  blocks, lines, out = fenced_blocks(markdown), markdown.splitlines(), []
  for k, (lang, code, first, last) in enumerate(blocks):
    if lang not in ("python", "py"): continue
    after = blocks[k + 1] if k + 1 < len(blocks) else None
    adjacent = after is not None and after[0] == "text" and not any(l.strip() for l in lines[last:after[2] - 1])
    out.append((code, first, after[1] if adjacent else None))
  return out

def normalize(text: str) -> str: return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())

def output_matches(printed: str, expected: str) -> bool:
  got, want = normalize(printed).splitlines(), normalize(expected).splitlines()
  def line_matches(g: str, w: str) -> bool:
    return g == w or ("..." in w and re.fullmatch(".*?".join(re.escape(part) for part in w.split("...")), g) is not None)
  return len(got) == len(want) and all(line_matches(g, w) for g, w in zip(got, want))

# Runs in the fresh process: reads [[code, filename], ...] as JSON on stdin and
# writes [[printed, error or None], ...] to the file named by its argument.
RUNNER = """
import contextlib, io, json, sys
namespace, results = {"__name__": "__docs__"}, []
for code, filename in json.load(sys.stdin):
  out = io.StringIO()
  try:
    with contextlib.redirect_stdout(out): exec(compile(code, filename, "exec"), namespace)
    results.append([out.getvalue(), None])
  except Exception as e: results.append([out.getvalue(), f"{type(e).__name__}: {e}"])
with open(sys.argv[1], "w") as f: json.dump(results, f)
"""

def run_blocks(blocks: list[tuple[str, str]]) -> list[tuple[str, str | None]]:
  """Run (code, filename) blocks in order in one fresh Python; return what each printed and its error, if any."""
  env = {k: v for k, v in os.environ.items() if k not in tiny.ContextVar.registry}
  if "CPU" in available_devices(): env["DEVICE"] = "CPU"  # the pages show what the CPU prints, also where a GPU is the default
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
  with tempfile.TemporaryDirectory() as tmp:
    results = pathlib.Path(tmp) / "results.json"
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(results)], input=json.dumps(blocks), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not results.exists():
      raise RuntimeError(f"the examples' Python process failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return [(printed, error) for printed, error in json.loads(results.read_text())]

def run_examples(markdown: str, name: str) -> list[str]:
  cases = examples(markdown)
  if not cases: return []
  failures = []
  for (code, line, expected), (printed, error) in zip(cases, run_blocks([(code, f"{name}:{line}") for code, line, _ in cases])):
    if error is not None: failures.append(f"{name}:{line}: {error}")
    elif expected is not None and not output_matches(printed, expected):
      failures.append(f"{name}:{line}: printed\n{printed}\nbut the text block after it says\n{expected}")
  return failures

@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_in_docs_run_and_print_what_they_say(path):
  failures = run_examples(path.read_text(), str(path.relative_to(ROOT)))
  assert not failures, "\n\n".join(failures)

def paste_error(code: str) -> str | None:
  """Why `code`, pasted line by line into a plain `python` prompt, would fail to parse; None if it would not.
  The prompt ends a block only at a blank line, so a statement right after an indented block is a syntax error."""
  buffer: list[str] = []
  for line in code.splitlines() + [""]:
    buffer.append(line)
    try: complete = codeop.compile_command("\n".join(buffer), "<stdin>", "single")
    except SyntaxError as e: return f"at {line!r}: {e.msg}"
    if complete is not None: buffer = []
  return None

@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_in_docs_can_be_pasted_into_a_python_prompt(path):
  failures = [f"{path.relative_to(ROOT)}:{line}: {error}" for code, line, _ in examples(path.read_text()) if (error := paste_error(code))]
  assert not failures, "\n".join(failures)

def test_paste_check_wants_a_blank_line_after_a_block():
  assert paste_error("for i in range(2):\n  x = i\nprint(x)\n") == "at 'print(x)': invalid syntax"
  assert paste_error("for i in range(2):\n  x = i\n\nprint(x)\n") is None
  assert "unexpected indent" in paste_error("def f():\n  x = 1\n\n  return x\n")

def test_example_checker_catches_wrong_output_and_errors():
  page = "```python\nprint(1 + 1)\n```\n\n```text\n3\n```\n\n```python\nundefined_name\n```\n\n```python\nprint('ok')\n```\n```text\nok\n```\n"
  failures = run_examples(page, "page.md")
  assert len(failures) == 2 and "page.md:1: printed\n2" in failures[0] and "page.md:9: NameError" in failures[1]
  assert [e for _, _, e in examples(page)] == ["3\n", None, "ok\n"]

def test_three_dots_in_expected_output_stand_for_any_text_within_a_line():
  assert output_matches("took 1.52 ms\nok\n", "took ... ms\nok")
  assert not output_matches("took 1.52 ms\nok\n", "took ... s\nok")
  assert not output_matches("a\nb\n", "...")  # never more than one line

def test_examples_run_in_a_fresh_process_with_the_repositorys_tiny_and_default_settings(monkeypatch):
  monkeypatch.setenv("DEBUG", "4")
  (printed, error), = run_blocks([("import tiny\nprint(tiny.DEBUG.value)\nprint(tiny.__file__)\n", "page.md:1")])
  assert error is None and printed.splitlines() == ["0", str(ROOT / "tiny.py")]

# ## The site

def test_mkdocs_build_strict(tmp_path):
  missing = [m for m in ("mkdocs", "material") if importlib.util.find_spec(m) is None]
  if missing: pytest.skip(f"{' and '.join(missing)} not importable: pip install mkdocs mkdocs-material (or '.[test]')")
  site = tmp_path / "site"
  result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                          cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
  assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
  for page in [p for pattern in SOURCES for p in generated_pages(pattern)]:
    assert (site / page.uri.removesuffix(".md").removesuffix("index") / "index.html").exists(), f"no page for {page.uri}"
  env_html = (site / "env" / "index.html").read_text()
  assert "<code>REWRITE_LIMIT</code>" in env_html and "generated:" not in env_html
  dtypes_html = (site / "dtypes" / "index.html").read_text()
  assert '<h2 id="every-pair">' in dtypes_html, "the heading after a generated table was swallowed by the table"
  assert not (ROOT / "site").exists()

def test_the_running_example_in_tiny_py_prints_what_the_chapters_say():
  """The `(a*b).sum()` examples in tiny.py's prose run in reading order, in one fresh process, and print what they say."""
  prose = "\n\n".join("\n".join(seg.lines) for page in generated_pages("tiny.py") for seg in page.segments if seg.kind == "prose")
  assert len(examples(prose)) >= 6, "the running example should appear at every stage"
  failures = run_examples(prose, "tiny.py's prose")
  assert not failures, "\n\n".join(failures)
