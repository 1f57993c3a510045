"""The calculator page: a GET form whose URL holds the whole state; htmx swaps the results block live."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.calc.catalogue import Catalogue
from app.calc.exports import ExportContext, render_all
from app.calc.request import CUSTOM_MODEL, DEFAULT_MODEL
from app.calc.result import CalcResult
from app.content.links import sweep_url
from app.spec.base import as_text
from app.web.deps import CatalogueDep, LibraryDep
from app.web.forms import CALCULATOR_FIELDS, JOB_FIELDS, FormOutcome, calculator_form
from app.web.page_cache import render_page
from app.web.templating import is_htmx

router = APIRouter(include_in_schema=False)

TEMPLATE = "calculator/calculator.html"
FIELD_NAMES = frozenset(meta.name for meta in CALCULATOR_FIELDS)
# Encyclopedia pages that are not a form field themselves, and the field that shows them: the pages the form's
# fields link to under another name (load_in_4bit -> base_dtype), then pages no field links to.
FOCUS_ALIASES = {
    **{meta.page: meta.name for meta in CALCULATOR_FIELDS if meta.page and meta.page != meta.name},
    "bnb_4bit_quant_type": "base_dtype",
    "bnb_4bit_compute_dtype": "base_dtype",
    **{name: "base_dtype" for name in (
        "bnb_4bit_quant_storage", "load_in_8bit", "prepare_model_for_kbit_training", "use_qalora", "qalora_group_size",
        "bf16", "fp16",
    )},
    "loraplus_lr_ratio": "learning_rate",
    "layer_replication": "layers_to_transform",
    "trainable_token_indices": "modules_to_save",
    **{name: "target_modules" for name in (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "embed_tokens", "lm_head",
    )},
}
JOB_FIELD_NAMES = frozenset(meta.name for meta in JOB_FIELDS)


def focused_field(slug: str | None) -> str | None:
    """The form field a parameter page's "try it" link should focus."""
    if not slug:
        return None
    if slug in FIELD_NAMES:
        return slug
    return FOCUS_ALIASES.get(slug)


def _exports(outcome: FormOutcome, result: CalcResult, model_name: str) -> list[tuple[Any, str]]:
    request = outcome.request
    leaves = tuple(dict.fromkeys(row.name.rpartition(".")[2] for row in result.modules))
    return render_all(ExportContext(request.lora, request.training, model_name, leaves))


def _job_link(outcome: FormOutcome, trainable: set[str]) -> str | None:
    """A prefilled job form for this configuration, when the model can be trained here."""
    request = outcome.request
    if request is None or request.model not in trainable:
        return None
    # the fields the job form shares with the calculator carry over; the rest keep the job's own defaults
    return "/jobs/new?" + urlencode({"model": request.model} | _job_fields(request))


def _job_fields(request) -> dict[str, str]:
    """The fields the job form shares with the calculator, as text; the rest keep the job's own defaults."""
    return {name: text for name, text in (as_text(request.lora) | as_text(request.training)).items() if name in JOB_FIELD_NAMES}


def _sweep_link(outcome: FormOutcome, trainable: set[str], focus: str | None) -> str | None:
    """The sweep form over the focused field (r when none), with this configuration, when the model can be trained here."""
    request = outcome.request
    if request is None or request.model not in trainable:
        return None
    return sweep_url(focus if focus and sweep_url(focus) else "r", {"model": request.model} | _job_fields(request))


def calculator_context(request: Request, catalogue: Catalogue, library) -> tuple[dict[str, Any], FormOutcome]:
    """Everything the calculator template shows for this query string."""
    params = {key: value for key, value in request.query_params.items()}
    outcome = calculator_form(params, catalogue, request.app.state.trees)
    result = outcome.result
    model_id = outcome.values.get("model", DEFAULT_MODEL) or DEFAULT_MODEL
    model_name = "your-org/your-model"
    if result is not None:
        model_name = result.model.hf_id or result.model.id or result.model.name
    context = {
        "fields": CALCULATOR_FIELDS,
        "values": outcome.values,
        "errors": outcome.errors,
        "result": result,
        "models": catalogue.models,
        "model_id": model_id,
        "custom_model": CUSTOM_MODEL,
        "focus": focused_field(request.query_params.get("focus")),
        "param_slugs": set(library.params),
        "exports": _exports(outcome, result, model_name) if result is not None else [],
        "job_link": _job_link(outcome, {model.id for model in catalogue.trainable()}),
        "sweep_link": _sweep_link(outcome, {model.id for model in catalogue.trainable()},
                                  focused_field(request.query_params.get("focus"))),
        "partial": is_htmx(request),
        "max_part": max((part.bytes for part in result.memory.components), default=1) if result else 1,
    }
    return context, outcome


@router.get("/calculator", response_class=HTMLResponse)
def calculator_page(request: Request, catalogue: CatalogueDep, library: LibraryDep):
    """The form and its results; a query string reproduces the view exactly (bad fields answer 422)."""
    def build() -> tuple[dict[str, Any], int]:
        context, outcome = calculator_context(request, catalogue, library)
        return context, 422 if outcome.errors else 200

    return render_page(request, TEMPLATE, build, block="results")
