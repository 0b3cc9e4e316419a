"""SAML single logout, both directions, at `/sso/<c>/saml/sls` (HTTP-Redirect; HTTP-POST too,
which IdPs such as samlp use to send their messages; Kursa always sends with Redirect).

SP-initiated: Kursa's logout of a SAML session ends Kursa's session first, then sends the
browser to the IdP with a signed LogoutRequest naming the NameID and SessionIndex of that
login; the IdP's LogoutResponse comes back to sls and must answer a stored request.
IdP-initiated: a signed LogoutRequest at sls ends every Kursa session of that NameID (or of the
one SessionIndex) at that provider, on every device, and is answered with a signed
LogoutResponse.

The Redirect binding signs the query string, not the XML, and pysaml2 checks that only for
requests and only in some configurations, so Kursa checks it itself against the signing
certificates of the IdP's metadata (every one of them: certificate rollover).
"""

import base64
import binascii
import calendar
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import unquote_plus

import saml2.time_util
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from flask import current_app
from saml2 import BINDING_HTTP_REDIRECT, samlp
from saml2.s_utils import sid, success_status_factory
from saml2.saml import NAMEID_FORMAT_ENTITY, Issuer, NameID
from saml2.xmldsig import SIG_RSA_SHA256, SIG_RSA_SHA384, SIG_RSA_SHA512
from sqlalchemy import select, update

from portal.accounts.models import LoginSession
from portal.accounts.sessions import end_sessions
from portal.core import audit
from portal.core.db import db, utcnow
from portal.directory.models import Customer
from sso import saml_signature
from sso.models import IdentityProvider, ProviderKind, SamlLogoutRequest
from sso.saml import entity_id, sp_client
from sso.saml_acs import remember_once

logger = logging.getLogger(__name__)
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
MAX_MESSAGE_BYTES = 64 * 1024
# SHA-1 is refused: a forged signature over it is within reach.
HASHES = {  # SignatureMethod (both bindings) -> the hash of the Redirect binding's signature
    SIG_RSA_SHA256: hashes.SHA256,
    SIG_RSA_SHA384: hashes.SHA384,
    SIG_RSA_SHA512: hashes.SHA512,
}


class LogoutRefused(Exception):
    """A logout message that must not be acted on; `reason` goes to log and audit only."""

    def __init__(self, reason: str, provider: IdentityProvider | None = None):
        super().__init__(reason)
        self.reason = reason
        self.provider = provider


@dataclass
class LogoutDone:
    """What sls did: `redirect` is the IdP address for our LogoutResponse, or "" when the
    message was the IdP's answer to Kursa's own logout (then the browser goes to login)."""

    provider: IdentityProvider
    redirect: str = ""
    ended: int = 0


def sls_url(base_url: str, customer: Customer) -> str:
    return f"{base_url.rstrip('/')}/sso/{customer.slug}/saml/sls"


# --- metadata -------------------------------------------------------------------------------


def _idp_descriptor(provider: IdentityProvider):
    root = safe_fromstring(provider.setting("metadata_xml").encode(), forbid_dtd=True)
    entities = [root] if root.tag == f"{MD}EntityDescriptor" else root.iter(f"{MD}EntityDescriptor")
    for entity in entities:
        descriptor = entity.find(f"{MD}IDPSSODescriptor")
        if descriptor is not None:
            return descriptor
    return None


def slo_endpoint(provider: IdentityProvider) -> tuple[str, str] | None:
    """(Location, ResponseLocation) of the IdP's Redirect SingleLogoutService, if it has one."""
    descriptor = _idp_descriptor(provider)
    services = descriptor.findall(f"{MD}SingleLogoutService") if descriptor is not None else []
    for service in services:
        if service.get("Binding") == BINDING_HTTP_REDIRECT and service.get("Location"):
            location = service.get("Location")
            return location, service.get("ResponseLocation") or location
    return None


def signing_certificates(provider: IdentityProvider) -> list[x509.Certificate]:
    """Every signing certificate the IdP's metadata names (two during a rollover)."""
    descriptor = _idp_descriptor(provider)
    found = []
    for key in descriptor.findall(f"{MD}KeyDescriptor") if descriptor is not None else []:
        if key.get("use", "signing") != "signing":
            continue
        for cert in key.iter(f"{DS}X509Certificate"):
            der = base64.b64decode("".join((cert.text or "").split()))
            found.append(x509.load_der_x509_certificate(der))
    return found


# --- SP-initiated ---------------------------------------------------------------------------


def start_logout(base_url: str, login: LoginSession) -> str | None:
    """A signed LogoutRequest for an ended SAML session: the IdP address, or None when the
    provider has no Redirect SingleLogoutService (Kursa's logout is then all there is)."""
    provider = db.session.get(IdentityProvider, login.provider_id) if login.provider_id else None
    if provider is None or not provider.is_enabled or not login.name_id:
        return None
    endpoint = slo_endpoint(provider)
    if endpoint is None:
        return None
    client = sp_client(base_url, provider.customer, provider)
    name_id = NameID(text=login.name_id, format=login.name_id_format or None)
    request_id, request = client.create_logout_request(
        endpoint[0],
        provider.setting("entity_id"),
        name_id=name_id,
        session_indexes=[login.session_index] if login.session_index else None,
        sign=False,  # the Redirect binding signs the query string instead
        expire=saml2.time_util.in_a_while(minutes=10),
    )
    info = client.apply_binding(
        BINDING_HTTP_REDIRECT, str(request), endpoint[0], sign=True, sigalg=SIG_RSA_SHA256
    )
    lifetime = current_app.config["KURSA"]["sso"]["request_lifetime_seconds"]
    now = utcnow()
    db.session.execute(
        SamlLogoutRequest.__table__.delete().where(SamlLogoutRequest.expires_at < now)
    )
    db.session.add(
        SamlLogoutRequest(
            id=request_id,
            provider_id=provider.id,
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
    )
    db.session.flush()
    logger.info("SAML logout sent to provider %s (request %s)", provider.id, request_id)
    return dict(info["headers"])["Location"]


# --- the sls endpoint -----------------------------------------------------------------------


@dataclass
class Message:
    """A logout message as received: its XML root, and how its binding proves its signer."""

    kind: str  # SAMLRequest or SAMLResponse
    root: object
    relay_state: str
    verify: Callable[[IdentityProvider], None]

    @property
    def issuer(self) -> str:
        return _text(self.root.find(f"{SAML}Issuer"))


def handle_sls(base_url: str, customer: Customer, query_string: bytes) -> LogoutDone:
    """Act on a LogoutRequest or LogoutResponse in a Redirect query; LogoutRefused if not."""
    raw = _raw_query(query_string)
    kind = "SAMLRequest" if "SAMLRequest" in raw else "SAMLResponse"
    if kind not in raw:
        raise LogoutRefused("malformed")
    message = Message(
        kind,
        _inflate(raw[kind]),
        unquote_plus(raw.get("RelayState", "")),
        lambda provider: check_redirect_signature(provider, raw, kind),
    )
    return _handle(base_url, customer, message)


def handle_sls_post(base_url: str, customer: Customer, form: dict) -> LogoutDone:
    """The same for the HTTP-POST binding: the XML itself carries an enveloped signature."""
    kind = "SAMLRequest" if form.get("SAMLRequest") else "SAMLResponse"
    encoded = form.get(kind, "")
    if not encoded or len(encoded) > MAX_MESSAGE_BYTES:
        raise LogoutRefused("malformed")
    try:
        document = base64.b64decode(encoded, validate=False)
        root = safe_fromstring(document, forbid_dtd=True, forbid_entities=True)
    except DefusedXmlException:
        raise LogoutRefused("dtd") from None
    except (binascii.Error, ValueError, SyntaxError):
        raise LogoutRefused("malformed") from None
    message = Message(
        kind,
        root,
        form.get("RelayState", ""),
        lambda provider: check_xml_signature(provider, document, root),
    )
    return _handle(base_url, customer, message)


def _handle(base_url: str, customer: Customer, message: Message) -> LogoutDone:
    if message.kind == "SAMLResponse":
        return _logout_response(base_url, customer, message)
    return _logout_request(base_url, customer, message)


def _logout_response(base_url, customer, message: Message) -> LogoutDone:
    root = message.root
    if root.tag != f"{SAMLP}LogoutResponse":
        raise LogoutRefused("malformed")
    stored = db.session.scalar(
        select(SamlLogoutRequest)
        .join(IdentityProvider, IdentityProvider.id == SamlLogoutRequest.provider_id)
        .where(
            SamlLogoutRequest.id == root.get("InResponseTo", "")[:100],
            IdentityProvider.customer_id == customer.id,
        )
    )
    if stored is None or stored.is_used or stored.expires_at <= utcnow():
        raise LogoutRefused("unknown_request")
    provider = db.session.get(IdentityProvider, stored.provider_id)
    _check_message(base_url, customer, provider, message)
    used = db.session.execute(
        update(SamlLogoutRequest)
        .where(SamlLogoutRequest.id == stored.id, SamlLogoutRequest.is_used.is_(False))
        .values(is_used=True)
    )
    if used.rowcount != 1:
        raise LogoutRefused("unknown_request", provider)
    status = root.find(f"{SAMLP}Status/{SAMLP}StatusCode")
    if status is None or status.get("Value") != SUCCESS:
        # Kursa's session ended before the browser left; only the IdP's stays open.
        logger.warning("provider %s answered a logout with a failure status", provider.id)
    logger.info("SAML logout with provider %s answered (request %s)", provider.id, stored.id)
    return LogoutDone(provider)


def _logout_request(base_url, customer, message: Message) -> LogoutDone:
    root = message.root
    if root.tag != f"{SAMLP}LogoutRequest":
        raise LogoutRefused("malformed")
    provider = _provider_by_issuer(customer, message.issuer)
    _check_message(base_url, customer, provider, message)
    _check_not_expired(root, provider)
    name_id = _text(root.find(f"{SAML}NameID"))
    if not name_id:
        raise LogoutRefused("no_name_id", provider)
    _check_first_use(root, provider)
    indexes = [_text(e) for e in root.findall(f"{SAMLP}SessionIndex") if _text(e)]
    ended = 0
    for index in indexes or [""]:
        ended += end_sessions(provider.id, name_id, index[:255])
    audit.record(
        f"sso:{provider.id}", "logout.idp", "identity_provider", provider.id, sessions=ended
    )
    if slo_endpoint(provider) is None:  # nowhere to answer: the sessions end all the same
        return LogoutDone(provider, "", ended)
    redirect = _logout_answer(base_url, customer, provider, root, message.relay_state)
    return LogoutDone(provider, redirect, ended)


def _logout_answer(base_url, customer, provider, root, relay_state: str) -> str:
    """A signed LogoutResponse (Success) to the IdP's SingleLogoutService."""
    destination = slo_endpoint(provider)[1]
    response = samlp.LogoutResponse(
        id=sid(),
        version="2.0",
        issue_instant=saml2.time_util.instant(),
        destination=destination,
        in_response_to=root.get("ID", ""),
        issuer=Issuer(text=entity_id(base_url, customer), format=NAMEID_FORMAT_ENTITY),
        status=success_status_factory(),
    )
    client = sp_client(base_url, customer, provider)
    info = client.apply_binding(
        BINDING_HTTP_REDIRECT,
        str(response),
        destination,
        relay_state=relay_state,
        response=True,
        sign=True,
        sigalg=SIG_RSA_SHA256,
    )
    return dict(info["headers"])["Location"]


# --- checks ---------------------------------------------------------------------------------


def _raw_query(query_string: bytes) -> dict[str, str]:
    """The query's values exactly as sent (still URL-encoded): the signature covers them."""
    found: dict[str, str] = {}
    for part in query_string.decode("ascii", "replace").split("&"):
        name, _, value = part.partition("=")
        if name in found:
            raise LogoutRefused("malformed")  # a repeated parameter could confuse the check
        found[name] = value
    return found


def _inflate(encoded: str):
    """The message's XML root; no DTD, no entities, bounded size."""
    try:
        deflated = base64.b64decode(unquote_plus(encoded), validate=False)
        inflater = zlib.decompressobj(-15)
        document = inflater.decompress(deflated, MAX_MESSAGE_BYTES)
        if inflater.unconsumed_tail:
            raise LogoutRefused("malformed")
        return safe_fromstring(document, forbid_dtd=True, forbid_entities=True)
    except LogoutRefused:
        raise
    except DefusedXmlException:
        raise LogoutRefused("dtd") from None
    except (binascii.Error, zlib.error, ValueError, SyntaxError):
        raise LogoutRefused("malformed") from None


def _check_message(base_url, customer, provider, message: Message) -> None:
    """Enabled provider, its signature, its issuer, and this customer's sls as Destination.

    Destination is required (the bindings require it on signed messages): without it, a
    message an IdP serving several customers signed for one would act at the others too."""
    if not provider.is_enabled:
        raise LogoutRefused("provider_disabled", provider)
    message.verify(provider)
    if message.issuer != provider.setting("entity_id"):
        raise LogoutRefused("issuer", provider)
    if message.root.get("Destination") != sls_url(base_url, customer):
        raise LogoutRefused("destination", provider)


def check_redirect_signature(provider: IdentityProvider, raw: dict[str, str], kind: str) -> None:
    """The query's Signature must verify with one of the IdP's signing certificates."""
    if "Signature" not in raw or "SigAlg" not in raw:
        raise LogoutRefused("unsigned", provider)
    algorithm = HASHES.get(unquote_plus(raw["SigAlg"]))
    if algorithm is None:
        raise LogoutRefused("signature_algorithm", provider)
    signed = "&".join(
        f"{name}={raw[name]}" for name in (kind, "RelayState", "SigAlg") if name in raw
    ).encode()
    try:
        signature = base64.b64decode(unquote_plus(raw["Signature"]), validate=False)
    except (binascii.Error, ValueError):
        raise LogoutRefused("signature", provider) from None
    for cert in signing_certificates(provider):
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            continue
        try:
            key.verify(signature, signed, padding.PKCS1v15(), algorithm())
            return
        except InvalidSignature:
            continue
    raise LogoutRefused("signature", provider)


def check_xml_signature(provider: IdentityProvider, document: bytes, root) -> None:
    """An enveloped signature over the message's root by one of the IdP's signing certs.

    Checked in-process under saml_signature's rules: only the root's own Signature counts, its
    Reference must name the root, so a signed message nested inside cannot vouch for the one
    read (signature wrapping); SHA-1 is refused as for the Redirect binding.
    """
    if root.find(f"{DS}Signature") is None:
        raise LogoutRefused("unsigned", provider)
    keys = [
        saml_signature.signing_key(cert.public_bytes(serialization.Encoding.DER))
        for cert in signing_certificates(provider)
    ]
    try:
        saml_signature.verify_root(document, keys)
    except saml_signature.SignatureRefused as exc:
        reason = "signature_algorithm" if exc.reason == "signature:algorithm" else "signature"
        raise LogoutRefused(reason, provider) from None


def _check_first_use(root, provider: IdentityProvider) -> None:
    """A LogoutRequest acts once: replayed within its validity, it would end the next login
    of the person (one without a SessionIndex ends them all). Its id is kept past the window
    _check_not_expired accepts."""
    if not root.get("ID"):
        raise LogoutRefused("malformed", provider)
    keep = timedelta(seconds=2 * (provider.setting("clock_skew_seconds") + 600))
    if not remember_once(provider, "logout:" + root.get("ID"), utcnow() + keep):
        raise LogoutRefused("replay", provider)


def _check_not_expired(root, provider: IdentityProvider) -> None:
    skew = provider.setting("clock_skew_seconds")
    now = saml2.time_util.utc_now()
    try:
        issued = saml2.time_util.str_to_time(root.get("IssueInstant", ""))
        expires = root.get("NotOnOrAfter")
        if abs(now - _epoch(issued)) > skew + 600:
            raise LogoutRefused("expired", provider)
        if expires and now >= _epoch(saml2.time_util.str_to_time(expires)) + skew:
            raise LogoutRefused("expired", provider)
    except (TypeError, ValueError):
        raise LogoutRefused("malformed", provider) from None


def _epoch(struct) -> int:
    return calendar.timegm(struct)


def _provider_by_issuer(customer: Customer, issuer: str) -> IdentityProvider:
    providers = db.session.scalars(
        select(IdentityProvider).where(
            IdentityProvider.customer_id == customer.id,
            IdentityProvider.kind == ProviderKind.SAML.value,
        )
    )
    found = next((p for p in providers if issuer and p.setting("entity_id") == issuer), None)
    if found is None:
        raise LogoutRefused("unknown_issuer")
    return found


def _text(element) -> str:
    return (element.text or "").strip() if element is not None else ""


def record_refusal(exc: LogoutRefused, customer: Customer) -> None:
    """Audit and log a refused logout message (its reason only, never its content)."""
    provider_id = exc.provider.id if exc.provider is not None else None
    target = ("identity_provider", provider_id) if provider_id else ("customer", customer.id)
    audit.record(
        f"sso:{provider_id}" if provider_id else "sso",
        "logout.refused",
        *target,
        provider=provider_id,
        reason=exc.reason,
    )
    logger.warning(
        "SAML logout message for customer %s refused: %s (provider %s)",
        customer.id,
        exc.reason,
        provider_id,
    )
