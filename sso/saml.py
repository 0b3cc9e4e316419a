"""The SAML 2.0 service provider (pysaml2): requests, SP metadata and verified responses.

One SP per customer (entity id `<base>/sso/<customer>/saml/metadata`); each response is checked
against exactly one IdP's metadata, chosen by the stored request it answers (or, for an
IdP-initiated login, by its issuer). pysaml2 checks signatures, audience, destination and
times; Kursa adds what it leaves to the SP: one answer per request, never the same assertion
twice, no DTDs, the bearer recipient, and NotOnOrAfter as an exclusive bound.
"""

import base64
import binascii
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import saml2.time_util
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from flask import current_app
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NAMEID_FORMAT_TRANSIENT, SCM_BEARER
from saml2.sigver import get_xmlsec_binary
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

import config
from portal.core import audit
from portal.core.db import db, utcnow
from portal.directory.models import Customer
from sso.keys import ensure_self_signed_pair
from sso.models import IdentityProvider, ProviderKind, SamlAssertionSeen, SamlRequest

logger = logging.getLogger(__name__)
SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
MAX_RESPONSE_BYTES = 256 * 1024
# pysaml2's exception -> Kursa's reason code (logged and audited; never the document itself).
PYSAML2_REASONS = {
    "SignatureError": "signature",
    "ResponseLifetimeExceed": "expired",
    "ToEarly": "not_yet_valid",
    "UnsolicitedResponse": "unknown_request",
    "InvalidAssertion": "invalid:assertion",
    "StatusError": "idp_status",
}


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


def init_app(app) -> None:
    """Check the [sso] settings at start: both key files or neither, readable."""
    sso = app.config["KURSA"]["sso"]
    if bool(sso["key_file"]) != bool(sso["cert_file"]):
        raise config.ConfigError("sso.key_file and sso.cert_file must be set together")
    if bool(sso["encryption_key_file"]) != bool(sso["encryption_cert_file"]):
        raise config.ConfigError(
            "sso.encryption_key_file and sso.encryption_cert_file must be set together"
        )
    for key in ("key_file", "cert_file", "encryption_key_file", "encryption_cert_file"):
        if sso[key] and not Path(sso[key]).is_file():
            raise config.ConfigError(f"sso.{key} {sso[key]!r} is not a readable file")
    if sso["base_url"] and not urlsplit(sso["base_url"]).scheme.startswith("http"):
        raise config.ConfigError("sso.base_url must start with https:// (or http://)")
    for key in ("request_lifetime_seconds", "login_starts_per_minute"):
        if sso[key] <= 0:
            raise config.ConfigError(f"sso.{key} must be positive")
    # pysaml2 logs NameIDs at info and whole assertions on errors; Kursa logs its own reasons.
    logging.getLogger("saml2").setLevel(logging.CRITICAL)


# --- addresses and configuration ---------------------------------------------------------


def entity_id(base_url: str, customer: Customer) -> str:
    return f"{base_url.rstrip('/')}/sso/{customer.slug}/saml/metadata"


def acs_url(base_url: str, customer: Customer) -> str:
    return f"{base_url.rstrip('/')}/sso/{customer.slug}/saml/acs"


def sp_key_pair() -> tuple[str, str]:
    """The configured key and certificate files, or a self-signed pair kept in instance/."""
    sso = current_app.config["KURSA"]["sso"]
    if sso["key_file"]:
        return sso["key_file"], sso["cert_file"]
    return ensure_self_signed_pair(Path(current_app.instance_path) / "sso")


def sp_encryption_pair() -> tuple[str, str]:
    """The key pair IdPs encrypt assertions to: [sso] encryption_*_file, else the signing pair."""
    sso = current_app.config["KURSA"]["sso"]
    if sso["encryption_key_file"]:
        return sso["encryption_key_file"], sso["encryption_cert_file"]
    return sp_key_pair()


def sp_config(
    base_url: str,
    customer: Customer,
    provider: IdentityProvider | None = None,
    *,
    unsolicited=False,
) -> SPConfig:
    """pysaml2's SP configuration, trusting only `provider`'s metadata (none for metadata)."""
    key_file, cert_file = sp_key_pair()
    encryption_key, encryption_cert = sp_encryption_pair()
    require_assertion = bool(provider and provider.setting("require_signed_assertion"))
    settings = {
        "entityid": entity_id(base_url, customer),
        "xmlsec_binary": _xmlsec_binary(),
        "key_file": key_file,
        "cert_file": cert_file,
        "encryption_keypairs": [{"key_file": encryption_key, "cert_file": encryption_cert}],
        "allow_unknown_attributes": True,
        "accepted_time_diff": provider.setting("clock_skew_seconds") if provider else 0,
        "service": {
            "sp": {
                "endpoints": {
                    "assertion_consumer_service": [
                        (acs_url(base_url, customer), BINDING_HTTP_POST)
                    ],
                    "single_logout_service": [
                        (
                            f"{base_url.rstrip('/')}/sso/{customer.slug}/saml/sls",
                            BINDING_HTTP_REDIRECT,
                        )
                    ],
                },
                "allow_unsolicited": unsolicited,
                "authn_requests_signed": True,
                "want_response_signed": False,
                "want_assertions_signed": require_assertion,
                "want_assertions_or_response_signed": True,
                "name_id_format": NAMEID_FORMAT_PERSISTENT,
                "name_id_format_allow_create": True,
                "signing_algorithm": SIG_RSA_SHA256,
                "digest_algorithm": DIGEST_SHA256,
            }
        },
    }
    if provider is not None:
        settings["metadata"] = {"inline": [provider.setting("metadata_xml")]}
    conf = SPConfig()
    conf.load(settings)
    return conf


def sp_client(
    base_url: str, customer: Customer, provider: IdentityProvider, *, unsolicited=False
) -> Saml2Client:
    """A pysaml2 client for `provider`, kept while the provider's settings stay the same.

    Building one loads the private key twice and parses the IdP metadata (about 230 ms);
    the client holds no per-login state, because every call passes the outstanding request.
    """
    key = (
        base_url,
        provider.id,
        provider.updated_at,
        unsolicited,
        sp_key_pair(),
        sp_encryption_pair(),
    )
    cache = current_app.extensions.setdefault("kursa_sso", {}).setdefault("clients", {})
    client = cache.get(key)
    if client is None:
        for old in [k for k in cache if k[:2] == key[:2] and k[3] == unsolicited]:
            cache.pop(old, None)  # the provider's settings or the keys changed
        client = Saml2Client(
            config=sp_config(base_url, customer, provider, unsolicited=unsolicited)
        )
        client.users = _NoPopulation()
        cache[key] = client
    return client


class _NoPopulation:
    """pysaml2 keeps every logged-in person's attributes in memory, forever, in a shared
    client; Kursa keeps nothing there (single logout will keep its state in the database)."""

    def add_information_about_person(self, session_info) -> None:
        pass


def sp_metadata(base_url: str, customer: Customer) -> str:
    return create_metadata_string(None, config=sp_config(base_url, customer)).decode()


def _xmlsec_binary() -> str:
    cache = current_app.extensions.setdefault("kursa_sso", {})
    if "xmlsec" not in cache:
        cache["xmlsec"] = get_xmlsec_binary(["/usr/bin", "/usr/local/bin"])
    return cache["xmlsec"]


# --- SP-initiated login -------------------------------------------------------------------


def start_login(base_url: str, provider: IdentityProvider, next_url: str = "") -> str:
    """Store a new AuthnRequest and return the IdP address to redirect the browser to."""
    client = sp_client(base_url, provider.customer, provider)
    request_id, info = client.prepare_for_authenticate(
        entityid=provider.setting("entity_id"),
        binding=BINDING_HTTP_REDIRECT,
        nameid_format=NAMEID_FORMAT_PERSISTENT,
        sign=True,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    lifetime = current_app.config["KURSA"]["sso"]["request_lifetime_seconds"]
    now = utcnow()
    db.session.add(
        SamlRequest(
            id=request_id,
            provider_id=provider.id,
            next_url=next_url[:500],
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
    )
    _forget_expired(now)
    db.session.flush()
    logger.info("SAML login started with provider %s (request %s)", provider.id, request_id)
    return dict(info["headers"])["Location"]


def _forget_expired(now: datetime) -> None:
    db.session.execute(SamlRequest.__table__.delete().where(SamlRequest.expires_at < now))
    db.session.execute(
        SamlAssertionSeen.__table__.delete().where(SamlAssertionSeen.expires_at < now)
    )


# --- the ACS ------------------------------------------------------------------------------


def verify_response(base_url: str, customer: Customer, encoded: str) -> VerifiedLogin:
    """Check a POSTed SAMLResponse; return what it proves or raise SamlRefused."""
    document = _decode(encoded)
    in_response_to, issuer = _peek(document)
    stored = _stored_request(customer, in_response_to) if in_response_to else None
    if stored is not None:
        provider = db.session.get(IdentityProvider, stored.provider_id)
        if not provider.is_enabled:
            raise SamlRefused("provider_disabled", provider)
    else:
        provider = _unsolicited_provider(customer, issuer)

    response = _parse(base_url, customer, provider, encoded, stored)
    assertion = response.assertion
    _check_issuer(response, provider)
    _check_audience(response, provider, base_url, customer)
    _check_times_and_recipient(assertion, provider, acs_url(base_url, customer))
    if stored is not None:
        _use_request(stored, provider)
    _remember_assertion(provider, assertion)

    name_id = response.name_id
    return VerifiedLogin(
        provider=provider,
        name_id=(name_id.text or "").strip() if name_id is not None else "",
        name_id_format=(name_id.format or "") if name_id is not None else "",
        attributes=response.ava or {},
        next_url=stored.next_url if stored is not None else "",
        session_index=session_index_of(assertion),
    )


def session_index_of(assertion) -> str:
    """The SessionIndex of the verified assertion's AuthnStatement ("" when it has none)."""
    for statement in assertion.authn_statement or []:
        if statement.session_index:
            return statement.session_index.strip()
    return ""


def _decode(encoded: str) -> bytes:
    if not encoded or len(encoded) > MAX_RESPONSE_BYTES:
        raise SamlRefused("malformed")
    try:
        return base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError):
        raise SamlRefused("malformed") from None


def _peek(document: bytes) -> tuple[str, str]:
    """InResponseTo and Issuer, read (not trusted) to choose the request and the IdP.

    The parser refuses any DTD: SAML never needs one, and entities are an attack surface.
    """
    try:
        root = safe_fromstring(document, forbid_dtd=True, forbid_entities=True)
    except DefusedXmlException:
        raise SamlRefused("dtd") from None
    except Exception:  # noqa: BLE001 - any parse error is a malformed document
        raise SamlRefused("malformed") from None
    if root.tag != f"{SAMLP}Response":
        raise SamlRefused("malformed")
    issuer = root.find(f"{SAML}Issuer")
    if issuer is None:
        issuer = root.find(f"{SAML}Assertion/{SAML}Issuer")
    return root.get("InResponseTo", ""), (issuer.text or "").strip() if issuer is not None else ""


def _stored_request(customer: Customer, request_id: str) -> SamlRequest:
    stored = db.session.scalar(
        select(SamlRequest)
        .join(IdentityProvider, IdentityProvider.id == SamlRequest.provider_id)
        .where(SamlRequest.id == request_id, IdentityProvider.customer_id == customer.id)
    )
    if stored is None or stored.is_used or stored.expires_at <= utcnow():
        raise SamlRefused("unknown_request")
    return stored


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


def _parse(base_url, customer, provider, encoded, stored):
    unsolicited = stored is None
    client = sp_client(base_url, customer, provider, unsolicited=unsolicited)
    outstanding = {} if unsolicited else {stored.id: stored.next_url}
    try:
        response = client.parse_authn_request_response(
            encoded, BINDING_HTTP_POST, outstanding=outstanding
        )
    except Exception as exc:  # noqa: BLE001 - pysaml2 raises many types; all mean "refuse"
        # The class name says why (signature, audience, time) without any of the document.
        reason = PYSAML2_REASONS.get(type(exc).__name__, f"invalid:{type(exc).__name__}")
        if "AudienceRestrictions" in str(exc):
            reason = "audience"
        raise SamlRefused(reason, provider) from None
    if response is None:
        raise SamlRefused("invalid:empty", provider)
    # Required although pysaml2 accepts it missing (then it stops before the assertion).
    if response.response.destination != acs_url(base_url, customer):
        raise SamlRefused("destination", provider)
    if response.assertion is None:
        raise SamlRefused("invalid:no_assertion", provider)
    if stored is not None and response.in_response_to != stored.id:
        raise SamlRefused("unknown_request", provider)
    return response


def _check_issuer(response, provider: IdentityProvider) -> None:
    expected = provider.setting("entity_id")
    issuers = {response.issuer(), (response.assertion.issuer.text or "").strip()}
    if issuers != {expected}:
        raise SamlRefused("issuer", provider)


def _check_audience(response, provider, base_url: str, customer: Customer) -> None:
    """An AudienceRestriction naming Kursa is required (pysaml2 accepts none)."""
    ours = entity_id(base_url, customer)
    conditions = response.assertion.conditions
    restrictions = conditions.audience_restriction if conditions is not None else []
    if not restrictions or not all(
        any((a.text or "").strip() == ours for a in r.audience) for r in restrictions
    ):
        raise SamlRefused("audience", provider)


def _check_times_and_recipient(assertion, provider: IdentityProvider, acs: str) -> None:
    """NotOnOrAfter is exclusive (pysaml2 lets the very second pass); bearer recipient = ACS."""
    now = _now()
    skew = timedelta(seconds=provider.setting("clock_skew_seconds"))
    conditions = assertion.conditions
    bounds = [conditions.not_on_or_after] if conditions is not None else []
    bearers = (
        [c for c in assertion.subject.subject_confirmation if c.method == SCM_BEARER]
        if assertion.subject is not None
        else []
    )
    if not bearers:
        raise SamlRefused("no_bearer", provider)
    for confirmation in bearers:
        data = confirmation.subject_confirmation_data
        if data is None or data.recipient != acs:
            raise SamlRefused("recipient", provider)
        bounds.append(data.not_on_or_after)
    for bound in filter(None, bounds):
        if now >= _instant(bound) + skew:
            raise SamlRefused("expired", provider)
    if conditions is not None and conditions.not_before:
        if now + skew < _instant(conditions.not_before):
            raise SamlRefused("not_yet_valid", provider)


def _now() -> datetime:
    # pysaml2's own clock, so a test that moves it moves both checks together.
    return datetime.fromtimestamp(saml2.time_util.utc_now(), UTC)


def _instant(value: str) -> datetime:
    return datetime.fromtimestamp(
        saml2.time_util.calendar.timegm(saml2.time_util.str_to_time(value)), UTC
    )


def _use_request(stored: SamlRequest, provider: IdentityProvider) -> None:
    """Mark the request answered; of two concurrent answers on two nodes only one wins."""
    result = db.session.execute(
        update(SamlRequest)
        .where(SamlRequest.id == stored.id, SamlRequest.is_used.is_(False))
        .values(is_used=True)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise SamlRefused("replay", provider)


def _remember_assertion(provider: IdentityProvider, assertion) -> None:
    if not assertion.id:
        raise SamlRefused("invalid:no_id", provider)
    lifetime = current_app.config["KURSA"]["sso"]["request_lifetime_seconds"]
    expires = utcnow() + timedelta(seconds=lifetime + provider.setting("clock_skew_seconds"))
    conditions = assertion.conditions
    if conditions is not None and conditions.not_on_or_after:
        expires = max(expires, _instant(conditions.not_on_or_after) + timedelta(hours=1))
    try:
        with db.session.begin_nested():
            db.session.add(
                SamlAssertionSeen(
                    provider_id=provider.id, assertion_id=assertion.id[:255], expires_at=expires
                )
            )
    except IntegrityError:
        raise SamlRefused("replay", provider) from None


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
