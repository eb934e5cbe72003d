"""The README and docs/: a short README with the two commands, links that resolve inside the
repository, and option names that the CLI really has."""

import re
from pathlib import Path

import click
import pytest
import typer.main

from pipelines.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_BYTES = 12_500
PAGES = [README, *sorted(DOCS.glob("*.md"))]
# pages that quote other tools' options (spark-submit, pip, jupytext, the engines benchmark)
OTHER_TOOLS = {"engines.md", "notebooks.md"}

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def prose(text: str) -> str:
    """The text without fenced blocks and inline code, where links are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def links(page: Path) -> list[str]:
    return _LINK.findall(prose(page.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


def cli_options() -> set[str]:
    """Every long option of every `behavior` command and subcommand."""
    found: set[str] = set()

    def walk(cmd: click.Command) -> None:
        for p in cmd.params:
            found.update(o for o in [*p.opts, *p.secondary_opts] if o.startswith("--"))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return found | {"--help"}


def test_readme_is_short_and_names_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= MAX_README_BYTES
    assert "make demo" in text and "make test" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_nothing_points_outside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path = (page.parent / target.split("#")[0]).resolve() if not target.startswith("#") else page
        assert path.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        file_part, _, anchor = target.partition("#")
        path = (page.parent / file_part) if file_part else page
        assert path.exists(), f"{page.name}: {target} does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.name}: {target}: no heading with anchor #{anchor}"


def test_every_docs_file_is_linked():
    linked = {(page.parent / t.split("#")[0]).resolve() for page in PAGES for t in links(page)
              if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")}
    orphans = [p.name for p in sorted(DOCS.iterdir()) if p.is_file() and p.resolve() not in linked]
    assert orphans == []


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in OTHER_TOOLS], ids=lambda p: p.name)
def test_documented_options_exist(page):
    options = cli_options()
    named = set(_OPTION.findall(page.read_text(encoding="utf-8")))
    assert named - options == set(), f"{page.name} names options the CLI does not have"


def test_the_checks_catch_a_broken_page(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n[gone](missing.md) [up](../shared/DESIGN.md) [self](#title) "
                    "`[not a link](nowhere.md)`\n```\n[nor this](nowhere.md)\n```\n", encoding="utf-8")
    assert links(page) == ["missing.md", "../shared/DESIGN.md", "#title"]
    assert anchors(page) == {"title"}
    assert slug("Ingest on Spark") == "ingest-on-spark" and slug("report.html") == "reporthtml"
    assert "--no-such-option" not in cli_options() and "--as-of" in cli_options()
