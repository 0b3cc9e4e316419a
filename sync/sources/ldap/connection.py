"""Bind and search, always paged (RFC 2696); LDAP errors become sentences for an IT admin.

Every failure raises DirectoryError with a message that says what happened and what to check;
it never contains the password. The caller turns it into a failed run.
"""

import logging
import socket
from collections.abc import Callable, Iterator
from operator import itemgetter
from urllib.parse import urlsplit

import ldap
from ldap.controls import SimplePagedResultsControl

logger = logging.getLogger(__name__)

Entry = tuple[str, dict[str, list[bytes]]]


class DirectoryError(Exception):
    """The directory could not be read completely; the message is for the IT admin."""


class MissingEntry(DirectoryError):
    """The base DN (or the entry) asked for does not exist, or the bind account cannot see it."""


def connect(settings: dict, password: str):
    """A bound connection, or DirectoryError."""
    uri = settings["uri"]
    try:
        conn = ldap.initialize(uri)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        conn.set_option(ldap.OPT_REFERRALS, 0)  # referrals are skipped, not chased
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, float(settings["network_timeout"]))
        conn.set_option(ldap.OPT_TIMEOUT, float(settings["timeout"]))
        if settings["ca_file"]:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, settings["ca_file"])
        demand = ldap.OPT_X_TLS_DEMAND if settings["verify_certificates"] else ldap.OPT_X_TLS_NEVER
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, demand)
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        if settings["starttls"]:
            conn.start_tls_s()
        conn.simple_bind_s(settings["bind_dn"], password)
    except ldap.LDAPError as exc:
        raise translate(exc, settings, connecting=True) from None
    return conn


def paged_search(
    conn,
    settings: dict,
    base: str,
    search_filter: str,
    attributes: list[str],
    *,
    scope: int = ldap.SCOPE_SUBTREE,
    on_page: Callable[[int], None] | None = None,
) -> Iterator[Entry]:
    """Every entry below `base` matching the filter, page by page; referrals skipped.

    The next page is asked for as soon as a page arrives, before its entries are handed on,
    so the server looks it up while the caller works on this one.
    """
    control = SimplePagedResultsControl(
        criticality=True, size=int(settings["page_size"]), cookie=""
    )
    timeout = float(settings["timeout"])

    def ask() -> int:
        return conn.search_ext(
            base, scope, search_filter, attributes, serverctrls=[control], timeout=timeout
        )

    pages, msgid = 0, None
    try:
        msgid = ask()
        while msgid is not None:
            _, entries, _, controls = conn.result3(msgid, timeout=timeout)
            msgid = None
            pages += 1
            cookie = _next_cookie(controls)
            if cookie:
                control.cookie = cookie
                msgid = ask()
            if None in map(itemgetter(0), entries):  # a referral (search reference) has no DN
                yield from [entry for entry in entries if entry[0] is not None]
            else:
                yield from entries  # handed on as they are: no new tuple per entry
            if on_page is not None:
                on_page(pages)
    except ldap.LDAPError as exc:
        raise translate(exc, settings, base) from None
    finally:
        if msgid is not None:  # stopped early (failure or a caller that had enough)
            _abandon(conn, msgid)


def _abandon(conn, msgid: int) -> None:
    try:
        conn.abandon_ext(msgid)
    except ldap.LDAPError:
        pass  # the connection is being given up anyway


def _next_cookie(controls) -> bytes:
    for control in controls or ():
        if control.controlType == SimplePagedResultsControl.controlType:
            return control.cookie
    raise DirectoryError(
        "The directory server answered without the paging control (RFC 2696), so Kursa "
        "cannot know it read every entry. Nothing was changed."
    )


def read_one(conn, settings: dict, dn: str, attributes: list[str]) -> dict[str, list[bytes]]:
    """The attributes of one entry (the root DSE when `dn` is empty)."""
    try:
        found = conn.search_ext_s(
            dn, ldap.SCOPE_BASE, "(objectClass=*)", attributes, timeout=float(settings["timeout"])
        )
    except ldap.LDAPError as exc:
        raise translate(exc, settings, dn) from None
    return found[0][1] if found else {}


def read_whole_attribute(
    conn, dn: str, attribute: str, *, settings: dict | None = None
) -> list[bytes]:
    """Every value of a multi-valued attribute of one entry, however many there are.

    Active Directory hands out at most MaxValRange values (1,500 by default) at once: asked
    for `member`, it answers `member;range=0-1499`. The rest is asked for range by range
    (`member;range=1500-*`, ...) until a range ends in `*` (MS-ADTS 3.1.1.3.1.3.3, incremental
    retrieval). A server without a range limit answers `member` whole at the first request.
    With `settings`, LDAP errors become DirectoryError and the source's timeout applies.
    """
    timeout = float(settings["timeout"]) if settings else -1
    values: list[bytes] = []
    requested, low = attribute, 0
    try:
        while True:
            found = conn.search_ext_s(
                dn, ldap.SCOPE_BASE, "(objectClass=*)", [requested], timeout=timeout
            )
            entry = next((v for d, v in found if d is not None), {})
            ranged = _ranged_values(entry, attribute)
            if ranged is None:
                if low == 0:  # no range limit (or no values at all): the answer is whole
                    whole = next(
                        (v for k, v in entry.items() if k.lower() == attribute.lower()), []
                    )
                    return list(whole)
                raise _range_error(dn, attribute, f"no values for the range from {low}")
            start, end, chunk = ranged
            if start != low:
                raise _range_error(dn, attribute, f"a range from {start} instead of {low}")
            values.extend(chunk)
            if end is None:
                return values
            if end < start or not chunk:
                raise _range_error(dn, attribute, f"the range {start}-{end}")
            low = end + 1
            requested = f"{attribute};range={low}-*"
    except ldap.LDAPError as exc:
        if settings is None:
            raise
        raise translate(exc, settings, dn) from None


def _ranged_values(entry: dict, attribute: str) -> tuple[int, int | None, list[bytes]] | None:
    """(first, last or None for `*`, values) of `attribute;range=first-last` in the entry."""
    prefix = f"{attribute.lower()};range="
    for key, chunk in entry.items():
        if key.lower().startswith(prefix):
            first, _, last = key[len(prefix) :].partition("-")
            return int(first), None if last == "*" else int(last), list(chunk)
    return None


def _range_error(dn: str, attribute: str, what: str) -> DirectoryError:
    return DirectoryError(
        f"The directory server answered the ranged read of {attribute} on {dn!r} with {what}, "
        "so Kursa cannot be sure it read every value (the entry may have changed while it "
        "was read). Nothing was changed."
    )


def close(conn) -> None:
    try:
        conn.unbind_s()
    except ldap.LDAPError:
        pass


def _tls_refused(uri: str, info: dict) -> bool:
    """ldaps://: libldap reports a failed certificate check as "Can't contact LDAP server"
    with no detail. When a plain TCP connection to the same port works, it was TLS."""
    if not uri.lower().startswith("ldaps://") or "unknown error code" not in info.get("info", ""):
        return False
    parts = urlsplit(uri)
    try:
        with socket.create_connection((parts.hostname, parts.port or 636), timeout=3):
            return True
    except OSError:
        return False


def translate(
    exc: ldap.LDAPError, settings: dict, base: str | None = None, *, connecting: bool = False
) -> DirectoryError:
    """The error as a sentence for an IT admin (logged without DNs or passwords)."""
    uri, seconds = settings["uri"], settings["timeout"]
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    detail = info.get("info") or ""
    if not detail or "unknown error code" in detail:  # libldap's TLS errors say no more
        detail = info.get("desc") or type(exc).__name__
    logger.warning("LDAP source at %s failed: %s (%s)", uri, type(exc).__name__, detail)
    if isinstance(exc, ldap.INVALID_CREDENTIALS):
        text = (
            f"The directory server at {uri} refused the bind DN and password (invalid "
            "credentials). Check the bind DN, and whether the password expired or changed."
        )
    elif isinstance(exc, ldap.SERVER_DOWN) and connecting and _tls_refused(uri, info):
        text = (
            f"No secure connection to {uri} could be set up: the server answers, but the TLS "
            "handshake failed, most likely because its certificate could not be verified. "
            "Check the CA file, and that the certificate names this host and has not expired."
        )
    elif isinstance(exc, ldap.SERVER_DOWN):
        text = (
            f"The directory server at {uri} could not be reached or closed the connection "
            f"({detail}). Check the address, the port, the firewall and that the server runs."
        )
    elif isinstance(exc, ldap.TIMEOUT):
        unit = "second" if seconds == 1 else "seconds"
        text = f"The directory server at {uri} did not answer within {seconds} {unit}."
    elif isinstance(exc, ldap.NO_SUCH_OBJECT):
        text = (
            f"The base DN {base!r} does not exist on the directory server at {uri} (or the "
            "bind account may not see it). Check the user base and org base."
        )
    elif isinstance(exc, ldap.SIZELIMIT_EXCEEDED | ldap.ADMINLIMIT_EXCEEDED):
        text = (
            f"The directory server at {uri} stopped the search at its size limit although "
            "Kursa pages its searches. Allow paged searches of this size for the bind account."
        )
    elif isinstance(exc, ldap.UNAVAILABLE_CRITICAL_EXTENSION):
        text = (
            f"The directory server at {uri} does not support paged searches (RFC 2696), "
            "so Kursa cannot read it completely."
        )
    elif isinstance(exc, ldap.PARTIAL_RESULTS | ldap.REFERRAL):
        text = (
            f"The directory server at {uri} returned only part of the result and referred "
            f"Kursa to another server for {base!r}. Use a base DN that this server holds."
        )
    elif isinstance(exc, ldap.CONNECT_ERROR):
        text = (
            f"No secure connection to {uri} could be set up ({detail}): the server's "
            "certificate could not be verified or TLS failed. Check the CA file, and that "
            "the certificate names this host and has not expired."
        )
    elif isinstance(exc, ldap.FILTER_ERROR):
        text = "The user filter is not a valid LDAP filter."
    else:
        text = f"The directory server at {uri} answered with an error: {detail}."
    kind = MissingEntry if isinstance(exc, ldap.NO_SUCH_OBJECT) else DirectoryError
    return kind(text + " Nothing was changed.")
