"""MkDocs hooks: the pages of the site that are made from other files at build time.

Loaded by ``mkdocs.yml`` (``hooks:``), so ``mkdocs build`` needs nothing run beforehand:

- ``index.md``, the front page, is the README with its links rewritten for the site
  (``docs/x.md`` -> ``x.md``, ``benchmarks/README.md`` -> ``performance.md``);
- ``performance.md`` is ``benchmarks/README.md``;
- ``cli.md`` is the ``--help`` of every command, read from ``scratchcnn.cli.build_parser()``,
  so the reference cannot drift from the parsers;
- ``notebooks/*.py``, the jupytext tutorials, are rendered by mkdocs-jupyter.
  Their links to ``../docs/...`` pages (right on GitHub and in Jupyter) are rewritten to the
  site's pages, and a link to a page that does not exist is a warning (an error under
  ``--strict``), as for Markdown pages.

Nothing here touches the network.
"""

from __future__ import annotations

import argparse
import logging
import os
import posixpath
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
log = logging.getLogger("mkdocs.hooks.scratchcnn")

# Repository paths that the README links to, and the site page each one is.
README_LINKS = {"benchmarks/README.md": "performance.md", "README.md": "index.md"}
HELP_WIDTH = "100"  # columns of the rendered --help, fixed so the page does not depend on a tty


def site_link(target: str, repo_links: dict[str, str]) -> str:
    """Where a repository-relative link of the README points on the site."""
    path, hash_, anchor = target.partition("#")
    if path in repo_links:
        path = repo_links[path]
    elif path.startswith("docs/"):
        path = path.removeprefix("docs/")
    return path + hash_ + anchor


def rewrite_links(markdown: str, repo_links: dict[str, str]) -> str:
    """Rewrite every relative Markdown link or image target with :func:`site_link`."""

    def replace(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"[a-z]+:|#|/", target):  # absolute URL, same-page anchor, site root
            return match.group(0)
        return f"{match.group(1)}({site_link(target, repo_links)})"

    return re.sub(r"(\]\s*)\(([^)\s]+)\)", replace, markdown)


def command_parsers(
    parser: argparse.ArgumentParser, prefix: str
) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(full command, one-line help, parser)`` for every command under ``parser``, in order."""
    found = []
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((f"{prefix} {name}", helps.get(name, ""), sub))
                found.extend(command_parsers(sub, f"{prefix} {name}"))
    return found


def cli_reference() -> str:
    """The CLI reference page: a table of commands, then each command's ``--help``."""
    from scratchcnn.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH  # argparse wraps help text to $COLUMNS
    try:
        parser = build_parser()
        commands = command_parsers(parser, "scratchcnn")
        sections = [
            "# Command line reference\n",
            "Generated from the argparse parsers (`scratchcnn.cli.build_parser()`) when the site "
            "is built: each section is exactly what `--help` prints.\n",
            "| command | what it does |\n| --- | --- |",
        ]
        sections += [f"| [`{name}`](#{slug(name)}) | {text} |" for name, text, _ in commands]
        sections += ["", "## scratchcnn", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, _, sub in commands:
            sections += [f"## {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(sections)


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc gives a heading such as ``scratchcnn ablate-filters``."""
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", heading).strip().lower())


@event_priority(100)  # before mkdocs-jupyter's on_files, which must see the notebooks
def on_files(files: Files, config: MkDocsConfig) -> Files:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    benchmarks = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    generated = {
        "index.md": rewrite_links(readme, README_LINKS),
        "performance.md": rewrite_links(benchmarks, {"../README.md": "index.md"}),
        "cli.md": cli_reference(),
    }
    for src_uri, content in generated.items():
        files.append(File.generated(config, src_uri, content=content))
    # A real file under the repository root (mkdocs-jupyter wraps it and reads it from disk):
    # the page is notebooks/NAME/ on the site.
    for notebook in sorted(NOTEBOOKS.glob("[0-9]*.py")):
        files.append(
            File(
                f"notebooks/{notebook.name}",
                src_dir=str(ROOT),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Point a notebook's links to ``../docs/*.md`` and to other notebooks at the site's pages."""
    if not page.file.src_uri.startswith("notebooks/"):
        return html

    def replace(match: re.Match[str]) -> str:
        path, hash_, anchor = match.group(2).partition("#")
        if path.startswith("../docs/"):
            site_path = path.removeprefix("../docs/")
        else:
            site_path = posixpath.normpath(posixpath.join("notebooks", path))
        target = files.get_file_from_path(site_path)
        if target is None:
            log.warning(f"{page.file.src_uri} links to {match.group(2)}, which is not on the site")
            return match.group(0)
        return f'{match.group(1)}"{target.url_relative_to(page.file)}{hash_}{anchor}"'

    # Relative links only: to the docs pages, or to a sibling notebook.
    return re.sub(r'(href=)"((?:\.\./docs/[^"]+)|(?:[\w-]+\.py(?:#[^"]*)?))"', replace, html)
