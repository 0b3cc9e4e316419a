"""Signature wrapping against the metadata refresh of a provider that requires signed metadata
(`metadata_signing_cert`): the metadata at the URL is replaced (MITM, a compromised host) by
a forged EntityDescriptor carrying the attacker's signing key, with the genuine signed
metadata nested inside it. Safe outcome: the refresh is refused and the old keys stay."""

import copy

from lxml import etree
from sqlalchemy import select

from portal.core.db import db
from sso.models import IdentityProvider
from tests.sso.conftest import PERSONS, UNITS, SamlIdp, post_acs, start_login
from tests.sso.test_metadata_refresh import MetadataServer, signed_metadata

MD = "{urn:oasis:names:tc:SAML:2.0:metadata}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"


def test_signed_metadata_nested_in_a_forged_document_is_refused(
    app, client, make_customer, import_csv, idp, key_pairs
):
    federation = SamlIdp(key_pairs["sp"])  # its certificate signs the metadata
    attacker = SamlIdp(key_pairs["attacker"])  # same entity id, the attacker's key
    runner = app.test_cli_runner()
    with MetadataServer() as served:
        genuine = signed_metadata(idp, federation)
        served.body = genuine
        customer = make_customer("acme", "Acme")
        import_csv(customer, UNITS, PERSONS)
        added = runner.invoke(args=[
            "sso", "add-saml", "corp", "--customer", "acme", "--metadata-url", served.url,
            "--match", "username", "--match-attribute", "uid",
            "--metadata-signing-cert", federation.cert_file,
        ])  # fmt: skip
        assert added.exit_code == 0, added.output

        # Splice the genuine signed text in as is (moving it with lxml would rename its
        # prefixes, which exclusive c14n keeps, and break its digest).
        genuine_text = genuine.split("?>", 1)[1] if genuine.startswith("<?xml") else genuine
        forged = etree.fromstring(attacker.metadata.encode())
        forged.set("ID", "forged-root")
        extensions = etree.Element(f"{MD}Extensions")
        extensions.append(etree.Element("kursa-splice"))
        forged.insert(0, extensions)
        marker = "<kursa-splice/>"
        text = etree.tostring(forged).decode().replace(marker, genuine_text.strip())
        forged = etree.fromstring(text.encode())
        inner = forged.find(f"{MD}Extensions/{MD}EntityDescriptor")
        fake = copy.deepcopy(inner.find(f"{DS}Signature"))
        fake.find(f"{DS}SignedInfo/{DS}Reference").set("URI", "#forged-root")
        forged.find(f"{MD}Extensions").addnext(fake)
        served.body = etree.tostring(forged).decode()

        result = runner.invoke(args=["sso", "refresh-metadata"])

    db.session.expire_all()
    provider = db.session.scalar(select(IdentityProvider))
    # The attacker's key must not log anyone in (u1 here, any person of acme in general).
    started = start_login(client)
    answer = post_acs(client, attacker.respond(client, started.request_id))
    assert answer.status_code == 403, "the attacker's key logged u1 in after the refresh"
    assert result.exit_code == 1, provider.setting("metadata_error")
