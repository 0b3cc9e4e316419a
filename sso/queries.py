"""Read-only questions about identity providers: which one serves an email domain, which ones
a customer's login page shows as buttons.

The login page (portal.accounts) reaches these through `app.extensions["kursa_sso_login"]`,
because the portal never imports sso.
"""

from urllib.parse import urlencode

from sqlalchemy import select

from portal.core.db import db
from portal.directory.models import Customer
from sso.models import IdentityProvider

EMAIL_DOMAINS = "email_domains"  # settings key: the lower-case domains that lead to a provider


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
    """The login address of the enabled provider whose domain is the email's, or None."""
    domain = email.strip().rpartition("@")[2].lower()
    if not domain:
        return None
    owner = domain_owners({domain}).get(domain)
    if owner is None:
        return None
    slug, name = db.session.execute(
        select(Customer.slug, IdentityProvider.name)
        .join(Customer, IdentityProvider.customer_id == Customer.id)
        .where(IdentityProvider.id == owner)
    ).one()
    return login_address(slug, name, next_url)


def login_buttons(slug: str, next_url: str = "") -> list[tuple[str, str]]:
    """(label, login address) of each enabled provider of the customer; [] for no customer."""
    rows = db.session.execute(
        select(IdentityProvider.name, IdentityProvider.kind)
        .join(Customer, IdentityProvider.customer_id == Customer.id)
        .where(Customer.slug == slug, IdentityProvider.is_enabled.is_(True))
        .order_by(IdentityProvider.name)
    )
    return [(name, login_address(slug, name, next_url)) for name, _kind in rows]
