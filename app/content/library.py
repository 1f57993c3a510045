"""Load, validate and render every content file once; look pages up and find back-links."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from app.content.runs import RecordedSweep, RunsError, load_runs
from app.content.markdown import Rendered, Section, render_markdown
from app.content.schema import GuideFrontMatter, ParamFrontMatter, SynonymsFile
from app.content.search import SearchIndex, Synonyms

KIND_TITLES = {
    "lora": "LoRA configuration",
    "target-module": "Target modules",
    "training": "Training arguments",
    "quantization": "Quantisation",
}


class ContentError(Exception):
    """A content file that cannot be loaded: names the file, the field and the reason."""

    def __init__(self, path: Path, field_name: str, reason: str):
        self.path, self.field_name, self.reason = path, field_name, reason
        super().__init__(f"{path}: {field_name}: {reason}")


@dataclass(frozen=True)
class Page:
    """One rendered content page (a parameter or a guide)."""

    kind: str
    meta: ParamFrontMatter | GuideFrontMatter
    rendered: Rendered
    source_path: Path

    @property
    def slug(self) -> str:
        """The page's slug (its file name and URL tail)."""
        return self.meta.slug

    @property
    def url(self) -> str:
        """The page's stable path."""
        return f"/{'params' if self.kind == 'param' else 'guides'}/{self.slug}"

    @property
    def title(self) -> str:
        """The page's title."""
        return self.meta.title

    @property
    def html(self) -> str:
        """The body rendered to HTML."""
        return self.rendered.html

    @property
    def sections(self) -> tuple[Section, ...]:
        """The page's h2/h3 sections with their anchors."""
        return self.rendered.sections


@dataclass
class Library:
    """The whole encyclopedia, rendered and indexed."""

    params: dict[str, Page]
    guides: dict[str, Page]
    backlinks: dict[str, list[Page]] = field(default_factory=dict)
    index: SearchIndex = field(default_factory=SearchIndex)
    runs: dict[str, RecordedSweep] = field(default_factory=dict)  # recorded sweeps by swept field

    def params_by_kind(self) -> list[tuple[str, str, list[Page]]]:
        """Parameter pages grouped by kind, in a fixed order: (kind, heading, pages)."""
        groups = []
        for kind, heading in KIND_TITLES.items():
            pages = sorted((p for p in self.params.values() if p.meta.kind == kind), key=lambda p: p.slug)
            if pages:
                groups.append((kind, heading, pages))
        return groups

    def sorted_guides(self) -> list[Page]:
        """Guides that explain (not troubleshooting guides), in their home-page order."""
        return sorted((page for page in self.guides.values() if not page.meta.symptoms), key=lambda page: (page.meta.order, page.slug))

    def troubleshooting_guides(self) -> list[Page]:
        """Guides that start from a symptom, in their home-page order."""
        return sorted((page for page in self.guides.values() if page.meta.symptoms), key=lambda page: (page.meta.order, page.slug))

    def suggest(self, slug: str, limit: int = 5) -> list[Page]:
        """Parameter pages whose slug or aliases look like `slug` ("did you mean")."""
        names: dict[str, Page] = {}
        for page in self.params.values():
            names[page.slug] = page
            for alias in page.meta.aliases:
                names.setdefault(alias.lower().replace(" ", "_"), page)
        matches = difflib.get_close_matches(slug.lower(), list(names), n=limit * 2, cutoff=0.5)
        found: list[Page] = []
        for name in matches:
            if names[name] not in found:
                found.append(names[name])
        for page in self.params.values():
            if len(found) >= limit:
                break
            if slug and (slug in page.slug or page.slug in slug) and page not in found:
                found.append(page)
        return found[:limit]


def _split_front_matter(path: Path, text: str) -> tuple[dict, str]:
    if not text.startswith("---\n"):
        raise ContentError(path, "front matter", "the file must start with a '---' line")
    end = text.find("\n---\n", 4)
    if end == -1:
        raise ContentError(path, "front matter", "no closing '---' line")
    try:
        data = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as error:
        raise ContentError(path, "front matter", f"invalid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ContentError(path, "front matter", "must be a mapping of fields")
    return data, text[end + 5 :]


def _validate_model(path: Path, model: type[BaseModel], data: dict):
    try:
        return model(**data)
    except ValidationError as error:
        first = error.errors()[0]
        raise ContentError(path, ".".join(str(part) for part in first["loc"]) or "front matter", first["msg"]) from error


def _validate(path: Path, model: type[BaseModel], data: dict):
    meta = _validate_model(path, model, data)
    if meta.slug != path.stem:
        raise ContentError(path, "slug", f"slug {meta.slug!r} must equal the file name {path.stem!r}")
    return meta


def _check_sections(path: Path, meta: ParamFrontMatter, rendered: Rendered) -> None:
    """A parameter page has the sections of its kind, in order (other h2 sections may sit between them)."""
    anchors = [section.anchor for section in rendered.sections if section.level == 2]
    expected = meta.required_sections()
    present = [anchor for anchor in anchors if anchor in {anchor for _, anchor in expected}]
    if present != [anchor for _, anchor in expected]:
        headings = ", ".join(f"'## {heading}'" for heading, _ in expected)
        raise ContentError(path, "body", f"a {meta.value_kind()} page needs the sections {headings} in this order")


def _with_anchor_aliases(meta: ParamFrontMatter, rendered: Rendered) -> Rendered:
    """Keep a renamed section's older anchor working: an empty element with that id just before the heading."""
    html = rendered.html
    for anchor, alias in meta.anchor_aliases().items():
        html = html.replace(f'<h2 id="{anchor}">', f'<span id="{alias}" class="anchor-alias"></span><h2 id="{anchor}">', 1)
    return dataclasses.replace(rendered, html=html)


def _load_pages(folder: Path, kind: str, model: type[BaseModel]) -> dict[str, Page]:
    pages: dict[str, Page] = {}
    for path in sorted(folder.glob("*.md")):
        data, body = _split_front_matter(path, path.read_text(encoding="utf-8"))
        meta = _validate(path, model, data)
        rendered = render_markdown(body)
        if isinstance(meta, ParamFrontMatter):
            _check_sections(path, meta, rendered)
            rendered = _with_anchor_aliases(meta, rendered)
        pages[meta.slug] = Page(kind=kind, meta=meta, rendered=rendered, source_path=path)
    return pages


def _check_references(library: Library) -> None:
    known_paths = {page.url for page in [*library.params.values(), *library.guides.values()]}
    for page in [*library.params.values(), *library.guides.values()]:
        for slug in page.meta.related:
            if slug not in library.params:
                raise ContentError(page.source_path, "related", f"no parameter page has slug {slug!r}")
        for link in page.rendered.internal_links:
            if (link.startswith("/params/") or link.startswith("/guides/")) and link not in known_paths:
                raise ContentError(page.source_path, "body", f"link to {link} points to no page")


def _backlinks(library: Library) -> dict[str, list[Page]]:
    backlinks: dict[str, list[Page]] = {}
    for page in [*library.params.values(), *library.guides.values()]:
        for link in sorted(page.rendered.internal_links):
            if link != page.url:
                backlinks.setdefault(link, []).append(page)
    return backlinks


def load_synonyms(path: Path) -> Synonyms:
    """The search's synonym table (content/search/synonyms.yaml); empty when the file is absent."""
    if not path.exists():
        return Synonyms()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ContentError(path, "synonyms", f"invalid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ContentError(path, "synonyms", "must be a mapping with a 'groups' list")
    meta = _validate_model(path, SynonymsFile, data)
    return Synonyms.from_groups(meta.groups)


def load_library(content_dir: Path) -> Library:
    """Load and render content_dir/params and content_dir/guides; raise ContentError on a bad file."""
    library = Library(
        params=_load_pages(content_dir / "params", "param", ParamFrontMatter),
        guides=_load_pages(content_dir / "guides", "guide", GuideFrontMatter),
    )
    _check_references(library)
    library.backlinks = _backlinks(library)
    synonyms = load_synonyms(content_dir / "search" / "synonyms.yaml")
    library.index = SearchIndex.build([*library.params.values(), *library.guides.values()], synonyms)
    try:
        library.runs = load_runs(content_dir / "runs")
    except RunsError as error:
        raise ContentError(str(error)) from error
    return library
