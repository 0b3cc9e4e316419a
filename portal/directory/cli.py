"""`flask customer ...` and `flask directory export` (the sync adds import, approve, revert)."""

import json

import click
from sqlalchemy import select

from portal.core.cli import refusals
from portal.core.db import db
from portal.directory.lookups import require_customer
from portal.directory.models import OrgUnit, Person
from portal.directory.operations import create_customer, set_creating_persons_at_login

CLI_ACTOR = "cli"


@click.group("customer", help="Manage customers (tenants).")
def customer_cli():
    pass


@customer_cli.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="The customer's display name.")
@click.option("--username-prefix", default="", help="Added to usernames that lack it, e.g. ACME_.")
@click.option(
    "--match-by",
    type=click.Choice(["number", "name"]),
    default="number",
    show_default=True,
    help="Match persons to units by division number or name.",
)
def create_customer_command(slug, name, username_prefix, match_by):
    """Create customer SLUG with its root unit."""
    with refusals():
        customer = create_customer(
            slug, name, actor=CLI_ACTOR, username_prefix=username_prefix, match_by=match_by
        )
        db.session.commit()
    click.echo(f"Customer {customer.slug} created (id {customer.id}).")


@customer_cli.command("set")
@click.argument("slug")
@click.option(
    "--create-persons-at-login",
    type=click.Choice(["on", "off"]),
    required=True,
    help="Whether a first SSO login of someone not in the directory creates the person "
    "(for customers without a directory sync; off by default).",
)
def set_customer_command(slug, create_persons_at_login):
    """Change a setting of customer SLUG."""
    with refusals():
        customer = require_customer(slug)
    enabled = create_persons_at_login == "on"
    set_creating_persons_at_login(customer, enabled, actor=CLI_ACTOR)
    db.session.commit()
    click.echo(f"Customer {slug}: persons are {'' if enabled else 'not '}created at first login.")


@click.group("directory", help="The organisation tree and its persons.")
def directory_cli():
    pass


@directory_cli.command("export")
@click.option("--customer", "slug", required=True, help="The customer's slug.")
@click.option("--json", "as_json", is_flag=True, required=True, help="Print JSON (required).")
def export_command(slug, as_json):
    """Print a customer's units and persons as JSON."""
    with refusals():
        customer = require_customer(slug)
    click.echo(json.dumps(export_directory(customer), ensure_ascii=False, indent=2))


def export_directory(customer) -> dict:
    units = db.session.execute(
        select(
            OrgUnit.id,
            OrgUnit.number,
            OrgUnit.name,
            OrgUnit.parent_id,
            OrgUnit.kind,
            OrgUnit.is_active,
        )
        .where(OrgUnit.customer_id == customer.id, OrgUnit.id != customer.root_unit_id)
        .order_by(OrgUnit.path)
    ).all()
    number_of = {u.id: u.number for u in units}
    persons = db.session.execute(
        select(
            Person.username,
            Person.first_name,
            Person.last_name,
            Person.email,
            Person.employee_number,
            Person.unit_id,
            Person.is_active,
        )
        .where(Person.customer_id == customer.id)
        .order_by(Person.username)
    ).all()
    return {
        "units": [
            {
                "number": u.number,
                "name": u.name,
                "parent": number_of.get(u.parent_id),
                "kind": u.kind,
                "active": u.is_active,
            }
            for u in units
        ],
        "persons": [
            {
                "username": p.username,
                "first_name": p.first_name,
                "last_name": p.last_name,
                "email": p.email,
                "employee_number": p.employee_number,
                "unit": number_of.get(p.unit_id),
                "active": p.is_active,
            }
            for p in persons
        ],
    }
