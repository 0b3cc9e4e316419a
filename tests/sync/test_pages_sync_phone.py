"""The directory source pages and the runs page with its chart, at phone width (375 px)."""

import json
import os
from pathlib import Path

from portal.core.db import db
from sso.models import IdentityProvider
from sync.models import RunStatus, SyncRun
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
    db.session.add(  # a large run: the y-axis label 1.2k needs a wider margin than 120
        SyncRun(
            customer_id=customer.id,
            source_kind="ldap",
            source_name="hq-ad",
            started_by="t",
            status=RunStatus.APPLIED,
            counts={"persons": {"created": 1200}},
        )
    )
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
    for width in (375, 1280):
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=800,
            deviceScaleFactor=1,
            mobile=width < 640,
        )
        browser.open(f"{served}/sync/runs")
        text, left = browser.evaluate(AXIS_LABEL)
        assert text == "1.2k" and left >= 0, f"the y-axis label is cut at {width} px: {left}"


# The chart's top y-axis label and where its drawn text begins (in the SVG's units; the
# viewBox starts at 0, so a negative value is cut off).
AXIS_LABEL = """
(() => {
  const label = document.querySelector('.chart text.axis-top');
  return [label.textContent, label.getBBox().x];
})()
"""


# Every table card's cell: no piece of its value may lie in the label column, left of the
# label's right edge (for actions, whose label is a line of its own: above its bottom).
OVERLAPS = """
(() => {
  const found = [];
  for (const td of document.querySelectorAll('table.list:not(.compact) td')) {
    const box = td.getBoundingClientRect(), style = getComputedStyle(td);
    const label = getComputedStyle(td, '::before');
    const top = box.top + parseFloat(style.paddingTop);
    const right = box.left + parseFloat(label.width), bottom = top + parseFloat(label.height);
    const range = document.createRange();
    range.selectNodeContents(td);
    for (const r of range.getClientRects()) {
      const inLabelColumn = r.left < right - 1, aboveLabelEnd = r.top < bottom - 1;
      if (r.width && (td.classList.contains('actions') ? aboveLabelEnd : inLabelColumn)) {
        found.push(td.dataset.label + ': ' + td.innerText.slice(0, 40));
        break;
      }
    }
  }
  return found;
})()
"""
WIDEST = """
Math.max(...[...document.querySelectorAll('main *')].map(e => e.getBoundingClientRect().right))
"""


def test_source_and_provider_cards_keep_values_out_of_the_label_column(
    app, served, browser, customer, admin, import_csv
):
    settings = {
        "uri": LONG_URI,
        "bind_dn": "CN=Kursa Reader,OU=Service Accounts,DC=corporate,DC=example,DC=com",
        "user_bases": ["OU=Employees,DC=corporate,DC=example,DC=com"],
        "org_from": "attribute",
    }
    source = add_ldap_source(
        customer,
        "hq-ad",
        profile="ad",
        settings=settings,
        password="x",
        actor="t",
        delta_schedule="*/15 * * * *",
    )
    db.session.add(
        SyncRun(
            customer_id=customer.id,
            source_kind="ldap",
            source_name=source.name,
            started_by="t",
            status=RunStatus.FAILED,
            error="Could not connect",
        )
    )
    db.session.add(
        IdentityProvider(
            customer_id=customer.id,
            name="corp-entra",
            kind="saml",
            settings={
                "label": "Log in with the Acme staff account",
                "match": "email",
                "email_domains": ["acme.test", "staff.acme.test"],
            },
        )
    )
    db.session.commit()
    log_in(browser, served, admin)

    for path in ("/sync/sources", f"/sso/admin/{customer.slug}"):
        browser.open(served + path)
        assert browser.evaluate("document.title") != "Sorry · Kursa", path
        assert browser.evaluate("document.querySelectorAll('table.list td').length"), path
        assert browser.evaluate("document.documentElement.scrollWidth") <= 375, path
        assert browser.evaluate(WIDEST) <= 375, f"an element of {path} is wider than the screen"
        assert browser.evaluate(OVERLAPS) == [], path
        if os.environ.get("KURSA_SCREENSHOTS"):
            name = path.strip("/").replace("/", "-")
            browser.screenshot(Path(os.environ["KURSA_SCREENSHOTS"]) / f"cards-{name}.png")


def log_in(browser, served, admin) -> None:
    browser.open(f"{served}/login")
    browser.evaluate(
        f"document.querySelector('#username').value = {json.dumps(admin.username)};"
        f"document.querySelector('#password').value = {json.dumps(ADMIN_PASSWORD)};"
        "document.querySelector('form.stack-form').submit();"
    )
    browser.wait_for("location.pathname === '/'")
