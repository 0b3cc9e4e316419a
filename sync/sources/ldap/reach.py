"""What a directory source may reach on the Kursa server: CA files and LDAP hosts.

A customer's IT admin sets up sources on a page. Without limits, the "CA file" would tell them
whether any file exists on the server, and the URI would let them probe any host the server
reaches. So a CA file must lie in `[sync] ca_dir` (default instance/ca; the platform operator
puts files there), or the CA certificate is pasted and stored with the source; and when
`[sync] allowed_ldap_hosts` is set, the URI's hosts must match it, at save and at connect.
"""

import hashlib
import ipaddress
import os
import re
import socket
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cryptography import x509
from flask import current_app

from portal.core.errors import FieldRefused

MAX_PEM_CHARS = 65536
LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", re.IGNORECASE)
# libldap takes a list of URIs separated by commas or spaces (ldap_url_parselist, ", "); tabs
# and newlines are split on too, so no piece can hide a second URI.
URI_SEPARATORS = re.compile(r"[\s,]+")
# What a host may hold once unescaped (libldap unescapes %XX): a name, IPv4 or IPv6.
HOST_CHARS = re.compile(r"^[a-z0-9.:-]+$")
CA_OUTSIDE = (
    "The CA file must be a file in this Kursa's folder of CA certificates, given by its name "
    "there (the platform operator puts files into it). Or paste the CA certificate instead."
)


class ReachError(FieldRefused):
    """A CA file or a host the source may not use; `field` names the setting."""


def ca_dir() -> Path:
    """`[sync] ca_dir`, or instance/ca when empty (resolved, so links cannot lead out)."""
    configured = current_app.config["KURSA"]["sync"]["ca_dir"]
    return Path(configured or Path(current_app.instance_path) / "ca").resolve()


def resolve_ca_file(name: str) -> str:
    """The absolute path of a CA file in ca_dir; ReachError otherwise.

    A path outside the folder is refused with the same message whether it exists or not.
    """
    folder = ca_dir()
    try:
        path = (folder / name).resolve()  # an absolute `name` replaces the folder
        is_file = folder in path.parents and path.is_file()
    except (OSError, ValueError):  # a NUL byte, a name too long: no file is named so
        raise ReachError("ca_file", CA_OUTSIDE) from None
    if folder not in path.parents:
        raise ReachError("ca_file", CA_OUTSIDE)
    if not is_file:
        raise ReachError("ca_file", f"There is no CA file {path.name!r} in the CA folder.")
    return str(path)


def check_ca_pem(pem: str) -> None:
    """A pasted CA certificate must be one or more PEM certificates."""
    if len(pem) > MAX_PEM_CHARS:
        raise ReachError("ca_pem", "The CA certificate is too long (at most 64 KB of PEM).")
    try:
        x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise ReachError(
            "ca_pem",
            "The CA certificate is not a PEM certificate "
            "(-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----).",
        ) from None


def ca_pem_file(pem: str) -> str:
    """A file holding the pasted certificate, for the LDAP library (named by its hash)."""
    folder = Path(current_app.instance_path) / "ca-sources"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / (hashlib.sha256(pem.encode()).hexdigest() + ".pem")
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(pem)
        partial.replace(path)
    return str(path)


def check_hosts(uri: str, *, resolve: bool) -> None:
    """Every host libldap would try for `uri` must be allowed.

    libldap reads `uri` as a list separated by commas or spaces and connects to each in turn,
    unescaping %XX in the host; each piece is checked as libldap will see it. Names match an
    entry exactly or by a suffix entry (".example.test"); addresses, and names resolved when
    `resolve` is true, must lie in a CIDR entry. Empty list: any host.
    """
    allowed = current_app.config["KURSA"]["sync"]["allowed_ldap_hosts"]
    if not allowed:
        return
    for one in URI_SEPARATORS.split(uri):
        if one:
            _check_one_host(one, allowed, resolve)


def _check_one_host(one: str, allowed: list[str], resolve: bool) -> None:
    parts = urlsplit(one)
    if parts.scheme == "ldapi":
        raise ReachError(
            "uri", "ldapi:// reaches a socket on the Kursa server; use ldap:// or ldaps://."
        )
    # urlsplit drops user@ where libldap keeps it in the host: refuse it rather than guess.
    host = "" if "@" in parts.netloc else unquote(parts.hostname or "").lower()
    if not HOST_CHARS.match(host) or not _allowed(host, allowed, resolve):
        raise ReachError(
            "uri",
            f"The server {host or one!r} is not among the directory servers this Kursa "
            "may reach ([sync] allowed_ldap_hosts); ask the platform operator.",
        )


def _allowed(host: str, allowed: list[str], resolve: bool) -> bool:
    names = [entry.lower() for entry in allowed if not _is_network(entry)]
    if any(host == n or (n.startswith(".") and (host.endswith(n) or host == n[1:])) for n in names):
        return True
    networks = [
        ipaddress.ip_network(entry, strict=False) for entry in allowed if _is_network(entry)
    ]
    if not networks:
        return False
    addresses = _addresses(host, resolve)
    return bool(addresses) and all(any(a in net for net in networks) for a in addresses)


def _addresses(host: str, resolve: bool) -> list:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    if not resolve:
        return []
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in found]


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def check_allowed_hosts_setting(entries: list) -> str:
    """'' when every entry is a host name, a ".suffix" or an address/CIDR; else the bad one."""
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            return repr(entry)
        if _is_network(entry):
            continue
        name = entry[1:] if entry.startswith(".") else entry
        if not all(LABEL.match(label) for label in name.split(".")):
            return repr(entry)
    return ""
