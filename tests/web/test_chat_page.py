"""The chat page at ``/`` in headless Chromium against the real service (see conftest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from rag_service.domain import Resumed, RetryNotice, TextDelta
from rag_service.settings import KeyLimitSettings, Settings
from tests.app.conftest import CLIENT_KEY, app_settings
from tests.fakes.upstream import Hold, Pause, Step, answer_script, completed, full_text
from tests.fixture_servers.fault_proxy import CutPlan
from tests.web.conftest import EXPECT_TIMEOUT_MS, ConsoleRecord, status_log
from tests.web.served_app import WebService, web_service

expect.set_options(timeout=EXPECT_TIMEOUT_MS)

OpenPage = Callable[[str], Page]

# Markdown in pieces, numbered words so that a repeated piece would show.
PIECES = [
    "The ",
    "**Tents ",
    "model 0**",
    " costs ",
    "`50.00 EUR`",
    ".\n",
    "\n- light",
    "\n- waterproof",
    "\n\nSee ",
    "[the shop](https://shop.example/tents)",
    " or *ask*",
    " again.",
    *[f" w{n:02d}" for n in range(1, 13)],
]
PACED = answer_script(PIECES, pause_s=0.08)  # ~2 s: a cut lands mid-answer
RENDERED = (
    "The Tents model 0 costs 50.00 EUR.\n\nlight\nwaterproof\n\n"
    "See the shop or ask again." + "".join(f" w{n:02d}" for n in range(1, 13))
)
API_ERROR = r"Failed to load resource: the server responded with a status of {status}"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[WebService]:
    with web_service(app_settings(tmp_path), PACED) as running:
        yield running


def ask(page: Page, question: str, *, key: str = CLIENT_KEY) -> None:
    """Type the key and the question, and send it with the keyboard only."""
    page.get_by_label("API key").fill(key)
    field = page.get_by_label("Your question")
    field.fill(question)
    field.press("Enter")


def answer_text(page: Page, index: int = 0) -> str:
    text: str = page.locator(".answer-text").nth(index).inner_text()
    return text.strip()


def wait_answer_state(page: Page, state: str, index: int = 0) -> None:
    expect(page.locator(".answer").nth(index)).to_have_attribute("data-state", state)


def test_an_answer_streams_in_with_its_sources_and_context_state(
    service: WebService, open_page: OpenPage
) -> None:
    page = open_page(service.url)
    expect(page).to_have_title("rag_service chat")
    ask(page, "How much is the Tents model 0?")

    expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    wait_answer_state(page, "done")
    assert answer_text(page) == RENDERED
    answer = page.locator(".answer-text")
    expect(answer).to_have_attribute("aria-live", "polite")
    expect(answer.locator("strong")).to_have_text("Tents model 0")
    expect(answer.locator("code")).to_have_text("50.00 EUR")
    expect(answer.locator("ul > li")).to_have_text(["light", "waterproof"])
    expect(answer.locator("em")).to_have_text("ask")
    link = answer.locator("a")
    expect(link).to_have_attribute("href", "https://shop.example/tents")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(page.locator(".context-state")).to_have_text(re.compile(r"^Context: refreshed"))
    sources = page.locator(".sources > li")
    expect(sources.first).to_have_text(re.compile(r"\S.* \(score \d\.\d\d\)$"))
    assert sources.count() >= 1
    expect(page.locator("#status-text")).to_have_text("Ready")

    # The same conversation: its context is now served from the freshness cache.
    ask(page, "And the Tents model 1?")
    wait_answer_state(page, "done", index=1)
    expect(page.locator(".context-state").nth(1)).to_have_text(re.compile(r"^Context: fresh"))
    first_id = page.evaluate("sessionStorage.getItem('rag-chat.conversation')")
    assert re.fullmatch(r"web-[0-9a-f]{24}", first_id)

    # A new conversation: a new context id, so its context is retrieved anew.
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator(".turn")).to_have_count(0)
    ask(page, "How much is the Tents model 0?")
    wait_answer_state(page, "done")
    expect(page.locator(".context-state")).to_have_text(re.compile(r"^Context: refreshed"))
    assert page.evaluate("sessionStorage.getItem('rag-chat.conversation')") != first_id
    assert service.upstream.answer_calls == 3


def test_a_connection_dropped_mid_answer_is_resumed_without_a_repeat(
    service: WebService, open_page: OpenPage, console: ConsoleRecord
) -> None:
    page = open_page(service.url)
    ask(page, "How much is the Tents model 0?")
    wait_answer_state(page, "done")
    uninterrupted = answer_text(page)

    resumes: list[dict[str, str]] = []
    page.on(
        "request",
        lambda request: resumes.append(request.headers) if request.method == "GET" else None,
    )
    # meta and 6 deltas reach the page, then the proxy cuts the connection (both sides).
    service.call(service.proxy.cut_next, CutPlan(after_events=7))
    console.expect(r"ERR_(INCOMPLETE_CHUNKED_ENCODING|CONNECTION_(RESET|CLOSED))")
    ask(page, "How much is the Tents model 0?")
    wait_answer_state(page, "done", index=1)

    assert service.proxy.cuts == 1
    assert answer_text(page, 1) == uninterrupted == RENDERED
    assert service.upstream.answer_calls == 2  # resumed, not asked again
    assert len(resumes) == 1
    # The last event the page applied: up to the 7th (a cut may lose what was still in flight).
    resumed_after = re.fullmatch(r"[A-Za-z0-9_-]+:(\d+)", resumes[0]["last-event-id"])
    assert resumed_after is not None
    assert 1 <= int(resumed_after.group(1)) <= 7
    statuses = status_log(page)
    assert any(
        re.fullmatch(r"Reconnecting \(attempt 1 of 10\), next try in \d+ s", s) for s in statuses
    ), statuses
    expect(page.locator("#status-text")).to_have_text("Ready")


def test_a_stream_gone_when_the_page_comes_back_ends_with_a_banner(
    tmp_path: Path, open_page: OpenPage, console: ConsoleRecord
) -> None:
    console.expect(r"ERR_(INCOMPLETE_CHUNKED_ENCODING|CONNECTION_(RESET|CLOSED))")
    console.expect(API_ERROR.format(status=404))
    # Paced, so the page has the first events before the cut (a cut may lose what is in flight).
    script: list[Step] = [
        Pause(0.3),
        TextDelta("Kept "),
        Pause(0.3),
        TextDelta("text"),
        Hold(),
        TextDelta(" lost"),
        completed(),
    ]
    # No grace period: the generation is cancelled and forgotten as soon as its reader is gone.
    with web_service(app_settings(tmp_path, grace_period_s=0), script) as service:
        page = open_page(service.url)
        service.call(service.proxy.cut_next, CutPlan(after_events=3))  # meta, "Kept ", "text"
        ask(page, "Anything")

        banner = page.get_by_role("alert")
        expect(banner).to_contain_text("404 not_found:")
        expect(banner).to_contain_text("Retrying will not help.")
        wait_answer_state(page, "failed")
        assert answer_text(page).startswith("Kept")
        assert "lost" not in answer_text(page)
        expect(page.locator("#status-text")).to_have_text("Failed")
        assert any(s.startswith("Reconnecting (attempt 1 of 10)") for s in status_log(page))
        assert service.upstream.answer_calls == 1


def test_the_stop_button_cancels_the_generation_on_the_server(
    service: WebService, open_page: OpenPage
) -> None:
    script: list[Step] = [TextDelta("Thinking "), TextDelta("hard"), Hold(), TextDelta("!")]
    service.upstream.script = [*script, completed()]
    page = open_page(service.url)
    ask(page, "Which tent is best?")
    expect(page.locator(".answer-text")).to_have_text("Thinking hard")
    service.wait_for_metric("rag_streams_generating", 1)

    # Keyboard only: the focus is still in the question; Send is disabled, so Tab reaches Stop.
    page.keyboard.press("Tab")
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_focused()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")

    wait_answer_state(page, "stopped")
    expect(page.locator(".answer-note")).to_have_text("Stopped.")
    service.wait_for_metric("rag_streams_generating", 0)
    assert service.metric("rag_streams_cancelled_total") == 1
    assert service.upstream.closed_early == 1  # the cancellation reached the upstream
    assert answer_text(page) == "Thinking hard"
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.locator("#banner")).to_be_hidden()


def test_upstream_retries_show_in_the_status_bar(service: WebService, open_page: OpenPage) -> None:
    service.upstream.script = [
        TextDelta("Part one. "),
        RetryNotice(attempt=2, max_attempts=5, delay_s=0.2, reason="upstream_unavailable"),
        Hold(),
        Resumed(attempt=2, strategy="replay"),
        TextDelta("Part two."),
        completed(),
    ]
    page = open_page(service.url)
    ask(page, "Tell me in two parts")
    expect(page.locator("#status-text")).to_have_text(
        "Connected; upstream retrying (attempt 2 of 5): upstream_unavailable"
    )
    expect(page.locator("#status")).to_have_attribute("data-state", "upstream-retrying")

    service.call(service.upstream.release)
    wait_answer_state(page, "done")
    assert answer_text(page) == "Part one. Part two."
    assert "Connected; upstream resumed" in status_log(page)
    expect(page.locator("#status-text")).to_have_text("Ready")


def test_leaving_the_page_aborts_the_stream_and_cancels_its_generation(
    service: WebService, open_page: OpenPage
) -> None:
    service.upstream.script = [TextDelta("Half"), Hold(), TextDelta(" of it."), completed()]
    page = open_page(service.url)
    ask(page, "Anything")
    expect(page.locator(".answer-text")).to_have_text("Half")
    service.wait_for_metric("rag_streams_readers", 1)

    page.goto("about:blank")  # pagehide, not kept for the back-forward cache

    service.wait_for_metric("rag_streams_readers", 0)
    service.wait_for_metric("rag_streams_generating", 0)
    assert service.upstream.closed_early == 1


def test_a_wrong_key_shows_a_banner_that_retrying_will_not_help(
    service: WebService, open_page: OpenPage, console: ConsoleRecord
) -> None:
    console.expect(API_ERROR.format(status=401))
    page = open_page(service.url)
    ask(page, "Hello?", key="not-the-key")

    banner = page.get_by_role("alert")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("401 unauthorized:")
    expect(banner).to_contain_text("Retrying will not help. Check the API key.")
    expect(page.get_by_role("button", name="Ask again")).to_be_hidden()
    wait_answer_state(page, "failed")
    assert service.upstream.answer_calls == 0


def limited_settings(tmp_path: Path) -> Settings:
    return app_settings(tmp_path).model_copy(update={"limits": KeyLimitSettings(streams=1)})


def test_a_429_shows_a_retryable_banner_and_the_answer_follows_after_retry_after(
    tmp_path: Path, open_page: OpenPage, console: ConsoleRecord
) -> None:
    console.expect(API_ERROR.format(status=429))
    held: list[Step] = [TextDelta("First "), Hold(), TextDelta("answer."), completed()]
    with web_service(limited_settings(tmp_path), held) as service:
        first = open_page(service.url)
        ask(first, "One")
        expect(first.locator(".answer-text")).to_have_text("First")

        second = open_page(service.url)  # another tab, same key: over its one stream
        ask(second, "Two")
        banner = second.get_by_role("alert")
        expect(banner).to_contain_text("429 rate_limited:")
        expect(banner).to_contain_text(re.compile(r"Retrying can help\. Trying again in \d+ s\."))
        expect(second.locator("#status-text")).to_have_text(
            re.compile(r"^Retrying \(attempt \d+ of 10\), next try in \d+ s$")
        )

        third = open_page(service.url)  # stopped while it waits out its Retry-After
        ask(third, "Three")
        expect(third.get_by_role("alert")).to_contain_text("429 rate_limited:")
        third.get_by_role("button", name="Stop").click()
        wait_answer_state(third, "stopped")
        expect(third.locator("#status-text")).to_have_text("Stopped")
        expect(third.get_by_role("alert")).to_be_hidden()
        expect(third.get_by_role("button", name="Send")).to_be_enabled()

        service.call(service.upstream.release)  # the first answer ends: its slot is free
        wait_answer_state(first, "done")
        wait_answer_state(second, "done")
        assert answer_text(second) == "First answer."
        expect(banner).to_be_hidden()
        assert service.upstream.answer_calls == 2  # the stopped question never started


def test_model_and_catalog_text_never_become_html(service: WebService, open_page: OpenPage) -> None:
    hostile = [
        '<img src="x" onerror="window.__pwned = 1">',
        " [click](javascript:window.__pwned=2)",
        " <script>window.__pwned = 3</script>",
    ]
    service.upstream.script = answer_script(hostile)
    page = open_page(service.url)
    ask(page, "Show me something")
    wait_answer_state(page, "done")

    assert answer_text(page) == full_text(service.upstream.script).strip()
    conversation = page.locator("#conversation")
    expect(conversation.locator("img, script, a")).to_have_count(0)
    assert page.evaluate("window.__pwned") is None


def test_the_page_leaves_the_api_s_errors_and_schema_alone(service: WebService) -> None:
    with httpx.Client(base_url=service.direct_url, timeout=10) as client:
        page = client.get("/")
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/web/chat.js").headers["content-type"].startswith("text/javascript")
        unknown = client.get("/nope")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "not_found"
        assert client.get("/web/nope.js").json()["error"]["code"] == "not_found"
        assert client.get("/web/index.html").status_code == 404  # the page is at / only
        wrong_method = client.get("/rag/stream")
        assert wrong_method.status_code == 405
        assert wrong_method.json()["error"]["code"] == "method_not_allowed"
        paths = client.get("/openapi.json").json()["paths"]
        assert "/" not in paths
        assert not any(path.startswith("/web") for path in paths)
