"""A small directory per test, on its own slapd, for the attacks with odd directory data
(test_attack_ldap_data.py and test_attack_ldap_tree.py): entries, the fixture that serves
them, and what a run must show."""

import ldap
import ldap.dn
import pytest
from sqlalchemy.orm.attributes import flag_modified

from portal.core.db import db
from sync.models import RunStatus, SyncSource
from tests.servers.slapd import ORG_BASE, SlapdServer, to_ldif
from tests.sync.attack_helpers import issues_of, people
from tests.sync.ldap_helpers import openldap_source, sync

# -- a small directory per test --------------------------------------------------------------


def ou_dn(path: str, base: str = ORG_BASE) -> str:
    """'Salg/Nord' -> 'ou=Nord,ou=Salg,<base>', escaped as a DN requires."""
    rdns = [[("ou", part, 1)] for part in reversed(path.split("/"))]
    return ldap.dn.dn2str(rdns) + "," + base


def ou(path: str, base: str = ORG_BASE, **extra) -> tuple[str, dict]:
    values = {"objectClass": [b"organizationalUnit"], "ou": [path.split("/")[-1].encode()]}
    return ou_dn(path, base), values | _encoded(extra)


def person(uid: str | None, path: str, /, base: str = ORG_BASE, **attrs) -> tuple[str, dict]:
    """An inetOrgPerson in the OU at `path` ('' for `base` itself); `attrs` override the values
    (a list for several values, None to leave one out)."""
    rdn = f"cn={ldap.dn.escape_dn_chars(attrs.pop('cn', uid or 'x'))}"
    values = {
        "objectClass": ["inetOrgPerson"],
        "cn": [uid or "x"],
        "uid": [uid] if uid else None,
        "givenName": ["Åse"],
        "sn": ["Ås"],
        "mail": [f"{uid}@example.dk"] if uid else None,
    }
    values.update({k: v if v is None or isinstance(v, list) else [v] for k, v in attrs.items()})
    parent = ou_dn(path, base) if path else base
    return f"{rdn},{parent}", _encoded({k: v for k, v in values.items() if v is not None})


def _encoded(values: dict) -> dict:
    return {
        k: [
            v if isinstance(v, bytes) else str(v).encode()
            for v in (vs if isinstance(vs, list) else [vs])
        ]
        for k, vs in values.items()
    }


BASE = (ORG_BASE, {"objectClass": [b"organizationalUnit"], "ou": ["Organisation på Ærø".encode()]})


@pytest.fixture(name="directory")
def directory_fixture():
    """directory(*entries) -> a started slapd holding the org base and the entries."""
    servers = []

    def start(*entries) -> SlapdServer:
        server = SlapdServer(to_ldif([BASE, *entries])).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def point(source, server) -> None:
    """Let `source` read `server` from now on (as a directory restored elsewhere would)."""
    source = db.session.get(SyncSource, source.id)
    source.settings = {**source.settings, "uri": server.uri}
    flag_modified(source, "settings")
    db.session.commit()


def errors(run) -> list:
    return [i for i in issues_of(run.id) if i.severity == "error"]


def applied(run) -> None:
    assert run.status == RunStatus.APPLIED.value, (
        run.error,
        [i.message for i in issues_of(run.id)],
    )


def same_dn(one: str | None, other: str) -> bool:
    try:
        return bool(one) and ldap.dn.str2dn(one.lower()) == ldap.dn.str2dn(other.lower())
    except ldap.DECODING_ERROR:
        return False


def one_issue(run, dn: str):
    found = [i for i in errors(run) if same_dn(i.file, dn)]
    assert len(found) == 1, [(i.file, i.column, i.value, i.message) for i in errors(run)]
    return found[0]


# Fixed entryUUIDs, so that a second server holding them is the same directory restored.
STAFF = ou("Stab", entryUUID="0b9f0c7e-1111-4c1a-9d7e-00000000000a")
OK = person("ok1", "Stab", entryUUID="0b9f0c7e-1111-4c1a-9d7e-00000000000b")


def skipped_beside_ok1(customer, directory, entry, **settings):
    """Sync STAFF, OK and `entry` fully: the run applies, only ok1 is stored, and the one
    error naming `entry` is returned."""
    source = openldap_source(customer, directory(STAFF, OK, entry), **settings)
    run = sync(source, full=True)
    applied(run)
    assert set(people(customer)) == {"ok1"}
    return one_issue(run, entry[0])
