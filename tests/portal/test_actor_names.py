"""How pages name whoever did something: an account by its person's name or its username,
never with the 'account:' prefix the audit log keeps; other actors as they are."""

import pytest

from portal.accounts.queries import actor_name
from tests.courses import helpers

acme, unit, person, account_of = helpers.acme, helpers.unit, helpers.person, helpers.account_of


@pytest.mark.parametrize(
    ("actor", "shown"),
    [
        ("account:u202", "Finn Juul"),  # an account linked to a person
        ("account:root-admin", "root-admin"),  # a platform admin: no person
        ("account:gone", "gone"),  # an account deleted since: its username
        ("cli", "cli"),
        ("scheduler", "scheduler"),
        ("", ""),
        (None, ""),
    ],
)
def test_an_actor_is_named_without_the_account_prefix(app, admin, account_of, actor, shown):
    account_of("finn")

    with app.test_request_context():
        assert actor_name(actor) == shown
