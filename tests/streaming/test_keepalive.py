"""The process-wide keep-alive ticker: only readers silent for a whole tick are told to ping."""

from __future__ import annotations

import asyncio

from rag_service.streaming.keepalive import KeepAlive

INTERVAL_S = 0.02  # ticks every 10 ms
WAIT_LIMIT_S = 5.0


class RecordingReader:
    """Records what the ticker does to it: ``reset`` (wrote cleared) and ``ping``."""

    def __init__(self, *, always_writing: bool = False) -> None:
        self.calls: list[str] = []
        self.always_writing = always_writing
        self._wrote = True
        self.pinged = asyncio.Event()

    @property
    def wrote(self) -> bool:
        return self.always_writing or self._wrote

    @wrote.setter
    def wrote(self, value: bool) -> None:
        if not value:
            self.calls.append("reset")
        self._wrote = value

    def ping_due(self) -> None:
        self.calls.append("ping")
        self.wrote = True  # what a real reader does: the ping is output
        self.pinged.set()


async def wait_for_pings(reader: RecordingReader, count: int) -> None:
    async with asyncio.timeout(WAIT_LIMIT_S):
        while reader.calls.count("ping") < count:
            reader.pinged.clear()
            await reader.pinged.wait()


async def test_a_silent_reader_is_pinged_only_after_a_whole_quiet_tick() -> None:
    keepalive = KeepAlive(INTERVAL_S)
    silent = RecordingReader()
    keepalive.add(silent)

    await wait_for_pings(silent, 2)
    keepalive.close()

    # Every ping follows a tick that found the reader's output flag set and cleared it.
    assert silent.calls[:4] == ["reset", "ping", "reset", "ping"]


async def test_a_reader_that_keeps_writing_is_never_pinged() -> None:
    keepalive = KeepAlive(INTERVAL_S)
    busy = RecordingReader(always_writing=True)
    silent = RecordingReader()
    keepalive.add(busy)
    keepalive.add(silent)

    await wait_for_pings(silent, 3)
    keepalive.close()

    assert "ping" not in busy.calls
    assert busy.calls.count("reset") >= 3


async def test_discarded_and_closed_readers_get_no_more_pings() -> None:
    keepalive = KeepAlive(INTERVAL_S)
    gone = RecordingReader()
    watched = RecordingReader()
    keepalive.add(gone)
    keepalive.discard(gone)
    keepalive.add(watched)

    await wait_for_pings(watched, 2)
    keepalive.close()
    pings = watched.calls.count("ping")
    await asyncio.sleep(INTERVAL_S * 3)  # a few ticks' time: none may arrive after close

    assert gone.calls == []
    assert watched.calls.count("ping") == pings
    assert len(keepalive) == 0
