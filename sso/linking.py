"""A verified identity -> the synced person it belongs to, and the Account that logs in.

The first login records an Identity (provider + subject -> person); later logins follow the
link, so a rename in the directory does not lock anyone out. Persons are created here only
for a customer that turned it on (`flask customer set SLUG --create-persons-at-login on`,
customers without a directory sync), and only when nobody at all matches.
"""

import logging
import unicodedata

from sqlalchemy import func, insert, select, update

from portal.accounts.models import Account
from portal.core import audit
from portal.core.audit import AuditEntry
from portal.core.db import db, utcnow
from portal.core.errors import UserError
from portal.directory.models import Customer, OrgUnit, Person
from portal.directory.operations import create_person
from portal.directory.usernames import with_prefix
from sso.models import Identity, IdentityProvider, MatchRule

logger = logging.getLogger(__name__)

# What a refused person is told; `whom` is filled with the customer's name. A person of
# another customer hears the same as an unknown one: the page is shown to whoever the IdP
# vouches for, and a customer's own IdP must not learn who exists at other customers (the
# audit log keeps the real reason).
NOT_FOUND = "You are not in {whom}'s directory in Kursa, so you cannot log in yet."
REFUSALS = {
    "no_value": "Your company's sign-in did not say who you are, so Kursa cannot log you in.",
    "not_found": NOT_FOUND,
    "inactive": "Your entry in {whom}'s directory in Kursa is inactive, so you cannot log in.",
    "other_customer": NOT_FOUND,
    "account_disabled": "Your Kursa account is disabled.",
    "subject_too_long": (
        "Your company's sign-in identifies you by an id longer than Kursa can keep, so "
        "Kursa cannot log you in."
    ),
    "ambiguous": (
        "Your company's sign-in sent more than one {attribute} for you, so Kursa cannot "
        "tell who you are."
    ),
}
# Written with Core statements: the login reads none of these rows back.
IDENTITIES = Identity.__table__
AUDIT_ENTRIES = AuditEntry.__table__
# The longest subject (persistent NameID, OIDC `sub`) linked, in UTF-8 bytes: what the
# identities column holds and a unique index entry takes on PostgreSQL. SAML allows 256
# characters, OIDC 255 ASCII characters; a longer one is refused, never cut (two subjects
# cut to one would share a link, and log one person in as the other).
MAX_SUBJECT_BYTES = 1024
CONTACT = "Ask {whom}'s HR or IT department to check your entry in the directory."
MISSING = "It sent none of: {names}."


# Where the verified profile of a new person is read: SAML attribute names (friendly, as
# pysaml2 names them, or the claim URIs of Microsoft's IdPs) and OIDC claims, in order.
PROFILE_KEYS = {
    "username": ("preferred_username", "uid", "userName", "sAMAccountName"),
    "first_name": (
        "given_name",
        "givenName",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
    ),
    "last_name": (
        "family_name",
        "sn",
        "surname",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
    ),
    "email": (
        "email",
        "mail",
        "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    ),
}


def printable(text: str) -> str:
    """`text` without control and format characters (NUL, escapes, bidi overrides), which
    OIDC claims may carry and no name needs; runs of spaces become one."""
    kept = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf") or c == " ")
    return " ".join(kept.split())


def profile_of(values: dict) -> dict[str, str]:
    """username, first_name, last_name and email from SAML attributes or OIDC claims."""
    folded = {str(name).casefold(): value for name, value in values.items()}
    profile = {}
    for field, names in PROFILE_KEYS.items():
        for name in names:
            value = folded.get(name.casefold())
            if isinstance(value, list):
                value = value[0] if value else None
            if isinstance(value, str) and printable(value):
                profile[field] = printable(value)
                break
    return profile


class LinkRefused(Exception):
    """The verified person may not log in; `message` is the plain sentence they see."""

    def __init__(self, reason: str, provider: IdentityProvider, missing=(), attribute=""):
        whom = provider.customer.name
        super().__init__(reason)
        self.reason = reason
        said = REFUSALS[reason].format(whom=whom, attribute=attribute)
        if missing:
            said += f" {MISSING.format(names=', '.join(missing))}"
        self.message = f"{said} {CONTACT.format(whom=whom)}"


def login_person(
    provider: IdentityProvider,
    subject: str,
    value: str,
    *,
    link: bool = True,
    profile: dict[str, str] | None = None,
    looked_in: tuple[str, ...] = (),
) -> Account:
    """The Account of the person that `subject` (linked) or `value` (first login) names.

    `subject` is the provider's stable id (a persistent NameID); `value` is what the match
    rule compares; `profile` (profile_of) is what a new person is made of, where the customer
    allows that; `looked_in` names the attributes or claims `value` was sought in, which a
    refusal for a missing value names. Refusals are audited and raise LinkRefused.

    Each lookup reads the person and their account in one statement, and the link and audit
    rows are written without loading objects: a login is on every user's path (issue 4).
    """
    if len(subject.encode("utf-8", "surrogatepass")) > MAX_SUBJECT_BYTES:
        _refuse(provider, "subject_too_long")
    linked = _linked(provider, subject) if subject else None
    if linked is not None:
        identity_id, person, account = linked
    else:
        identity_id = None
        person, account = _match(provider, value, profile, looked_in)
    _check_person(provider, person)

    now = utcnow()
    via = {"provider": provider.id}
    audits = []  # (actor, action, object type, object id, details), written at once
    if identity_id is None and link and subject:
        _add_identity(provider, subject, person, now)
        audits.append((f"sso:{provider.id}", "sso.linked", "person", person.id, via))
        logger.info("provider %s linked a subject to person %s", provider.id, person.id)
    elif identity_id is not None:
        db.session.execute(
            update(IDENTITIES).where(IDENTITIES.c.id == identity_id).values(last_login_at=now)
        )
    if account is None:
        account = _new_account(person, now)
        audits.append(("sso", "account.created", "account", account.id, {"person": person.id}))
    elif not account.is_enabled:
        _record(audits)  # the link stands (the caller commits)
        _refuse(provider, "account_disabled", person)
    else:
        account.last_login_at = now
    audits.append((account.actor, "login.sso", "account", account.id, via))
    _record(audits)
    logger.info("account %s logged in through provider %s", account.id, provider.id)
    return account


def _linked(provider: IdentityProvider, subject: str):
    """(identity id, person, account or None) of a linked subject, in one statement."""
    row = db.session.execute(
        select(Identity.id, Person, Account)
        .join(Person, Person.id == Identity.person_id)
        .outerjoin(Account, Account.person_id == Person.id)
        .where(Identity.provider_id == provider.id, Identity.subject == subject)
        .limit(1)
    ).first()
    return tuple(row) if row is not None else None


def _add_identity(provider: IdentityProvider, subject: str, person: Person, now) -> None:
    """The link row, inserted directly: nothing in this request reads it back."""
    db.session.execute(
        insert(IDENTITIES).values(
            provider_id=provider.id,
            subject=subject,
            person_id=person.id,
            created_at=now,
            last_login_at=now,
        )
    )


def _record(audits: list[tuple]) -> None:
    """The login's audit entries in one multi-row insert (what audit.record writes, without
    an ORM object and its flush for each)."""
    if not audits:
        return
    now = utcnow()
    rows = [
        {
            "at": now,
            "actor": actor,
            "action": action,
            "object_type": object_type,
            "object_id": str(object_id),
            "details": details,
        }
        for actor, action, object_type, object_id, details in audits
    ]
    db.session.execute(insert(AUDIT_ENTRIES), rows)


def match_key(provider: IdentityProvider, value: str) -> str:
    """`value` as the provider's match rule compares it with persons: trimmed, with the
    customer's username prefix (username and nameid rules), without regard to case."""
    value = (value or "").strip()
    if provider.setting("match") in (MatchRule.USERNAME, MatchRule.NAMEID):
        value = with_prefix(value, provider.customer.username_prefix)
    return value.lower()


def refuse_ambiguous(provider: IdentityProvider, attribute: str):
    """Refuse (audited) a login whose match attribute carried values naming different
    persons: taking the first would let element order decide whom the subject is linked to."""
    _refuse(provider, "ambiguous", attribute=attribute)


def _match(provider: IdentityProvider, value: str, profile: dict | None, looked_in=()):
    """(person, account or None) whom `value` names under the provider's match rule."""
    value = (value or "").strip()
    if not value:
        _refuse(provider, "no_value", missing=looked_in)
    if printable(value) != value:  # a NUL or an escape matches nobody (and breaks queries)
        _refuse(provider, "not_found")
    rule = provider.setting("match")
    if rule in (MatchRule.USERNAME, MatchRule.NAMEID):
        column = Person.username
    elif rule == MatchRule.EMAIL:
        column = Person.email
    else:
        column = Person.employee_number
    rows = db.session.execute(
        select(Person, Account)
        .outerjoin(Account, Account.person_id == Person.id)
        .where(func.lower(column) == match_key(provider, value))
        .order_by(Person.id, Account.id)
    )
    found: dict[int, tuple[Person, Account | None]] = {}
    for person, account in rows:
        found.setdefault(person.id, (person, account))
    own = [row for row in found.values() if row[0].customer_id == provider.customer_id]
    if len(own) > 1:
        # Two persons share an email or employee number: guessing would log in the wrong one.
        _refuse(provider, "not_found")
    if own:
        return own[0]
    if not found and profile is not None and provider.customer.is_creating_persons_at_login:
        return _create(provider, value, profile), None
    _refuse(provider, "other_customer" if found else "not_found")


def _create(provider: IdentityProvider, value: str, profile: dict) -> Person:
    """A new person in the customer's root unit, from what the provider verified."""
    customer = provider.customer
    rule = provider.setting("match")
    username = value if rule in (MatchRule.USERNAME, MatchRule.NAMEID) else profile.get("username")
    email = value if rule == MatchRule.EMAIL else profile.get("email")
    if not username:
        _refuse(provider, "not_found")
    username = with_prefix(username, customer.username_prefix)
    if _prefix_of_another_customer(username, customer):
        # Usernames are unique across customers: this one would block the other customer's
        # sync of its own person of that name.
        _refuse(provider, "not_found")
    try:
        person = create_person(
            db.session.get(OrgUnit, customer.root_unit_id),
            username=username,
            first_name=printable(profile.get("first_name", "")),
            last_name=printable(profile.get("last_name", "")),
            email=printable(email or "") or None,
            source=f"sso:{provider.name}",
            actor=f"sso:{provider.id}",
        )
    except UserError as exc:
        logger.warning("provider %s: person not created at login: %s", provider.id, exc)
        _refuse(provider, "not_found")
    if rule == MatchRule.EMPLOYEE_NUMBER:
        person.employee_number = value[:64]
    return person


def _prefix_of_another_customer(username: str, customer: Customer) -> bool:
    """True when `username` starts with another customer's prefix that is more specific than
    the customer's own (own "gx-", another's "g": gx-... stays the customer's)."""
    folded, own = username.casefold(), len(customer.username_prefix or "")
    prefixes = db.session.scalars(
        select(Customer.username_prefix).where(
            Customer.id != customer.id, Customer.username_prefix != ""
        )
    )
    return any(folded.startswith(p.casefold()) and len(p) > own for p in prefixes if p)


def _check_person(provider: IdentityProvider, person: Person) -> None:
    if person.customer_id != provider.customer_id:
        _refuse(provider, "other_customer", person)
    if not person.is_active:
        _refuse(provider, "inactive", person)


def _refuse(
    provider: IdentityProvider,
    reason: str,
    person: Person | None = None,
    missing=(),
    attribute: str = "",
):
    """Audit and raise; `missing`: the attribute or claim names that carried no value;
    `attribute`: the one whose values were ambiguous."""
    target = ("person", person.id) if person is not None else ("identity_provider", provider.id)
    details = {"provider": provider.id, "reason": reason}
    if missing:
        details["missing"] = list(missing)
    if attribute:
        details["attribute"] = attribute
    audit.record(f"sso:{provider.id}", "login.refused", *target, **details)
    logger.warning("SSO login through provider %s refused: %s", provider.id, reason)
    raise LinkRefused(reason, provider, missing, attribute)


def _new_account(person: Person, now) -> Account:
    """The person's Account, created without a password at their first SSO login."""
    taken = db.session.scalar(
        select(Account.id).where(func.lower(Account.username) == person.username.lower())
    )
    username = f"person-{person.id}" if taken else person.username
    account = Account(
        username=username,
        person_id=person.id,
        password_hash=None,
        is_enabled=True,
        last_login_at=now,
    )
    db.session.add(account)
    db.session.flush()  # its id goes into the audit entry and the session row
    return account
