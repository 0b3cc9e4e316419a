"""The email domains that lead from the login page to a provider: parsed, checked, claimed.

A domain leads to one enabled provider at most (sso_email_domains holds the claims), and a
provider may not claim a domain in the addresses of another customer's persons. Operations
flush, audit and log; the caller commits.
"""

import logging
import re

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from portal.core import audit
from portal.core.db import db
from portal.core.errors import FieldConflict, FieldRefused
from portal.directory.models import Customer
from sso import queries
from sso.models import EmailDomain, IdentityProvider

logger = logging.getLogger(__name__)
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*$")


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
        check_domains_free(domains, provider.customer_id, ignore_id=provider.id)
    claimed = set(queries.email_domains(provider))
    check_domains_own([d for d in domains if d not in claimed], provider.customer_id, provider.id)

    provider.settings = {**provider.settings, queries.EMAIL_DOMAINS: domains}
    db.session.flush()
    if provider.is_enabled:
        claim_domains(provider, domains)
    audit.record(actor, "sso.provider_domains", "identity_provider", provider.id, domains=domains)
    logger.info("provider %s email domains set by %s", provider.id, actor)


def check_new_domains(domains: list[str] | tuple, customer: Customer) -> None:
    """The domains of a provider being added (enabled): domain names, led nowhere yet, and
    none of another customer's persons."""
    domains = parse_domains(" ".join(domains))
    _check_domain_names(domains)
    check_domains_free(domains, customer.id)
    check_domains_own(domains, customer.id)


def _check_domain_names(domains: list[str]) -> None:
    bad = [d for d in domains if not DOMAIN_RE.match(d)]
    if bad:
        raise FieldRefused(
            "email_domains",
            f"Email domains: {bad[0]!r} is not a domain name such as example.com.",
        )


def check_domains_own(domains: list[str], customer_id: int, provider_id: int | None = None) -> None:
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


def check_domains_free(
    domains: list[str], customer_id: int, *, ignore_id: int | None = None
) -> None:
    taken = queries.domain_owners(set(domains), ignore_id=ignore_id)
    if taken:
        domain = sorted(taken)[0]
        owner = db.session.get(IdentityProvider, taken[domain])
        raise _taken(domain, owner=owner, customer_id=customer_id)


def claim_domains(provider: IdentityProvider, domains: list[str]) -> None:
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
