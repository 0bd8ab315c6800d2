"""The line budget in LINECOUNT holds: code lines only, prose is free.

An entry `FILE:NAME` budgets a string constant of that file that holds code
in another language (tiny.py's VIZ_PAGE: the viewer's HTML, CSS and
JavaScript). Its code lines are the lines that are not blank and not only a
comment; they count against that entry alone, not against FILE's budget.
"""
import ast, glob, io, pathlib, tokenize

ROOT = pathlib.Path(__file__).resolve().parent.parent
SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER, tokenize.ENCODING}

def code_lines(source: str, skip: frozenset[int] = frozenset()) -> int:
  """Lines holding a token that is not a comment and not a docstring (a string that is a whole statement), except those in skip."""
  lines: set[int] = set()
  prev = tokenize.NEWLINE
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type in SKIP:
      if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT): prev = tokenize.NEWLINE
      continue
    is_docstring = tok.type == tokenize.STRING and prev == tokenize.NEWLINE
    prev = tok.type
    if not is_docstring: lines.update(range(tok.start[0], tok.end[0] + 1))
  return len(lines - skip)

def string_constant(source: str, name: str) -> tuple[frozenset[int], str]:
  """The line numbers of the module-level assignment `name = "..."`, and the string."""
  for node in ast.parse(source).body:
    if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [name] and \
       isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
      return frozenset(range(node.lineno, node.end_lineno + 1)), node.value.value
  raise LookupError(f"no string constant {name} at the top level")

def embedded_code_lines(text: str) -> int:
  """Lines of HTML, CSS or JavaScript that are not blank and not only a comment."""
  return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith(("//", "/*", "<!--")))

def budgets() -> list[tuple[str, int]]:
  out = []
  for line in (ROOT / "LINECOUNT").read_text().splitlines():
    if line.strip() and not line.startswith("#"):
      pattern, budget = line.split()
      out.append((pattern, int(budget)))
  return out

def test_code_lines_ignores_comments_and_docstrings():
  src = '# prose\ndef f():\n  """doc\n  string"""\n  return (1 +\n          2)  # why\n\nx = "not a docstring"\n'
  assert code_lines(src) == 4  # def, return (two lines), x = ...

def test_embedded_code_lines_skip_blanks_and_comments():
  src = 'X = 1\nPAGE = """<style>\n* { margin: 0; }\n/* why */\n</style>\n\n<script>\n// why\nf();\n</script>"""\nY = 2\n'
  lines, text = string_constant(src, "PAGE")
  assert lines == {2, 3, 4, 5, 6, 7, 8, 9, 10} and embedded_code_lines(text) == 6  # <style>, *, </style>, <script>, f();, </script>
  assert code_lines(src, lines) == 2

def test_every_file_within_its_budget(capsys):
  failures, entries = [], budgets()
  constants = [pattern.split(":") for pattern, _ in entries if ":" in pattern]
  for pattern, budget in entries:
    if ":" in pattern:
      path, name = pattern.split(":")
      assert (ROOT / path).exists(), f"LINECOUNT names {path!r} but no such file exists"
      targets = [(f"{path}:{name}", embedded_code_lines(string_constant((ROOT / path).read_text(), name)[1]))]
    else:
      files = sorted(glob.glob(str(ROOT / pattern)))
      assert files or any(c in pattern for c in "*?["), f"LINECOUNT names {pattern!r} but no such file exists"
      targets = []
      for f in files:
        source, rel = pathlib.Path(f).read_text(), str(pathlib.Path(f).relative_to(ROOT))
        skip = frozenset().union(*(string_constant(source, name)[0] for path, name in constants if path == rel))
        targets.append((rel, code_lines(source, skip)))
    for what, n in targets:
      with capsys.disabled(): print(f"\n  {what}: {n} / {budget} code lines", end="")
      if n > budget: failures.append(f"{what}: {n} code lines > budget {budget}")
  assert not failures, "\n".join(failures)
