"""The `flask sso add-saml` and `flask sso list` contract (other tools rely on it)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portal.core.db import db
from sso.models import IdentityProvider
from tests.sso.conftest import IDP_ENTITY


@pytest.fixture
def flask(app):
    runner = app.test_cli_runner()

    def invoke(*args):
        return runner.invoke(args=list(args))

    return invoke


@pytest.fixture
def metadata_file(tmp_path, idp):
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata)
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
