"""httpx transports: the TLS context made at the first https request (never for http), and
responses read in pieces of up to READ_SIZE."""

from __future__ import annotations

import threading
from typing import Any
from urllib.request import getproxies  # what httpx reads the environment's proxies with

import httpcore  # httpx's own transport: loaded with httpx, nothing more to import
import httpx

from torchenv.agent.base.errors import ConfigError

# httpcore reads an HTTP/1.1 body 64 KiB at a time, and each piece then passes through h11,
# the decoding, the file and the digests: for a wheel of hundreds of megabytes those layers
# cost more CPU than the hashing. Reads of up to READ_SIZE (a read takes what the socket
# holds, so small answers are unchanged) cut a plain-http download's time by about a third on
# loopback; over TLS a read is one record (16 KiB) whatever is asked. gzip is inflated in
# bounded steps (bodies.py), so larger reads do not let a page grow past its bound. The
# setting is the process's: every httpx client in it reads so.
READ_SIZE = 256 << 10


def _read_larger() -> None:
    connection = getattr(httpcore, "HTTP11Connection", None)
    if connection is not None and getattr(connection, "READ_NUM_BYTES", READ_SIZE) < READ_SIZE:
        connection.READ_NUM_BYTES = READ_SIZE


_read_larger()


def environment_names_a_proxy() -> bool:
    """Whether httpx would send some request through a proxy from the environment
    (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY in either case; the system's settings on macOS and
    Windows). httpx honours these only for a client that brings no transport of its own."""
    proxies = getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


def new_client(args: dict[str, Any]) -> httpx.Client:
    """The index client; a proxy httpx cannot speak without an extra package (socks5:// needs
    socksio) is a setting to change, not a crash."""
    try:
        return httpx.Client(**args)
    except ImportError as exc:
        raise ConfigError(
            "httpx cannot use the proxy this environment names (ALL_PROXY, HTTPS_PROXY or"
            f" HTTP_PROXY): {exc}",
            hint="Install what it names, or unset that variable for torchenv",
        ) from exc


class LazyTLSTransport(httpx.BaseTransport):
    """httpx's own transport, one per scheme, each made when first asked: loading the
    certificate store costs ~50 ms of CPU, which a lock from a plain-http mirror never needs.
    An https request (a redirect from http included) goes through a verifying transport."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._by_scheme: dict[str, httpx.HTTPTransport] = {}

    def _for(self, scheme: str) -> httpx.HTTPTransport:
        with self._lock:
            transport = self._by_scheme.get(scheme)
            if transport is None:
                # verify=False makes an empty context instead of loading the store: plain http
                # requests use no TLS at all; every other scheme gets the verifying default
                plain = scheme == "http"
                transport = httpx.HTTPTransport(limits=self._limits, verify=not plain)
                self._by_scheme[scheme] = transport
            return transport

    def ready(self, scheme: str) -> None:
        """Make the transport for `scheme` now, in the calling thread."""
        self._for(scheme)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._for(request.url.scheme).handle_request(request)

    def close(self) -> None:
        with self._lock:
            transports, self._by_scheme = list(self._by_scheme.values()), {}
        for transport in transports:
            transport.close()
