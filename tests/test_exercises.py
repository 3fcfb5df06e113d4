"""Every exercise in learning/*.md (and the "Where next" commands of demo/demo.ipynb) runs as written, in order,
in a fresh folder, and prints the kind of output its "Expected" paragraph talks about.

How the exercises are run (the one documented mechanism, also described in learning/README.md):
- the fenced ```bash and ```python blocks of each numbered exercise (between "## Exercises" and "## Answers") are
  taken in order; bash blocks run with `bash -e`, python blocks with the `python` of the environment, each
  exercise in one script, one chapter after another exercise by exercise, with `.venv/bin` first on PATH;
- every `/tmp/` becomes a pytest temporary folder (nothing is written outside it);
- the settings are shrunk by TINY (a table of regular expressions applied to bash lines only) so that the
  whole thing takes a couple of minutes on two CPU cores: fewer images, one epoch of each phase, 64-pixel inputs.
  Nothing else is changed: a command that fails as written fails here.

Then each exercise's "*Expected:*" paragraph is checked against what the exercise printed (stdout and stderr)
and the small text files it wrote (.csv, .json, .tsv): every name in backticks there that looks like a metric
or a column (`val_spearman`, `acc_within_1_decile`, `monitor`...) must appear in that output. The numbers of
the expected results are for the full settings and are not checked here.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_learning_refs import split_markdown

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in (REPO / "learning").glob("*.md") if p.name[:2].isdigit())
NOTEBOOK = REPO / "demo" / "demo.ipynb"
VENV_BIN = Path(sys.executable).parent

# Tiny settings: (pattern, replacement) applied to every line of a bash block, in order.
TINY = [
    (re.compile(r"--images \d+"), "--images 48"),
    (re.compile(r"(?<![\w-])--epochs [1-9]\d*"), "--epochs 1"),
    (re.compile(r"--freeze-epochs \d+"), "--freeze-epochs 1"),
    (re.compile(r"\bperceptions train "), "perceptions train --image-size 64 "),
    # The scripts of learning/code/ are named from the repository root, where a reader runs them; the
    # exercises here run in a temporary folder (the lookbehind leaves an already absolute path alone).
    (re.compile(r"(?<![\w./-])learning/code/"), lambda _: f"{REPO.as_posix()}/learning/code/"),
    # Chapter 7's scripts: fewer split seeds and redrawn scenes (a comma list of seeds, chapter 6's, is left alone).
    (re.compile(r"--seeds \d+(?![\d,])"), "--seeds 2"),
    (re.compile(r"--scenes \d+"), "--scenes 1"),
]
EXPECTED = re.compile(r"\*Expected:\*(.*)", re.DOTALL)  # the last paragraph of an exercise
NAME_IN_BACKTICKS = re.compile(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+|monitor|frozen|finetune)`")


def exercises(text: str) -> list[tuple[int, str]]:
    """(number, text) of each numbered exercise between '## Exercises' and '## Answers'."""
    section = text.split("## Exercises", 1)[1].split("## Answers", 1)[0]
    parts = re.split(r"^(\d+)\. ", section, flags=re.MULTILINE)
    return [(int(parts[i]), parts[i + 1]) for i in range(1, len(parts), 2)]


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, dedented body) of the fenced bash and python blocks of a piece of Markdown, in order."""
    _, fenced = split_markdown(text)
    return [(lang, textwrap.dedent(body)) for _, lang, body in fenced if lang in ("bash", "python")]


def expected_names(text: str) -> list[str]:
    """Metric and column names in backticks in the exercise's '*Expected:*' paragraph."""
    match = EXPECTED.search(text)
    return NAME_IN_BACKTICKS.findall(match.group(1)) if match else []


def tiny(line: str) -> str:
    for pattern, replacement in TINY:
        line = pattern.sub(replacement, line)
    return line


def script_for(code_blocks: list[tuple[str, str]], work: Path, tag: str) -> str:
    """One bash script running the blocks in order: /tmp -> work, tiny settings, python blocks from files."""
    lines = ["set -eu", f"cd {work}"]   # as a reader's shell: no pipefail
    for i, (lang, body) in enumerate(code_blocks):
        body = body.replace("/tmp/", f"{work}/")
        if lang == "bash":
            lines += [tiny(line) for line in body.splitlines()]
        else:
            path = work / "_snippets" / f"{tag}_{i}.py"
            path.parent.mkdir(exist_ok=True)
            path.write_text(body, encoding="utf-8")
            lines.append(f"python {path}")
    return "\n".join(lines) + "\n"


def written_text(work: Path, since: float) -> str:
    """The small text files (csv, json, tsv) written under work since `since`."""
    texts = []
    for path in work.rglob("*"):
        if path.suffix in (".csv", ".json", ".tsv") and path.is_file() and path.stat().st_mtime >= since \
                and path.stat().st_size < 2_000_000:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(texts)


def run_script(script: str, work: Path) -> tuple[int, str]:
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", MPLBACKEND="Agg",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    done = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    return done.returncode, done.stdout + done.stderr


def notebook_commands() -> list[tuple[str, str]]:
    import json

    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    [where_next] = ["".join(c["source"]) for c in cells
                    if c["cell_type"] == "markdown" and "Where next" in "".join(c["source"])]
    return blocks(where_next)


# ---------------------------------------------------------------------------------------------- fast checks


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_exercise_has_commands_an_expected_result_and_an_answer(chapter):
    text = chapter.read_text(encoding="utf-8")
    found = exercises(text)
    assert found, f"{chapter.name}: no numbered exercises"
    answers = text.split("## Answers", 1)
    assert len(answers) == 2, f"{chapter.name}: no '## Answers' section after the exercises"
    for number, body in found:
        assert blocks(body), f"{chapter.name} exercise {number}: no bash or python block to run"
        assert "*Expected:*" in body, f"{chapter.name} exercise {number}: no '*Expected:*' result"
        assert f"**Exercise {number}.**" in answers[1], f"{chapter.name}: no answer to exercise {number}"
    # Placeholders left from drafting (EX1_EXPECTED, ANSWER_2...) must not reach a reader.
    placeholders = re.findall(r"\b[A-Z0-9_]*_(?:EXPECTED|ANSWER)\b|\b(?:EXPECTED|ANSWER)_[A-Z0-9_]+\b", text)
    assert not placeholders, f"{chapter.name}: unfilled placeholders {placeholders}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_each_exercise_writes_only_into_its_own_folder(chapter):
    """`synth --out` folders are never reused: synth refuses a folder that is not empty."""
    text = chapter.read_text(encoding="utf-8")
    outs = re.findall(r"perceptions synth --out (\S+)", text.split("## Exercises", 1)[1])
    assert len(outs) == len(set(outs)), f"{chapter.name}: a synth --out folder is made twice: {outs}"


def test_tiny_settings_shrink_a_command():
    line = "perceptions train --data d --freeze-epochs 30 --epochs 8 --out o; perceptions synth --images 3000"
    assert tiny(line) == ("perceptions train --image-size 64 --data d --freeze-epochs 1 --epochs 1 --out o; "
                          "perceptions synth --images 48")
    assert tiny("perceptions train --freeze-epochs 3 --epochs 0") == \
        "perceptions train --image-size 64 --freeze-epochs 1 --epochs 0"


# ---------------------------------------------------------------------------------------------- running them


@pytest.mark.slow
def test_every_exercise_runs_as_written_on_tiny_settings(tmp_path):
    """All chapters in order in one fresh folder (as a reader would), one exercise at a time."""
    import time

    failures = []
    for chapter in CHAPTERS:
        for number, body in exercises(chapter.read_text(encoding="utf-8")):
            tag = f"{chapter.stem[:2]}_ex{number}"
            since = time.time() - 1
            code, output = run_script(script_for(blocks(body), tmp_path, tag), tmp_path)
            if code:
                failures.append(f"{chapter.name} exercise {number} failed (exit {code}):\n{output[-3000:]}")
                continue
            seen = output + written_text(tmp_path, since)
            missing = [name for name in expected_names(body) if name not in seen]
            if missing:
                failures.append(f"{chapter.name} exercise {number}: its expected result names {missing}, "
                                f"which its commands did not print or write")
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_notebook_where_next_commands_run(tmp_path):
    commands = notebook_commands()
    assert commands, "the notebook's 'Where next' cell has no fenced bash block"
    code, output = run_script(script_for(commands, tmp_path, "notebook"), tmp_path)
    assert code == 0, output[-3000:]
    assert "acc_within_1_decile" in output or "within" in output
