"""Who may see what. Every page and every CLI command acting for someone looks objects up
through here, so the branch rule lives in one place.

Roles are granted to a person at a unit and reach that unit's whole branch (its materialised
path is a prefix of every path below it). Platform admins reach everything. A person without a
role sees only what is theirs: their own signups and the catalogue of their unit and ancestors.

What each role reaches:
- persons and units: HR, IT admins and course admins (who sign persons of their branch up);
- sync runs, uploads and approvals: HR and IT admins granted at the customer's root unit,
  because a run reads and changes the whole customer, not a branch;
- categories, templates, activities: course admins (and HR, read-only) of the owner unit's
  branch; an employee sees a published activity owned by their unit or an ancestor, and
  whatever they signed up for (history stays readable once it is cancelled or completed);
- signups: the person signed up, course admins of the activity's branch, HR of the person's;
- roles: HR grants HR and course admin in its branch, IT admin only platform admins grant, and
  nobody grants a role to themselves on a page (the CLI is the platform operator's tool).
"""

import logging
from dataclasses import dataclass

from sqlalchemy import Select, false, func, or_, select, true

from portal.accounts.models import Account, Role, RoleGrant
from portal.core import audit
from portal.core.db import db
from portal.core.errors import Conflict, Forbidden, NotFound, UserError
from portal.core.ids import parse_id
from portal.courses.models import Activity, ActivityStatus, ActivityTemplate, Category, Signup
from portal.courses.queries import path_ids
from portal.directory.models import Customer, OrgUnit, Person
from portal.directory.queries import in_branch

DIRECTORY_ROLES = frozenset({Role.HR, Role.IT_ADMIN, Role.COURSE_ADMIN})
SYNC_ROLES = frozenset({Role.HR, Role.IT_ADMIN})
# Who starts on the organisation tree (a course admin starts on the activities they manage).
ORGANISATION_ROLES = frozenset({Role.HR, Role.IT_ADMIN})
COURSE_ROLES = frozenset({Role.COURSE_ADMIN, Role.HR})
COURSE_MANAGERS = frozenset({Role.COURSE_ADMIN})
# Who grants and revokes roles, within their own branch: HR (and platform admins).
ROLE_GRANTERS = frozenset({Role.HR})
# What HR grants. IT admin reaches the identity provider and directory source pages (who may
# log in as anyone, what the directory holds): only platform admins grant it, on the roles
# page or as the platform's operator with `flask role grant`.
HR_GRANTS = (Role.HR, Role.COURSE_ADMIN)
logger = logging.getLogger(__name__)
HIDDEN = "There is nothing here, or it is not yours to see."


@dataclass(frozen=True, slots=True)
class Reach:
    """One grant as the scope uses it: a role over the branch at `path`."""

    role: str
    customer_id: int
    unit_id: int
    path: str
    is_root: bool


@dataclass(frozen=True, slots=True)
class Scope:
    """What one account reaches: every branch per role, and the person it logs in as."""

    is_platform_admin: bool = False
    person_id: int | None = None
    person_customer_id: int | None = None
    person_path: str | None = None
    grants: tuple[Reach, ...] = ()

    def branches(self, roles, customer_id: int | None = None) -> list[Reach]:
        """The top-most granted branches for `roles` (a branch inside another is left out)."""
        found = sorted(
            (g for g in self.grants if g.role in roles),
            key=lambda g: g.path,
        )
        if customer_id is not None:
            found = [g for g in found if g.customer_id == customer_id]
        tops: list[Reach] = []
        for grant in found:
            if not any(grant.path.startswith(top.path) for top in tops):
                tops.append(grant)
        return tops

    def reaches(self, path: str, roles) -> bool:
        if self.is_platform_admin:
            return True
        return any(path.startswith(g.path) for g in self.grants if g.role in roles)

    def reaches_customer(self, customer_id: int, roles, *, whole: bool = False) -> bool:
        if self.is_platform_admin:
            return True
        return any(
            g.customer_id == customer_id and (g.is_root or not whole)
            for g in self.grants
            if g.role in roles
        )

    def path_condition(self, path_column, roles):
        """A SQL condition: `path_column` lies in one of the branches `roles` reach."""
        if self.is_platform_admin:
            return true()
        branches = self.branches(roles)
        if not branches:
            return false()
        return or_(*(in_branch(path_column, g.path) for g in branches))

    def audience_unit_ids(self) -> list[int]:
        """The ids of the person's unit and its ancestors, read from the materialised path:
        an activity owned by one of them is in the person's catalogue."""
        return path_ids(self.person_path) if self.person_path else []


def scope_of(account) -> Scope:
    """The scope of `account` (anonymous or None: reaches nothing). Two small queries."""
    if account is None or not getattr(account, "is_authenticated", False):
        return Scope()
    if getattr(account, "is_platform_admin", False):
        return Scope(is_platform_admin=True)
    person_id = getattr(account, "person_id", None)
    if person_id is None:
        return Scope()
    # A person the directory sync inactivated (they left) keeps their grants on record but
    # reaches nothing, from the next request on.
    row = db.session.execute(
        select(Person.customer_id, OrgUnit.path)
        .join(OrgUnit, Person.unit_id == OrgUnit.id)
        .where(Person.id == person_id, Person.is_active.is_(True))
    ).first()
    if row is None:
        return Scope()
    grants = db.session.execute(
        select(RoleGrant.role, OrgUnit.customer_id, OrgUnit.id, OrgUnit.path, OrgUnit.parent_id)
        .join(OrgUnit, RoleGrant.unit_id == OrgUnit.id)
        .where(RoleGrant.person_id == person_id, OrgUnit.customer_id == row.customer_id)
    )
    return Scope(
        person_id=person_id,
        person_customer_id=row.customer_id,
        person_path=row.path,
        grants=tuple(
            Reach(role, customer_id, unit_id, path, parent_id is None)
            for role, customer_id, unit_id, path, parent_id in grants
        ),
    )


def person_of(account) -> Person | None:
    """The person `account` logs in as, while active (platform admins usually are nobody).

    The rule of scope_of: a person the sync inactivated reaches nothing from the next request
    on, their own catalogue, signups and calendar included; pages that act for "me" ask here.
    """
    person_id = getattr(account, "person_id", None)
    if person_id is None or not getattr(account, "is_authenticated", False):
        return None
    person = db.session.get(Person, person_id)
    return person if person is not None and person.is_active else None


def visible_customers(account, *, roles=DIRECTORY_ROLES, whole: bool = False) -> Select:
    """The customers `account` reaches with one of `roles`, by name; `whole`: only those whose
    root unit it reaches (sync runs and imports concern the whole customer)."""
    query = select(Customer).order_by(Customer.name, Customer.id)
    scope = scope_of(account)
    if scope.is_platform_admin:
        return query
    ids = {g.customer_id for g in scope.grants if g.role in roles and (g.is_root or not whole)}
    return query.where(Customer.id.in_(ids)) if ids else query.where(false())


def visible_customer_ids(account, *, roles=DIRECTORY_ROLES, whole: bool = False) -> Select:
    """The ids of `visible_customers`, for `customer_id IN (...)` conditions."""
    query = visible_customers(account, roles=roles, whole=whole)
    return query.with_only_columns(Customer.id).order_by(None)


def may_see_customer(account, customer_id: int, *, roles=DIRECTORY_ROLES) -> bool:
    return customer_id is not None and scope_of(account).reaches_customer(customer_id, roles)


def visible_unit_condition(account, roles=DIRECTORY_ROLES):
    """A SQL condition on OrgUnit: the unit lies in a branch `account` reaches."""
    return scope_of(account).path_condition(OrgUnit.path, roles)


def visible_person_condition(account, roles=DIRECTORY_ROLES):
    """A SQL condition on Person: the person's unit lies in a branch `account` reaches."""
    scope = scope_of(account)
    if scope.is_platform_admin:
        return true()
    units = select(OrgUnit.id).where(scope.path_condition(OrgUnit.path, roles))
    return Person.unit_id.in_(units)


def get_visible(account, model, ident):
    """The object of `model` with primary key `ident`, or NotFound (404) when it does not
    exist or lies outside what `account` may see (both answer alike). `ident` may come from a
    query string or form: one that no row can have (not a number, too large) is not found."""
    key = parse_id(ident)
    obj = db.session.get(model, key) if key is not None else None
    if obj is None or not is_visible(scope_of(account), obj):
        raise NotFound(HIDDEN)
    return obj


def is_visible(scope: Scope, obj) -> bool:
    """The rule per kind of object; see the module's docstring."""
    if scope.is_platform_admin:
        return True
    if isinstance(obj, Customer):
        return scope.reaches_customer(obj.id, DIRECTORY_ROLES)
    if isinstance(obj, OrgUnit):
        return scope.reaches(obj.path, DIRECTORY_ROLES)
    if isinstance(obj, Person):
        return obj.id == scope.person_id or scope.reaches(obj.unit.path, DIRECTORY_ROLES)
    if isinstance(obj, Activity):
        return (
            scope.reaches(obj.owner_unit.path, COURSE_ROLES)
            or in_catalogue(scope, obj)
            or _signed_up(scope, obj)
        )
    if isinstance(obj, Signup):
        return (
            obj.person_id == scope.person_id
            or scope.reaches(obj.activity.owner_unit.path, COURSE_ROLES)
            or scope.reaches(obj.person.unit.path, frozenset({Role.HR}))
        )
    if isinstance(obj, Category | ActivityTemplate):
        return scope.reaches(obj.owner_unit.path, COURSE_ROLES)
    if isinstance(obj, RoleGrant):
        return scope.reaches(db.session.get(OrgUnit, obj.unit_id).path, ROLE_GRANTERS)
    # Whatever else belongs to a customer as a whole (sync runs): HR and IT at its root.
    customer_id = getattr(obj, "customer_id", None)
    return customer_id is not None and scope.reaches_customer(customer_id, SYNC_ROLES, whole=True)


def in_catalogue(scope: Scope, activity: Activity) -> bool:
    """A published activity owned by the person's unit or one of its ancestors."""
    return (
        activity.status == ActivityStatus.PUBLISHED
        and activity.owner_unit_id in scope.audience_unit_ids()
    )


def _signed_up(scope: Scope, activity: Activity) -> bool:
    """A person keeps seeing what they signed up for, once cancelled or completed too."""
    if scope.person_id is None:
        return False
    query = select(Signup.id).where(
        Signup.activity_id == activity.id, Signup.person_id == scope.person_id
    )
    return db.session.scalar(query.limit(1)) is not None


def may_sign_up_others(account, person: Person) -> bool:
    """HR and course admins sign up the persons of their branch (for what is offered to them)."""
    return scope_of(account).reaches(person.unit.path, {Role.HR, Role.COURSE_ADMIN})


def may_manage(account, obj) -> bool:
    """Course admins of the owner unit's branch (and platform admins) change course objects."""
    scope = scope_of(account)
    return scope.reaches(obj.owner_unit.path, COURSE_MANAGERS)


def chosen_customer(
    account, slug: str | None, *, roles=DIRECTORY_ROLES, whole: bool = False
) -> Customer | None:
    """The customer named by `slug`, or the first visible one when no slug is given."""
    query = visible_customers(account, roles=roles, whole=whole)
    if slug:
        customer = db.session.scalar(query.where(Customer.slug == slug))
        if customer is None:
            raise NotFound("There is no customer with that name, or it is not yours to see.")
        return customer
    return db.session.scalar(query.limit(1))


def grantable_roles(account) -> list[Role]:
    """The roles `account` may grant on the roles page: every role for platform admins,
    HR_GRANTS for HR, none for anyone else."""
    scope = scope_of(account)
    if scope.is_platform_admin:
        return list(Role)
    return list(HR_GRANTS) if holding(ROLE_GRANTERS)(scope) else []


def grant_role(person: Person, role: str, unit: OrgUnit, *, actor: str, granter=None) -> RoleGrant:
    """Grant `role` over `unit`'s branch to `person`, and give the person an account if they
    have none: without a password, since staff log in by SSO. Granting twice changes nothing.

    `granter` is the account granting on a page (the caller has checked that the unit and the
    person lie in its branch): nobody grants a role to themselves, and only grantable_roles.
    None is the platform's operator (`flask role grant`), who grants any role to anyone.
    """
    if role not in {r.value for r in Role}:
        raise UserError(f"{role!r} is not a role; choose one of {', '.join(r for r in Role)}.")
    if unit.customer_id != person.customer_id:
        raise UserError("The unit must belong to the person's own customer.")
    if granter is not None:
        _check_granter(granter, person, role)
    grant = db.session.scalar(
        select(RoleGrant).where(
            RoleGrant.person_id == person.id, RoleGrant.role == role, RoleGrant.unit_id == unit.id
        )
    )
    if grant is not None:
        return grant

    account = db.session.scalar(select(Account).where(Account.person_id == person.id))
    if account is None:
        if db.session.scalar(
            select(Account.id).where(func.lower(Account.username) == person.username.lower())
        ):
            raise Conflict(f"An account named {person.username!r} exists for someone else.")
        account = Account(username=person.username, person_id=person.id)
        db.session.add(account)
        db.session.flush()
        audit.record(actor, "account.created", "account", account.id, person=person.id)
    grant = RoleGrant(person_id=person.id, role=role, unit_id=unit.id, granted_by=actor)
    db.session.add(grant)
    db.session.flush()

    audit.record(actor, "role.granted", "person", person.id, role=role, unit=unit.id)
    logger.info("role %s at unit %s granted to person %s by %s", role, unit.id, person.id, actor)
    return grant


def _check_granter(account, person: Person, role: str) -> None:
    """Forbidden when `account` would raise its own rights or grant a role above its own."""
    if account.person_id is not None and account.person_id == person.id:
        logger.warning("account %s refused: granting %s to its own person", account.id, role)
        raise Forbidden("Nobody grants a role to themselves: ask another HR or a platform admin.")
    if role not in grantable_roles(account):
        logger.warning("account %s refused: granting %s to person %s", account.id, role, person.id)
        raise Forbidden(
            "HR grants the HR and course admin roles; only platform admins grant IT admin."
        )


def revoke_role(grant: RoleGrant, *, actor: str, revoker=None) -> None:
    """Take a role back. The account stays (it may hold other roles, or log in as staff).

    `revoker` is the account revoking on a page: it takes back only roles it may grant, so HR
    cannot remove the IT admins that platform admins appointed. None is `flask` (any role).
    """
    person_id, role, unit_id = grant.person_id, grant.role, grant.unit_id
    if revoker is not None and role not in grantable_roles(revoker):
        logger.warning("account %s refused: revoking %s of person %s", revoker.id, role, person_id)
        raise Forbidden(
            "HR revokes the HR and course admin roles; only platform admins revoke IT admin."
        )
    db.session.delete(grant)
    db.session.flush()

    audit.record(actor, "role.revoked", "person", person_id, role=role, unit=unit_id)
    logger.info("role %s at unit %s revoked from person %s by %s", role, unit_id, person_id, actor)


def holding(roles, *, whole: bool = False):
    """A predicate on a Scope: it holds one of `roles` somewhere (`whole`: at a customer's
    root). Navigation shows a link only to those for whom its page has something."""

    def holds(scope: Scope) -> bool:
        return scope.is_platform_admin or any(
            g.role in roles and (g.is_root or not whole) for g in scope.grants
        )

    return holds


def require(account, roles, refusal: str, *, whole: bool = False) -> None:
    """Forbidden (403, `refusal` shown) unless `account` holds one of `roles` (`whole`: at a
    customer's root): a page that has nothing for the account says so, rather than showing
    an empty page that reads as if the portal had no data."""
    if not holding(roles, whole=whole)(scope_of(account)):
        raise Forbidden(refusal)


def branch_tops(account, customer_id: int) -> list[int] | None:
    """The unit ids at the top of the branches `account` reaches in the customer (what its
    tree starts from), or None when it reaches the whole customer."""
    scope = scope_of(account)
    if scope.is_platform_admin:
        return None
    tops = scope.branches(DIRECTORY_ROLES, customer_id)
    if any(top.is_root for top in tops):
        return None
    return [top.unit_id for top in tops]


def visible_only(account, objects: list) -> list:
    """Those of `objects` that `account` may see (a breadcrumb stops at the branch's top)."""
    scope = scope_of(account)
    return [obj for obj in objects if is_visible(scope, obj)]


def visible_activity_condition(account, roles=COURSE_ROLES):
    """A SQL condition on Activity: its owner unit lies in a branch `account` reaches."""
    scope = scope_of(account)
    if scope.is_platform_admin:
        return true()
    units = select(OrgUnit.id).where(scope.path_condition(OrgUnit.path, roles))
    return Activity.owner_unit_id.in_(units)
