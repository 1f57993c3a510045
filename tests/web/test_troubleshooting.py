"""Troubleshooting guides: listed on the home page under stable slugs; every "try it" opens a form with its levers set."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

import pytest


SYMPTOM_SLUGS = [
    "out-of-memory", "loss-not-decreasing", "loss-nan-or-exploding", "overfitting", "forgetting",
    "adapter-has-no-effect", "training-too-slow", "repetitive-or-garbage-output",
]
NOT_LEVERS = {"focus", "model"}


class FormValues(HTMLParser):
    """The value each named input, checkbox and select of a page's forms shows."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        name = attributes.get("name")
        if tag == "input" and name and attributes.get("type") != "hidden":
            if attributes.get("type") == "checkbox":
                self.values[name] = "true" if "checked" in attributes else "false"
            else:
                self.values[name] = attributes.get("value") or ""
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in attributes:
            self.values[self._select] = attributes.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def try_it_links(html: str) -> list[str]:
    """Links of a guide body that open the calculator or the job form."""
    return [link.replace("&amp;", "&") for link in re.findall(r'href="(/(?:calculator|jobs/new)\?[^"]+)"', html)]


def test_home_lists_every_symptom_with_its_guide(client):
    html = client.get("/").text
    section = html[html.index('id="symptoms"'): html.index('id="guides"')]
    assert "Something wrong?" in section
    assert re.findall(r'href="/guides/([^"]+)"', section) == SYMPTOM_SLUGS


@pytest.mark.parametrize("slug", SYMPTOM_SLUGS)
def test_every_try_it_link_opens_a_form_with_its_levers_applied(client, slug):
    page = client.get(f"/guides/{slug}")
    assert page.status_code == 200
    links = try_it_links(page.text)
    assert len(links) >= 2, f"{slug} has too few 'try it' links"
    for link in links:
        response = client.get(link)
        assert response.status_code == 200, f"{slug}: {link} -> {response.status_code}"
        form = FormValues()
        form.feed(response.text)
        for key, value in parse_qsl(urlsplit(link).query, keep_blank_values=True):
            if key in NOT_LEVERS:
                continue
            name = key
            assert name in form.values, f"{slug}: {link} sets {key}, which the form does not have"
            assert form.values[name] == value, f"{slug}: {link} sets {key}={value!r}, the form shows {form.values[name]!r}"


def test_calculator_reads_optim_as_transformers_spells_it(client):
    form = FormValues()
    form.feed(client.get("/calculator?optim=adamw_8bit").text)
    assert form.values["optim"] == "adamw_8bit"


def test_guide_page_lists_the_symptoms_it_answers(client):
    html = client.get("/guides/out-of-memory").text
    assert "<code>torch.OutOfMemoryError: CUDA out of memory. Tried to allocate</code>" in html
