"""The pages in a real browser at phone width: nothing is wider than a 375 px screen.

Starts the portal on a local port and headless Chromium speaking the DevTools protocol over a
pipe (no extra Python package). Skipped, with the reason shown, where Chromium is missing.
Set KURSA_SCREENSHOTS to a folder to keep a screenshot of each page, to look at by eye.
"""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from portal.core.db import db
from portal.directory.models import Person
from sync.runs import FileInput, import_files
from tests.conftest import ADMIN_PASSWORD, ORG_HEADER, PERSON_HEADER, csv_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")

UNITS = [
    ["10", "Sales and Marketing Scandinavia", "", "department"],
    ["20", "Department of Customer Relationship Management and Aftersales", "", "department"],
] + [[str(100 + i), f"Regional Sales Office Number {i}", "10", "location"] for i in range(8)]
PERSONS = [
    [
        f"emp{i:04d}",
        f"Marie-Louise{i}",
        f"Christensen-Østergaard{i}",
        f"m{i}@example.test",
        f"E-{i:05d}",
        str(100 + i % 8),
    ]
    for i in range(30)
]


class Browser:
    """Just enough of the DevTools protocol: one page, navigate, evaluate."""

    def __init__(self, tmp_path):
        read_commands, self._to_browser = os.pipe()
        self._from_browser, write_replies = os.pipe()
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                f"--user-data-dir={tmp_path / 'chromium'}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            pass_fds=(3, 4),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: _as_fds_3_and_4(read_commands, write_replies),
        )
        os.close(read_commands)
        os.close(write_replies)
        self._buffer, self._next_id, self.session = b"", 0, None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=375,
            height=800,
            deviceScaleFactor=1,
            mobile=True,
        )

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply
                return reply["result"]

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 65536)
            assert chunk, "Chromium closed the pipe"
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)}")

    def wait_for(self, condition: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(f"document.readyState === 'complete' && ({condition})"):
            assert time.monotonic() < deadline, f"timed out waiting for {condition}"
            time.sleep(0.05)

    def screenshot(self, path) -> None:
        """The whole page as a PNG, not only the first screenful."""
        height = self.evaluate("document.documentElement.scrollHeight")
        shot = self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": 375, "height": height, "scale": 1},
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


def _as_fds_3_and_4(commands: int, replies: int) -> None:
    """In the child: the pipe ends where Chromium's --remote-debugging-pipe expects them."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands, replies)]
    os.dup2(high[0], 3)
    os.dup2(high[1], 4)


@pytest.fixture
def served(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path):
    browser = Browser(tmp_path)
    yield browser
    browser.close()


def test_pages_fit_a_phone_screen(app, served, browser, customer, admin, import_csv):
    import_csv(customer, UNITS, PERSONS)
    persons = PERSONS[:10] + [["0101901234", "Eva", "Gram", "", "", "10"]]
    run = import_files(  # the report's Files card with names as a file drop gives them
        customer,
        FileInput("organisationsenheder_20261204.csv", csv_bytes([ORG_HEADER, *UNITS])),
        FileInput("medarbejdere_20261204.csv", csv_bytes([PERSON_HEADER, *persons])),
        actor="test",
    )

    person_id = db.session.scalar(select(Person.id).where(Person.username == "emp0001"))

    browser.open(f"{served}/login")
    browser.evaluate(
        f"document.querySelector('#username').value = {json.dumps(admin.username)};"
        f"document.querySelector('#password').value = {json.dumps(ADMIN_PASSWORD)};"
        "document.querySelector('form.stack-form').submit();"
    )
    browser.wait_for("location.pathname === '/'")

    for path in (
        "/",
        "/persons",
        "/persons?status=all",
        "/sync/runs",
        f"/sync/runs/{run.id}",
        "/sync/upload",
        f"/persons/{person_id}",
    ):
        browser.open(served + path)
        width = browser.evaluate("document.documentElement.scrollWidth")
        assert browser.evaluate("document.title") != "Sorry · Kursa", path
        assert width <= 375, f"{path} is {width} px wide on a 375 px screen"
        assert browser.evaluate("window.innerWidth") == 375
        assert browser.evaluate(WIDEST) <= 375, f"an element of {path} is wider than the screen"
        if os.environ.get("KURSA_SCREENSHOTS"):
            name = path.strip("/").replace("/", "-").replace("?", "-") or "tree"
            browser.screenshot(Path(os.environ["KURSA_SCREENSHOTS"]) / f"{name}.png")

    browser.open(f"{served}/sync/runs/{run.id}")
    assert browser.evaluate("getComputedStyle(document.querySelector('thead')).display") == "none"

    browser.open(f"{served}/")
    assert browser.evaluate(COUNTS_OFF_THE_NAME_LINE) == []
    browser.open(f"{served}/persons")
    assert browser.evaluate(PLACEHOLDER_OVERFLOW) <= 0


# The right edge of the element reaching furthest right (one can overflow its card while the
# page itself keeps its width).
WIDEST = """
Math.max(...[...document.querySelectorAll('main *')].map(e => e.getBoundingClientRect().right))
"""

# The tree rows whose count badge is not on the first line of the unit's name.
COUNTS_OFF_THE_NAME_LINE = """
[...document.querySelectorAll('#tree .unit')].filter(function (unit) {
  var name = unit.querySelector('.unit-name').getBoundingClientRect();
  var line = parseFloat(getComputedStyle(unit.querySelector('.unit-name')).lineHeight);
  return unit.querySelector('.count').getBoundingClientRect().top >= name.top + line;
}).map(function (unit) { return unit.querySelector('.unit-name').textContent; })
"""

# How many pixels of the search field's placeholder do not fit in the field.
PLACEHOLDER_OVERFLOW = """
(function () {
  var field = document.querySelector('input[name=q]'), style = getComputedStyle(field);
  var context = document.createElement('canvas').getContext('2d');
  context.font = style.font;
  var room = field.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return context.measureText(field.placeholder).width - room;
})()
"""
