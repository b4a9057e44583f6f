"""The condition language of case type rules, and their evaluation over proof claims (pure domain).

A rule is a condition over the claims of ONE proof of the case (a proof type pulled for one
subject), written in the case type file as plain YAML data and never as code: nothing here
evaluates a string, so a case type file can state a policy but cannot run anything.

A condition is one of::

    all: [<condition>, ...]          every one holds (stops at the first that does not)
    any: [<condition>, ...]          at least one holds (stops at the first that does)
    not: <condition>                 it does not hold
    {<target>, <operator>: <operand>}  a test

A test's target is ``claim: <name>`` (a claim of the rule's proof), ``param: <name>`` (a case
parameter) or, inside ``any_item`` / ``all_items``, ``field: <name>`` (a field of the list
item). Operators:

    equals, not_equals        strict equality: true is not 1, "3" is not 3, lists compare in order
    at_least, at_most         integers with integers, dates with dates (inclusive)
    in, not_in                the value is (not) one of a literal list
    contains                  a list claim contains the operand (each of them, when a list)
    contains_none             a list claim contains none of a literal list
    subset_of                 every item of a list claim is in a literal list
    is_empty, is_not_empty    "" / [] / {} (written ``is_empty: true``)
    any_item, all_items       some / every item (a map) of a list claim meets a condition over
                              its ``field:`` values; all_items holds for an empty list

An operand is a literal (string, integer, boolean, date, or for the list operators a list of
those), or a reference: ``{claim: <name>}``, ``{param: <name>}``, ``{field: <name>}``, or
``{rate_of: {base: <operand>, basis_points: <operand>}}``: base x basis points / 10,000 rounded
half up to a whole number, the way taxation computes a tax amount in fen (there are no floats:
money is fen, rates are basis points).

Decisions (docs/decisions/): approvals-rules-as-data, approvals-rules-fail-safe,
approvals-rule-evidence-and-messages.
"""

from __future__ import annotations

import datetime
import enum
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeAlias

from govmesh.typed_values import Value
from services.approvals.domain import labels

if TYPE_CHECKING:  # only for annotations: casetypes imports this module
    from services.approvals.domain.casetypes import CaseTypeSpec, RuleSpec

__all__ = [
    "APPLICANT",
    "AllOf",
    "AnyOf",
    "ClaimRef",
    "Condition",
    "FieldRef",
    "Literal",
    "Not",
    "Operand",
    "Operator",
    "ParamRef",
    "RateOf",
    "Reference",
    "RuleResult",
    "Test",
    "Value",
    "evaluate",
    "format_message",
    "placeholders",
    "referenced_claims",
    "show",
]

#: The subject of a required proof that is the applicant (others name an identifier parameter).
APPLICANT: Final = "applicant"

_NAME_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Operator(enum.Enum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    AT_LEAST = "at_least"
    AT_MOST = "at_most"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    CONTAINS_NONE = "contains_none"
    SUBSET_OF = "subset_of"
    IS_EMPTY = "is_empty"
    IS_NOT_EMPTY = "is_not_empty"
    ANY_ITEM = "any_item"
    ALL_ITEMS = "all_items"


@dataclass(frozen=True)
class ClaimRef:
    """A claim of the rule's proof."""

    name: str


@dataclass(frozen=True)
class ParamRef:
    """A case parameter, typed by its ParameterSpec (integers and fen as int, dates as date)."""

    name: str


@dataclass(frozen=True)
class FieldRef:
    """A field of the current item inside any_item / all_items."""

    name: str


@dataclass(frozen=True)
class Literal:
    value: Value


@dataclass(frozen=True)
class RateOf:
    """``base * basis_points / 10_000``, rounded half up (both non-negative integers)."""

    base: Operand
    basis_points: Operand


Reference: TypeAlias = ClaimRef | ParamRef | FieldRef
Operand: TypeAlias = ClaimRef | ParamRef | FieldRef | Literal | RateOf


@dataclass(frozen=True)
class Test:
    target: Reference
    operator: Operator
    #: None for is_empty / is_not_empty and the item quantifiers.
    operand: Operand | None = None
    #: The condition over each item, for any_item / all_items.
    item_condition: Condition | None = None


@dataclass(frozen=True)
class AllOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    condition: Condition


Condition: TypeAlias = Test | AllOf | AnyOf | Not


@dataclass(frozen=True)
class RuleResult:
    rule_id: str
    department_code: str
    passed: bool
    #: The claims the rule names, with their values (those the proof carries).
    evidence: dict[str, Value]
    #: The description when passed; the explanation when failed.
    message_zh: str
    message_en: str
    #: The proof the rule read: its type and subject ("applicant" or an identifier parameter's
    #: name), so the caller can name the proof id next to each piece of evidence.
    proof_type: str
    subject: str
    #: True when the rule failed because evidence was missing or unusable (no proof, no such
    #: claim, no parameter value, values that cannot be compared), not because it said no.
    evidence_missing: bool = field(default=False)


# --------------------------------------------------------------------------------------------
# Helpers shared with the loader


def referenced_claims(condition: Condition) -> Iterator[str]:
    """The claim names a condition refers to, in order of appearance (with repeats)."""
    if isinstance(condition, (AllOf, AnyOf)):
        for inner in condition.conditions:
            yield from referenced_claims(inner)
    elif isinstance(condition, Not):
        yield from referenced_claims(condition.condition)
    else:
        yield from _operand_claims(condition.target)
        if condition.operand is not None:
            yield from _operand_claims(condition.operand)
        if condition.item_condition is not None:
            yield from referenced_claims(condition.item_condition)


def _operand_claims(operand: Operand) -> Iterator[str]:
    if isinstance(operand, ClaimRef):
        yield operand.name
    elif isinstance(operand, RateOf):
        yield from _operand_claims(operand.base)
        yield from _operand_claims(operand.basis_points)


def placeholders(template: str) -> list[str]:
    """The names a message template refers to ({name}); ``{{`` and ``}}`` are literal braces.

    ValueError for anything but plain names: unbalanced braces, a format spec or conversion
    ({x:>5}, {x!r}), attribute or index access ({x.y}, {x[0]}), an empty {}.
    """
    names: list[str] = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} may not have a format spec or conversion")
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"placeholder {{{name}}} must be a plain claim or parameter name")
        names.append(name)
    return names


def format_message(template: str, values: Mapping[str, Value], language: str) -> str:
    """``template`` with each {name} replaced by ``values[name]`` shown as text in ``language``
    ("zh" or "en"); a name without a value shows as ?. No str.format: nothing but a lookup by
    name ever happens, whatever the template says."""
    parts: list[str] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            parts.append(show(values[name], language) if name in values else "?")
    return "".join(parts)


def show(value: Value, language: str) -> str:
    zh = language == "zh"
    if isinstance(value, bool):
        return ("是" if value else "否") if zh else ("yes" if value else "no")
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        if not value:
            return "无" if zh else "none"
        return ("、" if zh else ", ").join(show(item, language) for item in value)
    if isinstance(value, dict):
        if not value:
            return "无" if zh else "none"
        inner = ("，" if zh else ", ").join(f"{key}={show(item, language)}" for key, item in value.items())
        return f"[{inner}]"
    if value == "":
        return "无" if zh else "none"
    if zh and isinstance(value, str):
        return labels.zh(value)
    return str(value)


# --------------------------------------------------------------------------------------------
# Evaluation


class _Missing(Exception):
    """Evidence missing or unusable: fails the whole rule with this message."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh = zh
        self.en = en


@dataclass(frozen=True)
class _Scope:
    claims: Mapping[str, Value]
    parameters: Mapping[str, Value]
    proof_type: str
    #: The current item inside any_item / all_items.
    item: Mapping[str, Value] | None = None


def evaluate(
    spec: CaseTypeSpec,
    claims: Mapping[tuple[str, str], Mapping[str, Value]],
    parameters: Mapping[str, str],
    *,
    department: str | None = None,
) -> tuple[RuleResult, ...]:
    """Every rule of ``spec`` (or only ``department``'s), in declaration order, over the claims of
    the case's proofs keyed by (proof_type, subject) and the case's validated parameters (the
    result of validate_parameters; defaults are applied again for any left out)."""
    typed = _typed_parameters(spec, parameters)
    return tuple(
        _evaluate_rule(rule, claims.get((rule.proof_type, rule.subject)), typed)
        for rule in spec.rules
        if department is None or rule.department_code == department
    )


def _typed_parameters(spec: CaseTypeSpec, given: Mapping[str, str]) -> dict[str, Value]:
    typed: dict[str, Value] = {}
    for parameter in spec.parameters:
        # Never compared and never shown (the loader refuses both): kept out anyway. Compared by
        # value because casetypes (where ParameterType lives) imports this module.
        if parameter.type.value == "identifier":
            continue
        raw = given.get(parameter.name) or parameter.default
        if not raw:
            continue
        try:
            typed[parameter.name] = parameter.typed_value(raw)
        except ValueError:
            continue  # a malformed value counts as absent: a rule naming it fails as missing
    return typed


def _evaluate_rule(rule: RuleSpec, claims: Mapping[str, Value] | None, parameters: Mapping[str, Value]) -> RuleResult:
    names = list(dict.fromkeys(referenced_claims(rule.condition)))
    available: Mapping[str, Value] = claims or {}
    evidence = {name: available[name] for name in names if name in available}

    def result(passed: bool, zh: str, en: str, missing: bool = False) -> RuleResult:
        return RuleResult(
            rule.rule_id, rule.department_code, passed, evidence, zh, en, rule.proof_type, rule.subject, missing
        )

    if claims is None:
        who_zh = "申请人" if rule.subject == APPLICANT else rule.subject
        who_en = "the applicant" if rule.subject == APPLICANT else rule.subject
        return result(
            False,
            f"未取得{who_zh}的 {rule.proof_type} 证明，无法核验：{rule.description_zh}",
            f"No {rule.proof_type} proof of {who_en} is available, so this cannot be checked: {rule.description_en}",
            True,
        )
    scope = _Scope(claims, parameters, rule.proof_type)
    try:
        passed = _holds(rule.condition, scope)
    except _Missing as missing:
        return result(False, missing.zh, missing.en, True)
    if passed:
        return result(True, rule.description_zh, rule.description_en)
    # Claims win over parameters of the same name (see the module docstring).
    values: dict[str, Value] = {**parameters, **claims}
    return result(False, format_message(rule.explain_zh, values, "zh"), format_message(rule.explain_en, values, "en"))


def _holds(condition: Condition, scope: _Scope) -> bool:
    if isinstance(condition, AllOf):
        return all(_holds(inner, scope) for inner in condition.conditions)
    if isinstance(condition, AnyOf):
        return any(_holds(inner, scope) for inner in condition.conditions)
    if isinstance(condition, Not):
        return not _holds(condition.condition, scope)
    return _test(condition, scope)


def _resolve(operand: Operand, scope: _Scope) -> Value:
    if isinstance(operand, Literal):
        return operand.value
    if isinstance(operand, ClaimRef):
        if operand.name not in scope.claims:
            raise _Missing(
                f"{scope.proof_type} 证明中没有声明项 {operand.name}",
                f"The {scope.proof_type} proof carries no claim {operand.name}",
            )
        return scope.claims[operand.name]
    if isinstance(operand, ParamRef):
        if operand.name not in scope.parameters:
            raise _Missing(f"参数 {operand.name} 没有有效的值", f"Parameter {operand.name} has no valid value")
        return scope.parameters[operand.name]
    if isinstance(operand, FieldRef):
        if scope.item is None or operand.name not in scope.item:
            raise _Missing(
                f"{scope.proof_type} 证明的列表项中没有字段 {operand.name}",
                f"An item of the {scope.proof_type} proof has no field {operand.name}",
            )
        return scope.item[operand.name]
    base, points = _resolve(operand.base, scope), _resolve(operand.basis_points, scope)
    if (
        isinstance(base, bool)
        or isinstance(points, bool)
        or not isinstance(base, int)
        or not isinstance(points, int)
        or base < 0
        or points < 0
    ):
        raise _Missing("计税依据或税率不是非负整数，无法计算", "A tax base or rate is not a non-negative integer")
    # Half up, in integers: money is fen and rates are basis points, never floats.
    return (base * points + 5_000) // 10_000


def _same(a: Value, b: Value) -> bool:
    """Equality that keeps kinds apart: True is not 1, a date is not a datetime."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, datetime.datetime) or isinstance(b, datetime.datetime):
        return isinstance(a, datetime.datetime) and isinstance(b, datetime.datetime) and a == b
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_same(a[key], b[key]) for key in a)
        )
    return type(a) is type(b) and a == b


def _name(reference: Reference) -> str:
    return reference.name


def _test(test: Test, scope: _Scope) -> bool:
    value = _resolve(test.target, scope)
    op = test.operator
    if op in (Operator.ANY_ITEM, Operator.ALL_ITEMS):
        items = _list_of(value, test.target, scope)
        if test.item_condition is None:  # the loader never builds this
            raise _Missing("规则缺少条件", "The rule has no item condition")
        results = []
        for item in items:
            if not isinstance(item, dict):
                raise _Missing(
                    f"{_name(test.target)} 的列表项不是映射", f"The items of {_name(test.target)} are not maps"
                )
            results.append(_holds(test.item_condition, _Scope(scope.claims, scope.parameters, scope.proof_type, item)))
            if op is Operator.ANY_ITEM and results[-1]:
                return True
            if op is Operator.ALL_ITEMS and not results[-1]:
                return False
        return op is Operator.ALL_ITEMS
    if op in (Operator.IS_EMPTY, Operator.IS_NOT_EMPTY):
        if not isinstance(value, (str, list, dict)):
            raise _Missing(
                f"{_name(test.target)} 的值不能判断是否为空",
                f"The value of {_name(test.target)} cannot be empty or not",
            )
        return (len(value) == 0) == (op is Operator.IS_EMPTY)
    if test.operand is None:  # the loader never builds this
        raise _Missing("规则缺少比较对象", "The rule has no operand")
    other = _resolve(test.operand, scope)
    if op is Operator.EQUALS:
        return _same(value, other)
    if op is Operator.NOT_EQUALS:
        return not _same(value, other)
    if op in (Operator.AT_LEAST, Operator.AT_MOST):
        low, high = (other, value) if op is Operator.AT_LEAST else (value, other)
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool) and not isinstance(high, bool):
            return low <= high
        if (
            isinstance(low, datetime.date)
            and isinstance(high, datetime.date)
            and not isinstance(low, datetime.datetime)
            and not isinstance(high, datetime.datetime)
        ):
            return low <= high
        raise _Missing(
            f"{_name(test.target)} 的值无法与规则中的值比较大小（需同为整数或同为日期）",
            f"The value of {_name(test.target)} cannot be compared with the rule's (integers with integers, "
            "dates with dates)",
        )
    if op in (Operator.IN, Operator.NOT_IN):
        found = any(_same(value, choice) for choice in _as_list(other))
        return found if op is Operator.IN else not found
    items = _list_of(value, test.target, scope)
    wanted = _as_list(other)
    if op is Operator.CONTAINS:
        return all(any(_same(item, w) for item in items) for w in wanted)
    if op is Operator.CONTAINS_NONE:
        return not any(_same(item, w) for item in items for w in wanted)
    # SUBSET_OF
    return all(any(_same(item, w) for w in wanted) for item in items)


def _as_list(value: Value) -> list[Value]:
    return value if isinstance(value, list) else [value]


def _list_of(value: Value, target: Reference, scope: _Scope) -> list[Value]:
    if not isinstance(value, list):
        raise _Missing(f"{_name(target)} 的值不是列表", f"The value of {_name(target)} is not a list")
    return value
