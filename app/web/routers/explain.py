"""Router: explain."""

from fastapi import APIRouter

router = APIRouter()
