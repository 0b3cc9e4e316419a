"""`flask account ...` (platform admins with local passwords) and `flask role grant` (an exact
contract: other tools rely on it)."""

import os

import click
from sqlalchemy import func, select

from portal.accounts.models import Account
from portal.accounts.operations import create_admin, set_password
from portal.accounts.sessions import purge_sessions
from portal.core import access
from portal.core.cli import refusals
from portal.core.db import db
from portal.core.errors import UserError
from portal.core.ratelimit import purge_rate_limit_hits
from portal.directory.lookups import require_customer, require_person, require_unit

CLI_ACTOR = "cli"


@click.group("account", help="Local accounts of platform admins.")
def account_cli():
    pass


@account_cli.command("create-admin")
@click.argument("username")
@click.option(
    "--password-env",
    metavar="VARIABLE",
    help="Read the password from this environment variable instead of prompting.",
)
def create_admin_command(username, password_env):
    """Create a platform admin who logs in with a local password."""
    password = _password(password_env)
    with refusals():
        create_admin(username, password, actor=CLI_ACTOR)
        db.session.commit()
    click.echo(f"Platform admin {username} created.")


@account_cli.command("set-password")
@click.argument("username")
@click.option("--password-env", metavar="VARIABLE")
def set_password_command(username, password_env):
    """Set a new local password (and lift a lockout); the account's sessions end."""
    account = db.session.scalar(
        select(Account).where(func.lower(Account.username) == username.lower())
    )
    if account is None:
        raise click.ClickException(f"No account named {username!r}.")
    with refusals():
        set_password(account, _password(password_env), actor=CLI_ACTOR)
        db.session.commit()
    click.echo(f"Password of {username} set.")


@account_cli.command("purge-sessions")
def purge_sessions_command():
    """Delete login sessions begun more than the lifetime and a day ago (the scheduler does
    this every hour), and rate-limit counts older than a minute."""
    sessions, hits = purge_sessions(), purge_rate_limit_hits()
    db.session.commit()
    click.echo(f"{sessions} login session(s) and {hits} rate-limit count(s) purged.")


@click.group("role", help="Roles granted at a unit, reaching its whole branch.")
def role_cli():
    pass


@role_cli.command("grant")
@click.argument("username")
@click.argument("role", type=click.Choice(sorted(r.value for r in access.Role)))
@click.option("--unit", "number", help="The unit's number (default: the customer's root).")
@click.option("--customer", "slug", required=True, help="The customer's slug.")
def grant_command(username, role, number, slug):
    """Grant ROLE over a unit's branch to the person USERNAME (an account is made if needed)."""
    with refusals():
        customer = require_customer(slug)
        unit = require_unit(customer, number) if number else customer.root_unit
        person = require_person(username)
        if person.customer_id != customer.id:
            raise UserError(f"{username} is not a person of {customer.slug}.")
        access.grant_role(person, role, unit, actor=CLI_ACTOR)
        db.session.commit()
    click.echo(f"{username} is {role} of {unit.name} and everything below it.")


def _password(variable: str | None) -> str:
    if variable:
        value = os.environ.get(variable)
        if not value:
            raise click.ClickException(f"The environment variable {variable} is empty or unset.")
        return value
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)
