"""The real app, served by uvicorn on loopback from a thread, behind a ``FaultProxy``.

The browser tests use Playwright's sync API, which must not run inside an event loop; so the
service gets its own thread and loop: ``create_app`` over an embedded Chroma store with the
ingested test catalog and fast fakes (``HashingEmbedder``, ``ScriptedUpstream``), served by
``running_server`` (the service's own uvicorn configuration), with a fault proxy in front that
the browser talks to, so a test can cut the page's connection mid-answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from ingest.pipeline import IngestPipeline
from rag_service.adapters.chroma_store import ChromaStore
from rag_service.app import Components, create_app
from rag_service.settings import IngestSettings, Settings
from tests.fakes.retrieval import HashingEmbedder
from tests.fakes.upstream import ScriptedUpstream, Step
from tests.fixture_servers.fault_proxy import LOOPBACK, FaultProxy
from tests.live_server import running_server

T = TypeVar("T")
START_TIMEOUT_S = 120.0  # the ingest and Chroma's start; the bound only stops a hang
WAIT_TIMEOUT_S = 30.0


@dataclass
class WebService:
    url: str  # through the fault proxy: what the browser loads
    direct_url: str  # the service itself
    upstream: ScriptedUpstream
    proxy: FaultProxy
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event = field(repr=False)

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on the service's loop (its objects are not thread-safe)."""
        result: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(function(*args))
            except BaseException as error:
                result.set_exception(error)

        self.loop.call_soon_threadsafe(run)
        return result.result(timeout=WAIT_TIMEOUT_S)

    def metric(self, name: str) -> float:
        """The value of an unlabelled metric from the service's ``/metrics``."""
        text = httpx.get(f"{self.direct_url}/metrics", timeout=10).text
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        if found is None:
            raise AssertionError(f"{name} is not in /metrics")
        return float(found.group(1))

    def wait_for_metric(self, name: str, value: float) -> None:
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while (seen := self.metric(name)) != value:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} is {seen}, not {value}, after {WAIT_TIMEOUT_S} s")
            time.sleep(0.05)


@contextmanager
def web_service(settings: Settings, script: Sequence[Step]) -> Iterator[WebService]:
    """The service for ``settings`` (its catalog ingested), answering with ``script``."""
    started: concurrent.futures.Future[WebService] = concurrent.futures.Future()
    thread = threading.Thread(
        target=lambda: asyncio.run(_serve(settings, script, started)), daemon=True
    )
    thread.start()
    service = started.result(timeout=START_TIMEOUT_S)
    try:
        yield service
    finally:
        service.loop.call_soon_threadsafe(service.stop.set)
        thread.join(timeout=WAIT_TIMEOUT_S)
        assert not thread.is_alive(), "the service thread did not stop"


async def _serve(
    settings: Settings, script: Sequence[Step], started: concurrent.futures.Future[WebService]
) -> None:
    try:
        embedder = HashingEmbedder(64)
        store = ChromaStore.open(settings.chroma)
        IngestPipeline(store, embedder, IngestSettings()).run([settings.ingest.catalog_dir])
        upstream = ScriptedUpstream(script=script)
        app = create_app(settings, Components(embedder=embedder, store=store, upstream=upstream))
        stop = asyncio.Event()
        async with (
            app.router.lifespan_context(app),
            running_server(app, settings) as (_, port),
            FaultProxy(LOOPBACK, port) as proxy,
        ):
            started.set_result(
                WebService(
                    url=proxy.url("/"),
                    direct_url=f"http://{LOOPBACK}:{port}",
                    upstream=upstream,
                    proxy=proxy,
                    loop=asyncio.get_running_loop(),
                    stop=stop,
                )
            )
            await stop.wait()
    except BaseException as error:
        if not started.done():
            started.set_exception(error)
        raise
