"""Markdown rendering: anchors, copy-link controls, math, links, plain text."""

import pytest

from app.content.markdown import render_markdown, slugify_heading


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [("Raising it", "raising-it"), ("What it is", "what-it-is"), ("Pitfalls!", "pitfalls"), ("`r` and alpha", "r-and-alpha")],
)
def test_slugify_heading(heading, anchor):
    assert slugify_heading(heading) == anchor


def test_headings_get_stable_unique_anchors_and_copy_controls():
    rendered = render_markdown("## Raising it\n\ntext\n\n## Raising it\n\n### Sub part\n")
    assert [section.anchor for section in rendered.sections] == ["raising-it", "raising-it-2", "sub-part"]
    assert '<h2 id="raising-it">' in rendered.html
    assert 'href="#raising-it"' in rendered.html
    assert 'data-copy-link="#raising-it"' in rendered.html


def test_math_is_mathml_carrying_its_tex_for_katex_and_escaped():
    rendered = render_markdown("Scaling is $\\alpha / r$ and\n\n$$\n\\frac{\\alpha}{\\sqrt{r}} < 1\n$$\n")
    inline = rendered.html.split('<span class="math inline">', 1)[1].split("</span>", 1)[0]
    assert inline.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="inline"><semantics>')
    assert "<mi>&#x003B1;</mi>" in inline  # alpha, drawn by the browser without JavaScript
    assert inline.endswith('<annotation encoding="application/x-tex">\\alpha / r</annotation></semantics></math>')
    block = rendered.html.split('<div class="math block">', 1)[1]
    assert 'display="block"' in block and "<mfrac>" in block and "<msqrt>" in block
    assert "\\sqrt{r}} &lt; 1</annotation>" in block


def test_internal_links_are_collected_without_fragment():
    rendered = render_markdown("See [alpha](/params/lora_alpha#raising-it), [guide](/guides/x) and [out](https://example.org).")
    assert rendered.internal_links == {"/params/lora_alpha", "/guides/x"}


def test_raw_html_is_not_passed_through():
    rendered = render_markdown("<script>alert(1)</script>\n")
    assert "<script>" not in rendered.html


def test_plain_text_leaves_out_controls():
    rendered = render_markdown("## Pitfalls\n\nWatch the **rank**.\n")
    assert "Copy link" not in rendered.text
    assert "rank" in rendered.text
