"""`flask drop serve`: the FTPS server of the file drop (pyftpdlib, TLS required by default).

Each customer logs in with its slug and the password `flask drop set-password` stored (hashed)
and lands in its own inbox, which is the whole of what it can see: pyftpdlib maps the session's
"/" to the inbox and refuses any path, `..` or symbolic link whose real path leaves it.

An upload is written as `.<name>.<token>.part` (unique to the upload: two uploads of one name
never share a file) and put in place as `<name>` only when the transfer ended cleanly (over
TLS: the client closed the data connection with a TLS close_notify); a dropped connection
deletes the part. A name already in the inbox is never replaced, neither by STOR nor by
RNTO; an upload that meets one at its end hears 450, not 226. Temporary names (`.x`, `~x`,
`*.part`, ...) are not listed and are refused by every command that names a file, so no
session sees or touches another's upload in progress. The daily import never reads a
temporary name, so it only ever sees whole files. Appending, resuming and STOU are refused.
With TLS required (the default), PROT C is refused too: every listing and upload goes over TLS.
"""

import logging
import os
import secrets

from flask import Flask
from OpenSSL import SSL
from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.log import logger as log
from pyftpdlib.servers import FTPServer
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from portal.core import audit
from portal.core.db import db
from portal.core.errors import UserError
from portal.directory.models import Customer
from sync import drop
from sync.drop import archive_of, inbox_of
from sync.models import DropAccount

logger = logging.getLogger(__name__)
# e: change folder, l: list, w: store, f: rename, d: delete (to correct a wrong upload).
PERMISSIONS = "elwfd"
# Commands whose argument names a file: a temporary name is refused for all of them.
NAMING_COMMANDS = {
    "RETR", "SIZE", "MDTM", "MFMT", "DELE", "RNFR", "RNTO", "STOR", "APPE", "LIST", "NLST",
    "MLST", "MLSD", "STAT", "CWD", "MKD", "RMD", "SITE CHMOD",
}  # fmt: skip
TEMPORARY_REFUSED = (
    "553 Names that start with . or ~ or end in .part, .tmp and the like are kept for uploads "
    "in progress; use the file's own name."
)
MIN_PASSWORD = 12
_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))


def set_drop_password(customer: Customer, password: str, *, actor: str) -> DropAccount:
    """Store the customer's FTPS password (hashed) and make its inbox and archive folders."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"The password needs at least {MIN_PASSWORD} characters.")
    account = db.session.get(DropAccount, customer.id)
    if account is None:
        account = DropAccount(customer_id=customer.id, password_hash="")
        db.session.add(account)
    account.password_hash = generate_password_hash(password)
    db.session.flush()
    for folder in (inbox_of(customer.slug), archive_of(customer.slug)):
        folder.mkdir(parents=True, exist_ok=True)
    audit.record(actor, "drop.password_set", "customer", customer.id, customer=customer.slug)
    logger.info("file drop password of customer %s set by %s", customer.slug, actor)
    return account


def check_drop_login(slug: str, password: str) -> bool:
    """True for the customer's slug and password; as slow for an unknown slug as a known one."""
    account_hash = db.session.scalar(
        select(DropAccount.password_hash).join(Customer).where(Customer.slug == slug)
    )
    if account_hash is None:
        check_password_hash(_DUMMY_HASH, password)
        return False
    return check_password_hash(account_hash, password)


class DropAuthorizer:
    """pyftpdlib's authorizer interface over the drop accounts of the database."""

    def __init__(self, app: Flask):
        self.app = app

    def validate_authentication(self, username, password, handler):
        with self.app.app_context():
            if not check_drop_login(username, password):
                raise AuthenticationFailed("Login incorrect.")

    def get_home_dir(self, username) -> str:
        with self.app.app_context():
            inbox = inbox_of(username)
        inbox.mkdir(parents=True, exist_ok=True)
        return str(inbox)

    def has_user(self, username) -> bool:
        with self.app.app_context():
            return (
                db.session.scalar(
                    select(DropAccount.customer_id).join(Customer).where(Customer.slug == username)
                )
                is not None
            )

    def has_perm(self, username, perm, path=None) -> bool:
        if perm not in PERMISSIONS:
            return False
        if path is None:
            return True
        home = os.path.realpath(self.get_home_dir(username))
        real = os.path.realpath(path)
        return real == home or real.startswith(home + os.sep)

    def get_perms(self, username) -> str:
        return PERMISSIONS

    def get_msg_login(self, username) -> str:
        return "Logged in. Upload the organisation and persons files here."

    def get_msg_quit(self, username) -> str:
        return "Goodbye."

    def impersonate_user(self, username, password):
        pass

    def terminate_impersonation(self, username):
        pass


class DropFilesystem(AbstractedFS):
    """The inbox as a session sees it: uploads in progress (temporary names) are not listed."""

    def listdir(self, path):
        return [name for name in super().listdir(path) if not drop.is_temporary(name)]


class DropDataHandler(TLS_DTPHandler):
    """A TLS data connection that tells a finished upload from a dropped one.

    In FTP a closed data connection ends an upload, so a client that vanishes mid-file looks
    like one that finished. Over TLS a client that finishes says so first (close_notify);
    an upload whose connection closed without it is treated as broken off. A finished upload
    is put in place here, before the reply: 226 only when it is in the inbox under its name.
    """

    def close(self):
        if self.receive and not self._closed and self.transfer_finished and self.file_obj:
            if self._ssl_established and not self.socket.get_shutdown() & SSL.RECEIVED_SHUTDOWN:
                self.transfer_finished = False
                self._resp = ("426 Connection closed without TLS close; upload again.", log.debug)
            elif refusal := self.cmd_channel.put_in_place(self.file_obj):
                self.transfer_finished = False
                self._resp = (refusal, log.debug)
        super().close()


class DropHandler(TLS_FTPHandler):
    """TLS FTP with uploads written under a temporary name until they are whole."""

    dtp_handler = DropDataHandler
    abstracted_fs = DropFilesystem
    tls_control_required = True
    tls_data_required = True
    max_login_attempts = 3
    banner = "Kursa file drop."

    login_seconds = 30

    def __init__(self, conn, server, ioloop=None):
        super().__init__(conn, server, ioloop)
        self._uploads: dict[str, str] = {}
        self._login_deadline = None

    def handle(self):
        # A connection that never logs in would hold its place for the whole idle timeout
        # (300 s; any command restarts it): a fixed deadline frees it.
        super().handle()
        if not self._closed and not self._closing:
            self._login_deadline = self.ioloop.call_later(
                self.login_seconds, self._login_too_slow, _errback=self.handle_error
            )

    def _login_too_slow(self):
        if not self.authenticated and not self._closed:
            logger.info("file drop: %s did not log in in time; closed", self.remote_ip)
            self.respond(f"421 Log in within {self.login_seconds} seconds; connection closed.")
            self.close_when_done()

    def close(self):
        if self._login_deadline is not None and not self._login_deadline.cancelled:
            self._login_deadline.cancel()
        super().close()

    def process_command(self, cmd, *args, **kwargs):
        if cmd in NAMING_COMMANDS and args and drop.is_temporary(os.path.basename(args[0])):
            if cmd in ("STOR", "APPE", "RNTO", "MKD"):
                self.respond(TEMPORARY_REFUSED)
            else:
                self.respond("550 No such file or directory.")
            return
        super().process_command(cmd, *args, **kwargs)

    def ftp_STOR(self, file, mode="w"):
        resuming, self._restart_position = self._restart_position, 0
        if "a" in mode or resuming:
            self.respond("550 Appending and resuming are not allowed; upload the whole file.")
            return None
        folder, name = os.path.split(file)
        if too_long := drop.name_too_long(name):
            self.respond(f"553 {too_long[0].upper()}{too_long[1:]}")
            return None
        if os.path.lexists(file):
            self.respond(f"553 {name} is in the inbox already; delete it first to upload it again.")
            return None
        part = os.path.join(folder, drop.part_name(name))
        self._uploads[part] = file
        return super().ftp_STOR(part, "x")  # a new file, never one that exists

    def ftp_PROT(self, line):
        # pyftpdlib demands PROT P only at PASV/PORT and accepts PROT C at any time, so PASV
        # under P followed by PROT C handed out a clear data channel (uploads and listings
        # in plain text). With TLS required, clear is refused outright.
        if self.tls_data_required and line.strip().upper() == "C":
            self.respond("534 A clear data channel is not allowed; use PROT P.")
            return
        super().ftp_PROT(line)

    def ftp_STOU(self, line):
        self.respond("550 STOU is not allowed; upload with a file name.")

    def ftp_RNTO(self, path):
        if self._rnfr and os.path.lexists(path):
            self._rnfr = None
            name = os.path.basename(path)
            self.respond(f"553 {name} is in the inbox already; it was not replaced.")
            return None
        return super().ftp_RNTO(path)

    def put_in_place(self, file_obj) -> str | None:
        """Give a whole upload its final name; a refusal reply when that cannot be done.

        A link, not a rename: it never replaces a file of that name that arrived meanwhile.
        """
        final = self._uploads.get(file_obj.name)
        if final is None:
            return None
        name = os.path.basename(final)
        try:
            file_obj.flush()
            os.fsync(file_obj.fileno())
            file_obj.close()
            os.link(file_obj.name, final)
        except FileExistsError:
            logger.warning("file drop %s: %s arrived meanwhile; refused", self.username, name)
            return f"450 {name} arrived in the inbox meanwhile; yours was not put in place."
        except OSError:
            logger.exception("file drop %s: %s could not be put in place", self.username, name)
            return "451 The file could not be put in place; upload it again."
        return None

    def on_file_received(self, file):
        final = self._uploads.pop(file, None)
        if final is not None:
            os.unlink(file)  # put_in_place linked it under its name
            logger.info("file drop %s received %s", self.username, os.path.basename(final))

    def on_incomplete_file_received(self, file):
        final = self._uploads.pop(file, None)
        if final is not None and os.path.exists(file):
            os.remove(file)
        logger.warning("file drop %s: an upload broke off or was refused; discarded", self.username)

    def on_login(self, username):
        if self._login_deadline is not None and not self._login_deadline.cancelled:
            self._login_deadline.cancel()
        logger.info("file drop login of %s from %s", username, self.remote_ip)

    def on_login_failed(self, username, password):
        logger.warning("file drop login refused for %r from %s", username, self.remote_ip)


def make_server(app: Flask, *, host: str | None = None, port: int | None = None) -> FTPServer:
    """The FTPS server on the configured (or given) address, not yet serving."""
    settings = app.config["KURSA"]["drop"]
    if not settings["cert_file"]:
        raise UserError("The file drop needs a TLS certificate: set [drop] cert_file and key_file.")
    handler = type(
        "ConfiguredDropHandler",
        (DropHandler,),
        {
            "authorizer": DropAuthorizer(app),
            "certfile": settings["cert_file"],
            "keyfile": settings["key_file"] or None,
            "ssl_context": None,  # each server builds its own from its certificate
            "tls_control_required": settings["tls_required"],
            "tls_data_required": settings["tls_required"],
            "passive_ports": _ports(settings["passive_ports"]),
            "masquerade_address": settings["masquerade_address"] or None,
            "login_seconds": settings["login_seconds"],
        },
    )
    handler.get_ssl_context()  # a missing or wrong certificate fails now, not at first login
    address = (host or settings["ftps_host"], settings["ftps_port"] if port is None else port)
    server = FTPServer(address, handler)
    # pyftpdlib's defaults (512 in all, any number from one address) let one address with a
    # few hundred idle connections lock every customer out.
    server.max_cons = settings["max_connections"]
    server.max_cons_per_ip = settings["max_connections_per_address"]
    return server


def _ports(text: str) -> list[int] | None:
    if not text:
        return None
    first, last = (int(x) for x in text.split("-"))
    return list(range(first, last + 1))
