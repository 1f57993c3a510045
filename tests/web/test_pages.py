"""Encyclopedia pages and API: crawl every same-site link, link previews, 404s, search, JSON."""

from __future__ import annotations

import re
from collections import deque
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest


class LinkCollector(HTMLParser):
    """Collects hrefs/srcs, element ids and external assets of one HTML page."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.external_assets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        for name in ("href", "src"):
            value = attributes.get(name)
            if not value:
                continue
            is_asset = tag in ("script", "img", "iframe") or (tag == "link" and attributes.get("rel") != "canonical")
            if is_asset and urlsplit(value).netloc:
                self.external_assets.append(value)
            if tag in ("a", "link", "script", "img") and (tag != "link" or attributes.get("rel") != "canonical"):
                self.links.append(value)


def same_site(base: str, link: str) -> str | None:
    """The path+query of a same-site link, or None for other sites, mailto: and the like."""
    parts = urlsplit(urljoin(base, link))
    if parts.scheme not in ("http", "https") or parts.netloc != "testserver":
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def test_crawl_every_same_site_link_from_home(client):
    seen: set[str] = set()
    queue = deque(["/"])
    anchors_to_check: list[tuple[str, str, str]] = []
    page_ids: dict[str, set[str]] = {}
    while queue:
        url = queue.popleft()
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        assert response.status_code == 200, f"{url} -> {response.status_code}"
        if "text/html" not in response.headers.get("content-type", ""):
            continue
        collector = LinkCollector()
        collector.feed(response.text)
        page_ids[url] = collector.ids
        assert not collector.external_assets, f"{url} loads assets from another origin: {collector.external_assets}"
        if url.startswith("/calculator?"):
            # a calculator view links to itself with one value changed (each fit lever, each field's focus): following
            # those never ends; their answers are held by the fit and calculator tests
            continue
        for link in collector.links:
            target = same_site("http://testserver" + url, link)
            if target is None:
                continue
            path, _, fragment = target.partition("#")
            if fragment and path.startswith(("/params/", "/guides/")):
                anchors_to_check.append((url, path, fragment))
            if path not in seen:
                queue.append(path)
    assert len([url for url in seen if url.startswith("/params/")]) >= 35
    for source, path, fragment in anchors_to_check:
        assert fragment in page_ids.get(path, set()), f"{source} links to {path}#{fragment}, which has no such anchor"


def test_parameter_page_has_link_preview_tags_and_anchors(client):
    response = client.get("/params/r")
    html = response.text
    assert response.status_code == 200
    assert "<title>r — LoRA rank — Lorapedia</title>" in html  # the field name once: every title starts with it
    assert '<link rel="canonical" href="/params/r">' in html  # relative: the Host header never makes it
    for tag in ('property="og:title"', 'property="og:description"', 'name="twitter:card"', 'name="description"'):
        assert tag in html
    assert 'id="raising-it"' in html and 'data-copy-link="#raising-it"' in html
    assert 'href="/calculator?focus=r"' in html
    assert "Pages that link here" in html


def test_try_it_opens_the_calculator_for_its_fields_and_the_job_form_for_the_rest(client):
    assert 'href="/calculator?focus=learning_rate"' in client.get("/params/learning_rate").text
    assert 'href="/jobs/new?focus=weight_decay"' in client.get("/params/weight_decay").text


def test_unknown_slug_gets_a_404_page_with_suggestions(client):
    response = client.get("/params/lora_alph")
    assert response.status_code == 404
    assert "Did you mean" in response.text
    assert 'href="/params/lora_alpha"' in response.text


def test_search_page_works_without_javascript_and_ranks_title_first(client):
    response = client.get("/search", params={"q": "rank"})
    assert response.status_code == 200
    assert "<html" in response.text
    first_result = re.search(r'<ol class="search-results">\s*<li><a href="([^"]+)"', response.text)
    assert first_result and first_result.group(1) == "/params/r"


def test_search_htmx_request_gets_only_the_results_block(client):
    response = client.get("/search", params={"q": "dropout"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "<html" not in response.text
    assert 'href="/params/lora_dropout"' in response.text


def test_api_params_lists_every_page(client):
    listing = client.get("/api/params").json()
    assert {"slug", "title", "kind", "summary"} <= set(listing[0])
    assert "r" in {item["slug"] for item in listing}


def test_api_param_detail_and_404(client):
    detail = client.get("/api/params/lora_alpha").json()
    assert detail["front_matter"]["field"] == "lora_alpha"
    assert "<h2" in detail["html"]
    missing = client.get("/api/params/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/json")
    assert "nope" in missing.json()["detail"]


def test_healthz_and_home_groups(client):
    assert client.get("/healthz").json()["status"] == "ok"
    home = client.get("/").text
    for heading in ("LoRA configuration", "Target modules", "Training arguments", "Quantisation", "Guides"):
        assert heading in home


@pytest.mark.parametrize("path", ["/", "/params/r", "/search?q=alpha", "/docs"])
def test_pages_load_no_asset_from_another_origin(client, path):
    collector = LinkCollector()
    collector.feed(client.get(path).text)
    assert collector.external_assets == []


def test_a_too_long_search_gets_an_inline_message_not_json(client):
    response = client.get("/search", params={"q": "rank " * 60})
    assert response.status_code == 422
    assert "<html" in response.text and "at most 200 are searched" in response.text
    partial = client.get("/search", params={"q": "x" * 201}, headers={"HX-Request": "true"})
    assert partial.status_code == 422 and "<html" not in partial.text and 'role="alert"' in partial.text


def test_public_url_setting_sets_canonical_and_preview_urls(settings):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings.model_copy(update={"public_url": "https://lorapedia.example.org"}))) as proxied:
        html = proxied.get("/params/r").text
    assert '<link rel="canonical" href="https://lorapedia.example.org/params/r">' in html
    assert 'property="og:url" content="https://lorapedia.example.org/params/r"' in html


def test_the_template_written_sections_of_a_parameter_page_have_anchors_and_copy_links(client):
    html = client.get("/params/lora_alpha").text
    for anchor in ("references", "related", "backlinks"):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html and f'data-copy-link="#{anchor}"' in html, anchor
