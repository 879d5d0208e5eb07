#!/usr/bin/env python3
"""Checks that every test docs/security.md names exists.

Each numbered item of the checklist ends with the tests that would fail if
its behaviour broke ("Tests: `a`, `b`." or "Test: `a`."), or says
"Not yet tested: <why>". This script reads every "Test(s):" part and checks
each backticked name in it:

- a unit test, named by its module path from the crate root without
  `wasmgate::` (`auth::jwks::tests::NAME`): the module must be a file under
  host/src (`host/src/auth/jwks/tests.rs`, `.../tests/mod.rs`) or an inline
  `mod tests { ... }` of its parent's file (`host/src/auth/jwks.rs`), and
  that file must define `fn NAME` as a `#[test]` / `#[tokio::test]` inside
  that module;
- an end-to-end test, written after the word "e2e" (e2e `policy::NAME`):
  the same, under tests/e2e (`tests/e2e/policy.rs`; `main::NAME` is
  tests/e2e/main.rs). "e2e" holds for the two-segment names after it until
  the word "unit"; a name of three or more segments is always a unit test
  (e2e tests sit at the top of their file), so
  "e2e `connections::a`, `server::listener::tests::b`" is one of each;
- `…::NAME` (or `...::NAME`): the module of the name before it;
- a last segment with `*` (`canonical::tests::*`, `tests::checklist_38_*`):
  the module exists and has at least one test matching it;
- a path (`fuzz/fuzz_targets/*`, `scripts/fuzz.sh`): at least one file
  matches it, relative to the repository root. Paths under
  fuzz/fuzz_targets count as tests, others (the script that runs them) are
  only checked to exist.

Text in parentheses is commentary and is skipped (it may quote `h2` or
`tenant: acme`); a "Test(s):" part ends at the first full stop outside
backticks and parentheses, so an item may have several.

It also fails when a numbered item has neither a "Test(s):" part nor
"Not yet tested: <why>", when item numbers repeat or skip, and when a
"Test(s):" part names nothing. A test named `checklist_NN_*` in the tree
that item NN does not name is a warning (an error with --strict).

When a name is not found where its module path says, the message gives the
item, the name, the files it looked in, and where a test of that name is
now, if anywhere (modules get split and moved; the fix is usually the
module path).

Usage: python3 scripts/check-security-doc.py [--strict] [--doc PATH]
Exit 0 printing "security.md: N items, M tests named, all found"
(M counts distinct names); exit 1 listing every problem.
"""

import argparse
import fnmatch
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"
UNIT_BASE = ROOT / "host" / "src"
E2E_BASE = ROOT / "tests" / "e2e"
FUZZ_BASE = ROOT / "fuzz" / "fuzz_targets"
# The crate root file of each test tree: a name whose module has no file of
# its own is looked for inline in it.
UNIT_ROOT_FILE = "lib.rs"
E2E_ROOT_FILE = "main.rs"

ITEM_RE = re.compile(r"^(\d+)\.\s+(.*)$")
MARKER_RE = re.compile(r"\b(Tests?|Not yet tested):")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
RUST_NAME_RE = re.compile(rf"^{IDENT}(?:::{IDENT})*::[A-Za-z0-9_*]+$")
FN_RE = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(" + IDENT + r")\b")
MOD_OPEN_RE = re.compile(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*\{")
TEST_ATTR_RE = re.compile(r"#\[\s*(?:[A-Za-z_][A-Za-z0-9_]*::)*test\b")
CHECKLIST_RE = re.compile(r"^checklist_((?:\d+_)+)")


def rel(p):
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


# ------------------------------------------------------------ Rust files


class RustFile:
    """The functions of one .rs file, each with the inline modules around it."""

    def __init__(self, path):
        self.path = path
        self.fns = []  # (name, line number, inline module tuple, is test)
        self.inline_mods = set()  # tuples of inline module paths present
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        stack = []  # (module name, indentation of its `mod` line)
        for i, line in enumerate(lines):
            stripped = line.strip()
            indent = len(line) - len(line.lstrip())
            # rustfmt closes a block at the indentation it was opened at.
            while stack and stripped.startswith("}") and indent == stack[-1][1]:
                stack.pop()
                break
            m = MOD_OPEN_RE.match(line)
            if m and not stripped.endswith("}"):
                stack.append((m.group(2), len(m.group(1))))
                self.inline_mods.add(tuple(n for n, _ in stack))
                continue
            m = FN_RE.match(line)
            if m:
                self.fns.append((m.group(2), i + 1, tuple(n for n, _ in stack), self._is_test(lines, i)))

    @staticmethod
    def _is_test(lines, i):
        j = i - 1
        while j >= 0:
            s = lines[j].strip()
            if s.startswith("#[") or s.startswith("//") or s.startswith("#!") or (s.endswith(")]") and not s.endswith(";")):
                if TEST_ATTR_RE.search(s):
                    return True
                j -= 1
                continue
            break
        return False


_files = {}


def rust_file(path):
    if path not in _files:
        _files[path] = RustFile(path)
    return _files[path]


def module_path_of(base, path, inline):
    """The module path of `inline` modules inside `path`, below `base`."""
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts and parts[-1] == "mod":
        parts.pop()
    if base == UNIT_BASE and parts == ["lib"]:
        parts = []
    return parts + list(inline)


def all_tests():
    """Every test function under the searched folders: name -> [(kind, module path, file, line)]."""
    index = {}
    for kind, base in (("unit", UNIT_BASE), ("e2e", E2E_BASE)):
        for path in sorted(base.rglob("*.rs")):
            f = rust_file(path)
            for name, line, inline, is_test in f.fns:
                if is_test:
                    index.setdefault(name, []).append((kind, module_path_of(base, path, inline), path, line))
    return index


def spelled(kind, module, name):
    text = "::".join(list(module) + [name])
    return f"e2e `{text}`" if kind == "e2e" else f"`{text}`"


# ------------------------------------------------------------ the doc


def read_items(doc):
    """Numbered items: [(number, first line number, text)]."""
    items = []
    current = None
    for no, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        m = ITEM_RE.match(line)
        if m:
            current = [int(m.group(1)), no, m.group(2)]
            items.append(current)
        elif current is not None and line.strip() and not line.startswith("#"):
            current[2] += " " + line.strip()
        else:
            current = None
    return [tuple(i) for i in items]


def markers(text):
    """(kind, end of marker) for each marker outside backticks."""
    out = []
    in_code = False
    plain_start = 0
    for i, c in enumerate(text + "`"):
        if c == "`":
            if not in_code:
                for m in MARKER_RE.finditer(text, plain_start, i):
                    out.append((m.group(1), m.end()))
            else:
                plain_start = i + 1
            in_code = not in_code
    return out


def tests_part(text, start):
    """The backticked names of the "Test(s):" part from `start`: [(name, kind)]."""
    refs = []
    mode = "unit"
    plain = []
    depth = 0
    in_code = False
    buf = []
    i = start
    while i < len(text):
        c = text[i]
        if in_code:
            if c == "`":
                in_code = False
                if depth == 0:
                    refs.append(("".join(buf).strip(), mode))
            else:
                buf.append(c)
        elif c == "`":
            in_code = True
            buf = []
            if depth == 0:
                words = re.findall(r"\b(e2e|unit)\b", "".join(plain))
                if words:
                    mode = words[-1]
                plain = []
        elif c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif depth == 0 and c == "." and (i + 1 == len(text) or text[i + 1].isspace()):
            break
        elif depth == 0:
            plain.append(c)
        i += 1
    return refs


# ------------------------------------------------------------ checks


def candidate_files(base, mods, root_file):
    """Where module `mods` may live: [(file, inline modules left)], deepest first."""
    out = []
    for k in range(len(mods), 0, -1):
        joined = pathlib.Path(*mods[:k])
        out.append((base / joined.with_suffix(".rs"), tuple(mods[k:])))
        out.append((base / joined / "mod.rs", tuple(mods[k:])))
    out.append((base / root_file, tuple(mods)))
    return out


def check_rust_name(item, ref, kind, index):
    """Problems with one Rust test name (empty if found)."""
    segs = ref.split("::")
    mods, name = segs[:-1], segs[-1]
    base, root_file = (E2E_BASE, E2E_ROOT_FILE) if kind == "e2e" else (UNIT_BASE, UNIT_ROOT_FILE)
    shown = f"e2e `{ref}`" if kind == "e2e" else f"`{ref}`"
    looked = []
    for path, inline in candidate_files(base, mods, root_file):
        if not path.is_file():
            looked.append(f"{rel(path)} (no such file)")
            continue
        f = rust_file(path)
        if inline and inline not in f.inline_mods:
            looked.append(f"{rel(path)} (no inline `mod {'::'.join(inline)}`)")
            continue
        where = f"{rel(path)}" + (f" inline `mod {'::'.join(inline)}`" if inline else "")
        in_mod = [(n, line, t) for n, line, inl, t in f.fns if inl == inline]
        if "*" in name:
            if any(t and fnmatch.fnmatchcase(n, name) for n, _, t in in_mod):
                return []
            return [f"item {item}: {shown}: no test matching `{name}` in {where}"]
        for n, line, t in in_mod:
            if n == name:
                if t:
                    return []
                return [f"item {item}: {shown}: `fn {name}` at {rel(path)}:{line} is not a #[test]"]
        msg = f"item {item}: {shown}: no test `fn {name}` in {where}"
        if looked:
            msg += f"; also looked for {', '.join(looked)}"
        return [msg + elsewhere(name, index)]
    return [f"item {item}: {shown}: module `{'::'.join(mods)}` not found; looked for {', '.join(looked)}" + elsewhere(name, index)]


def elsewhere(name, index):
    if "*" in name:
        return ""
    found = index.get(name)
    if not found:
        return "; no test of that name anywhere under host/src or tests/e2e"
    return "; a test of that name is " + "; ".join(
        f"{spelled(k, m, name)} ({rel(p)}:{line})" for k, m, p, line in found
    )


def check_path(item, ref):
    pattern = ref.lstrip("/")
    matches = sorted(ROOT.glob(pattern)) if any(ch in pattern for ch in "*?[") else [ROOT / pattern]
    matches = [m for m in matches if m.exists()]
    if not matches:
        return [f"item {item}: `{ref}`: no file matches it (relative to the repository root, {ROOT})"]
    if pattern.startswith("fuzz/fuzz_targets/"):
        targets = [m for m in matches if m.is_file() and "fuzz_target!" in m.read_text(errors="replace")]
        if not targets:
            return [f"item {item}: `{ref}`: matches no fuzz target (a file with `fuzz_target!`) under {rel(FUZZ_BASE)}"]
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strict", action="store_true", help="unlisted checklist_NN tests are errors, not warnings")
    ap.add_argument("--doc", type=pathlib.Path, default=DOC)
    args = ap.parse_args()

    problems, warnings = [], []
    if not args.doc.is_file():
        print(f"{args.doc}: no such file", file=sys.stderr)
        return 1
    items = read_items(args.doc)
    index = all_tests()
    if not items:
        problems.append(f"{rel(args.doc)}: no numbered items found")

    seen = {}
    for number, line, _ in items:
        if number in seen:
            problems.append(f"item {number} (line {line}): number used again (first at line {seen[number]})")
        seen.setdefault(number, line)
    numbers = sorted(seen)
    for a, b in zip(numbers, numbers[1:]):
        if b != a + 1:
            problems.append(f"items jump from {a} to {b}")

    named = set()  # distinct test references
    covered = []  # (item, kind, module tuple, name pattern) for the checklist_NN cross-check
    for number, line, text in items:
        found_marker = False
        for kind_word, end in markers(text):
            found_marker = True
            if kind_word == "Not yet tested":
                why = text[end:].strip()
                if len(why) < 3:
                    problems.append(f"item {number} (line {line}): \"Not yet tested:\" without a reason")
                continue
            refs = tests_part(text, end)
            if not refs:
                problems.append(f"item {number} (line {line}): \"{kind_word}:\" names no test")
            prev_module = None
            for ref, kind in refs:
                m = re.match(r"^(?:…|\.\.\.)::(.+)$", ref)
                if m:
                    if prev_module is None:
                        problems.append(f"item {number}: `{ref}`: an ellipsis with no name before it to take the module from")
                        continue
                    ref, kind = "::".join(prev_module[1] + [m.group(1)]), prev_module[0]
                if "/" in ref or ref.startswith("."):
                    problems += check_path(number, ref)
                    if ref.lstrip("/").startswith("fuzz/fuzz_targets/"):
                        named.add(("path", ref))
                    continue
                if not RUST_NAME_RE.match(ref):
                    problems.append(
                        f"item {number}: `{ref}`: not a test name (module::path::name, e2e file::name) or a path"
                    )
                    continue
                segs = ref.split("::")
                if kind == "e2e" and len(segs) > 2:
                    # e2e tests are `file::name`; a longer path is a unit
                    # test's module path even after "e2e ..." names.
                    kind = "unit"
                prev_module = (kind, segs[:-1])
                named.add((kind, ref))
                covered.append((number, kind, tuple(segs[:-1]), segs[-1]))
                problems += check_rust_name(number, ref, kind, index)
        if not found_marker:
            problems.append(f"item {number} (line {line}): neither \"Tests:\"/\"Test:\" nor \"Not yet tested:\"")

    # Every checklist_NN test should be named by item NN (or one of NN_MM...).
    for name, places in sorted(index.items()):
        m = CHECKLIST_RE.match(name)
        if not m:
            continue
        nums = {int(n) for n in m.group(1).strip("_").split("_")}
        for kind, module, path, line in places:
            if not any(
                item in nums and k == kind and mod == tuple(module) and fnmatch.fnmatchcase(name, pat)
                for item, k, mod, pat in covered
            ):
                items_text = " or ".join(str(n) for n in sorted(nums))
                warnings.append(
                    f"{spelled(kind, module, name)} ({rel(path)}:{line}) is not named by item {items_text}"
                )

    if args.strict:
        problems += warnings
        warnings = []
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if problems:
        print(f"{rel(args.doc)}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"{args.doc.name}: {len(items)} items, {len(named)} tests named, all found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
