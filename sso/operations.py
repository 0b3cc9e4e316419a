"""Adding identity providers. Operations flush, audit and log; the caller commits."""

import codecs
import json
import logging
import re

from cryptography import x509
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from portal.accounts.sessions import end_provider_sessions
from portal.core import audit
from portal.core.db import db
from portal.core.errors import Conflict, UserError
from portal.directory.models import Customer
from sso import discovery, queries, vault
from sso.fetch import fetch, size_text
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
from sso.refusals import FieldConflict, FieldRefused, collect, refuse

logger = logging.getLogger(__name__)
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
MAX_LABEL = 80
MAX_METADATA_BYTES = 2 * 1024 * 1024
# The encoding an XML declaration names (read from bytes; only ASCII can come before it).
XML_ENCODING_RE = re.compile(rb"""^<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z][\w.-]*)["']""")
DECLARED_ENCODING_RE = re.compile(r"""^(<\?xml[^>]*?)\s+encoding\s*=\s*["'][^"']*["']""")
BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*$")
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


OIDC_MATCHES = {MatchRule.USERNAME, MatchRule.EMAIL, MatchRule.EMPLOYEE_NUMBER}


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
    provider = IdentityProvider(
        customer_id=customer.id, name=name, kind=ProviderKind.SAML.value, settings=settings
    )
    db.session.add(provider)
    db.session.flush()
    audit.record(actor, "sso.provider_added", "identity_provider", provider.id, kind="saml")
    logger.info("SAML provider %s added to customer %s by %s", provider.id, customer.id, actor)
    if email_domains:
        set_email_domains(provider, list(email_domains), actor=actor)
    return provider


def saml_provider_errors(
    customer: Customer,
    name: str,
    metadata_xml: str | None,
    *,
    match: str,
    label: str = "",
    clock_skew_seconds: int = 120,
    metadata_signing_cert: str = "",
    email_domains: list[str] | tuple = (),
) -> list[FieldRefused]:
    """Everything wrong with a new SAML provider, field by field, in one pass (the add page
    shows them all). `metadata_xml` None: the caller has refused the metadata already."""
    return collect(
        lambda: _check_name(customer, name),
        lambda: clean_label(label),
        lambda: metadata_xml is None or _check_metadata(customer, metadata_xml),
        lambda: _check_match_in(match, set(MatchRule)),
        lambda: _check_clock_skew(clock_skew_seconds),
        lambda: metadata_signing_cert and _check_certificate(metadata_signing_cert),
        lambda: _check_new_domains(email_domains, customer),
    )


def _check_clock_skew(seconds: int) -> None:
    if not 0 <= seconds <= 600:
        raise FieldRefused(
            "clock_skew_seconds", "The clock skew must be between 0 and 600 seconds."
        )


def _check_metadata(customer: Customer, metadata_xml: str) -> None:
    try:
        entity = idp_entity_id(metadata_xml)
    except UserError as exc:
        raise FieldRefused("metadata", str(exc)) from None
    check_entity_id_free(customer, entity)


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


def _check_certificate(pem: str) -> None:
    try:
        x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise FieldRefused(
            "metadata_signing_cert", "metadata signing certificate: not a PEM certificate."
        ) from None


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
    errors, document = _oidc_checks(
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
    provider = IdentityProvider(
        customer_id=customer.id, name=name, kind=ProviderKind.OIDC.value, settings=settings
    )
    db.session.add(provider)
    db.session.flush()
    audit.record(actor, "sso.provider_added", "identity_provider", provider.id, kind="oidc")
    logger.info("OIDC provider %s added to customer %s by %s", provider.id, customer.id, actor)
    if email_domains:
        set_email_domains(provider, list(email_domains), actor=actor)
    return provider


def oidc_provider_errors(customer: Customer, name: str, discovery_url: str, **settings):
    """Everything wrong with a new OIDC provider, field by field, in one pass (the add page
    shows them all); `settings` as add_oidc_provider's. The discovery document is fetched."""
    return _oidc_checks(customer, name, discovery_url, **settings)[0]


def _oidc_checks(
    customer: Customer,
    name: str,
    discovery_url: str,
    *,
    client_id: str,
    client_secret: str,
    match: str,
    scopes: str,
    label: str,
    email_domains: list[str] | tuple,
) -> tuple[list[FieldRefused], dict | None]:
    """(what is refused, the discovery document or None when it is refused)."""
    errors = collect(
        lambda: _check_name(customer, name),
        lambda: clean_label(label),
    )
    try:
        document = _discovery(discovery_url)
    except UserError as exc:
        errors.append(FieldRefused("discovery_url", str(exc)))
        document = None
    errors += collect(
        lambda: _require(client_id, "client_id", "Client id: give Kursa's client id."),
        lambda: _require(client_secret, "client_secret", "Client secret: give it."),
        lambda: _check_scopes(scopes),
        lambda: _check_match_in(match, OIDC_MATCHES),
        lambda: _check_new_domains(email_domains, customer),
    )
    return errors, document


def _check_scopes(scopes: str) -> None:
    if "openid" not in str(scopes).split():
        raise FieldRefused("scopes", "Scopes: the scopes must include openid.")


def _require(value: str, field: str, message: str) -> None:
    if not value:
        raise FieldRefused(field, message)


def clean_label(label: str) -> str:
    """The login button's text, spaces tidied; "" (the name is shown) when none is given."""
    label = " ".join((label or "").split())
    if len(label) > MAX_LABEL:
        raise FieldRefused("label", f"Label: at most {MAX_LABEL} characters.")
    if any(not c.isprintable() for c in label):
        raise FieldRefused("label", "Label: use letters, digits, spaces and punctuation only.")
    return label


def _check_name(customer: Customer, name: str) -> None:
    if not NAME_RE.match(name):
        raise FieldRefused(
            "name",
            "A provider name is 1-50 lower-case letters, digits, - or _ (it is part of the URL).",
        )
    if db.session.scalar(
        select(IdentityProvider.id).where(
            IdentityProvider.customer_id == customer.id, IdentityProvider.name == name
        )
    ):
        raise FieldConflict("name", f"{customer.slug} has a provider named {name!r} already.")


def _discovery(url: str) -> dict:
    body = fetch(url, what="The discovery document", max_bytes=discovery.MAX_BYTES)
    try:
        document = json.loads(body)
    except ValueError:
        raise UserError(f"The discovery document at {url} is not JSON.") from None
    return discovery.check_document(document, url)


def parse_domains(text: str) -> list[str]:
    """Domains typed one a line or separated by commas or spaces, in order, each in the form
    queries.ascii_domain gives (lower case, IDNA A-labels); one that is no IDNA name is kept
    lower-cased as typed, for set_email_domains to refuse."""
    seen: dict[str, None] = {}
    for part in re.split(r"[\s,;]+", text or ""):
        if part := part.strip().lower().removeprefix("@"):
            seen[queries.ascii_domain(part) or part] = None
    return list(seen)


def set_email_domains(provider: IdentityProvider, domains: list[str], *, actor: str) -> None:
    """Give the provider the email domains that lead to it from the login page.

    A domain must lead to exactly one provider, so one claimed by another enabled provider (of
    any customer) is refused; the message names that provider when it is the same customer's
    (another customer's stays unnamed: an IT admin must not learn other customers' setup).
    A newly listed domain that is in the email address of a person of another customer is
    refused too (the domains kept from before were claimed first and stay).
    """
    domains = parse_domains(" ".join(domains))
    _check_domain_names(domains)
    if domains == queries.email_domains(provider):
        return
    if provider.is_enabled:
        _check_domains_free(domains, provider.customer_id, ignore_id=provider.id)
    claimed = set(queries.email_domains(provider))
    _check_domains_own([d for d in domains if d not in claimed], provider.customer_id, provider.id)

    provider.settings = {**provider.settings, queries.EMAIL_DOMAINS: domains}
    db.session.flush()
    if provider.is_enabled:
        _claim_domains(provider, domains)
    audit.record(actor, "sso.provider_domains", "identity_provider", provider.id, domains=domains)
    logger.info("provider %s email domains set by %s", provider.id, actor)


def set_provider_enabled(provider: IdentityProvider, enabled: bool, *, actor: str) -> None:
    """Enable or disable a provider; enabling re-checks that its domains are still free (of
    other providers and of other customers' persons: a disabled provider claims nothing),
    disabling ends the live sessions it logged in."""
    if enabled == provider.is_enabled:
        return
    if enabled:
        domains = queries.email_domains(provider)
        _check_domains_free(domains, provider.customer_id, ignore_id=provider.id)
        _check_domains_own(domains, provider.customer_id, provider.id)

    provider.is_enabled = enabled
    db.session.flush()
    _claim_domains(provider, queries.email_domains(provider) if enabled else [])
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
            lambda: "match" not in changes or _check_match_in(changes["match"], allowed),
            lambda: "scopes" not in changes or _check_scopes(changes["scopes"]),
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


def _check_match_in(match: str, allowed: set) -> None:
    if match not in allowed:
        raise FieldRefused("match", f"Match: choose one of {', '.join(sorted(allowed))}.")


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


def _check_new_domains(domains: list[str] | tuple, customer: Customer) -> None:
    """The domains of a provider being added (enabled): domain names, led nowhere yet, and
    none of another customer's persons."""
    domains = parse_domains(" ".join(domains))
    _check_domain_names(domains)
    _check_domains_free(domains, customer.id)
    _check_domains_own(domains, customer.id)


def _check_domain_names(domains: list[str]) -> None:
    bad = [d for d in domains if not DOMAIN_RE.match(d)]
    if bad:
        raise FieldRefused(
            "email_domains",
            f"Email domains: {bad[0]!r} is not a domain name such as example.com.",
        )


def _check_domains_own(
    domains: list[str], customer_id: int, provider_id: int | None = None
) -> None:
    """A domain in the addresses of another customer's persons is that customer's: leading
    it to this provider would send their staff to a sign-in page this customer runs. The
    message gives the reason without naming the customer. `provider_id`: None for a new one."""
    domain = queries.domain_of_other_customers(customer_id, domains)
    if domain is not None:
        logger.warning(
            "provider %s of customer %s: email domain of another customer's persons refused",
            provider_id or "(new)",
            customer_id,
        )
        raise FieldConflict(
            "email_domains",
            f"Email domains: {domain} is in the email addresses of people of another customer "
            "in Kursa; list only your own organisation's domains.",
        )


def _check_domains_free(
    domains: list[str], customer_id: int, *, ignore_id: int | None = None
) -> None:
    taken = queries.domain_owners(set(domains), ignore_id=ignore_id)
    if taken:
        domain = sorted(taken)[0]
        owner = db.session.get(IdentityProvider, taken[domain])
        raise _taken(domain, owner=owner, customer_id=customer_id)


def _claim_domains(provider: IdentityProvider, domains: list[str]) -> None:
    """Make sso_email_domains hold exactly `domains` for the provider.

    The check above reads committed settings, so two saves at once could both pass it; the
    primary key then refuses the second insert (PostgreSQL makes it wait for the first
    transaction; SQLite's write lock does the same). One row per flush names the domain. After
    the Conflict the caller rolls back, as after any refused change.
    """
    provider_id = provider.id  # the failed flush leaves the session unreadable
    db.session.execute(delete(EmailDomain).where(EmailDomain.provider_id == provider_id))
    for domain in domains:
        db.session.add(EmailDomain(domain=domain, provider_id=provider_id))
        try:
            db.session.flush()
        except IntegrityError as exc:
            logger.warning("provider %s: email domain taken by a concurrent save", provider_id)
            raise _taken(domain) from exc


def _taken(
    domain: str, owner: IdentityProvider | None = None, customer_id: int | None = None
) -> FieldConflict:
    """The refusal of a claimed domain; it names the owner only within one customer."""
    if owner is not None and owner.customer_id == customer_id:
        whose = f"the provider {owner.name}"
    else:
        whose = "another identity provider in Kursa"
    return FieldConflict(
        "email_domains",
        f"Email domains: {domain} already leads to {whose}; "
        "a domain can lead to one provider only.",
    )
