// The chat page: wires the form, the status bar, the banner and the conversation to
// AnswerStream (stream_client.js). Answers render through MarkdownStream (markdown.js); no
// model or catalog text ever reaches innerHTML.

import { MarkdownStream } from "./markdown.js";
import { AnswerStream } from "./stream_client.js";

const KEY_STORAGE = "rag-chat.api-key";
const CONVERSATION_STORAGE = "rag-chat.conversation";
const HISTORY_TURNS = 10; // earlier turns sent along as `messages`
const RETRY_HINT = {
  true: "Retrying can help.",
  false: "Retrying will not help.",
};

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("ask"),
  question: $("question"),
  send: $("send"),
  stop: $("stop"),
  apiKey: $("api-key"),
  newConversation: $("new-conversation"),
  conversation: $("conversation"),
  template: $("turn-template"),
  status: $("status"),
  statusText: $("status-text"),
  countdown: $("status-countdown"),
  banner: $("banner"),
  bannerCode: $("banner-code"),
  bannerMessage: $("banner-message"),
  bannerHint: $("banner-hint"),
  bannerRetry: $("banner-retry"),
  bannerDismiss: $("banner-dismiss"),
};

// The page's own URL is the service's: the API paths are resolved against it, so the page
// also works behind a reverse proxy that serves the service under a path prefix.
const baseUrl = new URL(".", document.baseURI).href;
let current = null; // {stream, turn} of the answer in progress
let lastQuestion = null;
const history = []; // finished turns: {role, content}
let countdownTimer = null;

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// One conversation id per tab (sessionStorage): the service's `context` for its questions.
function conversationId() {
  let id = sessionStorage.getItem(CONVERSATION_STORAGE);
  if (!id || !/^[A-Za-z0-9._:-]{1,128}$/.test(id)) {
    id = `web-${randomId()}`;
    sessionStorage.setItem(CONVERSATION_STORAGE, id);
  }
  return id;
}

function setStatus(state, text, deadline = null) {
  clearInterval(countdownTimer);
  ui.status.dataset.state = state;
  ui.statusText.textContent = text;
  ui.countdown.textContent = "";
  if (deadline === null) return;
  const tick = () => {
    const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
    ui.countdown.textContent = `(${left} s)`;
    if (left === 0) clearInterval(countdownTimer);
  };
  tick();
  countdownTimer = setInterval(tick, 250);
}

function showBanner(error, extra = "") {
  ui.banner.hidden = false;
  ui.banner.dataset.retryable = String(error.retryable);
  ui.banner.dataset.code = error.code;
  ui.bannerCode.textContent = error.status ? `${error.status} ${error.code}:` : `${error.code}:`;
  ui.bannerMessage.textContent = error.message;
  const hint = error.status === 401 ? " Check the API key." : "";
  ui.bannerHint.textContent = `${RETRY_HINT[error.retryable]}${hint}${extra}`;
  ui.bannerRetry.hidden = !(error.retryable && current === null && lastQuestion !== null);
}

function hideBanner() {
  ui.banner.hidden = true;
}

function newTurn(question) {
  const turn = ui.template.content.firstElementChild.cloneNode(true);
  turn.querySelector(".question-text").textContent = question;
  const answer = turn.querySelector(".answer");
  answer.dataset.state = "streaming";
  ui.conversation.append(turn);
  turn.scrollIntoView({ block: "end" });
  return {
    element: turn,
    answer,
    markdown: new MarkdownStream(turn.querySelector(".answer-text")),
  };
}

function showMeta(turn, meta) {
  const context = meta.context ?? {};
  const box = turn.element.querySelector(".answer-meta");
  box.hidden = false;
  const state = turn.element.querySelector(".context-state");
  state.dataset.state = context.state ?? "";
  const age = typeof context.age_s === "number" ? `, ${Math.round(context.age_s)} s old` : "";
  const version = context.catalog_version != null ? `, catalog v${context.catalog_version}` : "";
  state.textContent = `Context: ${context.state ?? "unknown"}${version}${age}`;
  const list = turn.element.querySelector(".sources");
  if ((context.sources ?? []).length === 0) {
    const none = document.createElement("li");
    none.textContent = "No catalog sources.";
    list.append(none);
  }
  for (const source of context.sources ?? []) {
    const item = document.createElement("li");
    const title = document.createElement("span");
    title.className = "source-title";
    title.textContent = String(source.title ?? source.id ?? "");
    const score = document.createElement("span");
    score.className = "source-score";
    const value = source.score;
    score.textContent = typeof value === "number" ? ` (score ${value.toFixed(2)})` : "";
    item.append(title, score);
    list.append(item);
  }
}

function endTurn(turn, state, note = "") {
  turn.markdown.finish();
  turn.answer.dataset.state = state;
  const noteElement = turn.element.querySelector(".answer-note");
  noteElement.hidden = note === "";
  noteElement.textContent = note;
}

function onEvent(turn, name, data) {
  if (name === "meta") {
    showMeta(turn, data);
  } else if (name === "delta") {
    turn.markdown.append(String(data.text ?? ""));
    if (ui.status.dataset.state !== "connected") setStatus("connected", "Connected");
  } else if (name === "retry") {
    const reason = data.reason ? `: ${data.reason}` : "";
    setStatus(
      "upstream-retrying",
      `Connected; upstream retrying (attempt ${data.attempt} of ${data.max_attempts})${reason}`,
      Date.now() + (data.delay_ms ?? 0),
    );
  } else if (name === "resumed") {
    setStatus("connected", "Connected; upstream resumed");
  } else if (name === "done") {
    history.push(
      { role: "user", content: turn.question },
      { role: "assistant", content: turn.markdown.text },
    );
    endTurn(turn, "done");
    finish("Ready");
  } else if (name === "error") {
    if (data.code === "cancelled") {
      hideBanner(); // what it waited out no longer matters
      endTurn(turn, "stopped", "Stopped.");
      finish("Stopped");
    } else {
      endTurn(turn, "failed", "The answer failed.");
      finish("Failed", data);
    }
  }
}

function onStatus(turn, status) {
  if (status.state === "connecting") {
    setStatus("connecting", "Connecting…");
  } else if (status.state === "connected") {
    hideBanner();
    setStatus("connected", "Connected");
  } else if (status.state === "reconnecting") {
    const { resuming, attempt, maxAttempts, delayMs, failure } = status;
    const seconds = Math.ceil(delayMs / 1000);
    // Resuming a stream is reconnecting; before it has started, the question is sent again.
    const doing = resuming ? "Reconnecting" : "Retrying";
    setStatus(
      "reconnecting",
      `${doing} (attempt ${attempt} of ${maxAttempts}), next try in ${seconds} s`,
      Date.now() + delayMs,
    );
    if (failure.status) showBanner(failure, ` Trying again in ${seconds} s.`);
  }
}

function onFailure(turn, error, { stop }) {
  if (stop) {
    showBanner(error);
    return;
  }
  endTurn(turn, "failed", "The answer failed.");
  finish("Failed", error);
}

function finish(statusText, error = null) {
  current = null;
  setStatus(error ? "closed" : "idle", statusText);
  if (error) showBanner(error);
  ui.send.disabled = false;
  ui.stop.disabled = true;
}

function ask(question) {
  if (current !== null) return;
  hideBanner();
  lastQuestion = question;
  const turn = newTurn(question);
  turn.question = question;
  const stream = new AnswerStream({
    baseUrl,
    apiKey: ui.apiKey.value.trim(),
    contextId: conversationId(),
    body: { query: question, messages: history.slice(-2 * HISTORY_TURNS) },
    handlers: {
      onEvent: (name, data) => onEvent(turn, name, data),
      onStatus: (status) => onStatus(turn, status),
      onFailure: (error, how) => onFailure(turn, error, how),
    },
  });
  current = { stream, turn };
  ui.send.disabled = true;
  ui.stop.disabled = false;
  stream.run();
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = ui.question.value.trim();
  if (question === "" || current !== null) return;
  ui.question.value = "";
  ask(question);
});

ui.question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});

ui.stop.addEventListener("click", () => {
  if (current === null) return;
  ui.stop.disabled = true;
  setStatus(ui.status.dataset.state, "Stopping…");
  current.stream.stop();
});

ui.apiKey.value = sessionStorage.getItem(KEY_STORAGE) ?? "";
ui.apiKey.addEventListener("change", () => {
  sessionStorage.setItem(KEY_STORAGE, ui.apiKey.value.trim());
});
ui.form.addEventListener("submit", () => {
  sessionStorage.setItem(KEY_STORAGE, ui.apiKey.value.trim());
});
$("settings").addEventListener("submit", (event) => event.preventDefault());

ui.newConversation.addEventListener("click", () => {
  current?.stream.close({ cancelOnServer: true });
  current = null;
  history.length = 0;
  ui.conversation.replaceChildren();
  sessionStorage.removeItem(CONVERSATION_STORAGE);
  hideBanner();
  finish("Ready");
  ui.question.focus();
});

ui.bannerDismiss.addEventListener("click", () => {
  hideBanner();
  ui.question.focus();
});
ui.bannerRetry.addEventListener("click", () => {
  if (lastQuestion !== null) ask(lastQuestion);
});

// Leaving the page: the reader is released and the request aborted. A page that is really
// unloaded (not kept in the back-forward cache) also asks the service to stop generating.
window.addEventListener("pagehide", (event) => {
  if (current === null) return;
  current.stream.close({ cancelOnServer: !event.persisted });
  if (!event.persisted) current = null;
});
window.addEventListener("pageshow", (event) => {
  if (event.persisted && current !== null) {
    endTurn(current.turn, "failed", "Interrupted when the page was left.");
    finish("Ready");
  }
});

document.documentElement.dataset.ready = "true";
