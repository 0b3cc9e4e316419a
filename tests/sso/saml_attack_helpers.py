"""Helpers of the SAML attack tests (test_attack_saml_more, _markup, _answers): clocks moved on
both sides, a bearer-only expiry, a second customer trusting the same IdP."""

import time
from datetime import UTC, datetime, timedelta

import saml2.time_util

import portal.core.db
import sso.saml
import sso.saml_acs
from portal.accounts.models import Account
from portal.core.db import db
from portal.directory.models import Person
from sso.operations import add_saml_provider
from tests.sso.conftest import (
    ACS,
    SP_ENTITY,
    UNITS,
    logged_in_account_id,
)
from tests.sso.test_saml_logout import SLS
from tests.sso.test_saml_signature import SAML

BETA_SLS = SLS.replace("/acme/", "/beta/")
BETA_SP = SP_ENTITY.replace("/acme/", "/beta/")
BETA_ACS = ACS.replace("/acme/", "/beta/")


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def logged_in_username(client) -> str | None:
    account_id = logged_in_account_id(client)
    if account_id is None:
        return None
    account = db.session.get(Account, int(account_id))
    return db.session.get(Person, account.person_id).username


def forget_browser(client) -> None:
    with client.session_transaction() as session:
        session.clear()


def move_all_clocks(monkeypatch, seconds: float) -> None:
    """Move the SP's clocks: pysaml2's (the ACS's time checks) and the database clock that
    dates and purges replay records (sso.saml and sso.saml_acs import utcnow by name)."""
    real_time, real_utcnow = time.time, portal.core.db.utcnow
    monkeypatch.setattr(saml2.time_util, "utc_now", lambda: int(real_time() + seconds))
    later = lambda: real_utcnow() + timedelta(seconds=seconds)  # noqa: E731
    monkeypatch.setattr(sso.saml, "utcnow", later)
    monkeypatch.setattr(sso.saml_acs, "utcnow", later)


def only_bearer_bound(hours: float):
    """An edit: no NotOnOrAfter on Conditions, the bearer's `hours` ahead (or none at all)."""

    def edit(root, assertion):
        del assertion.find(f"{SAML}Conditions").attrib["NotOnOrAfter"]
        data = assertion.find(f".//{SAML}SubjectConfirmationData")
        if hours:
            data.set("NotOnOrAfter", iso(datetime.now(UTC) + timedelta(hours=hours)))
        else:
            del data.attrib["NotOnOrAfter"]

    return edit


def two_customers_with_the_same_idp(acme_with_idp, make_customer, import_csv, idp, **options):
    customer, provider = acme_with_idp(**options)
    beta = make_customer("beta", "Beta")
    import_csv(beta, UNITS, [["u1", "Bea", "One", "b1@beta.test", "E1", "1"]])
    add_saml_provider(
        beta, "corp", idp.metadata, match="username", match_attribute="uid", actor="t", **options
    )
    db.session.commit()
    return customer, beta
