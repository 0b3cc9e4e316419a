"""What the file drop page says about the files waiting in the inbox."""

import re

from tests.courses import helpers
from tests.sync import test_drop_upload as uploads
from tests.sync.test_drop_upload import ORG, PAGE, PERSONS, flashed, upload

acme, unit, person = helpers.acme, helpers.unit, helpers.person
account_of, login_as = helpers.account_of, helpers.login_as
inbox, hr = uploads.inbox, uploads.hr


def waiting_rows(page: str) -> dict[str, str]:
    rows = re.findall(r'<tr class="waiting">\s*<td[^>]*>([^<]+)</td>(.*?)</tr>', page, re.S)
    return {name: " ".join(rest.split()) for name, rest in rows}


def test_a_lone_file_waits_for_its_partner_and_one_byte_is_singular(inbox, hr):
    told = flashed(hr, upload(hr, ("organisation_2026-12-03.csv", ORG)))
    (inbox / "persons_20261204.csv").write_bytes(b"x")

    rows = waiting_rows(hr.get(PAGE).get_data(as_text=True))

    assert "Not imported yet: organisation_2026-12-03.csv waits for a persons file" in told
    assert "The next daily run imports" not in told
    assert "waits for a persons file with the stamp" in rows["organisation_2026-12-03.csv"]
    assert "waits for an organisation file" in rows["persons_20261204.csv"]
    assert '"Size">1 byte</td>' in rows["persons_20261204.csv"]
    assert f"{len(ORG)} bytes" in rows["organisation_2026-12-03.csv"]


def test_a_complete_pair_does_not_say_it_waits(inbox, hr):
    told = flashed(
        hr, upload(hr, ("organisation_2026-12-03.csv", ORG), ("persons_20261203.csv", PERSONS))
    )

    rows = waiting_rows(hr.get(PAGE).get_data(as_text=True))

    assert "The next daily run imports them." in told
    assert len(rows) == 2 and not any("waits for" in row for row in rows.values())
