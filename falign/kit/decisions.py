"""The deviations ledger: every decision the code makes where a paper is silent, ambiguous or
self-contradictory, with what the paper says, written once, beside the code it governs.

Where the choice is made, a comment or docstring states it with a stable id, its topic, our choice
and the paper's side::

    # Decision [mypaper.optimizer] (training): Adam at every scale; SGD at the printed rates diverged ...
    # Paper: Sec. 4: SGD, momentum 0.99, weight decay 0.005, ...

The id is ``<chapter>.<name>`` (lowercase, digits and ``-``); the topic one of :data:`TOPICS`. The
text runs on over the following ``#`` lines of the comment, or in a docstring to the end of its
paragraph; ``Paper:`` starts the paper's side. Each id is made in one place in ``falign/``.

:func:`deviations` gives a chapter's ledger for the book's Deviations section, each decision located
by the symbol that makes it (``falign.papers.mypaper.experiment.train``), not by a line number that
every edit moves. A chapter also shows the kit's shared decisions it names
(:attr:`falign.kit.registry.Chapter.shared_decisions`). :func:`problems` lists every defect (no
topic, no paper side, a ``Decision`` without an id, an id made twice); the tests require none. A
mention of the marker in prose is written in backticks (````Decision````) and is not a decision.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import tokenize
from pathlib import Path

import pandas as pd

from falign.base import paths

TOPICS = ("data", "model", "training", "evaluation")
PACKAGE = paths.ROOT / "falign"

_ID = re.compile(r"[a-z][a-z0-9]*(?:\.[a-z0-9][a-z0-9-]*)+")
# A marker: the word, not preceded by a backtick or a letter (prose mentions are in backticks).
_TAG = re.compile(r"(?<![`\w])Decision\s*\[(?P<id>[^\]\n]*)\]\s*(?:\((?P<topic>[a-z]+)\))?\s*:?")
_BARE = re.compile(r"(?<![`\w])(?:Decision\b(?!\s*\[)|Decisions\s*(?:\([^)\n]*\))?\s*:)")
_RULE = re.compile(r"^[\s\-=#~*_]*$")  # a separator comment (# -----) ends a decision's text
_PAPER = re.compile(r"\bPaper:\s*")


@dataclasses.dataclass(frozen=True)
class Found:
    """A tagged decision in the code: id, topic, our choice (``text``), the paper's side, and where:
    the file (relative to the repository), line, and the symbol that makes it."""

    id: str
    path: str
    line: int
    text: str
    topic: str = ""
    paper: str = ""
    symbol: str = ""

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


# --------------------------------------------------------------------------------------------------
# The scanner
# --------------------------------------------------------------------------------------------------
def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(paths.ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def _clean(text: str) -> str:
    return " ".join(text.split()).rstrip("\"'").strip()


def _comment_body(token: str) -> str:
    return token.lstrip("#").strip()


def scan_source(source: str, path: str = "<string>") -> tuple[list[Found], list[str]]:
    """Tagged decisions and problems (bare or malformed markers) in one file's comments and strings.

    A comment's decision runs on over the following comment lines that start in the same column
    (until a blank or separator comment, code, or another marker); a docstring's to the end of its
    paragraph (a blank line), the next marker or the end of the string."""
    found, problems = [], []
    symbols = _symbols(source, path)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    comments = {t.start[0]: t for t in tokens if t.type == tokenize.COMMENT}
    code_lines = {t.start[0] for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                                               tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)}
    for t in tokens:
        if t.type not in (tokenize.COMMENT, tokenize.STRING):
            continue
        text, first = t.string, t.start[0]
        markers = sorted([(m.start(), "tag", m) for m in _TAG.finditer(text)]
                         + [(m.start(), "bare", m) for m in _BARE.finditer(text)], key=lambda x: x[0])
        for k, (start, kind, m) in enumerate(markers):
            line = first + text.count("\n", 0, start)
            where = f"{path}:{line}"
            if kind == "bare":
                problems.append(f"{where}: Decision without an id (tag it 'Decision [<chapter>.<name>]:')")
                continue
            id_ = m.group("id").strip()
            if not _ID.fullmatch(id_):
                problems.append(f"{where}: malformed decision id [{id_}]; use '<chapter>.<name>' "
                                "(lowercase letters, digits, '-')")
                continue
            end = markers[k + 1][0] if k + 1 < len(markers) else len(text)
            body = text[m.end():end]
            if t.type == tokenize.COMMENT:
                body = _comment_body("#" + body) + "\n" + _continuation(comments, code_lines, t)
            if text[:start].rstrip().endswith("("):  # "(Decision [x]: ...)" ends at its parenthesis
                body = _until_close(body)
            elif t.type == tokenize.STRING:
                body = re.split(r"\n\s*\n", body)[0]
            ours, paper = _PAPER.split(body, maxsplit=1) if _PAPER.search(body) else (body, "")
            topic = m.group("topic") or ""
            if topic not in TOPICS:
                problems.append(f"{where}: decision [{id_}] needs a topic, one of {', '.join(TOPICS)}: "
                                f"'Decision [{id_}] (model): ...'")
            if not _clean(paper):
                problems.append(f"{where}: decision [{id_}] has no 'Paper:' side (what the paper says, or that "
                                "it is silent)")
            found.append(Found(id_, path, line, _clean(ours).rstrip(" ."), topic, _clean(paper),
                               symbols.get(line, "")))
    return found, problems


def _until_close(text: str) -> str:
    """The text up to the parenthesis that closes an already open one."""
    depth = 1
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return text[:i]
    return text


def _continuation(comments: dict, code_lines: set, token) -> str:
    """The text of the comment lines that continue ``token``'s comment."""
    parts, line, column = [], token.start[0] + 1, token.start[1]
    while line in comments and line not in code_lines and comments[line].start[1] == column:
        body = _comment_body(comments[line].string)
        if not body or _RULE.match(body) or _TAG.search(body) or _BARE.search(body):
            break
        parts.append(body)
        line += 1
    return " ".join(parts)


def _files(root: Path | None) -> list[Path]:
    root = PACKAGE if root is None else Path(root)
    me = Path(__file__).resolve()
    return sorted(p for p in root.rglob("*.py") if p.resolve() != me)


def scan(root: str | Path | None = None) -> tuple[list[Found], list[str]]:
    """Every tagged decision under ``root`` (default: the ``falign`` package, this file excepted) and
    every problem with a marker, plus an id made in more than one place."""
    found, problems = [], []
    for path in _files(root):
        f, p = scan_source(path.read_text(encoding="utf-8"), _relative(path))
        found += f
        problems += p
    first: dict[str, Found] = {}
    for f in found:
        if f.id in first:
            problems.append(f"{f.where}: decision [{f.id}] is also made at {first[f.id].where}; make it in one "
                            "place")
        first.setdefault(f.id, f)
    return found, problems


def problems(root: str | Path | None = None) -> list[str]:
    """Everything that keeps the ledger from being complete, one line each (file:line first): marker
    problems, a decision without a topic or a paper side, an id made in two places (:func:`scan`)."""
    return scan(root)[1]


# --------------------------------------------------------------------------------------------------
# Where: the symbol that makes a decision
# --------------------------------------------------------------------------------------------------
def _module(path: str) -> str:
    """'falign/papers/mypaper/model.py' -> 'falign.papers.mypaper.model'."""
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _symbols(source: str, path: str) -> dict[int, str]:
    """line -> the dotted symbol a decision on that line belongs to: the innermost function or class
    around it, else the module-level definition that follows it, else the module itself."""
    module = _module(path)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    n = source.count("\n") + 2
    out = {line: module for line in range(1, n)}

    def name_of(node) -> str | None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return node.name
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        return names[0] if names else None

    previous_end = 0
    for node in tree.body:  # a module-level comment names the definition below it
        name = name_of(node)
        if name:
            for line in range(previous_end + 1, node.lineno):
                out[line] = f"{module}.{name}"
        previous_end = node.end_lineno or node.lineno

    def visit(node, prefix: str):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = f"{prefix}.{child.name}"
                first = min([d.lineno for d in child.decorator_list] + [child.lineno])
                for line in range(first, (child.end_lineno or child.lineno) + 1):
                    out[line] = qual
                visit(child, qual)
            elif isinstance(child, (ast.Assign, ast.AnnAssign)) and node is tree:
                name = name_of(child)
                if name:
                    for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                        out[line] = f"{module}.{name}"
    visit(tree, module)
    return out


# --------------------------------------------------------------------------------------------------
# The ledger
# --------------------------------------------------------------------------------------------------
COLUMNS = ("id", "topic", "the paper", "our decision", "where")


def deviations(chapter: str, root: str | Path | None = None, shared: tuple[str, ...] | None = None) -> pd.DataFrame:
    """A chapter's deviations ledger: its own decisions (ids ``<chapter>.*``) and the shared ones it
    names (``shared``, default its registry entry's), ordered by topic then by where the code makes
    them; ``where`` is the symbol."""
    if shared is None:
        from falign.kit import registry

        known = {c.name: c for c in registry.chapters()}
        shared = known[chapter].shared_decisions if chapter in known else ()
    found, _ = scan(root)
    mine = [f for f in found if f.id.split(".")[0] == chapter or f.id in shared]
    mine.sort(key=lambda f: (TOPICS.index(f.topic) if f.topic in TOPICS else len(TOPICS), f.path, f.line))
    rows = [{"id": f.id, "topic": f.topic, "the paper": f.paper, "our decision": f.text, "where": f.symbol}
            for f in mine]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def decisions_in(path: str | Path) -> dict[str, str]:
    """id -> decision text of the decisions made in one source file, in file order."""
    path = Path(path)
    found, _ = scan_source(path.read_text(encoding="utf-8"), _relative(path))
    return {f.id: f.text for f in found}


def write(run, chapter: str, caption: str = ""):
    """``deviations.csv`` through ``run.table`` (:class:`falign.kit.report.Run`); returns the styled table."""
    caption = caption or (f"Deviations of the {chapter} chapter: each decision where the paper is silent, "
                          "ambiguous or self-contradictory, and where the code makes it")
    return run.table(deviations(chapter), "deviations", caption=caption)
