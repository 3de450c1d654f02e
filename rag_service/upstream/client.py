"""``OpenAICompatibleUpstream``: the backoff-protected streaming client of the upstream LLM.

One answer runs as a loop of attempts, and its items are pushed to a sink (``answer``) as they
arrive; ``stream`` offers the same as an async iterator. Each attempt streams
``POST {base_url}/chat/completions`` through aiohttp (``wire``);
when it fails with a retryable error the loop waits (full-jitter backoff, at least the upstream's
``Retry-After``), within the answer's attempts, deadline and the process-wide retry budget, and
tries again, continuing a cut answer without repeating or dropping text (``continuation``). While
the circuit breaker is open, a stream that needs to retry parks instead of sending: it waits for
the breaker's single probe to succeed and then resumes, spread over a short window. See
docs/upstream.md for the reasoning behind each rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from rag_service.domain import (
    BreakerState,
    ChatRequest,
    Completed,
    Failed,
    Resumed,
    RetryNotice,
    TextDelta,
    Timings,
    UpstreamHealth,
    UpstreamProbe,
)
from rag_service.errors import (
    CircuitOpen,
    RagServiceError,
    UpstreamConfigurationError,
    UpstreamError,
    UpstreamRejected,
    UpstreamRetryable,
)
from rag_service.ports import EventSink, UpstreamEvent, UpstreamMetrics
from rag_service.settings import ContinuationStrategy, UpstreamSettings
from rag_service.upstream.answer_state import AnswerState, retries_exhausted
from rag_service.upstream.backoff import BackoffPolicy
from rag_service.upstream.breaker import CircuitBreaker, Permit
from rag_service.upstream.breaker_sharing import ProbeGate
from rag_service.upstream.budget import RetryBudget
from rag_service.upstream.chunks import CompletionChunk
from rag_service.upstream.continuation import TextAligner, build_body
from rag_service.upstream.metrics import NoopUpstreamMetrics
from rag_service.upstream.probe import probe_models
from rag_service.upstream.wire import CompletionsEndpoint

Sleep = Callable[[float], Awaitable[None]]


class OpenAICompatibleUpstream:
    """Implements the ``ChatUpstream`` port against any OpenAI-compatible streaming server.

    Raises ``ConfigurationError`` when the settings cannot work (a base URL that is not http(s),
    a SOCKS proxy, an unreadable CA bundle). ``session``: an ``aiohttp.ClientSession`` the caller
    owns and closes; by default the client makes its own at the first request.
    """

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        budget: RetryBudget | None = None,
        breaker: CircuitBreaker | None = None,
        metrics: UpstreamMetrics | None = None,
        probe_gate: ProbeGate | None = None,
    ) -> None:
        self._settings = settings
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self._budget = budget or RetryBudget(settings.budget, clock=clock)
        self._breaker = breaker or CircuitBreaker(settings.breaker, clock=clock, rng=self._rng)
        self._metrics: UpstreamMetrics = metrics or NoopUpstreamMetrics()
        self._breaker.subscribe(lambda state: self._metrics.on_breaker_state(state.value))
        # Across replicas (BreakerSharing): one replica sends the half-open probe for all.
        self._probe_gate = probe_gate
        self._backoff = BackoffPolicy(settings.retry, self._rng)
        self._endpoint = CompletionsEndpoint(settings, session=session)
        # The last configuration problem (TLS trust, proxy refusal), in words, for /readyz.
        self._problem: str | None = None

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    @property
    def budget(self) -> RetryBudget:
        return self._budget

    def ensure_available(self) -> None:
        wait = self._breaker.seconds_until_probe()
        if wait is None or wait > 0:
            raise self._circuit_open_error()

    def health(self) -> UpstreamHealth:
        return UpstreamHealth(breaker=self._breaker.state.value, problem=self._problem)

    async def probe(self) -> UpstreamProbe:
        return await probe_models(
            self._endpoint, model=self._settings.model, secret=self._endpoint.secret
        )

    async def answer(self, request: ChatRequest, sink: EventSink, delivered: str = "") -> None:
        """Pass every item of the answer to ``sink`` as it comes, ending with one terminal item.

        ``delivered``: the answer's text its consumer already has (another replica generated
        it, then died): the answer continues after it through the continuation strategy, as
        after a cut of its own, and announces that with ``Resumed``.

        Each attempt streams in this frame (``_attempt`` only prepares it): a coroutine frame
        per nesting level would stay alive for the whole answer, for thousands of streams.
        """
        now = self._clock()
        answer = AnswerState(
            request=request, started_at=now, deadline=now + self._settings.retry.deadline_s
        )
        if delivered:
            answer.text += delivered.encode()
        permit = await self._acquire()
        if permit is Permit.denied:
            sink(self._failed(answer, self._circuit_open_error()))
            return
        self._budget.record_request()
        self._metrics.on_budget(self._budget.tokens)
        while True:
            attempt = self._attempt(answer, permit, sink)
            try:
                body = build_body(self._settings, answer.request, answer.delivered)
                await self._endpoint.stream(body, attempt)
                return  # attempt.end() delivered Completed before the body was drained
            except RagServiceError as error:
                attempt.judge(error)
                if isinstance(error, UpstreamConfigurationError):
                    self._problem = error.message
                failure = self._refuse_retry(answer, error)
                if failure is None and isinstance(error, UpstreamRetryable):
                    await self._prepare_retry(answer, error, sink)
                    failure = answer.failure
                if failure is not None:
                    sink(self._failed(answer, failure))
                    return
                permit = answer.next_permit
            finally:
                attempt.release_unjudged()  # cancelled before any verdict: a probe slot back

    async def stream(self, request: ChatRequest) -> AsyncIterator[UpstreamEvent]:
        """``answer`` as an async iterator; closing it early cancels the answer."""
        items: asyncio.Queue[UpstreamEvent | None] = asyncio.Queue()
        task = asyncio.get_running_loop().create_task(self.answer(request, items.put_nowait))
        task.add_done_callback(lambda _: items.put_nowait(None))  # None: the answer returned
        try:
            while (item := await items.get()) is not None:
                yield item
            task.result()  # an unexpected exception of the answer surfaces here
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def aclose(self) -> None:
        await self._endpoint.aclose()

    def _attempt(self, answer: AnswerState, permit: Permit, sink: EventSink) -> _Attempt:
        """Count a new attempt and make its chunk callback."""
        answer.made += 1
        answer.charged += 1
        self._metrics.on_attempt()
        replaying = self._settings.continuation is ContinuationStrategy.replay
        aligner = TextAligner(answer.delivered, verify=True) if replaying and answer.text else None
        return _Attempt(self, answer, permit, sink, aligner)

    def _judge(self, answer: AnswerState, permit: Permit, error: RagServiceError) -> None:
        if not isinstance(error, UpstreamError):  # our own fault (configuration): no verdict
            self._breaker.release(permit)
            return
        if isinstance(error, UpstreamRejected):  # a clear "no" still proves the upstream alive
            self._breaker.record_success(permit)
            return
        if isinstance(error, UpstreamRetryable) and error.reason == "pool_timeout":
            self._breaker.release(permit)  # our own pool was full: says nothing of the upstream
            return
        self._breaker.record_failure(permit)
        if permit is Permit.probe:
            answer.charged -= 1  # the probe tested the upstream for everyone

    def _refuse_retry(self, answer: AnswerState, error: RagServiceError) -> RagServiceError | None:
        """The error that ends the answer now, or None when another attempt may follow."""
        if not isinstance(error, UpstreamRetryable):
            return error
        if answer.text and self._settings.continuation is ContinuationStrategy.none:
            return UpstreamRetryable(
                f"the upstream answer was cut after {len(answer.delivered)} characters and "
                f"continuation is off: {error.message}",
                reason=error.reason,
                status=error.status,
            )
        retry = self._settings.retry
        if answer.charged >= retry.max_attempts:
            return retries_exhausted(
                "max_attempts", f"gave up after {answer.made} attempts: {error.message}", error
            )
        if error.retry_after_s is not None and error.retry_after_s > retry.retry_after_cap_s:
            return retries_exhausted(
                "retry_after_too_long",
                f"the upstream asked to wait {error.retry_after_s:.0f} s, longer than the "
                f"{retry.retry_after_cap_s:g} s this service waits",
                error,
                retry_after_s=error.retry_after_s,
            )
        return None

    async def _prepare_retry(
        self, answer: AnswerState, error: UpstreamRetryable, sink: EventSink
    ) -> None:
        """Wait for the next attempt; sets ``answer.next_permit`` or ``answer.failure``."""
        if answer.schedule is None:
            answer.schedule = self._backoff.schedule()
        delay = answer.schedule.next_delay(error.retry_after_s)
        if self._clock() + delay > answer.deadline:
            answer.failure = retries_exhausted(
                "deadline",
                f"no time left for another attempt within the "
                f"{self._settings.retry.deadline_s:g} s deadline: {error.message}",
                error,
            )
            return
        if self._breaker.state is BreakerState.closed:
            # A full pool of our own sent nothing upstream: no retry budget to protect it from.
            spent = error.reason == "pool_timeout" or self._budget.try_spend()
            self._metrics.on_budget(self._budget.tokens)
            if not spent:
                answer.failure = retries_exhausted(
                    "retry_budget_exhausted",
                    f"retry budget exhausted, the upstream fails too often: {error.message}",
                    error,
                )
                return
            self._metrics.on_retry(error.reason)
            sink(self._notice(answer, delay, error.reason))
            await self._sleep(delay)
            answer.next_permit = await self._acquire()
            if answer.next_permit is not Permit.denied:
                return
        await self._park(answer, sink)

    async def _park(self, answer: AnswerState, sink: EventSink) -> None:
        """Wait without sending while the circuit is open; parked waits cost no attempts."""
        announced = False
        released = False
        while True:
            permit = await self._acquire()
            if permit is Permit.probe or (permit is Permit.normal and released):
                answer.next_permit = permit  # a released retry spends no budget: the probe
                return  # just proved the upstream healthy
            remaining = answer.deadline - self._clock()
            if permit is Permit.normal:  # closed again: come back spread over a short window
                delay = self._rng.uniform(0.0, self._settings.breaker.release_window_s)
                delay = min(delay, max(0.0, remaining))
                sink(self._notice(answer, delay, "circuit_closed"))
                await self._sleep(delay)
                released = True
                continue
            released = False
            if remaining <= 0:
                answer.failure = retries_exhausted(
                    "circuit_open",
                    "the upstream circuit breaker stayed open until the answer's deadline",
                    None,
                    retry_after_s=self._breaker.retry_after_s(),
                )
                return
            wait = self._breaker.seconds_until_probe()
            if not announced:
                announced = True
                self._metrics.on_retry("circuit_open")
                estimate = wait if wait is not None else self._breaker.retry_after_s()
                sink(self._notice(answer, estimate, "circuit_open"))
            timeout = remaining if wait is None else min(wait, remaining)
            await self._breaker.wait_for_change(timeout, self._sleep)

    async def _acquire(self) -> Permit:
        """The breaker's permit; a half-open probe only if no other replica sends it."""
        permit = self._breaker.try_acquire()
        if permit is not Permit.probe or self._probe_gate is None:
            return permit
        try:
            claimed = await self._probe_gate.claim_probe(permit)
        except BaseException:  # cancelled while asking: the probe slot must not stay taken
            self._breaker.release(permit)
            raise
        return permit if claimed else Permit.denied

    def _notice(self, answer: AnswerState, delay_s: float, reason: str) -> RetryNotice:
        uncharged = answer.made - answer.charged
        return RetryNotice(
            attempt=answer.made + 1,
            max_attempts=self._settings.retry.max_attempts + uncharged,
            delay_s=delay_s,
            reason=reason,
        )

    def _first_text(self, answer: AnswerState) -> None:
        answer.first_text_at = self._clock()
        self._metrics.on_ttft(answer.first_text_at - answer.started_at)

    def _completed(self, answer: AnswerState) -> Completed:
        self._metrics.on_outcome("ok")
        ttft = answer.first_text_at
        return Completed(
            finish_reason=answer.finish_reason,
            usage=answer.usage,
            timings=Timings(
                ttft_ms=None if ttft is None else (ttft - answer.started_at) * 1000,
                total_ms=(self._clock() - answer.started_at) * 1000,
            ),
            attempts=answer.made,
        )

    def _failed(self, answer: AnswerState, error: RagServiceError) -> Failed[RagServiceError]:
        self._metrics.on_outcome(error.code)
        return Failed(error=error, attempts=answer.made)

    def _circuit_open_error(self) -> CircuitOpen:
        return CircuitOpen(
            "the upstream LLM keeps failing; its circuit breaker is open",
            retry_after_s=self._breaker.retry_after_s(),
        )

    def __repr__(self) -> str:
        return (
            f"OpenAICompatibleUpstream(base_url={self._settings.base_url!r}, "
            f"model={self._settings.model!r})"
        )


class _Attempt:
    """The ``AnswerConsumer`` of one attempt: takes each chunk as it is parsed.

    Judges the upstream for the breaker at its first chunk, lines the text up with what earlier
    attempts delivered, pushes the new text (after a ``Resumed`` when continuing) to the sink, and
    delivers ``Completed`` when the answer is complete. Part of the client (it uses its private
    state), split out to live as long as one attempt.
    """

    __slots__ = ("_aligner", "_answer", "_permit", "_resuming", "_sink", "_upstream", "judged")

    def __init__(
        self,
        upstream: OpenAICompatibleUpstream,
        answer: AnswerState,
        permit: Permit,
        sink: EventSink,
        aligner: TextAligner | None,  # None: no earlier text to reproduce
    ) -> None:
        self._upstream = upstream
        self._answer = answer
        self._permit = permit
        self._sink = sink
        self._aligner = aligner
        self._resuming = bool(answer.text)
        self.judged = False

    def __call__(self, chunk: CompletionChunk) -> None:
        """Runs once per token: the common case is kept to a few attribute reads."""
        if not self.judged:  # the upstream answers: enough for the breaker
            self.judged = True
            self._upstream._breaker.record_success(self._permit)
            self._upstream._problem = None  # TLS and proxy work again
        answer = self._answer
        text = chunk.text
        if self._aligner is not None:
            text = self._aligner.accept(text)
        if chunk.finish_reason is not None or chunk.usage is not None:
            answer.note(chunk)
        if text:
            if self._resuming:
                self._announce_resumed()
            if answer.first_text_at is None:
                self._upstream._first_text(answer)
            answer.text += text.encode()
            self._sink(TextDelta(text))

    def end(self) -> None:
        """The answer is complete: it must have caught up with earlier text; then Completed."""
        if self._aligner is not None:
            self._aligner.finish()
        self._announce_resumed()
        self._sink(self._upstream._completed(self._answer))

    def judge(self, error: RagServiceError) -> None:
        """The attempt failed with ``error``: the breaker's verdict, unless it had one."""
        if not self.judged:
            self.judged = True
            self._upstream._judge(self._answer, self._permit, error)

    def release_unjudged(self) -> None:
        """Give the breaker's slot back if the attempt ended without a verdict."""
        if not self.judged:
            self._upstream._breaker.release(self._permit)

    def _announce_resumed(self) -> None:
        if self._resuming:
            self._resuming = False
            strategy = self._upstream._settings.continuation.value
            self._sink(Resumed(attempt=self._answer.made, strategy=strategy))
