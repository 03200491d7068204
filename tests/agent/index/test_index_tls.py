"""https through the index client: the TLS context is made at the first https request, and it
verifies (a certificate nobody vouches for is refused; one trusted through SSL_CERT_FILE, as
httpx honours, is taken), through an HTTPS_PROXY tunnel as well as direct."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.proxy import Page, forward_proxy

from torchenv.agent.base.errors import IndexError_
from torchenv.agent.index.client import IndexClient


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def https_index(certificate: tuple[Path, Path]) -> Iterator[str]:
    cert, key = certificate
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    server.server_close()


def test_a_certificate_nobody_vouches_for_is_refused(
    https_index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with IndexClient(retries=0) as client, pytest.raises(IndexError_):
        client.project_page(https_index, "demo")


def test_a_certificate_trusted_through_ssl_cert_file_is_taken(
    https_index: str, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with IndexClient(retries=0) as client:
        page = client.project_page(https_index, "demo")
    assert [a.filename for a in page] == ["demo-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("trusted", [False, True])
def test_https_through_a_proxy_is_tunnelled_and_verified(
    https_index: str, certificate: tuple[Path, Path], trusted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "https_proxy", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    else:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with forward_proxy() as (proxy, asked):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        with IndexClient(retries=0) as client:
            if trusted:
                assert [a.filename for a in client.project_page(https_index, "demo")] == [
                    "demo-1.0-py3-none-any.whl"
                ]
            else:
                with pytest.raises(IndexError_):
                    client.project_page(https_index, "demo")
    assert asked == [f"CONNECT {https_index.split('/')[2]}"]
