"""A stream's events as replicas share them, and what a shared store records of a stream.

A session hands its readers its events in two kinds: ``DeltaEvent``, a piece of the answer as
its text's JSON string literal (quotes included), and ``NamedEvent``, any other event (``meta``,
``retry``, ``resumed``, ``done``, ``error``) as its name and one line of JSON. The same values
are copied to the shared store (``rag_service.ports.SharedStreams``) and read back from it, so a
resume on another replica shows the same ids and bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple


class DeltaEvent(NamedTuple):
    seq: int
    literal: bytes  # the text as a JSON string literal, quotes included


class NamedEvent(NamedTuple):
    seq: int
    name: str
    data: bytes  # one line of JSON: an object

    def payload(self) -> dict[str, Any]:
        value = json.loads(self.data)
        assert isinstance(value, dict), "an event's data is a JSON object"
        return value


SessionEvent = DeltaEvent | NamedEvent

# The names of the events that end a stream.
TERMINAL_EVENTS = frozenset({"done", "error"})


class SharedState(StrEnum):
    LIVE = "live"  # its replica generates it and copies its events
    ENDED = "ended"  # its last event (``done``/``error``) is in the store
    BROKEN = "broken"  # its copy has a hole (the store failed meanwhile): never served


@dataclass(frozen=True)
class StreamRecord:
    """What the store knows of a stream besides its events."""

    stream_id: str
    context_id: str
    principal: str | None  # its creator: only they may resume or cancel it
    replica: str  # the replica that generates it
    state: SharedState
    last_seq: int  # the newest seq in the store
    cancel_requested: bool = False
    replica_alive: bool = True  # its generating replica said it is alive a moment ago


@dataclass(frozen=True)
class SharedStreamStats:
    shared: int = 0  # streams copied to the store since start
    unshared: int = 0  # streams served on local state only (the store was down): fallbacks
    dropped: int = 0  # streams whose copy stopped half-way (the store failed mid-stream)
    taken_over: int = 0  # streams of a dead replica this one took over and continued
    moved: int = 0  # streams of this replica another one took over (it was thought dead)
    flushes: int = 0  # batches written (one round trip each)
    events: int = 0  # events written
    commands: int = 0  # commands those round trips carried
