"""`flask sso add-saml`, `add-oidc`, `list` and `refresh-metadata` (exact contract),
`set-domains`, which gives a provider the email domains of the login page's discovery, and
`enable`, `disable`, `delete`.

`list --json` rows carry the fields every provider has (id, customer, name, kind, enabled,
label, match, email_domains) and those of its own kind only (SAML_KEYS or OIDC_KEYS); a SAML
provider added from a URL also carries metadata_refreshed_at, metadata_error and
metadata_error_at (ISO times; "" when none) from the last refresh. Errors are plain sentences
with exit code 1, as in `flask directory source add-ldap`."""

import json
import os

import click
from sqlalchemy import select

from portal.core.cli import refusals
from portal.core.db import db
from portal.directory.lookups import require_customer
from sso import metadata, queries
from sso.domains import set_email_domains
from sso.metadata import MAX_METADATA_BYTES, fetch_metadata, metadata_text
from sso.models import IdentityProvider, MatchRule, ProviderKind
from sso.operations import (
    add_oidc_provider,
    add_saml_provider,
    delete_provider,
    set_provider_enabled,
)

CLI_ACTOR = "cli"
LABEL_HELP = (
    "The login button's whole text, e.g. 'Log in with Acme account' (default: 'Log in with NAME')."
)
SAML_KEYS = (
    "entity_id",
    "metadata_url",
    "match_attribute",
    "require_signed_assertion",
    "allow_idp_initiated",
    "clock_skew_seconds",
)
OIDC_KEYS = ("discovery_url", "issuer", "client_id", "scopes", "match_claim")


@click.group("sso", help="Single sign-on: the customers' identity providers.")
def sso_cli():
    pass


@sso_cli.command("add-saml")
@click.argument("name")
@click.option("--customer", "slug", required=True, help="The customer's slug.")
@click.option("--metadata-url", help="Fetch the IdP's SAML metadata from this https address.")
@click.option("--metadata-file", help="Read the IdP's SAML metadata from this file.")
@click.option(
    "--match",
    required=True,
    type=click.Choice([rule.value for rule in MatchRule]),
    help="The person field that identifies the person (nameid: the NameID is the username).",
)
@click.option(
    "--match-attribute",
    default="",
    help="SAML attribute holding it (default: the rule's usual attributes; not with "
    "--match nameid, which reads the NameID).",
)
@click.option(
    "--metadata-signing-cert",
    help="PEM certificate that must sign the metadata fetched at each refresh.",
)
@click.option("--label", default="", help=LABEL_HELP)
def add_saml_command(
    name, slug, metadata_url, metadata_file, match, match_attribute, metadata_signing_cert, label
):
    """Add SAML identity provider NAME to a customer."""
    if bool(metadata_url) == bool(metadata_file):
        raise click.UsageError("Give exactly one of --metadata-url and --metadata-file.")
    certificate = _read(metadata_signing_cert)
    with refusals():
        customer = require_customer(slug)
        if metadata_url:
            xml = fetch_metadata(metadata_url)
        else:
            # a larger file is refused unread
            raw = _read_file(metadata_file, "metadata file", MAX_METADATA_BYTES + 1)
            xml = metadata_text(raw, what=f"The metadata file {metadata_file}")
        provider = add_saml_provider(
            customer,
            name,
            xml,
            metadata_url=metadata_url or "",
            match=match,
            match_attribute=match_attribute,
            metadata_signing_cert=certificate,
            label=label,
            actor=CLI_ACTOR,
        )
        db.session.commit()
    click.echo(f"SAML provider {provider.name} added to {slug} (id {provider.id}).")


@sso_cli.command("add-oidc")
@click.argument("name")
@click.option("--customer", "slug", required=True, help="The customer's slug.")
@click.option("--discovery", required=True, help="The provider's discovery document address.")
@click.option("--client-id", required=True, help="Kursa's client id at the provider.")
@click.option(
    "--client-secret-env",
    "secret_variable",
    required=True,
    help="Name of the environment variable holding the client secret (stored encrypted).",
)
@click.option(
    "--match",
    required=True,
    type=click.Choice(
        [r.value for r in (MatchRule.USERNAME, MatchRule.EMAIL, MatchRule.EMPLOYEE_NUMBER)]
    ),
    help="The person field that identifies the person.",
)
@click.option("--match-claim", default="", help="Claim holding it (default: the standard one).")
@click.option(
    "--scopes",
    default="openid email profile",
    show_default=True,
    help="Scopes to ask for, separated by spaces; openid must be one of them.",
)
@click.option("--label", default="", help=LABEL_HELP)
def add_oidc_command(
    name, slug, discovery, client_id, secret_variable, match, match_claim, scopes, label
):
    """Add OpenID Connect provider NAME to a customer."""
    with refusals():
        customer = require_customer(slug)
    secret = os.environ.get(secret_variable, "")
    if not secret:
        raise click.ClickException(
            f"The environment variable {secret_variable} is empty or not set; "
            "put the client secret in it."
        )
    with refusals():
        provider = add_oidc_provider(
            customer,
            name,
            discovery,
            client_id=client_id,
            client_secret=secret,
            match=match,
            match_claim=match_claim,
            scopes=" ".join(scopes.split()),
            label=label,
            actor=CLI_ACTOR,
        )
        db.session.commit()
    click.echo(f"OIDC provider {provider.name} added to {slug} (id {provider.id}).")


@sso_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_command(as_json):
    """List every identity provider."""
    providers = db.session.scalars(select(IdentityProvider).order_by(IdentityProvider.id))
    rows = [_row(p) for p in providers]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        enabled = "" if row["enabled"] else " (disabled)"
        click.echo(
            f"{row['id']}  {row['customer']}/{row['name']}  {row['kind']}  "
            f"{row.get('entity_id') or row.get('issuer', '')}  match={row['match']}"
            f"  domains={','.join(row['email_domains']) or '-'}{enabled}"
        )


@sso_cli.command("set-domains")
@click.argument("name")
@click.argument("domains", nargs=-1)
@click.option("--customer", "slug", required=True, help="The customer's slug.")
def set_domains_command(name, domains, slug):
    """Set the email DOMAINS (none: clear them) that lead from the login page to provider NAME.

    A domain leads to one enabled provider only, across all customers."""
    provider = _provider(slug, name)
    _call(set_email_domains, provider, list(domains), actor=CLI_ACTOR)
    shown = ", ".join(queries.email_domains(provider)) or "none"
    click.echo(f"{slug}/{provider.name} email domains: {shown}.")


@sso_cli.command("enable")
@click.argument("name")
@click.option("--customer", "slug", required=True, help="The customer's slug.")
def enable_command(name, slug):
    """Enable provider NAME: its login button and email domains lead to it again.

    Refused when one of its email domains now leads to another enabled provider."""
    provider = _provider(slug, name)
    _call(set_provider_enabled, provider, True, actor=CLI_ACTOR)
    click.echo(f"{slug}/{name} is enabled.")


@sso_cli.command("disable")
@click.argument("name")
@click.option("--customer", "slug", required=True, help="The customer's slug.")
def disable_command(name, slug):
    """Disable provider NAME: nobody logs in through it and those who did are logged out;
    links and settings are kept."""
    provider = _provider(slug, name)
    _call(set_provider_enabled, provider, False, actor=CLI_ACTOR)
    click.echo(f"{slug}/{name} is disabled.")


@sso_cli.command("delete")
@click.argument("name")
@click.option("--customer", "slug", required=True, help="The customer's slug.")
def delete_command(name, slug):
    """Delete provider NAME. Refused once persons have logged in through it: disable it
    instead, so their links are kept."""
    provider = _provider(slug, name)
    _call(delete_provider, provider, actor=CLI_ACTOR)
    click.echo(f"{slug}/{name} is deleted.")


def _provider(slug: str, name: str) -> IdentityProvider:
    with refusals():
        customer = require_customer(slug)
    provider = db.session.scalar(
        select(IdentityProvider).where(
            IdentityProvider.customer_id == customer.id, IdentityProvider.name == name
        )
    )
    if provider is None:
        raise click.ClickException(f"{slug} has no identity provider named {name!r}.")
    return provider


def _call(operation, *args, **kwargs) -> None:
    """Run an operation and commit; a refusal rolls back and exits 1 with its sentence."""
    with refusals():
        operation(*args, **kwargs)
        db.session.commit()


def _read(path: str | None) -> str:
    if not path:
        return ""
    raw = _read_file(path, "metadata signing certificate", 64 * 1024)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise click.ClickException(f"{path} is not a PEM certificate (text).") from None


def _read_file(path: str, what: str, limit: int) -> bytes:
    """The first `limit` bytes of the file, or exit 1 with one sentence naming it (not
    click.Path's usage block and exit 2: a missing file is a refusal like any other)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise click.ClickException(f"The {what} {path} cannot be read: {reason}.") from None


def _row(provider: IdentityProvider) -> dict:
    row = {
        "id": provider.id,
        "customer": provider.customer.slug,
        "name": provider.name,
        "kind": provider.kind,
        "enabled": provider.is_enabled,
        "label": provider.label,
        "match": provider.setting("match"),
        "email_domains": queries.email_domains(provider),
    }
    if provider.kind == ProviderKind.OIDC:
        row.update({key: provider.setting(key) for key in OIDC_KEYS})
        return row
    row.update({key: provider.setting(key) for key in SAML_KEYS})
    if provider.setting("metadata_url"):  # only URL-sourced metadata is refreshed
        row.update(metadata.status_of(provider))
    return row


@sso_cli.command("refresh-metadata")
@click.argument("name", required=False)
@click.option(
    "--customer",
    "slug",
    help="The customer's slug; required with NAME (names are unique per customer only).",
)
def refresh_metadata_command(name, slug):
    """Re-fetch the metadata of SAML providers added from a URL: all of them, a customer's
    (--customer) or provider NAME of a customer.

    A failed refresh keeps the old metadata; the exit code is 1 when any failed."""
    if name:
        if not slug:
            # two customers may each have a provider of that name
            raise click.UsageError("Give --customer SLUG with NAME.")
        provider = _provider(slug, name)
        if provider.kind != ProviderKind.SAML or not provider.setting("metadata_url"):
            raise click.ClickException(f"{slug}/{name} is not a SAML provider with a metadata URL.")
        results = [metadata.refresh_metadata(provider, actor=CLI_ACTOR)]
    else:
        customer_id = None
        if slug:
            with refusals():
                customer_id = require_customer(slug).id
        results = metadata.refresh_all(actor=CLI_ACTOR, customer_id=customer_id)
    db.session.commit()
    if not results:
        if slug:
            click.echo(f"{slug} has no SAML provider with a metadata URL; nothing to refresh.")
        else:
            click.echo("No SAML provider has a metadata URL; nothing to refresh.")
    for result in results:
        provider = result.provider
        state = (
            f"failed: {result.error}"
            if result.error
            else ("changed" if result.changed else "unchanged")
        )
        click.echo(f"{provider.customer.slug}/{provider.name}: {state}")
    if any(result.error for result in results):
        raise SystemExit(1)
