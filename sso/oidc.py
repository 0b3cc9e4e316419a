"""OpenID Connect relying party: authorization code flow with PKCE (S256), ID token checks.

State, nonce and code verifier live in the database (OidcRequest), one-time and
time-limited, so several tabs work and any node can finish a login. Each state is bound to the
browser that started the login: the row keeps the SHA-256 of a random key in that browser's
login cookie (BROWSER_COOKIE), and the callback must bring the key (login CSRF: a callback link
opened in another browser logs nobody in). Discovery documents and
key sets are cached per process; an ID token signed with an unknown key id refetches the key
set once (key rotation). Tokens, codes and secrets are never logged.
"""

import hashlib
import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact
from sqlalchemy import select, update

from portal.accounts.models import LoginSession
from portal.core import audit
from portal.core.db import db, utcnow
from portal.core.errors import UserError
from portal.directory.models import Customer
from sso import discovery
from sso.fetch import fetch
from sso.models import IdentityProvider, MatchRule, OidcRequest
from sso.vault import decrypt

logger = logging.getLogger(__name__)
HTTP_TIMEOUT = 10
DISCOVERY_TTL = 3600
JWKS_REFETCH_SECONDS = 30
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
STANDARD_CLAIMS = {
    MatchRule.USERNAME: "preferred_username",
    MatchRule.EMAIL: "email",
    MatchRule.EMPLOYEE_NUMBER: "employee_number",
}

# The cookie holding this browser's login key; its value is never stored, only its hash.
BROWSER_COOKIE = "kursa_sso_browser"
BROWSER_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)

_lock = threading.Lock()
_discovery: dict[str, tuple[float, dict]] = {}
_key_sets: dict[str, KeySet] = {}
_refetched: dict[str, float] = {}  # jwks_uri -> when an unknown key id last refetched it
_secrets: dict[int, tuple[str, str]] = {}  # provider id -> (stored ciphertext, plain secret)


class OidcRefused(Exception):
    """The callback is refused; `reason` goes to the log and audit, never to the user."""

    def __init__(self, reason: str, provider: IdentityProvider | None = None, next_url=""):
        super().__init__(reason)
        self.reason = reason
        self.provider = provider
        self.next_url = next_url

    @property
    def restartable(self) -> bool:
        """A used or expired state: a reloaded callback or an old tab starts a fresh login."""
        return self.provider is not None and self.reason in ("state_used", "state_expired")


@dataclass
class VerifiedLogin:
    provider: IdentityProvider
    subject: str
    claims: dict
    next_url: str
    id_token: str = ""  # kept server-side for RP-initiated logout (id_token_hint)


# --- discovery and keys ---------------------------------------------------------------------


def fetch_discovery(url: str, *, fresh: bool = False) -> dict:
    """The provider's discovery document, cached for an hour (ValueError on failure)."""
    now = time.monotonic()
    cached = _discovery.get(url)
    if cached and not fresh and now - cached[0] < DISCOVERY_TTL:
        return cached[1]
    try:  # fetched and checked as when the provider was added: it may have changed since
        body = fetch(url, what="The discovery document", max_bytes=discovery.MAX_BYTES)
        document = discovery.check_document(json.loads(body), url)
    except UserError as exc:
        raise ValueError(str(exc)) from None
    with _lock:
        _discovery[url] = (now, document)
    return document


def _key_set(jwks_uri: str, *, fresh: bool = False) -> KeySet:
    if not fresh and jwks_uri in _key_sets:
        return _key_sets[jwks_uri]
    response = requests.get(jwks_uri, timeout=HTTP_TIMEOUT)
    response.raise_for_status()
    keys = KeySet.import_key_set(response.json())
    with _lock:
        _key_sets[jwks_uri] = keys
    return keys


def _may_refetch(jwks_uri: str) -> bool:
    """At most one refetch per JWKS_REFETCH_SECONDS, so forged key ids cannot flood the OP."""
    now = time.monotonic()
    with _lock:
        if now - _refetched.get(jwks_uri, -JWKS_REFETCH_SECONDS) < JWKS_REFETCH_SECONDS:
            return False
        _refetched[jwks_uri] = now
    return True


def _client_secret(provider: IdentityProvider) -> str:
    """The provider's plain client secret, decrypted once per stored ciphertext.

    Deriving the key and decrypting cost more than the rest of the ID token checks; a new
    secret is a new ciphertext, so a changed provider is read at once.
    """
    stored = provider.setting("client_secret")
    cached = _secrets.get(provider.id)
    if cached is None or cached[0] != stored:
        cached = (stored, decrypt(stored))
        with _lock:
            _secrets[provider.id] = cached
    return cached[1]


def forget_caches() -> None:
    with _lock:
        _discovery.clear()
        _key_sets.clear()
        _refetched.clear()
        _secrets.clear()


# --- starting a login -----------------------------------------------------------------------


def redirect_uri(base_url: str, customer: Customer) -> str:
    return f"{base_url.rstrip('/')}/sso/{customer.slug}/oidc/callback"


def browser_key(cookie: str | None) -> str:
    """The key that binds logins to this browser: the one its cookie holds, else a fresh one
    (kept, not renewed, so that tabs started one after the other all finish)."""
    if cookie and BROWSER_KEY_RE.match(cookie):
        return cookie
    return secrets.token_urlsafe(32)


def _browser_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def start_login(base_url: str, provider: IdentityProvider, next_url: str, *, browser: str) -> str:
    """Store a fresh state, nonce and code verifier bound to the `browser` key (see
    browser_key); return the authorization address."""
    document = fetch_discovery(provider.setting("discovery_url"))
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = generate_token(64)
    lifetime = current_app.config["KURSA"]["sso"]["request_lifetime_seconds"]
    now = utcnow()
    db.session.execute(OidcRequest.__table__.delete().where(OidcRequest.expires_at < now))
    db.session.add(
        OidcRequest(
            state=state,
            provider_id=provider.id,
            browser_hash=_browser_hash(browser),
            nonce=nonce,
            code_verifier=verifier,
            next_url=next_url[:500],
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
    )
    db.session.flush()
    query = {
        "response_type": "code",
        "client_id": provider.setting("client_id"),
        "redirect_uri": redirect_uri(base_url, provider.customer),
        "scope": provider.setting("scopes"),
        "state": state,
        "nonce": nonce,
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    logger.info("OIDC login started with provider %s", provider.id)
    return f"{document['authorization_endpoint']}?{urlencode(query)}"


# --- RP-initiated logout -----------------------------------------------------------------


def post_logout_uri(base_url: str, customer: Customer) -> str:
    return f"{base_url.rstrip('/')}/sso/{customer.slug}/oidc/logged-out"


def start_logout(base_url: str, login) -> str | None:
    """The provider's end_session address for an ended OIDC session, or None when it offers
    none (or cannot be reached: Kursa's own logout has happened either way).

    The state is kept on the session row; the provider sends it back to logged-out.
    """
    provider = db.session.get(IdentityProvider, login.provider_id) if login.provider_id else None
    if provider is None or not provider.is_enabled:
        return None
    try:
        endpoint = fetch_discovery(provider.setting("discovery_url")).get("end_session_endpoint")
    except (requests.RequestException, ValueError):
        logger.warning("OIDC provider %s unreachable at logout; its session stays", provider.id)
        return None
    if not endpoint:
        return None
    login.logout_state = secrets.token_urlsafe(32)
    query = {
        "client_id": provider.setting("client_id"),
        "post_logout_redirect_uri": post_logout_uri(base_url, provider.customer),
        "state": login.logout_state,
    }
    if login.id_token:
        query["id_token_hint"] = login.id_token
    logger.info("OIDC logout sent to provider %s", provider.id)
    return f"{endpoint}?{urlencode(query)}"


def finish_logout(customer: Customer, state: str) -> bool:
    """Whether `state` is the open logout of one of this customer's OIDC sessions (used once)."""
    found = db.session.scalar(
        select(LoginSession)
        .join(IdentityProvider, IdentityProvider.id == LoginSession.provider_id)
        .where(
            LoginSession.logout_state == state[:64],
            LoginSession.ended_at.is_not(None),
            IdentityProvider.customer_id == customer.id,
        )
    )
    if not state or found is None:
        logger.warning("OIDC logout return for customer %s with an unknown state", customer.id)
        return False
    found.logout_state = None
    logger.info("OIDC logout with provider %s finished", found.provider_id)
    return True


# --- the callback ---------------------------------------------------------------------------


def finish_login(base_url: str, stored: OidcRequest, args: dict) -> VerifiedLogin:
    """Exchange the code of a taken state, verify the ID token, read userinfo."""
    provider = db.session.get(IdentityProvider, stored.provider_id)
    if args.get("error") or not args.get("code"):
        raise OidcRefused("provider_error", provider)
    try:
        document = fetch_discovery(provider.setting("discovery_url"))
    except (requests.RequestException, ValueError):
        raise OidcRefused("provider_unreachable", provider) from None
    if args.get("iss") and args["iss"] != provider.setting("issuer"):
        raise OidcRefused("wrong_issuer", provider)
    client = OAuth2Session(
        provider.setting("client_id"),
        _client_secret(provider),
        token_endpoint_auth_method="client_secret_basic",
    )
    try:
        token = client.fetch_token(
            document["token_endpoint"],
            grant_type="authorization_code",
            code=args["code"],
            redirect_uri=redirect_uri(base_url, provider.customer),
            code_verifier=stored.code_verifier,
            timeout=HTTP_TIMEOUT,
        )
    except Exception:  # noqa: BLE001 - any failure of the exchange is a refusal
        raise OidcRefused("token_exchange", provider) from None
    claims = verify_id_token(provider, document, token.get("id_token", ""), stored.nonce)
    if document.get("userinfo_endpoint"):
        claims = {**claims, **_userinfo(client, document["userinfo_endpoint"], claims, provider)}
    return VerifiedLogin(
        provider, str(claims["sub"]), claims, stored.next_url, token.get("id_token", "")
    )


def take_state(customer: Customer, state: str, browser: str) -> OidcRequest:
    """Mark the state used (atomically: of two callbacks the second waits and finds it used).

    `browser` is the key from the callback's login cookie ("" without one); a state started in
    another browser is refused before anything else, so such a callback neither logs in nor
    restarts a login. On a refusal the caller rolls back and record_refusal marks the state
    used again."""
    found = db.session.execute(
        select(OidcRequest, IdentityProvider)
        .join(IdentityProvider, IdentityProvider.id == OidcRequest.provider_id)
        .where(OidcRequest.state == state[:100], IdentityProvider.customer_id == customer.id)
    ).first()
    if found is None:
        raise OidcRefused("unknown_state")
    stored, provider = found
    if not secrets.compare_digest(stored.browser_hash, _browser_hash(browser)):
        raise OidcRefused("state_not_this_browser", provider)
    if not provider.is_enabled:  # disabled while the login was at the provider
        raise OidcRefused("provider_disabled", provider)
    if stored.is_used:
        raise OidcRefused("state_used", provider, stored.next_url)
    if stored.expires_at <= utcnow():
        raise OidcRefused("state_expired", provider, stored.next_url)
    # A Core statement on the table: the ORM's bulk-update path costs more than the UPDATE.
    requests_table = OidcRequest.__table__
    taken = db.session.execute(
        update(requests_table)
        .where(requests_table.c.state == stored.state, requests_table.c.is_used.is_(False))
        .values(is_used=True)
    )
    if taken.rowcount != 1:
        raise OidcRefused("state_used", provider, stored.next_url)
    return stored


def verify_id_token(provider: IdentityProvider, document: dict, id_token: str, nonce: str):
    """The ID token's claims once signature, iss, aud, exp, iat and nonce check out."""
    if not id_token:
        raise OidcRefused("no_id_token", provider)
    uri = document["jwks_uri"]
    try:
        kid = extract_compact(id_token.encode()).protected.get("kid")
        keys = _key_set(uri)
        if kid and not any(key.kid == kid for key in keys) and _may_refetch(uri):
            keys = _key_set(uri, fresh=True)  # the provider rotated its keys
        decoded = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
    except requests.RequestException:
        raise OidcRefused("provider_unreachable", provider) from None
    except (JoseError, ValueError):
        raise OidcRefused("id_token_signature", provider) from None
    registry = jwt.JWTClaimsRegistry(
        leeway=60,
        iss={"essential": True, "value": provider.setting("issuer")},
        aud={"essential": True, "value": provider.setting("client_id")},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError:
        raise OidcRefused("id_token_claims", provider) from None
    audience = decoded.claims["aud"]
    if isinstance(audience, list) and len(audience) > 1:
        if decoded.claims.get("azp") != provider.setting("client_id"):
            raise OidcRefused("id_token_claims", provider)
    if not secrets.compare_digest(str(decoded.claims.get("nonce", "")), nonce):
        raise OidcRefused("nonce_mismatch", provider)
    return dict(decoded.claims)


def _userinfo(client, endpoint: str, claims: dict, provider: IdentityProvider) -> dict:
    try:
        response = client.get(endpoint, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        info = response.json()
    except Exception:  # noqa: BLE001 - userinfo failing refuses the login
        raise OidcRefused("userinfo", provider) from None
    if str(info.get("sub")) != str(claims["sub"]):
        raise OidcRefused("userinfo_subject", provider)
    return info


def record_refusal(exc: OidcRefused, customer: Customer, state: str) -> None:
    """Use up the state, audit and log a refused callback (the reason only, never a token)."""
    provider_id = exc.provider.id if exc.provider is not None else None
    if provider_id is not None:  # the state was found, for a provider of this customer
        db.session.execute(
            update(OidcRequest)
            .where(OidcRequest.state == state[:100], OidcRequest.provider_id == provider_id)
            .values(is_used=True)
        )
    target = ("identity_provider", provider_id) if provider_id else ("customer", customer.id)
    actor = f"sso:{provider_id}" if provider_id else "sso"
    audit.record(actor, "login.refused", *target, provider=provider_id, reason=exc.reason)
    logger.warning(
        "OIDC callback for customer %s refused: %s (provider %s)",
        customer.id,
        exc.reason,
        provider_id,
    )
