"""Replacing a SAML provider's metadata (the edit page's paste, upload or URL): the new keys
take effect at once, and the rules of adding and of a refresh still hold."""

from pathlib import Path

import pytest

from portal.core.db import db
from portal.core.errors import FieldRefused
from sso.metadata import replace_metadata
from tests.sso.conftest import logged_in_account_id, post_acs, start_login


def test_after_a_key_rollover_only_the_new_key_logs_in(client, acme_with_idp, idp, attacker_idp):
    _customer, provider = acme_with_idp()
    rolled = attacker_idp  # the same entity id with a new key: the IdP rolled its key over
    replace_metadata(provider, rolled.metadata, actor="test")
    db.session.commit()

    old = post_acs(client, idp.respond(client, start_login(client).request_id))
    assert old.status_code == 403 and logged_in_account_id(client) is None
    new = post_acs(client, rolled.respond(client, start_login(client).request_id))

    assert new.status_code == 302, new.get_data(as_text=True)
    assert logged_in_account_id(client) is not None


def test_a_pinned_signing_certificate_also_holds_for_a_replacement(acme_with_idp, idp, key_pairs):
    pin = Path(key_pairs["idp"][1]).read_text()
    _customer, provider = acme_with_idp(metadata_signing_cert=pin)

    with pytest.raises(FieldRefused, match="The metadata is not signed") as refused:
        replace_metadata(provider, idp.metadata, actor="test")

    assert refused.value.field == "metadata"


def test_unusable_metadata_is_refused_and_the_old_kept(acme_with_idp, idp):
    _customer, provider = acme_with_idp()

    with pytest.raises(FieldRefused, match="not well-formed XML"):
        replace_metadata(provider, "<html>", actor="test")

    db.session.rollback()
    assert provider.setting("metadata_xml") == idp.metadata
