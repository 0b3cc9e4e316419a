"""A branch (a unit and everything below it) is one range query on the path index."""

from sqlalchemy import select, text

from portal.core.db import db
from portal.directory.models import OrgUnit
from portal.directory.queries import branch_persons, branch_units

UNITS = [
    ["1", "A", "", ""],
    ["2", "B", "1", ""],
    ["3", "C", "2", ""],
    ["10", "D", "", ""],
    ["11", "E", "10", ""],
]
PERSONS = [["u1", "Ida", "Lund", "", "", "3"], ["u2", "Bo", "Holm", "", "", "11"]]


def test_branch_contains_exactly_the_subtree(customer, import_csv):
    import_csv(customer, UNITS, PERSONS)
    one = db.session.scalar(select(OrgUnit).where(OrgUnit.number == "1"))
    # '/r/1/' must not match the sibling whose id starts with the same digits ('/r/10/').
    assert [u.number for u in db.session.scalars(branch_units(one))] == ["1", "2", "3"]
    assert [p.username for p in db.session.scalars(branch_persons(one))] == ["u1"]


def test_branch_query_uses_the_path_index(customer, import_csv, app):
    import_csv(customer, UNITS, PERSONS)
    one = db.session.scalar(select(OrgUnit).where(OrgUnit.number == "1"))
    statement = branch_units(one).compile(db.engine, compile_kwargs={"literal_binds": True})
    if app.config["KURSA_ENGINE"] == "sqlite":
        plan = db.session.execute(text(f"EXPLAIN QUERY PLAN {statement}")).all()
        assert any("USING INDEX ix_org_units_path" in row[-1] for row in plan), plan
    else:
        db.session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(r[0] for r in db.session.execute(text(f"EXPLAIN {statement}")))
        assert "ix_org_units_path" in plan, plan
        (condition,) = [line for line in plan.splitlines() if "Index Cond" in line]
        assert "path" in condition and ">=" in condition and "<" in condition, plan
