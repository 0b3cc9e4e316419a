"""One provider per email domain, held by the database (sso_email_domains), not only by code."""

import threading

import flask_migrate
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from app import create_app
from portal.core.db import db
from portal.core.errors import Conflict
from portal.directory.operations import create_customer
from sso.domains import set_email_domains
from sso.models import EmailDomain, IdentityProvider
from sso.operations import add_saml_provider, delete_provider, set_provider_enabled
from tests.conftest import settings_for
from tests.sso.conftest import as_another_idp

TAKEN = "Email domains: shared.test already leads to another identity provider in Kursa"


@pytest.fixture
def two_providers(make_customer, idp):
    """Providers of two customers, neither with domains yet; their ids."""
    ids = []
    for slug in ("acme", "globex"):
        customer = make_customer(slug, slug.title())
        ids.append(add_saml_provider(customer, "corp", idp.metadata, match="email", actor="t").id)
    db.session.commit()
    return ids


def claims() -> dict[str, int]:
    db.session.expire_all()
    return dict(db.session.execute(select(EmailDomain.domain, EmailDomain.provider_id)).all())


def test_the_table_follows_domains_enabling_and_deleting(two_providers):
    first, _ = two_providers
    provider = db.session.get(IdentityProvider, first)
    set_email_domains(provider, ["acme.test", "shared.test"], actor="t")
    db.session.commit()
    assert claims() == {"acme.test": first, "shared.test": first}

    set_email_domains(provider, ["acme.test"], actor="t")
    set_provider_enabled(provider, False, actor="t")
    db.session.commit()
    assert claims() == {}  # a disabled provider holds nothing

    set_provider_enabled(provider, True, actor="t")
    db.session.commit()
    assert claims() == {"acme.test": first}

    delete_provider(provider, actor="t")
    db.session.commit()
    assert claims() == {}


def test_the_database_refuses_a_second_claim(two_providers):
    first, second = two_providers
    set_email_domains(db.session.get(IdentityProvider, first), ["shared.test"], actor="t")
    db.session.commit()

    with pytest.raises(IntegrityError):
        db.session.execute(insert(EmailDomain).values(domain="shared.test", provider_id=second))
    db.session.rollback()


def test_two_saves_at_once_leave_one_owner_and_a_plain_message(app, two_providers):
    """Session A claims the domain and waits; session B passes the code check (A's change is
    not committed) and reaches the insert, which waits for A; A commits; B is refused by the
    primary key and gets the same sentence as the code check gives."""
    first, second = two_providers
    flushed, a_done = threading.Event(), threading.Event()
    failures = []

    def session_a() -> None:
        with app.app_context():
            try:
                set_email_domains(
                    db.session.get(IdentityProvider, first), ["shared.test"], actor="a"
                )
                flushed.set()
                a_done.wait(1.0)  # B is in its save (waiting on A's lock) by then
                db.session.commit()
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
                flushed.set()
            finally:
                db.session.remove()

    thread = threading.Thread(target=session_a)
    thread.start()
    assert flushed.wait(30)
    with app.app_context():
        try:
            provider = db.session.get(IdentityProvider, second)
            with pytest.raises(Conflict, match=TAKEN) as refused:
                set_email_domains(provider, ["globex.test", "shared.test"], actor="b")
            db.session.rollback()
        finally:
            db.session.remove()
    thread.join(30)

    assert failures == []
    assert isinstance(refused.value.__cause__, IntegrityError)  # the database refused it
    assert claims() == {"shared.test": first}
    db.session.expire_all()
    assert db.session.get(IdentityProvider, second).settings.get("email_domains") in (None, [])


def test_the_migration_copies_the_claims_of_enabled_providers(engine_app, database_url, idp):
    """Down to before the table, let two enabled providers claim one domain (what the race
    could leave), up again: the older provider keeps it, disabled providers claim nothing."""
    engine = engine_app.config["KURSA_ENGINE"]  # a database of its own on the same engine
    app = create_app(settings_for(database_url(engine, "domains_copy")), environ={})
    with app.app_context():
        ids = []
        for slug, domains in (("acme", ["acme.test", "shared.test"]), ("globex", ["globex.test"])):
            customer = create_customer(slug, slug.title(), actor="t")
            provider = add_saml_provider(customer, "corp", idp.metadata, match="email", actor="t")
            set_email_domains(provider, domains, actor="t")
            ids.append(provider.id)
        old_idp = as_another_idp(idp.metadata, "old")
        idle = add_saml_provider(customer, "old", old_idp, match="email", actor="t")
        set_provider_enabled(idle, False, actor="t")
        set_email_domains(idle, ["idle.test"], actor="t")
        db.session.commit()
        flask_migrate.downgrade(revision="k0_merge_heads")
        racer = db.session.get(IdentityProvider, ids[1])
        racer.settings = {**racer.settings, "email_domains": ["globex.test", "shared.test"]}
        db.session.commit()

        flask_migrate.upgrade(revision="heads")

        assert claims() == {"acme.test": ids[0], "shared.test": ids[0], "globex.test": ids[1]}
        db.session.remove()
        db.engine.dispose()
