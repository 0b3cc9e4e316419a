"""Refreshing SAML IdP metadata fetched from a URL, so a certificate rollover needs no downtime.

An IdP that rolls its signing key publishes both certificates for a while, then only the new
one. A refresh (by `flask sso refresh-metadata` or the scheduler every
`[sso] metadata_refresh_hours`) takes the new metadata when it is usable: well-formed, one IdP
with the same entity id, a signing certificate, a Redirect SingleSignOnService, and, where the
provider has a `metadata_signing_cert`, a valid signature over the whole document by it. A
refresh that fails keeps the old metadata and records the error on the provider
(`metadata_error`, `metadata_error_at`; `metadata_refreshed_at` after a success), which
`flask sso list --json` shows.
"""

import logging
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from defusedxml.ElementTree import fromstring as safe_fromstring
from flask import Flask
from sqlalchemy import select

import config
from portal.core import audit
from portal.core.db import db, utcnow
from portal.core.errors import UserError
from sso import saml_signature
from sso.models import IdentityProvider, ProviderKind
from sso.operations import FieldRefused, check_entity_id_free, fetch_metadata, idp_entity_id

logger = logging.getLogger(__name__)
JOB_ID = "sso-metadata-refresh"
MD_ENTITY = "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
WEAK_ALGORITHM = (
    "The metadata is signed with SHA-1 or another algorithm Kursa does not accept; ask its "
    "publisher to sign it with RSA-SHA256 (or SHA-384/512). The old metadata is kept."
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


def url_providers(name: str | None = None) -> list[IdentityProvider]:
    query = select(IdentityProvider).where(IdentityProvider.kind == ProviderKind.SAML.value)
    if name:
        query = query.where(IdentityProvider.name == name)
    providers = db.session.scalars(query.order_by(IdentityProvider.id))
    return [p for p in providers if p.setting("metadata_url")]


def refresh_all(*, actor: str, name: str | None = None) -> list[Refreshed]:
    return [refresh_metadata(p, actor=actor) for p in url_providers(name)]


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
