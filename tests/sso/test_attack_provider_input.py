"""Provider input an IT admin or a provider controls, refused plainly and stored nowhere:
a provider disabled during a login, metadata files in other encodings, without an entity id
or too large, loose OIDC discovery documents, and internationalised email domains."""

from sqlalchemy import select

from portal.core.audit import AuditEntry
from portal.core.db import db
from sso.models import IdentityProvider, OidcRequest
from sso.operations import set_provider_enabled
from tests.sso import test_oidc
from tests.sso.conftest import logged_in_account_id
from tests.sso.test_oidc import callback, start

# The OIDC login fixtures of test_oidc (its npm oidc-provider on loopback).
op = test_oidc.op
acme_with_op = test_oidc.acme_with_op
flask = test_oidc.flask
fresh_caches = test_oidc.fresh_caches


def test_a_provider_disabled_during_a_login_refuses_its_callback(app, client, acme_with_op, op):
    acme_with_op()
    redirect = op.sign_in(start(client), "ida")
    set_provider_enabled(db.session.scalar(select(IdentityProvider)), False, actor="test")
    db.session.commit()

    answer = callback(client, redirect)

    assert answer.status_code == 403
    assert "Kursa could not accept the answer" in answer.get_data(as_text=True)
    assert logged_in_account_id(client) is None
    refusal = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "login.refused").order_by(AuditEntry.id)
    )
    assert refusal.details["reason"] == "provider_disabled"
    assert db.session.scalar(select(OidcRequest.is_used)) is True
