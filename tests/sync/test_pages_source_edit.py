"""Editing a directory source on its page: every field, disable/enable, delete, and the
advanced settings (TLS, timeouts, page size, mapping) with errors that name the field."""

import re

import pytest
from markupsafe import escape
from sqlalchemy import func, select

from portal.core.audit import AuditEntry
from portal.core.db import db
from portal.core.errors import FieldRefused
from sync.models import SyncRun, SyncSource
from sync.sources.ldap import operations, vault
from tests.conftest import _csrf_token
from tests.servers.slapd import (  # noqa: F401 - fixtures
    ORG_BASE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    sample_ldif_fixture,
    shared_slapd_fixture,
)
from tests.sync import test_pages_sources as pages

text_of = pages.text_of
acme, unit, person, account_of = pages.acme, pages.unit, pages.person, pages.account_of
login_as, it_admin, make_source = pages.login_as, pages.it_admin, pages.make_source


def form_of(page: str) -> dict:
    """The values a browser would post from the page's form (inputs, selects, textareas)."""
    data = {}
    for tag in re.findall(r"<input [^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag)
        if not name or 'type="submit"' in tag:
            continue
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                data[name.group(1)] = "y"
            continue
        value = re.search(r'value="([^"]*)"', tag)
        data[name.group(1)] = value.group(1) if value else ""
    for name, body in re.findall(r'<select [^>]*name="([^"]+)"[^>]*>(.*?)</select>', page, re.S):
        chosen = re.search(r'<option selected value="([^"]*)"', body) or re.search(
            r'<option value="([^"]*)" selected', body
        )
        data[name] = chosen.group(1) if chosen else ""
    for name, body in re.findall(
        r'<textarea [^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S
    ):
        data[name] = body.strip()
    return data


def edit(client, source, **changes):
    page = text_of(client.get(f"/sync/sources/{source.id}/edit"))
    data = {**form_of(page), **changes}
    return client.post(f"/sync/sources/{source.id}/edit", data=data)


def new_form(client, profile="openldap", **changes):
    page = text_of(client.get(f"/sync/sources/new?profile={profile}"))
    data = {**form_of(page), "name": "hq-ldap", "profile": profile, **changes}
    return client.post("/sync/sources/new", data=data)


def test_the_edit_page_is_filled_from_the_source_and_its_profile(make_source, it_admin):
    source = make_source()

    page = text_of(it_admin.get(f"/sync/sources/{source.id}/edit"))
    data = form_of(page)

    assert data["uri"] == source.settings["uri"] and data["user_bases"] == ORG_BASE
    assert data["attr_anchor"] == "entryUUID" and data["attr_username"] == "uid"
    assert data["page_size"] == "500" and data["timeout"] == "60"
    assert data["password"] == "" and SERVICE_PASSWORD not in page
    assert "skip_certificate_checks" not in data  # checks are on


def test_editing_every_field_keeps_the_password_when_left_blank(
    app, make_source, it_admin, tmp_path, monkeypatch
):
    monkeypatch.setitem(app.config["KURSA"]["sync"], "ca_dir", str(tmp_path))
    source = make_source()
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    before = source.password_encrypted

    response = edit(
        it_admin,
        source,
        user_bases=f"ou=a,{ORG_BASE}\r\nou=b,{ORG_BASE}",
        user_filter="(objectClass=person)",
        org_from="attribute",
        org_base="",
        inactive_filter="(employeeType=gone)",
        ca_file=str(ca),
        starttls="y",
        network_timeout="5",
        timeout="30",
        page_size="200",
        attr_email="otherMail",
        schedule="15 3 * * 1-5",
        password="",
    )

    assert response.status_code == 302, text_of(response)
    db.session.expire_all()
    source = db.session.get(SyncSource, source.id)
    assert source.password_encrypted == before
    assert source.schedule == "15 3 * * 1-5"
    settings = source.settings
    assert settings["user_bases"] == [f"ou=a,{ORG_BASE}", f"ou=b,{ORG_BASE}"]
    assert (settings["org_from"], settings["inactive_filter"]) == (
        "attribute",
        "(employeeType=gone)",
    )
    assert (settings["network_timeout"], settings["timeout"], settings["page_size"]) == (5, 30, 200)
    assert settings["starttls"] is True and settings["ca_file"] == str(ca)
    assert settings["attributes"] == {"email": "otherMail"}  # only what differs from the profile
    assert "verify_certificates" not in settings  # on, as by default
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "sync_source.changed"))


def test_a_new_password_replaces_the_old_and_keeps_incremental_reading(make_source, it_admin):
    source = make_source()
    source.state = {"last_change": "20260101000000Z"}
    db.session.commit()

    response = edit(it_admin, source, password="a-new-secret")

    assert response.status_code == 302
    db.session.expire_all()
    source = db.session.get(SyncSource, source.id)
    assert vault.decrypt(source.password_encrypted) == "a-new-secret"
    assert source.state == {"last_change": "20260101000000Z"}  # the same account reads the same


def test_changing_what_is_read_restarts_incremental_reading(make_source, it_admin):
    source = make_source()
    source.state = {"last_change": "20260101000000Z"}
    db.session.commit()

    response = edit(it_admin, source, user_filter="(employeeType=staff)")

    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(SyncSource, source.id).state == {}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("uri", "http://dc1", "The URI must start with ldap://"),
        ("page_size", "0", "The page size must be a number from 1 to 5000."),
        ("timeout", "99999", "The timeout must be a number from 1 to 3600."),
        ("network_timeout", "x", "Not a valid integer value."),
        ("ca_file", "/nowhere/ca.pem", "The CA file must be a file in this Kursa's folder"),
        ("ca_pem", "-----BEGIN CERTIFICATE-----", "The CA certificate is not a PEM certificate"),
        ("user_bases", "not a dn", "The user base 'not a dn' is not a DN."),
        ("user_filter", "(objectClass=person", "The user filter is not an LDAP filter"),
        ("attr_username", "user name", "The attribute for username is not an LDAP attribute"),
        ("schedule", "every night", "The schedule is a cron expression"),
    ],
)
def test_a_wrong_field_is_named_under_that_field(make_source, it_admin, field, value, message):
    source = make_source()

    response = edit(it_admin, source, **{field: value})

    assert response.status_code == 200
    page = text_of(response)
    input_at = page.index(f'name="{field}"')
    error_at = page.index(str(escape(message)))
    assert input_at < error_at, "the message follows its field"
    assert not re.search(r'name="[a-z_]+"', page[input_at + 10 : error_at]), "...directly"


def test_starttls_on_an_ldaps_uri_is_refused_under_starttls(make_source, it_admin):
    source = make_source()

    response = edit(it_admin, source, uri="ldaps://127.0.0.1:1636", starttls="y")

    page = text_of(response)
    assert page.index('name="starttls"') < page.index("StartTLS is for ldap:// only")


def test_turning_certificate_checks_off_shows_a_warning(make_source, it_admin):
    source = make_source()

    response = edit(it_admin, source, skip_certificate_checks="y")

    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(SyncSource, source.id).settings["verify_certificates"] is False
    listed = text_of(it_admin.get(response.location))
    assert "does not check the server&#39;s certificate" in listed
    page = text_of(it_admin.get(f"/sync/sources/{source.id}/edit"))
    assert "Certificate checks are off" in page


def test_adding_with_advanced_fields_and_the_profile_mapping(acme, it_admin, shared_slapd):
    response = new_form(
        it_admin,
        uri=shared_slapd.uri,
        bind_dn=SERVICE_DN,
        password=SERVICE_PASSWORD,
        user_bases=ORG_BASE,
        org_base=ORG_BASE,
        page_size="100",
        attr_employee_number="employeeID",
    )

    assert response.status_code == 302, text_of(response)
    source = db.session.scalar(select(SyncSource))
    assert source.settings["page_size"] == 100
    assert source.settings["attributes"] == {"employee_number": "employeeID"}
    assert "user_filter" not in source.settings  # empty: the profile's filter
    assert operations.describe(source)["uri"] == shared_slapd.uri
    assert operations.check_source(source).ok


def test_switching_the_profile_does_not_carry_the_other_profiles_mapping(acme, it_admin):
    response = new_form(
        it_admin,
        profile="ad",
        uri="ldap://127.0.0.1:1",
        bind_dn=SERVICE_DN,
        password="x",
        user_bases=ORG_BASE,
        org_base=ORG_BASE,
    )
    assert response.status_code == 302, text_of(response)
    page = text_of(it_admin.get("/sync/sources/new?profile=ad"))
    data = {**form_of(page), "name": "other", "profile": "openldap", "password": "x"}
    data.update(uri="ldap://127.0.0.1:1", bind_dn=SERVICE_DN, user_bases=ORG_BASE)
    data["org_base"] = ORG_BASE

    response = it_admin.post("/sync/sources/new", data=data)

    assert response.status_code == 302, text_of(response)
    other = db.session.scalar(select(SyncSource).where(SyncSource.name == "other"))
    assert "attributes" not in other.settings
    assert operations.describe(other)["profile"] == "openldap"


def test_adding_without_a_password_names_the_password(acme, it_admin):
    response = new_form(
        it_admin, uri="ldap://127.0.0.1:1", bind_dn=SERVICE_DN, user_bases=ORG_BASE, password=""
    )

    page = text_of(response)
    assert response.status_code == 200
    assert page.index('name="password"') < page.index("Give the bind password.")


def post_action(client, url):
    token = _csrf_token(text_of(client.get("/sync/sources")))
    return client.post(url, data={"csrf_token": token})


def test_disable_and_enable(make_source, it_admin):
    source = make_source()
    token = _csrf_token(text_of(it_admin.get("/sync/sources")))

    it_admin.post(f"/sync/sources/{source.id}/enabled", data={"csrf_token": token, "enabled": "0"})

    db.session.expire_all()
    assert db.session.get(SyncSource, source.id).is_enabled is False
    listed = text_of(it_admin.get("/sync/sources"))
    assert '<span class="badge off">disabled</span>' in listed and ">Enable</button>" in listed
    with pytest.raises(operations.Conflict, match="disabled; enable it"):
        operations.sync_source(db.session.get(SyncSource, source.id), actor="test")

    it_admin.post(f"/sync/sources/{source.id}/enabled", data={"csrf_token": token, "enabled": "1"})

    db.session.expire_all()
    assert db.session.get(SyncSource, source.id).is_enabled is True


def test_a_source_that_never_ran_is_deleted(make_source, it_admin):
    source = make_source()

    response = post_action(it_admin, f"/sync/sources/{source.id}/delete")

    assert response.status_code == 302
    assert db.session.scalar(select(func.count(SyncSource.id))) == 0
    assert "Source hq-ldap is deleted." in text_of(it_admin.get(response.location))


def test_a_source_with_runs_is_disabled_and_its_history_kept(make_source, it_admin):
    source = make_source()
    run = operations.sync_source(source, actor="test", dry_run=True)

    response = post_action(it_admin, f"/sync/sources/{source.id}/delete")

    db.session.expire_all()
    kept = db.session.get(SyncSource, source.id)
    assert kept is not None and kept.is_enabled is False
    assert db.session.get(SyncRun, run.id) is not None
    assert "disabled instead of deleted" in text_of(it_admin.get(response.location))


def test_a_disabled_source_with_runs_offers_no_delete(make_source, it_admin):
    """Delete would only disable it again; a disabled source that never ran keeps Delete."""
    ran, never = make_source(), make_source(name="spare-ldap")
    operations.sync_source(ran, actor="test", dry_run=True)
    token = _csrf_token(text_of(it_admin.get("/sync/sources")))
    for source in (ran, never):
        operations.set_enabled(source, False, actor="test")
    db.session.commit()

    listed = text_of(it_admin.get("/sync/sources"))
    stale = it_admin.post(f"/sync/sources/{ran.id}/delete", data={"csrf_token": token})

    assert f'action="/sync/sources/{ran.id}/delete"' not in listed
    assert f'action="/sync/sources/{never.id}/delete"' in listed
    assert "Source hq-ldap has runs, so it stays, disabled, with its run history." in text_of(
        it_admin.get(stale.location)
    )
    assert db.session.get(SyncSource, ran.id) is not None


def test_edit_and_delete_are_404_outside_the_customers_it_admins(make_source, login_as):
    source = make_source()
    hr = login_as("dina", "hr", None)
    token = _csrf_token(text_of(hr.get("/courses/")))

    assert hr.get(f"/sync/sources/{source.id}/edit").status_code == 404
    assert (
        hr.post(f"/sync/sources/{source.id}/delete", data={"csrf_token": token}).status_code == 404
    )
    assert db.session.get(SyncSource, source.id) is not None


def test_member_of_groups_are_one_a_line_and_shown_again(make_source, it_admin):
    source = make_source()
    groups = f"cn=Kursus,ou=Grupper,{ORG_BASE}\r\n\r\n cn=Ledere,ou=Grupper,{ORG_BASE}\r\n"

    response = edit(it_admin, source, member_of=groups)

    assert response.status_code == 302, text_of(response)
    db.session.expire_all()
    assert db.session.get(SyncSource, source.id).settings["member_of"] == [
        f"cn=Kursus,ou=Grupper,{ORG_BASE}",
        f"cn=Ledere,ou=Grupper,{ORG_BASE}",
    ]
    shown = form_of(text_of(it_admin.get(f"/sync/sources/{source.id}/edit")))["member_of"]
    assert shown.splitlines() == [
        f"cn=Kursus,ou=Grupper,{ORG_BASE}",
        f"cn=Ledere,ou=Grupper,{ORG_BASE}",
    ]


def test_a_group_that_is_not_a_dn_is_named_under_the_groups(make_source, it_admin):
    source = make_source()

    response = edit(it_admin, source, member_of="Kursusdeltagere")

    assert response.status_code == 200
    assert "The group &#39;Kursusdeltagere&#39; is not a DN" in text_of(response)


TRIAL_ERRORS = {
    "uri": "The URI must start with ldap://, ldaps:// or ldapi://.",
    "org_base": "An org tree from OUs needs the base DN of the OU tree.",
    "schedule": "The hour field of the schedule is '25': 25 is out of range",
    "page_size": "The page size must be a number from 1 to 5000.",
    "timeout": "The timeout must be a number from 1 to 3600.",
}
TRIAL_VALUES = {
    "uri": "ftp://dc1",
    "org_base": "",
    "schedule": "0 25 * * *",
    "page_size": "0",
    "timeout": "-1",
}


def assert_each_under_its_field(page: str, errors: dict) -> None:
    for field, message in errors.items():
        input_at = page.index(f'name="{field}"')
        error_at = page.index(str(escape(message)), input_at)
        assert not re.search(r'name="[a-z_]+"', page[input_at + 10 : error_at]), field


def test_every_wrong_field_of_the_add_form_is_named_in_one_submit(acme, it_admin):
    response = new_form(
        it_admin, bind_dn=SERVICE_DN, user_bases=ORG_BASE, password="typed-pw", **TRIAL_VALUES
    )

    assert response.status_code == 200
    page = text_of(response)
    assert_each_under_its_field(page, TRIAL_ERRORS)
    assert form_of(page)["password"] == "typed-pw", "the next submit needs no retyping"
    assert "Give the bind password" not in page
    assert db.session.scalar(select(SyncSource.id)) is None


def test_the_kept_password_lets_the_corrected_add_form_through(acme, it_admin):
    first = text_of(
        new_form(it_admin, bind_dn=SERVICE_DN, user_bases=ORG_BASE, password="pw", uri="ftp://x")
    )

    data = {**form_of(first), "uri": "ldap://127.0.0.1:1", "org_base": ORG_BASE}
    response = it_admin.post("/sync/sources/new", data=data)

    assert response.status_code == 302, text_of(response)
    source = db.session.scalar(select(SyncSource))
    assert vault.decrypt(source.password_encrypted) == "pw"


def test_a_field_the_form_refuses_does_not_hide_the_other_errors(acme, it_admin):
    response = new_form(it_admin, bind_dn="", user_bases=ORG_BASE, password="", **TRIAL_VALUES)

    page = text_of(response)
    assert_each_under_its_field(
        page,
        {**TRIAL_ERRORS, "bind_dn": "Give the DN Kursa binds with.", "password": "Give the bind"},
    )
    assert page.count("field-error") == 7


def test_every_wrong_field_of_the_edit_form_is_named_and_no_password_shown(make_source, it_admin):
    source = make_source()

    response = edit(it_admin, source, password="typed-on-edit", **TRIAL_VALUES)

    page = text_of(response)
    assert_each_under_its_field(page, TRIAL_ERRORS)
    assert form_of(page)["password"] == ""
    assert "typed-on-edit" not in page and SERVICE_PASSWORD not in page


def test_the_cli_names_every_wrong_setting_in_its_message(app):
    settings = {"uri": "ftp://dc1", "bind_dn": SERVICE_DN, "user_bases": [ORG_BASE]}
    settings.update(org_from="ou", page_size=0, timeout=-1)

    with pytest.raises(FieldRefused) as caught:
        operations.check_settings("openldap", settings)

    fields = [e.field for e in caught.value.errors]
    assert fields == ["uri", "page_size", "timeout", "org_base"]
    assert str(caught.value) == " ".join(str(e) for e in caught.value.errors)
