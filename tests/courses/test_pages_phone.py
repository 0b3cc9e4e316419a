"""The course pages in headless Chromium at 375 px: nothing is wider than the screen."""

import json
import os
from pathlib import Path

from werkzeug.security import generate_password_hash

from portal.core.db import db
from portal.courses.operations import create_template, sign_up
from tests.portal import test_pages_phone as phone

pytestmark = phone.pytestmark
served, browser = phone.served, phone.browser
PASSWORD = "a long test password"


def test_course_pages_fit_a_phone_screen(
    app, served, browser, account_of, make_activity, person, unit
):
    # Hanne is course admin of the whole customer and, as a person of Sales, also an employee.
    account_of("hanne", "hr", None)  # HR too: the roles page
    account = account_of("hanne", "course_admin", None)
    account.password_hash = generate_password_hash(PASSWORD)  # staff use SSO; a test login
    long_title = "Occupational Health and Safety Representative Refresher Course, Module 2"
    activity = make_activity("10", title=long_title, capacity=1, location="Building 7, Room 12")
    sign_up(activity.id, person("anna"), actor="test")
    waiting = sign_up(activity.id, person("hanne"), actor="test")
    template = create_template(unit("10"), long_title, actor="test", duration_minutes=90)
    db.session.commit()

    browser.open(f"{served}/login")
    browser.evaluate(
        f"document.querySelector('#username').value = {json.dumps(account.username)};"
        f"document.querySelector('#password').value = {json.dumps(PASSWORD)};"
        "document.querySelector('form.stack-form').submit();"
    )
    browser.wait_for("location.pathname === '/'")

    for path in (
        "/courses/",
        f"/courses/activities/{activity.id}",
        "/courses/mine",
        "/courses/manage",
        "/courses/manage/new",
        f"/courses/manage/new?template={template.id}",
        f"/courses/manage/activities/{activity.id}/edit",
        f"/courses/signups/{waiting.id}",
        "/courses/calendar",
        "/roles/",
        "/courses/manage/categories",
        "/courses/manage/templates",
    ):
        browser.open(served + path)
        width = browser.evaluate("document.documentElement.scrollWidth")
        assert browser.evaluate("document.title") != "Sorry · Kursa", path
        assert width <= 375, f"{path} is {width} px wide on a 375 px screen"
        if os.environ.get("KURSA_SCREENSHOTS"):
            name = "courses-" + (path.strip("/").replace("/", "-") or "catalogue")
            browser.screenshot(Path(os.environ["KURSA_SCREENSHOTS"]) / f"{name}.png")
