"""Markdown: the intro and news texts of a campaign as sanitised HTML and as plain text.

markdown-it renders CommonMark with raw HTML switched off; nh3 then keeps only a short list of
tags, the ``href`` and ``title`` of links and the ``http``, ``https`` and ``mailto`` schemes. The
plain-text form drops emphasis, numbers ordered lists and writes each link out after its text.
"""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

_SANITISED_TAGS = {
    "p", "br", "strong", "em", "b", "i", "a", "ul", "ol", "li", "blockquote",
    "h3", "h4", "code", "pre", "hr",
}  # fmt: skip
_MARKDOWN = MarkdownIt("commonmark", {"html": False})


def markdown_html(source: str) -> Markup:
    """Markdown as sanitised HTML (raw HTML in the source is not passed through)."""
    if not source.strip():
        return Markup("")
    rendered = _MARKDOWN.render(source)
    clean = nh3.clean(
        rendered,
        tags=_SANITISED_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto"},
    )
    return Markup(clean)  # sanitised by nh3 just above


def markdown_text(source: str) -> str:
    """Markdown as readable plain text: emphasis dropped, links written out after their text."""
    out: list[str] = []
    numbers: list[int] = []
    for token in _MARKDOWN.parse(source):
        kind = token.type
        if kind == "inline":
            out.append(_inline_text(token.children or []))
        elif kind in ("paragraph_close", "heading_close"):
            out.append("\n" if token.hidden else "\n\n")
        elif kind == "ordered_list_open":
            numbers.append(int(str(token.attrs.get("start", 1))))
        elif kind == "bullet_list_open":
            numbers.append(0)
        elif kind in ("bullet_list_close", "ordered_list_close"):
            numbers.pop()
            out.append("\n")
        elif kind == "list_item_open":
            if numbers and numbers[-1]:
                out.append(f"{numbers[-1]}. ")
                numbers[-1] += 1
            else:
                out.append("- ")
        elif kind in ("fence", "code_block"):
            out.append(token.content + "\n")
        elif kind == "hr":
            out.append("----\n\n")
    return re.sub(r"\n{3,}", "\n\n", "".join(out)).strip()


def _inline_text(children: list[Token]) -> str:
    out: list[str] = []
    hrefs: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif child.type == "link_open":
            hrefs.append(str(child.attrs.get("href", "")))
        elif child.type == "link_close" and hrefs:
            href = hrefs.pop()
            if href.startswith(("http://", "https://", "mailto:")):
                out.append(f" <{href.removeprefix('mailto:')}>")
        elif child.type == "image":
            out.append(child.content)
    return "".join(out)
