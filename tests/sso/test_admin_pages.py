"""The identity provider pages: IT admins at the customer's root (and platform admins) list,
add (SAML by paste, upload or URL; OIDC by discovery), edit and delete; everyone else gets 404."""

import html
import io
import logging
import re
import threading

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from portal.core.audit import AuditEntry
from portal.core.db import db
from sso import oidc, vault
from sso.domains import set_email_domains
from sso.linking import login_person
from sso.models import IdentityProvider
from sso.operations import add_saml_provider
from tests.conftest import _csrf_token
from tests.courses import helpers
from tests.servers.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProviderServer
from tests.servers.process import free_port
from tests.sso.conftest import as_another_idp
from tests.sso.providers import add_oidc_for

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as
PAGE = "/sso/admin/acme"


@pytest.fixture
def it_admin(login_as):
    return login_as("finn", "it_admin", None)


@pytest.fixture
def corp(acme, idp):
    provider = add_saml_provider(acme, "corp", idp.metadata, match="email", actor="test")
    db.session.commit()
    return provider


@pytest.fixture(scope="module")
def op(tmp_path_factory):
    callback = "https://kursa.test/sso/acme/oidc/callback"
    server = OidcProviderServer(
        tmp_path_factory.mktemp("oidc-admin"), redirect_uri=callback, users={}
    ).start()
    yield server
    server.stop()


@pytest.fixture
def metadata_server(idp):
    """The IdP's metadata over HTTP at /metadata, as an IdP publishes it."""
    app = Response(idp.metadata, mimetype="application/samlmetadata+xml")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/metadata"
    server.shutdown()
    thread.join(timeout=10)


def post(client, url: str, data: dict, **kwargs):
    token = _csrf_token(client.get(url).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token}, **kwargs)


def text(answer) -> str:
    return answer.get_data(as_text=True)


def errors_under(page: str, field: str) -> list[str]:
    """The error lines shown right after the form field `field` (before the next field)."""
    after = page.split(f'id="{field}"', 1)[1]
    segment = re.split(r"<label|<button", after, maxsplit=1)[0]
    return [html.unescape(e) for e in re.findall(r'<p class="field-error">(.*?)</p>', segment)]


def provider_named(name: str) -> IdentityProvider | None:
    db.session.expire_all()
    return db.session.scalar(select(IdentityProvider).where(IdentityProvider.name == name))


def test_the_list_shows_providers_and_the_addresses_to_copy(it_admin, corp):
    set_email_domains(corp, ["acme.test"], actor="test")
    db.session.commit()

    page = text(it_admin.get(PAGE))

    assert 'class="strong">corp</td>' in page
    assert "acme.test" in page and "enabled" in page and "never" in page
    assert "pasted or uploaded" in page and "signing certificate until" in page
    for address in ("saml/metadata", "saml/acs", "oidc/callback"):
        assert f"https://kursa.test/sso/acme/{address}" in page
    assert "https://kursa.test/login/acme" in page
    assert 'href="/sso/admin"' in text(it_admin.get("/courses/"))  # the navigation link


def test_without_a_base_url_the_pages_warn_before_the_addresses_are_given_out(
    app, it_admin, corp, monkeypatch
):
    warning = "before giving these addresses to an identity provider"
    assert warning not in text(it_admin.get(PAGE))

    monkeypatch.setitem(app.config["KURSA"]["web"], "base_url", "")

    for url in (PAGE, f"{PAGE}/{corp.id}/edit"):
        page = text(it_admin.get(url))
        assert "Set <code>[web] base_url</code> " + warning in page, url
        assert page.index(warning) < page.index("http://localhost/sso/acme/saml/metadata")


def test_the_pages_are_404_for_everyone_else(acme, corp, login_as, make_customer):
    make_customer("globex", "Globex")
    others = [
        login_as("hanne", "hr", None),  # HR at the root
        login_as("dina", "it_admin", "20"),  # IT admin of a branch
        login_as("anna"),  # an employee
    ]
    urls = [PAGE, f"{PAGE}/saml/new", f"{PAGE}/oidc/new", f"{PAGE}/{corp.id}/edit", "/sso/admin"]

    for client in others:
        for url in urls:
            assert client.get(url).status_code == 404, url
        assert 'href="/sso/admin"' not in text(client.get("/courses/"))
    finn = login_as("finn", "it_admin", None)
    assert finn.get("/sso/admin/globex").status_code == 404
    assert finn.get(f"/sso/admin/globex/{corp.id}/edit").status_code == 404


def test_platform_admins_reach_every_customer(admin_client, corp, make_customer):
    make_customer("globex", "Globex")

    assert admin_client.get("/sso/admin/globex").status_code == 200
    assert 'class="strong">corp</td>' in text(admin_client.get(PAGE))


def test_add_saml_by_pasting_the_metadata(it_admin, acme, idp):
    answer = post(
        it_admin,
        f"{PAGE}/saml/new",
        {
            "name": "corp",
            "metadata_xml": idp.metadata,
            "match": "username",
            "match_attribute": "uid",
            "require_signed_assertion": "y",
            "email_domains": "Acme.test\nstaff.acme.test",
        },
    )

    assert answer.status_code == 302, text(answer)
    provider = provider_named("corp")
    assert provider.settings["entity_id"] == idp.entity_id
    assert provider.settings["match_attribute"] == "uid"
    assert provider.settings["require_signed_assertion"] is True
    assert provider.settings["allow_idp_initiated"] is False
    assert provider.settings["email_domains"] == ["acme.test", "staff.acme.test"]
    actors = db.session.scalars(select(AuditEntry.actor).where(AuditEntry.action.like("sso.%")))
    assert set(actors) == {"account:u202"}


def test_add_saml_by_upload_and_by_url(it_admin, acme, idp, metadata_server):
    filed_idp = as_another_idp(idp.metadata, "filed").encode()
    upload = {"metadata_file": (io.BytesIO(filed_idp), "idp.xml")}
    by_file = post(it_admin, f"{PAGE}/saml/new", {"name": "filed", "match": "email", **upload})
    by_url = post(
        it_admin,
        f"{PAGE}/saml/new",
        {"name": "fetched", "match": "email", "metadata_url": metadata_server},
    )

    assert by_file.status_code == by_url.status_code == 302
    assert provider_named("filed").settings["metadata_url"] == ""
    assert provider_named("fetched").settings["metadata_url"] == metadata_server
    assert metadata_server in text(it_admin.get(PAGE))


def test_unusable_metadata_is_refused_naming_the_field(it_admin, acme, idp):
    unsigned = re.sub(
        r"<ns\d+:KeyDescriptor.*?</ns\d+:KeyDescriptor>", "", idp.metadata, flags=re.S
    )
    assert "KeyDescriptor" not in unsigned
    cases = [
        ({}, "Metadata: paste the XML, upload the file or give the URL (exactly one of them)."),
        ({"metadata_xml": "<html>"}, "Metadata XML: The metadata is not well-formed XML."),
        ({"metadata_xml": unsigned}, "Metadata XML: The metadata names no signing certificate"),
        (
            {"metadata_url": f"http://127.0.0.1:{free_port()}/metadata"},
            "Metadata URL: The metadata could not be fetched: http://127.0.0.1:",
        ),
        (
            {"metadata_file": (io.BytesIO(b"<EntitiesDescriptor/>"), "idp.xml")},
            "Metadata file: The metadata must describe exactly one SAML identity provider.",
        ),
    ]

    for data, message in cases:
        answer = post(it_admin, f"{PAGE}/saml/new", {"name": "corp", "match": "email", **data})
        assert answer.status_code == 400
        assert message in text(answer)
    assert provider_named("corp") is None


def test_add_oidc_keeps_the_secret_encrypted_and_unshown(it_admin, acme, op):
    answer = post(
        it_admin,
        f"{PAGE}/oidc/new",
        {
            "name": "entra",
            "discovery_url": op.discovery_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scopes": "openid  email",
            "match": "email",
            "email_domains": "acme.test",
        },
    )

    assert answer.status_code == 302, text(answer)
    provider = provider_named("entra")
    assert provider.settings["issuer"] == op.issuer
    assert provider.settings["scopes"] == "openid email"
    assert CLIENT_SECRET not in str(provider.settings)
    for url in (PAGE, f"{PAGE}/{provider.id}/edit"):
        assert CLIENT_SECRET not in text(it_admin.get(url))
    assert op.discovery_url in text(it_admin.get(PAGE))


def test_an_unreachable_discovery_address_is_refused(it_admin, acme):
    answer = post(
        it_admin,
        f"{PAGE}/oidc/new",
        {
            "name": "entra",
            "discovery_url": f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scopes": "openid",
            "match": "email",
        },
    )

    assert answer.status_code == 400
    assert "The discovery document could not be fetched: http://127.0.0.1:" in text(answer)
    assert "Errno" not in text(answer) and "HTTPConnectionPool" not in text(answer)
    # the typed secret is kept in its field (only there), so it need not be typed again
    assert text(answer).count(CLIENT_SECRET) == 1
    assert f'type="password" value="{CLIENT_SECRET}"' in text(answer)
    assert provider_named("entra") is None


def test_a_discovery_address_the_address_policy_now_refuses_is_named_so(
    app, it_admin, acme, op, caplog, monkeypatch
):
    """Added while [sso] allow_private_addresses was on (a loopback http address), used by a
    portal without it: the log and the IT admin's pages name the policy, not "unreachable";
    the employee's page stays generic."""
    provider = add_oidc_for(acme, op, "entra", match="email")
    oidc.forget_caches()
    monkeypatch.setitem(app.config["KURSA"]["sso"], "allow_private_addresses", False)
    policy = (
        f"{op.discovery_url} is plain http, which Kursa does not fetch from unless the "
        "platform operator allows it ([sso] allow_private_addresses)."
    )

    with caplog.at_level(logging.WARNING, logger="sso.views"):
        login = app.test_client().get("/sso/acme/entra/login")

    assert login.status_code == 503
    assert "could not reach your company&#39;s sign-in" in text(login)
    assert "allow_private_addresses" not in text(login)
    logged = [r.getMessage() for r in caplog.records if r.name == "sso.views"]
    assert logged == [
        f"SSO provider {provider.id} could not start a login: The discovery document address "
        + policy
    ]
    sentence = f"Logins through entra fail: its discovery address {policy} Ask the platform"
    for url in (PAGE, f"{PAGE}/{provider.id}/edit"):
        assert sentence in html.unescape(text(it_admin.get(url))), url

    monkeypatch.setitem(app.config["KURSA"]["sso"], "allow_private_addresses", True)
    assert "address-refused" not in text(it_admin.get(PAGE))


def test_edit_changes_the_options_and_disables(it_admin, corp):
    answer = post(
        it_admin,
        f"{PAGE}/{corp.id}/edit",
        {
            "match": "employee_number",
            "match_attribute": "employeeNumber",
            "allow_idp_initiated": "y",
            "email_domains": "acme.test",
        },
    )

    assert answer.status_code == 302, text(answer)
    provider = provider_named("corp")
    assert provider.is_enabled is False
    assert provider.settings["match"] == "employee_number"
    assert provider.settings["match_attribute"] == "employeeNumber"
    assert provider.settings["require_signed_assertion"] is False
    assert provider.settings["allow_idp_initiated"] is True
    assert provider.settings["email_domains"] == ["acme.test"]
    assert "disabled" in text(it_admin.get(PAGE))


def test_edit_refuses_a_domain_of_another_provider_and_saves_nothing(it_admin, corp, idp):
    other_idp = as_another_idp(idp.metadata, "other")
    other = add_saml_provider(corp.customer, "other", other_idp, match="email", actor="test")
    set_email_domains(other, ["acme.test"], actor="test")
    db.session.commit()

    answer = post(
        it_admin,
        f"{PAGE}/{corp.id}/edit",
        {"is_enabled": "y", "match": "username", "email_domains": "ACME.test"},
    )

    assert answer.status_code == 400
    assert errors_under(text(answer), "email_domains") == [
        "Email domains: acme.test already leads to the provider other; "
        "a domain can lead to one provider only."
    ]
    assert 'class="flash error"' not in text(answer)
    assert provider_named("corp").settings["match"] == "email"


def test_delete_removes_an_unused_provider_and_refuses_a_linked_one(it_admin, corp, idp, person):
    used_idp = as_another_idp(idp.metadata, "used")
    used = add_saml_provider(corp.customer, "used", used_idp, match="email", actor="test")
    login_person(used, "subject-finn", person("finn").email)
    db.session.commit()

    deleted = it_admin.post(f"{PAGE}/{corp.id}/delete", data={"csrf_token": _token(it_admin)})
    refused = it_admin.post(f"{PAGE}/{used.id}/delete", data={"csrf_token": _token(it_admin)})

    assert deleted.status_code == refused.status_code == 302
    assert provider_named("corp") is None
    assert provider_named("used") is not None
    page = text(it_admin.get(PAGE))
    assert "1 person(s) have logged in through used; disable it instead" in page
    assert "1 linked: disable it in Edit" in page


def test_a_post_without_the_csrf_token_is_refused(it_admin, corp):
    answer = it_admin.post(f"{PAGE}/{corp.id}/delete")
    assert answer.status_code == 400
    assert provider_named("corp") is not None


def _token(client) -> str:
    return _csrf_token(client.get(PAGE).get_data(as_text=True))


def test_add_page_errors_show_under_their_fields(it_admin, corp, idp):
    cases = [
        ({"name": "Not A Name", "metadata_xml": idp.metadata}, "name", "A provider name is 1-50"),
        ({"name": "corp", "metadata_xml": idp.metadata}, "name", "acme has a provider named"),
        (
            {"name": "again", "metadata_xml": idp.metadata},
            "metadata_xml",
            "The provider corp already uses this identity provider (entity id "
            f"{idp.entity_id}); change corp instead of adding it twice.",
        ),
        (
            {"name": "spare", "metadata_xml": as_another_idp(idp.metadata, "spare"),
             "label": "x" * 81},
            "label",
            "Label: at most 80 characters.",
        ),
    ]  # fmt: skip

    for data, field, message in cases:
        answer = post(it_admin, f"{PAGE}/saml/new", {"match": "email", **data})
        assert answer.status_code == 400
        assert [e[: len(message)] for e in errors_under(text(answer), field)] == [message]
        assert 'class="flash error"' not in text(answer)
    assert provider_named("again") is None and provider_named("spare") is None


def test_a_match_attribute_with_the_nameid_rule_is_refused_on_add_and_edit(
    it_admin, acme, corp, idp
):
    other = as_another_idp(idp.metadata, "other")
    data = {"name": "other", "metadata_xml": other, "match": "nameid", "match_attribute": "uid"}
    added = post(it_admin, f"{PAGE}/saml/new", data)
    edited = post(it_admin, f"{PAGE}/{corp.id}/edit", {"match": "nameid", "match_attribute": "uid"})

    for answer in (added, edited):
        assert answer.status_code == 400
        [message] = errors_under(text(answer), "match_attribute")
        assert message.startswith("Match attribute: the nameid rule reads the NameID")
    assert provider_named("other") is None
    assert provider_named("corp").settings["match"] == "email"


def test_a_saml_add_names_every_refused_field_in_one_submit(it_admin, corp, idp):
    other = as_another_idp(idp.metadata, "other")
    data = {"name": "Not A Name", "label": "x" * 81, "metadata_xml": other, "match": "email"}

    answer = post(it_admin, f"{PAGE}/saml/new", {**data, "email_domains": "acme.test bad_domain"})
    taken = post(it_admin, f"{PAGE}/saml/new", {"name": "corp", "metadata_xml": idp.metadata})

    assert answer.status_code == taken.status_code == 400
    page = text(answer)
    assert errors_under(page, "name")[0].startswith("A provider name is 1-50")
    assert errors_under(page, "label") == ["Label: at most 80 characters."]
    assert errors_under(page, "email_domains") == [
        "Email domains: 'bad_domain' is not a domain name such as example.com."
    ]
    assert errors_under(page, "metadata_xml") == []
    assert errors_under(text(taken), "name") == ["acme has a provider named 'corp' already."]
    assert errors_under(text(taken), "metadata_xml")[0].startswith("The provider corp already")
    assert provider_named("other") is None


def test_a_saml_add_names_a_bad_metadata_and_a_bad_name_together(it_admin, acme):
    answer = post(
        it_admin,
        f"{PAGE}/saml/new",
        {"name": "", "metadata_xml": "<html>", "match": "email", "email_domains": "-x-"},
    )

    assert answer.status_code == 400
    assert errors_under(text(answer), "name") == ["Name: give one."]
    assert errors_under(text(answer), "metadata_xml") == [
        "Metadata XML: The metadata is not well-formed XML."
    ]
    assert errors_under(text(answer), "email_domains") == [
        "Email domains: '-x-' is not a domain name such as example.com."
    ]


def test_an_oidc_add_names_every_refused_field_and_keeps_the_secret(it_admin, acme, op, corp):
    set_email_domains(corp, ["acme.test"], actor="test")
    db.session.commit()
    data = {
        "name": "Entra!",
        "discovery_url": op.discovery_url,
        "client_id": "",
        "client_secret": CLIENT_SECRET,
        "scopes": "email",
        "match": "email",
        "email_domains": "acme.test",
    }

    answer = post(it_admin, f"{PAGE}/oidc/new", data)

    assert answer.status_code == 400
    page = text(answer)
    assert errors_under(page, "name")[0].startswith("A provider name is 1-50")
    assert errors_under(page, "client_id") == ["Client id: give Kursa's client id."]
    assert errors_under(page, "scopes") == ["Scopes: the scopes must include openid."]
    assert errors_under(page, "email_domains") == [
        "Email domains: acme.test already leads to the provider corp; "
        "a domain can lead to one provider only."
    ]
    assert errors_under(page, "discovery_url") == errors_under(page, "client_secret") == []
    assert f'type="password" value="{CLIENT_SECRET}"' in page
    assert provider_named("entra!") is None and provider_named("Entra!") is None

    fixed = {
        **data,
        "name": "entra",
        "client_id": CLIENT_ID,
        "scopes": "openid",
        "email_domains": "",
    }
    assert post(it_admin, f"{PAGE}/oidc/new", fixed).status_code == 302
    assert provider_named("entra").settings["client_id"] == CLIENT_ID


def test_edit_replaces_the_metadata_and_keeps_it_when_left_empty(it_admin, corp, idp):
    moved = as_another_idp(idp.metadata, "moved")
    kept = post(it_admin, f"{PAGE}/{corp.id}/edit", {"is_enabled": "y", "match": "email"})
    assert kept.status_code == 302, text(kept)
    assert provider_named("corp").settings["metadata_xml"] == idp.metadata

    upload = {"metadata_file": (io.BytesIO(moved.encode()), "idp.xml")}
    answer = post(
        it_admin, f"{PAGE}/{corp.id}/edit", {"is_enabled": "y", "match": "email", **upload}
    )

    assert answer.status_code == 302, text(answer)
    provider = provider_named("corp")
    assert provider.settings["metadata_xml"] == moved
    assert provider.settings["entity_id"] == "https://moved.test/idp"
    assert provider.settings["metadata_url"] == ""
    entry = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "sso.metadata_replaced")
    )
    assert entry.details == {"entity_id_changed": True, "from_url": False}


def test_edit_refuses_metadata_of_another_provider_under_its_field(it_admin, corp, idp):
    other_idp = as_another_idp(idp.metadata, "other")
    add_saml_provider(corp.customer, "other", other_idp, match="email", actor="test")
    db.session.commit()

    answer = post(
        it_admin,
        f"{PAGE}/{corp.id}/edit",
        {"is_enabled": "y", "match": "username", "metadata_xml": other_idp},
    )

    assert answer.status_code == 400
    assert errors_under(text(answer), "metadata_xml") == [
        "The provider other already uses this identity provider (entity id "
        "https://other.test/idp); change other instead of adding it twice."
    ]
    provider = provider_named("corp")
    assert provider.settings["match"] == "email"  # nothing of the edit was saved
    assert provider.settings["entity_id"] == idp.entity_id


def test_edit_fetches_the_metadata_again_from_its_url(it_admin, acme, idp, metadata_server):
    added = post(
        it_admin,
        f"{PAGE}/saml/new",
        {"name": "fetched", "match": "email", "metadata_url": metadata_server},
    )
    assert added.status_code == 302, text(added)
    provider = provider_named("fetched")
    provider.settings = {**provider.settings, "metadata_xml": idp.metadata + "\n<!-- old -->"}
    db.session.commit()
    edit = f"{PAGE}/{provider.id}/edit"
    assert f"Fetch the metadata again from {metadata_server} now" in text(it_admin.get(edit))

    answer = post(it_admin, edit, {"is_enabled": "y", "match": "email", "refetch_metadata": "y"})

    assert answer.status_code == 302, text(answer)
    provider = provider_named("fetched")
    assert provider.settings["metadata_xml"] == idp.metadata
    assert provider.settings["metadata_refreshed_at"]


def test_a_failed_fetch_again_is_shown_under_its_field_and_saves_nothing(it_admin, corp):
    gone = f"http://127.0.0.1:{free_port()}/metadata"
    corp.settings = {**corp.settings, "metadata_url": gone}
    db.session.commit()

    answer = post(
        it_admin,
        f"{PAGE}/{corp.id}/edit",
        {"is_enabled": "y", "match": "email", "label": "Acme", "refetch_metadata": "y"},
    )

    assert answer.status_code == 400
    errors = errors_under(text(answer), "refetch_metadata")
    assert len(errors) == 1
    assert errors[0].startswith(f"Metadata URL: The metadata could not be fetched: {gone}")
    provider = provider_named("corp")
    assert provider.setting("label") == "" and provider.settings["metadata_error"] == ""


def test_edit_replaces_the_client_secret_only_when_one_is_given(it_admin, acme, op):
    added = post(
        it_admin,
        f"{PAGE}/oidc/new",
        {"name": "entra", "discovery_url": op.discovery_url, "client_id": CLIENT_ID,
         "client_secret": CLIENT_SECRET, "scopes": "openid", "match": "email"},
    )  # fmt: skip
    assert added.status_code == 302, text(added)
    provider = provider_named("entra")
    edit = f"{PAGE}/{provider.id}/edit"
    fields = {"is_enabled": "y", "match": "email", "scopes": "openid", "label": "Acme Entra"}

    kept = post(it_admin, edit, {**fields, "client_secret": ""})
    assert kept.status_code == 302, text(kept)
    assert vault.decrypt(provider_named("entra").settings["client_secret"]) == CLIENT_SECRET
    replaced = post(it_admin, edit, {**fields, "client_secret": "rotated-secret-2"})

    assert replaced.status_code == 302, text(replaced)
    provider = provider_named("entra")
    assert vault.decrypt(provider.settings["client_secret"]) == "rotated-secret-2"
    assert provider.label == "Acme Entra"
    page = text(it_admin.get(edit))
    assert "rotated-secret-2" not in page and CLIENT_SECRET not in page
    actions = db.session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("sso.%")))
    assert list(actions).count("sso.client_secret_replaced") == 1


def test_edit_names_the_refused_label_and_scopes_together(it_admin, acme, op):
    provider = add_oidc_for(acme, op, "entra", match="email")
    fields = {"is_enabled": "y", "match": "email", "scopes": "email", "label": "x" * 81}

    answer = post(it_admin, f"{PAGE}/{provider.id}/edit", fields)

    assert answer.status_code == 400
    assert errors_under(text(answer), "label") == ["Label: at most 80 characters."]
    assert errors_under(text(answer), "scopes") == ["Scopes: the scopes must include openid."]
    assert provider_named("entra").settings["scopes"] == "openid email profile"


def test_each_edit_page_lists_the_addresses_of_its_kind(it_admin, corp, acme, op):
    oidc_added = post(
        it_admin,
        f"{PAGE}/oidc/new",
        {"name": "entra", "discovery_url": op.discovery_url, "client_id": CLIENT_ID,
         "client_secret": CLIENT_SECRET, "scopes": "openid", "match": "email"},
    )  # fmt: skip
    assert oidc_added.status_code == 302
    base = "https://kursa.test/sso/acme"
    saml_page = text(it_admin.get(f"{PAGE}/{corp.id}/edit"))
    oidc_page = text(it_admin.get(f"{PAGE}/{provider_named('entra').id}/edit"))
    saml = ["saml/metadata", "saml/acs", "saml/sls", "corp/login"]
    oidc = ["oidc/callback", "oidc/logged-out", "entra/login"]

    for address in saml:
        assert f'<code style="overflow-wrap: anywhere;">{base}/{address}</code>' in saml_page
        assert f"{base}/{address}" not in oidc_page
    for address in oidc:
        assert f"{base}/{address}" in oidc_page
        assert f"{base}/{address}" not in saml_page
    assert "SAML SP entity id" in saml_page and "OIDC post-logout redirect URI" in oidc_page
    listed = text(it_admin.get(PAGE))
    assert all(f"{base}/{a}" in listed for a in ["saml/sls", "oidc/logged-out"])
