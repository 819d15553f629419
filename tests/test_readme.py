"""The README stays one or two screens, its links and the docs' links resolve, and its commands run.

Every `python -m lossbench...` command in a fenced block of README.md or docs/*.md names a module that
`python -m` can run; every `snakemake ...` command in README.md's fenced blocks plans without error (a dry
run in a temporary folder, as a throwaway experiment, so nothing under results/ is touched).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import REPO

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
MAX_README_LINES = 200
#: The files of the repository a command line of the README names relative to its root (configurations, profiles).
COPIED = ("config.yaml", "config", "profiles")


def _fenced_blocks(text: str) -> list[list[str]]:
    """The lines of each fenced code block (``` or ~~~) of a Markdown text."""
    blocks, current, fence = [], None, None
    for line in text.splitlines():
        stripped = line.strip()
        if current is None:
            match = re.match(r"(`{3,}|~{3,})", stripped)
            if match:
                current, fence = [], match.group(1)
        elif stripped.startswith(fence) and not stripped.strip(fence[0]):
            blocks.append(current)
            current = None
        else:
            current.append(line)
    return blocks


def _commands(text: str) -> list[list[str]]:
    """Each command line of the fenced blocks as shell words, comments dropped, continuation lines joined."""
    commands, pending = [], ""
    for block in _fenced_blocks(text):
        for line in block:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            line, pending = pending + line, ""
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # not a shell line (Python, YAML, output)
                continue
            if words:
                commands.append(words)
    return commands


def _python_modules(text: str) -> list[str]:
    """The lossbench modules of every `python -m lossbench...` command in the fenced blocks."""
    modules = []
    for words in _commands(text):
        for index, word in enumerate(words[:-2]):
            if (
                re.fullmatch(r"(.*/)?python(3(\.\d+)?)?", word)
                and words[index + 1] == "-m"
                and words[index + 2].split(".")[0] == "lossbench"
            ):
                modules.append(words[index + 2])
    return sorted(set(modules))


def _snakemake_commands(text: str) -> list[list[str]]:
    """The arguments of every `snakemake ...` command in the fenced blocks."""
    return [words[1:] for words in _commands(text) if words[0] == "snakemake"]


def _links(page: Path) -> list[str]:
    """The link targets of a Markdown page (inline links, images, reference definitions), outside code."""
    text = page.read_text()
    for block in _fenced_blocks(text):
        text = text.replace("\n".join(block), "")
    text = re.sub(r"`[^`\n]*`", "", text)
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)", text)
    references = re.findall(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", text, flags=re.M)
    return inline + references


def _runnable(module: str) -> bool:
    """Whether `python -m module` finds something to run: a module, or a package with a __main__."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent is missing, or is a module rather than a package
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:
        return _runnable(f"{module}.__main__")
    return True


def test_readme_is_one_or_two_screens():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; move detail into docs/ (at most {MAX_README_LINES})"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_point_into_the_repository(page):
    broken = []
    for target in _links(page):
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor of the page itself
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        resolved = (page.parent / path).resolve()
        if not resolved.exists() or not resolved.is_relative_to(REPO):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: links to files that are not in the repository: {broken}"


def test_the_readme_shows_python_and_snakemake_commands():
    text = README.read_text()
    assert _python_modules(text), "no `python -m lossbench...` command in README.md's code blocks"
    assert _snakemake_commands(text), "no `snakemake ...` command in README.md's code blocks"


@pytest.mark.parametrize(
    ("page", "module"),
    [(page, module) for page in PAGES for module in _python_modules(page.read_text())],
    ids=lambda value: str(value.relative_to(REPO)) if isinstance(value, Path) else value,
)
def test_python_m_module_exists(page, module):
    assert _runnable(module), (
        f"{page.relative_to(REPO)}: `python -m {module}`: no such module (or a package without __main__)"
    )


def test_the_module_check_tells_runnable_from_missing():
    assert _runnable("lossbench.metrics")  # a package with __main__
    assert _runnable("lossbench.infer")  # a module
    assert not _runnable("lossbench.losses")  # a package without __main__
    assert not _runnable("lossbench.no_such_module") and not _runnable("lossbench.infer.no_such_module")


@pytest.mark.parametrize("args", _snakemake_commands(README.read_text()), ids=" ".join)
def test_snakemake_command_plans(args, tmp_path):
    if "--profile" in args:
        profile = args[args.index("--profile") + 1]
        plugin = re.search(r"^executor:\s*(\S+)", (REPO / profile / "config.yaml").read_text(), flags=re.M)
        if plugin and importlib.util.find_spec(f"snakemake_executor_plugin_{plugin.group(1)}") is None:
            name = plugin.group(1)
            pytest.skip(f"{profile} needs snakemake-executor-plugin-{name}, not installed (pip install -e '.[{name}]')")
    for name in COPIED:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    # The README's own arguments, then: the repository's Snakefile, a dry run, a throwaway experiment
    # (its results/ would lie in tmp_path anyway), and --quiet last, since it takes optional values.
    config = ["--config", "experiment=readme_dryrun"]
    if "--config" in args:
        at = args.index("--config") + 1
        args, config = [*args[:at], "experiment=readme_dryrun", *args[at:]], []
    command = [
        sys.executable,
        "-m",
        "snakemake",
        *args,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--dry-run",
        *config,
        "--quiet",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"snakemake {' '.join(args)} --dry-run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
