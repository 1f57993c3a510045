"""The web process: routers by feature, templates, SSE. Never imports torch."""
