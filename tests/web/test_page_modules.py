"""The page's JavaScript modules, run in Chromium: the SSE parser's line rules, the Markdown
subset and its safety, the reconnect delays and ``Retry-After``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.app.conftest import app_settings
from tests.fakes.upstream import answer_script
from tests.web.served_app import web_service

PARSE = """async (chunks) => {
  const { SseParser } = await import("./web/sse_parser.js");
  const seen = [];
  const parser = new SseParser({
    onEvent: (event) => seen.push(event),
    onRetry: (ms) => seen.push({ retry: ms }),
  });
  for (const chunk of chunks) parser.feed(chunk);
  return { seen, lastEventId: parser.lastEventId };
}"""

RENDER = """async (text) => {
  const { MarkdownStream } = await import("./web/markdown.js");
  const box = document.createElement("div");
  const stream = new MarkdownStream(box);
  for (const piece of text.match(/[\\s\\S]{1,3}/g) ?? []) stream.append(piece);
  stream.finish();
  return box.innerHTML;
}"""


@pytest.fixture(scope="module")
def page(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    settings = app_settings(tmp_path_factory.mktemp("web-modules"))
    with web_service(settings, answer_script(["unused"])) as service:
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(service.url)
        expect(page.locator("html")).to_have_attribute("data-ready", "true")
        yield page
        context.close()
        assert errors == []


def parse(page: Page, *chunks: str) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(PARSE, list(chunks))
    return result


def test_line_ends_crlf_cr_and_lf_also_split_across_chunks(page: Page) -> None:
    result = parse(page, "data: a\r", "\ndata: b\rdata: c\n\r", "\n", "event: x\ndata:d\n\n")
    assert result["seen"] == [
        {"type": "message", "data": "a\nb\nc", "id": ""},
        {"type": "x", "data": "d", "id": ""},
    ]


def test_ids_retry_comments_and_field_rules(page: Page) -> None:
    result = parse(
        page,
        "\ufeffretry: 1500\n: ping\n\n",
        "id: s1:1\nevent: meta\ndata: {}\n\n",
        "id\nretry: 2s\ndata\n\n",  # bare "id" clears it; "retry: 2s" is ignored; bare "data"
        "id: s1:\x002\ndata:  two spaces\nunknown: field\n\n",  # an id with NUL is ignored
        "id: s1:3\ndata: unfinished",  # no blank line before the end: discarded
    )
    assert result["seen"] == [
        {"retry": 1500},
        {"type": "meta", "data": "{}", "id": "s1:1"},
        {"type": "message", "data": "", "id": ""},
        {"type": "message", "data": " two spaces", "id": ""},
    ]
    assert result["lastEventId"] == "s1:3"


def test_event_without_data_is_not_dispatched(page: Page) -> None:
    assert parse(page, "event: delta\nid: s:9\n\n")["seen"] == []


def render(page: Page, text: str) -> str:
    html: str = page.evaluate(RENDER, text)
    return html


def test_the_markdown_subset(page: Page) -> None:
    text = (
        "Intro **bold and *italic* inside** with `a*b*c` code.\nSecond line\n\n"
        "- one\n* two\n+ three\n\n1. first\n2) second\n\n"
        "Read [the guide](https://example.com/a?b=1&c=2) and [http](http://example.com)."
    )
    assert render(page, text) == (
        "<p>Intro <strong>bold and <em>italic</em> inside</strong> with <code>a*b*c</code> code."
        "<br>Second line</p>"
        "<ul><li>one</li><li>two</li><li>three</li></ul>"
        "<ol><li>first</li><li>second</li></ol>"
        '<p>Read <a href="https://example.com/a?b=1&amp;c=2" rel="noopener noreferrer" '
        'target="_blank">the guide</a> and <a href="http://example.com/" '
        'rel="noopener noreferrer" target="_blank">http</a>.</p>'
    )


def test_a_paragraph_line_followed_by_a_list_without_a_blank_line(page: Page) -> None:
    assert render(page, "Options:\n- a\n- b") == "<p>Options:</p><ul><li>a</li><li>b</li></ul>"


@pytest.mark.parametrize(
    "hostile",
    [
        '<img src=x onerror="window.__pwned=1">',
        "[x](javascript:window.__pwned=1)",
        "[x](data:text/html,<script>window.__pwned=1</script>)",
        "**<b>not bold html</b>**",
        "`<script>window.__pwned=1</script>`",
    ],
)
def test_html_and_unsafe_links_stay_text(page: Page, hostile: str) -> None:
    html = render(page, hostile)
    for tag in ("<img", "<script", "<a ", "<b>"):
        assert tag not in html
    assert page.evaluate("window.__pwned") is None


DELAY = """async ([attempt, options]) => {
  const { reconnectDelay } = await import("./web/stream_client.js");
  const random = options.random;
  return reconnectDelay(attempt, { ...options, random: () => random });
}"""


@pytest.mark.parametrize(
    ("attempt", "options", "expected"),
    [
        (1, {"random": 0.999}, 499),  # full jitter below min(cap, base)
        (4, {"random": 0.5}, 2000),  # base * 2^3 = 4000, half of it
        (10, {"random": 0.5}, 15000),  # the cap (30 s) bounds the ceiling
        (1, {"random": 0.0, "serverRetryMs": 800}, 800),  # the server's retry: is the floor
        (1, {"random": 0.0, "retryAfterMs": 3000}, 3000),  # Retry-After is honoured
    ],
)
def test_reconnect_delays(page: Page, attempt: int, options: dict[str, Any], expected: int) -> None:
    full = {"baseDelayMs": 500, "maxDelayMs": 30_000, **options}
    assert page.evaluate(DELAY, [attempt, full]) == expected


def test_retry_after_seconds_and_http_dates(page: Page) -> None:
    parsed = page.evaluate(
        """async () => {
          const { retryAfterMs } = await import("./web/stream_client.js");
          const now = Date.parse("Sun, 06 Dec 2026 16:00:00 GMT");
          return [retryAfterMs("7", now), retryAfterMs("Sun, 06 Dec 2026 16:00:05 GMT", now),
                  retryAfterMs("soon", now), retryAfterMs(null, now)];
        }"""
    )
    assert parsed == [7000, 5000, None, None]
