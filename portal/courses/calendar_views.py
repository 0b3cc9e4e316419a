"""The personal iCal feed (no login: the token in the URL is the key) and the page where a
person sees and renews its URL."""

from flask import Blueprint, Response, abort, render_template, request, url_for
from flask_login import current_user, login_required

from portal.core.db import db
from portal.courses.calendar import (
    calendar_feed_of,
    calendar_of,
    person_of_token,
    renew_calendar_feed,
)
from portal.courses.views import ActionForm, _me

bp = Blueprint("calendar", __name__)


@bp.route("/calendar/<token>.ics")
def feed(token: str):
    person = person_of_token(token)
    if person is None:
        abort(404)
    body = calendar_of(person)
    db.session.commit()  # the feed's last use
    return Response(
        body,
        mimetype="text/calendar",
        headers={
            "Content-Disposition": "inline; filename=kursa.ics",
            "Cache-Control": "private, max-age=300",
            "X-Robots-Tag": "noindex",
        },
    )


@bp.route("/courses/calendar", methods=["GET", "POST"])
@login_required
def feed_page():
    me, form, url = _me(), ActionForm(), None
    if me is not None and form.validate_on_submit():
        token = renew_calendar_feed(me, actor=current_user.actor)
        db.session.commit()
        url = url_for("calendar.feed", token=token, _external=True)
    response = Response(
        render_template(
            "courses/calendar.html",
            me=me,
            form=form,
            url=url,
            feed=calendar_feed_of(me) if me is not None else None,
            posted=request.method == "POST",
        )
    )
    # The page may show the secret URL: no caching, and no Referer carrying it elsewhere.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
