"""The HTTP layer: routers, request schemas and the app factory."""
