"""Docs that tests check: the README's opening commands, its links, the CLI it shows."""

import re
import shlex

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_opens_with_exactly_the_two_commands():
    block = README.split("```")[1]
    lines = [ln for ln in block.splitlines()[1:] if ln.strip()]
    assert README.startswith("```")
    assert lines == [
        "./install.sh && .venv/bin/appliance demo",
        "./install.sh --dev && .venv/bin/pytest",
    ]


def test_readme_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if target.startswith("http"):
            continue
        assert (ROOT / target).exists(), target


def test_readme_cli_examples_parse():
    from appliance.cli import build_parser

    parser = build_parser()
    for line in README.splitlines():
        if line.startswith(".venv/bin/appliance ") and "|" not in line:
            argv = shlex.split(line.split("#")[0])[1:]
            parser.parse_args(argv)  # exits (SystemExit) on an option the CLI does not have


def test_paths_the_docs_cite_exist():
    """Every `appliance/...` file or folder named in the docs is in the tree (docs that moved with
    the code, not behind it)."""
    docs = [
        ROOT / "README.md",
        ROOT / "models" / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
    ]
    missing = []
    for doc in docs:
        for path in re.findall(r"(?<![/\w.-])(appliance/[\w/]+(?:\.\w+)?)", doc.read_text()):
            path = path.rstrip("/.")
            if not (ROOT / path).exists() and not path.endswith(".service.d"):
                missing.append(f"{doc.name}: {path}")
    assert missing == []
