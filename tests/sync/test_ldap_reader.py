"""The LDAP reader's DN handling: each person lands in the OU that encloses it, whatever the
escapes, case and spacing of the DNs, also where the fast parent-DN lookup must step aside."""

import ldap.dn
import pytest

from sync.sources.ldap import profiles
from sync.sources.ldap.dns import dn_key, parent_dn
from sync.sources.ldap.reader import read_directory
from tests.servers.slapd import ORG_BASE, SERVICE_DN, SERVICE_PASSWORD, SlapdServer, to_ldif

# -- parent_dn: a plain split only where it is exact -----------------------------------------


@pytest.mark.parametrize(
    ("dn", "parent"),
    [
        ("uid=e1,ou=Løn,ou=Økonomi,dc=example,dc=dk", "ou=Løn,ou=Økonomi,dc=example,dc=dk"),
        ("cn=Åse+uid=e1,ou=Løn,dc=dk", "ou=Løn,dc=dk"),  # multi-valued RDN
        ("uid=e1,ou=Drift\\, Nord,dc=dk", "ou=Drift\\, Nord,dc=dk"),  # escapes above are kept
        ("uid=e1, ou=Løn,dc=dk", " ou=Løn,dc=dk"),  # as spelled: the key comes from the DN
        ("cn=Hansen\\, Åse,ou=Løn,dc=dk", None),  # escaped comma in the RDN itself
        ("cn=Hansen\\2C Åse,ou=Løn,dc=dk", None),  # hex-escaped comma
        ("cn=Åse\\,ou=Nord,ou=Drift,dc=dk", None),  # not in ou=Nord: in ou=Drift
        ('cn="Hansen, Åse",ou=Løn,dc=dk', None),  # quoted value (old syntax)
        ("cn=Åse;ou=Løn,dc=dk", None),  # old ';' separator
        ("dc=dk", None),  # no parent
    ],
)
def test_parent_dn_splits_only_where_the_first_comma_ends_the_rdn(dn, parent):
    assert parent_dn(dn) == parent


@pytest.mark.parametrize(
    "dn",
    [
        "uid=e1,ou=Løn,ou=Økonomi,dc=example,dc=dk",
        "cn=Åse+uid=e1,ou=Løn,dc=dk",
        "uid=e1,ou=Drift\\, Nord,dc=dk",
        "uid=e1 , OU=Løn , dc=DK",
        "uid=e1,ou=Drift\\2C Nord,dc=dk",
    ],
)
def test_the_parent_found_by_splitting_has_the_key_of_the_parsed_dn(dn):
    assert dn_key(parent_dn(dn)) == dn_key(dn)[1:]


def test_dn_key_ignores_case_spacing_and_the_form_of_an_escape():
    assert dn_key("OU=Drift\\, Nord , dc=DK") == dn_key("ou=drift\\2c nord,DC=dk")
    assert dn_key("ou=Drift\\, Nord,dc=dk") != dn_key("ou=Drift,ou=Nord,dc=dk")


# -- on slapd: persons under OUs whose names hold commas, plus signs and æøå ------------------

OUS = ("Drift, Nord", "Drift", "Drift/Nord", "Salg+Service", "Salg+Service/Løn, Æblerød")


def ou(path: str) -> str:
    rdns = [[("ou", part, 1)] for part in reversed(path.split("/"))]
    return ldap.dn.dn2str(rdns) + "," + ORG_BASE


def person(rdn: str, path: str, uid: str) -> tuple[str, dict]:
    values = {
        "objectClass": [b"inetOrgPerson"],
        "uid": [uid.encode()],
        "cn": [f"Åse {uid}".encode()],
        "givenName": ["Åse".encode()],
        "sn": [f"Ås {uid}".encode()],
    }
    return f"{rdn},{ou(path)}", values


# uid -> the OU path it sits in; the RDNs vary so that both ways through the reader are taken.
PLACED = {
    "p1": ("uid=p1", "Drift, Nord"),
    "p2": ("cn=Hansen\\, Åse p2", "Drift, Nord"),
    "p3": ("uid=p3", "Drift/Nord"),
    "p4": ("cn=Hansen\\, Åse p4", "Drift/Nord"),
    "p5": ("cn=Åse p5+uid=p5", "Salg+Service"),
    "p6": ("uid=p6", "Salg+Service/Løn, Æblerød"),
    "p7": ("cn=Møller\\2C Jens p7", "Salg+Service/Løn, Æblerød"),
    "p8": ("uid=p8", "Drift"),
    # slapd answers `cn=Åse p9\2Cou\3DNord,ou=Drift,...`; written `\,` (as AD writes
    # escapes), a split at the first comma would put it where p3 sits (see the case above).
    "p9": ("cn=Åse p9\\,ou=Nord", "Drift"),
}


@pytest.fixture(scope="module", name="escaped_slapd")
def escaped_slapd_fixture():
    entries = [
        (
            ORG_BASE,
            {"objectClass": [b"organizationalUnit"], "ou": ["Organisation på Ærø".encode()]},
        )
    ]
    for path in OUS:
        name = path.split("/")[-1]
        entries.append((ou(path), {"objectClass": [b"organizationalUnit"], "ou": [name.encode()]}))
    entries += [person(rdn, path, uid) for uid, (rdn, path) in PLACED.items()]
    server = SlapdServer(to_ldif(entries)).start()
    yield server
    server.stop()


def test_each_person_is_placed_in_its_own_ou_whatever_the_escapes(escaped_slapd):
    settings = profiles.effective(
        "openldap",
        {
            "uri": escaped_slapd.uri,
            "bind_dn": SERVICE_DN,
            "user_bases": [ORG_BASE],
            "org_from": "ou",
            "org_base": ORG_BASE,
        },
    )

    data = read_directory(settings, SERVICE_PASSWORD, source_name="escaped").data

    assert not data.fatal, data.issues
    by_key = {u.key: u for u in data.units}

    def path_of(key: str) -> str:
        names = []
        while key is not None:
            names.append(by_key[key].name)
            key = by_key[key].parent_key
        return "/".join(reversed(names))

    placed = {p.username: path_of(p.unit_ref) for p in data.persons}
    assert placed == {uid: path for uid, (_, path) in PLACED.items()}
