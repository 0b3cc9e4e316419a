"""The `flask sso add-saml` and `flask sso list` contract (other tools rely on it), and
`enable`, `disable`, `delete`."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portal.core.db import db
from sso.linking import login_person
from sso.models import IdentityProvider
from tests.servers.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProviderServer
from tests.sso.conftest import BASE_URL, IDP_ENTITY, PERSONS, UNITS, SamlIdp

OTHER_IDP = "https://idp.other.example.test/metadata"

SAML_ROW = {
    "id", "customer", "name", "kind", "enabled", "label", "match", "email_domains",
    "entity_id", "metadata_url", "match_attribute", "require_signed_assertion",
    "allow_idp_initiated", "clock_skew_seconds",
}  # fmt: skip
OIDC_ROW = {
    "id", "customer", "name", "kind", "enabled", "label", "match", "email_domains",
    "discovery_url", "issuer", "client_id", "scopes", "match_claim",
}  # fmt: skip


@pytest.fixture
def flask(app):
    runner = app.test_cli_runner()

    def invoke(*args, env=None):
        return runner.invoke(args=list(args), env=env)

    return invoke


@pytest.fixture(scope="module")
def op(tmp_path_factory):
    server = OidcProviderServer(
        tmp_path_factory.mktemp("oidc-cli"),
        redirect_uri=f"{BASE_URL}/sso/acme/oidc/callback",
        users={},
    ).start()
    yield server
    server.stop()


@pytest.fixture
def metadata_file(tmp_path, idp):
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata)
    return path


@pytest.fixture
def other_metadata_file(tmp_path, key_pairs):
    """A second IdP's metadata (another entity id and key)."""
    path = tmp_path / "other.xml"
    path.write_text(SamlIdp(key_pairs["attacker"], OTHER_IDP).metadata)
    return path


@pytest.fixture
def metadata_server(idp):
    body = idp.metadata.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/samlmetadata+xml")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metadata"
    server.shutdown()


def test_add_saml_from_a_file_then_list_as_json(flask, customer, metadata_file):
    added = flask(
        "sso", "add-saml", "corp", "--customer", "acme", "--metadata-file", str(metadata_file),
        "--match", "email", "--match-attribute", "mail",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = flask("sso", "list", "--json")

    rows = json.loads(listed.output)
    assert rows == [
        {
            "id": rows[0]["id"],
            "customer": "acme",
            "name": "corp",
            "kind": "saml",
            "enabled": True,
            "label": "Log in with corp",
            "entity_id": IDP_ENTITY,
            "metadata_url": "",
            "match": "email",
            "match_attribute": "mail",
            "require_signed_assertion": True,
            "allow_idp_initiated": False,
            "clock_skew_seconds": 120,
            "email_domains": [],
        }
    ]
    assert "corp" in flask("sso", "list").output


def test_a_match_attribute_with_the_nameid_rule_is_refused(flask, customer, metadata_file):
    """nameid reads the NameID: an attribute given with it would be stored and ignored."""
    refused = flask(
        "sso", "add-saml", "corp", "--customer", "acme", "--metadata-file", str(metadata_file),
        "--match", "nameid", "--match-attribute", "uid",
    )  # fmt: skip

    assert refused.exit_code == 1
    assert refused.output.startswith("Error: Match attribute: the nameid rule reads the NameID")
    assert "--match-attribute" in refused.output and "Usage:" not in refused.output
    assert db.session.query(IdentityProvider).count() == 0
    added = flask(
        "sso", "add-saml", "corp", "--customer", "acme", "--metadata-file", str(metadata_file),
        "--match", "nameid",
    )  # fmt: skip
    assert added.exit_code == 0, added.output


def test_the_help_says_what_an_empty_match_attribute_reads(flask):
    shown = " ".join(flask("sso", "add-saml", "--help").output.split())
    assert "default: the rule's usual attributes" in shown
    assert "default: NameID" not in shown


def test_set_domains_lists_them_and_refuses_a_taken_one(flask, make_customer, metadata_file):
    make_customer("acme")
    make_customer("globex")
    for slug in ("acme", "globex"):
        added = flask(
            "sso", "add-saml", "corp", "--customer", slug, "--metadata-file", str(metadata_file),
            "--match", "email",
        )  # fmt: skip
        assert added.exit_code == 0, added.output

    done = flask("sso", "set-domains", "corp", "--customer", "acme", "Acme.example.test", "@a.test")
    assert done.exit_code == 0, done.output
    assert done.output == "acme/corp email domains: acme.example.test, a.test.\n"
    rows = {row["customer"]: row for row in json.loads(flask("sso", "list", "--json").output)}
    assert rows["acme"]["email_domains"] == ["acme.example.test", "a.test"]
    assert "domains=acme.example.test,a.test" in flask("sso", "list").output

    taken = flask("sso", "set-domains", "corp", "--customer", "globex", "a.test")
    assert taken.exit_code == 1
    assert "a.test" in taken.output and "acme" not in taken.output
    bad = flask("sso", "set-domains", "corp", "--customer", "globex", "not a domain!")
    assert bad.exit_code == 1 and "Email domains:" in bad.output
    assert flask("sso", "set-domains", "nope", "--customer", "acme").exit_code == 1

    cleared = flask("sso", "set-domains", "corp", "--customer", "acme")
    assert cleared.output == "acme/corp email domains: none.\n"
    assert flask("sso", "set-domains", "corp", "--customer", "globex", "a.test").exit_code == 0


def test_add_saml_from_a_url_keeps_the_address(flask, customer, metadata_server):
    added = flask(
        "sso", "add-saml", "corp", "--customer", "acme", "--metadata-url", metadata_server,
        "--match", "nameid",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    provider = db.session.query(IdentityProvider).one()
    assert provider.setting("metadata_url") == metadata_server
    assert provider.setting("entity_id") == IDP_ENTITY


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--customer", "nope", "--match", "username"], "No customer"),
        (["--customer", "acme", "--match", "username", "--metadata-url", "x"], "exactly one"),
        (["--customer", "acme", "--match", "cpr"], "Invalid value for '--match'"),
    ],
)
def test_add_saml_refuses_wrong_arguments(flask, customer, metadata_file, args, message):
    answer = flask("sso", "add-saml", "corp", "--metadata-file", str(metadata_file), *args)
    assert answer.exit_code != 0
    assert message in answer.output


def test_add_saml_refuses_a_duplicate_name_and_bad_metadata(flask, customer, metadata_file):
    args = ["--customer", "acme", "--match", "username"]
    assert (
        flask("sso", "add-saml", "corp", "--metadata-file", str(metadata_file), *args).exit_code
        == 0
    )
    again = flask("sso", "add-saml", "corp", "--metadata-file", str(metadata_file), *args)
    assert again.exit_code == 1 and "already" in again.output

    metadata_file.write_text('<!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>')
    bad = flask("sso", "add-saml", "other", "--metadata-file", str(metadata_file), *args)
    assert bad.exit_code == 1 and "DTD" in bad.output


@pytest.mark.parametrize("option", ["--metadata-file", "--metadata-signing-cert"])
def test_a_missing_or_unreadable_file_is_one_sentence_naming_it(
    flask, customer, metadata_file, tmp_path, option
):
    args = ["--customer", "acme", "--match", "email"]
    if option == "--metadata-file":
        what = "metadata file"
    else:
        what = "metadata signing certificate"
        args += ["--metadata-file", str(metadata_file)]

    for path, reason in [
        (tmp_path / "nonexist.xml", "no such file or directory"),
        (tmp_path, "is a directory"),
    ]:
        answer = flask("sso", "add-saml", "corp", *args, option, str(path))

        assert answer.exit_code == 1, answer.output
        assert answer.output == f"Error: The {what} {path} cannot be read: {reason}.\n"
    assert db.session.query(IdentityProvider).count() == 0


def add_oidc(flask, op, *extra, env=None):
    return flask(
        "sso", "add-oidc", "entra", "--customer", "acme", "--discovery", op.discovery_url,
        "--client-id", CLIENT_ID, "--client-secret-env", "KURSA_TEST_SECRET",
        "--match", "email", *extra, env=env or {"KURSA_TEST_SECRET": CLIENT_SECRET},
    )  # fmt: skip


def test_list_json_rows_carry_only_the_fields_of_their_kind(flask, customer, metadata_file, op):
    added = flask(
        "sso", "add-saml", "corp", "--customer", "acme", "--metadata-file", str(metadata_file),
        "--match", "email",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert add_oidc(flask, op, "--label", "Acme Entra").exit_code == 0

    rows = {row["kind"]: row for row in json.loads(flask("sso", "list", "--json").output)}
    assert (rows["saml"]["label"], rows["oidc"]["label"]) == ("Log in with corp", "Acme Entra")

    assert set(rows["saml"]) == SAML_ROW
    assert set(rows["oidc"]) == OIDC_ROW
    assert rows["oidc"]["issuer"] == op.issuer and rows["oidc"]["client_id"] == CLIENT_ID
    assert CLIENT_SECRET not in json.dumps(rows)
    assert f"acme/entra  oidc  {op.issuer}  match=email" in flask("sso", "list").output


def test_add_oidc_takes_scopes_and_refuses_them_without_openid(flask, customer, op):
    refused = add_oidc(flask, op, "--scopes", "email profile")
    assert refused.exit_code == 1
    assert "Scopes: the scopes must include openid." in refused.output
    assert db.session.query(IdentityProvider).count() == 0

    added = add_oidc(flask, op, "--scopes", "openid  email groups")
    assert added.exit_code == 0, added.output
    (row,) = json.loads(flask("sso", "list", "--json").output)
    assert row["scopes"] == "openid email groups"


def test_add_oidc_without_the_secret_answers_like_add_ldap(flask, customer, op):
    unset = add_oidc(flask, op, env={"KURSA_TEST_SECRET": ""})
    ldap = flask(
        "directory", "source", "add-ldap", "hr", "--customer", "acme", "--profile", "openldap",
        "--uri", "ldap://127.0.0.1", "--bind-dn", "cn=kursa", "--password-env",
        "KURSA_TEST_SECRET", "--user-base", "ou=people", env={"KURSA_TEST_SECRET": ""},
    )  # fmt: skip

    assert unset.exit_code == ldap.exit_code == 1
    assert unset.output == (
        "Error: The environment variable KURSA_TEST_SECRET is empty or not set; "
        "put the client secret in it.\n"
    )
    assert "Usage:" not in unset.output
    assert db.session.query(IdentityProvider).count() == 0


def test_enable_disable_and_delete(
    flask, make_customer, import_csv, metadata_file, other_metadata_file
):
    acme = make_customer("acme", "Acme")
    import_csv(acme, UNITS, PERSONS)
    for name, path in (("corp", metadata_file), ("used", other_metadata_file)):
        added = flask(
            "sso", "add-saml", name, "--customer", "acme", "--metadata-file", str(path),
            "--match", "username", "--match-attribute", "uid",
        )  # fmt: skip
        assert added.exit_code == 0, added.output
    assert flask("sso", "set-domains", "used", "--customer", "acme", "acme.test").exit_code == 0
    used = db.session.query(IdentityProvider).filter_by(name="used").one()
    login_person(used, "subject-u1", "u1")
    db.session.commit()

    disabled = flask("sso", "disable", "used", "--customer", "acme")
    assert (disabled.exit_code, disabled.output) == (0, "acme/used is disabled.\n")
    rows = {row["name"]: row for row in json.loads(flask("sso", "list", "--json").output)}
    assert rows["used"]["enabled"] is False and rows["corp"]["enabled"] is True

    refused = flask("sso", "delete", "used", "--customer", "acme")
    assert refused.exit_code == 1
    assert "1 person(s) have logged in through used; disable it instead" in refused.output
    deleted = flask("sso", "delete", "corp", "--customer", "acme")
    assert (deleted.exit_code, deleted.output) == (0, "acme/corp is deleted.\n")

    enabled = flask("sso", "enable", "used", "--customer", "acme")
    assert (enabled.exit_code, enabled.output) == (0, "acme/used is enabled.\n")
    db.session.expire_all()
    assert [p.name for p in db.session.query(IdentityProvider)] == ["used"]
    assert db.session.query(IdentityProvider).one().is_enabled is True

    unknown = flask("sso", "disable", "nope", "--customer", "acme")
    assert (unknown.exit_code, unknown.output) == (
        1,
        "Error: acme has no identity provider named 'nope'.\n",
    )


def test_the_same_idp_twice_in_one_customer_is_refused_naming_the_other(
    flask, make_customer, metadata_file
):
    make_customer("acme")
    make_customer("globex")
    args = ["--metadata-file", str(metadata_file), "--match", "email"]
    assert flask("sso", "add-saml", "corp", "--customer", "acme", *args).exit_code == 0

    twice = flask("sso", "add-saml", "corp2", "--customer", "acme", *args)
    elsewhere = flask("sso", "add-saml", "corp", "--customer", "globex", *args)

    assert twice.exit_code == 1
    assert twice.output == (
        f"Error: The provider corp already uses this identity provider (entity id {IDP_ENTITY});"
        " change corp instead of adding it twice.\n"
    )
    assert elsewhere.exit_code == 0, elsewhere.output  # another customer may use the same IdP
    names = {
        (row["customer"], row["name"]) for row in json.loads(flask("sso", "list", "--json").output)
    }
    assert names == {("acme", "corp"), ("globex", "corp")}
