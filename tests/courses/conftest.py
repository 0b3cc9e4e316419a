from tests.courses.helpers import (  # noqa: F401
    account_of,
    acme,
    login_as,
    make_activity,
    person,
    unit,
)
