"""SAML IdP metadata: reading a document (its text, the one IdP it describes), fetching it, and
replacing or refreshing a provider's, so a certificate rollover needs no downtime.

An IdP that rolls its signing key publishes both certificates for a while, then only the new
one. A refresh (by `flask sso refresh-metadata` or the scheduler every
`[sso] metadata_refresh_hours`) takes the new metadata when it is usable: well-formed, one IdP
with the same entity id, a signing certificate, a Redirect SingleSignOnService, and, where the
provider has a `metadata_signing_cert`, a valid signature over the whole document by it. A
refresh that fails keeps the old metadata and records the error on the provider
(`metadata_error`, `metadata_error_at`; `metadata_refreshed_at` after a success), which
`flask sso list --json` shows.
"""

import codecs
import logging
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from flask import Flask
from sqlalchemy import select

import config
from portal.core import audit
from portal.core.db import db, utcnow
from portal.core.errors import FieldConflict, FieldRefused, UserError
from portal.directory.models import Customer
from sso import saml_signature
from sso.fetch import fetch, size_text
from sso.models import IdentityProvider, ProviderKind

logger = logging.getLogger(__name__)
JOB_ID = "sso-metadata-refresh"
MD_ENTITY = "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
MAX_METADATA_BYTES = 2 * 1024 * 1024
# The encoding an XML declaration names (read from bytes; only ASCII can come before it).
XML_ENCODING_RE = re.compile(rb"""^<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z][\w.-]*)["']""")
DECLARED_ENCODING_RE = re.compile(r"""^(<\?xml[^>]*?)\s+encoding\s*=\s*["'][^"']*["']""")
BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
WEAK_ALGORITHM = (
    "The metadata is signed with SHA-1 or another algorithm Kursa does not accept; ask its "
    "publisher to sign it with RSA-SHA256 (or SHA-384/512). The old metadata is kept."
)


def metadata_text(data: bytes | str, *, what: str = "The metadata") -> str:
    """The text of metadata however it came (a file's or a download's bytes, pasted text),
    within the one size limit (MAX_METADATA_BYTES).

    Bytes are decoded as the XML rules tell a parser: by their byte order mark, else by the
    encoding their XML declaration names, else as UTF-8; what does not decode is refused in a
    plain sentence. The text is kept and parsed as UTF-8 from then on, so a declaration naming
    another encoding loses that pseudo-attribute (it would no longer be true)."""
    check_metadata_size(data, what=what)
    if isinstance(data, bytes):
        data = _decode_xml(data, what)
    match = DECLARED_ENCODING_RE.match(data)
    if match and not re.search(r"""["']utf-?8["']""", match.group(0), re.IGNORECASE):
        data = match.group(1) + data[match.end() :]
    return data


def check_metadata_size(data: bytes | str, *, what: str = "The metadata") -> None:
    size = len(data) if isinstance(data, bytes) else len(data.encode(errors="replace"))
    if size > MAX_METADATA_BYTES:
        raise UserError(
            f"{what} is larger than {size_text(MAX_METADATA_BYTES)}; is it the IdP's metadata?"
        )


def _decode_xml(raw: bytes, what: str) -> str:
    bom = next((codec for mark, codec in BOMS if raw.startswith(mark)), None)
    declared = XML_ENCODING_RE.match(raw)
    encoding = bom or (declared.group(1).decode() if declared else "utf-8")
    try:
        return raw.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        named = f"in {declared.group(1).decode()}, as it declares" if declared else "UTF-8"
        raise UserError(
            f"{what} is not {named}, so Kursa cannot read it; save it as UTF-8 XML."
        ) from None


def idp_entity_id(metadata_xml: str) -> str:
    """The entity id of the one IdP the metadata describes; UserError when it is unusable."""
    check_metadata_size(metadata_xml)  # whichever way the text came
    try:
        root = safe_fromstring(metadata_xml.encode(), forbid_dtd=True)
    except DefusedXmlException:
        raise UserError("The metadata holds a DTD or entities; Kursa refuses those.") from None
    except Exception:  # noqa: BLE001 - any parse error
        raise UserError("The metadata is not well-formed XML.") from None
    entities = (
        [root] if root.tag == f"{MD}EntityDescriptor" else root.findall(f"{MD}EntityDescriptor")
    )
    idps = [e for e in entities if e.find(f"{MD}IDPSSODescriptor") is not None]
    if len(idps) != 1:
        raise UserError("The metadata must describe exactly one SAML identity provider.")
    descriptor = idps[0].find(f"{MD}IDPSSODescriptor")
    if not any(
        key.get("use", "signing") == "signing" and key.find(f".//{DS}X509Certificate") is not None
        for key in descriptor.findall(f"{MD}KeyDescriptor")
    ):
        raise UserError("The metadata names no signing certificate for the identity provider.")
    if not any(
        sso.get("Binding") == REDIRECT for sso in descriptor.findall(f"{MD}SingleSignOnService")
    ):
        raise UserError("The identity provider offers no SingleSignOnService with HTTP-Redirect.")
    entity = idps[0].get("entityID") or ""
    if not entity.strip():
        raise UserError(
            "The metadata gives the identity provider no entityID; Kursa needs it to know "
            "whose answers are whose."
        )
    return entity


def fetch_metadata(url: str) -> str:
    """Download IdP metadata under sso.fetch's rules (https, public addresses, limits)."""
    url = "".join(url.split())
    body = fetch(url, what="The metadata", max_bytes=MAX_METADATA_BYTES)
    return metadata_text(body, what=f"The metadata at {url}")


def check_entity_id_free(
    customer: Customer, entity: str, *, ignore: IdentityProvider | None = None
) -> None:
    """One IdP is one provider of a customer: a response names its IdP only by entity id,
    so two providers with the same one would make the IdP-initiated choice a guess."""
    providers = db.session.scalars(
        select(IdentityProvider).where(
            IdentityProvider.customer_id == customer.id,
            IdentityProvider.kind == ProviderKind.SAML.value,
        )
    )
    for other in providers:
        if other is not ignore and other.setting("entity_id") == entity:
            raise FieldConflict(
                "metadata",
                f"The provider {other.name} already uses this identity provider (entity id "
                f"{entity}); change {other.name} instead of adding it twice.",
            )


@dataclass
class Refreshed:
    provider: IdentityProvider
    error: str = ""  # "" when the metadata was taken
    changed: bool = False


def init_app(app: Flask) -> None:
    """Register the refresh as an interval job; sync's scheduler runs what is registered.

    It also runs when the scheduler starts, or a scheduler restarted more often than the
    interval would never refresh."""
    hours = app.config["KURSA"]["sso"]["metadata_refresh_hours"]
    if hours <= 0:
        raise config.ConfigError("sso.metadata_refresh_hours must be positive")
    jobs = app.extensions.setdefault("kursa_interval_jobs", [])
    # (id, seconds, work, instances, run_at_start), as sync.schedule.IntervalJob reads it
    jobs.append((JOB_ID, hours * 3600, refresh_all_and_commit, 1, True))


def refresh_all_and_commit() -> list[Refreshed]:
    """The scheduled job: refresh every URL-sourced SAML provider, commit once."""
    results = refresh_all(actor="scheduler")
    db.session.commit()
    return results


def url_providers(customer_id: int | None = None) -> list[IdentityProvider]:
    """The SAML providers added from a URL, of every customer or of one."""
    query = select(IdentityProvider).where(IdentityProvider.kind == ProviderKind.SAML.value)
    if customer_id is not None:
        query = query.where(IdentityProvider.customer_id == customer_id)
    providers = db.session.scalars(query.order_by(IdentityProvider.id))
    return [p for p in providers if p.setting("metadata_url")]


def refresh_all(*, actor: str, customer_id: int | None = None) -> list[Refreshed]:
    return [refresh_metadata(p, actor=actor) for p in url_providers(customer_id)]


def refresh_metadata(provider: IdentityProvider, *, actor: str) -> Refreshed:
    """Fetch and check `provider`'s metadata; take it, or keep the old and record why not.

    Flushes; the caller commits.
    """
    now = utcnow().isoformat(timespec="seconds")
    try:
        xml = fetch_metadata(provider.setting("metadata_url"))
        entity = idp_entity_id(xml)
        if entity != provider.setting("entity_id"):
            raise UserError(f"The metadata now names another entity id ({entity}).")
        if provider.setting("metadata_signing_cert"):
            check_metadata_signature(xml, provider.setting("metadata_signing_cert"))
    except UserError as exc:
        provider.settings = {
            **provider.settings,
            "metadata_error": str(exc),
            "metadata_error_at": now,
        }
        db.session.flush()
        logger.warning("metadata refresh of provider %s failed: %s", provider.id, exc)
        return Refreshed(provider, error=str(exc))

    changed = xml != provider.setting("metadata_xml")
    provider.settings = {
        **provider.settings,
        "metadata_xml": xml,
        "metadata_error": "",
        "metadata_error_at": "",
        "metadata_refreshed_at": now,
    }
    db.session.flush()
    if changed:
        audit.record(actor, "sso.metadata_refreshed", "identity_provider", provider.id)
        logger.info("metadata of provider %s refreshed (changed) by %s", provider.id, actor)
    return Refreshed(provider, changed=changed)


def replace_metadata(
    provider: IdentityProvider, xml: str, *, actor: str, metadata_url: str = ""
) -> None:
    """Take new metadata an IT admin pasted, uploaded or fetched from `metadata_url` (kept
    for later refreshes; "" stops them). Checked as when the provider was added; it may name
    another entity id (a move to a new IdP), but not one another provider of the customer
    has; with a `metadata_signing_cert` it must be signed by it, as every refresh must.

    Refused values raise FieldRefused("metadata", ...); flushes, the caller commits."""
    try:
        entity = idp_entity_id(xml)
        if provider.setting("metadata_signing_cert"):
            check_metadata_signature(xml, provider.setting("metadata_signing_cert"))
    except FieldRefused:
        raise
    except UserError as exc:
        raise FieldRefused("metadata", str(exc)) from None
    check_entity_id_free(provider.customer, entity, ignore=provider)

    previous = provider.setting("entity_id")
    provider.settings = {
        **provider.settings,
        "metadata_xml": xml,
        "metadata_url": metadata_url,
        "entity_id": entity,
        "metadata_refreshed_at": utcnow().isoformat(timespec="seconds") if metadata_url else "",
        "metadata_error": "",
        "metadata_error_at": "",
    }
    db.session.flush()
    audit.record(
        actor,
        "sso.metadata_replaced",
        "identity_provider",
        provider.id,
        entity_id_changed=entity != previous,
        from_url=bool(metadata_url),
    )
    logger.info("metadata of provider %s replaced by %s", provider.id, actor)


def check_metadata_signature(xml: str, cert_pem: str) -> None:
    """The root EntityDescriptor must carry an enveloped signature over itself by `cert_pem`.

    Checked in-process by saml_signature.verify_root: only the root's own Signature counts and
    its Reference must name the root, so signed metadata nested in a forged document cannot
    vouch for it (signature wrapping); SHA-1 is refused.
    """
    root = safe_fromstring(xml.encode(), forbid_dtd=True)
    if root.find(f"{DS}Signature") is None:
        raise UserError("The metadata is not signed, and this provider requires a signature.")
    if root.tag != f"{MD}EntityDescriptor":
        raise UserError("The metadata signature does not cover the whole document.")
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(Encoding.DER)
    try:
        saml_signature.verify_root(xml.encode(), [saml_signature.signing_key(der)])
    except saml_signature.SignatureRefused as exc:
        if exc.reason == "signature:algorithm":
            raise UserError(WEAK_ALGORITHM) from None
        raise UserError(
            "The metadata signature does not verify with the configured certificate, or "
            "does not cover the whole document by itself."
        ) from None


def status_of(provider: IdentityProvider) -> dict:
    """The refresh fields `flask sso list --json` shows for a URL-sourced SAML provider."""
    return {
        "metadata_refreshed_at": provider.setting("metadata_refreshed_at"),
        "metadata_error": provider.setting("metadata_error"),
        "metadata_error_at": provider.setting("metadata_error_at"),
    }
