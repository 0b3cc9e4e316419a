"""Identity providers: add, change, enable or disable, replace the client secret, delete.

The rules each setting meets live in sso.provider_checks, the email domains in sso.domains and
the metadata in sso.metadata. Operations flush, audit and log; the caller commits.
"""

import logging

from sqlalchemy import delete, func, select

from portal.accounts.sessions import end_provider_sessions
from portal.core import audit
from portal.core.db import db
from portal.core.errors import Conflict, FieldRefused, UserError, collect, refuse
from portal.directory.models import Customer
from sso import queries, vault
from sso.domains import check_domains_free, check_domains_own, claim_domains, parse_domains
from sso.metadata import idp_entity_id
from sso.models import (
    DEFAULT_SETTINGS,
    EmailDomain,
    Identity,
    IdentityProvider,
    MatchRule,
    OidcRequest,
    ProviderKind,
    SamlAssertionSeen,
    SamlLogoutRequest,
    SamlRequest,
)
from sso.provider_checks import (
    OIDC_MATCHES,
    check_match_attribute,
    check_match_in,
    check_scopes,
    clean_label,
    oidc_checks,
    saml_provider_errors,
)

logger = logging.getLogger(__name__)
# What an IT admin may change on a provider after adding it, per kind.
EDITABLE = {
    ProviderKind.SAML: (
        "label",
        "match",
        "match_attribute",
        "require_signed_assertion",
        "allow_idp_initiated",
    ),
    ProviderKind.OIDC: ("label", "match", "match_claim", "scopes"),
}


def add_saml_provider(
    customer: Customer,
    name: str,
    metadata_xml: str,
    *,
    match: str,
    actor: str,
    match_attribute: str = "",
    metadata_url: str = "",
    require_signed_assertion: bool = True,
    allow_idp_initiated: bool = False,
    clock_skew_seconds: int = 120,
    metadata_signing_cert: str = "",
    label: str = "",
    email_domains: list[str] | tuple = (),
) -> IdentityProvider:
    """Add a SAML IdP to `customer` from its metadata (one IdP entity, signing key, SSO),
    with the email domains that lead to it. Every refused setting is named at once.

    `metadata_signing_cert` (PEM): refreshed metadata must then be signed by it."""
    refuse(
        saml_provider_errors(
            customer,
            name,
            metadata_xml,
            match=match,
            match_attribute=match_attribute,
            label=label,
            clock_skew_seconds=clock_skew_seconds,
            metadata_signing_cert=metadata_signing_cert,
            email_domains=email_domains,
        )
    )
    entity = idp_entity_id(metadata_xml)

    settings = {
        **DEFAULT_SETTINGS,
        "label": clean_label(label),
        "metadata_xml": metadata_xml,
        "metadata_url": metadata_url,
        "entity_id": entity,
        "match": match,
        "match_attribute": match_attribute,
        "require_signed_assertion": require_signed_assertion,
        "allow_idp_initiated": allow_idp_initiated,
        "clock_skew_seconds": clock_skew_seconds,
        "metadata_signing_cert": metadata_signing_cert,
    }
    return _store_new(customer, name, ProviderKind.SAML, settings, email_domains, actor=actor)


def add_oidc_provider(
    customer: Customer,
    name: str,
    discovery_url: str,
    *,
    client_id: str,
    client_secret: str,
    match: str,
    actor: str,
    match_claim: str = "",
    scopes: str = "openid email profile",
    label: str = "",
    email_domains: list[str] | tuple = (),
) -> IdentityProvider:
    """Add an OpenID provider to `customer`, with the email domains that lead to it; its
    discovery document is fetched and checked. Every refused setting is named at once."""
    errors, document = oidc_checks(
        customer,
        name,
        discovery_url,
        client_id=client_id,
        client_secret=client_secret,
        match=match,
        scopes=scopes,
        label=label,
        email_domains=email_domains,
    )
    refuse(errors)

    settings = {
        **DEFAULT_SETTINGS,
        "label": clean_label(label),
        "discovery_url": discovery_url,
        "issuer": document["issuer"],
        "client_id": client_id,
        "client_secret": vault.encrypt(client_secret),
        "scopes": scopes,
        "match": match,
        "match_claim": match_claim,
    }
    return _store_new(customer, name, ProviderKind.OIDC, settings, email_domains, actor=actor)


def _store_new(
    customer: Customer,
    name: str,
    kind: ProviderKind,
    settings: dict,
    email_domains: list[str] | tuple,
    *,
    actor: str,
) -> IdentityProvider:
    """Store a provider whose settings and email domains the add's checks passed (the domains
    by check_new_domains: they are not checked again); it is enabled, so it claims them."""
    domains = parse_domains(" ".join(email_domains))
    provider = IdentityProvider(
        customer_id=customer.id,
        name=name,
        kind=kind.value,
        settings={**settings, queries.EMAIL_DOMAINS: domains} if domains else settings,
    )
    db.session.add(provider)
    db.session.flush()
    audit.record(actor, "sso.provider_added", "identity_provider", provider.id, kind=kind.value)
    logger.info("%s provider %s added to customer %s by %s", kind, provider.id, customer.id, actor)
    if domains:
        claim_domains(provider, domains)
        audit.record(
            actor, "sso.provider_domains", "identity_provider", provider.id, domains=domains
        )
    return provider


def set_provider_enabled(provider: IdentityProvider, enabled: bool, *, actor: str) -> None:
    """Enable or disable a provider; enabling re-checks that its domains are still free (of
    other providers and of other customers' persons: a disabled provider claims nothing),
    disabling ends the live sessions it logged in."""
    if enabled == provider.is_enabled:
        return
    if enabled:
        domains = queries.email_domains(provider)
        check_domains_free(domains, provider.customer_id, ignore_id=provider.id)
        check_domains_own(domains, provider.customer_id, provider.id)

    provider.is_enabled = enabled
    db.session.flush()
    claim_domains(provider, queries.email_domains(provider) if enabled else [])
    action = "sso.provider_enabled" if enabled else "sso.provider_disabled"
    details = {}
    if not enabled:  # nobody stays logged in on the word of a provider no longer trusted
        details["sessions_ended"] = end_provider_sessions(provider.id, "provider_disabled")
    audit.record(actor, action, "identity_provider", provider.id, **details)
    logger.info("provider %s %s by %s", provider.id, action.rpartition("_")[2], actor)


def update_provider(provider: IdentityProvider, *, actor: str, **changes) -> None:
    """Change the label, match rule and options of a provider (see EDITABLE). The metadata
    is replaced by sso.metadata.replace_metadata, the client secret by set_client_secret."""
    kind = ProviderKind(provider.kind)
    unknown = set(changes) - set(EDITABLE[kind])
    if unknown:
        raise UserError(f"A {kind} provider has no setting {sorted(unknown)[0]!r} to change.")
    allowed = set(MatchRule) if kind == ProviderKind.SAML else OIDC_MATCHES
    refuse(
        collect(
            lambda: "label" not in changes or clean_label(changes["label"]),
            lambda: "match" not in changes or check_match_in(changes["match"], allowed),
            lambda: "scopes" not in changes or check_scopes(changes["scopes"]),
            lambda: (
                kind != ProviderKind.SAML
                or check_match_attribute(
                    changes.get("match", provider.setting("match")),
                    changes.get("match_attribute", provider.setting("match_attribute")),
                )
            ),
        )
    )
    if "label" in changes:
        changes["label"] = clean_label(changes["label"])

    provider.settings = {**provider.settings, **changes}
    db.session.flush()
    audit.record(
        actor, "sso.provider_changed", "identity_provider", provider.id, keys=sorted(changes)
    )
    logger.info("provider %s changed by %s", provider.id, actor)


def set_client_secret(provider: IdentityProvider, secret: str, *, actor: str) -> None:
    """Replace an OIDC provider's client secret (stored encrypted; logged and audited without
    it), e.g. when the old one expires at the provider."""
    if provider.kind != ProviderKind.OIDC:
        raise UserError("Only an OpenID Connect provider has a client secret.")
    if not secret.strip():
        raise FieldRefused("client_secret", "Client secret: give the new secret.")

    provider.settings = {**provider.settings, "client_secret": vault.encrypt(secret)}
    db.session.flush()
    audit.record(actor, "sso.client_secret_replaced", "identity_provider", provider.id)
    logger.info("provider %s client secret replaced by %s", provider.id, actor)


def delete_provider(provider: IdentityProvider, *, actor: str) -> None:
    """Delete a provider nobody has logged in through yet.

    Once identities are linked, deleting would forget which subject is which person (and a
    provider added again would link afresh, perhaps differently): such a provider is disabled
    instead, which this refuses to guess on the caller's behalf. The sessions it logged in
    (a transient NameID links nobody) end, and no longer name it.
    """
    linked = db.session.scalar(
        select(func.count()).select_from(Identity).where(Identity.provider_id == provider.id)
    )
    if linked:
        raise Conflict(
            f"{linked} person(s) have logged in through {provider.name}; disable it instead, "
            "so their links are kept."
        )
    provider_id, name = provider.id, provider.name

    ended = end_provider_sessions(provider_id, "provider_deleted", forget=True)
    for model in (SamlRequest, SamlAssertionSeen, OidcRequest, SamlLogoutRequest, EmailDomain):
        db.session.execute(delete(model).where(model.provider_id == provider_id))
    db.session.delete(provider)
    db.session.flush()
    audit.record(
        actor,
        "sso.provider_deleted",
        "identity_provider",
        provider_id,
        name=name,
        sessions_ended=ended,
    )
    logger.info("provider %s deleted by %s", provider_id, actor)
