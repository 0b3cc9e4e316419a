"""The outbox sender against a real SMTP server (aiosmtpd on a loopback port)."""

import json
from datetime import timedelta
from email import message_from_bytes
from email.utils import parseaddr

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from portal.core.db import db, utcnow
from portal.courses.models import OutboxMessage
from portal.courses.operations import sign_up
from portal.courses.outbox import mail_settings, send_pending
from tests.servers.process import free_port


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts; `refuse` answers 550 to RCPT."""

    def __init__(self):
        self.messages = []
        self.refuse = False
        self.answer = "550 5.1.1 No such user"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return self.answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted"


@pytest.fixture
def smtp_server():
    """Start, stop and restart a real SMTP server on one loopback port."""

    class Server:
        def __init__(self):
            self.port, self.inbox, self.controller = free_port(), Inbox(), None

        def start(self):
            self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
            self.controller.start()

        def stop(self):
            if self.controller is not None:
                self.controller.stop()
                self.controller = None

    server = Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(app, smtp_server, monkeypatch):
    mail = app.config["KURSA"]["mail"]
    for key, value in {
        "host": "127.0.0.1",
        "port": smtp_server.port,
        "starttls": False,
        "from_address": "Kursa <kursa@example.test>",
        "timeout_seconds": 5,
        "max_attempts": 2,
    }.items():
        monkeypatch.setitem(mail, key, value)
    return mail_settings(app.config["KURSA"])


@pytest.fixture
def signed_up(make_activity, person):
    """Anna signs up for 'First aid': one confirmation waits in the outbox."""
    activity = make_activity("10", title="First aid")
    sign_up(activity.id, person("anna"), actor="test")
    db.session.commit()
    return activity


def outbox() -> list[OutboxMessage]:
    db.session.expire_all()
    return db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()


def test_a_message_arrives_with_recipient_and_subject(settings, smtp_server, signed_up):
    report = send_pending(settings)

    assert report.sent == 1
    [(recipients, mail)] = smtp_server.inbox.messages
    assert recipients == ["anna@acme.test"]
    assert parseaddr(mail["To"])[1] == "anna@acme.test"
    assert mail["Subject"] == "Signed up: First aid"
    assert "First aid" in mail.get_payload()
    [message] = outbox()
    assert message.sent_at is not None and message.attempts == 1
    assert send_pending(settings).sent == 0  # sent once only


def test_server_down_loses_nothing_and_restart_delivers_once(
    settings, smtp_server, signed_up, caplog
):
    smtp_server.stop()

    report = send_pending(settings)

    [message] = outbox()
    assert report.sent == 0 and report.retrying == 1
    assert message.sent_at is None and message.failed_at is None
    assert message.attempts == 1 and "unreachable" in message.last_error
    assert message.next_attempt_at > utcnow()
    assert "anna@acme.test" not in caplog.text

    smtp_server.start()
    assert send_pending(settings).sent == 0  # not due yet: it waits before trying again
    later = utcnow() + timedelta(hours=2)
    assert send_pending(settings, now=later).sent == 1
    assert send_pending(settings, now=later + timedelta(hours=2)).sent == 0

    assert len(smtp_server.inbox.messages) == 1
    [message] = outbox()
    assert message.sent_at is not None and message.attempts == 2


def test_a_long_outage_never_gives_a_message_up(settings, smtp_server, signed_up):
    smtp_server.stop()
    now = utcnow()

    for hour in range(10):
        send_pending(settings, now=now + timedelta(hours=hour))

    [message] = outbox()
    assert message.attempts == 10 and message.failed_at is None
    assert message.next_attempt_at <= now + timedelta(hours=10)  # the wait is capped at 1 h


def test_a_refused_recipient_is_given_up_after_max_attempts(settings, smtp_server, signed_up):
    smtp_server.inbox.refuse = True
    now = utcnow()

    first = send_pending(settings, now=now)
    second = send_pending(settings, now=now + timedelta(hours=2))

    assert (first.retrying, second.given_up) == (1, 1)
    [message] = outbox()
    assert message.failed_at is not None and message.sent_at is None
    assert message.attempts == 2 and message.last_error.startswith("550")
    assert send_pending(settings, now=now + timedelta(days=1)).given_up == 0


def test_a_temporary_refusal_is_retried_past_max_attempts(settings, smtp_server, signed_up):
    smtp_server.inbox.refuse, smtp_server.inbox.answer = True, "451 4.3.0 Try again later"
    now = utcnow()

    for hour in range(3):
        send_pending(settings, now=now + timedelta(hours=hour))
    smtp_server.inbox.refuse = False
    delivered = send_pending(settings, now=now + timedelta(hours=5))

    [message] = outbox()
    assert delivered.sent == 1 and message.attempts == 4 and message.failed_at is None


def test_cli_send_says_mail_is_off_without_a_host(app, signed_up):
    result = app.test_cli_runner().invoke(args=["outbox", "send"])

    assert result.exit_code == 0
    assert "Mail is off" in result.output and "1 messages wait" in result.output


def test_cli_send_delivers(app, settings, smtp_server, signed_up):
    result = app.test_cli_runner().invoke(args=["outbox", "send"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("1 sent, 0 to retry, 0 given up, 0 waiting.")
    assert len(smtp_server.inbox.messages) == 1


def give_up(settings, smtp_server, answer="550 5.1.1 <anna@acme.test>: Recipient unknown"):
    """Make the server refuse the pending message for good (settings allow two attempts)."""
    smtp_server.inbox.refuse, smtp_server.inbox.answer = True, answer
    now = utcnow()
    send_pending(settings, now=now)
    assert send_pending(settings, now=now + timedelta(hours=2)).given_up == 1
    smtp_server.inbox.refuse = False


def test_cli_failed_lists_given_up_messages_without_personal_data(
    app, settings, smtp_server, signed_up
):
    give_up(settings, smtp_server)
    [message] = outbox()

    result = app.test_cli_runner().invoke(args=["outbox", "failed", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {
            "id": message.id,
            "kind": "signup.registered",
            "created_at": message.created_at.isoformat(timespec="seconds"),
            "attempts": 2,
            "last_error": "550 5.1.1 <[address]>: Recipient unknown",
        }
    ]
    text = app.test_cli_runner().invoke(args=["outbox", "failed"]).output
    assert f"{message.id}  signup.registered" in text and "2 attempts" in text
    for personal in ("anna@acme.test", "Anna", "First aid"):
        assert personal not in result.output + text


def test_cli_failed_says_when_none_was_given_up(app, settings, signed_up):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["outbox", "failed", "--json"]).output.strip() == "[]"
    assert "No message was given up." in runner.invoke(args=["outbox", "failed"]).output


def test_cli_retry_puts_a_given_up_message_back_and_send_delivers_it(
    app, settings, smtp_server, signed_up
):
    give_up(settings, smtp_server)
    [message] = outbox()
    runner = app.test_cli_runner()

    result = runner.invoke(args=["outbox", "retry", str(message.id)])

    assert result.exit_code == 0, result.output
    assert f"Message {message.id} is back in the queue." in result.output
    [message] = outbox()
    assert (message.failed_at, message.next_attempt_at, message.attempts) == (None, None, 0)
    assert runner.invoke(args=["outbox", "failed", "--json"]).output.strip() == "[]"
    assert send_pending(settings).sent == 1
    assert len(smtp_server.inbox.messages) == 1


def test_cli_retry_refuses_a_message_not_given_up(app, settings, smtp_server, signed_up):
    [pending] = outbox()
    runner = app.test_cli_runner()

    for message_id in (pending.id, pending.id + 1000):
        result = runner.invoke(args=["outbox", "retry", str(message_id)])
        assert result.exit_code == 1
        assert f"No given-up message {message_id}." in result.output

    send_pending(settings)  # a sent message is not retried either
    assert runner.invoke(args=["outbox", "retry", str(pending.id)]).exit_code == 1
    assert len(smtp_server.inbox.messages) == 1
