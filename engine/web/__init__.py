"""``engine serve`` (SPEC §12): the public routes that links in messages point to, ESP webhooks,
the API, and the background tick, as one ASGI application (FastAPI on uvicorn)."""
