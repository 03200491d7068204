"""Project pages: PEP 503 HTML and PEP 691 JSON parsing, and pages read from the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
from indexsim import Fault, IndexSim
from packaging.tags import Tag
from packaging.version import Version

from torchenv.agent.base.errors import IndexError_
from torchenv.agent.index.client import IndexClient
from torchenv.agent.index.model import Artifact
from torchenv.agent.index.pages import parse_html_page, parse_json_page, project_url

PAGE = "https://mirror.example/simple/demo/"

HTML = """<!DOCTYPE html>
<html><head><base href="https://files.example/root/"></head><body>
<a href="demo-1.0-py3-none-any.whl#sha256=AAAA" data-requires-python="&gt;=3.9"
   data-core-metadata="sha256=beef" data-dist-info-metadata="sha256=old">demo-1.0</a>
<a href="/abs/demo-0.9-py3-none-any.whl#md5=0123" data-dist-info-metadata="true">x</a>
<a href="demo-0.8.tar.gz" data-yanked>y</a>
<a href="demo-0.7-py3-none-any.whl" data-yanked="broken &amp; bad">z</a>
<a href="other-1.0-py3-none-any.whl">foreign</a>
<a href="demo-2.7.0%2Bcu126-cp311-cp311-manylinux_2_28_x86_64.whl">local label</a>
<a>no href</a>
</body></html>
"""


def by_name(artifacts: list[Artifact], filename: str) -> Artifact:
    return next(a for a in artifacts if a.filename == filename)


def test_html_attributes_hashes_and_urls() -> None:
    arts = parse_html_page(HTML, PAGE, "Demo")
    names = [a.filename for a in arts]
    assert "other-1.0-py3-none-any.whl" not in names  # another project's file is dropped
    first = by_name(arts, "demo-1.0-py3-none-any.whl")
    assert first.url == "https://files.example/root/demo-1.0-py3-none-any.whl"
    assert first.hashes == {"sha256": "AAAA"}
    assert first.requires_python == ">=3.9"
    assert first.core_metadata == {"sha256": "beef"}  # PEP 714 name wins over the old one
    assert first.project == "demo" and first.is_wheel
    assert first.tags == frozenset({Tag("py3", "none", "any")})
    second = by_name(arts, "demo-0.9-py3-none-any.whl")
    assert second.url == "https://files.example/abs/demo-0.9-py3-none-any.whl"
    assert second.hashes == {"md5": "0123"}
    assert second.core_metadata is True
    assert second.yanked is None and second.requires_python is None


def test_html_yanks_sdists_and_local_labels() -> None:
    arts = parse_html_page(HTML, PAGE, "demo")
    sdist = by_name(arts, "demo-0.8.tar.gz")
    assert sdist.yanked == "" and not sdist.is_wheel and sdist.tags == frozenset()
    assert sdist.version == Version("0.8")
    assert by_name(arts, "demo-0.7-py3-none-any.whl").yanked == "broken & bad"
    labelled = by_name(arts, "demo-2.7.0+cu126-cp311-cp311-manylinux_2_28_x86_64.whl")
    assert labelled.version == Version("2.7.0+cu126")
    assert str(labelled.version) == "2.7.0+cu126"
    assert labelled.url.endswith("/demo-2.7.0%2Bcu126-cp311-cp311-manylinux_2_28_x86_64.whl")
    assert labelled.hashes == {} and labelled.core_metadata is False


def test_json_page() -> None:
    doc = {
        "meta": {"api-version": "1.1"},
        "name": "demo",
        "files": [
            {
                "filename": "demo-1.0-py3-none-any.whl",
                "url": "../../files/demo-1.0-py3-none-any.whl",
                "hashes": {"sha256": "abc"},
                "requires-python": ">=3.10",
                "core-metadata": {"sha256": "def"},
                "size": 123,
                "yanked": False,
            },
            {
                "filename": "demo-0.9-py3-none-any.whl",
                "url": "https://cdn.example/demo-0.9-py3-none-any.whl",
                "hashes": {},
                "dist-info-metadata": True,
                "yanked": "bad build",
            },
            {
                "filename": "demo-0.8.tar.gz",
                "url": "https://cdn.example/demo-0.8.tar.gz",
                "hashes": {},
                "yanked": True,
            },
        ],
    }
    arts = parse_json_page(doc, PAGE, "demo")
    first, second, third = arts
    assert first.url == "https://mirror.example/files/demo-1.0-py3-none-any.whl"
    assert (first.sha256, first.size, first.requires_python) == ("abc", 123, ">=3.10")
    assert first.core_metadata == {"sha256": "def"} and first.yanked is None
    assert second.core_metadata is True and second.yanked == "bad build"
    assert third.yanked == "" and third.core_metadata is False


def test_project_url_normalises() -> None:
    assert (
        project_url("http://x/simple/", "Typing_Extensions") == "http://x/simple/typing-extensions/"
    )
    assert project_url("http://x/whl/cu126", "torch") == "http://x/whl/cu126/torch/"


def test_pypi_page_is_json_and_matches_html(indexsim: IndexSim, tmp_path: Path) -> None:
    with IndexClient(cache_dir=tmp_path) as client:
        arts = client.project_page(indexsim.pypi_url, "NumPy")
    assert indexsim.requests("/simple/numpy/")[0].accept.startswith(  # type: ignore[union-attr]
        "application/vnd.pypi.simple.v1+json"
    )
    yanked = [a for a in arts if a.yanked is not None]
    assert yanked and all(str(a.version) == "2.2.5" for a in yanked)
    assert all(a.size and a.sha256 and a.requires_python == ">=3.10" for a in arts)
    assert all(isinstance(a.core_metadata, dict) for a in arts)
    indexsim.knobs.json_api = False  # an index that only speaks HTML gives the same files
    with IndexClient() as client:
        html_arts = client.project_page(indexsim.pypi_url, "numpy")
    assert [(a.url, a.sha256, a.yanked, a.core_metadata) for a in html_arts] == [
        (a.url, a.sha256, a.yanked, a.core_metadata) for a in arts
    ]


def test_pytorch_release_and_nightly_pages(indexsim: IndexSim) -> None:
    with IndexClient() as client:
        release = client.project_page(indexsim.torch_index_url + "/cu126", "torch")
        nightly = client.project_page(indexsim.torch_index_url + "/nightly/cu126", "torch")
        cpu = client.project_page(indexsim.torch_index_url + "/cpu", "torch")
    assert release and all(a.sha256 and a.version and a.version.local == "cu126" for a in release)
    assert all(a.requires_python is None and a.size is None for a in release)
    assert any(a.core_metadata for a in release)
    assert nightly and all(a.hashes == {} and a.core_metadata is False for a in nightly)
    assert {str(a.version) for a in nightly} == {
        "2.9.0.dev20250801+cu126",
        "2.9.0.dev20250802+cu126",
    }
    assert all(a.version and a.version.is_prerelease for a in nightly)
    mac = [a for a in cpu if any(t.platform.startswith("macosx") for t in a.tags)]
    linux = [a for a in cpu if any(t.platform.startswith("manylinux") for t in a.tags)]
    assert mac and all(a.version and a.version.local is None for a in mac)
    assert linux and all(a.version and a.version.local == "cpu" for a in linux)


def test_missing_project_is_empty_not_an_error(indexsim: IndexSim) -> None:
    with IndexClient() as client:
        assert client.project_page(indexsim.torch_index_url + "/cu126", "requests") == []
        assert client.project_page(indexsim.pypi_url, "pytorch-triton") == []
        assert client.project_page(indexsim.torch_index_url + "/nightly/cu126", "pytorch-triton")
    assert indexsim.count("/whl/cu126/requests/") == 1  # a 404 is not retried


def test_project_pages_fetches_concurrently(indexsim: IndexSim) -> None:
    indexsim.knobs.latency = 0.2
    names = ["torch", "torchvision", "torchaudio", "numpy", "certifi", "pillow"]
    with IndexClient(concurrency=6) as client:
        pages = client.project_pages(indexsim.torch_index_url + "/cu126", names)
    assert set(pages) == set(names) and all(pages.values())
    assert indexsim.max_in_flight > 1


@pytest.mark.parametrize("project", ["certifi", "numpy", "pillow"])
def test_pytorch_index_holds_older_copies(indexsim: IndexSim, project: str) -> None:
    with IndexClient() as client:
        copies = client.project_page(indexsim.torch_index_url + "/cu126", project)
        pypi = client.project_page(indexsim.pypi_url, project)
    newest_copy = max(a.version for a in copies if a.version)
    newest_pypi = max(a.version for a in pypi if a.version and a.yanked is None)
    assert newest_copy < newest_pypi


def test_pages_read_ahead_come_in_one_round_trip_and_are_each_read_once(
    indexsim: IndexSim,
) -> None:
    indexsim.knobs.latency = 0.15
    index = indexsim.torch_index_url + "/cu126"
    with IndexClient() as client:
        client.read_ahead(index, ["torch", "torchvision", "torchaudio"])
        client.read_ahead(index, ["torch"])  # already on its way: not sent again
        pages = [client.project_page(index, p) for p in ("torch", "torchvision", "torchaudio")]
        assert client.project_page(index, "torch") == pages[0]  # taken once, then known
    assert all(pages)
    assert indexsim.count("/whl/cu126/*") == 3
    assert indexsim.round_trips() == 1  # one after another, they would have been three


def test_a_read_ahead_error_is_the_error_of_reading_the_page_then(indexsim: IndexSim) -> None:
    """A 503 to every try: the same message, after the same requests, read ahead or not."""
    index = indexsim.torch_index_url + "/cu126"
    indexsim.inject(Fault("status", "/whl/cu126/torchvision/", times=-1, status=503))
    errors, counts = [], []
    for ahead in (False, True):
        with IndexClient(retries=2, backoff=0.01) as client:
            if ahead:
                client.read_ahead(index, ["torch", "torchvision"])
            assert client.project_page(index, "torch")
            with pytest.raises(IndexError_) as caught:
                client.project_page(index, "torchvision")
            with pytest.raises(IndexError_):  # not kept: asked again, it is read again
                client.project_page(index, "torchvision")
        errors.append(caught.value.message)
        counts.append(indexsim.count("/whl/cu126/torchvision/", status=503))
        indexsim.reset_counters()
    assert "503" in errors[0] and errors[1] == errors[0]
    assert counts[1] == counts[0] == 6  # three tries, twice


def test_a_page_read_ahead_but_never_asked_for_is_not_waited_for_at_close(
    indexsim: IndexSim,
) -> None:
    indexsim.knobs.latency = 0.15
    with IndexClient(concurrency=2) as client:
        client.read_ahead(indexsim.pypi_url, ["numpy", "certifi", "pillow", "idna"])
    assert indexsim.count("/simple/*") == 2  # the two started; the two waiting never were


def test_a_cold_read_ahead_makes_the_transport_in_the_caller_s_thread_and_a_young_one_none(
    indexsim: IndexSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cold: the caller makes httpcore's transport before the workers start, so their first
    request goes out at once instead of sharing the interpreter with the caller's work.
    Young pages (index-max-age): no request, so no transport is made at all."""
    import threading

    from torchenv.agent.index.lazytls import LazyTLSTransport

    made: list[tuple[str, str]] = []
    real = LazyTLSTransport._for

    def noted(self: LazyTLSTransport, scheme: str) -> object:
        if scheme not in self._by_scheme:
            made.append((scheme, threading.current_thread().name))
        return real(self, scheme)

    monkeypatch.setattr(LazyTLSTransport, "_for", noted)
    index = indexsim.torch_index_url + "/cu126"
    for round_ in ("cold", "young"):
        with IndexClient(cache_dir=tmp_path / "cache", page_max_age=600) as client:
            client.read_ahead(index, ["torch", "torchvision"])
            assert made == ([("http", threading.current_thread().name)] if round_ == "cold" else [])
            assert client.project_page(index, "torch") and client.project_page(index, "torchvision")
        made.clear()
    assert indexsim.count("/whl/cu126/*") == 2  # the young round sent nothing
