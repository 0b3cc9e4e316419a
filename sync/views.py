"""Sync pages: the run history, a run's report, uploading the two files."""

from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("sync", __name__, url_prefix="/sync")


@bp.route("/runs")
@login_required
def runs():
    return render_template("sync/runs.html")


@bp.route("/upload")
@login_required
def upload():
    return render_template("sync/upload.html")
