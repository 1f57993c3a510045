"""Markdown to HTML: CommonMark, tables, $math$ as MathML, stable heading anchors with copy-link controls."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token
from latex2mathml.converter import convert as convert_to_mathml
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.footnote import footnote_plugin

_NOT_SLUG = re.compile(r"[^\w\- ]+")


@dataclass(frozen=True)
class Section:
    """A heading of a rendered page: its stable anchor and its text."""

    anchor: str
    title: str
    level: int


@dataclass(frozen=True)
class Rendered:
    """The HTML of one Markdown body and what was found while rendering it."""

    html: str
    sections: tuple[Section, ...]
    internal_links: frozenset[str]
    text: str


def slugify_heading(text: str) -> str:
    """The anchor of a heading: lowercase words joined by '-' ("Raising it" -> "raising-it")."""
    return "-".join(_NOT_SLUG.sub("", text).lower().split())


def render_math(tex: str, options: dict) -> str:
    """TeX as MathML, which browsers draw without JavaScript; the TeX rides along for KaTeX to typeset over it."""
    display = "block" if options.get("display_mode") else "inline"
    mathml = convert_to_mathml(tex, display=display)
    # <math><mrow>...</mrow></math> -> <math><semantics><mrow>...</mrow><annotation>TeX</annotation></semantics></math>
    opening, _, inner = mathml.partition(">")
    inner = inner.removesuffix("</math>")
    annotation = f'<annotation encoding="application/x-tex">{html.escape(tex)}</annotation>'
    return f"{opening}><semantics>{inner}{annotation}</semantics></math>"


def _make_parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.enable("table")
    parser.use(dollarmath_plugin, allow_space=True, double_inline=True, renderer=render_math)
    parser.use(footnote_plugin)
    return parser


_PARSER = _make_parser()


def _anchor_headings(tokens: list[Token]) -> list[Section]:
    """Give h2/h3 headings unique ids, a permalink and a copy-link button."""
    sections: list[Section] = []
    used: set[str] = set()
    for index, token in enumerate(tokens):
        if token.type != "heading_open" or token.tag not in ("h2", "h3"):
            continue
        inline = tokens[index + 1]
        title = "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))
        anchor = base = slugify_heading(title) or "section"
        suffix = 2
        while anchor in used:
            anchor, suffix = f"{base}-{suffix}", suffix + 1
        used.add(anchor)
        token.attrSet("id", anchor)
        controls = Token("html_inline", "", 0)
        label = html.escape(title, quote=True)
        controls.content = (
            f'<a class="heading-anchor" href="#{anchor}" aria-label="Link to section {label}">#</a>'
            f'<button type="button" class="copy-link" data-copy-link="#{anchor}" hidden>Copy link</button>'
        )
        inline.children = [*(inline.children or []), controls]
        sections.append(Section(anchor=anchor, title=title, level=int(token.tag[1])))
    return sections


def _internal_links(tokens: list[Token]) -> set[str]:
    """Paths of same-site links (/params/..., /guides/...), without their #fragment."""
    links: set[str] = set()
    for token in tokens:
        for child in token.children or []:
            if child.type == "link_open":
                href = str(child.attrGet("href") or "")
                if href.startswith("/"):
                    links.add(href.split("#", 1)[0])
    return links


def _plain_text(tokens: list[Token]) -> str:
    parts: list[str] = []
    for token in tokens:
        if token.type == "inline":
            parts.append("".join(" " if child.type in ("softbreak", "hardbreak") else child.content for child in token.children or [] if child.type != "html_inline"))
        elif token.type in ("math_block", "fence", "code_block"):
            parts.append(token.content)
    return "\n".join(parts)


def render_markdown(source: str) -> Rendered:
    """Render one Markdown body to HTML, collecting its sections, links and plain text."""
    env: dict = {}
    tokens = _PARSER.parse(source, env)
    sections = _anchor_headings(tokens)
    body_html = _PARSER.renderer.render(tokens, _PARSER.options, env)
    return Rendered(
        html=body_html,
        sections=tuple(sections),
        internal_links=frozenset(_internal_links(tokens)),
        text=_plain_text(tokens),
    )
