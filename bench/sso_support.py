"""What the SSO benchmarks share: their arguments, their database and percentiles."""

import argparse
from pathlib import Path

from tests.servers.postgres import PostgresServer


def login_arguments(description: str, *, baseline: int | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--url", help="An empty database (migrated here).")
    parser.add_argument("--postgres", action="store_true", help="A throw-away PostgreSQL.")
    parser.add_argument("--logins", type=int, default=40)
    if baseline is not None:
        parser.add_argument(
            "--baseline", type=int, default=baseline, help="Responses the slow baseline checks."
        )
    return parser.parse_args()


def bench_database(args: argparse.Namespace, folder: Path, name: str) -> str:
    """The database URL to measure on: --url, a throw-away PostgreSQL (stopped at exit by
    its own atexit hook), or a SQLite file in `folder`."""
    if args.postgres:
        server = PostgresServer()
        server.start()
        return server.create_database(name)
    return args.url or f"sqlite:///{folder / 'kursa.db'}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
