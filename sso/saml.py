"""The SAML 2.0 service provider: configuration, SP metadata and requests (pysaml2).

One SP per customer (entity id `<base>/sso/<customer>/saml/metadata`). pysaml2 builds the SP
metadata and the signed AuthnRequests; the outstanding requests are stored in the database so
any node can finish a login. The answers are checked by sso.saml_acs.
"""

import logging
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, md
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.extension.algsupport import DigestMethod, SigningMethod
from saml2.metadata import entity_descriptor, metadata_tostring_fix
from saml2.saml import NAMEID_FORMAT_PERSISTENT
from saml2.sigver import get_xmlsec_binary
from saml2.validate import valid_instance
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from sqlalchemy import select

import config
from portal.core.db import db, utcnow
from portal.directory.models import Customer
from sso import saml_signature
from sso.keys import ensure_self_signed_pair
from sso.models import IdentityProvider, ProviderKind, SamlAssertionSeen, SamlRequest

logger = logging.getLogger(__name__)


def init_app(app) -> None:
    """Check the [sso] settings at start: both key files or neither, readable."""
    sso = app.config["KURSA"]["sso"]
    if bool(sso["key_file"]) != bool(sso["cert_file"]):
        raise config.ConfigError("sso.key_file and sso.cert_file must be set together")
    if bool(sso["encryption_key_file"]) != bool(sso["encryption_cert_file"]):
        raise config.ConfigError(
            "sso.encryption_key_file and sso.encryption_cert_file must be set together"
        )
    for key in ("key_file", "cert_file", "encryption_key_file", "encryption_cert_file"):
        if sso[key] and not Path(sso[key]).is_file():
            raise config.ConfigError(f"sso.{key} {sso[key]!r} is not a readable file")
    for key in ("request_lifetime_seconds", "login_starts_per_minute"):
        if sso[key] <= 0:
            raise config.ConfigError(f"sso.{key} must be positive")
    # pysaml2 logs NameIDs at info and whole assertions on errors; Kursa logs its own reasons.
    logging.getLogger("saml2").setLevel(logging.CRITICAL)


# --- addresses and configuration ---------------------------------------------------------


def entity_id(base_url: str, customer: Customer) -> str:
    return f"{base_url.rstrip('/')}/sso/{customer.slug}/saml/metadata"


def acs_url(base_url: str, customer: Customer) -> str:
    return f"{base_url.rstrip('/')}/sso/{customer.slug}/saml/acs"


def sp_key_pair() -> tuple[str, str]:
    """The configured key and certificate files, or a self-signed pair kept in instance/."""
    sso = current_app.config["KURSA"]["sso"]
    if sso["key_file"]:
        return sso["key_file"], sso["cert_file"]
    return ensure_self_signed_pair(Path(current_app.instance_path) / "sso")


def sp_encryption_pair() -> tuple[str, str]:
    """The key pair IdPs encrypt assertions to: [sso] encryption_*_file, else the signing pair."""
    sso = current_app.config["KURSA"]["sso"]
    if sso["encryption_key_file"]:
        return sso["encryption_key_file"], sso["encryption_cert_file"]
    return sp_key_pair()


def sp_config(
    base_url: str,
    customer: Customer,
    provider: IdentityProvider | None = None,
    *,
    unsolicited=False,
    want_assertions_signed: bool = False,
) -> SPConfig:
    """pysaml2's SP configuration, trusting only `provider`'s metadata (none for metadata).

    `want_assertions_signed` is what the SP metadata (no provider) advertises."""
    key_file, cert_file = sp_key_pair()
    encryption_key, encryption_cert = sp_encryption_pair()
    require_assertion = want_assertions_signed or bool(
        provider and provider.setting("require_signed_assertion")
    )
    settings = {
        "entityid": entity_id(base_url, customer),
        "xmlsec_binary": _xmlsec_binary(),
        "key_file": key_file,
        "cert_file": cert_file,
        "encryption_keypairs": [{"key_file": encryption_key, "cert_file": encryption_cert}],
        "allow_unknown_attributes": True,
        "accepted_time_diff": provider.setting("clock_skew_seconds") if provider else 0,
        "service": {
            "sp": {
                "endpoints": {
                    "assertion_consumer_service": [
                        (acs_url(base_url, customer), BINDING_HTTP_POST)
                    ],
                    "single_logout_service": [
                        (
                            f"{base_url.rstrip('/')}/sso/{customer.slug}/saml/sls",
                            BINDING_HTTP_REDIRECT,
                        )
                    ],
                },
                "allow_unsolicited": unsolicited,
                "authn_requests_signed": True,
                "want_response_signed": False,
                "want_assertions_signed": require_assertion,
                "want_assertions_or_response_signed": True,
                "name_id_format": NAMEID_FORMAT_PERSISTENT,
                "name_id_format_allow_create": True,
                "signing_algorithm": SIG_RSA_SHA256,
                "digest_algorithm": DIGEST_SHA256,
            }
        },
    }
    if provider is not None:
        settings["metadata"] = {"inline": [provider.setting("metadata_xml")]}
    conf = SPConfig()
    conf.load(settings)
    return conf


def sp_client(
    base_url: str, customer: Customer, provider: IdentityProvider, *, unsolicited=False
) -> Saml2Client:
    """A pysaml2 client for `provider`, kept while the provider's settings stay the same.

    Building one loads the private key twice and parses the IdP metadata (about 230 ms);
    the client holds no per-login state, because every call passes the outstanding request.
    """
    key = (
        base_url,
        provider.id,
        provider.updated_at,
        unsolicited,
        sp_key_pair(),
        sp_encryption_pair(),
    )
    cache = current_app.extensions.setdefault("kursa_sso", {}).setdefault("clients", {})
    client = cache.get(key)
    if client is None:
        for old in [k for k in cache if k[:2] == key[:2] and k[3] == unsolicited]:
            cache.pop(old, None)  # the provider's settings or the keys changed
        client = Saml2Client(
            config=sp_config(base_url, customer, provider, unsolicited=unsolicited)
        )
        client.users = _NoPopulation()
        cache[key] = client
    return client


class _NoPopulation:
    """pysaml2 keeps every logged-in person's attributes in memory, forever, in a shared
    client; Kursa keeps nothing there (single logout will keep its state in the database)."""

    def add_information_about_person(self, session_info) -> None:
        pass


def sp_metadata(base_url: str, customer: Customer) -> str:
    """The SP metadata an IdP imports. It advertises only the algorithms sso.saml_signature
    accepts (pysaml2 would list whatever xmlsec1 can do, MD5 and SHA-1 included, so an IdP
    could pick one Kursa then refuses), and WantAssertionsSigned when every enabled SAML
    provider of the customer requires a signed assertion (also when there is none yet)."""
    conf = sp_config(
        base_url, customer, want_assertions_signed=_all_require_signed_assertion(customer)
    )
    conf.xmlsec_binary = None  # entity_descriptor() then adds no algorithm list of its own
    descriptor = entity_descriptor(conf)
    descriptor.extensions = descriptor.extensions or md.Extensions()
    for algorithm in saml_signature.DIGEST_METHODS:
        descriptor.extensions.add_extension_element(DigestMethod(algorithm=algorithm))
    for algorithm in saml_signature.SIGNATURE_METHODS:
        descriptor.extensions.add_extension_element(SigningMethod(algorithm=algorithm))
    valid_instance(descriptor)
    return metadata_tostring_fix(descriptor, {"xs": "http://www.w3.org/2001/XMLSchema"})


def _all_require_signed_assertion(customer: Customer) -> bool:
    providers = db.session.scalars(
        select(IdentityProvider).where(
            IdentityProvider.customer_id == customer.id,
            IdentityProvider.kind == ProviderKind.SAML.value,
            IdentityProvider.is_enabled.is_(True),
        )
    )
    return all(p.setting("require_signed_assertion") for p in providers)


def _xmlsec_binary() -> str:
    cache = current_app.extensions.setdefault("kursa_sso", {})
    if "xmlsec" not in cache:
        cache["xmlsec"] = get_xmlsec_binary(["/usr/bin", "/usr/local/bin"])
    return cache["xmlsec"]


# --- SP-initiated login -------------------------------------------------------------------


def start_login(base_url: str, provider: IdentityProvider, next_url: str = "") -> str:
    """Store a new AuthnRequest and return the IdP address to redirect the browser to."""
    client = sp_client(base_url, provider.customer, provider)
    request_id, info = client.prepare_for_authenticate(
        entityid=provider.setting("entity_id"),
        binding=BINDING_HTTP_REDIRECT,
        nameid_format=NAMEID_FORMAT_PERSISTENT,
        sign=True,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    lifetime = current_app.config["KURSA"]["sso"]["request_lifetime_seconds"]
    now = utcnow()
    db.session.add(
        SamlRequest(
            id=request_id,
            provider_id=provider.id,
            next_url=next_url[:500],
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
    )
    _forget_expired(now)
    db.session.flush()
    logger.info("SAML login started with provider %s (request %s)", provider.id, request_id)
    return dict(info["headers"])["Location"]


def _forget_expired(now: datetime) -> None:
    db.session.execute(SamlRequest.__table__.delete().where(SamlRequest.expires_at < now))
    db.session.execute(
        SamlAssertionSeen.__table__.delete().where(SamlAssertionSeen.expires_at < now)
    )
