"""The directory source pages and the runs page with its chart, at phone width (375 px)."""

import json
import os
from pathlib import Path

from portal.core.db import db
from sync.sources.ldap.operations import add_ldap_source
from tests.conftest import ADMIN_PASSWORD
from tests.portal import test_pages_phone as phone

# The browser and the served portal of the portal's phone test; skipped without Chromium.
browser, served, pytestmark = phone.browser, phone.served, phone.pytestmark
PERSONS, UNITS = phone.PERSONS, phone.UNITS

LONG_URI = "ldaps://domain-controller-number-one.corporate.example.com:636"


def test_source_pages_and_the_chart_fit_a_phone_screen(
    app, served, browser, customer, admin, import_csv
):
    for n in range(3):
        import_csv(customer, UNITS, PERSONS[: 10 + n])
    import_csv(customer, [], [])  # a failed run: its band, marker and legend entry
    settings = {
        "uri": LONG_URI,
        "bind_dn": "CN=Kursa Reader,OU=Service Accounts,DC=corporate,DC=example,DC=com",
        "user_bases": ["OU=Employees,DC=corporate,DC=example,DC=com"],
        "org_from": "attribute",
    }
    add_ldap_source(customer, "hq-ad", profile="ad", settings=settings, password="x", actor="t")
    db.session.commit()

    browser.open(f"{served}/login")
    browser.evaluate(
        f"document.querySelector('#username').value = {json.dumps(admin.username)};"
        f"document.querySelector('#password').value = {json.dumps(ADMIN_PASSWORD)};"
        "document.querySelector('form.stack-form').submit();"
    )
    browser.wait_for("location.pathname === '/'")

    for path in ("/sync/runs", "/sync/sources", "/sync/sources/new"):
        browser.open(served + path)
        width = browser.evaluate("document.documentElement.scrollWidth")
        assert browser.evaluate("document.title") != "Sorry · Kursa", path
        assert width <= 375, f"{path} is {width} px wide on a 375 px screen"
        if os.environ.get("KURSA_SCREENSHOTS"):
            name = path.strip("/").replace("/", "-")
            browser.screenshot(Path(os.environ["KURSA_SCREENSHOTS"]) / f"{name}.png")

    browser.open(f"{served}/sync/runs")
    chart_width = browser.evaluate("document.querySelector('.chart svg').clientWidth")
    assert 250 <= chart_width <= 375
