"""Fetching an identity provider's document (SAML metadata, OIDC discovery) for an IT admin.

The address comes from a customer's IT admin, so the portal must not become their way into the
server's own network, nor be held up by a slow or endless answer:

- https only; plain http, loopback and private addresses only when `[sso]
  allow_private_addresses` is on (development, tests, an IdP on the internal network). Every
  address the host name resolves to is checked, and each redirect again (at most three).
- the whole download has a deadline and a size limit, enforced while reading, not after.
- errors are plain sentences naming the address; no library's text reaches the page.

What is left: the name is resolved to check it and again by the connection (a DNS answer that
changes in between is not caught); list such IdPs by address where DNS is not trusted.
"""

import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from flask import current_app

from portal.core.errors import UserError

DEADLINE_SECONDS = 15
# How a refusal by the address policy ends, so that logs and pages name the setting.
POLICY = (
    "which Kursa does not fetch from unless the platform operator allows it "
    "([sso] allow_private_addresses)"
)
MAX_REDIRECTS = 3
CHUNK = 64 * 1024


def fetch(url: str, *, what: str, max_bytes: int) -> bytes:
    """The body at `url` (following up to three redirects, each checked like the first).

    `what` names the document in errors ("The metadata", "The discovery document").
    """
    started = time.monotonic()
    for _ in range(MAX_REDIRECTS + 1):
        check_address(url, what=what)
        response = _get(url, what, started)
        try:
            if response.is_redirect and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status_code != 200:
                raise UserError(f"{what} address {url} answered HTTP {response.status_code}.")
            return _read(response, url, what=what, max_bytes=max_bytes, started=started)
        finally:
            response.close()
    raise UserError(f"{what} address redirects more than {MAX_REDIRECTS} times.")


def size_text(size: int) -> str:
    """A byte limit as people write it: "2 MB", "256 KB", "1536 KB" (no 0 MB, no 1.5 MB)."""
    if size >= 2**20 and size % 2**20 == 0:
        return f"{size // 2**20} MB"
    return f"{max(size // 2**10, 1)} KB"


def check_address(url: str, *, what: str) -> None:
    """Refuse what the portal must not fetch for a customer (see the module's docstring)."""
    allow_private = current_app.config["KURSA"]["sso"]["allow_private_addresses"]
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise UserError(f"{what} address {url!r} is not a web address.") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes or not host:
        if parts.scheme == "http" and host:
            raise UserError(f"{what} address {url} is plain http, {POLICY}.")
        raise UserError(f"{what} address must start with https://.")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise UserError(f"{what} address {url}: the host {host} is not known.") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise UserError(f"{what} address {url} is on a private or local network, {POLICY}.")


def policy_refusal(url: str) -> str | None:
    """Why the address policy refuses `url` now, or None: for an address stored while the
    policy allowed it (a provider added with `[sso] allow_private_addresses` on, used by a
    portal without it), so that pages and logs can name the policy instead of "unreachable".

    Judged from the address alone (scheme; a literal IP address or localhost as host): no
    name is resolved, so a page may ask. A name that resolves to a private address is still
    refused by check_address at the next fetch, with the same sentence.
    """
    if current_app.config["KURSA"]["sso"]["allow_private_addresses"]:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return None
    if parts.scheme == "http":
        return f"{url} is plain http, {POLICY}."
    if _is_local_name(host):
        return f"{url} is on a private or local network, {POLICY}."
    return None


def _is_local_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False  # a name: only resolving it would tell


def _get(url: str, what: str, started: float) -> requests.Response:
    left = DEADLINE_SECONDS - (time.monotonic() - started)
    try:
        return requests.get(
            url, stream=True, allow_redirects=False, timeout=(min(5, left), min(5, left))
        )
    except requests.Timeout:
        raise UserError(f"{what} address {url} did not answer in time.") from None
    except requests.RequestException:
        raise UserError(f"{what} could not be fetched: {url} cannot be reached.") from None


def _read(response, url: str, *, what: str, max_bytes: int, started: float) -> bytes:
    body = bytearray()
    try:
        # read1 returns what has arrived (a drip server cannot stretch one read to a chunk)
        while chunk := response.raw.read1(CHUNK, decode_content=True):
            body += chunk
            if len(body) > max_bytes:
                raise UserError(
                    f"{what} at {url} is larger than {size_text(max_bytes)}; "
                    "is that the right address?"
                )
            if time.monotonic() - started > DEADLINE_SECONDS:
                raise UserError(
                    f"{what} at {url} took longer than {DEADLINE_SECONDS} s to download."
                )
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        raise UserError(f"{what} download from {url} broke off.") from None
    return bytes(body)
