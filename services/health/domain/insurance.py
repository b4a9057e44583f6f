"""The insurance share of a visit's charges: what the medical insurance fund pays directly and what
the patient owes (pure domain).

A visit's charges each have a ChargeCategory (names match govmesh.health.v1.ChargeCategory without
the CHARGE_CATEGORY_ prefix; the contract is not imported here). :func:`split` divides them, for
a kind of visit and an :class:`InsurancePolicy`, into the insurance share and the self-pay share,
per charge, per category and in total. The self-pay share is what the patient is given credit for
and repays; the insurance share is paid to the hospital by the fund.

The decisions behind these rules are in docs/decisions/: health-insurance-ratios.md,
health-insurance-deductible-and-cap.md, health-insurance-rounding.md, health-charge-validation.md,
health-integer-money.md.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from govmesh.errors import InvalidArgument
from services.health.domain.credit import BP_DENOMINATOR, VisitKind

__all__ = [
    "BP_DENOMINATOR",
    "DEFAULT_INPATIENT",
    "DEFAULT_INSURANCE_POLICY",
    "DEFAULT_OUTPATIENT",
    "MAX_CHARGES_PER_VISIT",
    "MAX_CHARGE_FEN",
    "MAX_VISIT_FEN",
    "CategoryShare",
    "ChargeCategory",
    "ChargeLike",
    "ChargeLine",
    "ChargeShare",
    "Coverage",
    "InsurancePolicy",
    "Split",
    "VisitKind",
    "split",
    "validate_charge",
]

#: The largest single charge: 1,000,000 yuan.
MAX_CHARGE_FEN: Final = 100_000_000
#: The largest visit (a long intensive-care stay stays well below): 10,000,000 yuan.
MAX_VISIT_FEN: Final = 1_000_000_000
#: The most charges on one visit (a long stay bills drugs and care line by line, every day).
MAX_CHARGES_PER_VISIT: Final = 10_000

_YUAN: Final = 100  # fen


class ChargeCategory(enum.Enum):
    """Names match govmesh.health.v1.ChargeCategory without the CHARGE_CATEGORY_ prefix, in the
    contract's order (the order of a bill's category shares)."""

    CONSULTATION = "consultation"
    MEDICINE = "medicine"
    HERBAL_MEDICINE = "herbal_medicine"
    EXAMINATION = "examination"
    LABORATORY = "laboratory"
    TREATMENT = "treatment"
    SURGERY = "surgery"
    MATERIALS = "materials"
    BED = "bed"
    NURSING = "nursing"
    OTHER = "other"


def _is_int(value: object) -> bool:
    # bool is an int subclass; True must never be read as 1 fen.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Coverage:
    """What the fund pays for one kind of visit: a ratio per category, a deductible, a cap."""

    #: Basis points per category, every category present (frozen into a read-only mapping).
    ratios_bp: Mapping[ChargeCategory, int]
    #: 起付线: the first covered fen of the visit the patient pays in full; 0 for none.
    deductible_fen: int = 0
    #: The most the fund pays on one visit; None for no cap.
    cap_fen: int | None = None

    def __post_init__(self) -> None:
        ratios = dict(self.ratios_bp)
        missing = [c.name for c in ChargeCategory if c not in ratios]
        if missing or len(ratios) != len(ChargeCategory):
            raise ValueError(f"ratios_bp must give every category exactly once (missing: {', '.join(missing)})")
        for category, ratio in ratios.items():
            if not _is_int(ratio) or not 0 <= ratio <= BP_DENOMINATOR:
                raise ValueError(f"ratios_bp[{category.name}] must be an int from 0 to {BP_DENOMINATOR}")
        if not _is_int(self.deductible_fen) or not 0 <= self.deductible_fen <= MAX_VISIT_FEN:
            raise ValueError(f"deductible_fen must be an int from 0 to {MAX_VISIT_FEN}")
        if self.cap_fen is not None and (not _is_int(self.cap_fen) or not 0 <= self.cap_fen <= MAX_VISIT_FEN):
            raise ValueError(f"cap_fen must be None or an int from 0 to {MAX_VISIT_FEN}")
        # A copy the caller cannot mutate afterwards: the policy is frozen all the way down.
        object.__setattr__(self, "ratios_bp", types.MappingProxyType(ratios))


def _ratios(**by_name: int) -> dict[ChargeCategory, int]:
    return {ChargeCategory[name]: ratio for name, ratio in by_name.items()}


#: The default outpatient coverage (docs/decisions/health-insurance-ratios.md).
DEFAULT_OUTPATIENT: Final = Coverage(
    ratios_bp=_ratios(
        CONSULTATION=7_000,
        MEDICINE=8_000,
        HERBAL_MEDICINE=7_000,
        EXAMINATION=7_500,
        LABORATORY=8_000,
        TREATMENT=8_000,
        SURGERY=8_000,
        MATERIALS=6_000,
        BED=0,
        NURSING=8_000,
        OTHER=0,
    ),
    deductible_fen=0,
    cap_fen=20_000 * _YUAN,
)

#: The default inpatient coverage (docs/decisions/health-insurance-ratios.md and
#: health-insurance-deductible-and-cap.md).
DEFAULT_INPATIENT: Final = Coverage(
    ratios_bp=_ratios(
        CONSULTATION=9_000,
        MEDICINE=9_000,
        HERBAL_MEDICINE=8_500,
        EXAMINATION=8_500,
        LABORATORY=9_000,
        TREATMENT=9_000,
        SURGERY=9_000,
        MATERIALS=7_000,
        BED=9_000,
        NURSING=9_000,
        OTHER=0,
    ),
    deductible_fen=800 * _YUAN,
    cap_fen=400_000 * _YUAN,
)


@dataclass(frozen=True)
class InsurancePolicy:
    """The configurable insurance policy: coverage per kind of visit and the size limits. The
    defaults are docs/decisions/health-insurance-ratios.md's and health-insurance-deductible-and-cap.md's."""

    outpatient: Coverage = field(default_factory=lambda: DEFAULT_OUTPATIENT)
    inpatient: Coverage = field(default_factory=lambda: DEFAULT_INPATIENT)
    max_charge_fen: int = MAX_CHARGE_FEN
    max_visit_fen: int = MAX_VISIT_FEN
    max_charges: int = MAX_CHARGES_PER_VISIT

    def __post_init__(self) -> None:
        for name in ("outpatient", "inpatient"):
            if not isinstance(getattr(self, name), Coverage):
                raise ValueError(f"{name} must be a Coverage")
        if not _is_int(self.max_charge_fen) or not 1 <= self.max_charge_fen <= MAX_VISIT_FEN:
            raise ValueError(f"max_charge_fen must be an int from 1 to {MAX_VISIT_FEN}")
        if not _is_int(self.max_visit_fen) or not self.max_charge_fen <= self.max_visit_fen <= MAX_VISIT_FEN:
            raise ValueError(f"max_visit_fen must be an int from max_charge_fen to {MAX_VISIT_FEN}")
        if not _is_int(self.max_charges) or not 1 <= self.max_charges <= MAX_CHARGES_PER_VISIT:
            raise ValueError(f"max_charges must be an int from 1 to {MAX_CHARGES_PER_VISIT}")

    def coverage(self, kind: VisitKind) -> Coverage:
        if kind is VisitKind.OUTPATIENT:
            return self.outpatient
        if kind is VisitKind.INPATIENT:
            return self.inpatient
        raise InvalidArgument("kind", "UNSPECIFIED", "must be OUTPATIENT or INPATIENT")

    def ratio_bp(self, kind: VisitKind, category: ChargeCategory) -> int:
        return self.coverage(kind).ratios_bp[category]


DEFAULT_INSURANCE_POLICY: Final = InsurancePolicy()


class ChargeLike(Protocol):
    """What :func:`split` reads of a charge (a ChargeLine, or the app layer's stored charge)."""

    @property
    def category(self) -> ChargeCategory: ...

    @property
    def amount_fen(self) -> int: ...


@dataclass(frozen=True)
class ChargeLine:
    category: ChargeCategory
    amount_fen: int


@dataclass(frozen=True)
class ChargeShare:
    """One charge split: insurance_fen + self_pay_fen == amount_fen."""

    category: ChargeCategory
    amount_fen: int
    insurance_fen: int
    self_pay_fen: int
    #: The part of the charge that met the deductible (self-pay, included in self_pay_fen).
    deductible_fen: int


@dataclass(frozen=True)
class CategoryShare:
    """One category of a visit, as govmesh.health.v1.CategoryShare: insurance_fen + self_pay_fen == total_fen."""

    category: ChargeCategory
    insurance_ratio_bp: int
    total_fen: int
    insurance_fen: int
    self_pay_fen: int


@dataclass(frozen=True)
class Split:
    """A visit split: insurance_fen + self_pay_fen == total_fen, each the sum of the categories'
    (and of the charges')."""

    kind: VisitKind
    #: In the order the charges were given.
    charges: tuple[ChargeShare, ...]
    #: The categories with at least one charge, in the contract's order.
    categories: tuple[CategoryShare, ...]
    total_fen: int
    insurance_fen: int
    self_pay_fen: int
    #: The part of the deductible met by this visit's charges (at most the configured deductible).
    deductible_fen: int
    #: True when the cap cut the insurance share.
    capped: bool


def validate_charge(
    category: object,
    amount_fen: object,
    *,
    visit_total_fen: int = 0,
    policy: InsurancePolicy = DEFAULT_INSURANCE_POLICY,
    prefix: str = "",
) -> None:
    """Refuses a charge (InvalidArgument naming ``<prefix>category`` or ``<prefix>amount_fen``)
    unless its category is a ChargeCategory and its amount a whole number of fen from 1 to
    max_charge_fen that keeps the visit, already at ``visit_total_fen``, within max_visit_fen.
    AddCharge calls it with the request's fields before anything changes."""
    if not isinstance(category, ChargeCategory):
        raise InvalidArgument(f"{prefix}category", "UNSPECIFIED", "must be one of the charge categories")
    name = f"{prefix}amount_fen"
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool):
        raise InvalidArgument(name, "NOT_INTEGER", "must be a whole number of fen")
    if amount_fen <= 0:
        raise InvalidArgument(name, "NOT_POSITIVE", f"must be positive (got {amount_fen})")
    if amount_fen > policy.max_charge_fen:
        raise InvalidArgument(
            name, "TOO_LARGE", f"is {amount_fen} fen; a charge is at most {policy.max_charge_fen} fen"
        )
    if visit_total_fen + amount_fen > policy.max_visit_fen:
        visit, most = visit_total_fen + amount_fen, policy.max_visit_fen
        raise InvalidArgument(name, "VISIT_TOO_LARGE", f"takes the visit to {visit} fen; a visit is at most {most}")


def split(
    charges: Sequence[ChargeLike],
    kind: VisitKind,
    policy: InsurancePolicy = DEFAULT_INSURANCE_POLICY,
) -> Split:
    """Splits a visit's charges, in the order they were added, into insurance and self-pay
    shares (docs/decisions/health-insurance-deductible-and-cap.md and health-insurance-rounding.md). An empty
    visit splits into zeros. Bad charges raise InvalidArgument naming ``charges[i]``'s field."""
    coverage = policy.coverage(kind)
    if len(charges) > policy.max_charges:
        raise InvalidArgument("charges", "TOO_MANY", f"a visit has at most {policy.max_charges} charges")
    deductible_left = coverage.deductible_fen
    cap_left = coverage.cap_fen
    capped = False
    total = 0
    base_by_category: dict[ChargeCategory, int] = {}  # the running amount above the deductible
    shares: list[ChargeShare] = []
    for index, charge in enumerate(charges):
        validate_charge(
            charge.category, charge.amount_fen, visit_total_fen=total, policy=policy, prefix=f"charges[{index}]."
        )
        category, amount = charge.category, charge.amount_fen
        total += amount
        ratio = coverage.ratios_bp[category]
        met = 0
        insurance = 0
        if ratio:
            met = min(deductible_left, amount)
            deductible_left -= met
            before = base_by_category.get(category, 0)
            after = before + amount - met
            base_by_category[category] = after
            # The increase of the category's rounded-down share: the shares telescope to
            # floor(base * ratio) for the category, and each lies between 0 and the amount.
            insurance = after * ratio // BP_DENOMINATOR - before * ratio // BP_DENOMINATOR
        if cap_left is not None:
            if insurance > cap_left:
                insurance, capped = cap_left, True
            cap_left -= insurance
        shares.append(ChargeShare(category, amount, insurance, amount - insurance, met))

    categories: list[CategoryShare] = []
    for category in ChargeCategory:
        mine = [share for share in shares if share.category is category]
        if mine:
            categories.append(
                CategoryShare(
                    category,
                    coverage.ratios_bp[category],
                    sum(share.amount_fen for share in mine),
                    sum(share.insurance_fen for share in mine),
                    sum(share.self_pay_fen for share in mine),
                )
            )
    insurance_total = sum(share.insurance_fen for share in categories)
    return Split(
        kind=kind,
        charges=tuple(shares),
        categories=tuple(categories),
        total_fen=total,
        insurance_fen=insurance_total,
        self_pay_fen=total - insurance_total,
        deductible_fen=coverage.deductible_fen - deductible_left,
        capped=capped,
    )
