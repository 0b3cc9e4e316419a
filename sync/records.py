"""The one shape every source yields: unit and person records, issues, and what was read."""

from dataclasses import asdict, dataclass, field

# A person's unit_ref that places them in the customer's root unit (an LDAP entry directly
# below the org base). No file column or directory value can hold a NUL character.
ROOT_UNIT_REF = "\x00root"


@dataclass(slots=True)
class Issue:
    message: str
    file: str | None = None
    row: int | None = None
    column: str | None = None
    value: str | None = None
    severity: str = "error"  # error: row skipped or run failed; notice: for information

    def where(self) -> dict:
        """File, row, column, value and message: how the JSON contract shows an issue."""
        return {
            "file": self.file,
            "row": self.row,
            "column": self.column,
            "value": self.value,
            "message": self.message,
        }


@dataclass(slots=True)
class UnitRecord:
    key: str  # the source's stable id: the unit number in files, a GUID in directories
    number: str
    name: str
    parent_key: str | None  # None: directly under the customer
    kind: str = "department"
    file: str | None = None
    row: int | None = None


@dataclass(slots=True)
class PersonRecord:
    username: str
    first_name: str
    last_name: str
    email: str | None
    employee_number: str | None
    unit_ref: str  # a unit number, name or key, as the source's `person_unit_by` says
    anchor: str | None = None
    is_active: bool = True
    file: str | None = None
    row: int | None = None
    raw_username: str = ""  # as the source wrote it, before the customer's prefix


@dataclass(slots=True)
class FileInfo:
    role: str  # "org" or "persons"
    filename: str
    size: int
    sha256: str


@dataclass
class SourceData:
    """Everything a source read, ready for planning."""

    kind: str  # "files", "ldap", ...
    units: list[UnitRecord]
    persons: list[PersonRecord]
    issues: list[Issue] = field(default_factory=list)
    files: list[FileInfo] = field(default_factory=list)
    units_complete: bool = True  # a unit not in `units` is gone from the source
    persons_complete: bool = True  # a person not in `persons` is gone from the source
    person_unit_by: str = "number"  # "number", "name" or "key"
    unit_match: str = "number"  # existing units are found by "number" or "anchor"
    source_name: str = ""
    # role ("org", "persons") -> field -> the column header as the source spelled it
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    fatal: bool = False  # the source could not be read well enough to plan
    # Keys of units whose rows the source rejected: such units are left exactly as they are.
    rejected_unit_keys: list[str] = field(default_factory=list)
    # Usernames (as written) of person rows the source rejected: those persons stay as they are.
    rejected_person_keys: list[str] = field(default_factory=list)
    # Anchors of person entries the source rejected (a directory): those persons stay as they are.
    rejected_person_anchors: list[str] = field(default_factory=list)
    # Where a person's unit comes from, for the report: the column an issue names and what to
    # say when it is empty. Empty: the file's division column and the file's words.
    unit_column: str = ""
    unit_missing: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "SourceData":
        data = dict(data)
        data["units"] = [UnitRecord(**u) for u in data["units"]]
        data["persons"] = [PersonRecord(**p) for p in data["persons"]]
        data["issues"] = [Issue(**i) for i in data["issues"]]
        data["files"] = [FileInfo(**f) for f in data["files"]]
        return cls(**data)
