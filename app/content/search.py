"""Full-text search with SQLite FTS5: BM25 over weighted columns, Porter stemming, synonyms, prefixes and typo fixes.

The index is an in-memory SQLite database built once from the rendered pages. A query is parsed into at most
MAX_UNITS units (a word, a snake_case name as a phrase, a "quoted phrase", or a synonym group), each turned
into quoted FTS5 strings, so nothing a user types is ever read as FTS5 syntax.
"""

from __future__ import annotations

import html
import logging
import math
import re
import sqlite3
import threading
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.content.library import Page

MAX_QUERY_CHARS = 200
MAX_UNITS = 8
MAX_ATOMS_PER_UNIT = 8
MAX_PREFIX_COMPLETIONS = 8
MAX_CORRECTABLE = 32  # longer atoms are never within two edits of a vocabulary word (at most 30 letters)
MAX_LIMIT = 50
MAX_CANDIDATES = 500  # more than the library's pages: every match is ranked
FILLER_PER_PAGE = 3
EXCERPT_WORDS = 28
PASSAGE_STRIDE = 100_000
FILLER_TOKEN = "zzfillerzz"
# Weight of each column's BM25: the title and the names people type outrank the summary, which outranks the body.
COLUMNS = ("title", "names", "summary", "body")
COLUMN_WEIGHTS = (10.0, 10.0, 4.0, 1.0)
# One bm25() per column, summed: FTS5's own column weights multiply hit counts before BM25 saturates them, so thirty
# body hits would outweigh one title hit; scoring each column apart keeps a title hit above any number of body hits.
_WEIGHTED_BM25 = " + ".join(
    f"{weight} * bm25(pages, {', '.join('1' if other == index else '0' for other in range(len(COLUMNS)))})"
    for index, weight in enumerate(COLUMN_WEIGHTS)
)
# Words that say little about which page is meant; dropped while some other word remains ("not" and "no" stay).
STOPWORDS = frozenset(
    "a an the to of in on at for with and or is are was be it its my i me this that does do did how what why "
    "when after before from by about can cannot fix fixing solve help problem issue get getting keep keeps happens".split()
)
_STOPWORD_UNITS = frozenset((word,) for word in STOPWORDS)
# The index tokenizer splits words at anything but letters and digits, so "lora_alpha" is the phrase "lora alpha".
_ATOM = re.compile(r"[^\W_]+")
_WORD = re.compile(r"[^\W_]+(?:[_\-./'’][^\W_]+)*")
_QUOTED = re.compile(r'"([^"]*)"')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MARK_OPEN, _MARK_CLOSE = "\x02", "\x03"
logger = logging.getLogger(__name__)


def atoms(text: str) -> tuple[str, ...]:
    """Lowercase letter-and-digit runs, as the index tokenizer splits them ("lora_alpha" -> lora, alpha)."""
    return tuple(_ATOM.findall(text.lower()))


def name_key(text: str) -> str:
    """How a parameter name or alias is compared with a query: its atoms joined by spaces."""
    return " ".join(atoms(text))


def edit_distance(first: str, second: str, bound: int) -> int:
    """Optimal-string-alignment distance (a swap of neighbours counts once), or bound + 1 once it exceeds bound."""
    if abs(len(first) - len(second)) > bound:
        return bound + 1
    previous_previous: list[int] = []
    previous = list(range(len(second) + 1))
    for i, char in enumerate(first, 1):
        current = [i] + [0] * len(second)
        for j, other in enumerate(second, 1):
            cost = 0 if char == other else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and char == second[j - 2] and first[i - 2] == other:
                current[j] = min(current[j], previous_previous[j - 2] + 1)
        if min(current) > bound:
            return bound + 1
        previous_previous, previous = previous, current
    return previous[-1]


def _deletions(word: str) -> set[str]:
    return {word[:index] + word[index + 1 :] for index in range(len(word))}


@dataclass(frozen=True)
class SearchHit:
    """One ranked result: the page, its score and an HTML snippet with the matches marked."""

    page: "Page"
    score: float
    snippet_html: str


@dataclass(frozen=True)
class Unit:
    """One part of a parsed query: alternatives (each a phrase of atoms), any of which may match."""

    alternatives: tuple[tuple[str, ...], ...]
    prefix: bool = False
    quoted: bool = False

    def fts(self, completions: tuple[str, ...] = ()) -> str:
        """The unit as FTS5 syntax: quoted strings only (a `"` inside is impossible: atoms are letters and digits)."""
        parts = [f'"{" ".join(alternative)}"' for alternative in self.alternatives]
        if self.prefix:
            parts[-1] += "*"
        parts.extend(f'"{" ".join((*self.alternatives[-1][:-1], word))}"' for word in completions)
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


@dataclass
class Synonyms:
    """Groups of words and phrases that mean the same, keyed by each entry's atoms."""

    groups: list[tuple[tuple[str, ...], ...]] = field(default_factory=list)
    by_entry: dict[tuple[str, ...], int] = field(default_factory=dict)
    longest: int = 1

    @classmethod
    def from_groups(cls, groups: list[list[str]]) -> "Synonyms":
        """Index each group's entries (an entry found in two groups joins the first)."""
        table = cls()
        for entries in groups:
            keyed = tuple(dict.fromkeys(key for key in (atoms(entry) for entry in entries) if key))
            table.groups.append(keyed)
            for key in keyed:
                table.by_entry.setdefault(key, len(table.groups) - 1)
                table.longest = max(table.longest, len(key))
        return table

    @property
    def atoms(self) -> set[str]:
        """Every atom of every entry."""
        return {atom for group in self.groups for entry in group for atom in entry}


class SearchIndex:
    """Pages in an in-memory FTS5 table, with the vocabulary for typo fixes and exact name lookups."""

    def __init__(self, pages: list["Page"] | None = None, synonyms: Synonyms | None = None):
        self.pages = list(pages or [])
        self.synonyms = synonyms or Synonyms()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute(
            "CREATE VIRTUAL TABLE pages USING fts5(title, names, summary, body, tokenize='porter unicode61', prefix='2 3')"
        )
        # Each paragraph of each body again, for excerpts: marking a paragraph costs a fraction of marking a body.
        self._db.execute("CREATE VIRTUAL TABLE passages USING fts5(text, tokenize='porter unicode61')")
        self._exact: dict[str, list[int]] = {}
        document_frequency: Counter[str] = Counter()
        for number, page in enumerate(self.pages):
            names = self._names(page)
            row = (page.meta.title, "\n".join(names), page.meta.summary, page.rendered.text)
            row = tuple(_CONTROL.sub(" ", text) for text in row)
            self._db.execute("INSERT INTO pages(rowid, title, names, summary, body) VALUES (?, ?, ?, ?, ?)", (number, *row))
            paragraphs = [" ".join(_CONTROL.sub(" ", line).split()) for line in page.rendered.text.split("\n")]
            paragraphs = [text for text in paragraphs if text][: PASSAGE_STRIDE - 1]
            # A passage's rowid holds its page (rowid // PASSAGE_STRIDE), so finding them reads no stored text.
            self._db.executemany("INSERT INTO passages(rowid, text) VALUES (?, ?)",
                                 [(number * PASSAGE_STRIDE + index, text) for index, text in enumerate(paragraphs)])
            document_frequency.update({atom for text in row for atom in atoms(text) if 3 <= len(atom) <= 30})
            for name in names:
                key = name_key(name)
                if key and number not in self._exact.setdefault(key, []):
                    self._exact[key].append(number)
        self._name_keys = sorted(self._exact)
        self._add_filler_rows(len(self.pages))
        self._db.commit()
        self._frequency = document_frequency
        self._vocabulary = sorted(word for word in document_frequency if not word.isdigit())
        self._by_deletion: dict[str, list[str]] = {}
        for word in self._vocabulary:
            for key in {word, *_deletions(word)}:
                self._by_deletion.setdefault(key, []).append(word)
        self._known_atoms = self.synonyms.atoms
        self.matches = lru_cache(maxsize=4096)(self._matches)
        self.unit_pages = lru_cache(maxsize=4096)(self._unit_pages)

    def _add_filler_rows(self, count: int) -> None:
        """Rows that no query matches, each as long as the average page, FILLER_PER_PAGE per page.

        FTS5's bm25() floors a term's idf at 1e-6 once it occurs in half the rows or more. In a library of some
        sixty pages, words such as "memory" or "model" would then score zero everywhere and rank at random;
        filler rows keep every real term under that line without moving the average column lengths bm25 uses.
        """
        if not count:
            return
        lengths = self._db.execute(
            "SELECT " + ", ".join(f"sum(length({column}) - length(replace({column}, ' ', '')) + 1)" for column in COLUMNS)
            + " FROM pages"
        ).fetchone()
        row = tuple(" ".join([FILLER_TOKEN] * max(1, round(total / count))) for total in lengths)
        self._db.executemany("INSERT INTO pages(title, names, summary, body) VALUES (?, ?, ?, ?)", [row] * (count * FILLER_PER_PAGE))

    @classmethod
    def build(cls, pages: list["Page"], synonyms: Synonyms | None = None) -> "SearchIndex":
        """Index every page's title, names (slug, field, aliases, symptoms), summary and body."""
        return cls(pages, synonyms)

    @staticmethod
    def _names(page: "Page") -> list[str]:
        """What people type for a page: the field name and slug first, then aliases or symptoms."""
        meta = page.meta
        return list(dict.fromkeys([getattr(meta, "field", "") or page.slug, page.slug,
                                   *getattr(meta, "aliases", []), *getattr(meta, "symptoms", [])]))

    def _matches(self, fts_query: str) -> bool:
        """Whether an FTS5 query matches any page (cached: the typo and prefix checks repeat while typing)."""
        with self._lock:
            found = self._db.execute("SELECT 1 FROM pages WHERE pages MATCH ? AND rowid < ? LIMIT 1", (fts_query, len(self.pages)))
            return found.fetchone() is not None

    def correct(self, atom: str) -> str:
        """The vocabulary word nearest to `atom` within 1 edit (2 for words of 6 letters or more), else `atom`."""
        bound = 2 if len(atom) >= 6 else 1
        candidates = {word for key in {atom, *_deletions(atom)} for word in self._by_deletion.get(key, ())}
        scored = [(edit_distance(atom, word, bound), -self._frequency[word], word) for word in candidates]
        best = min((item for item in scored if item[0] <= bound), default=None)
        return best[2] if best else atom

    def completions(self, stem: str) -> tuple[str, ...]:
        """The commonest vocabulary words that start with `stem` (for a prefix the stemmed index cannot match)."""
        start = bisect_left(self._vocabulary, stem)
        words = []
        for word in self._vocabulary[start:]:
            if not word.startswith(stem):
                break
            words.append(word)
        return tuple(sorted(words, key=lambda word: -self._frequency[word])[:MAX_PREFIX_COMPLETIONS])

    def parse(self, query: str) -> tuple[list[Unit], list[int], list[tuple[str, str]]]:
        """The query's units (typos fixed, synonyms grouped, stopwords dropped), the pages its whole text names, and
        its neighbouring word pairs."""
        query = _CONTROL.sub(" ", query[:MAX_QUERY_CHARS])
        # Still typing the last word: it ends the query, not a space or a closing quote.
        last_is_prefix = bool(query) and not query[-1].isspace() and not query.endswith('"')
        quoted = [atoms(text) for text in _QUOTED.findall(query)]
        words = [atoms(word) for word in _WORD.findall(_QUOTED.sub(" ", query))]
        words = [word[:MAX_ATOMS_PER_UNIT] for word in words if word][: MAX_UNITS * 2]
        words = [tuple(self._fix(atom, prefix=last_is_prefix and index == len(words) - 1 and position == len(word) - 1)
                       for position, atom in enumerate(word)) for index, word in enumerate(words)]
        units = [Unit(alternatives=(phrase[:MAX_ATOMS_PER_UNIT],), quoted=True) for phrase in quoted if phrase]
        units.extend(self._group(words, last_is_prefix))
        sequence = [atom for word in words for atom in word]
        # Neighbouring words as phrases rank the page that holds a pasted message or sentence verbatim above pages
        # that hold its words apart; they add to the ranking only, never to what must match.
        pairs = [pair for pair in zip(sequence, sequence[1:]) if not set(pair) <= STOPWORDS] if len(words) >= 3 else []
        content = [unit for unit in units if unit.quoted or len(unit.alternatives) > 1 or unit.alternatives[0] not in _STOPWORD_UNITS]
        units = (content or units)[:MAX_UNITS]
        exact = self._exact.get(" ".join(sequence), []) if not quoted else []
        # Two words at least: one typed word ("lo") would put every lora_* page above what the text says.
        if last_is_prefix and not quoted and len(sequence) >= 2:
            exact = list(dict.fromkeys([*exact, *self._named_by_prefix(" ".join(sequence))]))
        return units, exact, list(dict.fromkeys(pairs))[: MAX_UNITS * 2]

    def _named_by_prefix(self, typed: str) -> list[int]:
        """Pages with a name that the typed words begin ("learning ra" -> learning_rate), in name order."""
        found: list[int] = []
        for key in self._name_keys[bisect_left(self._name_keys, typed):]:
            if not key.startswith(typed):
                break
            found.extend(self._exact[key])
        return found

    def _fix(self, atom: str, prefix: bool) -> str:
        """`atom` itself when the index or the synonym table knows it (as a prefix while typing), else its correction."""
        if not 4 <= len(atom) <= MAX_CORRECTABLE or atom.isdigit() or atom in self._known_atoms:
            return atom
        if self.matches(f'"{atom}"') or (prefix and (self.matches(f'"{atom}"*') or self.completions(atom))):
            return atom
        return self.correct(atom)

    def _group(self, words: list[tuple[str, ...]], last_is_prefix: bool) -> list[Unit]:
        """Words as units: runs of words that form a synonym entry become that entry's group (longest run first)."""
        units: list[Unit] = []
        index = 0
        while index < len(words):
            for end in range(min(len(words), index + self.synonyms.longest), index, -1):
                key = tuple(atom for word in words[index:end] for atom in word)
                group = self.synonyms.by_entry.get(key)
                if group is not None:
                    alternatives = (key, *(entry for entry in self.synonyms.groups[group] if entry != key))
                    units.append(Unit(alternatives=alternatives))
                    index = end
                    break
            else:
                is_last = index == len(words) - 1
                word = words[index]
                units.append(Unit(alternatives=(word,), prefix=last_is_prefix and is_last and len(word[-1]) >= 2))
                index += 1
        return units

    def _fts_units(self, units: list[Unit]) -> list[str]:
        """Each unit as FTS5 text; a typed prefix the stemmed index cannot complete also tries whole words."""
        texts = []
        for unit in units:
            completions = ()
            if unit.prefix and not self.matches(unit.fts()):
                completions = self.completions(unit.alternatives[-1][-1])
            texts.append(unit.fts(completions))
        return texts

    def _unit_pages(self, fts_unit: str) -> frozenset[int]:
        """The pages one unit matches (cached: units repeat while a query is typed)."""
        with self._lock:
            rows = self._db.execute("SELECT rowid FROM pages WHERE pages MATCH ? AND rowid < ?", (fts_unit, len(self.pages)))
            return frozenset(row[0] for row in rows)

    def _ranked(self, fts_query: str) -> list[tuple[int, float]]:
        """(page number, bm25) of every page the query matches, best first (bm25 is negative: lower is better)."""
        sql = f"SELECT rowid, {_WEIGHTED_BM25} AS rank FROM pages WHERE pages MATCH ? AND rowid < ? ORDER BY rank LIMIT ?"
        with self._lock:
            return self._db.execute(sql, (fts_query, len(self.pages), MAX_CANDIDATES)).fetchall()

    def _snippets(self, fts_query: str, numbers: list[int]) -> dict[int, str]:
        """Page number -> its summary with the matches marked, or else its first matching paragraph, marked and cut."""
        summaries = self._marked("pages", "highlight(pages, 2, ?, ?)", fts_query, numbers)
        unmarked = {number for number in numbers if _MARK_OPEN not in summaries.get(number, "")}
        if not unmarked:
            return summaries
        first: dict[int, int] = {}
        with self._lock:
            for (passage,) in self._db.execute("SELECT rowid FROM passages WHERE passages MATCH ?", (fts_query,)):
                if passage // PASSAGE_STRIDE in unmarked:
                    first.setdefault(passage // PASSAGE_STRIDE, passage)
        passages = self._marked("passages", "highlight(passages, 0, ?, ?)", fts_query, list(first.values()))
        return summaries | {page: _excerpt(passages[passage]) for page, passage in first.items() if passage in passages}

    def _marked(self, table: str, function: str, fts_query: str, rowids: list[int]) -> dict[int, str]:
        """rowid -> the marking function's text, for the listed rows of `table` that the query matches."""
        if not rowids:
            return {}
        # "rowid IN (...)" in the WHERE clause would make FTS5 run the whole match once per listed row; a CASE
        # runs it once and calls the marking function only for the listed rows.
        chosen = ", ".join(str(int(rowid)) for rowid in rowids)
        sql = f"SELECT rowid, CASE WHEN rowid IN ({chosen}) THEN {function} END FROM {table} WHERE {table} MATCH ?"
        with self._lock:
            rows = self._db.execute(sql, (_MARK_OPEN, _MARK_CLOSE, fts_query)).fetchall()
        return {rowid: text for rowid, text in rows if text is not None}

    def search(self, query: str, limit: int = 20) -> list[SearchHit]:
        """Pages the query names (or begins to, while typing); then pages matching (nearly) every unit; then the rest; BM25 within each."""
        limit = max(1, min(limit, MAX_LIMIT))
        units, exact, pairs = self.parse(query)
        if not units:
            return []
        texts = self._fts_units(units)
        any_unit = " OR ".join(texts)
        try:
            ranked = self._ranked(" OR ".join([*texts, *(f'"{first} {second}"' for first, second in pairs)]))
            coverage = Counter(number for text in texts for number in self.unit_pages(text))
        except sqlite3.OperationalError:  # cannot happen with quoted atoms; a query error must never reach the user
            logger.exception("search query %r failed as %r", query, any_unit)
            return []
        # Short queries need every unit; longer ones (pasted errors, sentences) may miss a quarter of them.
        required = len(texts) if len(texts) <= 3 else math.ceil(0.75 * len(texts))
        ranked.sort(key=lambda row: (row[0] not in exact, coverage[row[0]] < required, row[1]))
        scores = {number: -rank for number, rank in ranked}
        order = list(dict.fromkeys([*exact, *scores]))[:limit]
        snippets = self._snippets(any_unit, order)
        top_score = max(scores.values(), default=0.0)
        return [
            SearchHit(page=self.pages[number], score=top_score + 1.0 if number in exact else scores[number],
                      snippet_html=_snippet_html(self.pages[number], snippets.get(number)))
            for number in order
        ]


def _excerpt(marked: str) -> str:
    """About EXCERPT_WORDS words of a marked paragraph around its first match, with "…" where it was cut."""
    words = marked.split(" ")
    first = next((index for index, word in enumerate(words) if _MARK_OPEN in word), 0)
    start = max(0, first - EXCERPT_WORDS // 3)
    text = " ".join(words[start : start + EXCERPT_WORDS])
    if text.rfind(_MARK_OPEN) > text.rfind(_MARK_CLOSE):  # a marked phrase was cut at the end
        text += _MARK_CLOSE
    if text.find(_MARK_CLOSE) < text.find(_MARK_OPEN) or (_MARK_CLOSE in text and _MARK_OPEN not in text):
        text = _MARK_OPEN + text  # ... or at the start
    return ("… " if start else "") + text + (" …" if start + EXCERPT_WORDS < len(words) else "")


def _marked_html(text: str) -> str:
    """Text with FTS5's match markers, HTML-escaped, the markers turned into <mark>."""
    return html.escape(text).replace(_MARK_OPEN, "<mark>").replace(_MARK_CLOSE, "</mark>")


def _snippet_html(page: "Page", marked: str | None) -> str:
    """The marked summary or body excerpt, escaped; the plain summary when nothing in either matched."""
    if marked and _MARK_OPEN in marked:
        return _marked_html(" ".join(marked.split()))
    return html.escape(page.meta.summary)
