"""Read-only questions about identity providers: which one serves an email domain, which ones
a customer's login page shows as buttons.

The login page (portal.accounts) reaches these through `app.extensions["kursa_sso_login"]`,
because the portal never imports sso.
"""

import base64
import logging
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import idna
from cryptography import x509
from defusedxml.ElementTree import fromstring as safe_fromstring
from sqlalchemy import func, or_, select

from portal.core.db import db
from portal.directory.models import Customer, Person
from sso.models import EmailDomain, Identity, IdentityProvider

logger = logging.getLogger(__name__)
MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
INVISIBLE = {"Cf", "Cc", "Zs", "Zl", "Zp"}  # format, control and space characters
EMAIL_DOMAINS = "email_domains"  # settings key: the lower-case domains that lead to a provider


def ascii_domain(domain: str) -> str | None:
    """A domain in the one form Kursa stores and compares: lower-case, internationalised labels
    as IDNA A-labels (UTS 46 mapping, so æblegrød.dk and XN--BLEGRD-OUA3M.DK are both
    xn--blegrd-oua3m.dk); None when it is no IDNA domain name. Invisible characters (format
    and control characters, spaces) make it None too: UTS 46 would drop a zero-width space
    silently, and an address that is not what it looks like should lead nowhere."""
    if any(unicodedata.category(c) in INVISIBLE for c in domain):
        return None
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


def email_domains(provider: IdentityProvider) -> list[str]:
    """The provider's email domains (older providers have none)."""
    return list(provider.settings.get(EMAIL_DOMAINS) or [])


def domain_owners(domains: set[str], *, ignore_id: int | None = None) -> dict[str, int]:
    """domain -> id of the enabled provider (of any customer) that already claims it.

    Reads only the domain lists, not the providers' metadata, so it stays cheap with many
    providers; a domain must lead to exactly one provider.
    """
    rows = db.session.execute(
        select(IdentityProvider.id, IdentityProvider.settings[EMAIL_DOMAINS]).where(
            IdentityProvider.is_enabled.is_(True)
        )
    )
    owners = {}
    for provider_id, claimed in rows:
        if provider_id == ignore_id:
            continue
        for domain in claimed or []:
            if domain in domains:
                owners[domain] = provider_id
    return owners


def login_address(slug: str, provider_name: str, next_url: str = "") -> str:
    """Where a login through the provider starts (the contract address of sso.views)."""
    address = f"/sso/{slug}/{provider_name}/login"
    return f"{address}?{urlencode({'next': next_url})}" if next_url else address


def login_address_for_email(email: str, next_url: str = "") -> str | None:
    """The login address of the enabled provider whose domain is the email's, or None.

    None also when the address is that of a person of another customer than the provider's:
    a domain claimed first (or before that customer's staff arrived) must not send another
    customer's staff to a sign-in page the claiming customer runs. One query: the domain by
    its primary key, the address by the index on lower(persons.email).
    """
    local, _, typed = email.strip().rpartition("@")
    domain = ascii_domain(typed) if local and typed else None  # stored domains are in that form
    if not domain:
        return None
    other_customers = (
        select(Person.id)
        .where(
            func.lower(Person.email).in_(_address_forms(local, typed, domain)),
            Person.customer_id != IdentityProvider.customer_id,
        )
        .exists()
    )
    found = db.session.execute(
        select(Customer.slug, IdentityProvider.name, IdentityProvider.id, other_customers)
        .select_from(EmailDomain)
        .join(IdentityProvider, IdentityProvider.id == EmailDomain.provider_id)
        .join(Customer, IdentityProvider.customer_id == Customer.id)
        .where(EmailDomain.domain == domain, IdentityProvider.is_enabled.is_(True))
    ).first()
    if found is None:
        return None
    slug, name, provider_id, is_other_customers = found
    if is_other_customers:
        logger.warning(
            "login page: an address of another customer's person has the domain of provider %s;"
            " not sent there",
            provider_id,
        )
        return None
    return login_address(slug, name, next_url)


def _address_forms(local: str, typed: str, domain: str) -> list[str]:
    """The typed address lower-cased, its domain as typed, in IDNA ASCII and in Unicode (a
    person's email may be stored in any of them)."""
    return sorted({f"{local}@{form}".lower() for form in (typed, *_domain_forms(domain))})


def domain_of_other_customers(customer_id: int, domains: list[str]) -> str | None:
    """One of `domains` (ASCII form) that is the domain of an email address of a person of
    another customer than `customer_id`; None when none is.

    A suffix match cannot use an index, so this reads the other customers' addresses; it runs
    when an IT admin saves domains, not at login.
    """
    patterns = {f"%@{form}": domain for domain in domains for form in _domain_forms(domain)}
    if not patterns:
        return None
    email = func.lower(Person.email)
    address = db.session.scalar(
        select(email)
        .where(Person.customer_id != customer_id, or_(*(email.like(p) for p in patterns)))
        .limit(1)
    )
    if address is None:
        return None
    return next(d for p, d in patterns.items() if address.endswith(p.removeprefix("%")))


def _domain_forms(domain: str) -> list[str]:
    """A stored (ASCII) domain and, for an internationalised one, its Unicode form."""
    try:
        return sorted({domain, idna.decode(domain).lower()})
    except (idna.IDNAError, UnicodeError):
        return [domain]


def login_buttons(slug: str, next_url: str = "") -> list[tuple[str, str]]:
    """(label, login address) of each enabled provider of the customer; [] for no customer."""
    providers = db.session.scalars(
        select(IdentityProvider)
        .join(Customer, IdentityProvider.customer_id == Customer.id)
        .where(Customer.slug == slug, IdentityProvider.is_enabled.is_(True))
        .order_by(IdentityProvider.name)
    )
    return [(p.label, login_address(slug, p.name, next_url)) for p in providers]


def last_logins(customer_id: int) -> dict[int, datetime]:
    """provider id -> the newest login through it, for a customer's providers (one query)."""
    rows = db.session.execute(
        select(Identity.provider_id, func.max(Identity.last_login_at))
        .join(IdentityProvider, Identity.provider_id == IdentityProvider.id)
        .where(IdentityProvider.customer_id == customer_id)
        .group_by(Identity.provider_id)
    )
    return {provider_id: at for provider_id, at in rows if at is not None}


def linked_counts(customer_id: int) -> dict[int, int]:
    """provider id -> how many identities are linked through it (they decide delete/disable)."""
    rows = db.session.execute(
        select(Identity.provider_id, func.count())
        .join(IdentityProvider, Identity.provider_id == IdentityProvider.id)
        .where(IdentityProvider.customer_id == customer_id)
        .group_by(Identity.provider_id)
    )
    return dict(rows.all())


@dataclass(frozen=True)
class MetadataValidity:
    """What an IT admin must watch in stored SAML metadata: when it, or its signing
    certificate, stops being valid (None: not stated, or not readable)."""

    valid_until: datetime | None
    certificate_expires_at: datetime | None

    def expired(self, now: datetime) -> bool:
        ends = [at for at in (self.valid_until, self.certificate_expires_at) if at is not None]
        return any(at <= now for at in ends)


def metadata_validity(provider: IdentityProvider) -> MetadataValidity:
    """Read validUntil and the signing certificate's end from the stored metadata."""
    try:
        root = safe_fromstring(provider.setting("metadata_xml").encode(), forbid_dtd=True)
    except Exception:  # noqa: BLE001 - stored metadata was checked at save; show "unknown"
        return MetadataValidity(None, None)
    return MetadataValidity(_valid_until(root), _certificate_end(root))


def _valid_until(root) -> datetime | None:
    stamp = root.get("validUntil")
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _certificate_end(root) -> datetime | None:
    for key in root.iter(f"{MD}KeyDescriptor"):
        if key.get("use", "signing") != "signing":
            continue
        cert = key.find(f".//{DS}X509Certificate")
        if cert is None or not (cert.text or "").strip():
            continue
        try:
            der = base64.b64decode("".join(cert.text.split()))
            return x509.load_der_x509_certificate(der).not_valid_after_utc
        except ValueError:
            return None
    return None
