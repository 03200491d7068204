"""Proxies from the environment reach the index client as httpx's default honours them:
HTTP_PROXY / HTTPS_PROXY / ALL_PROXY (either case) carry the requests of their scheme, NO_PROXY
sends the hosts it names direct. (https through a proxy: test_index_tls.py.)"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from helpers.proxy import Page, forward_proxy

from torchenv.agent.base.errors import ConfigError
from torchenv.agent.index.client import IndexClient

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def index(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    server.server_close()


def _read(index: str) -> list[str]:
    with IndexClient(retries=0) as client:
        return [a.filename for a in client.project_page(index, "demo")]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_in_the_environment_carries_the_index_requests(
    index: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with forward_proxy() as (proxy, asked):
        monkeypatch.setenv(variable, proxy)
        assert _read(index) == ["demo-1.0-py3-none-any.whl"]
    assert asked == [f"GET {index}/demo/"]


def test_no_proxy_sends_the_hosts_it_names_direct(
    index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with forward_proxy() as (proxy, asked):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", "example.org,127.0.0.1")
        assert _read(index) == ["demo-1.0-py3-none-any.whl"]
    assert asked == []


def test_a_proxy_for_https_leaves_http_requests_direct(
    index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with forward_proxy() as (proxy, asked):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        assert _read(index) == ["demo-1.0-py3-none-any.whl"]
    assert asked == []


def test_a_proxy_httpx_cannot_speak_is_a_setting_to_change(
    index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("socksio") is not None:
        pytest.skip("socksio is installed: httpx speaks socks5")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    with pytest.raises(ConfigError) as raised:
        _read(index)
    assert "ALL_PROXY" in raised.value.paragraph()
    assert "socksio" in raised.value.paragraph()
