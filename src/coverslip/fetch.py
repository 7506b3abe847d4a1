"""Fetch a URL for a web-download import without opening a door to internal services.

Only hosts named in the allow list are fetched. A listed name that resolves to a private,
loopback, link-local or otherwise internal address is refused unless that address is listed
too, the connection goes to the very address that was checked (no second DNS answer), and
every redirect is checked again.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urljoin, urlsplit

from coverslip.errors import BadParameter, Forbidden, ImportFailed

MAX_REDIRECTS = 5
TIMEOUT = 30.0


def check_url(uri: str, allowed_hosts: list[str]) -> list[str]:
    """Return the addresses ``uri`` may be fetched from, or raise Forbidden or BadParameter."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadParameter("method.uri", "only http and https URLs can be downloaded")
    allowed = [entry.strip().lower() for entry in allowed_hosts]
    host = parts.hostname.lower()
    networks = []
    for entry in allowed:
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.ip_network(entry, strict=False))
    literal = _as_address(host)
    listed_by_name = host in allowed
    listed_by_address = literal is not None and any(literal in net for net in networks)
    if not (listed_by_name or listed_by_address):
        raise Forbidden(f"{host} is not in images.web_download_allowed_hosts")
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise BadParameter("method.uri", f"cannot resolve {host} ({exc})") from None
    addresses = []
    for info in infos:
        address = _as_address(str(info[4][0]))
        if address is None:
            continue
        # SECURITY: an allowed name that resolves to an internal address (DNS rebinding,
        # a poisoned record) is refused unless that address is itself listed.
        if _internal(address) and not any(address in net for net in networks):
            raise Forbidden(f"{host} resolves to the internal address {address}")
        addresses.append(str(address))
    if not addresses:
        raise BadParameter("method.uri", f"{host} has no address")
    return addresses


def fetch(uri: str, allowed_hosts: list[str]) -> http.client.HTTPResponse:
    """GET ``uri`` from an address that passed ``check_url``, following checked redirects."""
    for _ in range(MAX_REDIRECTS + 1):
        address = check_url(uri, allowed_hosts)[0]
        parts = urlsplit(uri)
        connection = _pinned_connection(parts.scheme, parts.hostname or "", parts.port, address)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection.request("GET", path, headers={"User-Agent": "coverslip"})
            response = connection.getresponse()
        except OSError as exc:
            raise ImportFailed(f"cannot download {uri}: {exc}") from None
        if response.status in (301, 302, 303, 307, 308):
            location = response.getheader("Location")
            response.close()
            if not location:
                raise ImportFailed(f"{uri} redirected nowhere")
            uri = urljoin(uri, location)
            continue
        if response.status != 200:
            response.close()
            raise ImportFailed(f"downloading {uri} answered HTTP {response.status}")
        return response
    raise ImportFailed(f"{uri}: more than {MAX_REDIRECTS} redirects")


def _as_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to a checked address, with the URL's host in the Host header."""

    def __init__(self, host: str, port: int | None, address: str) -> None:
        super().__init__(host, port, timeout=TIMEOUT)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """An HTTPS connection to a checked address, verifying the certificate of the URL's host."""

    def __init__(self, host: str, port: int | None, address: str) -> None:
        super().__init__(host, port, timeout=TIMEOUT, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def _pinned_connection(
    scheme: str, host: str, port: int | None, address: str
) -> http.client.HTTPConnection:
    if scheme == "https":
        return _PinnedHTTPS(host, port, address)
    return _PinnedHTTP(host, port, address)
