"""The whole login in headless Chromium: Kursa's login page -> the npm saml-idp -> back to the
portal, which shows the person's page; and the login and provider pages at 375 px
(KURSA_SCREENSHOTS=folder keeps a screenshot of each).

The portal runs over HTTP on a loopback port (werkzeug in a thread) so that the browser follows
every redirect and the IdP's self-posting form itself; nothing is played by the test.
"""

import json
import os
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from portal.core.db import db
from portal.directory.models import Person
from sso.domains import set_email_domains
from sso.models import Identity
from sso.operations import add_saml_provider
from tests.conftest import ADMIN_PASSWORD
from tests.portal.test_pages_phone import CHROMIUM, Browser
from tests.servers.saml_idp import SamlIdpServer
from tests.sso.conftest import PERSONS, UNITS

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
USER = {
    "userName": "ida.lund@acme.test",
    "nameIdFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "email": "ida.lund@acme.test",
    "firstName": "Ida",
    "lastName": "Lund",
}


class WalkingBrowser(Browser):
    """Waits through redirects: while a page is replaced, an evaluation may fail; try again."""

    def go(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_until(self, condition: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.evaluate(f"document.readyState === 'complete' && ({condition})"):
                    return
            except AssertionError:  # the page went away under the evaluation
                pass
            assert time.monotonic() < deadline, f"timed out waiting for {condition}: " + str(
                self.evaluate("location.href")
            )
            time.sleep(0.05)


@pytest.fixture
def portal(app, monkeypatch):
    """The app on a free loopback port; SSO addresses are built from that port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setitem(app.config["KURSA"]["web"], "base_url", base)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def saml_idp(portal, tmp_path):
    server = SamlIdpServer(
        tmp_path / "saml-idp",
        acs_url=f"{portal}/sso/acme/saml/acs",
        audience=f"{portal}/sso/acme/saml/metadata",
        user=USER,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path):
    browser = WalkingBrowser(tmp_path)
    yield browser
    browser.close()


@pytest.fixture
def acme(make_customer, import_csv):
    customer = make_customer("acme", "Acme")
    import_csv(customer, UNITS, PERSONS)
    return customer


def test_work_email_leads_through_the_idp_back_to_the_portal(acme, portal, saml_idp, browser):
    provider = add_saml_provider(acme, "corp", saml_idp.metadata(), match="email", actor="test")
    set_email_domains(provider, ["acme.test"], actor="test")
    db.session.commit()
    ida = db.session.scalar(select(Person).where(Person.username == "u1"))

    browser.open(f"{portal}/login?next=/persons/{ida.id}")
    browser.evaluate(
        "document.querySelector('#email').value = 'Ida.Lund@acme.test';"
        "document.querySelector('#work-email-form').submit();"
    )
    browser.wait_until(
        f"location.href.startsWith({json.dumps(saml_idp.url)})"
        " && document.querySelector('form.form-profile') !== null"
    )
    assert browser.evaluate("document.querySelector('#userName').value") == USER["userName"]
    browser.evaluate("document.querySelector('form.form-profile').submit();")
    browser.wait_until(f"location.href === {json.dumps(f'{portal}/persons/{ida.id}')}")

    assert browser.evaluate("document.querySelector('h1').textContent.trim()") == "Ida Lund"
    assert browser.evaluate("document.querySelector('.who').textContent.trim()") == "u1"
    db.session.expire_all()
    assert db.session.scalar(select(Identity.person_id)) == ida.id


def test_login_and_provider_pages_fit_a_phone_screen(acme, portal, browser, admin, idp):
    provider = add_saml_provider(acme, "corp", idp.metadata, match="email", actor="test")
    set_email_domains(provider, ["acme.test", "staff.acme.test"], actor="test")
    db.session.commit()
    pages = [
        "/sso/admin/acme",
        "/sso/admin/acme/saml/new",
        "/sso/admin/acme/oidc/new",
        f"/sso/admin/acme/{provider.id}/edit",
    ]

    browser.open(f"{portal}/login/acme")
    _assert_fits(browser, "/login/acme")
    browser.open(f"{portal}/login")
    _assert_fits(browser, "/login")
    browser.evaluate(
        "document.querySelector('details.admin-login').open = true;"
        f"document.querySelector('#username').value = {json.dumps(admin.username)};"
        f"document.querySelector('#password').value = {json.dumps(ADMIN_PASSWORD)};"
        "document.querySelector('form.stack-form').submit();"
    )
    browser.wait_until("location.pathname === '/'")
    for path in pages:
        browser.open(portal + path)
        _assert_fits(browser, path)


def _assert_fits(browser, path: str) -> None:
    assert browser.evaluate("document.title") != "Sorry · Kursa", path
    width = browser.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"{path} is {width} px wide on a 375 px screen"
    if os.environ.get("KURSA_SCREENSHOTS"):  # to look at by eye, as in test_pages_phone
        name = "sso-" + (path.strip("/").replace("/", "-") or "login")
        browser.screenshot(Path(os.environ["KURSA_SCREENSHOTS"]) / f"{name}.png")
