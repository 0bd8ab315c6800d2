"""The docs site as a new reader meets it: built, served over HTTP, and opened in headless Chromium.

`spec/test_docs.py` checks the pages' text; this checks that a browser renders
them: the navigation, highlighted code, and a search that finds chapter text.
Chromium is driven two ways. `--dump-dom` prints the page after its scripts
have run, for checks on the document. For what needs waiting or asking the
page (the search runs in a web worker; colours are computed by CSS), the
DevTools protocol over `--remote-debugging-pipe`: JSON messages, each ended by
a NUL byte, written to the browser's file descriptor 3 and read from its 4.

Set TINY_DOCS_SCREENSHOTS to a folder to keep the screenshots taken here
(home page, tour, a chapter), to look at them.
"""
import functools, html.parser, http.server, importlib.util, json, os, pathlib, select, shutil, subprocess, sys, tempfile, threading, time
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]
CHAPTER = "tiny/03-uops/"  # a chapter page: its words must be searchable and its code highlighted

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: install it (Debian: apt-get install -y chromium) to run the browser checks")

# ## Building and serving the site

class Handler(http.server.SimpleHTTPRequestHandler):
  """Serves the built site and remembers every request's path and status, so a test can see what the pages asked for."""
  requests: list[tuple[str, int]] = []
  def log_request(self, code: int | str = "-", size: int | str = "-") -> None: Handler.requests.append((self.path, int(code)))
  def log_message(self, *args: object) -> None: pass

@pytest.fixture(scope="module")
def site(tmp_path_factory):
  missing = [m for m in ("mkdocs", "material") if importlib.util.find_spec(m) is None]
  if missing: pytest.skip(f"{' and '.join(missing)} not importable: pip install mkdocs mkdocs-material (or '.[test]')")
  out = tmp_path_factory.mktemp("site")
  build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
                         cwd=out, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
  assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(out)))
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{server.server_address[1]}/"
  server.shutdown()
  server.server_close()

# ## Driving Chromium

def chromium(*args: str) -> str:
  """Run headless Chromium once with a fresh profile; return what it printed on stdout."""
  with tempfile.TemporaryDirectory() as profile:
    result = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, f"chromium {' '.join(args)} failed:\n{result.stderr[-3000:]}"
  return result.stdout

def dump_dom(url: str) -> str: return chromium("--virtual-time-budget=5000", "--dump-dom", url)

class Browser:
  """A headless Chromium driven through the DevTools protocol: open a page, evaluate JavaScript in it."""
  def __init__(self) -> None:
    self.profile = tempfile.TemporaryDirectory()
    to_browser, self.commands = os.pipe()
    self.replies, from_browser = os.pipe()
    def on_fds_3_and_4() -> None: os.dup2(to_browser, 3); os.dup2(from_browser, 4)  # runs in the child, before exec
    self.process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile.name}", "--remote-debugging-pipe", "about:blank"],
                                    pass_fds=(3, 4), preexec_fn=on_fds_3_and_4, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_browser); os.close(from_browser)
    self.pending, self.next_id, self.session = b"", 0, None

  def send(self, method: str, timeout: float = 60, **params: object) -> dict:
    self.next_id += 1
    message = {"id": self.next_id, "method": method, "params": params, **({"sessionId": self.session} if self.session else {})}
    os.write(self.commands, json.dumps(message).encode() + b"\0")
    deadline = time.monotonic() + timeout
    while True:  # replies and events arrive in one stream; events are not needed here
      while b"\0" not in self.pending:
        if not select.select([self.replies], [], [], max(0.0, deadline - time.monotonic()))[0]: raise TimeoutError(f"no reply to {method}")
        chunk = os.read(self.replies, 1 << 16)
        if not chunk: raise RuntimeError(f"chromium closed the pipe while we waited for {method}")
        self.pending += chunk
      line, self.pending = self.pending.split(b"\0", 1)
      reply = json.loads(line)
      if reply.get("id") == self.next_id:
        if "error" in reply: raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

  def open(self, url: str) -> None:
    target = self.send("Target.createTarget", url=url)["targetId"]
    self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    self.wait_for(f"location.href.startsWith({json.dumps(url.split('?')[0])}) && document.readyState === 'complete'")

  def resize(self, width: int, height: int = 1000) -> None:
    """Lay the open page out as in a window `width` pixels wide (and wait until it has been)."""
    self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    self.wait_for(f"window.innerWidth === {width}")

  def screenshot(self, path: pathlib.Path) -> None:
    import base64
    path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

  def evaluate(self, expression: str) -> object:
    result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
    if "exceptionDetails" in result: raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
    return result["result"].get("value")

  def wait_for(self, expression: str, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while not (value := self.evaluate(expression)):
      if time.monotonic() > deadline: raise TimeoutError(f"still false after {timeout}s: {expression}")
      time.sleep(0.1)
    return value

  def close(self) -> None:
    self.session = None
    try: self.send("Browser.close", timeout=10)
    except (RuntimeError, TimeoutError): pass
    try: self.process.wait(timeout=10)
    except subprocess.TimeoutExpired: self.process.kill(); self.process.wait()
    os.close(self.commands); os.close(self.replies)
    self.profile.cleanup()

@pytest.fixture
def browser():
  b = Browser()
  yield b
  b.close()

class Links(html.parser.HTMLParser):
  """The (href, text) of every link whose class includes `cls`."""
  def __init__(self, cls: str) -> None:
    super().__init__()
    self.cls, self.links, self.open = cls, [], None
  def handle_starttag(self, tag: str, attrs: list) -> None:
    a = dict(attrs)
    if tag == "a" and self.cls in (a.get("class") or "").split(): self.open = [a.get("href"), ""]
  def handle_data(self, data: str) -> None:
    if self.open is not None: self.open[1] += data
  def handle_endtag(self, tag: str) -> None:
    if tag == "a" and self.open is not None:
      self.links.append((self.open[0], " ".join(self.open[1].split())))
      self.open = None

def nav_links(dom: str) -> dict[str, str]:
  parser = Links("md-nav__link")
  parser.feed(dom)
  return {text: href for href, text in parser.links if href}

# ## The checks

def test_home_page_navigation_leads_to_every_part_of_the_site(site):
  dom = dump_dom(site)
  assert '<h1 id="tiny">tiny' in dom
  links = nav_links(dom)
  for text, href in {"Quickstart": "quickstart/", "A guided tour": "tour/", "tiny and tinygrad": "tinygrad/",
                     "Introduction": "tiny/", "1. Helpers and settings": "tiny/01-helpers-and-settings/",
                     "Environment variables": "env/", "Dtype promotion": "dtypes/"}.items():
    assert links.get(text) == href, f"the home page's navigation has no link {text!r} to {href} (it has {links})"
  assert links.get("The CPU device") == "backends/cpu/"
  assert "tiny/index.md" not in dom and ".md\"" not in dom, "a link still points at a Markdown file"

def test_chapter_page_shows_numbered_highlighted_code_under_source_captions(site):
  dom = dump_dom(site + CHAPTER)
  assert '<h1 id="3-uops">3. UOps' in dom
  blocks = dom.count('<div class="language-python highlight">')
  assert blocks > 5 and dom.count('class="source-ref"') == blocks, "not every code block sits under its caption"
  for token in ('<span class="k">class</span>', '<span class="nc">UOp</span>', '<span class="c1">', '<span class="linenos" data-linenos="'):
    assert token in dom, f"no {token} in the chapter's code: highlighting did not happen"
  assert 'href="../02-data-types/"' in dom and 'href="../04-the-rewrite-engine/"' in dom, "no previous / next chapter links"

def test_highlighted_code_is_coloured_and_the_pages_load_every_file_they_ask_for(site, browser):
  Handler.requests.clear()
  browser.open(site + CHAPTER)
  colours = browser.evaluate("""[...new Set(['.highlight .k', '.highlight .nc', '.highlight .c1', '.highlight .n'].map(
                                 s => getComputedStyle(document.querySelector(s)).color))].length""")
  assert colours >= 3, "keywords, class names, comments and names are not drawn in different colours: the theme's CSS is missing"
  assert browser.evaluate("getComputedStyle(document.querySelector('.md-sidebar--primary')).display") != "none"
  missing = [path for path, status in Handler.requests if status >= 400]
  assert not missing, f"the chapter page asked for files the site does not have: {missing}"

def test_search_box_is_there_and_its_index_holds_the_chapters(site):
  dom = dump_dom(site)
  assert 'class="md-search__input"' in dom
  import urllib.request
  with urllib.request.urlopen(site + "search/search_index.json", timeout=30) as response: index = json.load(response)
  chapter = [doc for doc in index["docs"] if doc["location"].startswith(CHAPTER)]
  assert chapter and "hash-consed" in " ".join(doc["text"] for doc in chapter)

def test_searching_for_a_chapter_word_finds_the_chapter(site, browser):
  browser.open(site + "?q=hash-consed")  # the theme opens its search box with this query
  found = browser.wait_for("""[...document.querySelectorAll('.md-search-result__item a')].map(a => a.getAttribute('href'))""")
  assert any(CHAPTER in href for href in found), f"searching 'hash-consed' found {found}, not the UOps chapter"

# ## Literate chapter pages
#
# A chapter page puts each section's prose beside its code on a wide screen
# and above it on a narrow one (and when the prose holds a table, which needs
# the width), and its code never scrolls sideways: the font
# is sized so that a line of LINE characters fits at 1280 and at 1920 pixels,
# and a longer line wraps (spec/test_docs.py keeps tiny.py's lines near LINE).

LINE = 150
WIDTHS = [1280, 1920]

def chapter_pages() -> list[str]:
  text = (ROOT / "tiny.py").read_text()
  import re
  return [f"tiny/{int(n):02d}-{re.sub(r'[^a-z0-9]+', '-', title.lower()).strip('-')}/" for n, title in re.findall(r"^# # (\d+)\.\s+(.+?)\s*$", text, re.M)]

LAYOUT = """(() => {
  const codes = [...document.querySelectorAll('.literate-code pre > code')];
  const scrolls = [...document.querySelectorAll('.literate pre > code')].filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent.slice(0, 60));
  const probe = document.createElement('span');  // a line of LINE characters, numbered like the file's longest
  probe.innerHTML = '\\n<span class="linenos" data-linenos="9999 "></span>';
  const text = probe.appendChild(document.createTextNode('x'.repeat(%d)));
  codes[0].appendChild(probe);
  const range = document.createRange();
  range.selectNodeContents(text);
  const probeLines = new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
  probe.remove();
  const sections = [...document.querySelectorAll('.literate')].filter(s => s.querySelector('.literate-code') && !s.querySelector('table'));
  const beside = sections.filter(s => {
    const p = s.querySelector('.literate-prose').getBoundingClientRect(), c = s.querySelector('.literate-code').getBoundingClientRect();
    return p.right <= c.left && Math.abs(p.top - c.top) < 40; }).length;
  return {blocks: codes.length, scrolls, probeLines, sections: sections.length, beside,
          fontPx: parseFloat(getComputedStyle(codes[0]).fontSize), pageScrolls: document.documentElement.scrollWidth > innerWidth};
})()""" % LINE

@pytest.mark.parametrize("width", WIDTHS)
def test_chapter_code_never_scrolls_sideways_and_prose_sits_beside_code_on_a_wide_screen(site, browser, width):
  for page in chapter_pages():
    browser.open(site + page)
    browser.resize(width)
    got = browser.evaluate(LAYOUT)
    assert got["blocks"] > 0 and not got["scrolls"] and not got["pageScrolls"], f"{page} at {width} px: code scrolls sideways: {got}"
    assert got["probeLines"] == 1, f"{page} at {width} px: a {LINE}-character line does not fit on one line: {got}"
    assert got["fontPx"] >= 10, f"{page} at {width} px: code shrunk to {got['fontPx']} px to fit"
    if width >= 1920: assert got["beside"] == got["sections"] > 0, f"{page} at {width} px: prose is not beside its code: {got}"
    else: assert got["beside"] == 0, f"{page} at {width} px: prose and code side by side leave the code too little room: {got}"
    if (folder := os.environ.get("TINY_DOCS_SCREENSHOTS")) and page == CHAPTER:
      pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
      browser.evaluate("document.querySelector('.literate-code').closest('.literate').scrollIntoView()")  # a section with code
      browser.screenshot(pathlib.Path(folder) / f"chapter-{width}.png")

@pytest.mark.parametrize("page", ["", "tour/", CHAPTER], ids=["home", "tour", "chapter"])
def test_screenshot(site, page, tmp_path):
  path = tmp_path / f"{page.strip('/').replace('/', '-') or 'home'}.png"
  chromium("--virtual-time-budget=5000", f"--screenshot={path}", site + page)
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(data[16:20], "big") == 1400, "not a 1400-pixel-wide PNG"
  if folder := os.environ.get("TINY_DOCS_SCREENSHOTS"):
    pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
    shutil.copy(path, pathlib.Path(folder) / path.name)
