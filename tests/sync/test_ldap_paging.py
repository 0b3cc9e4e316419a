"""Reading a directory fast without changing what is read: pages asked for ahead and the
reader's inline loop for persons, against a real OpenLDAP slapd."""

import pytest

from sync.sources.ldap import profiles
from sync.sources.ldap.connection import DirectoryError, close, connect, paged_search
from sync.sources.ldap.reader import _Reader, read_directory
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SAMPLE_USERS,
    SERVICE_DN,
    SERVICE_PASSWORD,
    sample_ldif_fixture,
    shared_slapd_fixture,
    slapd_fixture,
)

SEARCH = ("(objectClass=inetOrgPerson)", ["uid"])


def settings_for(server, **extra) -> dict:
    given = {"uri": server.uri, "bind_dn": SERVICE_DN, "user_bases": [ORG_BASE], **extra}
    return profiles.effective("openldap", given)


def test_a_server_lost_mid_read_is_a_directory_error_in_the_caller(slapd):
    settings = settings_for(slapd, page_size=10)
    conn = connect(settings, SERVICE_PASSWORD)
    entries = paged_search(conn, settings, ORG_BASE, *SEARCH)
    read = [next(entries)]
    slapd.kill()

    with pytest.raises(DirectoryError, match="could not be reached or closed the connection"):
        read.extend(entries)

    assert len(read) < SAMPLE_USERS


def test_the_inline_person_loop_builds_what_the_general_path_builds(shared_slapd):
    settings = settings_for(shared_slapd, org_from="ou", org_base=ORG_BASE)
    fast = read_directory(settings, SERVICE_PASSWORD, source_name="t")
    assert len(fast.data.persons) == SAMPLE_USERS

    conn = connect(settings, SERVICE_PASSWORD)
    try:
        reader = _Reader(conn, settings, "t", {}, True, None)
        _, reader.ou_of_dn = reader._read_units()
        a = settings["attributes"]
        wanted = [a["anchor"], *reader.person_fields, *reader._change_attributes()]
        general = []
        for dn, values in paged_search(conn, settings, ORG_BASE, settings["user_filter"], wanted):
            anchor = reader._anchor(values)
            reader._track(values)
            general.append(reader._person(dn, anchor, values, set()))
    finally:
        close(conn)

    assert fast.data.persons == general
    assert fast.state == reader.new_state
