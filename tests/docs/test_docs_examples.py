"""Run every ```python block of the documentation, so the docs never drift from the code.

Each page's blocks run in order in one namespace (a later block may use names from an earlier
one), with a temporary directory as the working directory. A python block directly followed by
a ```text title="Output" block must print exactly that text. Blocks that are meant to be read
but not run use another language tag (```pycon, ```text, ```sh ...).
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# An opening fence: optional indentation (blocks inside admonitions), three or more backticks
# or tildes, then the language and optional attributes such as title="...".
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
PYTHON = ("python", "py", "python3")
OUTPUT_TITLE = re.compile(r'title="Output"')


@dataclass
class Block:
    line: int  # 1-based line of the block's first content line
    language: str
    info: str
    source: str
    end: int  # 1-based line of the closing fence


@dataclass
class Example:
    line: int
    source: str
    output: str | None  # what it must print, when an Output block follows it


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced code block of ``text``, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        info = match["info"].strip()
        words = info.split()
        language = words[0].lstrip("{.").rstrip("}").lower() if words else ""
        first = i + 2
        i += 1
        body: list[str] = []
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                break
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        blocks.append(Block(first, language, info, "\n".join(body) + "\n", i + 1))
        i += 1  # past the closing fence
    return blocks


def examples(text: str) -> list[Example]:
    """The python blocks of ``text`` with the output each must print, if the page gives it."""
    lines = text.splitlines()
    blocks = fenced_blocks(text)
    result: list[Example] = []
    for n, block in enumerate(blocks):
        if block.language not in PYTHON:
            continue
        output = None
        if n + 1 < len(blocks):
            after = blocks[n + 1]
            between = lines[block.end : after.line - 2]
            if (
                after.language == "text"
                and OUTPUT_TITLE.search(after.info)
                and not any(s.strip() for s in between)
            ):
                output = after.source
        result.append(Example(block.line, block.source, output))
    return result


def pages() -> list[Path]:
    found = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    return [p for p in found if p.is_file()]


def page_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def test_the_extractor_sees_fences_titles_and_outputs() -> None:
    text = (
        "intro\n"
        '```python title="a.py"\nx = 1\nprint(x)\n```\n'
        "\n"
        '```text title="Output"\n1\n```\n'
        "!!! note\n"
        "    ```python\n    y = x + 1\n    ```\n"
        "```text\nnot checked\n```\n"
        "```pycon\n>>> 1\n```\n"
    )
    assert examples(text) == [
        Example(3, "x = 1\nprint(x)\n", "1\n"),
        Example(12, "y = x + 1\n", None),
    ]


def test_the_documentation_has_examples() -> None:
    assert sum(len(examples(p.read_text(encoding="utf-8"))) for p in pages()) >= 10


@pytest.mark.parametrize(
    "page", [p for p in pages() if examples(p.read_text(encoding="utf-8"))], ids=page_id
)
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = examples(page.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for example in found:
        where = f"{page_id(page)} line {example.line}"
        code = compile(example.source, f"{page_id(page)}:{example.line}", "exec")
        printed = io.StringIO()
        started = time.perf_counter()
        try:
            with contextlib.redirect_stdout(printed):
                exec(code, namespace)
        except Exception as exc:
            raise AssertionError(f"the example at {where} failed: {exc!r}") from exc
        elapsed = time.perf_counter() - started
        assert elapsed < 10, f"the example at {where} took {elapsed:.1f} s"
        if example.output is not None:
            assert _normalise(printed.getvalue()) == _normalise(example.output), (
                f"the example at {where} printed something else than its Output block:\n"
                f"{printed.getvalue()}"
            )
