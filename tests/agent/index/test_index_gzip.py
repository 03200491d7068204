"""gzip-encoded answers: the client asks for gzip only and inflates it in bounded steps, so a
page that inflates past MAX_PAGE is refused without holding much more than MAX_PAGE."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest
from helpers.gzipserve import GzipServer, gzipped, serve_gzip

from torchenv.agent.base.errors import IndexError_
from torchenv.agent.base.limits import MAX_PAGE
from torchenv.agent.index.client import IndexClient

PAGE = (
    b"<!DOCTYPE html><html><body>\n"
    b'<a href="demo-1.0-py3-none-any.whl#sha256=' + b"a" * 64 + b'">demo-1.0-py3-none-any.whl</a>\n'
    b"</body></html>\n"
)


BOMB = gzipped(bytes(1 << 20), repeat=4 * (MAX_PAGE >> 20))  # 4x MAX_PAGE of zeros, ~1 MB


@pytest.fixture
def served() -> Iterator[GzipServer]:
    bodies = {"demo": gzipped(PAGE), "bomb": BOMB, "damaged": gzipped(PAGE)[:-12] + b"x" * 12}
    with serve_gzip(bodies, "text/html") as server:
        yield server


@pytest.fixture
def index(served: GzipServer) -> str:
    return f"{served.url}/simple"


def test_a_gzip_page_is_inflated_and_only_gzip_is_asked_for(served: GzipServer, index: str) -> None:
    with IndexClient(retries=0) as client:
        page = client.project_page(index, "demo")
    assert [a.filename for a in page] == ["demo-1.0-py3-none-any.whl"]
    assert served.asked == ["gzip"]


def test_a_page_that_inflates_past_the_bound_is_refused_in_bounded_memory(index: str) -> None:
    tracemalloc.start()
    try:
        with IndexClient(retries=0) as client, pytest.raises(IndexError_) as caught:
            client.project_page(index, "bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "answered more than" in caught.value.message
    # the page's MAX_PAGE and one step more; httpx inflating a whole read at once held twice that
    assert peak < MAX_PAGE + (16 << 20), f"peak {peak >> 20} MiB"


def test_a_damaged_gzip_answer_is_an_index_error_not_a_crash(index: str) -> None:
    with IndexClient(retries=1, backoff=0.0) as client, pytest.raises(IndexError_) as caught:
        client.project_page(index, "damaged")
    assert "gzip" in caught.value.message
