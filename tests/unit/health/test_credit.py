"""The medical credit policy (services/health/domain/credit.py): tiers at their exact boundaries, limits,
why there is no credit, and what defaults do. No broker, no I/O.

The patient is the seed story's 罗舫 (Luo Fang) of 富阳 (Fuyang), treated first and paying later.
Claims are built the way records derives them (services/records/domain/proofs.py), from records checked
against records' catalogue, so the policy and records' claims cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import itertools
from collections.abc import Mapping

import pytest

from govmesh.health.v1 import medical_credit_pb2
from services.health.domain.credit import (
    DEFAULT_CREDIT_POLICY,
    DEFAULT_TIERS,
    MAX_SCORE,
    MIN_SCORE,
    AccountStatus,
    Assessment,
    CreditPolicy,
    CreditTier,
    DefaultRecord,
    NoCreditReason,
    TierLimits,
    VisitKind,
    assess,
    assess_values,
    available_credit,
    read_insured,
    read_score,
)
from services.records.domain.catalogue import Value, record_type, validate_fields
from services.records.domain.proofs import StoredRecord, derive_claims, proof_type

YUAN = 100
AS_OF = datetime.date(2019, 7, 9)
DEFAULTED_AT = datetime.datetime(2019, 8, 1, 12, tzinfo=datetime.UTC)
REPAID_AT = datetime.datetime(2019, 8, 5, 9, tzinfo=datetime.UTC)
_ids = itertools.count(1)


def record(department: str, code: str, fields: Mapping[str, Value]) -> StoredRecord:
    spec = record_type(department, code)
    assert spec is not None
    assert validate_fields(spec, fields) == []
    n = next(_ids)
    return StoredRecord(
        record_id=f"rec-{n:06d}",
        department_code=department,
        record_type=code,
        source_reference=f"{department}-{n}",
        fields=dict(fields),
        effective_from=datetime.date(2019, 1, 1),
        effective_to=None,
        recorded_at=datetime.datetime(2019, 1, 1, 2, tzinfo=datetime.UTC),
        superseded=False,
    )


def score_claims(score: int | None) -> dict[str, Value]:
    """records' city_credit_score claims for a patient with ``score`` (None: no score record)."""
    spec = proof_type("city_credit_score")
    assert spec is not None
    band = "excellent" if score and score >= 800 else "good"  # the band is not read by the policy
    records = (
        []
        if score is None
        else [
            record(
                "credit_center",
                "city_credit_score",
                {"score": score, "band": band, "scored_on": datetime.date(2019, 7, 1)},
            )
        ]
    )
    return derive_claims(spec, records, {}, AS_OF)


def insurance_claims(status: str | None = "active", scheme: str = "employee") -> dict[str, Value]:
    """records' medical_insurance_enrolment claims (status None: never enrolled)."""
    spec = proof_type("medical_insurance_enrolment")
    assert spec is not None
    records = (
        []
        if status is None
        else [
            record(
                "healthcare_security",
                "medical_insurance_enrolment",
                {
                    "scheme": scheme,
                    "enrolled_since": datetime.date(2010, 3, 1),
                    "status": status,
                    "insured_region": "330111",
                },
            )
        ]
    )
    return derive_claims(spec, records, {}, AS_OF)


INSURED = insurance_claims()


def defaulted(*, repaid: bool, n: int = 1) -> list[DefaultRecord]:
    return [DefaultRecord(f"bill-{i}", 12_345, DEFAULTED_AT, REPAID_AT if repaid else None) for i in range(n)]


# --- the enums match the contract ------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "proto", "prefix"),
    [
        (CreditTier, medical_credit_pb2.CreditTier, "CREDIT_TIER_"),
        (NoCreditReason, medical_credit_pb2.NoCreditReason, "NO_CREDIT_REASON_"),
        (AccountStatus, medical_credit_pb2.AccountStatus, "ACCOUNT_STATUS_"),
        (VisitKind, medical_credit_pb2.VisitKind, "VISIT_KIND_"),
    ],
)
def test_enum_names_match_the_contract(domain: type[enum.Enum], proto: object, prefix: str) -> None:
    names = [name.removeprefix(prefix) for name in proto.keys()]  # type: ignore[attr-defined]
    assert names[0] == "UNSPECIFIED"
    assert [member.name for member in domain] == names[1:]


def test_the_claims_read_are_records_claims() -> None:
    score, insurance = proof_type("city_credit_score"), proof_type("medical_insurance_enrolment")
    assert score is not None and insurance is not None
    assert {"has_score", "score"} <= set(score.claim_names)
    assert "enrolled" in insurance.claim_names


# --- tiers at their exact boundaries -----------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "tier"),
    [
        (350, CreditTier.NONE),
        (500, CreditTier.NONE),
        (549, CreditTier.NONE),
        (550, CreditTier.BASIC),
        (551, CreditTier.BASIC),
        (599, CreditTier.BASIC),
        (600, CreditTier.STANDARD),
        (601, CreditTier.STANDARD),
        (699, CreditTier.STANDARD),
        (700, CreditTier.HIGH),
        (701, CreditTier.HIGH),
        (949, CreditTier.HIGH),
        (950, CreditTier.HIGH),
    ],
)
def test_tier_boundaries_are_inclusive_lower_bounds(score: int, tier: CreditTier) -> None:
    result = assess(score_claims(score), INSURED, [])
    assert result.tier is tier
    assert result.score == score
    assert result.status is AccountStatus.ACTIVE
    if tier is CreditTier.NONE:
        assert result.reason is NoCreditReason.SCORE_TOO_LOW
        assert (result.outpatient_limit_fen, result.inpatient_limit_fen) == (0, 0)
    else:
        assert result.reason is None


def test_every_score_maps_to_exactly_the_tier_of_the_table() -> None:
    """Walks all 601 scores: the tier changes exactly at 550, 600 and 700, and never goes down."""
    changes = []
    previous = None
    for score in range(MIN_SCORE, MAX_SCORE + 1):
        tier = assess(score_claims(score), INSURED, []).tier
        if tier is not previous:
            changes.append((score, tier))
            previous = tier
    assert changes == [
        (350, CreditTier.NONE),
        (550, CreditTier.BASIC),
        (600, CreditTier.STANDARD),
        (700, CreditTier.HIGH),
    ]


@pytest.mark.parametrize(
    ("score", "outpatient", "inpatient"),
    [
        (550, 500 * YUAN, 5_000 * YUAN),
        (599, 500 * YUAN, 5_000 * YUAN),
        (600, 2_000 * YUAN, 10_000 * YUAN),
        (699, 2_000 * YUAN, 10_000 * YUAN),
        (700, 5_000 * YUAN, 15_000 * YUAN),
        (950, 5_000 * YUAN, 15_000 * YUAN),
    ],
)
def test_limits_per_tier_in_fen(score: int, outpatient: int, inpatient: int) -> None:
    result = assess(score_claims(score), INSURED, [])
    assert (result.outpatient_limit_fen, result.inpatient_limit_fen) == (outpatient, inpatient)
    assert result.limit_fen(VisitKind.OUTPATIENT) == outpatient
    assert result.limit_fen(VisitKind.INPATIENT) == inpatient
    assert type(outpatient) is int and type(inpatient) is int


def test_limits_span_the_schemes_published_range() -> None:
    """Outpatient 500 to 5,000 yuan, inpatient up to 15,000 yuan."""
    outpatient = [t.outpatient_limit_fen for t in DEFAULT_TIERS]
    inpatient = [t.inpatient_limit_fen for t in DEFAULT_TIERS]
    assert (min(outpatient), max(outpatient)) == (50_000, 500_000)
    assert max(inpatient) == 1_500_000


def test_luo_fang_with_a_good_score_and_employee_insurance() -> None:
    result = assess(score_claims(688), insurance_claims(scheme="employee"), [])
    assert result == Assessment(
        status=AccountStatus.ACTIVE,
        tier=CreditTier.STANDARD,
        reason=None,
        score=688,
        insured=True,
        defaults=0,
        outpatient_limit_fen=200_000,
        inpatient_limit_fen=1_000_000,
    )


def test_resident_scheme_counts_as_insured() -> None:
    assert assess(score_claims(720), insurance_claims(scheme="resident"), []).tier is CreditTier.HIGH


# --- no credit, and why ------------------------------------------------------------------------


def test_no_score() -> None:
    result = assess(score_claims(None), INSURED, [])
    assert result.tier is CreditTier.NONE
    assert result.reason is NoCreditReason.NO_SCORE
    assert result.score == 0
    assert result.status is AccountStatus.ACTIVE  # enrolled, paying at the counter as before
    assert (result.outpatient_limit_fen, result.inpatient_limit_fen) == (0, 0)
    assert result.available_fen(VisitKind.OUTPATIENT, 0) == 0


@pytest.mark.parametrize("status", [None, "suspended", "ended"])
def test_not_insured(status: str | None) -> None:
    result = assess(score_claims(800), insurance_claims(status), [])
    assert result.tier is CreditTier.NONE
    assert result.reason is NoCreditReason.NOT_INSURED
    assert result.score == 800  # still reported: it is what the tier would have been set from
    assert result.insured is False
    assert (result.outpatient_limit_fen, result.inpatient_limit_fen) == (0, 0)


def test_not_insured_comes_before_the_score() -> None:
    for score in (None, 400, 549):
        assert assess(score_claims(score), insurance_claims(None), []).reason is NoCreditReason.NOT_INSURED
    assert assess(score_claims(None), INSURED, []).reason is NoCreditReason.NO_SCORE


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"has_score": False, "score": 0},
        {"has_score": False, "score": 800},  # a score without has_score is not believed
        {"has_score": "true", "score": 800},
        {"has_score": 1, "score": 800},
        {"has_score": True},
        {"has_score": True, "score": True},
        {"has_score": True, "score": "800"},
        {"has_score": True, "score": 800.0},
        {"has_score": True, "score": 349},
        {"has_score": True, "score": 951},
        {"has_score": True, "score": -700},
    ],
)
def test_malformed_score_claims_read_as_no_score(claims: dict[str, object]) -> None:
    assert read_score(claims) is None
    result = assess(claims, INSURED, [])
    assert (result.tier, result.reason, result.score) == (CreditTier.NONE, NoCreditReason.NO_SCORE, 0)


@pytest.mark.parametrize("claims", [{}, {"enrolled": False}, {"enrolled": "true"}, {"enrolled": 1}])
def test_malformed_insurance_claims_read_as_not_insured(claims: dict[str, object]) -> None:
    assert read_insured(claims) is False
    assert assess(score_claims(800), claims, []).reason is NoCreditReason.NOT_INSURED


# --- defaults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "outpatient", "inpatient"),
    [(550, 25_000, 250_000), (600, 100_000, 500_000), (700, 250_000, 750_000)],
)
def test_a_first_default_suspends_and_halves_the_limits(score: int, outpatient: int, inpatient: int) -> None:
    suspended = assess(score_claims(score), INSURED, defaulted(repaid=False))
    assert suspended.status is AccountStatus.SUSPENDED
    assert suspended.defaults == 1
    # The limits shown while suspended are the ones the account returns with (BillDefaulted says so).
    assert (suspended.outpatient_limit_fen, suspended.inpatient_limit_fen) == (outpatient, inpatient)
    assert suspended.available_fen(VisitKind.OUTPATIENT, 0) == 0
    assert suspended.available_fen(VisitKind.INPATIENT, 0) == 0

    restored = assess(score_claims(score), INSURED, defaulted(repaid=True))
    assert restored.status is AccountStatus.ACTIVE
    assert restored.tier is suspended.tier  # the tier is the score's; the limits carry the penalty
    assert (restored.outpatient_limit_fen, restored.inpatient_limit_fen) == (outpatient, inpatient)
    assert restored.available_fen(VisitKind.OUTPATIENT, 0) == outpatient
    clean = assess(score_claims(score), INSURED, [])
    assert restored.outpatient_limit_fen < clean.outpatient_limit_fen
    assert restored.inpatient_limit_fen < clean.inpatient_limit_fen


@pytest.mark.parametrize("repaid", [False, True])
def test_a_second_default_closes_the_account(repaid: bool) -> None:
    history = [
        DefaultRecord("bill-1", 10_000, DEFAULTED_AT, REPAID_AT),
        DefaultRecord("bill-2", 20_000, DEFAULTED_AT + datetime.timedelta(days=90), REPAID_AT if repaid else None),
    ]
    result = assess(score_claims(900), INSURED, history)
    assert result.status is AccountStatus.CLOSED
    assert result.defaults == 2
    assert result.tier is CreditTier.HIGH
    assert result.reason is None
    assert (result.outpatient_limit_fen, result.inpatient_limit_fen) == (0, 0)
    assert result.available_fen(VisitKind.INPATIENT, 0) == 0


def test_an_unrepaid_default_suspends_even_without_credit() -> None:
    result = assess(score_claims(None), INSURED, defaulted(repaid=False))
    assert (result.status, result.tier, result.reason) == (
        AccountStatus.SUSPENDED,
        CreditTier.NONE,
        NoCreditReason.NO_SCORE,
    )


def test_defaults_history_is_read_through_repaid_at_only() -> None:
    @dataclasses.dataclass(frozen=True)
    class Row:
        repaid_at: datetime.datetime | None

    assert assess(score_claims(700), INSURED, [Row(None)]).status is AccountStatus.SUSPENDED
    assert assess(score_claims(700), INSURED, [Row(REPAID_AT)]).status is AccountStatus.ACTIVE


def test_configured_post_default_rule() -> None:
    policy = CreditPolicy(restored_limit_bp=3_333, max_defaults=3)
    two = assess(score_claims(550), INSURED, defaulted(repaid=True, n=2), policy=policy)
    assert two.status is AccountStatus.ACTIVE
    # 50,000 * 3333 // 10000 = 16,665, then 16,665 * 3333 // 10000 = 5,554 (rounded down each time).
    assert two.outpatient_limit_fen == 5_554
    # 500,000 -> 166,650 -> 55,544
    assert two.inpatient_limit_fen == 55_544
    assert assess(score_claims(550), INSURED, defaulted(repaid=True, n=3), policy=policy).status is (
        AccountStatus.CLOSED
    )
    zero = CreditPolicy(restored_limit_bp=0)
    assert assess(score_claims(800), INSURED, defaulted(repaid=True), policy=zero).outpatient_limit_fen == 0
    strict = CreditPolicy(max_defaults=1)
    assert assess(score_claims(800), INSURED, defaulted(repaid=True), policy=strict).status is AccountStatus.CLOSED


# --- available credit --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "outstanding", "available"),
    [
        (50_000, 0, 50_000),
        (50_000, 1, 49_999),
        (50_000, 49_999, 1),
        (50_000, 50_000, 0),
        (50_000, 50_001, 0),  # a lowered limit may sit below what is already owed: never negative
        (0, 0, 0),
        (0, 12_345, 0),
    ],
)
def test_available_credit(limit: int, outstanding: int, available: int) -> None:
    assert available_credit(limit, outstanding) == available
    assert type(available_credit(limit, outstanding)) is int


@pytest.mark.parametrize(
    ("limit", "outstanding", "error"),
    [
        (50_000.0, 0, TypeError),
        (50_000, 0.5, TypeError),
        (True, 0, TypeError),
        (50_000, "1", TypeError),
        (-1, 0, ValueError),
        (50_000, -1, ValueError),
    ],
)
def test_available_credit_refuses_what_is_not_fen(limit: object, outstanding: object, error: type) -> None:
    with pytest.raises(error):
        available_credit(limit, outstanding)  # type: ignore[arg-type]


def test_available_per_kind_uses_the_kinds_limit_and_all_that_is_outstanding() -> None:
    result = assess(score_claims(600), INSURED, [])
    assert result.available_fen(VisitKind.OUTPATIENT, 150_000) == 50_000
    assert result.available_fen(VisitKind.INPATIENT, 150_000) == 850_000
    assert result.available_fen(VisitKind.OUTPATIENT, 250_000) == 0


# --- the policy is configurable and checked ----------------------------------------------------


def test_configured_tiers_boundaries() -> None:
    policy = CreditPolicy(
        tiers=(
            TierLimits(CreditTier.BASIC, 600, 1_000, 2_000),
            TierLimits(CreditTier.HIGH, 800, 3_000, 4_000),
        )
    )
    assert assess_values(599, True, [], policy=policy).reason is NoCreditReason.SCORE_TOO_LOW
    assert assess_values(600, True, [], policy=policy).tier is CreditTier.BASIC
    assert assess_values(799, True, [], policy=policy).tier is CreditTier.BASIC
    high = assess_values(800, True, [], policy=policy)
    assert (high.tier, high.outpatient_limit_fen, high.inpatient_limit_fen) == (CreditTier.HIGH, 3_000, 4_000)


def test_the_default_policy_is_the_documented_one() -> None:
    assert CreditPolicy() == DEFAULT_CREDIT_POLICY
    assert [(t.tier, t.min_score) for t in DEFAULT_CREDIT_POLICY.tiers] == [
        (CreditTier.BASIC, 550),
        (CreditTier.STANDARD, 600),
        (CreditTier.HIGH, 700),
    ]
    assert (DEFAULT_CREDIT_POLICY.restored_limit_bp, DEFAULT_CREDIT_POLICY.max_defaults) == (5_000, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_CREDIT_POLICY.max_defaults = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "tiers",
    [
        (),
        (TierLimits(CreditTier.NONE, 500, 0, 0),),
        (TierLimits(CreditTier.BASIC, 350, 1, 1),),  # nothing could be too low
        (TierLimits(CreditTier.BASIC, 951, 1, 1),),
        (TierLimits(CreditTier.BASIC, 600.0, 1, 1),),  # type: ignore[arg-type]
        (TierLimits(CreditTier.BASIC, 600, 100.5, 1),),  # type: ignore[arg-type]
        (TierLimits(CreditTier.BASIC, 600, True, 1),),
        (TierLimits(CreditTier.BASIC, 600, -1, 1),),
        (TierLimits(CreditTier.BASIC, 600, 1, 100_000_001),),
        (TierLimits(CreditTier.HIGH, 600, 1, 1), TierLimits(CreditTier.BASIC, 700, 1, 1)),
        (TierLimits(CreditTier.BASIC, 600, 1, 1), TierLimits(CreditTier.BASIC, 700, 1, 1)),
        (TierLimits(CreditTier.BASIC, 700, 1, 1), TierLimits(CreditTier.HIGH, 700, 1, 1)),
        (TierLimits(CreditTier.BASIC, 600, 2, 1), TierLimits(CreditTier.HIGH, 700, 1, 1)),
        (TierLimits(CreditTier.BASIC, 600, 1, 2), TierLimits(CreditTier.HIGH, 700, 1, 1)),
    ],
)
def test_bad_tier_tables_are_refused(tiers: tuple[TierLimits, ...]) -> None:
    with pytest.raises(ValueError):
        CreditPolicy(tiers=tiers)


@pytest.mark.parametrize(
    "changes",
    [
        {"restored_limit_bp": -1},
        {"restored_limit_bp": 10_001},
        {"restored_limit_bp": 0.5},
        {"max_defaults": 0},
        {"max_defaults": 2.0},
        {"tiers": list(DEFAULT_TIERS)},
    ],
)
def test_bad_post_default_rules_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CreditPolicy(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("score", [349, 951, 700.0, True, "700"])
def test_assess_values_refuses_a_score_out_of_range(score: object) -> None:
    with pytest.raises(ValueError):
        assess_values(score, True, [])  # type: ignore[arg-type]
