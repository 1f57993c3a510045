"""Router: calculator."""

from fastapi import APIRouter

router = APIRouter()
