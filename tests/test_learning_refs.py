"""The chapters in learning/ must point at code that exists, and their example commands must parse.

A code reference is an inline code span (single backticks, outside fenced blocks) of one of these forms:
  `perceptions/data/scoring.py`                    a file or folder of the repository
  `perceptions/data/scoring.py: score_votes`       ... and a name defined in that file (def, class, assignment);
  `perceptions/x.py: Scaling.fit, build_labels`    several names, and Class.attribute, are allowed
  `perceptions.data.placepulse.read_qscores`       a dotted Python name importable from the package
Example commands in fenced code blocks (lines starting `perceptions ` or containing `-m perceptions `) are
parsed by the real CLI parser, so a flag that does not exist fails here instead of for a reader.
"""
from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO / "learning").glob("*.md"))
# Paths are checked only under the repository's own folders; run artefacts (outputs/runs/...) and /tmp paths are
# not code references.
CHECKED_ROOTS = ("perceptions", "tests", "examples", "demo", "benchmarks", "learning", "model")

FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
INLINE_CODE = re.compile(r"(?<!`)`([^`]+?)`(?!`)")
PATH_REF = re.compile(
    r"^(?P<path>(?:%s)(?:/[\w.\-]+)*/?)(?::\s*(?P<names>[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*))?$"
    % "|".join(CHECKED_ROOTS)
)
DOTTED_REF = re.compile(r"^(?P<dotted>perceptions(?:\.[A-Za-z_]\w*)+)(?:\(\))?$")


def split_markdown(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str, str]]]:
    """Return (prose lines, fenced blocks) as ([(line_no, line)], [(first_line_no, language, body)])."""
    prose, blocks = [], []
    in_block, lang, start, body = False, "", 0, []
    for number, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line)
        if fence and not in_block:
            in_block, lang, start, body = True, fence.group(2), number + 1, []
        elif fence and in_block:
            blocks.append((start, lang, "\n".join(body)))
            in_block = False
        elif in_block:
            body.append(line)
        else:
            prose.append((number, line))
    return prose, blocks


def find_references(text: str) -> list[tuple[int, str]]:
    """Every code reference in a Markdown text, as (line number, the text inside the backticks).

    A span may wrap onto the next line (Markdown allows it); its whitespace is normalised to single spaces.
    """
    prose, _ = split_markdown(text)
    lines = {number: line for number, line in prose}
    # Fenced lines become empty lines, so offsets still map to line numbers and no span crosses a fence.
    body = "\n".join(lines.get(n, "") for n in range(1, text.count("\n") + 2))
    refs = []
    for match in INLINE_CODE.finditer(body):
        span = " ".join(match.group(1).split())
        if PATH_REF.match(span) or DOTTED_REF.match(span):
            refs.append((body.count("\n", 0, match.start()) + 1, span))
    return refs


def defined_names(path: Path, include_imports: bool = False) -> dict[str, set[str]]:
    """Top-level names of a Python file -> their attributes (methods, class variables) when a class."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = set()
        elif isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    members.update(t.id for t in item.targets if isinstance(t, ast.Name))
            names[node.name] = members
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        names[leaf.id] = set()
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = set()
        elif include_imports and isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = set()
    return names


def check_name(path: Path, dotted_name: str, include_imports: bool = False) -> str | None:
    """None when `dotted_name` (name or Class.attribute) is defined in the Python file, else why not."""
    names = defined_names(path, include_imports)
    head, _, attribute = dotted_name.partition(".")
    if head not in names:
        return f"{dotted_name!r} is not defined in {path.relative_to(REPO)}"
    if attribute and attribute not in names[head]:
        return f"{dotted_name!r}: {head} in {path.relative_to(REPO)} has no attribute {attribute!r}"
    return None


def check_reference(span: str, root: Path = REPO) -> str | None:
    """None when a reference names something that exists, else one line saying what is wrong."""
    path_ref = PATH_REF.match(span)
    if path_ref:
        path = root / path_ref.group("path")
        if not path.exists():
            return f"{path_ref.group('path')} does not exist"
        if path_ref.group("names"):
            if path.suffix != ".py":
                return f"{path_ref.group('path')} is not a Python file, so it cannot define names"
            for name in re.split(r"\s*,\s*", path_ref.group("names")):
                problem = check_name(path, name)
                if problem:
                    return problem
        return None
    dotted = DOTTED_REF.match(span)
    if dotted:
        parts = dotted.group("dotted").split(".")
        # The longest prefix that is a module file; the rest must be names defined (or imported) in it.
        for cut in range(len(parts), 0, -1):
            base = root.joinpath(*parts[:cut])
            for module in (base.with_suffix(".py"), base / "__init__.py"):
                if module.is_file():
                    rest = parts[cut:]
                    if not rest:
                        return None
                    return check_name(module, ".".join(rest[:2]), include_imports=True)
        return f"no module file for {span}"
    return None


def command_lines(text: str) -> list[tuple[int, list[str]]]:
    """`perceptions ...` command lines in fenced shell blocks, as (line number, argv after 'perceptions')."""
    _, blocks = split_markdown(text)
    commands = []
    for start, lang, body in blocks:
        if lang not in ("", "bash", "sh", "shell", "console"):
            continue
        joined = body.replace("\\\n", " ")
        for offset, line in enumerate(joined.splitlines()):
            words = shlex.split(line.strip().removeprefix("$ "), comments=True)
            if not words:
                continue
            if words[0] == "perceptions":
                commands.append((start + offset, words[1:]))
            elif "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] == "perceptions":
                commands.append((start + offset, words[words.index("-m") + 2:]))
    return commands


def parse_error(argv: list[str]) -> str | None:
    """None when the real CLI parser accepts argv, else argparse's message."""
    from perceptions.cli import build_parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exit_:
        if exit_.code:
            return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else f"exit {exit_.code}"
    return None


# ---------------------------------------------------------------------------------------------- the chapters


def test_chapters_exist():
    names = [p.name for p in CHAPTERS]
    for expected in ("README.md", "01_urban_perception.md", "02_cnns_and_transfer.md", "03_training.md",
                     "04_evaluation_and_interpretation.md"):
        assert expected in names


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_code_reference_exists(chapter):
    text = chapter.read_text(encoding="utf-8")
    refs = find_references(text)
    problems = [f"{chapter.name}:{line}: `{span}`: {why}"
                for line, span in refs if (why := check_reference(span))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("chapter", [p for p in CHAPTERS if p.name[:2].isdigit()], ids=lambda p: p.name)
def test_chapter_is_tied_to_code_and_ends_with_exercises(chapter):
    text = chapter.read_text(encoding="utf-8")
    function_refs = [span for _, span in find_references(text) if ":" in span or span.startswith("perceptions.")]
    assert len(function_refs) >= 2, f"{chapter.name} names fewer than two functions of the code"
    exercises = text.split("## Exercises", 1)
    assert len(exercises) == 2, f"{chapter.name} has no '## Exercises' section"
    numbered = re.findall(r"^\d+\. ", exercises[1], flags=re.MULTILINE)
    assert 2 <= len(numbered) <= 3, f"{chapter.name} has {len(numbered)} exercises, expected 2 or 3"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_example_commands_parse_with_the_real_cli(chapter):
    problems = [f"{chapter.name}:{line}: perceptions {' '.join(argv)}: {why}"
                for line, argv in command_lines(chapter.read_text(encoding="utf-8"))
                if (why := parse_error(argv))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_python_examples_compile(chapter):
    _, blocks = split_markdown(chapter.read_text(encoding="utf-8"))
    for start, lang, body in blocks:
        if lang == "python":
            import textwrap
            compile(textwrap.dedent(body), f"{chapter.name}:{start}", "exec")


# ---------------------------------------------------------------------------------------------- the checker


def test_parser_finds_references_and_skips_fenced_code_and_other_spans():
    text = (
        "See `perceptions/studies.py: study` and `perceptions/studies.py: STUDIES, parse_studies`.\n"
        "A folder `perceptions/data/`, a dotted `perceptions.studies.study`, a flag `--epochs`,\n"
        "a run file `outputs/runs/x/metrics.csv`.\n"
        "```bash\n"
        "`perceptions/nowhere.py: ghost`\n"
        "```\n"
        "A span wrapped onto the next line, `perceptions/studies.py:\n  Study`, is still one reference.\n"
    )
    refs = find_references(text)
    spans = [span for _, span in refs]
    assert spans == ["perceptions/studies.py: study", "perceptions/studies.py: STUDIES, parse_studies",
                     "perceptions/data/", "perceptions.studies.study", "perceptions/studies.py: Study"]
    assert [line for line, _ in refs] == [1, 1, 2, 2, 7]
    assert all(check_reference(span) is None for span in spans)


@pytest.mark.parametrize("bad, message", [
    ("perceptions/no_such_file.py", "does not exist"),
    ("perceptions/studies.py: no_such_function", "not defined"),
    ("perceptions/studies.py: study, no_such_function", "not defined"),
    ("perceptions/studies.py: Study.no_such_attribute", "no attribute"),
    ("perceptions/no_such_folder/", "does not exist"),
    ("perceptions.studies.no_such_function", "not defined"),
    ("perceptions.no_such_module.thing", "not defined in perceptions/__init__.py"),
])
def test_checker_rejects_a_wrong_reference(bad, message):
    text = f"The code is in `{bad}`.\n"
    [(line, span)] = find_references(text)
    assert line == 1 and span == bad
    problem = check_reference(span)
    assert problem is not None and message in problem


def test_command_lines_are_extracted_and_checked():
    text = ("```bash\n"
            "perceptions synth --out /tmp/c \\\n  --images 3   # a comment\n"
            "torchrun --nproc_per_node 2 -m perceptions train --data d\n"
            "ls /tmp\n"
            "```\n")
    assert [argv for _, argv in command_lines(text)] == [["synth", "--out", "/tmp/c", "--images", "3"],
                                                         ["train", "--data", "d"]]
    assert parse_error(["no-such-command"]) is not None
    assert parse_error(["--version"]) is None
