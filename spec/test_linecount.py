"""The line budget in LINECOUNT holds: code lines only, prose is free."""
import glob, io, pathlib, tokenize

ROOT = pathlib.Path(__file__).resolve().parent.parent
SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER, tokenize.ENCODING}

def code_lines(source: str) -> int:
  """Lines holding a token that is not a comment and not a docstring (a string that is a whole statement)."""
  lines: set[int] = set()
  prev = tokenize.NEWLINE
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type in SKIP:
      if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT): prev = tokenize.NEWLINE
      continue
    is_docstring = tok.type == tokenize.STRING and prev == tokenize.NEWLINE
    prev = tok.type
    if not is_docstring: lines.update(range(tok.start[0], tok.end[0] + 1))
  return len(lines)

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

def test_every_file_within_its_budget(capsys):
  failures = []
  for pattern, budget in budgets():
    files = sorted(glob.glob(str(ROOT / pattern)))
    assert files or any(c in pattern for c in "*?["), f"LINECOUNT names {pattern!r} but no such file exists"
    for f in files:
      n = code_lines(pathlib.Path(f).read_text())
      with capsys.disabled(): print(f"\n  {pathlib.Path(f).relative_to(ROOT)}: {n} / {budget} code lines", end="")
      if n > budget: failures.append(f"{f}: {n} code lines > budget {budget}")
  assert not failures, "\n".join(failures)
