"""The form of an LDAP source (add and edit): every setting `add-ldap` knows, plus the advanced
ones (TLS, timeouts, page size, attribute mapping). Validation is the operations' own
(sync.sources.ldap.operations.check_settings), so the page and the CLI refuse the same things;
its FieldRefused names the field, and the form shows the message under that field.
"""

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    HiddenField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Optional
from wtforms.widgets import PasswordInput

from portal.core.errors import FieldRefused
from sync.sources.ldap import operations, profiles
from sync.sources.ldap.profiles import ORG_FROM

# Record field -> label, in the order the form shows the mapping.
MAPPED = {
    "anchor": "Anchor (stable id)",
    "username": "Username",
    "first_name": "First name",
    "last_name": "Last name",
    "email": "Email",
    "employee_number": "Employee number",
    "unit_number": "Unit number (org from attribute)",
    "unit_name": "Unit name (org from attribute)",
}
NUMBERS = ("network_timeout", "timeout", "page_size")
# Settings a form field of the same name holds (besides the mapping and the password).
TEXTS = ("uri", "bind_dn", "ca_file", "ca_pem", "user_filter", "org_base", "inactive_filter")
ALWAYS_STORED = ("uri", "bind_dn", "user_bases", "org_from")


class SourceForm(FlaskForm):
    """Empty optional fields and fields left at the profile's value follow the profile."""

    name = StringField("Name", [InputRequired("Give the source a name, e.g. hq-ad.")])
    profile = SelectField(
        "Profile",
        choices=[SelectChoice("ad", "Active Directory"), SelectChoice("openldap", "OpenLDAP")],
    )
    mapping_profile = HiddenField()  # the profile whose values the mapping fields were filled with
    uri = StringField("URI", [InputRequired("Give the server's URI, e.g. ldaps://dc1:636.")])
    bind_dn = StringField("Bind DN", [InputRequired("Give the DN Kursa binds with.")])
    password = PasswordField("Bind password")
    starttls = BooleanField("StartTLS (for ldap:// URIs)")
    skip_certificate_checks = BooleanField("Do not check the server's certificate (unsafe)")
    ca_file = StringField("CA file (its name in the server's CA folder; empty: the system's CAs)")
    ca_pem = TextAreaField("CA certificate (PEM, pasted; instead of a CA file)")
    network_timeout = IntegerField("Connect timeout (seconds)", [Optional()])
    timeout = IntegerField("Operation timeout (seconds per page)", [Optional()])
    page_size = IntegerField("Page size", [Optional()])
    user_bases = TextAreaField(
        "User base DNs (one a line)", [InputRequired("Give at least one user base DN.")]
    )
    user_filter = StringField("User filter (empty: the profile's)")
    org_from = SelectField(
        "Org tree from", choices=[SelectChoice(o, o) for o in ORG_FROM], default="ou"
    )
    org_base = StringField("Org base DN (for an OU tree)")
    unit_number_attribute = StringField("Org attribute (the OU attribute giving a unit's number)")
    inactive_filter = StringField("Inactive filter (OpenLDAP)")
    member_of = TextAreaField(
        "Only members of these groups (group DNs, one a line; empty: everyone)"
    )
    schedule = StringField("Full run schedule (cron)", default=operations.DEFAULT_SCHEDULE)
    delta_schedule = StringField("Incremental run schedule (cron; empty: none), e.g. */15 * * * *")

    def mapping_fields(self):
        return [getattr(self, f"attr_{field}") for field in MAPPED]

    def fill(self, profile: str, settings: dict | None = None) -> None:
        """Pre-fill from the profile's values with the source's own settings on top."""
        settings = settings or {}
        merged = profiles.effective(profile, settings)
        self.profile.data = profile
        self.mapping_profile.data = profile
        for key in ("uri", "bind_dn", "ca_file", "ca_pem", "org_base", "unit_number_attribute"):
            getattr(self, key).data = merged[key]
        for key in ("user_filter", "inactive_filter"):
            getattr(self, key).data = settings.get(key, "")
        for key in NUMBERS:
            getattr(self, key).data = merged[key]
        self.starttls.data = bool(merged["starttls"])
        self.skip_certificate_checks.data = not merged["verify_certificates"]
        self.user_bases.data = "\n".join(merged["user_bases"])
        self.member_of.data = "\n".join(merged["member_of"])
        self.org_from.data = merged["org_from"]
        for field in MAPPED:
            getattr(self, f"attr_{field}").data = merged["attributes"][field]

    def settings(self) -> dict:
        """The source's settings as the CLI builds them: what differs from the profile."""
        profile = self.profile.data
        defaults = profiles.effective(profile, {})
        wanted = {
            "user_bases": _lines(self.user_bases.data),
            "member_of": _lines(self.member_of.data),
            "org_from": self.org_from.data,
            "starttls": bool(self.starttls.data),
            "verify_certificates": not self.skip_certificate_checks.data,
            "unit_number_attribute": (self.unit_number_attribute.data or "").strip()
            or defaults["unit_number_attribute"],
        }
        for key in TEXTS:
            wanted[key] = (getattr(self, key).data or "").strip()
        for key in NUMBERS:
            value = getattr(self, key).data
            wanted[key] = defaults[key] if value is None else value
        settings = {
            k: v
            for k, v in wanted.items()
            if k in ALWAYS_STORED or (v != "" and v != defaults.get(k, ""))
        }
        if attributes := self._mapping(profile):
            settings["attributes"] = attributes
        return settings

    def _mapping(self, profile: str) -> dict:
        """Mapped attributes other than the defaults (of the profile chosen, or of the one the
        fields were filled from, so switching the profile does not carry the old mapping)."""
        filled_from = self.mapping_profile.data if self.mapping_profile.data else profile
        ignored = [
            profiles.effective(p, {})["attributes"]
            for p in {profile, filled_from}
            if p in profiles.PROFILES
        ]
        mapping = {}
        for field in MAPPED:
            value = (getattr(self, f"attr_{field}").data or "").strip()
            if value and all(value != d[field] for d in ignored):
                mapping[field] = value
        return mapping

    def show_errors(self, error: FieldRefused) -> list[FieldRefused]:
        """Put each error (one, or each of FieldRefusals) under the field it names, once per
        field and message; returns those no field of the form shows."""
        unshown = []
        for each in error.errors:
            field = self._field_of(each.field)
            if field is None:
                unshown.append(each)
            elif str(each) not in field.errors:
                field.errors = [*field.errors, str(each)]
        return unshown

    def keep_password(self) -> None:
        """Render the typed password again (the add form only: after a refused submit the
        admin would otherwise have to type it again; a stored password is never rendered)."""
        self.password.widget = PasswordInput(hide_value=False)

    def has_error(self, name: str) -> bool:
        """Whether the field a setting error names shows an error already."""
        field = self._field_of(name)
        return field is not None and bool(field.errors)

    def _field_of(self, name: str):
        name = name.replace("attributes.", "attr_")
        if name == "verify_certificates":
            name = "skip_certificate_checks"
        field = getattr(self, name, None)
        return field if hasattr(field, "errors") else None


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


for _field, _label in MAPPED.items():
    setattr(SourceForm, f"attr_{_field}", StringField(f"Attribute for {_label.lower()}"))
