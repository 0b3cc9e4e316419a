"""Benchmark of a full LDAP sync: 20,000 users from a real slapd, beside ldapsearch.

Prints ldapsearch's time to page through the same entries (the baseline, measured in the same
run) and Kursa's first and unchanged full syncs: the duration the run report records (read,
plan and apply) and the wall time, with ratios, where the recorded time went (reading the
directory, planning, applying, the rest of the run), and the sync process's peak RSS.

    .venv/bin/python bench/ldap_bench.py [--users 20000]

Targets (issue 3): each sync's recorded duration <= 4 x ldapsearch; peak RSS <= 200 MB.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.slapd import (  # noqa: E402
    ORG_BASE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SlapdServer,
    ou_dn,
    to_ldif,
    user_dn,
)

OUS = ("Salg", "Salg/Nord", "Salg/Syd", "Drift", "Drift/Lager", "Økonomi", "Økonomi/Løn")
ATTRIBUTES = ("uid", "givenName", "sn", "mail", "employeeNumber", "entryUUID", "modifyTimestamp")


def entries(users: int):
    yield ORG_BASE, {"objectClass": [b"organizationalUnit"], "ou": ["Organisation på Ærø".encode()]}
    for path in OUS:
        yield (
            ou_dn(path),
            {"objectClass": [b"organizationalUnit"], "ou": [path.split("/")[-1].encode()]},
        )
    for n in range(users):
        uid, path = f"b{n:06d}", OUS[n % len(OUS)]
        yield (
            user_dn(uid, path),
            {
                "objectClass": [b"inetOrgPerson"],
                "uid": [uid.encode()],
                "cn": [b"Bench Person"],
                "givenName": [b"Bench"],
                "sn": [f"Person{n % 97}".encode()],
                "mail": [f"{uid}@example.test".encode()],
                "employeeNumber": [str(n).encode()],
            },
        )


def ldapsearch(uri: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            "ldapsearch",
            "-x",
            "-LLL",
            "-H",
            uri,
            "-D",
            SERVICE_DN,
            "-w",
            SERVICE_PASSWORD,
            "-b",
            ORG_BASE,
            "-E",
            "pr=500/noprompt",
            "(objectClass=inetOrgPerson)",
            *ATTRIBUTES,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def timed(module, name: str, spent: dict) -> None:
    """Wrap module.name so that the time spent in it adds up under spent[name]."""
    inner = getattr(module, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

    setattr(module, name, wrapper)


def kursa_sync(uri: str, database: Path) -> dict:
    """Run inside a child process: migrate, add the source, sync twice."""
    import flask_migrate

    import sync.runs
    import sync.sources.ldap.operations
    from app import create_app
    from portal.core.db import db
    from portal.directory.operations import create_customer
    from sync.models import SyncSource
    from sync.sources.ldap.operations import add_ldap_source, sync_source

    # The breakdown: where sync_source and run_source look these up when they call them.
    spent: dict[str, float] = {}
    timed(sync.sources.ldap.operations, "_read", spent)
    timed(sync.runs, "plan", spent)
    timed(sync.runs, "apply_changes", spent)

    app = create_app(
        {
            "database": {"url": f"sqlite:///{database}"},
            "web": {"secret_key": "bench"},
            "log": {"level": "WARNING"},
        },
        environ={},
    )
    figures = {}
    with app.app_context():
        flask_migrate.upgrade(revision="heads")
        customer = create_customer("bench", "Bench", actor="bench")
        settings = {
            "uri": uri,
            "bind_dn": SERVICE_DN,
            "user_bases": [ORG_BASE],
            "org_from": "ou",
            "org_base": ORG_BASE,
        }
        source = add_ldap_source(
            customer,
            "bench",
            profile="openldap",
            settings=settings,
            password=SERVICE_PASSWORD,
            actor="bench",
        )
        db.session.commit()
        for phase in ("first", "unchanged"):
            spent.clear()
            started = time.perf_counter()
            run = sync_source(db.session.get(SyncSource, source.id), actor="bench", full=True)
            assert run.status == "applied", (run.status, run.error)
            figures[phase] = {
                "wall": time.perf_counter() - started,
                "recorded": run.duration_ms / 1000,
                "created": run.counts["persons"]["created"],
                "read": spent.get("_read", 0.0),
                "plan": spent.get("plan", 0.0),
                "apply": spent.get("apply_changes", 0.0),
            }
    figures["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs against the same server, each with its own"
        " baseline and a fresh database (a shared machine's load varies from run to run)",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(kursa_sync(args.child[0], Path(args.child[1]))))
        return

    server = SlapdServer(to_ldif(entries(args.users))).start()
    try:
        ldapsearch(server.uri)  # warm the server's caches, as Kursa's first run would not
        for number in range(1, args.repeat + 1):
            if args.repeat > 1:
                print(f"-- run {number} of {args.repeat}")
            report(args.users, *measure(server.uri))
    finally:
        server.stop()


def measure(uri: str) -> tuple[float, dict]:
    """ldapsearch's best of three, then both syncs in a child process on a fresh database."""
    baseline = min(ldapsearch(uri) for _ in range(3))
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run(
            [sys.executable, __file__, "--child", uri, str(Path(folder) / "k.db")],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
    if result.returncode != 0:
        sys.exit(result.stderr[-4000:])
    return baseline, json.loads(result.stdout.strip().splitlines()[-1])


def report(users: int, baseline: float, figures: dict) -> None:
    print(f"Full LDAP sync of {users:,} users from slapd (SQLite)")
    print(f"baseline ldapsearch, paged 500: {baseline:.3f} s")
    print(f"{'phase':<10} {'recorded':>9} {'x base':>7} {'wall':>7} {'x base':>7}  target <= 4.0")
    for phase in ("first", "unchanged"):
        f = figures[phase]
        verdict = "ok" if f["recorded"] <= 4 * baseline else "MISSED"
        print(
            f"{phase:<10} {f['recorded']:>8.3f}s {f['recorded'] / baseline:>7.2f} "
            f"{f['wall']:>6.2f}s {f['wall'] / baseline:>7.1f}  {verdict}"
        )
    for phase in ("first", "unchanged"):
        f = figures[phase]
        rest = f["recorded"] - f["read"] - f["plan"] - f["apply"]
        print(
            f"{phase:<10} read {f['read']:.2f}s  plan {f['plan']:.2f}s  "
            f"apply {f['apply']:.2f}s  rest of the run {rest:.2f}s"
        )
    rss = figures["rss_mb"]
    print(
        f"peak RSS of the sync process: {rss:.0f} MB (target <= 200)"
        f"  {'ok' if rss <= 200 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
