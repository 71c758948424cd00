"""The HTTP API: Starlette routes for /v1, envelopes, SSE, auth, metrics and OpenAPI."""
