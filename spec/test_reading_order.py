"""tiny.py reads top to bottom: no chapter's code uses a module-level name that a later chapter defines.

A chapter is the text from one `# # N. Title` heading to the next. Every
module-level name (a def, a class, an assignment) belongs to the chapter that
first defines it. A use of that name (in code, default values and decorators
included; type annotations are not evaluated and do not count) in an earlier
chapter is a forward reference: the reader meets the name before its idea. The
few that remain are listed in ALLOWED, each with the reason it is there; the
test prints the count, fails on any forward reference not listed, and fails on
an entry of ALLOWED that is no longer needed.
"""
import ast, pathlib, re

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHAPTER = re.compile(r"^# # (\d+)\. ")

# (name, chapter that uses it): why the use cannot wait
ALLOWED = {
  ("PythonDevice", 6): "the device registry opens the reference device by name; the device itself is the executable "
                       "meaning of every op, so it comes after the whole compiler (chapter 15)",
  ("realize_tensors", 7): "Tensor.realize() is the lazy core's one door to computing; what it does (schedule, lower, "
                          "compile, run) is the rest of the book",
}

def chapter_of(starts: list[tuple[int, int]], lineno: int) -> int:
  return max((n for start, n in starts if start <= lineno), default=0)

def forward_references(source: str) -> dict[tuple[str, int], list[int]]:
  """(name, using chapter) -> the lines where chapter uses a name defined in a later chapter."""
  starts = [(i + 1, int(m.group(1))) for i, line in enumerate(source.splitlines()) if (m := CHAPTER.match(line))]
  tree = ast.parse(source)
  defined: dict[str, int] = {}
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)): names = [node.name]
    elif isinstance(node, ast.Assign): names = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name): names = [node.target.id]
    else: names = []
    for name in names: defined.setdefault(name, chapter_of(starts, node.lineno))
  found: dict[tuple[str, int], list[int]] = {}

  class Uses(ast.NodeVisitor):
    def visit_arg(self, node: ast.arg) -> None: pass  # an argument's annotation is not evaluated
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
      for n in node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d is not None] + node.body: self.visit(n)
    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
      for n in (node.target, node.value):
        if n is not None: self.visit(n)
    def visit_Name(self, node: ast.Name) -> None:
      here = chapter_of(starts, node.lineno)
      if isinstance(node.ctx, ast.Load) and defined.get(node.id, 0) > here: found.setdefault((node.id, here), []).append(node.lineno)
  Uses().visit(tree)
  return found

def test_chapters_are_numbered_in_order():
  numbers = [int(m.group(1)) for line in (ROOT / "tiny.py").read_text().splitlines() if (m := CHAPTER.match(line))]
  assert numbers == list(range(1, len(numbers) + 1)), f"chapter numbers {numbers} are not 1, 2, 3, ... in order"

def test_no_chapter_uses_a_name_from_a_later_chapter():
  found = forward_references((ROOT / "tiny.py").read_text())
  print(f"\n  tiny.py: {len(found)} forward reference(s), {len(ALLOWED)} allowed")
  unexpected = {k: v for k, v in found.items() if k not in ALLOWED}
  assert not unexpected, "used before the chapter that defines them (name, chapter: lines): " + \
    "; ".join(f"{name}, chapter {ch}: {lines}" for (name, ch), lines in sorted(unexpected.items(), key=lambda kv: kv[0][1]))
  stale = sorted(set(ALLOWED) - set(found))
  assert not stale, f"ALLOWED lists forward references that are gone; remove them: {stale}"

def test_the_check_sees_a_forward_reference():
  source = "# # 1. First\ndef f(): return g()\n# # 2. Second\ndef g(): return 1\nx: int = f()\n"
  assert forward_references(source) == {("g", 1): [2]}
