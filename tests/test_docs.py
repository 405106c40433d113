"""The README and docs/ stay true: their arpwatchd commands parse and their links resolve.

Why: the README was split into a front page and reference pages under docs/ (issue 16, item 8),
and a page that names an option the CLI dropped, a capture that was renamed or a section that
moved misleads the operator who copies it. Every fenced shell line that runs arpwatchd
(`arpwatchd ...`, `.venv/bin/arpwatchd ...`, `/opt/arpwatchd/bin/arpwatchd ...`, after an
optional `$ ` prompt or `sudo`) goes through the real CLI's parser without being executed,
and each repository file it names under pcaps/, deploy/ or dashboards/ must exist. Every
relative Markdown link must point to an existing file, and its `#anchor`, if any, to a heading
of that file. Synopsis lines (with `[OPTIONAL]` parts or `A|B` alternatives) are not commands.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from arpwatchd.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMMAND_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PAGES = [*COMMAND_PAGES, ROOT / "benchmarks" / "README.md"]
REPO_DIRS = ("pcaps/", "deploy/", "dashboards/")

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_INLINE = re.compile(r"`([^`\n]*bin/arpwatchd [^`\n]*)`")


def _commands(page: Path) -> list[tuple[str, list[str]]]:
    """(line, arguments after the program) of each arpwatchd command the page shows: every line
    of a `sh` fence, `$ ` prompt lines of a plain fence, inline `.venv/bin/arpwatchd ...`."""
    text = page.read_text(encoding="utf-8")
    lines = list(_INLINE.findall(text))
    for lang, block in _FENCE.findall(text):
        shell = lang.strip() in {"sh", "shell", "bash", "console"}
        lines += [line for line in block.splitlines() if shell or line.startswith("$ ")]
    found = []
    for line in lines:
        words = _words(line)
        if words and (words[0] == "arpwatchd" or words[0].endswith("/bin/arpwatchd")):
            found.append((line.strip(), words[1:]))
    return found


def _words(line: str) -> list[str]:
    text = line.strip().removeprefix("$ ").removeprefix("sudo ")
    if "[" in text or re.search(r"\w\|\w", text):
        return []  # a synopsis, not a command
    try:
        return shlex.split(text.split(" | ")[0], comments=True)
    except ValueError:
        return []  # not shell


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?)\s*$", text, flags=re.MULTILINE):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


ALL_COMMANDS = [(page, line, args) for page in COMMAND_PAGES for line, args in _commands(page)]


def test_the_pages_have_commands_to_check() -> None:
    # The extraction itself must keep working: the README shows replays and operator tools.
    assert len(ALL_COMMANDS) >= 5
    assert {args[0] for _, _, args in ALL_COMMANDS} >= {"replay", "check-config", "bindings"}


@pytest.mark.parametrize(("page", "line", "args"), ALL_COMMANDS,
                         ids=[f"{p.relative_to(ROOT)}:{line}" for p, line, _ in ALL_COMMANDS])
def test_each_documented_command_parses(page: Path, line: str, args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{page.relative_to(ROOT)}: `{line}` does not parse (exit {exc.code})")
    for word in args:
        if word.startswith(REPO_DIRS):
            assert (ROOT / word).exists(), f"{page.relative_to(ROOT)}: `{line}` names {word}"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_points_to_an_existing_file_and_heading(page: Path) -> None:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    name = page.relative_to(ROOT)
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{name}: link to {target}: no such file"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{name}: link to {target}: no such heading"
