"""`next` may lead only to a path of this site (the attack run's open redirects among them)."""

import pytest

from portal.core.urls import local_path


@pytest.mark.parametrize(
    "target",
    ["/", "/courses/", "/persons/7?tab=courses", "/courses/?q=first aid", "/søg/æøå"],
)
def test_paths_of_this_site_pass(target):
    assert local_path(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "//evil.test/x",
        "/\\evil.test",
        "/\t/evil.test/x",
        "/\n/evil.test",
        "/\r/evil.test",
        "/x\x00",
        "/\u2028/evil.test",
        "https://evil.test/",
        "evil.test",
        "javascript:alert(1)",
        "/" + "a" * 2000,
    ],
)
def test_anything_else_is_refused(target):
    assert local_path(target) is None


def test_the_login_page_does_not_send_a_logged_in_user_elsewhere(admin_client):
    answer = admin_client.get("/login?next=/%09/evil.test/x")
    assert answer.status_code == 302
    assert "evil.test" not in answer.headers["Location"]

    newline = admin_client.get("/login?next=/%0A/evil.test")  # was a 500
    assert newline.status_code == 302 and "evil.test" not in newline.headers["Location"]
