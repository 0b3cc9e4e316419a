"""HR and IT pages of the directory: the tree, persons, a person."""

from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("directory", __name__)


@bp.route("/")
@login_required
def tree():
    return render_template("directory/tree.html")


@bp.route("/persons")
@login_required
def persons():
    return render_template("directory/persons.html")
