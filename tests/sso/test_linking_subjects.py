"""A provider's subject (persistent NameID, OIDC `sub`) is linked whole: up to
sso.linking.MAX_SUBJECT_BYTES it logs in again and again, longer it is refused, never cut.
The OIDC `sub` case is in tests/sso/test_oidc_id_token.py, beside its OP."""

import pytest
from sqlalchemy import select

from portal.core.db import db
from sso.linking import MAX_SUBJECT_BYTES
from sso.models import Identity
from tests.sso.conftest import post_acs, start_login
from tests.sso.saml_attack_helpers import forget_browser, logged_in_username
from tests.sso.test_saml_login import assert_refused

# 1024 ASCII bytes; 512 two-byte characters (1024 bytes); one byte more of each.
FITS = ["s" * MAX_SUBJECT_BYTES, "é" * (MAX_SUBJECT_BYTES // 2)]
TOO_LONG = ["s" * (MAX_SUBJECT_BYTES + 1), "é" * (MAX_SUBJECT_BYTES // 2) + "s"]


def identities() -> list[str]:
    return db.session.scalars(select(Identity.subject)).all()


@pytest.mark.parametrize("subject", FITS, ids=["ascii", "two_byte"])
def test_a_subject_of_the_largest_size_is_linked_whole_and_found_again(
    app, client, acme_with_idp, idp, subject
):
    acme_with_idp()
    for _ in range(2):
        started = start_login(client)
        answer = post_acs(client, idp.respond(client, started.request_id, subject=subject))
        assert answer.status_code == 302
        assert logged_in_username(client) == "u1"
        forget_browser(client)

    assert identities() == [subject]


def test_two_long_subjects_sharing_their_start_are_two_links(app, client, acme_with_idp, idp):
    """Cut to 255, both were one link: the second person would have logged in as the first."""
    acme_with_idp()
    shared = "s" * 255
    for subject, username in ((shared + "1", "u1"), (shared + "2", "u2")):
        started = start_login(client)
        xml = idp.respond(client, started.request_id, subject=subject, username=username)
        assert post_acs(client, xml).status_code == 302
        assert logged_in_username(client) == username
        forget_browser(client)

    assert sorted(identities()) == [shared + "1", shared + "2"]


@pytest.mark.parametrize("subject", TOO_LONG, ids=["ascii", "two_byte"])
def test_a_longer_saml_subject_is_refused(app, client, acme_with_idp, idp, subject):
    acme_with_idp()
    started = start_login(client)

    answer = post_acs(client, idp.respond(client, started.request_id, subject=subject))

    assert_refused(answer, client, "subject_too_long")
    assert "longer than Kursa can keep" in answer.get_data(as_text=True)
    assert identities() == []
