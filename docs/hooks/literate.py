"""The mkdocs hook that turns tiny's source files into pages of the docs site.

mkdocs.yml names source files in its `nav`: an entry whose value is a Python
file (`tiny.py`) or a glob of them (`backends/*.py`), relative to mkdocs.yml,
is replaced by the pages generated from those files. The files are read at
build time from the repository, never from an installed copy.

A source file is cut into pages at its chapter headings, comment lines of the
form `# # N. Title` at column 0. The text before the first chapter is the
file's introduction; a file without chapters (a backend) is one page. Within a
page, every comment block at column 0 is prose, and so is an indented one that
opens with a sub-section heading (`  # ### Creation` inside a class): its lines
lose their indent and leading `# ` (or `#`) and are Markdown. Everything else
is code: a run of code lines, with the blank lines and other comments between
them, becomes one Python block numbered with its lines in the file and
captioned with an anchor, e.g. `tiny.py, lines 40-52` with id `L40`. Nothing is left out and nothing is
reordered: the pages, read in order, are the file.

When the site is built, mentions of a chapter in the prose ("see chapter 4")
and the list of chapters in tiny.py's introduction become links to the pages.

Hand-written pages may ask for a table computed from tiny itself with a line
`<!-- generated: NAME -->`, NAME one of `GENERATORS` below (the dtype promotion
table, the environment variables), so those pages cannot drift from the code.
"""
from __future__ import annotations
import glob, importlib.util, io, os, re, sys, tokenize, types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

CHAPTER = re.compile(r"^# # (\d+)\.\s+(.+?)\s*$")  # `# # 1. Helpers and settings`
MARKER = re.compile(r"^<!-- generated: ([\w-]+) -->[ \t]*$", re.M)  # [ \t], not \s: the blank line after it must stay

# ## Reading a source file
#
# Which lines are prose is decided with `tokenize`, not by looking at the
# first character: a line inside a string that happens to start with `#` is
# code. A prose line is a line whose only token is a comment, in a block of
# such lines that is either at column 0 or, indented inside a class, opens
# with a sub-section heading (`  # ### Creation`): a heading is never code.
# Every other comment (indented, or at the end of a line) stays in the code.

@dataclass
class Segment:
  kind: str  # "prose" or "code"
  start: int  # line number of the first line, 1-based
  lines: list[str]  # for prose, the Markdown lines; for code, the source lines as they are

@dataclass
class Page:
  uri: str  # where the page lives in the site, e.g. "tiny/01-helpers-and-settings.md"
  title: str  # its title in the navigation
  source: str  # the file it comes from, relative to mkdocs.yml, e.g. "tiny.py"
  segments: list[Segment] = field(default_factory=list)

  def heading(self) -> str | None:
    """The page's own title: the text of a `# Title` line that opens it."""
    first = self.segments[0] if self.segments else None
    return first.lines[0][2:].strip() if first and first.kind == "prose" and first.lines[0].startswith("# ") else None

  def markdown(self, prose: Callable[[str], str] = lambda text: text) -> str:
    """The page as Markdown; `prose` may rewrite each prose run (the build adds links with it), never the code.
    Headings stand alone, across the page; every other run of prose is a section together with the code
    after it (see "Prose beside code" below)."""
    parts = [] if self.heading() else [f"# {self.source}"]  # every page gets a title, even a file that does not open with one
    text: list[str] | None = None  # the prose of the section being built; None when there is none
    for seg in self.segments:
      if seg.kind == "code":
        parts.append(section("\n".join(text or []), code_markdown(self.source, seg)))
        text = None
        continue
      for is_heading, lines in prose_chunks(seg.lines):
        if text is not None: parts.append(section("\n".join(text), ""))  # prose with no code after it
        text = None
        if is_heading: parts.append("\n".join(lines))
        else: text = [prose("\n".join(lines))]
    if text is not None: parts.append(section("\n".join(text), ""))
    return "\n\n".join(parts) + "\n"

SUBSECTION = re.compile(r"^\s+# #{2,6} ")  # an indented `# ## Title` or `# ### Title`

def prose_line_numbers(text: str, path: str) -> set[int]:
  try: tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
  except (tokenize.TokenError, SyntaxError) as e: raise ValueError(f"{path} does not tokenize, so it cannot be cut into pages: {e}") from e
  lines = text.splitlines()
  alone = {tok.start[0]: tok.start[1] for tok in tokens if tok.type == tokenize.COMMENT and not lines[tok.start[0] - 1][:tok.start[1]].strip()}
  prose = {n for n, col in alone.items() if col == 0}
  for n, col in sorted(alone.items()):
    if col > 0 and n not in prose and SUBSECTION.match(lines[n - 1]):
      while alone.get(n) == col: prose.add(n); n += 1  # the heading and the comment lines under it
  return prose

def strip_comment(line: str) -> str:
  line = line.lstrip()
  return line[2:] if line.startswith("# ") else line[1:]

def segments(lines: list[str], prose: set[int], first: int, last: int) -> list[Segment]:
  """Cut lines first..last (1-based, inclusive) into runs of prose and runs of code. Blank lines never start
  a run: inside a run they belong to it, between runs they are dropped (Markdown separates blocks anyway)."""
  out: list[Segment] = []
  for n in range(first, last + 1):
    line = lines[n - 1]
    if not line.strip(): continue
    kind = "prose" if n in prose else "code"
    if out and out[-1].kind == kind:
      seg = out[-1]
      gap = lines[seg.start - 1 + len(seg.lines):n - 1]  # the blank lines since the run's last line
      seg.lines.extend(("" for _ in gap) if kind == "prose" else gap)
    else:
      seg = Segment(kind, n, [])
      out.append(seg)
    seg.lines.append(strip_comment(line) if kind == "prose" else line)
  return out

# ## Prose beside code
#
# A chapter page reads as literate source does (docco, pycco): each paragraph
# of prose sits beside the code it explains. The hook wraps each run of prose
# and the code run after it in a `literate` block holding two halves; the
# stylesheet puts the halves side by side on a wide screen and one above the
# other on a narrow one. Headings are not part of a section: they run across
# the page and make its table of contents. The Markdown inside the blocks is
# still Markdown (the `md_in_html` extension reads it).

HEADING = re.compile(r"^#{1,6} ")

def prose_chunks(lines: list[str]) -> list[tuple[bool, list[str]]]:
  """Cut a prose run into headings and the text between them: (is_heading, lines). Fenced blocks are text."""
  out: list[tuple[bool, list[str]]] = []
  fenced = False
  for line in lines:
    if line.lstrip().startswith("```"): fenced = not fenced
    heading = not fenced and HEADING.match(line) is not None
    if heading or not out or out[-1][0]: out.append((heading, []))
    out[-1][1].append(line)
  return [(h, ls) for h, ls in out if h or any(l.strip() for l in ls)]

def section(prose: str, code: str) -> str:
  halves = f'<div class="literate-prose" markdown>\n\n{prose}\n\n</div>' + (f'\n<div class="literate-code" markdown>\n\n{code}\n\n</div>' if code else "")
  return f'<div class="literate" markdown>\n{halves}\n</div>'


def code_markdown(source: str, seg: Segment) -> str:
  """A code run as a Python block numbered with its lines in the file, under a caption that is its anchor."""
  end = seg.start + len(seg.lines) - 1
  where = f"line {seg.start}" if end == seg.start else f"lines {seg.start}-{end}"
  caption = f'<p class="source-ref" id="L{seg.start}"><a href="#L{seg.start}">{source}, {where}</a></p>'
  longest = max((len(m) for line in seg.lines for m in re.findall(r"`+", line)), default=0)
  fence = "`" * max(3, longest + 1)  # longer than any run of backticks in the code, so the code cannot close it
  return f'{caption}\n\n{fence}python linenums="{seg.start}"\n' + "\n".join(seg.lines) + f"\n{fence}"

def slug(title: str) -> str: return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")

def pages_for(path: Path, source: str) -> list[Page]:
  """The pages of one source file: an introduction and one page per chapter, or a single page if it has no chapters."""
  text = path.read_text()
  lines, prose = text.splitlines(), prose_line_numbers(text, source)
  chapters = [(n, m) for n in sorted(prose) if (m := CHAPTER.match(lines[n - 1]))]
  base = source[:-len(".py")]
  if not chapters:
    single = Page(f"{base}.md", path.name, source, segments(lines, prose, 1, len(lines)))
    single.title = single.heading() or single.title
    return [single]
  pages = [Page(f"{base}/index.md", "Introduction", source, segments(lines, prose, 1, chapters[0][0] - 1))]
  for i, (n, m) in enumerate(chapters):
    end = chapters[i + 1][0] - 1 if i + 1 < len(chapters) else len(lines)
    title = f"{m.group(1)}. {m.group(2)}"
    pages.append(Page(f"{base}/{int(m.group(1)):02d}-{slug(m.group(2))}.md", title, source, segments(lines, prose, n, end)))
  return pages

def pages_for_pattern(root: Path, pattern: str) -> list[Page]:
  """The pages of every file matching `pattern` (a path or a glob relative to `root`), in file name order."""
  paths = sorted(glob.glob(str(root / pattern)))
  if not paths and not glob.has_magic(pattern): raise FileNotFoundError(f"mkdocs.yml's nav names {pattern!r}, which does not exist")
  return [page for p in paths for page in pages_for(Path(p), Path(p).relative_to(root).as_posix())]

# ## Tables computed from tiny
#
# The repository's tiny.py is executed (as module `tiny`, restored afterwards)
# with its own settings removed from the environment, so the defaults shown
# are the defaults and not whatever the person building the docs has set.

def run_tiny(path: Path) -> types.ModuleType:
  spec = importlib.util.spec_from_file_location("tiny", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules["tiny"] = module  # dataclasses look their module up while the file runs
  spec.loader.exec_module(module)
  return module

def load_tiny(path: Path) -> types.ModuleType:
  saved: dict[str, str] = {}
  # tiny registers `tiny` and its submodule views (`tiny.nn`, ...) in sys.modules: put back whatever was there
  previous = {name: m for name, m in sys.modules.items() if name == "tiny" or name.startswith("tiny.")}
  try:
    module = run_tiny(path)
    saved = {k: os.environ.pop(k) for k in module.ContextVar.registry if k in os.environ}
    return run_tiny(path) if saved else module  # run again without the settings the builder has set
  finally:
    os.environ.update(saved)
    for name in [n for n in sys.modules if n == "tiny" or n.startswith("tiny.")]: del sys.modules[name]
    sys.modules.update(previous)

def promotion_edges(tiny: types.ModuleType, ctx: BuildContext) -> str:
  rows = ["| dtype | promotes directly to |", "|---|---|"]
  for d in tiny.dtypes.all(): rows.append(f"| `{d.name}` | {', '.join(f'`{p.name}`' for p in tiny._promotes_to[d]) or '(nothing: it is the top)'} |")
  return "\n".join(rows)

def promotion_table(tiny: types.ModuleType, ctx: BuildContext) -> str:
  ds = tiny.dtypes.all()
  rows = ["| | " + " | ".join(f"`{d.name}`" for d in ds) + " |", "|---" * (len(ds) + 1) + "|"]
  for a in ds: rows.append(f"| `{a.name}` | " + " | ".join(tiny.least_upper_dtype(a, b).name for b in ds) + " |")
  return "\n".join(rows)

def env_table(tiny: types.ModuleType, ctx: BuildContext) -> str:
  rows = ["| Variable | Default | Type | Meaning | Defined in |", "|---|---|---|---|---|"]
  for key, var in tiny.ContextVar.registry.items():
    default = "(empty)" if var.value == "" else f"`{var.value!r}`"
    rows.append(f"| `{key}` | {default} | `{type(var.value).__name__}` | {var.doc.replace('|', '&#124;')} | {ctx.definition_link(key)} |")
  return "\n".join(rows)

GENERATORS: dict[str, Callable[[types.ModuleType, BuildContext], str]] = {
  "promotion-edges": promotion_edges, "promotion-table": promotion_table, "env-table": env_table}

# ## The build
#
# mkdocs calls the functions named `on_*` below. `on_config` reads the sources
# and replaces their nav entries; `on_files` adds the generated pages;
# `on_page_markdown` fills in the generated tables.

@dataclass
class BuildContext:
  root: Path  # the folder of mkdocs.yml: source paths are relative to it
  patterns: list[str]  # the source files and globs the nav names
  pages: list[Page]
  _tiny: types.ModuleType | None = None

  @property
  def tiny(self) -> types.ModuleType:
    if self._tiny is None: self._tiny = load_tiny(self.root / "tiny.py")
    return self._tiny

  def definition_link(self, key: str) -> str:
    """A link to the code block of tiny.py in which the setting `key` is created."""
    text = (self.root / "tiny.py").read_text()
    m = re.search(rf"""ContextVar\(\s*["']{re.escape(key)}["']""", text)
    if m is None: return ""
    line = text.count("\n", 0, m.start()) + 1
    for page in (p for p in self.pages if p.source == "tiny.py"):
      for seg in page.segments:
        if seg.kind == "code" and seg.start <= line < seg.start + len(seg.lines):
          return f"[tiny.py:{line}](/{page.uri}#L{seg.start})"  # mkdocs.yml makes /... relative to the docs folder
    return f"tiny.py:{line}"

def expand_nav(nav: list[Any], build: BuildContext) -> list[Any]:
  """Replace each nav entry naming a .py file or glob by the pages generated from it; drop it if it matches nothing."""
  out: list[Any] = []
  for item in nav:
    title, value = next(iter(item.items())) if isinstance(item, dict) else (None, item)
    if isinstance(value, list): value = expand_nav(value, build)
    elif isinstance(value, str) and value.endswith(".py"):
      generated = pages_for_pattern(build.root, value)
      build.patterns.append(value)
      build.pages.extend(generated)
      if not generated: continue
      value = [{p.title: p.uri} for p in generated]
      if title is None: out.extend(value); continue
    out.append(value if title is None else {title: value})
  return out

build: BuildContext | None = None

def on_config(config: Any) -> Any:
  global build
  build = BuildContext(Path(config.config_file_path).resolve().parent, [], [])
  if config.nav is not None: config.nav = expand_nav(config.nav, build)
  return config

def on_files(files: Any, config: Any) -> Any:
  from mkdocs.structure.files import File
  for page in build.pages:
    if files.get_file_from_path(page.uri) is not None: raise ValueError(f"docs/{page.uri} exists, but {page.source} generates that page")
    files.append(File.generated(config, page.uri, content=page.markdown()))
  return files

# ## Links between chapters
#
# The prose of tiny.py refers to other chapters in words: "(chapter 4)", and
# the introduction lists them all. In the site these become links, added to
# the prose runs only (never to code, nor to code spans or fenced blocks
# inside the prose), so the pages still hold exactly the file's text.

CHAPTER_REF = re.compile(r"\b[Cc]hapter (\d+)\b")  # "chapter 4" in a sentence
LISTED_CHAPTER = re.compile(r"^(\d+)\. (.+?)$", re.M)  # "4. The rewrite engine" in the introduction's list

def chapter_links(pages: list[Page], page: Page) -> Callable[[str], str]:
  """A prose filter for `page` that links each mention of a chapter of tiny.py that has a page."""
  chapters = {int(p.title.split(".")[0]): p for p in pages if p.source == "tiny.py" and p.title[0].isdigit()}
  def href(n: int) -> str: return f"/{chapters[n].uri}"  # mkdocs.yml makes /... relative to the docs folder
  def in_words(text: str) -> str:
    def link(m: re.Match) -> str:
      n = int(m.group(1))
      return f"[{m.group(0)}]({href(n)})" if n in chapters and chapters[n] is not page else m.group(0)
    return CHAPTER_REF.sub(link, text)
  def in_list(text: str) -> str:
    def link(m: re.Match) -> str:
      n = int(m.group(1))
      return f"{n}. [{m.group(2)}]({href(n)})" if n in chapters and chapters[n].title == f"{n}. {m.group(2)}" else m.group(0)
    return LISTED_CHAPTER.sub(link, text)
  def outside_code(text: str, fn: Callable[[str], str]) -> str:
    out, fenced = [], False
    for line in text.split("\n"):
      if line.lstrip().startswith("```"): fenced = not fenced
      out.append(line if fenced or line.lstrip().startswith("```") else
                 "".join(part if i % 2 else fn(part) for i, part in enumerate(re.split(r"(`+[^`]*`+)", line))))
    return "\n".join(out)
  is_intro = page.source == "tiny.py" and page.title == "Introduction"
  return lambda text: outside_code(in_list(text) if is_intro else text, in_words)

def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
  def fill(m: re.Match) -> str:
    if m.group(1) not in GENERATORS: raise ValueError(f"{page.file.src_uri} asks for unknown generated table {m.group(1)!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[m.group(1)](build.tiny, build)
  generated = next((p for p in build.pages if p.uri == page.file.src_uri), None)
  if generated is not None: markdown = generated.markdown(chapter_links(build.pages, generated))
  return MARKER.sub(fill, markdown)

def on_serve(server: Any, config: Any, builder: Any) -> Any:
  """`mkdocs serve` rebuilds when a source changes, or when a file appears in a globbed folder (a new backend)."""
  for pattern in build.patterns:
    watched = build.root / (Path(pattern).parent if glob.has_magic(pattern) else pattern)
    if watched.exists(): server.watch(str(watched))
  return server
