"""Every command that names a customer by slug refuses an unknown one with the same sentence."""

import pytest

UNKNOWN_CUSTOMER = "No customer with the slug 'nobody'; create it with 'flask customer create'."
ACTIVITY = ["--unit", "1", "--title", "T", "--capacity", "5"]
TIMES = ["--start", "2030-01-07T09:00", "--end", "2030-01-07T10:00"]


@pytest.mark.parametrize(
    "args",
    [
        ["customer", "set", "nobody", "--create-persons-at-login", "on"],
        ["directory", "export", "--customer", "nobody", "--json"],
        ["directory", "import", "--customer", "nobody", "--org", "o.csv", "--persons", "p.csv"],
        ["role", "grant", "u1", "hr", "--customer", "nobody"],
        ["activity", "create", "--customer", "nobody", *ACTIVITY, *TIMES],
        ["drop", "import", "nobody"],
        ["sso", "enable", "idp", "--customer", "nobody"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_an_unknown_customer_is_refused_alike_with_exit_1(app, args):
    result = app.test_cli_runner().invoke(args=args)

    assert result.exit_code == 1
    assert UNKNOWN_CUSTOMER in result.output
