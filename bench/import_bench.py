"""Benchmark of the file import: 100,000 persons in 5,000 units, on SQLite.

Prints, for each phase, the import's time and the process's peak RSS beside a baseline
measured in the same run: the same rows parsed with the csv module and written with
sqlite3 executemany (what the import cannot beat, since it does that and more).

    .venv/bin/python bench/import_bench.py [--persons 100000] [--units 5000]

Each phase runs in its own process, so each peak RSS is that phase's own.
Targets (issue 2): first import <= 5 s, unchanged <= 2 s, 1 % changed <= 2.5 s, RSS <= 300 MB.
"""

import argparse
import csv
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Fictional names made of syllables: letters only, like real names, so the username rules do
# their real work.
SYLLABLES = ["an", "be", "da", "el", "fri", "gun", "ho", "ib", "jo", "ka", "lo", "mi", "ne", "ol"]
FIRST = [a.title() + b for a in SYLLABLES for b in SYLLABLES]
LAST = [a.title() + b + "sen" for a in SYLLABLES for b in SYLLABLES]
TARGETS = {"first": 5.0, "unchanged": 2.0, "changed": 2.5}
RSS_TARGET_MB = 300


def write_files(folder: Path, persons: int, units: int, seed: int, change_share: float = 0.0):
    """The organisation tree is 5 levels deep; persons are spread over all units."""
    rng = random.Random(seed)
    org = folder / "org.csv"
    with org.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, delimiter=";")
        out.writerow(["Number", "Name", "Parent", "Kind"])
        for n in range(units):
            parent = "" if n < 10 else str(rng.randrange(max(n // 5, 1), n) if n >= 50 else n % 10)
            out.writerow([str(n), f"Unit {n}", parent, "department"])
    people = folder / "persons.csv"
    changed_rng = random.Random(seed + 1)
    with people.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, delimiter=";")
        out.writerow(
            ["Username", "First name", "Last name", "Email", "Employee number", "Division number"]
        )
        for n in range(persons):
            unit = n % units
            last = LAST[(n // len(FIRST)) % len(LAST)]
            if change_share and changed_rng.random() < change_share:
                unit = (unit + 1) % units
                last += "x"
            out.writerow(
                [
                    f"u{n:06d}",
                    FIRST[n % len(FIRST)],
                    last,
                    f"p{n}@example.test",
                    f"{n:07d}",
                    str(unit),
                ]
            )
    return org, people


def phase(name: str, folder: Path, database: Path) -> dict:
    """Run inside the child process: one import, timed; return figures."""
    from app import create_app
    from portal.directory.queries import customer_by_slug
    from sync.runs import FileInput, import_files

    app = create_app(
        {
            "database": {"url": f"sqlite:///{database}"},
            "web": {"secret_key": "bench"},
            "log": {"level": "WARNING"},
            "sync": {"guard_max_inactivations": 10**9, "guard_max_inactivation_share": 1.0},
        },
        environ={},
    )
    suffix = "-changed" if name == "changed" else ""
    with app.app_context():
        customer = customer_by_slug("bench")
        org = FileInput.from_path(folder / "org.csv")
        people = FileInput.from_path(folder / f"persons{suffix}.csv")
        started = time.perf_counter()
        run = import_files(customer, org, people, actor="bench")
        seconds = time.perf_counter() - started
        assert run.status == "applied", (run.status, run.error)
        return {
            "seconds": seconds,
            "counts": run.counts,
            "rss_mb": peak_rss_mb(),
            "run_ms": run.duration_ms,
        }


def baseline(folder: Path, database: Path) -> dict:
    """Plain csv parsing and sqlite3 executemany of the same rows."""
    started = time.perf_counter()
    conn = sqlite3.connect(database)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE units (number TEXT, name TEXT, parent TEXT, kind TEXT)")
    conn.execute(
        "CREATE TABLE persons (username TEXT, first TEXT, last TEXT, email TEXT, "
        "employee TEXT, unit TEXT)"
    )
    for table, file in (("units", "org.csv"), ("persons", "persons.csv")):
        with (folder / file).open(newline="", encoding="utf-8") as fh:
            rows = csv.reader(fh, delimiter=";")
            header = next(rows)
            marks = ",".join("?" * len(header))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.commit()
    conn.close()
    return {"seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: list[str]) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if result.returncode != 0:
        sys.exit(f"phase {args} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def prepare(database: Path) -> None:
    env = {**os.environ, "KURSA_DATABASE_URL": f"sqlite:///{database}"}
    for command in (["db", "upgrade"], ["customer", "create", "bench", "--name", "Bench"]):
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", *command],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--units", type=int, default=5_000)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        folder, database = Path(args.folder), Path(args.database)
        figures = (
            baseline(folder, database)
            if args.phase == "baseline"
            else phase(args.phase, folder, database)
        )
        print(json.dumps(figures))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_files(folder, args.persons, args.units, seed=1)
        changed = tempfile.TemporaryDirectory()
        _, people = write_files(
            Path(changed.name), args.persons, args.units, seed=1, change_share=0.01
        )
        people.rename(folder / "persons-changed.csv")
        database = folder / "kursa.db"
        prepare(database)
        common = ["--folder", str(folder)]
        base = child(["--phase", "baseline", *common, "--database", str(folder / "base.db")])
        results = {
            name: child(["--phase", name, *common, "--database", str(database)])
            for name in ("first", "unchanged", "changed")
        }
        changed.cleanup()

    print(f"Import of {args.persons:,} persons in {args.units:,} units (SQLite)")
    print(
        f"baseline (csv + sqlite3 executemany): {base['seconds']:.2f} s, "
        f"peak RSS {base['rss_mb']:.0f} MB"
    )
    print(f"{'phase':<10} {'seconds':>8} {'x base':>7} {'target':>7} {'RSS MB':>7}  changes")
    for name, fig in results.items():
        persons = fig["counts"]["persons"]
        summary = ", ".join(f"{k} {v}" for k, v in persons.items() if v)
        verdict = (
            "ok" if fig["seconds"] <= TARGETS[name] and fig["rss_mb"] <= RSS_TARGET_MB else "MISSED"
        )
        print(
            f"{name:<10} {fig['seconds']:>8.2f} {fig['seconds'] / base['seconds']:>7.1f} "
            f"{TARGETS[name]:>7.1f} {fig['rss_mb']:>7.0f}  {summary or 'none'}  {verdict}"
        )


if __name__ == "__main__":
    main()
