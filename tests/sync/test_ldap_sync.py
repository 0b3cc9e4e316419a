"""The LDAP source against a real OpenLDAP slapd: paging, keys, changes and failures.

Every database test runs on SQLite and PostgreSQL (the `app` fixture). Tests that change the
directory get a fresh slapd of their own (`slapd`); the rest share one (`shared_slapd`).
"""

from datetime import UTC, datetime, timedelta

import ldap
import pytest
from sqlalchemy import func, select

from portal.core.db import db
from portal.directory.cli import export_directory
from portal.directory.models import OrgUnit, Person
from sync.history import chart_runs
from sync.models import SyncSource
from sync.report import run_summary
from sync.sources.ldap import profiles
from sync.sources.ldap.connection import connect, paged_search
from sync.sources.ldap.operations import check_source
from sync.sources.ldap.reader import read_directory
from tests.servers.slapd import (  # noqa: F401 - fixtures
    EMPTY_BASE,
    LOADED_AT,
    ORG_BASE,
    SAMPLE_OUS,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SIZE_LIMIT,
    SUFFIX,
    SlapdServer,
    ou_dn,
    sample_ldif_fixture,
    shared_slapd_fixture,
    slapd_fixture,
    user_dn,
)
from tests.sync.ldap_helpers import openldap_source, sync

SAMPLE_UNITS = len(SAMPLE_OUS)


def make_source(customer, server, **settings):
    """A source whose persons with employeeType=disabled are inactive."""
    settings.setdefault("inactive_filter", "(employeeType=disabled)")
    return openldap_source(customer, server, **settings)


def person(username: str) -> Person:
    return db.session.scalar(select(Person).where(Person.username == username))


def unit(name: str) -> OrgUnit:
    return db.session.scalar(select(OrgUnit).where(OrgUnit.name == name))


def entry_uuid(server, dn: str) -> str:
    conn = server.admin()
    [(_, values)] = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["entryUUID"])
    return values["entryUUID"][0].decode()


def active_persons() -> int:
    return db.session.scalar(select(func.count()).where(Person.is_active.is_(True)))


def zero_counts(run) -> bool:
    return all(n == 0 for entity in run.counts.values() for n in entity.values())


# -- paging --------------------------------------------------------------------------------


def test_unpaged_search_fails_at_the_hard_size_limit_and_paged_search_reads_all(shared_slapd):
    assert SAMPLE_USERS > SIZE_LIMIT
    conn = ldap.initialize(shared_slapd.uri)
    conn.simple_bind_s(SERVICE_DN, SERVICE_PASSWORD)
    with pytest.raises(ldap.SIZELIMIT_EXCEEDED):
        conn.search_s(ORG_BASE, ldap.SCOPE_SUBTREE, "(objectClass=inetOrgPerson)", ["uid"])

    settings = profiles.effective(
        "openldap",
        {"uri": shared_slapd.uri, "bind_dn": SERVICE_DN, "user_bases": [ORG_BASE]},
    )
    pages = []
    paged = connect(settings, SERVICE_PASSWORD)
    found = list(
        paged_search(
            paged, settings, ORG_BASE, "(objectClass=inetOrgPerson)", ["uid"], on_page=pages.append
        )
    )
    assert len(found) == SAMPLE_USERS
    assert len(pages) == 3  # 1,200 users in pages of 500


def test_a_paged_search_stopped_early_leaves_the_connection_usable(shared_slapd):
    settings = profiles.effective(
        "openldap",
        {"uri": shared_slapd.uri, "bind_dn": SERVICE_DN, "user_bases": [ORG_BASE]},
    )
    conn = connect(settings, SERVICE_PASSWORD)
    search = ("(objectClass=inetOrgPerson)", ["uid"])

    first = paged_search(conn, settings, ORG_BASE, *search)
    next(first)  # the second page is asked for by now
    first.close()

    uids = [values["uid"][0] for _, values in paged_search(conn, settings, ORG_BASE, *search)]
    assert len(uids) == len(set(uids)) == SAMPLE_USERS


# -- first sync and no change ----------------------------------------------------------------


def test_first_sync_creates_units_and_persons_keyed_on_entry_uuid(app, customer, shared_slapd):
    source = make_source(customer, shared_slapd)

    run = sync(source)

    assert run.status == "applied", run.error
    assert run.counts["units"]["created"] == SAMPLE_UNITS
    assert run.counts["persons"]["created"] == SAMPLE_USERS
    lon = unit("Løn")
    assert lon.anchor == entry_uuid(shared_slapd, ou_dn("Økonomi/Løn"))
    assert lon.parent.name == "Økonomi"
    assert unit("Smørum").parent.parent.name == "Drift og IT"
    first = person("e00001")
    assert first.anchor == entry_uuid(shared_slapd, user_dn("e00001", "Økonomi/Løn"))
    assert (first.first_name, first.unit.name, first.source) == ("Åse", "Løn", "ldap:hq-ldap")
    exported = export_directory(customer)
    assert len(exported["persons"]) == SAMPLE_USERS
    assert {"username": "e00001", "unit": "Løn", "active": True}.items() <= (
        exported["persons"][0].items()
    )
    assert db.session.get(SyncSource, source.id).state["last_change"].endswith("Z")


def test_second_run_changes_nothing(app, customer, shared_slapd):
    source = make_source(customer, shared_slapd)
    sync(source)

    again = sync(source)
    full = sync(source, full=True)

    assert again.status == full.status == "applied"
    assert zero_counts(again) and zero_counts(full)


def test_dry_run_changes_nothing(app, customer, shared_slapd):
    source = make_source(customer, shared_slapd)

    preview = sync(source, dry_run=True)

    assert preview.status == "dry_run"
    assert preview.counts["persons"]["created"] == SAMPLE_USERS
    assert db.session.scalar(select(func.count()).select_from(Person)) == 0
    assert db.session.get(SyncSource, source.id).state == {}


def test_check_source_counts_without_changing_anything(app, customer, shared_slapd):
    source = make_source(customer, shared_slapd)

    result = check_source(source)

    assert result.ok, result.message
    assert (result.units, result.persons, result.inactive) == (SAMPLE_UNITS, SAMPLE_USERS, 0)
    assert db.session.scalar(select(func.count()).select_from(Person)) == 0


def test_org_tree_from_an_attribute(app, customer, shared_slapd):
    source = make_source(customer, shared_slapd, org_from="attribute", org_base="")

    run = sync(source)

    assert run.status == "applied", run.error
    # only leaf OUs hold persons: eight department numbers
    assert run.counts["units"]["created"] == 8
    lon = db.session.scalar(select(OrgUnit).where(OrgUnit.number == "D01"))
    assert (lon.name, lon.parent_id) == ("Løn", customer.root_unit_id)
    assert person("e00001").unit.number == "D01"


def test_password_is_stored_encrypted(app, customer, shared_slapd):
    source = make_source(customer, shared_slapd)

    stored = db.session.get(SyncSource, source.id).password_encrypted

    assert SERVICE_PASSWORD not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token


# -- changes in the directory --------------------------------------------------------------


def test_renamed_ou_is_an_update_and_its_persons_stay(app, customer, slapd):
    source = make_source(customer, slapd)
    sync(source)
    before = unit("Løn")
    unit_id, members = before.id, {p.id for p in db.session.scalars(select(Person))}

    slapd.admin().rename_s(ou_dn("Økonomi/Løn"), "ou=Lønninger")
    run = sync(source)

    assert run.status == "applied", run.error
    assert run.counts["units"] == {"created": 0, "updated": 1, "moved": 0, "inactivated": 0}
    assert run.counts["persons"]["moved"] == 0
    renamed = unit("Lønninger")
    assert renamed.id == unit_id and renamed.number == "Lønninger"
    assert person("e00001").unit_id == unit_id
    assert {p.id for p in db.session.scalars(select(Person))} == members


def test_moved_user_is_a_move(app, customer, slapd):
    source = make_source(customer, slapd)
    sync(source)
    person_id = person("e00001").id

    slapd.admin().rename_s(
        user_dn("e00001", "Økonomi/Løn"), "uid=e00001", newsuperior=ou_dn("Salg/Nord")
    )
    run = sync(source)

    assert run.status == "applied", run.error
    assert run.counts["persons"]["moved"] == 1
    assert run.counts["persons"]["created"] == 0
    moved = person("e00001")
    assert (moved.id, moved.unit.name) == (person_id, "Nord")


def test_renamed_uid_updates_the_username_of_the_same_person(app, customer, slapd):
    source = make_source(customer, slapd)
    sync(source)
    person_id = person("e00002").id

    slapd.admin().rename_s(user_dn("e00002", "Økonomi/Løn"), "uid=x90002", delold=1)
    run = sync(source)

    assert run.status == "applied", run.error
    assert run.counts["persons"] == {
        "created": 0,
        "updated": 1,
        "moved": 0,
        "inactivated": 0,
        "reactivated": 0,
    }
    assert person("x90002").id == person_id
    assert person("e00002") is None


def test_user_matching_the_inactive_filter_is_inactivated(app, customer, slapd):
    source = make_source(customer, slapd)
    sync(source)

    slapd.admin().modify_s(
        user_dn("e00003", "Økonomi/Løn"), [(ldap.MOD_ADD, "employeeType", [b"disabled"])]
    )
    run = sync(source)

    assert run.status == "applied", run.error
    assert run.counts["persons"]["inactivated"] == 1
    assert person("e00003").is_active is False


def test_incremental_preview_reports_a_newly_disabled_user_as_inactivated(app, customer, slapd):
    source = make_source(customer, slapd)
    sync(source)

    slapd.admin().modify_s(
        user_dn("e00003", "Økonomi/Løn"), [(ldap.MOD_ADD, "employeeType", [b"disabled"])]
    )
    preview = sync(source, dry_run=True)

    assert preview.status == "dry_run", preview.error
    assert preview.is_full is False
    assert preview.counts["persons"]["inactivated"] == 1
    messages = [i["message"] for i in run_summary(preview)["issues"]]
    [notice] = [m for m in messages if m.startswith("Incremental run")]
    assert "nobody was inactivated." not in notice.lower()
    assert "marks disabled is inactivated by any run" in notice
    assert person("e00003").is_active is True  # a preview changes nothing


def test_deleted_user_is_inactivated_by_a_full_run_only(app, customer, slapd):
    source = make_source(customer, slapd)
    sync(source)

    slapd.admin().delete_s(user_dn("e00004", "Økonomi/Løn"))
    incremental = sync(source)
    full = sync(source, full=True)

    assert incremental.status == "applied", incremental.error
    assert incremental.counts["persons"]["inactivated"] == 0
    assert full.status == "applied", full.error
    assert full.counts["persons"]["inactivated"] == 1
    assert person("e00004").is_active is False
    assert active_persons() == SAMPLE_USERS - 1


# -- failures: the run fails and nothing changes ---------------------------------------------


def test_server_killed_mid_run_fails_and_changes_nothing(app, customer, slapd):
    source = make_source(customer, slapd, page_size=100)
    sync(source)
    slapd.admin().rename_s(user_dn("e00005", "Økonomi/Løn"), "uid=x90005", delold=1)

    def kill_after_second_page(pages: int) -> None:
        if pages == 2:
            slapd.kill()

    run = sync(source, full=True, on_page=kill_after_second_page)

    assert run.status == "failed"
    assert "could not be reached or closed the connection" in run.error
    assert "Nothing was changed" in run.error
    assert person("e00005") is not None and person("x90005") is None
    assert active_persons() == SAMPLE_USERS


def test_unreachable_server_fails(app, customer, shared_slapd):
    source = make_source(customer, shared_slapd, uri="ldap://127.0.0.1:9/")

    run = sync(source)

    assert run.status == "failed"
    assert "ldap://127.0.0.1:9/ could not be reached" in run.error


def test_wrong_password_fails_with_a_plain_message(app, customer, shared_slapd):
    source = make_source(customer, shared_slapd, password="not-the-password")

    run = sync(source)

    assert run.status == "failed"
    assert "refused the bind DN and password (invalid credentials)" in run.error
    assert "not-the-password" not in run.error


def test_missing_base_dn_fails(app, customer, shared_slapd):
    missing = f"ou=Findes ikke,{SUFFIX}"
    source = make_source(customer, shared_slapd, user_bases=[missing], org_base=ORG_BASE)

    run = sync(source)

    assert run.status == "failed"
    assert f"The base DN '{missing}' does not exist" in run.error


def test_empty_result_fails_and_inactivates_nobody(app, customer, shared_slapd):
    source = make_source(customer, shared_slapd)
    sync(source)
    stored = db.session.get(SyncSource, source.id)
    stored.settings = {**stored.settings, "user_bases": [EMPTY_BASE]}
    db.session.commit()

    run = sync(source, full=True)

    assert run.status == "failed"
    assert "returned no persons" in run.error
    assert active_persons() == SAMPLE_USERS


def test_incremental_read_sees_only_changed_entries(app, customer, slapd):
    source = make_source(customer, slapd)
    sync(source)
    assert db.session.get(SyncSource, source.id).state["last_change"] == LOADED_AT.decode()

    slapd.admin().modify_s(
        user_dn("e00006", "Økonomi/Løn"), [(ldap.MOD_REPLACE, "mail", [b"ny@example.dk"])]
    )
    stored = db.session.get(SyncSource, source.id)
    reading = read_directory(
        profiles.effective("openldap", stored.settings),
        SERVICE_PASSWORD,
        source_name=stored.name,
        # as if the last run had been after the load: every loaded entry is older
        state={"last_change": "20260101000000Z"},
        full=False,
    )
    # the last run saw a change five minutes after this one (a run paging past it meanwhile)
    later = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y%m%d%H%M%SZ")
    overlapping = read_directory(
        profiles.effective("openldap", stored.settings),
        SERVICE_PASSWORD,
        source_name=stored.name,
        state={"last_change": later},
        full=False,
    )
    run = sync(source)

    assert reading.incremental
    assert [p.username for p in reading.data.persons] == ["e00006"]
    assert [p.username for p in overlapping.data.persons] == ["e00006"]
    assert len(reading.data.units) == SAMPLE_UNITS  # OUs are always read whole
    assert not reading.data.persons_complete and not reading.data.units_complete
    assert run.counts["persons"]["updated"] == 1
    assert person("e00006").email == "ny@example.dk"
    assert db.session.get(SyncSource, source.id).state["last_change"] > LOADED_AT.decode()


# -- TLS: certificate checks are on by default -------------------------------------------------


@pytest.fixture(scope="module")
def tls_slapd(sample_ldif):
    server = SlapdServer(sample_ldif, tls=True).start()
    yield server
    server.stop()


def tls_settings(server, **extra) -> dict:
    return profiles.effective(
        "openldap",
        {
            "uri": server.uri,
            "bind_dn": SERVICE_DN,
            "user_bases": [ORG_BASE],
            "org_base": ORG_BASE,
            "starttls": True,
            **extra,
        },
    )


def test_starttls_with_the_ca_file_reads_the_directory(tls_slapd):
    settings = tls_settings(tls_slapd, ca_file=tls_slapd.ca_file)

    reading = read_directory(settings, SERVICE_PASSWORD, source_name="tls")

    assert not reading.data.fatal, reading.data.issues
    assert len(reading.data.persons) == SAMPLE_USERS


def test_starttls_to_an_unknown_certificate_fails_by_default(tls_slapd):
    reading = read_directory(tls_settings(tls_slapd), SERVICE_PASSWORD, source_name="tls")

    assert reading.data.fatal
    message = reading.data.issues[0].message
    assert "No secure connection" in message and "certificate could not be verified" in message
    assert "unknown error code" not in message


def add_user(server, dn: str, uid: str) -> None:
    server.admin().add_s(
        dn,
        [
            ("objectClass", [b"inetOrgPerson"]),
            ("uid", [uid.encode()]),
            ("cn", ["Åse Ås".encode()]),
            ("givenName", ["Åse".encode()]),
            ("sn", ["Ås".encode()]),
        ],
    )


def test_person_right_below_the_org_base_is_placed_in_the_root_unit(app, customer, slapd):
    """The org base is the customer, so it is the nearest "OU" above such a person: no issue,
    no error in the chart, and `source test` counts them as read."""
    add_user(slapd, f"uid=e77777,{ORG_BASE}", "e77777")
    source = make_source(customer, slapd)

    check = check_source(source)
    run = sync(source)
    again = sync(source, full=True)

    assert check.ok and check.persons == SAMPLE_USERS + 1, check.message
    assert "would be skipped" not in check.message
    assert run.status == again.status == "applied", run.error
    assert run.counts["persons"]["created"] == SAMPLE_USERS + 1
    assert person("e77777").unit_id == customer.root_unit_id
    assert run_summary(run)["issues"] == []
    assert zero_counts(again) and run_summary(again)["issues"] == []
    [point] = [p for p in chart_runs(customer.id) if p.id == run.id]
    assert point.errors == 0


def test_person_outside_the_org_base_is_one_error_naming_the_org_base(
    app, customer, slapd, admin_client
):
    outside = f"uid=e77777,{SUFFIX}"
    add_user(slapd, outside, "e77777")
    source = make_source(customer, slapd, user_bases=[SUFFIX])

    check = check_source(source)
    run = sync(source)

    assert check.ok and check.persons == SAMPLE_USERS + 1, check.message
    assert f"1 of the persons lies in no OU below the org base {ORG_BASE!r}" in check.message
    assert run.status == "applied", run.error
    assert run.counts["persons"]["created"] == SAMPLE_USERS
    assert person("e77777") is None
    [issue] = run_summary(run)["issues"]
    assert (issue["file"], issue["row"], issue["column"], issue["value"]) == (
        outside, None, "dn", ""
    )  # fmt: skip
    assert issue["message"].startswith(f"The entry lies in no OU below the org base {ORG_BASE!r}")
    [point] = [p for p in chart_runs(customer.id) if p.id == run.id]
    assert point.errors == 1
    page = admin_client.get(f"/sync/runs/{run.id}").get_data(as_text=True)
    assert "<th>Entry (DN)</th><th>Attribute</th><th>Value</th>" in page
    assert "<th>Row</th>" not in page and "<th>Column</th>" not in page
    assert "Entries listed as errors were skipped" in page
    assert f'<td data-label="Entry (DN)">{outside}</td>' in page


def test_person_without_the_unit_attribute_is_named_by_that_attribute(app, customer, slapd):
    dn = user_dn("e00003", "Økonomi/Løn")
    slapd.admin().modify_s(dn, [(ldap.MOD_DELETE, "departmentNumber", None)])
    source = make_source(customer, slapd, org_from="attribute", org_base="")

    preview = sync(source, dry_run=True)

    assert preview.counts["persons"]["created"] == SAMPLE_USERS - 1
    [issue] = run_summary(preview)["issues"]
    assert (issue["file"], issue["column"], issue["value"]) == (dn, "departmentNumber", "")
    assert issue["message"].startswith(
        "The entry has no departmentNumber, which this source takes a person's unit from"
    )
    assert "division" not in str(issue) and "unit is empty" not in issue["message"]


def test_a_unit_attribute_no_entry_carries_is_named_once(app, customer, shared_slapd):
    source = make_source(
        customer, shared_slapd, org_from="attribute", org_base="",
        attributes={"unit_number": "roomNumber"},
    )  # fmt: skip

    check = check_source(source)
    preview = sync(source, dry_run=True)

    assert "No entry came back with the attribute 'roomNumber'" in check.message
    assert f"{SAMPLE_USERS} of the persons have no roomNumber" in check.message
    assert preview.status == "dry_run"
    assert preview.counts["persons"]["created"] == 0
    issues = run_summary(preview)["issues"]
    named = [i for i in issues if i["file"] is None]
    assert [(i["column"], i["value"]) for i in named] == [("roomNumber", None)]
    assert named[0]["message"].startswith("No entry came back with the attribute 'roomNumber'")
    assert all(i["column"] == "roomNumber" for i in issues)
