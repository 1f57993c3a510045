"""Router: api_jobs."""

from fastapi import APIRouter

router = APIRouter()
