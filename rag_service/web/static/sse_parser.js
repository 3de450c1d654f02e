// Server-Sent Events parsing, as the WHATWG HTML standard's "Parsing an event stream" says.
//
// The page cannot use EventSource: it sends no Authorization header and cannot POST. So the
// client reads the response body with fetch and feeds the decoded text here, chunk by chunk.
// Lines end in CRLF, CR or LF (a CRLF split across two chunks is one line end); `data:` lines
// of one event are joined with LF; `id:` sets the last event id (kept across events, ignored if
// it contains NUL); `retry:` (digits only) is the reconnection time; lines starting with `:`
// are comments; one space after the colon is dropped; an event is dispatched at an empty line,
// and only if it has data; an unfinished event at the end of the stream is discarded.

export class SseParser {
  #line = ""; // the start of the current line, carried across chunks
  #afterCR = false; // the previous chunk ended in CR: a leading LF here ends no new line
  #started = false; // a byte order mark is skipped at the very start only
  #data = [];
  #eventType = "";
  #lastEventId = "";

  // onEvent({type, data, id}) for each event; onRetry(ms) for each valid `retry:` line.
  constructor({ onEvent, onRetry = () => {} }) {
    this.onEvent = onEvent;
    this.onRetry = onRetry;
  }

  get lastEventId() {
    return this.#lastEventId;
  }

  feed(text) {
    if (!this.#started && text.length > 0) {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let start = 0;
    if (this.#afterCR && text.charCodeAt(0) === 10) start = 1;
    this.#afterCR = false;
    for (let i = start; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code !== 10 && code !== 13) continue;
      const line = this.#line + text.slice(start, i);
      this.#line = "";
      if (code === 13) {
        if (i + 1 === text.length) this.#afterCR = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
      this.#processLine(line);
    }
    this.#line += text.slice(start);
  }

  #processLine(line) {
    if (line === "") {
      this.#dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" a comment, e.g. the service's ": ping"
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === "event") this.#eventType = value;
    else if (field === "data") this.#data.push(value);
    else if (field === "id" && !value.includes("\0")) this.#lastEventId = value;
    else if (field === "retry" && /^[0-9]+$/.test(value)) this.onRetry(Number(value));
  }

  #dispatch() {
    if (this.#data.length === 0) {
      this.#eventType = "";
      return;
    }
    const event = {
      type: this.#eventType || "message",
      data: this.#data.join("\n"),
      id: this.#lastEventId,
    };
    this.#data = [];
    this.#eventType = "";
    this.onEvent(event);
  }
}
