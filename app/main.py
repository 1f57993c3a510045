"""create_app: the FastAPI application with every router, static files and error pages."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.accounts.throttle import LoginThrottle
from app.calc.catalogue import load_catalogue
from app.content.library import load_library
from app.jobs.db import init_db, make_engine
from app.jobs.trees import TreeService
from app.settings import PROJECT_ROOT, Settings, get_settings
from app.web import auth, errors, guard, openapi, security
from app.web.concurrency import RequestSlots
from app.web.page_cache import PageCache
from app.web.sse import close_streams, open_streams
from app.web.routers import (account, api_calc, api_jobs, api_params, calculator, experiments, explain, job_ownership, jobs, pages,
                             params, search)

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; content is loaded and rendered here, once, so a bad file stops start-up."""
    settings = settings or get_settings()
    library = load_library(settings.content_dir)
    catalogue = load_catalogue(settings.content_dir / "models")  # a bad catalogue file stops start-up here
    engine = make_engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        init_db(engine)
        logger.info("Lorapedia ready: %d parameter pages, %d guides", len(library.params), len(library.guides))
        # blocking work runs on as many threads as the database pool has connections for (web_threads)
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.web_threads
        open_streams(app)
        yield
        app.state.trees.close()
        close_streams(app)
        engine.dispose()

    app = FastAPI(
        title="Lorapedia",
        summary="An interactive encyclopedia of LoRA fine-tuning parameters.",
        version="0.1.0",
        lifespan=lifespan,
        # The stock Swagger page loads its code from a CDN; /docs is our own page built from the schema.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.library = library
    app.state.catalogue = catalogue
    app.state.engine = engine
    app.state.login_throttle = LoginThrottle(settings.login_failures, settings.login_window_seconds)
    app.state.trees = TreeService(engine)  # its helper process starts on the first pasted config
    app.state.page_cache = PageCache()  # content is loaded once above, so a page of it is rendered once per URL
    app.mount("/static", StaticFiles(directory=PROJECT_ROOT / "static"), name="static")
    errors.install(app, settings)
    # Middleware added last runs first: request slots (a waiting request holds nothing yet), headers on every
    # answer, the body and time bounds, the cross-site checks (which read the body RequestGuard has bounded),
    # then who is signed in.
    auth.install(app)
    app.add_middleware(security.CrossSiteGuard, public_url=settings.public_url)
    guard.install(app, settings.max_body_bytes, settings.work_seconds)
    app.add_middleware(security.SecurityHeaders)
    app.add_middleware(RequestSlots, limit=settings.web_threads)
    security.install_templates()
    # experiments before jobs: /jobs/compare is not a /jobs/{job_id}
    for module in (pages, params, search, api_params, calculator, explain, api_calc, experiments, jobs, api_jobs):
        app.include_router(module.router)
    for router in (job_ownership.api, job_ownership.pages, account.router, account.api):
        app.include_router(router)
    openapi.install(app, settings.max_body_bytes)
    return app
