"""Runs that must fail in plain words and change nothing: a size limit hit while paging, a
server that never answers, a referral instead of the base. Against a real slapd (and, for the
timeout, a real loopback listener that accepts connections and never says a word).

Each test syncs once, so there is a directory to keep, then breaks the source and checks the
run's status, its message and that the directory is as it was.
"""

import contextlib
import socket
import threading
import time

import pytest
from ldap.modlist import addModlist
from sqlalchemy import select

from portal.core.db import db
from portal.directory.models import OrgUnit, Person
from sync.models import SyncSource
from sync.sources.ldap import reader
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SAMPLE_OUS,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SUFFIX,
    SlapdServer,
    sample_ldif_fixture,
    slapd_fixture,
)
from tests.sync.ldap_helpers import openldap_source as make_source
from tests.sync.ldap_helpers import sync

REFERRAL = f"ou=Fjernt kontor,{ORG_BASE}"


def change_settings(source, **settings) -> None:
    stored = db.session.get(SyncSource, source.id)
    stored.settings = {**stored.settings, **settings}
    db.session.commit()


def directory() -> tuple:
    """Everything a run could change, to compare before and after."""
    db.session.expire_all()
    persons = db.session.execute(
        select(Person.username, Person.email, Person.unit_id, Person.is_active)
    ).all()
    units = db.session.execute(select(OrgUnit.name, OrgUnit.parent_id, OrgUnit.is_active)).all()
    return sorted(persons), sorted(units, key=repr)


def synced_once(customer, server, **settings):
    source = make_source(customer, server, **settings)
    first = sync(source, full=True)
    assert first.status == "applied", first.error
    before = directory()
    assert before[0], "persons to keep"
    return source, before


# -- (a) the server's size limit -----------------------------------------------------------------


@pytest.fixture
def limited_slapd(sample_ldif, request):
    """slapd with olcLimits for Kursa's bind account (the root DN stays unlimited)."""
    server = SlapdServer(sample_ldif, limits=f'dn.exact="{SERVICE_DN}" {request.param}').start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    "limited_slapd",
    # 700 entries in all for paged searches: slapd hands out the first page of 500, then
    # answers the second with sizeLimitExceeded (4)
    ["size.prtotal=700"],
    indirect=True,
)
def test_a_size_limit_hit_while_paging_fails_the_run_and_changes_nothing(
    app, customer, limited_slapd
):
    source, before = synced_once(customer, limited_slapd, user_bases=[f"ou=Salg,{ORG_BASE}"])
    change_settings(source, user_bases=[ORG_BASE])
    pages = []

    run = sync(source, full=True, on_page=pages.append)

    assert run.status == "failed"
    assert pages == [1, 1], "the OUs' page, then the first page of persons"
    assert "stopped the search at its size limit although Kursa pages" in run.error
    assert run.error.endswith("Nothing was changed.")
    assert directory() == before


@pytest.mark.parametrize(
    "limited_slapd",
    # paged searches refused for the account: slapd answers adminLimitExceeded (11)
    ["size.prtotal=disabled"],
    indirect=True,
)
def test_paging_refused_for_the_bind_account_fails_the_run(app, customer, limited_slapd):
    run = sync(make_source(customer, limited_slapd), full=True)

    assert run.status == "failed"
    assert "stopped the search at its size limit although Kursa pages" in run.error
    assert db.session.scalar(select(Person.id)) is None


# -- (b) a server that never answers ---------------------------------------------------------------


@pytest.fixture
def silent_server():
    """A loopback TCP listener that accepts connections and never answers; its ldap:// URI."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])  # kept open, never read or written

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"ldap://127.0.0.1:{listener.getsockname()[1]}/"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


def test_a_server_that_never_answers_times_out_and_changes_nothing(
    app, customer, slapd, silent_server
):
    source, before = synced_once(customer, slapd)
    change_settings(source, uri=silent_server, timeout=1, network_timeout=1)

    started = time.monotonic()
    run = sync(source, full=True)
    took = time.monotonic() - started

    assert run.status == "failed"
    assert f"The directory server at {silent_server} did not answer within 1 second." in (run.error)
    assert run.error.endswith("Nothing was changed.")
    assert took < 5
    assert directory() == before


# -- (c) referrals: skipped below the base, a failure instead of it --------------------------------


def add_referral(server) -> None:
    """An OU of the tree held by another server (RFC 3296 referral object)."""
    other = "ldap://ldap.fjernt.example/" + REFERRAL.replace(" ", "%20")
    server.admin().add_s(
        REFERRAL,
        addModlist(
            {
                "objectClass": [b"referral", b"extensibleObject"],
                "ou": [b"Fjernt kontor"],
                "ref": [other.encode()],
            }
        ),
    )


def test_a_referral_below_the_base_is_skipped_and_the_rest_is_read(app, customer, slapd):
    source, before = synced_once(customer, slapd)
    add_referral(slapd)

    run = sync(source, full=True)

    # slapd (ManageDsaIT not sent) answers with a search reference, which has no DN
    assert run.status == "applied", run.error
    assert all(n == 0 for entity in run.counts.values() for n in entity.values())
    assert directory() == before


def test_a_base_held_by_another_server_fails_the_run_and_changes_nothing(app, customer, slapd):
    source, before = synced_once(customer, slapd)
    add_referral(slapd)
    inside = f"ou=Afdeling,{REFERRAL}"
    change_settings(source, user_bases=[inside])

    run = sync(source, full=True)

    # slapd answers the search with the result code referral (10)
    assert run.status == "failed"
    assert "returned only part of the result and referred Kursa to another server" in run.error
    assert repr(inside) in run.error and run.error.endswith("Nothing was changed.")
    assert directory() == before


# -- a server that ignores the paging control ------------------------------------------------------


class WithoutPagingControl:
    """A real connection whose answers lose their controls, as from a server that ignores the
    paged-results control (slapd itself honours it or refuses the search)."""

    def __init__(self, conn):
        self.conn = conn

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def result3(self, *args, **kwargs):
        kind, entries, msgid, _ = self.conn.result3(*args, **kwargs)
        return kind, entries, msgid, []


def test_an_answer_without_the_paging_control_fails_the_run(app, customer, slapd, monkeypatch):
    source, before = synced_once(customer, slapd)
    real_connect = reader.connect
    monkeypatch.setattr(reader, "connect", lambda *a: WithoutPagingControl(real_connect(*a)))

    run = sync(source, full=True)

    assert run.status == "failed"
    assert "answered without the paging control (RFC 2696)" in run.error
    assert run.error.endswith("Nothing was changed.")
    assert directory() == before
