"""The app fixtures of tests/app (the real app, embedded Chroma, fast fakes) for these tests."""

from tests.app.conftest import service

__all__ = ["service"]
