"""Who may see what. Every page looks objects up through here, so scope rules live in one place.

Today only platform admins log in, and they see everything. Roles granted at a unit (HR, IT
admin, course admin) will narrow `visible_customers` and `get_visible` to a branch.
"""

from sqlalchemy import Select, select

from portal.core.db import db
from portal.core.errors import NotFound
from portal.directory.models import Customer


def visible_customers(account) -> Select:
    """The customers `account` may see, by name."""
    query = select(Customer).order_by(Customer.name, Customer.id)
    if not getattr(account, "is_platform_admin", False):
        return query.where(False)
    return query


def visible_customer_ids(account) -> Select:
    """The ids of `visible_customers`, for `customer_id IN (...)` conditions."""
    return visible_customers(account).with_only_columns(Customer.id).order_by(None)


def may_see_customer(account, customer_id: int) -> bool:
    return bool(getattr(account, "is_platform_admin", False)) and customer_id is not None


def get_visible(account, model, ident):
    """The object of `model` with primary key `ident`, or NotFound (404) when it does not
    exist or lies outside what `account` may see. `model` is Customer or has `customer_id`."""
    try:
        obj = db.session.get(model, int(ident))
    except (TypeError, ValueError):
        obj = None
    if obj is None:
        raise NotFound("There is nothing here, or it is not yours to see.")
    customer_id = obj.id if isinstance(obj, Customer) else obj.customer_id
    if not may_see_customer(account, customer_id):
        raise NotFound("There is nothing here, or it is not yours to see.")
    return obj


def chosen_customer(account, slug: str | None) -> Customer | None:
    """The customer named by `slug`, or the first visible one when no slug is given."""
    query = visible_customers(account)
    if slug:
        customer = db.session.scalar(query.where(Customer.slug == slug))
        if customer is None:
            raise NotFound("There is no customer with that name, or it is not yours to see.")
        return customer
    return db.session.scalar(query.limit(1))
