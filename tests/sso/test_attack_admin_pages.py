"""Attacks on the IT-admin pages for identity providers (/sso/admin/...) and LDAP sources
(/sync/sources...): other customers' objects, CSRF, metadata URLs (loopback, slow, huge),
DTDs, bad LDAP settings. A failing test is a finding."""

import socket
import threading
import time

import pytest

from portal.core.db import db
from sso.models import IdentityProvider
from sso.operations import add_saml_provider
from sync.sources.ldap.operations import add_ldap_source
from tests.conftest import _csrf_token
from tests.courses import helpers

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as
PAGE = "/sso/admin/acme"


@pytest.fixture
def it_admin(login_as):
    return login_as("finn", "it_admin", None)


def post(client, url: str, data: dict, page: str | None = None):
    token = _csrf_token(client.get(page or url).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token})


def text(answer) -> str:
    return answer.get_data(as_text=True)


@pytest.fixture
def globex(make_customer, idp):
    customer = make_customer("globex", "Globex")
    provider = add_saml_provider(customer, "gcorp", idp.metadata, match="email", actor="t")
    source = add_ldap_source(
        customer,
        "g-ldap",
        profile="openldap",
        settings={
            "uri": "ldap://127.0.0.1:1",
            "bind_dn": "cn=k,dc=g,dc=test",
            "user_bases": ["dc=g,dc=test"],
            "org_from": "ou",
            "org_base": "dc=g,dc=test",
        },
        password="x",
        actor="t",
    )
    db.session.commit()
    return customer, provider, source


def test_another_customers_provider_cannot_be_deleted_or_edited_through_ones_own_slug(
    it_admin, acme, globex
):
    _, provider, _ = globex
    for url in (f"{PAGE}/{provider.id}/delete", f"{PAGE}/{provider.id}/edit"):
        answer = post(it_admin, url, {"is_enabled": ""}, page=PAGE)
        assert answer.status_code == 404, url
    db.session.expire_all()
    assert db.session.get(IdentityProvider, provider.id).is_enabled


def test_delete_without_csrf_is_refused(it_admin, acme, idp):
    provider = add_saml_provider(acme, "corp", idp.metadata, match="email", actor="t")
    db.session.commit()
    answer = it_admin.post(f"{PAGE}/{provider.id}/delete")
    assert answer.status_code == 400
    db.session.expire_all()
    assert db.session.get(IdentityProvider, provider.id) is not None


class Listener:
    """A TCP server on loopback that records connections and answers with `behaviour`."""

    def __init__(self, behaviour):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        self.sent = 0
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.5)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            try:
                conn.recv(65536)
                self.behaviour(self, conn)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener():
    made = []

    def make(behaviour):
        made.append(Listener(behaviour))
        return made[-1]

    yield make
    for one in made:
        one.close()


def _internal_page(server, conn):
    body = b"<secret>internal admin page</secret>"
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def test_metadata_url_on_loopback_is_not_fetched(it_admin, acme, listener, app, monkeypatch):
    """SSRF: a customer's IT admin makes the portal request an internal address."""
    monkeypatch.setitem(app.config["KURSA"]["sso"], "allow_private_addresses", False)
    server = listener(_internal_page)
    answer = post(
        it_admin,
        f"{PAGE}/saml/new",
        {"name": "corp", "match": "email", "metadata_url": f"http://127.0.0.1:{server.port}/"},
    )
    assert answer.status_code == 400
    assert server.hits == 0, "the portal connected to a loopback address for an IT admin"


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x", "http://[::1"]
)
def test_metadata_url_other_schemes_are_refused(it_admin, acme, url):
    answer = post(
        it_admin, f"{PAGE}/saml/new", {"name": "corp", "match": "email", "metadata_url": url}
    )
    assert answer.status_code == 400
    assert "root:" not in text(answer)


def _drip(server, conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(40):
        if server.stop.is_set():
            return
        conn.sendall(b"<")
        time.sleep(1)


def test_slow_metadata_server_does_not_hold_the_request_long(it_admin, acme, listener):
    """One byte a second: requests' timeout=15 is per read, not in total; the worker must
    give up within ~20 s, not after 40 s (or never, with a server that drips forever)."""
    server = listener(_drip)
    started = time.monotonic()
    answer = post(
        it_admin,
        f"{PAGE}/saml/new",
        {"name": "corp", "match": "email", "metadata_url": f"http://localhost:{server.port}/m"},
    )
    elapsed = time.monotonic() - started
    assert answer.status_code == 400
    assert elapsed < 20, f"the page took {elapsed:.0f} s"


def _huge(server, conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 209715200\r\n\r\n")
    chunk = b"<a>" + b" " * 65533
    for _ in range(3200):
        conn.sendall(chunk)
        server.sent += len(chunk)


def test_huge_metadata_document_is_not_read_whole(it_admin, acme, listener):
    """200 MB offered: the 2 MB limit must stop the download, not be checked after it."""
    server = listener(_huge)
    answer = post(
        it_admin,
        f"{PAGE}/saml/new",
        {"name": "corp", "match": "email", "metadata_url": f"http://localhost:{server.port}/m"},
    )
    assert answer.status_code == 400
    assert server.sent < 20 * 1024 * 1024, f"{server.sent // 2**20} MB read into memory"


def _redirect_to_loopback(target):
    def answer(server, conn):
        conn.sendall(
            b"HTTP/1.1 302 Found\r\nLocation: " + target.encode() + b"\r\nContent-Length: 0\r\n\r\n"
        )

    return answer


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&lol3;"/>"""
XXE = """<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&e;"/>"""


@pytest.mark.parametrize("xml", [BOMB, XXE], ids=["bomb", "xxe"])
def test_pasted_metadata_with_dtd_is_refused(it_admin, acme, xml):
    answer = post(
        it_admin, f"{PAGE}/saml/new", {"name": "corp", "match": "email", "metadata_xml": xml}
    )
    assert answer.status_code == 400
    assert "DTD" in text(answer)
    assert "root:" not in text(answer)
