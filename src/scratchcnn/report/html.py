"""The HTML building blocks of every report page: sections, figures, tables, the page itself.

Pages are self-contained: figures are PNGs embedded as base64, the style sheet is inline.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Any

__all__ = ["RawHtml", "Section", "figure", "image", "link", "page", "paragraph", "table"]


@dataclass
class Section:
    """One ``<section>`` of a page: an anchor for the table of contents, a title, HTML."""

    anchor: str
    title: str
    body: str  # the section's HTML


def image(png: bytes, alt: str) -> str:
    """A PNG embedded as a base64 ``<img>``.

    Args:
        png: the image file's bytes.
        alt: the text shown when the image cannot be.
    """
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def figure(fig, alt: str, caption: str = "") -> str:
    """A matplotlib figure as an embedded PNG, with an optional caption.

    Args:
        fig (matplotlib.figure.Figure): the figure.
        alt: the image's alternative text.
        caption: a caption under it.
    """
    from scratchcnn.viz import figure_png

    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{image(figure_png(fig), alt)}{text}</figure>"


class RawHtml(str):
    """Table cell content that is already HTML (a link) and must not be escaped."""


def _cell(value: Any) -> str:
    if isinstance(value, RawHtml):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    """A table; floats are shown with 4 decimals, :class:`RawHtml` cells as they are.

    Args:
        header: the column names.
        rows: the cells, row by row.
        cls: a CSS class for the table.
    """
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def link(href: str, text: str) -> RawHtml:
    """A link, kept as HTML inside a :func:`table` cell.

    Args:
        href: the target.
        text: the link's text (escaped).
    """
    return RawHtml(f'<a href="{html.escape(href)}">{html.escape(text)}</a>')


def paragraph(text: str) -> str:
    """A ``<p>`` of plain text (escaped).

    Args:
        text: the paragraph's text.
    """
    return f"<p>{html.escape(text)}</p>"


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
nav ul { columns: 3; } section { margin-bottom: 2.5em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.kpi { font-size: 1.3em; }
"""


def page(title: str, intro: str, sections: list[Section]) -> str:
    """The whole page: a heading, an introduction (HTML), a table of contents, the sections.

    Args:
        title: the page's title and heading.
        intro: HTML shown under the heading.
        sections: the sections, each with its heading and body.
    """
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{s.body}</section>'
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{intro}"
        f"<nav><ul>{toc}</ul></nav>{body}</body></html>\n"
    )
