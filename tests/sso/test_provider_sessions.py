"""What disabling or deleting a provider does to the sessions it logged in."""

from sqlalchemy import select

from portal.accounts.models import LoginSession
from portal.core.audit import AuditEntry
from portal.core.db import db
from sso.models import SamlLogoutRequest
from sso.operations import delete_provider, set_provider_enabled
from tests.conftest import csrf_token
from tests.sso.conftest import IDP_SLO, post_acs, start_login
from tests.sso.test_attack_sessions_more import transient_response
from tests.sso.test_saml_logout import PAGE, log_in


def audited(action: str) -> dict:
    return db.session.scalar(select(AuditEntry).where(AuditEntry.action == action)).details


def test_disabling_counts_the_sessions_it_ended_in_the_audit(app, client, acme_with_idp, idp):
    _, provider = acme_with_idp()
    session = log_in(client, idp)

    set_provider_enabled(provider, False, actor="test")
    db.session.commit()

    db.session.refresh(session)
    assert session.end_reason == "provider_disabled"
    assert audited("sso.provider_disabled") == {"sessions_ended": 1}


def test_a_deleted_providers_sessions_no_longer_name_it(app, client, acme_with_idp, idp):
    """After Kursa's own logout a LogoutRequest awaits the IdP's answer; the delete drops it
    (its foreign key refused the delete before) and takes the provider off every session."""
    _, provider = acme_with_idp()
    started = start_login(client)
    assert post_acs(client, transient_response(idp, client, started.request_id)).status_code == 302
    answer = client.post("/logout", data={"csrf_token": csrf_token(client, PAGE)})
    assert answer.headers["Location"].startswith(IDP_SLO)
    assert db.session.scalar(select(SamlLogoutRequest)) is not None

    delete_provider(provider, actor="test")
    db.session.commit()

    assert db.session.scalar(select(SamlLogoutRequest)) is None
    assert db.session.scalars(select(LoginSession.provider_id)).all() == [None]
    assert audited("sso.provider_deleted")["sessions_ended"] == 0
