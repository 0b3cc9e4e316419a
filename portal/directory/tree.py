"""The organisation tree of a customer, shaped for display: nesting and person counts."""

import re
from dataclasses import dataclass, field

from sqlalchemy import select

from portal.core.db import db
from portal.directory.models import Customer, OrgUnit
from portal.directory.queries import unit_person_counts

_DIGITS = re.compile(r"(\d+)")


@dataclass(slots=True)
class TreeNode:
    id: int
    parent_id: int | None
    number: str | None
    name: str
    kind: str
    is_active: bool
    depth: int
    direct: int = 0  # active persons directly in the unit
    branch: int = 0  # active persons in the unit and everything below it
    children: list["TreeNode"] = field(default_factory=list)


def unit_tree(customer: Customer) -> tuple[list[TreeNode], dict[int, TreeNode]]:
    """The customer's top units (normally its root alone) and every node by unit id.

    One query loads the units in path order, so a parent always comes before its children;
    the nesting is built from parent_id and the branch totals are summed bottom-up.
    """
    rows = db.session.execute(
        select(
            OrgUnit.id,
            OrgUnit.parent_id,
            OrgUnit.number,
            OrgUnit.name,
            OrgUnit.kind,
            OrgUnit.is_active,
            OrgUnit.depth,
        )
        .where(OrgUnit.customer_id == customer.id)
        .order_by(OrgUnit.path)
    )
    counts = unit_person_counts(customer)

    nodes: dict[int, TreeNode] = {}
    order: list[TreeNode] = []
    for row in rows:
        node = TreeNode(*row, direct=counts.get(row.id, (0, 0))[0])
        nodes[node.id] = node
        order.append(node)

    tops = []
    for node in order:
        parent = nodes.get(node.parent_id)
        (parent.children if parent else tops).append(node)

    for node in reversed(order):
        node.branch = node.direct + sum(child.branch for child in node.children)
        node.children.sort(key=_display_order)
    return tops, nodes


def ancestors(unit: OrgUnit) -> list[OrgUnit]:
    """The unit's ancestors and itself, from the top, read from its materialised path."""
    ids = [int(part) for part in unit.path.strip("/").split("/") if part]
    if not ids:
        return [unit]
    query = select(OrgUnit).where(OrgUnit.id.in_(ids)).order_by(OrgUnit.depth)
    return list(db.session.scalars(query))


def unit_by_number(customer: Customer, number: str) -> OrgUnit | None:
    query = select(OrgUnit).where(
        OrgUnit.customer_id == customer.id, OrgUnit.number == number.strip()
    )
    return db.session.scalar(query)


def _display_order(node: TreeNode) -> tuple:
    # Active units first, then by name, so a department reads like the company's own chart.
    return (not node.is_active, _natural(node.name), _natural(node.number or ""))


def _natural(text: str) -> list:
    """A sort key that puts 'Team 9' before 'Team 10'."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in _DIGITS.split(text.lower())
        if part
    ]
