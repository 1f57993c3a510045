"""Annotated dependency aliases shared by the routers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.calc.catalogue import Catalogue
from app.calc.tree import TreeSource
from app.content.library import Library
from app.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


def get_library(request: Request) -> Library:
    """The encyclopedia, loaded and rendered once at start-up."""
    return request.app.state.library


def get_catalogue(request: Request) -> Catalogue:
    """The model catalogue, loaded and checked once at start-up."""
    return request.app.state.catalogue


def get_trees(request: Request) -> TreeSource:
    """Module trees of pasted configs (memory, database, then the warm tree helper process)."""
    return request.app.state.trees


def get_engine(request: Request) -> Engine:
    """The database engine."""
    return request.app.state.engine


def get_session(request: Request) -> Iterator[Session]:
    """A database session for one request."""
    with Session(request.app.state.engine) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
LibraryDep = Annotated[Library, Depends(get_library)]
CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
TreesDep = Annotated[TreeSource, Depends(get_trees)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
