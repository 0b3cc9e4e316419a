"""`flask account ...`: platform admins with local passwords."""

import os

import click
from sqlalchemy import func, select

from portal.accounts.models import Account
from portal.accounts.operations import create_admin, set_password
from portal.accounts.sessions import purge_sessions
from portal.core.db import db
from portal.core.errors import UserError
from portal.core.ratelimit import purge_rate_limit_hits


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
    try:
        create_admin(username, password, actor="cli")
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    click.echo(f"Platform admin {username} created.")


@account_cli.command("set-password")
@click.argument("username")
@click.option("--password-env", metavar="VARIABLE")
def set_password_command(username, password_env):
    """Set a new local password (and lift a lockout)."""
    account = db.session.scalar(
        select(Account).where(func.lower(Account.username) == username.lower())
    )
    if account is None:
        raise click.ClickException(f"No account named {username!r}.")
    try:
        set_password(account, _password(password_env), actor="cli")
        db.session.commit()
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Password of {username} set.")


@account_cli.command("purge-sessions")
def purge_sessions_command():
    """Delete login sessions begun more than the lifetime and a day ago (the scheduler does
    this every hour), and rate-limit counts older than a minute."""
    sessions, hits = purge_sessions(), purge_rate_limit_hits()
    db.session.commit()
    click.echo(f"{sessions} login session(s) and {hits} rate-limit count(s) purged.")


def _password(variable: str | None) -> str:
    if variable:
        value = os.environ.get(variable)
        if not value:
            raise click.ClickException(f"The environment variable {variable} is empty or unset.")
        return value
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)
