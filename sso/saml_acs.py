"""The SAML assertion consumer service: a POSTed Response -> what it proves, or a refusal.

Each response is checked against exactly one IdP's metadata, chosen by the stored request it
answers (or, for an IdP-initiated login, by its issuer). The signatures are verified in-process
(sso.saml_signature), only the signed Assertion is read (sso.saml_assertion), and the checks
here follow: status, destination, issuer, audience, times (NotOnOrAfter exclusive), the bearer
recipient, one answer per request and never the same assertion twice.
"""

import base64
import binascii
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import saml2.time_util
from flask import current_app
from saml2.saml import NAMEID_FORMAT_TRANSIENT
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from portal.core import audit
from portal.core.db import db, utcnow
from portal.directory.models import Customer
from sso import saml_assertion, saml_signature
from sso.models import IdentityProvider, ProviderKind, SamlAssertionSeen, SamlRequest
from sso.saml import acs_url, entity_id, sp_encryption_pair

logger = logging.getLogger(__name__)
SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
MAX_ASSERTION_LIFETIME = timedelta(days=1)
MAX_RESPONSE_BYTES = 256 * 1024
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class SamlRefused(Exception):
    """A response that must not log anyone in. `reason` is a short code for logs and audit."""

    def __init__(self, reason: str, provider: IdentityProvider | None = None):
        super().__init__(reason)
        self.reason = reason
        self.provider = provider


@dataclass
class VerifiedLogin:
    """What a verified assertion says: who, by which IdP, and where to go next."""

    provider: IdentityProvider
    name_id: str
    name_id_format: str
    attributes: dict[str, list[str]] = field(default_factory=dict)
    next_url: str = ""
    session_index: str = ""  # the IdP's SessionIndex, kept for single logout

    @property
    def is_persistent(self) -> bool:
        return self.name_id_format != NAMEID_FORMAT_TRANSIENT


def verify_response(base_url: str, customer: Customer, encoded: str) -> VerifiedLogin:
    """Check a POSTed SAMLResponse; return what it proves or raise SamlRefused.

    The signatures are checked in-process by sso.saml_signature (its docstring has the
    rules); every later check reads only the Assertion that a verified signature covers.
    """
    root = _parse(_decode(encoded))
    in_response_to, issuer = _peek(root)
    if in_response_to:
        stored, provider = _stored_request(customer, in_response_to)
    else:
        stored, provider = None, _unsolicited_provider(customer, issuer)

    facts = _verified_facts(provider, root)
    acs = acs_url(base_url, customer)
    _check_response(facts, provider, acs, stored)
    _check_issuer(facts, provider)
    _check_audience(facts, provider, base_url, customer)
    valid_until = _check_times_and_recipient(facts, provider, acs, stored)
    if stored is not None:
        _use_request(stored, provider)
    _remember_assertion(provider, facts, valid_until)

    return VerifiedLogin(
        provider=provider,
        name_id=facts.name_id,
        name_id_format=facts.name_id_format,
        attributes=facts.attributes,
        next_url=stored.next_url if stored is not None else "",
        session_index=facts.session_index,
    )


def _decode(encoded: str) -> bytes:
    if not encoded or len(encoded) > MAX_RESPONSE_BYTES:
        raise SamlRefused("malformed")
    try:
        return base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError):
        raise SamlRefused("malformed") from None


def _parse(document: bytes):
    """The hardened parse: no DTD (refused: SAML never needs one), entities or network."""
    try:
        return saml_signature.parse(document)
    except saml_signature.SignatureRefused as exc:
        raise SamlRefused(exc.reason) from None


def _peek(root) -> tuple[str, str]:
    """InResponseTo and Issuer, read (not trusted) to choose the request and the IdP."""
    if root.tag != f"{SAMLP}Response":
        raise SamlRefused("malformed")
    issuer = root.find(f"{SAML}Issuer")
    if issuer is None:
        issuer = root.find(f"{SAML}Assertion/{SAML}Issuer")
    return root.get("InResponseTo", ""), (issuer.text or "").strip() if issuer is not None else ""


def _stored_request(customer: Customer, request_id: str):
    """The open request answered and its provider, in one query."""
    found = db.session.execute(
        select(SamlRequest, IdentityProvider)
        .join(IdentityProvider, IdentityProvider.id == SamlRequest.provider_id)
        .where(SamlRequest.id == request_id, IdentityProvider.customer_id == customer.id)
    ).first()
    if found is None:
        raise SamlRefused("unknown_request")
    stored, provider = found
    if stored.is_used or stored.expires_at <= utcnow():
        raise SamlRefused("unknown_request")
    if not provider.is_enabled:
        raise SamlRefused("provider_disabled", provider)
    return stored, provider


def _unsolicited_provider(customer: Customer, issuer: str) -> IdentityProvider:
    providers = db.session.scalars(
        select(IdentityProvider).where(
            IdentityProvider.customer_id == customer.id,
            IdentityProvider.kind == ProviderKind.SAML.value,
            IdentityProvider.is_enabled.is_(True),
        )
    )
    provider = next((p for p in providers if issuer and p.setting("entity_id") == issuer), None)
    if provider is None:
        raise SamlRefused("unknown_request")
    if not provider.setting("allow_idp_initiated"):
        raise SamlRefused("idp_initiated", provider)
    return provider


def _verified_facts(provider: IdentityProvider, root) -> saml_assertion.AssertionFacts:
    """Verify the signatures with the provider's metadata keys; read what they cover."""
    try:
        signed = saml_signature.verify(
            root,
            _signing_keys(provider),
            require_signed_assertion=bool(provider.setting("require_signed_assertion")),
            decryption_key=_decryption_key(),
        )
        return saml_assertion.read(signed)
    except saml_signature.SignatureRefused as exc:
        raise SamlRefused(exc.reason, provider) from None


def _decryption_key():
    """The SP's encryption key, loaded once per key file."""
    key_file, _cert = sp_encryption_pair()
    cache = current_app.extensions.setdefault("kursa_sso", {})
    if cache.get("decryption_key_file") != key_file:
        cache["decryption_key"] = saml_signature.load_decryption_key(key_file)
        cache["decryption_key_file"] = key_file
    return cache["decryption_key"]


def _signing_keys(provider: IdentityProvider) -> list[saml_signature.SigningKey]:
    """The IdP's metadata signing keys, loaded once per provider and metadata text."""
    metadata_xml = provider.setting("metadata_xml")
    cache = current_app.extensions.setdefault("kursa_sso", {}).setdefault("signing_keys", {})
    cached = cache.get(provider.id)
    if cached is None or cached[0] != metadata_xml:
        keys = saml_signature.metadata_keys(metadata_xml, provider.setting("entity_id"))
        cached = cache[provider.id] = (metadata_xml, keys)
    return cached[1]


def _check_response(facts, provider: IdentityProvider, acs: str, stored) -> None:
    """Success, a login (an AuthnStatement), addressed to this ACS (required, although SAML
    makes it optional when the Response is unsigned), answering the stored request or none."""
    if facts.status != SUCCESS:
        raise SamlRefused("idp_status", provider)
    if not facts.authn_statements:
        raise SamlRefused("invalid:no_authn_statement", provider)  # not an answer to a login
    if facts.destination != acs:
        raise SamlRefused("destination", provider)
    expected = stored.id if stored is not None else ""
    if facts.in_response_to != expected:
        raise SamlRefused("unknown_request", provider)


def _check_issuer(facts, provider: IdentityProvider) -> None:
    if {facts.response_issuer, facts.issuer} != {provider.setting("entity_id")}:
        raise SamlRefused("issuer", provider)


def _check_audience(facts, provider, base_url: str, customer: Customer) -> None:
    """An AudienceRestriction naming Kursa is required (SAML lets it be absent)."""
    ours = entity_id(base_url, customer)
    restrictions = facts.audience_restrictions
    if not restrictions or not all(ours in audiences for audiences in restrictions):
        raise SamlRefused("audience", provider)


def _check_times_and_recipient(facts, provider: IdentityProvider, acs: str, stored) -> datetime:
    """NotOnOrAfter is exclusive; NotBefore inclusive; each bearer names this ACS and binds
    the assertion to the request answered (_check_bearer). Every NotOnOrAfter is at most a
    day ahead: the replay record must outlive the assertion (_remember_assertion), and one
    valid for longer than a login could take is refused rather than remembered for years.

    Returns the last moment the assertion could still be accepted: its earliest NotOnOrAfter
    plus the clock skew."""
    now = _now()
    skew = timedelta(seconds=provider.setting("clock_skew_seconds"))
    if not facts.bearers:
        raise SamlRefused("no_bearer", provider)
    for bearer in facts.bearers:
        _check_bearer(bearer, facts, provider, acs, stored)
    expiries = _expiries(facts, provider)
    for bound in expiries:
        if now >= bound + skew:
            raise SamlRefused("expired", provider)
        if bound - now > MAX_ASSERTION_LIFETIME:
            raise SamlRefused("invalid:lifetime", provider)
    if facts.not_before and now + skew < _instant(facts.not_before, provider):
        raise SamlRefused("not_yet_valid", provider)
    return min(expiries) + skew


def _expiries(facts, provider: IdentityProvider) -> list[datetime]:
    """Every NotOnOrAfter of the assertion: its Conditions' (optional) and each bearer's
    (required by the Web SSO profile, so there is always one)."""
    bounds = [facts.not_on_or_after, *(b.not_on_or_after for b in facts.bearers)]
    return [_instant(bound, provider) for bound in bounds if bound]


def _check_bearer(bearer, facts, provider: IdentityProvider, acs: str, stored) -> None:
    """The bearer names this ACS, and its InResponseTo the request answered. One without
    InResponseTo is an unsolicited assertion: accepted only where IdP-initiated login is
    allowed, and as an answer to a request only inside a signed Response (an unsigned one's
    InResponseTo binds nothing: anyone can wrap a captured assertion in it)."""
    if bearer.recipient != acs:
        raise SamlRefused("recipient", provider)
    if not bearer.not_on_or_after:
        raise SamlRefused("invalid:bearer_not_on_or_after", provider)
    if bearer.in_response_to not in {"", stored.id if stored is not None else ""}:
        raise SamlRefused("unknown_request", provider)
    if bearer.in_response_to:
        return
    if not provider.setting("allow_idp_initiated"):
        raise SamlRefused("idp_initiated", provider)
    if stored is not None and not facts.response_signed:
        raise SamlRefused("unknown_request", provider)


def _now() -> datetime:
    # pysaml2's clock, which the tests move.
    return datetime.fromtimestamp(saml2.time_util.utc_now(), UTC)


def _instant(value: str, provider: IdentityProvider | None = None) -> datetime:
    """An xs:dateTime; one without a zone is UTC, as SAML requires UTC."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SamlRefused("invalid:time", provider) from None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    if not 1970 < parsed.year < 9000:  # also keeps "+ skew" and "+ 1 hour" in range
        raise SamlRefused("invalid:time", provider)
    return parsed


def _use_request(stored: SamlRequest, provider: IdentityProvider) -> None:
    """Mark the request answered; of two concurrent answers on two nodes only one wins."""
    # A Core statement on the table: the ORM's bulk-update path costs more than the UPDATE.
    requests = SamlRequest.__table__
    result = db.session.execute(
        update(requests)
        .where(requests.c.id == stored.id, requests.c.is_used.is_(False))
        .values(is_used=True)
    )
    if result.rowcount != 1:
        raise SamlRefused("replay", provider)


def _remember_assertion(provider: IdentityProvider, facts, valid_until: datetime) -> None:
    """Record the assertion id; a second use of it (on any node) inserts nothing: replay.

    The record is kept until `valid_until`, the last moment the assertion could still be
    accepted (the purge of expired records at each login start must not make it usable
    again)."""
    if not facts.id:
        raise SamlRefused("invalid:no_id", provider)
    if not remember_once(provider, facts.id, valid_until):
        raise SamlRefused("replay", provider)


def remember_once(provider: IdentityProvider, message_id: str, expires: datetime) -> bool:
    """Record a message id (an assertion's, or "logout:" + a LogoutRequest's) until `expires`;
    False when it was recorded before: a replay. Also across nodes: one statement, no
    savepoint, and the unique constraint decides between concurrent uses."""
    insert = INSERTS[db.session.get_bind().dialect.name]
    result = db.session.execute(
        insert(SamlAssertionSeen.__table__)
        .values(provider_id=provider.id, assertion_id=message_id[:255], expires_at=expires)
        .on_conflict_do_nothing(index_elements=["provider_id", "assertion_id"])
        .returning(SamlAssertionSeen.__table__.c.id)
    )
    return result.first() is not None


def record_refusal(exc: SamlRefused, customer: Customer) -> None:
    """Audit and log a refused response (the reason code only, never the document)."""
    provider_id = exc.provider.id if exc.provider is not None else None
    target = ("identity_provider", provider_id) if provider_id else ("customer", customer.id)
    actor = f"sso:{provider_id}" if provider_id else "sso"
    audit.record(actor, "login.refused", *target, provider=provider_id, reason=exc.reason)
    logger.warning(
        "SAML response for customer %s refused: %s (provider %s)",
        customer.id,
        exc.reason,
        provider_id,
    )
