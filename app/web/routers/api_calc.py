"""Router: api_calc."""

from fastapi import APIRouter

router = APIRouter()
