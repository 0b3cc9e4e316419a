"""A throw-away OpenLDAP slapd for tests, in a temporary folder on a free loopback port.

`SlapdServer(ldif).start()` builds cn=config offline (slapadd -n0), loads the base entries and
`ldif` offline (slapadd -n1, far faster than ldapadd), then starts slapd in the foreground of
its own session and waits until an admin bind works. `stop()` ends it and removes the folder;
`kill()` ends it abruptly (SIGKILL) the way a crashed server would. Nothing is left running
when the tests fail or are killed: stop() is registered with atexit, and a watchdog shell
kills slapd and removes the folder once this process is gone (the pipe it reads closes).

The database carries a HARD size limit for everyone but the root DN: an unpaged search of more
than SIZE_LIMIT entries fails, so a source that forgets paging fails its tests.
"""

import atexit
import contextlib
import datetime
import io
import ipaddress
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import ldap
import ldap.dn
import ldif
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers.process import end_process, free_port
from tests.servers.watchdog import Watchdog

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA = Path("/etc/ldap/schema")
SUFFIX = "dc=example,dc=dk"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret"
SERVICE_DN = f"cn=kursa,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "kursa-bind-secret"
SIZE_LIMIT = 1000
START_ATTEMPTS = 3

WATCHDOG = """
cat >/dev/null
kill -9 "$0" 2>/dev/null
sleep 0.2
rm -rf "$1"
"""


class SlapdUnavailable(RuntimeError):
    """slapd is not installed or did not come up."""


class SlapdServer:
    def __init__(self, ldif: str = "", *, tls: bool = False, limits: str = ""):
        self.ldif = ldif
        # olcLimits of the database, e.g. f'dn.exact="{SERVICE_DN}" size.prtotal=700'
        self.limits = limits
        # StartTLS on self.uri and ldaps:// on self.ldaps_uri, with a certificate of a
        # throw-away CA (self.ca_file) for 127.0.0.1 and localhost
        self.tls = tls
        self.folder: Path | None = None
        self.port: int | None = None
        self.ldaps_port: int | None = None
        self.process: subprocess.Popen | None = None
        self._watchdog: Watchdog | None = None

    @property
    def ca_file(self) -> str:
        return str(self.folder / "ca.pem")

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    @property
    def ldaps_uri(self) -> str:
        if not self.tls:
            raise SlapdUnavailable("ldaps:// needs SlapdServer(..., tls=True)")
        return f"ldaps://127.0.0.1:{self.ldaps_port}/"

    def start(self) -> "SlapdServer":
        if not Path(SLAPD).exists():
            raise SlapdUnavailable(
                "slapd is not installed: apt-get install slapd ldap-utils "
                "(with debconf slapd/no_configuration true)"
            )
        self.folder = Path(tempfile.mkdtemp(prefix="kursa-slapd-"))
        atexit.register(self.stop)
        try:
            (self.folder / "slapd.d").mkdir()
            (self.folder / "db").mkdir()
            tls_settings = _make_certificates(self.folder) if self.tls else ""
            self._slapadd("0", _config(self.folder, tls_settings, self.limits))
            self._slapadd("1", _base_entries() + "\n" + self.ldif)
            for attempt in range(1, START_ATTEMPTS + 1):
                self.port = free_port()
                self.ldaps_port = free_port() if self.tls else None
                if self._start_process():
                    return self
                if attempt == START_ATTEMPTS:
                    raise SlapdUnavailable(self._log_tail())
        except BaseException:
            self.stop()
            raise
        return self

    def admin(self):
        """A connection bound as the root DN, for changing the directory in a test."""
        conn = ldap.initialize(self.uri)
        conn.simple_bind_s(ROOT_DN, ROOT_PASSWORD)
        return conn

    def kill(self) -> None:
        """End slapd at once (SIGKILL), as a crash or a pulled cable would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop slapd and remove its folder. Safe to call more than once."""
        if self.process is not None:
            end_process(self.process)
            self.process = None
        self._stop_watchdog()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)

    def _start_process(self) -> bool:
        ldapi = "ldapi://" + urllib.parse.quote(str(self.folder / "ldapi"), safe="")
        listen = [self.uri, ldapi] + ([self.ldaps_uri] if self.tls else [])
        self._stop_watchdog()
        self.process = subprocess.Popen(
            [SLAPD, "-d", "0", "-F", str(self.folder / "slapd.d"), "-h", " ".join(listen)],
            stdin=subprocess.DEVNULL,
            stdout=open(self.folder / "slapd.log", "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._start_watchdog()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # most likely the port was taken in the meantime
            if self._answers():
                return True
            time.sleep(0.02)
        self.kill()
        return False

    def _answers(self) -> bool:
        try:
            conn = ldap.initialize(self.uri)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 1.0)
            conn.simple_bind_s(ROOT_DN, ROOT_PASSWORD)
            conn.unbind_s()
            return True
        except ldap.LDAPError:
            return False

    def _start_watchdog(self) -> None:
        self._watchdog = Watchdog(WATCHDOG, str(self.process.pid), str(self.folder))

    def _stop_watchdog(self) -> None:
        # slapd is stopped already (or is stopped by the watchdog now), and the folder is
        # removed by whoever comes first.
        if self._watchdog is not None:
            self._watchdog.release()
            self._watchdog = None

    def _slapadd(self, database: str, ldif: str) -> None:
        result = subprocess.run(
            [SLAPADD, "-q", "-n", database, "-F", str(self.folder / "slapd.d")],
            input=ldif.encode(),
            capture_output=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise SlapdUnavailable(f"slapadd -n{database} failed: {result.stderr.decode()[-2000:]}")

    def _log_tail(self) -> str:
        log = self.folder / "slapd.log" if self.folder else None
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        return f"slapd did not come up:\n{tail}"


def other_ca_file(folder: Path) -> str:
    """The certificate of another throw-away CA (one that signed nothing slapd shows)."""
    folder.mkdir(parents=True, exist_ok=True)
    _make_certificates(folder)
    return str(folder / "ca.pem")


def _make_certificates(folder: Path) -> str:
    """A CA and a server certificate for 127.0.0.1; the cn=config lines that use them."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, key, signer, *, is_ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )
        if not is_ca:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer, hashes.SHA256())

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    ca = certificate(name("Kursa test CA"), name("Kursa test CA"), ca_key, ca_key, is_ca=True)
    server = certificate(name("127.0.0.1"), ca.subject, server_key, ca_key, is_ca=False)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return (
        f"olcTLSCACertificateFile: {folder}/ca.pem\n"
        f"olcTLSCertificateFile: {folder}/server.pem\n"
        f"olcTLSCertificateKeyFile: {folder}/server.key\n"
    )


def _config(folder: Path, tls_settings: str = "", limits: str = "") -> str:
    schemas = "\n".join((SCHEMA / f"{name}.ldif").read_text() for name in SCHEMA_NAMES)
    limits_line = f"olcLimits: {limits}\n" if limits else ""
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {folder}/slapd.pid
olcArgsFile: {folder}/slapd.args
olcLogLevel: none
{tls_settings}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{schemas}

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcRootDN: {ROOT_DN}
olcRootPW: {ROOT_PASSWORD}
olcDbDirectory: {folder}/db
olcDbMaxSize: 1073741824
olcDbNoSync: TRUE
olcDbIndex: objectClass eq
olcDbIndex: entryUUID,entryCSN eq
olcDbIndex: modifyTimestamp eq
olcDbIndex: uid,ou eq
olcSizeLimit: size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} size.prtotal=unlimited
{limits_line}olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
olcAccess: {{1}}to * by * read
olcLastMod: TRUE
"""


SCHEMA_NAMES = ("core", "cosine", "nis", "inetorgperson")


def _base_entries() -> str:
    return f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services

dn: {SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: kursa
userPassword: {SERVICE_PASSWORD}
"""


# -- the sample directory: nested OUs with æøå, more users than the hard size limit ----------

ORG_BASE = f"ou=Organisation på Ærø,{SUFFIX}"
EMPTY_BASE = f"ou=Tom afdeling,{SUFFIX}"
# (OU path below ORG_BASE, users in it); leaf OUs hold the users.
SAMPLE_OUS = (
    ("Økonomi", 0),
    ("Økonomi/Løn", 150),
    ("Økonomi/Bogføring", 150),
    ("Salg", 0),
    ("Salg/Nord", 160),
    ("Salg/Syd", 160),
    ("Drift og IT", 100),
    ("Drift og IT/Værksted", 160),
    ("Drift og IT/Værksted/Smørum", 160),
    ("Ledelse", 160),
)
SAMPLE_USERS = sum(count for _, count in SAMPLE_OUS)
# Loaded entries carry an old modifyTimestamp and entryCSN, so an incremental read sees only
# what a test changes (slapadd keeps operational attributes given in the LDIF).
LOADED_AT = b"20250101000000Z"
LOADED_CSN = b"20250101000000.000000Z#000000#000#000000"
FIRST_NAMES = ("Søren", "Åse", "Bjørn", "Mette", "Jens", "Kærsten", "Ødger", "Anna")
LAST_NAMES = ("Ærbø", "Møller", "Sørensen", "Ås", "Kjær", "Hansen")


def ou_dn(path: str) -> str:
    """'Salg/Nord' -> 'ou=Nord,ou=Salg,<ORG_BASE>' (escaped as a DN requires)."""
    rdns = [[("ou", part, 1)] for part in reversed(path.split("/"))]
    return ldap.dn.dn2str(rdns) + "," + ORG_BASE


def user_dn(uid: str, path: str) -> str:
    return f"uid={uid},{ou_dn(path)}"


def sample_entries() -> list[tuple[str, dict[str, list[bytes]]]]:
    entries = _sample_entries()
    for _, values in entries:
        values["modifyTimestamp"] = values["createTimestamp"] = [LOADED_AT]
        values["entryCSN"] = [LOADED_CSN]
    return entries


def _sample_entries() -> list[tuple[str, dict[str, list[bytes]]]]:
    entries = [
        (
            ORG_BASE,
            {"objectClass": [b"organizationalUnit"], "ou": ["Organisation på Ærø".encode()]},
        ),
        (EMPTY_BASE, {"objectClass": [b"organizationalUnit"], "ou": [b"Tom afdeling"]}),
    ]
    number = 0
    for index, (path, users) in enumerate(SAMPLE_OUS):
        name = path.split("/")[-1]
        entries.append(
            (ou_dn(path), {"objectClass": [b"organizationalUnit"], "ou": [name.encode()]})
        )
        for _ in range(users):
            number += 1
            uid = f"e{number:05d}"
            first = FIRST_NAMES[number % len(FIRST_NAMES)]
            last = LAST_NAMES[number % len(LAST_NAMES)]
            entries.append(
                (
                    user_dn(uid, path),
                    {
                        "objectClass": [b"inetOrgPerson"],
                        "uid": [uid.encode()],
                        "cn": [f"{first} {last}".encode()],
                        "givenName": [first.encode()],
                        "sn": [last.encode()],
                        "mail": [f"{uid}@example.dk".encode()],
                        "employeeNumber": [str(number).encode()],
                        "departmentNumber": [f"D{index:02d}".encode()],
                        "ou": [name.encode()],
                    },
                )
            )
    return entries


def to_ldif(entries) -> str:
    out = io.StringIO()
    writer = ldif.LDIFWriter(out)
    for dn, values in entries:
        writer.unparse(dn, values)
    return out.getvalue()


# -- pytest fixtures: import the *_fixture functions into a test module ----------------------


@pytest.fixture(scope="session", name="sample_ldif")
def sample_ldif_fixture() -> str:
    return to_ldif(sample_entries())


@pytest.fixture(scope="session", name="shared_slapd")
def shared_slapd_fixture(sample_ldif):
    """One server for the whole session; tests that change the directory take `slapd`."""
    server = SlapdServer(sample_ldif).start()
    yield server
    server.stop()


@pytest.fixture(name="slapd")
def slapd_fixture(sample_ldif):
    """A fresh server of the sample directory for one test (about 0.2 s)."""
    server = SlapdServer(sample_ldif).start()
    yield server
    server.stop()
