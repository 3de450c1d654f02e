"""``/docs`` (Swagger UI) and ``/redoc`` work offline: every script, style sheet and icon their
pages load is a path of this service that answers, and no CDN is named."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from tests.app.conftest import Service

ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


class AssetReferences(HTMLParser):
    """The ``src`` of each ``<script>`` and the ``href`` of each ``<link>`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def asset_urls(html: str) -> list[str]:
    parser = AssetReferences()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize(
    ("page", "script"),
    [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")],
)
async def test_a_docs_page_loads_its_assets_from_the_service(
    service: Service, page: str, script: str
) -> None:
    response = await service.client.get(page)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "cdn." not in response.text
    assert "fonts.googleapis" not in response.text
    urls = asset_urls(response.text)
    assert any(url.endswith("/" + script) for url in urls), urls
    for url in urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), url
        assert url.startswith("/docs/assets/"), url
        asset = await service.client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
        suffix = url[url.rindex(".") :]
        assert ASSET_TYPES[suffix] in asset.headers["content-type"], url


async def test_swagger_ui_reads_the_services_own_schema(service: Service) -> None:
    page = (await service.client.get("/docs")).text

    assert "url: '/openapi.json'" in page
    assert "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'" in page
    redirect = await service.client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert redirect.headers["content-type"].startswith("text/html")
    assert asset_urls(redirect.text) == []  # its script is inline
    assert (await service.client.get("/openapi.json")).status_code == 200


async def test_an_unknown_asset_is_a_json_404(service: Service) -> None:
    response = await service.client.get("/docs/assets/nothing.js")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
