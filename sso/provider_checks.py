"""What is refused in a new or changed provider's settings, field by field.

Every check raises a FieldRefused naming its field, and the add pages and `flask sso add-saml`
/ `add-oidc` run them all in one pass (portal.core.errors.collect), so one submit names every wrong
field. Nothing here writes.
"""

import json
import re

from cryptography import x509
from sqlalchemy import select

from portal.core.db import db
from portal.core.errors import FieldConflict, FieldRefused, UserError, collect
from portal.directory.models import Customer
from sso import discovery
from sso.domains import check_new_domains
from sso.fetch import fetch
from sso.metadata import check_entity_id_free, idp_entity_id
from sso.models import IdentityProvider, MatchRule

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
MAX_LABEL = 80
OIDC_MATCHES = {MatchRule.USERNAME, MatchRule.EMAIL, MatchRule.EMPLOYEE_NUMBER}


def saml_provider_errors(
    customer: Customer,
    name: str,
    metadata_xml: str | None,
    *,
    match: str,
    match_attribute: str = "",
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
        lambda: check_match_in(match, set(MatchRule)),
        lambda: check_match_attribute(match, match_attribute),
        lambda: _check_clock_skew(clock_skew_seconds),
        lambda: metadata_signing_cert and _check_certificate(metadata_signing_cert),
        lambda: check_new_domains(email_domains, customer),
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


def _check_certificate(pem: str) -> None:
    try:
        x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise FieldRefused(
            "metadata_signing_cert", "metadata signing certificate: not a PEM certificate."
        ) from None


def oidc_provider_errors(customer: Customer, name: str, discovery_url: str, **settings):
    """Everything wrong with a new OIDC provider, field by field, in one pass (the add page
    shows them all); `settings` as add_oidc_provider's. The discovery document is fetched."""
    return oidc_checks(customer, name, discovery_url, **settings)[0]


def oidc_checks(
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
        lambda: check_scopes(scopes),
        lambda: check_match_in(match, OIDC_MATCHES),
        lambda: check_new_domains(email_domains, customer),
    )
    return errors, document


def check_scopes(scopes: str) -> None:
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


def check_match_attribute(match: str, match_attribute: str) -> None:
    """The nameid rule reads the NameID itself: an attribute given with it would be ignored,
    so it is refused rather than stored as if it meant something."""
    if match == MatchRule.NAMEID and (match_attribute or "").strip():
        raise FieldRefused(
            "match_attribute",
            "Match attribute: the nameid rule reads the NameID, not an attribute; "
            "leave the match attribute (--match-attribute) empty.",
        )


def check_match_in(match: str, allowed: set) -> None:
    if match not in allowed:
        raise FieldRefused("match", f"Match: choose one of {', '.join(sorted(allowed))}.")
