"""The insurance share (services/health/domain/insurance.py): arithmetic to the fen, the deductible and the
cap, and bad input. No broker, no I/O.

The arithmetic is checked two ways: worked examples written out by hand, and a deterministic loop
over thousands of generated visits and policies (hypothesis is not installed in the venv) checking
that the shares always add up, are ints, never exceed the ratio, match an independent closed-form
computation, and never change when later charges are added. A scan of the modules' tokens proves
there is no float literal and no true division anywhere in the health domain's money code.
"""

from __future__ import annotations

import dataclasses
import io
import random
import tokenize
from collections import defaultdict
from pathlib import Path

import pytest

from govmesh.errors import InvalidArgument
from govmesh.health.v1 import medical_credit_pb2
from services.health.domain.credit import VisitKind
from services.health.domain.insurance import (
    DEFAULT_INPATIENT,
    DEFAULT_INSURANCE_POLICY,
    DEFAULT_OUTPATIENT,
    MAX_CHARGE_FEN,
    MAX_CHARGES_PER_VISIT,
    MAX_VISIT_FEN,
    CategoryShare,
    ChargeCategory,
    ChargeLine,
    Coverage,
    InsurancePolicy,
    Split,
    split,
    validate_charge,
)

C = ChargeCategory
OUT, IN = VisitKind.OUTPATIENT, VisitKind.INPATIENT
YUAN = 100
HEALTH = Path(__file__).resolve().parents[3] / "services" / "health" / "domain"


def line(category: ChargeCategory, amount_fen: int) -> ChargeLine:
    return ChargeLine(category, amount_fen)


def coverage(ratio_bp: int = 10_000, *, deductible_fen: int = 0, cap_fen: int | None = None) -> Coverage:
    return Coverage({c: ratio_bp for c in C}, deductible_fen=deductible_fen, cap_fen=cap_fen)


# --- the enum and the defaults -----------------------------------------------------------------


def test_categories_match_the_contract_in_its_order() -> None:
    names = [name.removeprefix("CHARGE_CATEGORY_") for name in medical_credit_pb2.ChargeCategory.keys()]
    assert names[0] == "UNSPECIFIED"
    assert [c.name for c in C] == names[1:]


def test_default_ratios_are_the_documented_table() -> None:
    expected = {
        C.CONSULTATION: (7_000, 9_000),
        C.MEDICINE: (8_000, 9_000),
        C.HERBAL_MEDICINE: (7_000, 8_500),
        C.EXAMINATION: (7_500, 8_500),
        C.LABORATORY: (8_000, 9_000),
        C.TREATMENT: (8_000, 9_000),
        C.SURGERY: (8_000, 9_000),
        C.MATERIALS: (6_000, 7_000),
        C.BED: (0, 9_000),
        C.NURSING: (8_000, 9_000),
        C.OTHER: (0, 0),
    }
    for category, (outpatient, inpatient) in expected.items():
        assert DEFAULT_INSURANCE_POLICY.ratio_bp(OUT, category) == outpatient
        assert DEFAULT_INSURANCE_POLICY.ratio_bp(IN, category) == inpatient
    assert (DEFAULT_OUTPATIENT.deductible_fen, DEFAULT_OUTPATIENT.cap_fen) == (0, 2_000_000)
    assert (DEFAULT_INPATIENT.deductible_fen, DEFAULT_INPATIENT.cap_fen) == (80_000, 40_000_000)
    assert InsurancePolicy() == DEFAULT_INSURANCE_POLICY


# --- worked examples ---------------------------------------------------------------------------


def test_an_outpatient_visit_to_the_fen() -> None:
    result = split(
        [line(C.CONSULTATION, 2_500), line(C.MEDICINE, 12_347), line(C.LABORATORY, 8_001), line(C.OTHER, 1_000)],
        OUT,
    )
    # 2,500 * 70% = 1,750; 12,347 * 80% = 9,877.6 -> 9,877; 8,001 * 80% = 6,400.8 -> 6,400; OTHER 0.
    assert [(s.insurance_fen, s.self_pay_fen) for s in result.charges] == [
        (1_750, 750),
        (9_877, 2_470),
        (6_400, 1_601),
        (0, 1_000),
    ]
    assert result.categories == (
        CategoryShare(C.CONSULTATION, 7_000, 2_500, 1_750, 750),
        CategoryShare(C.MEDICINE, 8_000, 12_347, 9_877, 2_470),
        CategoryShare(C.LABORATORY, 8_000, 8_001, 6_400, 1_601),
        CategoryShare(C.OTHER, 0, 1_000, 0, 1_000),
    )
    assert (result.total_fen, result.insurance_fen, result.self_pay_fen) == (23_848, 18_027, 5_821)
    assert (result.deductible_fen, result.capped) == (0, False)


def test_rounding_is_once_per_category_not_once_per_charge() -> None:
    """Three charges of 1 fen at 80%: rounded per charge the fund would pay nothing; rounded on
    the category's running total it pays floor(3 * 0.8) = 2 fen, the patient 1."""
    result = split([line(C.MEDICINE, 1)] * 3, OUT)
    assert [s.insurance_fen for s in result.charges] == [0, 1, 1]
    assert [s.self_pay_fen for s in result.charges] == [1, 0, 0]
    assert (result.categories[0].insurance_fen, result.categories[0].self_pay_fen) == (2, 1)
    # A category's running total is its own: interleaved categories do not pool their fractions.
    mixed = split([line(C.MEDICINE, 1), line(C.LABORATORY, 1), line(C.MEDICINE, 1), line(C.LABORATORY, 1)], OUT)
    assert [s.insurance_fen for s in mixed.charges] == [0, 0, 1, 1]


def test_categories_come_in_the_contracts_order_whatever_the_charges_order() -> None:
    result = split([line(C.OTHER, 1), line(C.SURGERY, 1), line(C.CONSULTATION, 1), line(C.SURGERY, 1)], IN)
    assert [c.category for c in result.categories] == [C.CONSULTATION, C.SURGERY, C.OTHER]
    assert [c.total_fen for c in result.categories] == [1, 2, 1]


def test_an_empty_visit_splits_into_zeros() -> None:
    result = split([], IN)
    assert result == Split(IN, (), (), 0, 0, 0, 0, False)


def test_luo_fangs_two_operations_get_over_half_reimbursed() -> None:
    """The seed's 罗舫: two operations, about 55,000 yuan, more than half reimbursed."""
    charges = [
        line(C.EXAMINATION, 500_000),  # meets the 800-yuan deductible first: (500,000 - 80,000) * 85%
        line(C.LABORATORY, 300_000),
        line(C.SURGERY, 1_500_000),
        line(C.MATERIALS, 1_200_000),
        line(C.MEDICINE, 1_400_000),
        line(C.BED, 150_000),
        line(C.NURSING, 150_000),
        line(C.OTHER, 300_000),
    ]
    result = split(charges, IN)
    assert [s.insurance_fen for s in result.charges] == [
        357_000,
        270_000,
        1_350_000,
        840_000,
        1_260_000,
        135_000,
        135_000,
        0,
    ]
    assert result.charges[0].deductible_fen == 80_000
    assert (result.total_fen, result.insurance_fen, result.self_pay_fen) == (5_500_000, 4_347_000, 1_153_000)
    assert result.insurance_fen * 2 > result.total_fen
    assert result.self_pay_fen <= 1_500_000  # within the HIGH tier's 15,000-yuan inpatient limit


# --- deductible --------------------------------------------------------------------------------


def test_the_deductible_is_met_by_the_first_covered_charges_in_order() -> None:
    result = split(
        [
            line(C.OTHER, 50_000),  # not covered: does not count towards the deductible
            line(C.MEDICINE, 30_000),  # all of it meets the deductible
            line(C.SURGERY, 100_000),  # 50,000 meets the rest, 50,000 * 90% = 45,000
            line(C.MEDICINE, 10_001),  # MEDICINE's base starts here: 10,001 * 90% = 9,000.9 -> 9,000
        ],
        IN,
    )
    assert [s.deductible_fen for s in result.charges] == [0, 30_000, 50_000, 0]
    assert [s.insurance_fen for s in result.charges] == [0, 0, 45_000, 9_000]
    assert result.deductible_fen == 80_000
    assert (result.insurance_fen, result.self_pay_fen) == (54_000, 136_001)


def test_a_stay_below_the_deductible_is_all_self_pay() -> None:
    result = split([line(C.BED, 30_000), line(C.NURSING, 49_999)], IN)
    assert result.insurance_fen == 0
    assert result.self_pay_fen == result.total_fen == 79_999
    assert result.deductible_fen == 79_999
    # One fen more than the deductible: 1 fen at 90% is 0.9 fen, rounded down to nothing.
    assert split([line(C.BED, 30_000), line(C.NURSING, 50_001)], IN).insurance_fen == 0
    # Eleven fen above it: 11 * 90% = 9.9 -> 9.
    assert split([line(C.BED, 30_000), line(C.NURSING, 50_011)], IN).insurance_fen == 9


def test_outpatients_have_no_deductible_by_default_but_may_be_given_one() -> None:
    assert split([line(C.MEDICINE, 10_000)], OUT).insurance_fen == 8_000
    policy = InsurancePolicy(outpatient=coverage(5_000, deductible_fen=2_000))
    result = split([line(C.MEDICINE, 10_000)], OUT, policy)
    assert (result.deductible_fen, result.insurance_fen, result.self_pay_fen) == (2_000, 4_000, 6_000)


# --- cap ---------------------------------------------------------------------------------------


def test_the_cap_cuts_the_charge_that_reaches_it_and_later_ones_are_self_pay() -> None:
    result = split(
        [line(C.SURGERY, 2_000_000), line(C.MEDICINE, 600_000), line(C.LABORATORY, 100_000)],
        OUT,  # outpatient cap: 20,000 yuan
    )
    assert [s.insurance_fen for s in result.charges] == [1_600_000, 400_000, 0]
    assert [s.self_pay_fen for s in result.charges] == [400_000, 200_000, 100_000]
    assert result.insurance_fen == 2_000_000
    assert result.capped is True
    assert result.insurance_fen + result.self_pay_fen == result.total_fen == 2_700_000


def test_reaching_the_cap_exactly_is_not_capped_until_a_fen_more_would_be_paid() -> None:
    ratios = {**{c: 8_000 for c in C}, C.OTHER: 0}
    policy = InsurancePolicy(outpatient=Coverage(ratios, cap_fen=2_000_000))
    charges = [line(C.SURGERY, 2_500_000)]
    assert (split(charges, OUT, policy).insurance_fen, split(charges, OUT, policy).capped) == (2_000_000, False)
    charges += [line(C.OTHER, 100), line(C.MEDICINE, 1)]  # OTHER pays nothing; 1 fen * 80% rounds to 0
    assert split(charges, OUT, DEFAULT_INSURANCE_POLICY).capped is False
    assert split(charges, OUT, policy).capped is False
    charges += [line(C.MEDICINE, 1)]  # MEDICINE's running 2 fen * 80% = 1 fen: over the cap
    result = split(charges, OUT, policy)
    assert (result.insurance_fen, result.capped) == (2_000_000, True)
    assert result.charges[-1].insurance_fen == 0


def test_a_zero_cap_pays_nothing() -> None:
    policy = InsurancePolicy(inpatient=coverage(9_000, cap_fen=0))
    result = split([line(C.SURGERY, 1_000_000)], IN, policy)
    assert (result.insurance_fen, result.self_pay_fen, result.capped) == (0, 1_000_000, True)


# --- properties over many generated visits -----------------------------------------------------

_RATIOS = (0, 1, 1, 3_333, 5_000, 6_667, 7_000, 7_500, 8_000, 8_500, 9_000, 9_999, 10_000)


def _random_policy(rng: random.Random) -> InsurancePolicy:
    def one() -> Coverage:
        ratios = {c: rng.choice(_RATIOS) if rng.random() < 0.7 else rng.randint(0, 10_000) for c in C}
        deductible = rng.choice((0, 0, 1, 99, 80_000, rng.randint(0, 5_000_000)))
        cap = rng.choice((None, None, 0, 1, 2_000_000, rng.randint(0, 10_000_000)))
        return Coverage(ratios, deductible_fen=deductible, cap_fen=cap)

    return InsurancePolicy(outpatient=one(), inpatient=one())


def _random_charges(rng: random.Random) -> list[ChargeLine]:
    categories = rng.sample(list(C), rng.randint(1, len(C)))  # some visits use few categories
    charges = []
    for _ in range(rng.choice((0, 1, 2, 3, 5, 8, 13, 30))):
        size = rng.random()
        if size < 0.3:
            amount = rng.randint(1, 9)  # where rounding matters most
        elif size < 0.9:
            amount = rng.randint(1, 200_000)
        else:
            amount = rng.randint(1, 20_000_000)
        charges.append(line(rng.choice(categories), amount))
    return charges


def _closed_form(charges: list[ChargeLine], kind: VisitKind, policy: InsurancePolicy) -> tuple[dict[C, int], int]:
    """Per category, the uncapped insurance share, computed without the module's running totals:
    the deductible meets covered charges in order, then floor(base * ratio / 10000) per category."""
    cover = policy.coverage(kind)
    covered_before = 0
    base: dict[C, int] = defaultdict(int)
    for charge in charges:
        if cover.ratios_bp[charge.category] == 0:
            continue
        met = min(max(cover.deductible_fen - covered_before, 0), charge.amount_fen)
        covered_before += charge.amount_fen
        base[charge.category] += charge.amount_fen - met
    insurance = {c: divmod(b * cover.ratios_bp[c], 10_000)[0] for c, b in base.items()}
    return insurance, min(covered_before, cover.deductible_fen)


def _check(result: Split, charges: list[ChargeLine], kind: VisitKind, policy: InsurancePolicy) -> None:
    cover = policy.coverage(kind)
    assert len(result.charges) == len(charges)
    for share, charge in zip(result.charges, charges, strict=True):
        for value in (share.amount_fen, share.insurance_fen, share.self_pay_fen, share.deductible_fen):
            assert type(value) is int
        assert share.category is charge.category and share.amount_fen == charge.amount_fen
        assert share.insurance_fen + share.self_pay_fen == share.amount_fen
        assert 0 <= share.insurance_fen <= share.amount_fen
        assert 0 <= share.deductible_fen <= share.self_pay_fen

    by_category: dict[C, list[int]] = defaultdict(lambda: [0, 0, 0])
    for share in result.charges:
        sums = by_category[share.category]
        sums[0] += share.amount_fen
        sums[1] += share.insurance_fen
        sums[2] += share.self_pay_fen
    assert [c.category for c in result.categories] == [c for c in C if c in by_category]
    for category_share in result.categories:
        for value in (category_share.total_fen, category_share.insurance_fen, category_share.self_pay_fen):
            assert type(value) is int
        assert category_share.insurance_ratio_bp == cover.ratios_bp[category_share.category]
        assert [category_share.total_fen, category_share.insurance_fen, category_share.self_pay_fen] == by_category[
            category_share.category
        ]
        assert category_share.insurance_fen + category_share.self_pay_fen == category_share.total_fen
        # Never more than the ratio of the whole category, rounded down.
        assert category_share.insurance_fen <= category_share.total_fen * category_share.insurance_ratio_bp // 10_000

    for value in (result.total_fen, result.insurance_fen, result.self_pay_fen, result.deductible_fen):
        assert type(value) is int
    assert result.total_fen == sum(c.amount_fen for c in charges)
    assert result.insurance_fen == sum(c.insurance_fen for c in result.categories)
    assert result.self_pay_fen == sum(c.self_pay_fen for c in result.categories)
    assert result.insurance_fen + result.self_pay_fen == result.total_fen

    expected, deductible_met = _closed_form(charges, kind, policy)
    assert result.deductible_fen == deductible_met == sum(s.deductible_fen for s in result.charges)
    uncapped = sum(expected.values())
    if cover.cap_fen is None or uncapped <= cover.cap_fen:
        assert {c.category: c.insurance_fen for c in result.categories if c.category in expected} == expected
        assert result.insurance_fen == uncapped
        assert result.capped is False
    else:
        assert result.insurance_fen == cover.cap_fen
        assert result.capped is True
        for category_share in result.categories:
            assert category_share.insurance_fen <= expected.get(category_share.category, 0)


@pytest.mark.parametrize("seed", range(8))
def test_shares_always_add_up_to_the_fen(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(400):
        policy = _random_policy(rng) if rng.random() < 0.7 else DEFAULT_INSURANCE_POLICY
        charges = _random_charges(rng)
        kind = rng.choice((OUT, IN))
        result = split(charges, kind, policy)
        _check(result, charges, kind, policy)
        # Adding charges never changes the split of the earlier ones, and never lowers self-pay.
        cut = rng.randint(0, len(charges))
        prefix = split(charges[:cut], kind, policy)
        assert prefix.charges == result.charges[:cut]
        assert prefix.self_pay_fen <= result.self_pay_fen
        assert prefix.insurance_fen <= result.insurance_fen


def test_every_ratio_on_every_small_amount() -> None:
    """Exhaustive over small amounts, where rounding decides every fen."""
    for ratio in range(0, 10_001, 37):
        policy = InsurancePolicy(outpatient=coverage(ratio))
        for amount in range(1, 60):
            result = split([line(C.TREATMENT, amount)], OUT, policy)
            assert result.insurance_fen == amount * ratio // 10_000
            assert result.insurance_fen + result.self_pay_fen == amount


def test_the_largest_visit_is_exact() -> None:
    policy = InsurancePolicy(inpatient=coverage(9_999))
    charges = [line(C.SURGERY, MAX_CHARGE_FEN)] * (MAX_VISIT_FEN // MAX_CHARGE_FEN)
    result = split(charges, IN, policy)
    assert result.total_fen == MAX_VISIT_FEN
    assert result.insurance_fen == MAX_VISIT_FEN * 9_999 // 10_000 == 999_900_000
    assert result.self_pay_fen == 100_000


@pytest.mark.parametrize("module", ["credit.py", "insurance.py"])
def test_no_float_anywhere_in_the_money_code(module: str) -> None:
    """No float literal, no true division, no float() or round(): floor division on ints only."""
    source = (HEALTH / module).read_text(encoding="utf-8")
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NUMBER:
            assert token.string.replace("_", "").isdigit(), f"{module}:{token.start[0]}: {token.string}"
        if token.type == tokenize.OP:
            assert token.string not in ("/", "/="), f"{module}:{token.start[0]}: true division"
        if token.type == tokenize.NAME:
            assert token.string not in ("float", "round", "Decimal", "Fraction"), f"{module}:{token.start[0]}"


# --- bad input ---------------------------------------------------------------------------------


def _refused(excinfo: pytest.ExceptionInfo[InvalidArgument], field: str, reason: str) -> None:
    error = excinfo.value
    assert (error.field, error.reason, error.status) == (field, reason, "INVALID_ARGUMENT")
    assert error.message.startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        (0, "NOT_POSITIVE"),
        (-1, "NOT_POSITIVE"),
        (-MAX_CHARGE_FEN, "NOT_POSITIVE"),
        (1.5, "NOT_INTEGER"),
        (100.0, "NOT_INTEGER"),
        (True, "NOT_INTEGER"),
        ("100", "NOT_INTEGER"),
        (None, "NOT_INTEGER"),
        (MAX_CHARGE_FEN + 1, "TOO_LARGE"),
        (10**30, "TOO_LARGE"),
    ],
)
def test_bad_amounts_name_the_field_and_reason(amount: object, reason: str) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        validate_charge(C.MEDICINE, amount)
    _refused(excinfo, "amount_fen", reason)
    with pytest.raises(InvalidArgument) as excinfo:
        split([line(C.MEDICINE, 100), line(C.MEDICINE, 100), ChargeLine(C.MEDICINE, amount)], OUT)  # type: ignore[arg-type]
    _refused(excinfo, "charges[2].amount_fen", reason)


@pytest.mark.parametrize("category", [None, 2, "MEDICINE", medical_credit_pb2.CHARGE_CATEGORY_MEDICINE])
def test_a_charge_needs_a_category(category: object) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        validate_charge(category, 100)
    _refused(excinfo, "category", "UNSPECIFIED")
    with pytest.raises(InvalidArgument) as excinfo:
        split([ChargeLine(category, 100)], IN)  # type: ignore[arg-type]
    _refused(excinfo, "charges[0].category", "UNSPECIFIED")


def test_the_largest_charge_and_visit_are_accepted_and_one_fen_more_is_not() -> None:
    validate_charge(C.SURGERY, MAX_CHARGE_FEN)
    validate_charge(C.SURGERY, 5, visit_total_fen=MAX_VISIT_FEN - 5)
    with pytest.raises(InvalidArgument) as excinfo:
        validate_charge(C.SURGERY, 6, visit_total_fen=MAX_VISIT_FEN - 5)
    _refused(excinfo, "amount_fen", "VISIT_TOO_LARGE")
    charges = [line(C.SURGERY, MAX_CHARGE_FEN)] * (MAX_VISIT_FEN // MAX_CHARGE_FEN) + [line(C.OTHER, 1)]
    with pytest.raises(InvalidArgument) as excinfo:
        split(charges, IN)
    _refused(excinfo, "charges[10].amount_fen", "VISIT_TOO_LARGE")


def test_too_many_charges() -> None:
    policy = InsurancePolicy(max_charges=3)
    split([line(C.OTHER, 1)] * 3, OUT, policy)
    with pytest.raises(InvalidArgument) as excinfo:
        split([line(C.OTHER, 1)] * 4, OUT, policy)
    _refused(excinfo, "charges", "TOO_MANY")
    assert DEFAULT_INSURANCE_POLICY.max_charges == MAX_CHARGES_PER_VISIT


def test_configured_maxima_apply() -> None:
    policy = InsurancePolicy(max_charge_fen=1_000, max_visit_fen=1_500)
    with pytest.raises(InvalidArgument) as excinfo:
        validate_charge(C.OTHER, 1_001, policy=policy)
    _refused(excinfo, "amount_fen", "TOO_LARGE")
    with pytest.raises(InvalidArgument) as excinfo:
        split([line(C.OTHER, 1_000), line(C.OTHER, 501)], OUT, policy)
    _refused(excinfo, "charges[1].amount_fen", "VISIT_TOO_LARGE")


@pytest.mark.parametrize("kind", [None, "outpatient", 1, medical_credit_pb2.VISIT_KIND_INPATIENT])
def test_a_visit_needs_a_kind(kind: object) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        split([line(C.OTHER, 1)], kind)  # type: ignore[arg-type]
    _refused(excinfo, "kind", "UNSPECIFIED")


# --- the policy is configurable and checked ----------------------------------------------------


def test_coverage_is_frozen_all_the_way_down() -> None:
    ratios = {c: 5_000 for c in C}
    cover = Coverage(ratios)
    ratios[C.MEDICINE] = 10_000
    assert cover.ratios_bp[C.MEDICINE] == 5_000
    with pytest.raises(TypeError):
        cover.ratios_bp[C.MEDICINE] = 10_000  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cover.cap_fen = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Coverage({c: 5_000 for c in C if c is not C.OTHER}),
        lambda: Coverage({**{c: 5_000 for c in C}, "MEDICINE": 5_000}),  # type: ignore[dict-item]
        lambda: Coverage({**{c: 5_000 for c in C}, C.MEDICINE: 10_001}),
        lambda: Coverage({**{c: 5_000 for c in C}, C.MEDICINE: -1}),
        lambda: Coverage({**{c: 5_000 for c in C}, C.MEDICINE: 0.8}),  # type: ignore[dict-item]
        lambda: Coverage({**{c: 5_000 for c in C}, C.MEDICINE: True}),
        lambda: coverage(deductible_fen=-1),
        lambda: coverage(deductible_fen=MAX_VISIT_FEN + 1),
        lambda: coverage(deductible_fen=800.0),  # type: ignore[arg-type]
        lambda: coverage(cap_fen=-1),
        lambda: coverage(cap_fen=1.5),  # type: ignore[arg-type]
        lambda: InsurancePolicy(max_charge_fen=0),
        lambda: InsurancePolicy(max_charge_fen=2_000, max_visit_fen=1_000),
        lambda: InsurancePolicy(max_visit_fen=MAX_VISIT_FEN + 1),
        lambda: InsurancePolicy(max_charges=0),
        lambda: InsurancePolicy(max_charges=MAX_CHARGES_PER_VISIT + 1),
        lambda: InsurancePolicy(outpatient={c: 5_000 for c in C}),  # type: ignore[arg-type]
    ],
)
def test_bad_policies_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]
