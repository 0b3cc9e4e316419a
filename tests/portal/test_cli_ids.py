"""Commands taking an id refuse one no row can have as a usage error, never a database error."""

import pytest

from portal.core.ids import MAX_ID

HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    "args",
    [
        ["directory", "approve", HUGE],
        ["directory", "discard", HUGE],
        ["directory", "revert", HUGE],
        ["activity", "show", HUGE, "--json"],
        ["activity", "signup", HUGE, "u1"],
        ["activity", "cancel", HUGE, "u1"],
        ["outbox", "retry", HUGE],
        ["directory", "approve", "0"],
        ["directory", "approve", "--", "-3"],
        ["directory", "approve", "seven"],
        ["directory", "approve", str(MAX_ID + 1)],
    ],
    ids=lambda args: " ".join(args[:3]),
)
def test_an_id_no_row_can_have_is_a_usage_error(app, args):
    result = app.test_cli_runner().invoke(args=args)

    assert result.exit_code == 2, result.output
    assert "is not an id (a whole number from 1 to 2147483647)" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_id_in_range_that_names_nothing_is_refused_plainly(app):
    result = app.test_cli_runner().invoke(args=["directory", "approve", str(MAX_ID)])

    assert result.exit_code == 1
    assert "Traceback" not in result.output
