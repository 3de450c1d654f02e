// One answer from POST /rag/stream, read with fetch and resumed across dropped connections.
//
// Rules (docs/web.md):
// - A dropped connection (a network error, or the body ending before `done`/`error`) is
//   resumed with GET /rag/stream/{id} and `Last-Event-ID`; before the first event names the
//   stream, the question is sent again (nothing of it has been shown).
// - Waits are full-jitter backoff, random(0, min(cap, base * 2^(n-1))), never shorter than the
//   server's `retry:` hint; a 429 or 503 waits at least its `Retry-After`. An attempt that
//   brings new events resets the count; after `maxAttempts` failed attempts in a row it gives up.
// - Only errors that say retrying can help are retried (`retryable` in the JSON error, or a
//   proxy's 502/503/504 without one); any other 4xx ends the answer at once.
// - Events are applied once: an event whose seq is not above the last applied one is skipped,
//   so a replay never shows text twice.

import { SseParser } from "./sse_parser.js";

const RETRY_STATUSES = new Set([408, 429, 502, 503, 504]);

export class ServiceError extends Error {
  constructor({ code, message, retryable, status = null, retryAfterMs = null }) {
    super(message);
    this.code = code;
    this.retryable = Boolean(retryable);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

export function retryAfterMs(header, now = Date.now()) {
  if (header === null || header.trim() === "") return null;
  if (/^\s*\d+\s*$/.test(header)) return Number(header) * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

// The wait before attempt `attempt` (1, 2, ...): full jitter, random(0, min(cap, base *
// 2^(attempt-1))), raised to the server's `retry:` hint and to a `Retry-After`.
export function reconnectDelay(
  attempt,
  { baseDelayMs, maxDelayMs, random = Math.random, serverRetryMs = 0, retryAfterMs = null },
) {
  const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
  return Math.max(Math.floor(random() * ceiling), serverRetryMs, retryAfterMs ?? 0);
}

async function errorOf(response) {
  const wait = retryAfterMs(response.headers.get("Retry-After"));
  let body = null;
  try {
    body = (await response.json()).error ?? null;
  } catch {
    body = null; // not our JSON: a proxy's page
  }
  return new ServiceError({
    code: body?.code ?? `http_${response.status}`,
    message: body?.message ?? `HTTP ${response.status} ${response.statusText}`.trim(),
    retryable: body ? Boolean(body.retryable) : RETRY_STATUSES.has(response.status),
    status: response.status,
    retryAfterMs: wait,
  });
}

function seqOf(id, streamId) {
  const colon = id.lastIndexOf(":");
  if (colon === -1 || (streamId !== null && id.slice(0, colon) !== streamId)) return null;
  const seq = Number(id.slice(colon + 1));
  return Number.isSafeInteger(seq) ? seq : null;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

export class AnswerStream {
  #controller = new AbortController();
  #streamId = null;
  #lastSeq = 0;
  #lastEventId = null;
  #serverRetryMs = 0;
  #stopRequested = false;
  #finished = false;
  #wake = null; // aborts the wait before the next attempt

  // options: baseUrl (the service's URL, a string ending in "/"), apiKey, contextId, body,
  // handlers {onEvent(name, data), onStatus(status), onFailure(ServiceError)}, maxAttempts,
  // baseDelayMs, maxDelayMs, random (for tests).
  constructor(options) {
    this.options = {
      maxAttempts: 10,
      baseDelayMs: 500,
      maxDelayMs: 30000,
      random: Math.random,
      ...options,
    };
  }

  get streamId() {
    return this.#streamId;
  }

  get finished() {
    return this.#finished;
  }

  // Runs until the answer ends (done, error, given up, or closed); never throws.
  async run() {
    const { maxAttempts } = this.options;
    let failures = 0;
    while (!this.#finished && !this.#controller.signal.aborted) {
      if (this.#stopRequested && this.#streamId === null) return this.#stoppedBeforeStart();
      const seqBefore = this.#lastSeq;
      let failure;
      try {
        failure = await this.#attempt();
      } catch (error) {
        if (this.#controller.signal.aborted) break;
        failure = new ServiceError({
          code: "connection_lost",
          message: `the connection was lost (${error.message})`,
          retryable: true,
        });
      }
      if (this.#finished || this.#controller.signal.aborted) break;
      if (this.#stopRequested && this.#streamId === null) return this.#stoppedBeforeStart();
      if (!failure.retryable) return this.#fail(failure);
      failures = this.#lastSeq > seqBefore ? 1 : failures + 1;
      if (failures > maxAttempts) {
        return this.#fail(
          new ServiceError({
            code: failure.code,
            message: `${failure.message}; gave up after ${maxAttempts} attempts`,
            retryable: true,
            status: failure.status,
          }),
        );
      }
      const delayMs = this.#delay(failures, failure.retryAfterMs);
      this.#status({
        state: "reconnecting",
        resuming: this.#streamId !== null,
        attempt: failures,
        maxAttempts,
        delayMs,
        failure,
      });
      this.#wake = new AbortController(); // Stop cuts the wait short
      await sleep(delayMs, AbortSignal.any([this.#controller.signal, this.#wake.signal]));
    }
  }

  // Ask the service to cancel the generation; the stream then ends with an `error` event
  // whose code is `cancelled`. Before the stream id is known, the request goes out with it.
  async stop() {
    if (this.#finished || this.#stopRequested) return;
    this.#stopRequested = true;
    // Waiting to retry: no need to wait any more (to resume and read how the stream ended,
    // or, before it has started, to end here).
    this.#wake?.abort();
    if (this.#streamId !== null) await this.#sendCancel();
  }

  // Leave: abort the request and release the reader. `cancelOnServer` also asks the service to
  // stop generating (a request that outlives the page, for unload).
  close({ cancelOnServer = false } = {}) {
    if (cancelOnServer && !this.#finished && this.#streamId !== null) {
      fetch(this.#url(`rag/stream/${encodeURIComponent(this.#streamId)}`), {
        method: "DELETE",
        headers: this.#headers(),
        keepalive: true,
      }).catch(() => {});
    }
    this.#finished = true;
    this.#controller.abort();
  }

  #delay(attempt, retryAfter) {
    return reconnectDelay(attempt, {
      ...this.options,
      serverRetryMs: this.#serverRetryMs,
      retryAfterMs: retryAfter,
    });
  }

  #url(path) {
    return new URL(path, this.options.baseUrl).href;
  }

  #headers(extra = {}) {
    const headers = { ...extra };
    if (this.options.apiKey) headers.Authorization = `Bearer ${this.options.apiKey}`;
    return headers;
  }

  // One connection: returns the failure to retry (or not), or undefined once finished.
  async #attempt() {
    const signal = this.#controller.signal;
    let response;
    if (this.#streamId === null) {
      this.#status({ state: "connecting" });
      const query = new URLSearchParams({ context: this.options.contextId });
      response = await fetch(this.#url(`rag/stream?${query}`), {
        method: "POST",
        headers: this.#headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
        body: JSON.stringify(this.options.body),
        signal,
        cache: "no-store",
      });
    } else {
      const extra = { Accept: "text/event-stream" };
      if (this.#lastEventId !== null) extra["Last-Event-ID"] = this.#lastEventId;
      response = await fetch(this.#url(`rag/stream/${encodeURIComponent(this.#streamId)}`), {
        headers: this.#headers(extra),
        signal,
        cache: "no-store",
      });
    }
    if (!response.ok) return errorOf(response);
    this.#status({ state: "connected" });
    await this.#read(response);
    if (this.#finished) return undefined;
    return new ServiceError({
      code: "connection_lost",
      message: "the connection closed before the answer was complete",
      retryable: true,
    });
  }

  async #read(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser({
      onEvent: (event) => this.#apply(event),
      onRetry: (ms) => {
        this.#serverRetryMs = ms;
      },
    });
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
        if (this.#finished) break;
      }
    } finally {
      // Whatever ended the loop (done, an error, abort), the body is released.
      reader.cancel().catch(() => {});
    }
  }

  #apply(event) {
    const seq = seqOf(event.id, this.#streamId);
    if (seq === null || seq <= this.#lastSeq || this.#finished) return; // seen, or not ours
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    if (this.#streamId === null) {
      if (event.type !== "meta") return;
      this.#streamId = data.stream_id ?? event.id.slice(0, event.id.lastIndexOf(":"));
      if (this.#stopRequested) this.#sendCancel();
    }
    this.#lastSeq = seq;
    this.#lastEventId = event.id;
    if (event.type === "done" || event.type === "error") this.#finished = true;
    this.options.handlers.onEvent(event.type, data);
    if (event.type === "error") this.#status({ state: "closed" });
    if (event.type === "done") this.#status({ state: "idle" });
  }

  async #sendCancel() {
    try {
      const response = await fetch(
        this.#url(`rag/stream/${encodeURIComponent(this.#streamId)}`),
        { method: "DELETE", headers: this.#headers() },
      );
      // 404: the answer ended (or expired) meanwhile; its last event says how.
      if (!response.ok && response.status !== 404) {
        this.options.handlers.onFailure(await errorOf(response), { stop: true });
      }
    } catch (error) {
      this.options.handlers.onFailure(
        new ServiceError({
          code: "cancel_failed",
          message: `could not stop the answer: ${error.message}`,
          retryable: true,
        }),
        { stop: true },
      );
    }
  }

  // Stopped while the question had not started a stream (waiting out a 429, say).
  #stoppedBeforeStart() {
    this.#finished = true;
    this.#status({ state: "closed" });
    this.options.handlers.onEvent("error", {
      code: "cancelled",
      message: "stopped before the answer started",
      retryable: false,
    });
  }

  #fail(error) {
    this.#finished = true;
    this.#status({ state: "closed" });
    this.options.handlers.onFailure(error, { stop: false });
  }

  #status(status) {
    this.options.handlers.onStatus(status);
  }
}
