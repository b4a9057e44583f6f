"""Case types: what a kind of case needs and how it is decided, declared in YAML files (pure domain).

One file per case type (``case_types/<code>.yaml``), read once at start. A file says which
parameters the case takes, which proofs approvals pulls from records (of which subject, with which
proof parameters), the rules over their claims (see rules.py for the condition language), the
departments that sign off, in order, any human review step and the statutory deadline in working
days. The dataclasses mirror govmesh.approvals.v1 (CaseType, ParameterSpec, RequiredProof,
RuleSpec, ReviewStepSpec); the few fields the contract does not carry (a parameter's default,
choices, pattern and minimum; a rule's proof and condition) say so.

Decisions (docs/decisions/): approvals-case-type-errors, approvals-strict-yaml,
approvals-catalogue-from-records, approvals-case-type-code-is-file-name,
approvals-case-type-versions, approvals-holds, approvals-identifiers-only-as-subjects.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from govmesh.parameters import ParameterError, resolve
from govmesh.privacy import contains_identifier
from services.approvals.domain.rules import (
    APPLICANT,
    AllOf,
    AnyOf,
    ClaimRef,
    Condition,
    FieldRef,
    Literal,
    Not,
    Operand,
    Operator,
    ParamRef,
    RateOf,
    Reference,
    Test,
    Value,
    placeholders,
)

__all__ = [
    "MAX_DEADLINE_WORKING_DAYS",
    "MAX_FEN",
    "ApplicantKind",
    "CaseTypeError",
    "CaseTypeSpec",
    "ParameterError",
    "ParameterSpec",
    "ParameterType",
    "ProofTypeInfo",
    "RequiredProof",
    "ReviewStepSpec",
    "RuleSpec",
    "load_case_type",
    "load_case_types",
    "validate_parameters",
]

#: Largest amount of money a MONEY_FEN parameter takes (10 trillion yuan), as records' MAX_FEN.
MAX_FEN: Final = 10**15
#: Longest identifier parameter, in code points (identity validates the identifier itself).
MAX_IDENTIFIER_LENGTH: Final = 64
#: Longest string parameter, in code points.
MAX_STRING_LENGTH: Final = 256
#: A statutory deadline longer than a year of working days is a typo, not a law.
MAX_DEADLINE_WORKING_DAYS: Final = 365
#: Case type files are small; a bigger file is a mistake (and would be slow to check).
MAX_FILE_BYTES: Final = 1 << 20

_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_PLACEHOLDER_RE: Final = re.compile(r"\{([a-z][a-z0-9_]{0,63})\}")
_STR: Final = "tag:yaml.org,2002:str"
_INT: Final = "tag:yaml.org,2002:int"
_BOOL: Final = "tag:yaml.org,2002:bool"
_TIMESTAMP: Final = "tag:yaml.org,2002:timestamp"
_SCALAR_TAGS: Final = frozenset({_STR, _INT, _BOOL, _TIMESTAMP})


class CaseTypeError(Exception):
    """A case type file (or the directory) is not valid: ``<path>:<line>: <message>``."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = Path(path)
        self.line = line
        self.message = message


class ParameterType(enum.Enum):
    """Values are the spellings in case type files; names match govmesh.approvals.v1.ParameterType
    without the PARAMETER_TYPE_ prefix."""

    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATE = "date"
    MONEY_FEN = "money_fen"
    IDENTIFIER = "identifier"


class ApplicantKind(enum.Enum):
    """Values match identity's IdentifierKind and govmesh.identity.v1.SubjectKind's names."""

    RESIDENT = "resident"
    ENTERPRISE = "enterprise"


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: ParameterType
    required: bool
    description_zh: str
    description_en: str
    #: The value an optional parameter takes when not given; "" when none (not in the contract).
    default: str = ""
    #: For STRING: the only values accepted; empty when any (not in the contract).
    choices: tuple[str, ...] = ()
    #: For STRING: a regular expression the whole value must match; "" when any.
    pattern: str = ""
    #: For INTEGER and MONEY_FEN: the smallest value accepted; None when any.
    minimum: int | None = None

    def parse(self, raw: str) -> str:
        """The normalized value of ``raw`` (surrounding blanks removed); ParameterError if invalid."""
        value = raw.strip()
        kind = self.type
        if kind is ParameterType.STRING:
            if len(value) > MAX_STRING_LENGTH:
                raise ParameterError(self.name, f"is longer than {MAX_STRING_LENGTH} characters")
            if self.choices and value not in self.choices:
                raise ParameterError(self.name, f"must be one of {', '.join(self.choices)}")
            if self.pattern and not re.fullmatch(self.pattern, value):
                raise ParameterError(self.name, f"must match {self.pattern} ({self.description_en})")
            if contains_identifier(value):
                raise ParameterError(
                    self.name, "must not contain an identity number or credit code (identifier parameters take those)"
                )
            return value
        if kind in (ParameterType.INTEGER, ParameterType.MONEY_FEN) and contains_identifier(value):
            # An ID number is all digits; it must never be stored or shown as a number.
            raise ParameterError(self.name, "must not be an identity number (identifier parameters take those)")
        if kind is ParameterType.INTEGER:
            # ASCII digits only: int() would also take "+3", "1_0" and full-width digits.
            if not re.fullmatch(r"-?[0-9]{1,18}", value):
                raise ParameterError(self.name, "must be a whole number, e.g. 3")
            return self._at_least_minimum(int(value))
        if kind is ParameterType.BOOLEAN:
            if value.lower() not in ("true", "false"):
                raise ParameterError(self.name, 'must be "true" or "false"')
            return value.lower()
        if kind is ParameterType.DATE:
            if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
                raise ParameterError(self.name, "must be an ISO 8601 date, e.g. 2019-07-09")
            try:
                datetime.date.fromisoformat(value)
            except ValueError:
                raise ParameterError(self.name, "is not a real calendar date") from None
            return value
        if kind is ParameterType.MONEY_FEN:
            if not re.fullmatch(r"[0-9]{1,16}", value) or int(value) > MAX_FEN:
                raise ParameterError(self.name, f"must be a whole number of fen from 0 to {MAX_FEN}")
            return self._at_least_minimum(int(value))
        if not value:
            raise ParameterError(self.name, "must not be empty")
        if len(value) > MAX_IDENTIFIER_LENGTH:
            raise ParameterError(self.name, f"is longer than {MAX_IDENTIFIER_LENGTH} characters")
        return value

    def _at_least_minimum(self, number: int) -> str:
        if self.minimum is not None and number < self.minimum:
            raise ParameterError(self.name, f"must be at least {self.minimum}")
        return str(number)

    def typed_value(self, value: str) -> Value:
        """The value rules compare: int for INTEGER and MONEY_FEN, bool, date, else the string.
        ValueError when ``value`` is not valid (it goes through :meth:`parse` first)."""
        normalized = self.parse(value)
        if self.type in (ParameterType.INTEGER, ParameterType.MONEY_FEN):
            return int(normalized)
        if self.type is ParameterType.BOOLEAN:
            return normalized == "true"
        if self.type is ParameterType.DATE:
            return datetime.date.fromisoformat(normalized)
        return normalized


@dataclass(frozen=True)
class RequiredProof:
    #: A records proof type code, e.g. "driving_licence".
    proof_type: str
    department_code: str
    #: "applicant" or the name of a required IDENTIFIER parameter (e.g. "seller_identifier").
    subject: str
    #: Proof parameters: a fixed value, or "{name}" for the case parameter ``name``.
    parameters: Mapping[str, str]

    def request_parameters(self, case_parameters: Mapping[str, str]) -> dict[str, str]:
        """The proof parameters for a case: each "{name}" replaced by the case's (validated)
        parameter; one the case left out (an optional parameter without default) is left out,
        so records applies its own default."""
        resolved: dict[str, str] = {}
        for name, value in self.parameters.items():
            match = _PLACEHOLDER_RE.fullmatch(value)
            if match is None:
                resolved[name] = value
            elif case_parameters.get(match.group(1)):
                resolved[name] = case_parameters[match.group(1)]
        return resolved


@dataclass(frozen=True)
class RuleSpec:
    #: Unique within the case type, e.g. "licence_held_3_years".
    rule_id: str
    #: The department whose rule it is (its RULES step evaluates it).
    department_code: str
    description_zh: str
    description_en: str
    #: The proof the rule reads (not in the contract): its type and subject.
    proof_type: str
    subject: str
    condition: Condition
    #: Shown when the rule fails, formatted from the claims and parameters (rules.format_message).
    explain_zh: str
    explain_en: str


@dataclass(frozen=True)
class ReviewStepSpec:
    department_code: str
    instructions_zh: str
    instructions_en: str


@dataclass(frozen=True)
class CaseTypeSpec:
    code: str
    #: First 12 hex digits of the SHA-256 of the file's bytes.
    version: str
    name_zh: str
    name_en: str
    applicant_kind: ApplicantKind
    parameters: tuple[ParameterSpec, ...]
    proofs: tuple[RequiredProof, ...]
    rules: tuple[RuleSpec, ...]
    #: Departments that sign off, in order.
    sign_off_department_codes: tuple[str, ...]
    #: Human review steps, in order; empty when the case is decided automatically.
    review_steps: tuple[ReviewStepSpec, ...]
    deadline_working_days: int
    #: Parameters whose value an open case holds (e.g. the property unit being sold): while it is
    #: undecided, another case naming the same value is refused. Released at the decision, or by
    #: compensation when the case is cancelled.
    holds: tuple[str, ...] = ()
    #: The file's bytes (not in the contract): kept with each version, so that a case is decided
    #: by the version it was submitted under even after the file changed.
    source: bytes = field(default=b"", repr=False, compare=False)

    def parameter(self, name: str) -> ParameterSpec | None:
        return next((p for p in self.parameters if p.name == name), None)

    def rule(self, rule_id: str) -> RuleSpec | None:
        return next((r for r in self.rules if r.rule_id == rule_id), None)


@dataclass(frozen=True)
class ProofTypeInfo:
    """What the loader checks a case type's proofs against: one entry of records' ListProofTypes.

    Only the claim names are required; the other fields are checked when given (None: unknown).
    """

    claim_names: frozenset[str]
    parameter_names: frozenset[str] | None = None
    department_codes: frozenset[str] | None = None
    #: "resident" / "enterprise": checked for proofs about the applicant.
    subject_kinds: frozenset[str] | None = None


# --------------------------------------------------------------------------------------------
# Parameters


def validate_parameters(spec: CaseTypeSpec, given: Mapping[str, str]) -> dict[str, str]:
    """The case's parameters, normalized, with defaults applied; ParameterError names the first
    unknown, missing or malformed one. An empty or blank value counts as not given (proto3 cannot
    tell them apart); an optional parameter without default that is not given is left out."""
    return resolve(spec.code, spec.parameters, given)


# --------------------------------------------------------------------------------------------
# Loading


def load_case_types(
    directory: Path,
    proof_types: Mapping[str, frozenset[str] | ProofTypeInfo],
    departments: frozenset[str],
) -> dict[str, CaseTypeSpec]:
    """Every case type in ``directory`` (``*.yaml``), by code; CaseTypeError at the first problem.

    ``proof_types`` is records' proof catalogue: code -> claim names, or a ProofTypeInfo to also
    check proof parameters, departments and subject kinds. ``departments`` are the department
    codes that exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CaseTypeError(directory, 0, "is not a directory of case type files")
    stray = sorted(p for p in directory.glob("*.yml") if not p.name.startswith("."))
    if stray:
        raise CaseTypeError(stray[0], 0, "case type files end in .yaml: rename it")
    paths = sorted(p for p in directory.glob("*.yaml") if not p.name.startswith("."))
    if not paths:
        raise CaseTypeError(directory, 0, "holds no case type files (*.yaml)")
    return {spec.code: spec for spec in (load_case_type(path, proof_types, departments) for path in paths)}


def load_case_type(
    path: Path,
    proof_types: Mapping[str, frozenset[str] | ProofTypeInfo],
    departments: frozenset[str],
) -> CaseTypeSpec:
    """One case type file; see :func:`load_case_types`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CaseTypeError(path, 0, f"cannot be read ({exc.strerror or exc})") from None
    return parse_case_type(path, data, proof_types, departments)


def parse_case_type(
    path: Path,
    data: bytes,
    proof_types: Mapping[str, frozenset[str] | ProofTypeInfo],
    departments: frozenset[str],
) -> CaseTypeSpec:
    """A case type from the bytes of its file (``path`` names it in errors and fixes its code);
    also how a version kept since a case was submitted is read again."""
    if len(data) > MAX_FILE_BYTES:
        raise CaseTypeError(path, 0, f"is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CaseTypeError(path, data[: exc.start].count(b"\n") + 1, "is not UTF-8") from None
    catalogue = {
        code: info if isinstance(info, ProofTypeInfo) else ProofTypeInfo(frozenset(info))
        for code, info in proof_types.items()
    }
    reader = _Reader(path, catalogue, frozenset(departments))
    spec = reader.case_type(_compose(path, text), hashlib.sha256(data).hexdigest()[:12])
    return dataclasses.replace(spec, source=data)


def _compose(path: Path, text: str) -> Node:
    try:
        # Aliases are refused before composing: compose shares aliased nodes, so a few lines of
        # nested aliases would make the checks below walk an exponential tree.
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise CaseTypeError(path, _line_of_mark(event.start_mark), "aliases (*name) are not allowed")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise CaseTypeError(path, _line_of_mark(mark), f"is not valid YAML: {detail}") from None
    except yaml.YAMLError as exc:
        raise CaseTypeError(path, 1, f"is not valid YAML: {exc}") from None
    if root is None:
        raise CaseTypeError(path, 1, "is empty")
    return root


def _line_of_mark(mark: object) -> int:
    # PyYAML has two Mark classes (pure Python and libyaml's); both carry a 0-based line.
    line = getattr(mark, "line", None)
    return line + 1 if isinstance(line, int) else 1


def _line(node: Node) -> int:
    return _line_of_mark(node.start_mark)


_Items = dict[str, tuple[Node, Node]]

_TOP_REQUIRED: Final = (
    "code",
    "name_zh",
    "name_en",
    "applicant_kind",
    "proofs",
    "rules",
    "sign_off",
    "deadline_working_days",
)
_TOP_OPTIONAL: Final = ("parameters", "review_steps", "holds")
_PARAMETER_REQUIRED: Final = ("name", "type", "required", "description_zh", "description_en")
_PARAMETER_OPTIONAL: Final = ("default", "choices", "pattern", "minimum")
_PROOF_REQUIRED: Final = ("proof_type", "department")
_PROOF_OPTIONAL: Final = ("subject", "parameters")
_RULE_REQUIRED: Final = ("id", "department", "proof", "description_zh", "description_en", "explain_zh", "explain_en")
_RULE_OPTIONAL: Final = ("subject",)
_REVIEW_REQUIRED: Final = ("department", "instructions_zh", "instructions_en")
_COMBINATORS: Final = ("all", "any", "not")
_TARGETS: Final = ("claim", "param", "field")
_OPERATORS: Final[Mapping[str, Operator]] = {op.value: op for op in Operator}
_LIST_OPERATORS: Final = frozenset({Operator.IN, Operator.NOT_IN, Operator.CONTAINS_NONE, Operator.SUBSET_OF})
_ORDER_OPERATORS: Final = frozenset({Operator.AT_LEAST, Operator.AT_MOST})


@dataclass(frozen=True)
class _RuleContext:
    """What a rule's condition may name."""

    what: str
    proof_type: str
    claims: frozenset[str]
    parameters: Mapping[str, ParameterSpec]


class _Reader:
    """Checks one composed file, node by node, and builds its CaseTypeSpec."""

    def __init__(self, path: Path, catalogue: Mapping[str, ProofTypeInfo], departments: frozenset[str]) -> None:
        self.path = path
        self.catalogue = catalogue
        self.departments = departments
        self._constructor = yaml.constructor.SafeConstructor()

    # --- generic checks ---------------------------------------------------------------------

    def error(self, node: Node, message: str) -> CaseTypeError:
        return CaseTypeError(self.path, _line(node), message)

    def mapping(self, node: Node, what: str) -> _Items:
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        items: _Items = {}
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge":
                raise self.error(key, f"{what}: merge keys (<<) are not allowed")
            if not isinstance(key, ScalarNode) or key.tag != _STR:
                raise self.error(key, f"{what}: keys must be plain names")
            if key.value in items:
                first = _line(items[key.value][0])
                raise self.error(key, f"{what}: duplicate key {key.value!r} (first on line {first})")
            items[key.value] = (key, value)
        return items

    def keys(self, node: Node, items: _Items, what: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
        allowed = required + optional
        for name, (key, _) in items.items():
            if name not in allowed:
                raise self.error(key, f"{what}: unknown key {name!r} (allowed: {', '.join(allowed)})")
        for name in required:
            if name not in items:
                raise self.error(node, f"{what}: missing required key {name!r}")

    def text(self, node: Node, what: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag != _STR:
            raise self.error(node, f"{what} must be a string (quote it if YAML reads it as something else)")
        value = str(node.value).strip()
        if not value:
            raise self.error(node, f"{what} must not be empty")
        return value

    def code(self, node: Node, what: str) -> str:
        value = self.text(node, what)
        if not _NAME_RE.fullmatch(value):
            raise self.error(node, f"{what} must be a lower_snake_case code, e.g. driving_licence")
        return value

    def department(self, node: Node, what: str) -> str:
        value = self.code(node, what)
        if value not in self.departments:
            raise self.error(node, f"{what}: unknown department {value!r}")
        return value

    def integer(self, node: Node, what: str) -> int:
        if not isinstance(node, ScalarNode) or node.tag != _INT:
            raise self.error(node, f"{what} must be a whole number")
        value = self._constructor.construct_object(node)
        assert isinstance(value, int)
        return value

    def boolean(self, node: Node, what: str) -> bool:
        if not isinstance(node, ScalarNode) or node.tag != _BOOL:
            raise self.error(node, f"{what} must be true or false")
        return bool(self._constructor.construct_object(node))

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, f"{what} must be a list")
        return list(node.value)

    def scalar(self, node: Node, what: str) -> Value:
        """A literal: string, integer, boolean or date (no floats, nulls or times of day)."""
        if not isinstance(node, ScalarNode) or node.tag not in _SCALAR_TAGS:
            if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:float":
                raise self.error(node, f"{what}: no decimal numbers (money is fen, rates are basis points)")
            if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
                raise self.error(node, f"{what}: a value is missing (null)")
            raise self.error(node, f"{what} must be a string, whole number, true/false or a date")
        try:
            value = self._constructor.construct_object(node)
        except (yaml.YAMLError, ValueError):
            raise self.error(node, f"{what}: {node.value!r} is not a valid value") from None
        if isinstance(value, datetime.datetime):
            raise self.error(node, f"{what}: dates only (YYYY-MM-DD), no time of day")
        assert isinstance(value, (str, int, bool, datetime.date))
        return value

    # --- the file ---------------------------------------------------------------------------

    def case_type(self, root: Node, version: str) -> CaseTypeSpec:
        items = self.mapping(root, "the case type")
        self.keys(root, items, "the case type", _TOP_REQUIRED, _TOP_OPTIONAL)
        code_node = items["code"][1]
        code = self.code(code_node, "code")
        if code != self.path.stem:
            raise self.error(code_node, f"code {code!r} must match the file name ({self.path.stem}.yaml)")
        name_zh = self.text(items["name_zh"][1], "name_zh")
        name_en = self.text(items["name_en"][1], "name_en")
        kind_node = items["applicant_kind"][1]
        kind_text = self.text(kind_node, "applicant_kind")
        try:
            applicant_kind = ApplicantKind(kind_text)
        except ValueError:
            raise self.error(kind_node, "applicant_kind must be resident or enterprise") from None

        parameters = self.parameters(items["parameters"][1]) if "parameters" in items else ()
        by_name = {p.name: p for p in parameters}
        proofs = self.proofs(items["proofs"][1], by_name, applicant_kind)
        rules = self.rules(items["rules"][1], by_name, proofs)

        sign_node = items["sign_off"][1]
        sign_off: list[str] = []
        for index, node in enumerate(self.sequence(sign_node, "sign_off")):
            department = self.department(node, f"sign_off[{index}]")
            if department in sign_off:
                raise self.error(node, f"sign_off: {department!r} is listed twice")
            sign_off.append(department)
        if not sign_off:
            raise self.error(sign_node, "sign_off must name at least one department (the one that issues the result)")

        reviews = self.review_steps(items["review_steps"][1]) if "review_steps" in items else ()
        holds = self.holds(items["holds"][1], by_name) if "holds" in items else ()
        deadline_node = items["deadline_working_days"][1]
        deadline = self.integer(deadline_node, "deadline_working_days")
        if not 0 <= deadline <= MAX_DEADLINE_WORKING_DAYS:
            raise self.error(deadline_node, f"deadline_working_days must be from 0 to {MAX_DEADLINE_WORKING_DAYS}")
        return CaseTypeSpec(
            code=code,
            version=version,
            name_zh=name_zh,
            name_en=name_en,
            applicant_kind=applicant_kind,
            parameters=parameters,
            proofs=proofs,
            rules=rules,
            sign_off_department_codes=tuple(sign_off),
            review_steps=reviews,
            deadline_working_days=deadline,
            holds=holds,
        )

    def holds(self, node: Node, parameters: Mapping[str, ParameterSpec]) -> tuple[str, ...]:
        names: list[str] = []
        for index, item in enumerate(self.sequence(node, "holds")):
            name = self.code(item, f"holds[{index}]")
            parameter = parameters.get(name)
            if parameter is None:
                raise self.error(item, f"holds[{index}]: {name!r} is not a parameter of this case type")
            if not parameter.required or parameter.type is ParameterType.IDENTIFIER:
                raise self.error(
                    item, f"holds[{index}]: {name!r} must be a required parameter that is not an identifier"
                )
            if name in names:
                raise self.error(item, f"holds: {name!r} is listed twice")
            names.append(name)
        return tuple(names)

    def parameters(self, node: Node) -> tuple[ParameterSpec, ...]:
        specs: list[ParameterSpec] = []
        for index, item in enumerate(self.sequence(node, "parameters")):
            what = f"parameters[{index}]"
            items = self.mapping(item, what)
            self.keys(item, items, what, _PARAMETER_REQUIRED, _PARAMETER_OPTIONAL)
            name_node = items["name"][1]
            name = self.code(name_node, f"{what}.name")
            what = f"parameter {name}"
            if name == APPLICANT:
                raise self.error(name_node, f"{what}: 'applicant' is reserved for the applicant")
            if any(p.name == name for p in specs):
                raise self.error(name_node, f"{what} is declared twice")
            type_node = items["type"][1]
            type_text = self.text(type_node, f"{what}.type")
            try:
                kind = ParameterType(type_text)
            except ValueError:
                allowed = ", ".join(t.value for t in ParameterType)
                raise self.error(type_node, f"{what}.type must be one of {allowed}") from None
            required = self.boolean(items["required"][1], f"{what}.required")
            choices: tuple[str, ...] = ()
            pattern = ""
            if "choices" in items:
                choices_node = items["choices"][1]
                if kind is not ParameterType.STRING:
                    raise self.error(choices_node, f"{what}: choices are for string parameters")
                choices = tuple(
                    self.text(choice, f"{what}.choices") for choice in self.sequence(choices_node, f"{what}.choices")
                )
                if not choices or len(set(choices)) != len(choices):
                    raise self.error(choices_node, f"{what}.choices must be a non-empty list without repeats")
            if "pattern" in items:
                pattern_node = items["pattern"][1]
                if kind is not ParameterType.STRING:
                    raise self.error(pattern_node, f"{what}: a pattern is for string parameters")
                pattern = self.text(pattern_node, f"{what}.pattern")
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise self.error(pattern_node, f"{what}.pattern is not a valid regular expression: {exc}") from None
            minimum: int | None = None
            if "minimum" in items:
                minimum_node = items["minimum"][1]
                if kind not in (ParameterType.INTEGER, ParameterType.MONEY_FEN):
                    raise self.error(minimum_node, f"{what}: a minimum is for integer and money_fen parameters")
                minimum = self.integer(minimum_node, f"{what}.minimum")
            spec = ParameterSpec(
                name=name,
                type=kind,
                required=required,
                description_zh=self.text(items["description_zh"][1], f"{what}.description_zh"),
                description_en=self.text(items["description_en"][1], f"{what}.description_en"),
                choices=choices,
                pattern=pattern,
                minimum=minimum,
            )
            if "default" in items:
                default_node = items["default"][1]
                if required or kind is ParameterType.IDENTIFIER:
                    raise self.error(default_node, f"{what}: only optional, non-identifier parameters have a default")
                raw = self.scalar(default_node, f"{what}.default")
                text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
                try:
                    default = spec.parse(text)
                except ParameterError as exc:
                    raise self.error(default_node, f"{what}.default: {exc.reason}") from None
                spec = dataclasses.replace(spec, default=default)
            specs.append(spec)
        return tuple(specs)

    def proofs(
        self, node: Node, parameters: Mapping[str, ParameterSpec], applicant_kind: ApplicantKind
    ) -> tuple[RequiredProof, ...]:
        proofs: list[RequiredProof] = []
        for index, item in enumerate(self.sequence(node, "proofs")):
            what = f"proofs[{index}]"
            items = self.mapping(item, what)
            self.keys(item, items, what, _PROOF_REQUIRED, _PROOF_OPTIONAL)
            type_node = items["proof_type"][1]
            proof_type = self.code(type_node, f"{what}.proof_type")
            info = self.catalogue.get(proof_type)
            if info is None:
                raise self.error(type_node, f"{what}: unknown proof type {proof_type!r} (not in records' catalogue)")
            what = f"proof {proof_type}"
            department_node = items["department"][1]
            department = self.department(department_node, f"{what}.department")
            if info.department_codes is not None and department not in info.department_codes:
                raise self.error(
                    department_node,
                    f"{what}: {proof_type} is drawn from {', '.join(sorted(info.department_codes))}, not {department}",
                )
            subject = APPLICANT
            if "subject" in items:
                subject_node = items["subject"][1]
                subject = self.code(subject_node, f"{what}.subject")
                target = parameters.get(subject)
                if subject != APPLICANT and (
                    target is None or target.type is not ParameterType.IDENTIFIER or not target.required
                ):
                    raise self.error(
                        subject_node, f"{what}.subject must be 'applicant' or a required identifier parameter"
                    )
            if (
                subject == APPLICANT
                and info.subject_kinds is not None
                and applicant_kind.value not in info.subject_kinds
            ):
                raise self.error(
                    type_node, f"{what}: {proof_type} is not issued about a {applicant_kind.value} (the applicant)"
                )
            if any(p.proof_type == proof_type and p.subject == subject for p in proofs):
                raise self.error(type_node, f"{what} is pulled twice for {subject}")
            values: dict[str, str] = {}
            if "parameters" in items:
                for name, (key, value_node) in self.mapping(items["parameters"][1], f"{what}.parameters").items():
                    if info.parameter_names is not None and name not in info.parameter_names:
                        takes = ", ".join(sorted(info.parameter_names)) or "no parameters"
                        raise self.error(key, f"{what}: {proof_type} has no parameter {name!r} (it takes {takes})")
                    values[name] = self.proof_parameter(value_node, f"{what}.parameters.{name}", parameters)
            proofs.append(RequiredProof(proof_type, department, subject, types.MappingProxyType(values)))
        return tuple(proofs)

    def proof_parameter(self, node: Node, what: str, parameters: Mapping[str, ParameterSpec]) -> str:
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.error(node, f"{what} must be a string or a whole number")
        text = str(value)
        if "{" not in text and "}" not in text:
            return text
        match = _PLACEHOLDER_RE.fullmatch(text)
        if match is None:
            raise self.error(node, f"{what} must be a fixed value or exactly one {{parameter}}")
        target = parameters.get(match.group(1))
        if target is None:
            raise self.error(node, f"{what}: unknown parameter {match.group(1)!r}")
        if target.type is ParameterType.IDENTIFIER:
            raise self.error(node, f"{what}: an identifier parameter can only be a proof's subject")
        return text

    def review_steps(self, node: Node) -> tuple[ReviewStepSpec, ...]:
        steps: list[ReviewStepSpec] = []
        for index, item in enumerate(self.sequence(node, "review_steps")):
            what = f"review_steps[{index}]"
            items = self.mapping(item, what)
            self.keys(item, items, what, _REVIEW_REQUIRED, ())
            steps.append(
                ReviewStepSpec(
                    self.department(items["department"][1], f"{what}.department"),
                    self.text(items["instructions_zh"][1], f"{what}.instructions_zh"),
                    self.text(items["instructions_en"][1], f"{what}.instructions_en"),
                )
            )
        return tuple(steps)

    # --- rules ------------------------------------------------------------------------------

    def rules(
        self, node: Node, parameters: Mapping[str, ParameterSpec], proofs: tuple[RequiredProof, ...]
    ) -> tuple[RuleSpec, ...]:
        rules: list[RuleSpec] = []
        condition_keys = _COMBINATORS + _TARGETS + tuple(_OPERATORS)
        for index, item in enumerate(self.sequence(node, "rules")):
            what = f"rules[{index}]"
            items = self.mapping(item, what)
            own = {name: pair for name, pair in items.items() if name not in condition_keys}
            self.keys(item, own, what, _RULE_REQUIRED, _RULE_OPTIONAL)
            id_node = items["id"][1]
            rule_id = self.code(id_node, f"{what}.id")
            what = f"rule {rule_id}"
            if any(r.rule_id == rule_id for r in rules):
                raise self.error(id_node, f"{what}: duplicate rule id {rule_id!r}")
            department = self.department(items["department"][1], f"{what}.department")
            proof_node = items["proof"][1]
            proof_type = self.code(proof_node, f"{what}.proof")
            pulled = [p for p in proofs if p.proof_type == proof_type]
            if not pulled:
                raise self.error(proof_node, f"{what}: the case pulls no {proof_type} proof (declare it under proofs)")
            if "subject" in items:
                subject_node = items["subject"][1]
                subject = self.code(subject_node, f"{what}.subject")
                if not any(p.subject == subject for p in pulled):
                    raise self.error(subject_node, f"{what}: the case pulls no {proof_type} proof for {subject}")
            elif len(pulled) > 1:
                subjects = ", ".join(p.subject for p in pulled)
                raise self.error(proof_node, f"{what}: {proof_type} is pulled for {subjects}: add subject")
            else:
                subject = pulled[0].subject
            context = _RuleContext(what, proof_type, self.catalogue[proof_type].claim_names, parameters)
            condition_items = {name: pair for name, pair in items.items() if name in condition_keys}
            if not condition_items:
                raise self.error(item, f"{what} has no condition (all, any, not or a test such as claim + equals)")
            condition = self.condition_from(item, condition_items, context, in_item=False)
            explain = {}
            for language in ("zh", "en"):
                template_node = items[f"explain_{language}"][1]
                template = self.text(template_node, f"{what}.explain_{language}")
                self.template(template_node, template, context, f"{what}.explain_{language}")
                explain[language] = template
            rules.append(
                RuleSpec(
                    rule_id=rule_id,
                    department_code=department,
                    description_zh=self.text(items["description_zh"][1], f"{what}.description_zh"),
                    description_en=self.text(items["description_en"][1], f"{what}.description_en"),
                    proof_type=proof_type,
                    subject=subject,
                    condition=condition,
                    explain_zh=explain["zh"],
                    explain_en=explain["en"],
                )
            )
        return tuple(rules)

    def template(self, node: Node, template: str, context: _RuleContext, what: str) -> None:
        try:
            names = placeholders(template)
        except ValueError as exc:
            raise self.error(node, f"{what}: {exc} (write {{{{ and }}}} for literal braces)") from None
        for name in names:
            spec = context.parameters.get(name)
            if name in context.claims:
                continue
            if spec is None:
                raise self.error(node, f"{what}: {{{name}}} is neither a claim of {context.proof_type} nor a parameter")
            if spec.type is ParameterType.IDENTIFIER:
                raise self.error(node, f"{what}: {{{name}}} is an identifier parameter, which is never shown")

    def condition(self, node: Node, context: _RuleContext, in_item: bool) -> Condition:
        return self.condition_from(node, self.mapping(node, f"{context.what}: a condition"), context, in_item)

    def condition_from(self, node: Node, items: _Items, context: _RuleContext, in_item: bool) -> Condition:
        what = context.what
        for name, (key, _) in items.items():
            if name not in _COMBINATORS and name not in _TARGETS and name not in _OPERATORS:
                raise self.error(
                    key,
                    f"{what}: unknown key {name!r} in a condition (a condition is all, any, not, or a test: "
                    f"claim, param or field with one of {', '.join(_OPERATORS)})",
                )
        combinators = [name for name in items if name in _COMBINATORS]
        if combinators:
            name = combinators[0]
            if len(items) > 1:
                raise self.error(node, f"{what}: {name} stands alone in its condition (put other tests inside it)")
            key, value = items[name]
            if name == "not":
                return Not(self.condition(value, context, in_item))
            inner = self.sequence(value, f"{what}: {name}")
            if not inner:
                raise self.error(value, f"{what}: {name} needs at least one condition")
            conditions = tuple(self.condition(each, context, in_item) for each in inner)
            return AllOf(conditions) if name == "all" else AnyOf(conditions)
        targets = [name for name in items if name in _TARGETS]
        operators = [name for name in items if name in _OPERATORS]
        if len(targets) != 1:
            raise self.error(node, f"{what}: a test names exactly one of claim, param or field")
        if len(operators) != 1:
            raise self.error(node, f"{what}: a test has exactly one operator ({', '.join(_OPERATORS)})")
        target_key, target_node = items[targets[0]]
        target = self.reference(targets[0], target_node, context, in_item)
        operator = _OPERATORS[operators[0]]
        operand_node = items[operators[0]][1]
        where = f"{what}: {operator.value}"

        if operator in (Operator.ANY_ITEM, Operator.ALL_ITEMS):
            if isinstance(target, ParamRef):
                raise self.error(target_key, f"{where} applies to a list claim or field")
            return Test(target, operator, item_condition=self.condition(operand_node, context, in_item=True))
        if operator in (Operator.IS_EMPTY, Operator.IS_NOT_EMPTY):
            if not self.boolean(operand_node, where):
                raise self.error(operand_node, f"{where}: write {operator.value}: true")
            return Test(target, operator)
        operand = self.operand(operand_node, context, in_item, operator, where)
        self.check_kinds(operand_node, target, operand, operator, context, where)
        return Test(target, operator, operand)

    def reference(self, kind: str, node: Node, context: _RuleContext, in_item: bool) -> Reference:
        name = self.code(node, f"{context.what}: {kind}")
        if kind == "claim":
            if name not in context.claims:
                known = ", ".join(sorted(context.claims))
                raise self.error(node, f"{context.what}: {name!r} is not a claim of {context.proof_type} ({known})")
            return ClaimRef(name)
        if kind == "field":
            if not in_item:
                raise self.error(node, f"{context.what}: field: is only for conditions inside any_item or all_items")
            # Item fields are not in records' published catalogue: a wrong name makes the rule
            # fail with "no field ..." when evaluated, never pass.
            return FieldRef(name)
        spec = context.parameters.get(name)
        if spec is None:
            raise self.error(node, f"{context.what}: unknown parameter {name!r}")
        if spec.type is ParameterType.IDENTIFIER:
            raise self.error(node, f"{context.what}: identifier parameter {name!r} cannot be used in a rule")
        if not spec.required and not spec.default:
            raise self.error(node, f"{context.what}: parameter {name!r} may be absent: give it a default")
        return ParamRef(name)

    def operand(self, node: Node, context: _RuleContext, in_item: bool, operator: Operator, where: str) -> Operand:
        if isinstance(node, MappingNode):
            if operator in _LIST_OPERATORS:
                raise self.error(node, f"{where} takes a literal list")
            items = self.mapping(node, where)
            if len(items) != 1:
                raise self.error(node, f"{where}: a reference is one of claim, param, field or rate_of")
            ((name, (key, inner)),) = items.items()
            if name in _TARGETS:
                return self.reference(name, inner, context, in_item)
            if name != "rate_of":
                raise self.error(key, f"{where}: unknown reference {name!r} (claim, param, field or rate_of)")
            parts = self.mapping(inner, f"{where}: rate_of")
            self.keys(inner, parts, f"{where}: rate_of", ("base", "basis_points"), ())
            base = self.operand(parts["base"][1], context, in_item, Operator.AT_LEAST, f"{where}: rate_of.base")
            points_node = parts["basis_points"][1]
            points = self.operand(points_node, context, in_item, Operator.AT_LEAST, f"{where}: rate_of.basis_points")
            for part, part_node in ((base, parts["base"][1]), (points, points_node)):
                if isinstance(part, Literal) and not isinstance(part.value, int):
                    raise self.error(part_node, f"{where}: rate_of takes whole numbers")
            return RateOf(base, points)
        if isinstance(node, SequenceNode):
            if operator in _ORDER_OPERATORS:
                raise self.error(node, f"{where} takes a single value, not a list")
            values = [self.scalar(each, where) for each in self.sequence(node, where)]
            if not values and operator not in (Operator.EQUALS, Operator.NOT_EQUALS):
                raise self.error(node, f"{where}: the list is empty")
            return Literal(values)
        literal = self.scalar(node, where)
        if operator in (Operator.IN, Operator.NOT_IN, Operator.SUBSET_OF):
            raise self.error(node, f"{where} takes a list, e.g. [a, b]")
        if operator is Operator.CONTAINS_NONE:
            return Literal([literal])
        if operator in _ORDER_OPERATORS and (
            isinstance(literal, bool) or not isinstance(literal, (int, datetime.date))
        ):
            raise self.error(node, f"{where} compares whole numbers or dates")
        return Literal(literal)

    def check_kinds(
        self,
        node: Node,
        target: Reference,
        operand: Operand,
        operator: Operator,
        context: _RuleContext,
        where: str,
    ) -> None:
        """Parameters have known types: refuse a literal or an ordering that can never match."""
        for side in (target, operand):
            if not isinstance(side, ParamRef):
                continue
            kind = context.parameters[side.name].type
            if operator in _ORDER_OPERATORS and kind not in (
                ParameterType.INTEGER,
                ParameterType.MONEY_FEN,
                ParameterType.DATE,
            ):
                raise self.error(node, f"{where}: parameter {side.name} is a {kind.value}, which has no order")
        if not isinstance(target, ParamRef) or not isinstance(operand, Literal):
            return
        kind = context.parameters[target.name].type
        values = operand.value if isinstance(operand.value, list) else [operand.value]
        for value in values:
            if not _fits(kind, value):
                raise self.error(node, f"{where}: parameter {target.name} is a {kind.value}; {value!r} never matches")


def _fits(kind: ParameterType, value: Value) -> bool:
    if kind is ParameterType.BOOLEAN:
        return isinstance(value, bool)
    if kind in (ParameterType.INTEGER, ParameterType.MONEY_FEN):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is ParameterType.DATE:
        return isinstance(value, datetime.date)
    return isinstance(value, str)
