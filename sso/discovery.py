"""Checking an OpenID provider's discovery document (OpenID Connect Discovery 1.0), when the
provider is added and each time the document is fetched again for a login or a logout.

The document steers the portal and the browser, so a provider (or whoever controls its
address) must not aim either elsewhere: its issuer must be the discovery address without
/.well-known/openid-configuration (section 4.3), the addresses the server fetches (token,
JWKS, userinfo) follow sso.fetch's rules, the ones the browser is sent to (authorization,
end of session) must be https (http only where `[sso] allow_private_addresses` is on), and
the lists Kursa reads must be lists.
"""

from urllib.parse import urlsplit

from flask import current_app

from portal.core.errors import UserError
from sso.fetch import check_address

MAX_BYTES = 256 * 1024
SUFFIX = "/.well-known/openid-configuration"
REQUIRED = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
FETCHED = ("token_endpoint", "jwks_uri", "userinfo_endpoint")  # by the portal, at each login
VISITED = ("authorization_endpoint", "end_session_endpoint")  # by the browser
LISTS = ("response_types_supported", "code_challenge_methods_supported")


def check_document(document, url: str) -> dict:
    """`document` (parsed JSON from `url`) when Kursa can use it; else UserError saying why."""
    where = f"The discovery document at {url}"
    if not isinstance(document, dict):
        raise UserError(f"{where} is not a JSON object.")
    missing = [key for key in REQUIRED if not document.get(key)]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}.")
    _check_issuer(document["issuer"], url, where)
    for key in FETCHED + VISITED:
        _check_endpoint(document, key, where)
    _check_lists(document, where)
    return document


def _check_issuer(issuer, url: str, where: str) -> None:
    # Section 4.1: a terminating / of the issuer is removed before the suffix is appended.
    if not isinstance(issuer, str) or issuer.rstrip("/") + SUFFIX != url:
        raise UserError(
            f"{where} names the issuer {issuer!r}; it must be that address without {SUFFIX} "
            "(OpenID Connect Discovery 1.0, section 4.3). Give the provider's own discovery "
            "address."
        )


def _check_endpoint(document: dict, key: str, where: str) -> None:
    value = document.get(key)
    if value is None or value == "":
        return
    if not isinstance(value, str):
        raise UserError(f"{where}: {key} is not a web address.")
    if key in FETCHED:
        check_address(value, what=f"The provider's {key}")
        return
    allow_private = current_app.config["KURSA"]["sso"]["allow_private_addresses"]
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
    if not host or parts.scheme not in (("https", "http") if allow_private else ("https",)):
        raise UserError(f"{where}: {key} must be an https:// address, not {value[:100]!r}.")


def _check_lists(document: dict, where: str) -> None:
    for key in LISTS:
        value = document.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        ):
            raise UserError(f"{where}: {key} must be a list of strings.")
    methods = document.get("code_challenge_methods_supported")
    if methods is not None and "S256" not in methods:
        raise UserError("The provider does not support PKCE with S256.")
    if "code" not in document.get("response_types_supported", ["code"]):
        raise UserError("The provider does not support the authorization code flow.")
