"""Pages kept per URL for anonymous readers: each browser still gets its own CSRF token; signed-in readers are never cached."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.web.page_cache import TOKEN_PLACEHOLDER, PageCache
from app.web.security import CSRF_COOKIE
from tests.web.test_accounts_api import PASSWORD, accounts_client  # noqa: F401 (a fixture)

PAGES = ["/", "/params/r", "/guides/quick-start", "/search?q=rank", "/explain",
         "/calculator?model=tiny-llama&r=8&target_modules=q_proj"]


def token_in(html: str) -> str:
    return html.split('"X-CSRF-Token": "', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("path", PAGES)
def test_a_second_browser_gets_the_cached_page_with_its_own_token(app, path):
    cache: PageCache = app.state.page_cache
    with TestClient(app) as first, TestClient(app) as second:
        one = first.get(path)
        hits = cache.hits
        two = second.get(path)
        assert cache.hits == hits + 1, "the second reader's page came from the cache"
        assert one.status_code == two.status_code == 200
        for response, client in ((one, first), (two, second)):
            assert TOKEN_PLACEHOLDER not in response.text
            assert token_in(response.text) == client.cookies.get(CSRF_COOKIE)
        assert token_in(one.text) != token_in(two.text)
        assert one.text.replace(token_in(one.text), "") == two.text.replace(token_in(two.text), "")


def test_a_token_from_a_cached_page_is_accepted_by_the_form_it_came_with(app):
    with TestClient(app) as first, TestClient(app) as second:
        first.get("/explain")
        page = second.get("/explain")  # from the cache
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        assert token == second.cookies.get(CSRF_COOKIE)
        explained = second.post("/explain", data={"csrf_token": token, "adapter_config": '{"r": 8, "lora_alpha": 16}'})
        assert explained.status_code == 200 and "scaling" in explained.text.lower()


def test_a_refused_view_is_never_kept(app):
    """A 422 can be passing (the module-tree helper restarting, a timeout), so the next reader must get a new answer."""
    cache: PageCache = app.state.page_cache
    with TestClient(app) as client:
        path = "/calculator?model=tiny-llama&r=0"
        assert client.get(path).status_code == 422
        hits = cache.hits
        assert client.get(path).status_code == 422 and cache.hits == hits


def test_an_htmx_request_and_a_full_page_are_kept_apart(app):
    with TestClient(app) as client:
        full = client.get("/search?q=rank")
        partial = client.get("/search?q=rank", headers={"HX-Request": "true"})
        assert "<html" in full.text and "<html" not in partial.text
        assert "<html" in client.get("/search?q=rank").text


def test_a_signed_in_reader_is_never_served_from_the_cache(accounts_client):  # noqa: F811 (the fixture)
    client = accounts_client
    cache: PageCache = client.app.state.page_cache
    assert "nav-sign-in" in client.get("/params/r").text  # anonymous: cached
    assert client.post("/login", data={"name": "ada", "password": PASSWORD}, follow_redirects=False).status_code == 303
    hits = cache.hits
    page = client.get("/params/r")
    assert 'id="nav-account">ada<' in page.text and "nav-sign-in" not in page.text
    assert cache.hits == hits


def test_the_cache_keeps_at_most_its_size_and_skips_pages_too_large():
    cache = PageCache(max_pages=2, max_page_bytes=10)
    cache.put(("a",), 200, "1")
    cache.put(("b",), 200, "2")
    assert cache.get(("a",)) == (200, "1")  # now the most recently used
    cache.put(("c",), 200, "3")
    assert cache.get(("b",)) is None and cache.get(("a",)) == (200, "1") and cache.get(("c",)) == (200, "3")
    cache.put(("d",), 200, "x" * 11)
    assert cache.get(("d",)) is None
