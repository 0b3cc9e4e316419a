"""`flask activity ...` (an exact contract: other tools rely on it).

Each command commits at its end; a refusal rolls back and exits 1 with the reason.
"""

import json

import click

from portal.core.cli import ID, refusals
from portal.core.db import db
from portal.core.errors import UserError
from portal.courses.models import Activity, ActivityTemplate, SignupStatus
from portal.courses.operations import cancel_signup, create_activity, sign_up
from portal.courses.queries import signups_in_order
from portal.courses.times import parse_local, shown, zone_of
from portal.directory.lookups import require_customer, require_person, require_unit
from portal.directory.models import Customer

CLI_ACTOR = "cli"


@click.group("activity", help="Activities and their signups.")
def activity_cli():
    pass


@activity_cli.command("create")
@click.option("--customer", "slug", required=True, help="The customer's slug.")
@click.option("--unit", "number", required=True, help="Number of the owner unit.")
@click.option("--title", required=True)
@click.option("--start", required=True, help="ISO time; without an offset, the customer's zone.")
@click.option("--end", required=True, help="ISO time; without an offset, the customer's zone.")
@click.option("--capacity", type=int, required=True, help="Seats.")
@click.option("--template", "template_id", type=ID, help="Id of the template it is made from.")
@click.option("--publish", is_flag=True, help="Publish at once (else a draft).")
@click.option("--json", "as_json", is_flag=True, help='Print {"id": ...}.')
def create_command(slug, number, title, start, end, capacity, template_id, publish, as_json):
    """Create an activity owned by a unit."""
    with refusals():
        customer = require_customer(slug)
        unit = require_unit(customer, number)
        zone = zone_of(customer)
        template = None
        if template_id is not None:
            template = db.session.get(ActivityTemplate, template_id)
            if template is None or template.customer_id != customer.id:
                raise UserError(f"{customer.slug} has no template {template_id}.")
        activity = create_activity(
            unit,
            title=title,
            starts_at=parse_local(start, zone),
            ends_at=parse_local(end, zone),
            capacity=capacity,
            template=template,
            publish=publish,
            actor=CLI_ACTOR,
        )
        db.session.commit()
    click.echo(json.dumps({"id": activity.id}) if as_json else f"Activity {activity.id} created.")


@activity_cli.command("signup")
@click.argument("activity_id", type=ID)
@click.argument("username")
@click.option("--json", "as_json", is_flag=True, help='Print {"status": ...}.')
def signup_command(activity_id, username, as_json):
    """Sign a person up (or put them on the waiting list)."""
    with refusals():
        signup = sign_up(activity_id, require_person(username), actor=CLI_ACTOR)
        db.session.commit()
    if as_json:
        click.echo(json.dumps({"status": signup.status}))
    elif signup.status == SignupStatus.WAITLISTED:
        click.echo(f"{username} is number {signup.position} on the waiting list.")
    else:
        click.echo(f"{username} is registered.")


@activity_cli.command("cancel")
@click.argument("activity_id", type=ID)
@click.argument("username")
def cancel_command(activity_id, username):
    """Cancel a person's signup; a freed seat goes to the first on the waiting list."""
    with refusals():
        cancel_signup(activity_id, require_person(username), actor=CLI_ACTOR)
        db.session.commit()
    click.echo(f"The signup of {username} is cancelled.")


@activity_cli.command("show")
@click.argument("activity_id", type=ID)
@click.option("--json", "as_json", is_flag=True, required=True, help="Print JSON (required).")
def show_command(activity_id, as_json):
    """Print an activity with its signups in order."""
    activity = db.session.get(Activity, activity_id)
    if activity is None:
        raise click.ClickException(f"There is no activity {activity_id}.")
    click.echo(json.dumps(activity_summary(activity), ensure_ascii=False, indent=2))


def activity_summary(activity: Activity) -> dict:
    """The activity as the CLI's JSON shows it; times in UTC and in the customer's zone."""
    zone = zone_of(db.session.get(Customer, activity.customer_id))
    return {
        "id": activity.id,
        "title": activity.title,
        "status": activity.status,
        "unit": activity.owner_unit.number,
        "starts_at": activity.starts_at.isoformat(),
        "ends_at": activity.ends_at.isoformat(),
        "starts_local": activity.starts_at.astimezone(zone).isoformat(),
        "ends_local": activity.ends_at.astimezone(zone).isoformat(),
        "shown": f"{shown(activity.starts_at, zone)} - {shown(activity.ends_at, zone)}",
        "capacity": activity.capacity,
        "template_id": activity.template_id,
        "signups": [
            {"username": username, "status": signup.status, "position": signup.position}
            for signup, username in signups_in_order(activity.id)
        ],
    }
