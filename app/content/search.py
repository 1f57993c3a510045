"""Full-text search over titles, summaries and bodies, ranked so a title hit beats a body hit."""

from __future__ import annotations

import bisect
import html
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.content.library import Page

_WORD = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
# Weight of one occurrence per field; the body is capped so a long page cannot outrank a title.
FIELD_WEIGHTS = {"title": 10.0, "names": 8.0, "summary": 3.0, "body": 1.0}
BODY_CAP = 2.5
PREFIX_FACTOR = 0.6


def tokenize(text: str) -> list[str]:
    """Lowercase words; snake_case names also yield their parts ("lora_alpha" -> lora_alpha, lora, alpha)."""
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        words.append(word)
        if "_" in word:
            words.extend(part for part in word.split("_") if part)
    return words


@dataclass(frozen=True)
class SearchHit:
    """One ranked result: the page, its score and an HTML snippet with the matches marked."""

    page: "Page"
    score: float
    snippet_html: str


@dataclass
class SearchIndex:
    """An inverted index: term -> {page index: weight}."""

    pages: list["Page"] = field(default_factory=list)
    postings: dict[str, dict[int, float]] = field(default_factory=dict)
    vocabulary: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, pages: list["Page"]) -> "SearchIndex":
        """Index every page's title, names, summary and body."""
        postings: dict[str, dict[int, float]] = defaultdict(dict)
        for number, page in enumerate(pages):
            meta = page.meta
            names = " ".join([page.slug, getattr(meta, "field", ""), *getattr(meta, "aliases", [])])
            fields = {"title": meta.title, "names": names, "summary": meta.summary, "body": page.rendered.text}
            weights: dict[str, float] = Counter()
            for field_name, text in fields.items():
                counts = Counter(tokenize(text))
                for term, count in counts.items():
                    if field_name == "body":
                        weights[term] += min(BODY_CAP, FIELD_WEIGHTS["body"] * (1 + math.log(count)))
                    else:
                        weights[term] += FIELD_WEIGHTS[field_name]
            for term, weight in weights.items():
                postings[term][number] = weight
        return cls(pages=list(pages), postings=dict(postings), vocabulary=sorted(postings))

    def _matches(self, term: str) -> dict[int, float]:
        """Pages matching `term` exactly, or as a prefix of a longer word (weighted down)."""
        scores = dict(self.postings.get(term, {}))
        if len(term) < 2:
            return scores
        start = bisect.bisect_left(self.vocabulary, term)
        for word in self.vocabulary[start:]:
            if not word.startswith(term):
                break
            if word == term:
                continue
            for number, weight in self.postings[word].items():
                scores[number] = max(scores.get(number, 0.0), weight * PREFIX_FACTOR)
        return scores

    def search(self, query: str, limit: int = 20) -> list[SearchHit]:
        """Pages matching every query word (or, failing that, any), best first."""
        terms = list(dict.fromkeys(_WORD.findall(query.lower())))
        if not terms:
            return []
        per_term = [self._matches(term) for term in terms]
        candidates = set.intersection(*(set(matches) for matches in per_term))
        if not candidates:
            candidates = set().union(*(set(matches) for matches in per_term))
        scored = [(sum(matches.get(number, 0.0) for matches in per_term), number) for number in candidates]
        scored.sort(key=lambda item: (-item[0], self.pages[item[1]].slug))
        return [
            SearchHit(page=self.pages[number], score=score, snippet_html=make_snippet(self.pages[number], terms))
            for score, number in scored[:limit]
        ]


def make_snippet(page: "Page", terms: list[str], width: int = 160) -> str:
    """The page summary, or the body text around the first match, with matches in <mark>."""
    pattern = re.compile(r"\b(" + "|".join(re.escape(term) for term in terms) + r")\w*", re.IGNORECASE)
    text = page.meta.summary
    if not pattern.search(text):
        body = " ".join(page.rendered.text.split())
        found = pattern.search(body)
        if found:
            start = max(0, found.start() - width // 3)
            text = ("… " if start else "") + body[start : start + width] + " …"
    parts, last = [], 0
    for found in pattern.finditer(text):
        parts.append(html.escape(text[last : found.start()]))
        parts.append(f"<mark>{html.escape(found.group(0))}</mark>")
        last = found.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)
