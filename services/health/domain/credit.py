"""The medical credit policy: tier and limits from the city credit score, and what defaults do (pure domain).

"Treat first, pay later": an enrolled patient is treated on credit up to a limit per kind of visit
and pays the self-pay share afterwards. Enrolment reads two records proofs, ``city_credit_score``
(claims has_score, score 350-950, band, scored_on) and ``medical_insurance_enrolment`` (claims
enrolled, scheme, status, since); :func:`assess` turns them and the account's history of defaults
into an :class:`Assessment`: the status, the tier, the outpatient and inpatient limits in fen, or
no credit and why. The enums' names match govmesh.health.v1's CreditTier, NoCreditReason,
AccountStatus and VisitKind without their prefix (contract.py maps them with govmesh.enums; None stands for
the contract's UNSPECIFIED); the contract itself is not imported here.

The decisions behind these rules are in docs/decisions/: health-credit-tiers.md,
health-outstanding-and-available-credit.md, health-no-credit-reasons.md,
health-defensive-claims.md, health-defaults-halve-then-close.md, health-integer-money.md.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "BP_DENOMINATOR",
    "DEFAULT_CREDIT_POLICY",
    "DEFAULT_MAX_DEFAULTS",
    "DEFAULT_RESTORED_LIMIT_BP",
    "DEFAULT_TIERS",
    "MAX_LIMIT_FEN",
    "MAX_SCORE",
    "MIN_SCORE",
    "AccountStatus",
    "Assessment",
    "CreditPolicy",
    "CreditTier",
    "DefaultRecord",
    "NoCreditReason",
    "PastDefault",
    "TierLimits",
    "VisitKind",
    "assess",
    "assess_values",
    "available_credit",
    "read_insured",
    "read_score",
]

#: The city credit score's range (records' catalogue: score 350-950).
MIN_SCORE: Final = 350
MAX_SCORE: Final = 950
#: 10,000 basis points = 100.00%.
BP_DENOMINATOR: Final = 10_000
#: A limit above a million yuan is a typo in the configuration, not a policy.
MAX_LIMIT_FEN: Final = 100_000_000
#: After a repaid default the limits are this share of the tier's: halved.
DEFAULT_RESTORED_LIMIT_BP: Final = 5_000
#: The default that closes the account: the second.
DEFAULT_MAX_DEFAULTS: Final = 2

_YUAN: Final = 100  # fen


class CreditTier(enum.Enum):
    """Names match govmesh.health.v1.CreditTier without the CREDIT_TIER_ prefix; declared lowest first."""

    NONE = "none"
    BASIC = "basic"
    STANDARD = "standard"
    HIGH = "high"


class NoCreditReason(enum.Enum):
    """Names match govmesh.health.v1.NoCreditReason without the NO_CREDIT_REASON_ prefix."""

    NO_SCORE = "no_score"
    SCORE_TOO_LOW = "score_too_low"
    NOT_INSURED = "not_insured"


class AccountStatus(enum.Enum):
    """Names match govmesh.health.v1.AccountStatus without the ACCOUNT_STATUS_ prefix."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class VisitKind(enum.Enum):
    """Names match govmesh.health.v1.VisitKind without the VISIT_KIND_ prefix."""

    OUTPATIENT = "outpatient"
    INPATIENT = "inpatient"


_TIER_RANK: Final = {tier: rank for rank, tier in enumerate(CreditTier)}


@dataclass(frozen=True)
class TierLimits:
    """A tier, the lowest score that earns it (inclusive) and its limits in fen."""

    tier: CreditTier
    min_score: int
    outpatient_limit_fen: int
    inpatient_limit_fen: int


#: The default tier table (docs/decisions/health-credit-tiers.md), lowest first.
DEFAULT_TIERS: Final = (
    TierLimits(CreditTier.BASIC, 550, 500 * _YUAN, 5_000 * _YUAN),
    TierLimits(CreditTier.STANDARD, 600, 2_000 * _YUAN, 10_000 * _YUAN),
    TierLimits(CreditTier.HIGH, 700, 5_000 * _YUAN, 15_000 * _YUAN),
)


def _is_int(value: object) -> bool:
    # bool is an int subclass; True must never be read as a score of 1 or a limit of 1 fen.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class CreditPolicy:
    """The configurable credit policy (docs/decisions/health-credit-tiers.md and
    health-defaults-halve-then-close.md). Checked on construction (ValueError), so a bad
    configuration fails at start-up, not at a patient."""

    #: Tiers lowest first: strictly rising scores, tiers in their declared order, limits never
    #: falling as the score rises. A score below the first is SCORE_TOO_LOW.
    tiers: tuple[TierLimits, ...] = DEFAULT_TIERS
    #: After each default before closure, the limits become this share (basis points) of what
    #: they were, rounded down to the fen.
    restored_limit_bp: int = DEFAULT_RESTORED_LIMIT_BP
    #: The number of defaults that closes the account.
    max_defaults: int = DEFAULT_MAX_DEFAULTS

    def __post_init__(self) -> None:
        if not isinstance(self.tiers, tuple) or not self.tiers:
            raise ValueError("tiers must be a non-empty tuple of TierLimits")
        previous: TierLimits | None = None
        for entry in self.tiers:
            if not isinstance(entry, TierLimits):
                raise ValueError("tiers must be a non-empty tuple of TierLimits")
            if entry.tier is CreditTier.NONE or not isinstance(entry.tier, CreditTier):
                raise ValueError(f"tier {entry.tier!r} cannot have limits: NONE is the absence of a tier")
            if not _is_int(entry.min_score) or not MIN_SCORE < entry.min_score <= MAX_SCORE:
                # 350 itself would leave no score too low; the contract's SCORE_TOO_LOW must be reachable.
                raise ValueError(f"{entry.tier.name}: min_score must be an int from {MIN_SCORE + 1} to {MAX_SCORE}")
            for name in ("outpatient_limit_fen", "inpatient_limit_fen"):
                value = getattr(entry, name)
                if not _is_int(value) or not 0 <= value <= MAX_LIMIT_FEN:
                    raise ValueError(f"{entry.tier.name}: {name} must be an int from 0 to {MAX_LIMIT_FEN}")
            if previous is not None:
                if _TIER_RANK[entry.tier] <= _TIER_RANK[previous.tier]:
                    raise ValueError(f"{entry.tier.name} must come after {previous.tier.name}, each tier once")
                if entry.min_score <= previous.min_score:
                    raise ValueError(f"{entry.tier.name}: min_score must be above {previous.tier.name}'s")
                if (
                    entry.outpatient_limit_fen < previous.outpatient_limit_fen
                    or entry.inpatient_limit_fen < previous.inpatient_limit_fen
                ):
                    raise ValueError(f"{entry.tier.name}: a higher score must never get lower limits")
            previous = entry
        if not _is_int(self.restored_limit_bp) or not 0 <= self.restored_limit_bp <= BP_DENOMINATOR:
            raise ValueError(f"restored_limit_bp must be an int from 0 to {BP_DENOMINATOR}")
        if not _is_int(self.max_defaults) or self.max_defaults < 1:
            raise ValueError("max_defaults must be an int of at least 1")

    def tier_for(self, score: int) -> TierLimits | None:
        """The tier ``score`` earns: the highest whose min_score is at most ``score`` (a score on
        a boundary belongs to the tier starting there); None below the lowest tier."""
        earned: TierLimits | None = None
        for entry in self.tiers:
            if score >= entry.min_score:
                earned = entry
        return earned

    def lowered(self, limit_fen: int, defaults: int) -> int:
        """``limit_fen`` after ``defaults`` defaults (fewer than max_defaults): multiplied by
        restored_limit_bp once per default, each time rounded down to the fen."""
        for _ in range(defaults):
            limit_fen = limit_fen * self.restored_limit_bp // BP_DENOMINATOR
        return limit_fen


DEFAULT_CREDIT_POLICY: Final = CreditPolicy()


class PastDefault(Protocol):
    """What :func:`assess` reads of a default in the account's history: whether it is repaid."""

    @property
    def repaid_at(self) -> datetime.datetime | None: ...


@dataclass(frozen=True)
class DefaultRecord:
    """One defaulted bill, as govmesh.health.v1.DefaultRecord: repaid_at is None until repaid in full."""

    bill_id: str
    amount_fen: int
    defaulted_at: datetime.datetime
    repaid_at: datetime.datetime | None = None


@dataclass(frozen=True)
class Assessment:
    """What the policy grants: status, tier, limits in fen, and why there is no credit."""

    status: AccountStatus
    tier: CreditTier
    #: Set exactly when tier is NONE.
    reason: NoCreditReason | None
    #: The score the tier was set from; 0 when there is none (as the contract's credit_score).
    score: int
    insured: bool
    #: Defaults in the history, repaid or not.
    defaults: int
    #: The limits after any post-default lowering; 0 when CLOSED or without credit. While
    #: SUSPENDED they are the limits the account returns with once the default is repaid.
    outpatient_limit_fen: int
    inpatient_limit_fen: int

    def limit_fen(self, kind: VisitKind) -> int:
        return self.outpatient_limit_fen if kind is VisitKind.OUTPATIENT else self.inpatient_limit_fen

    def available_fen(self, kind: VisitKind, outstanding_fen: int) -> int:
        """The credit available for a visit of ``kind``: nothing unless ACTIVE, else
        :func:`available_credit` of the kind's limit."""
        available = available_credit(self.limit_fen(kind), outstanding_fen)
        return available if self.status is AccountStatus.ACTIVE else 0


def read_score(claims: Mapping[str, object]) -> int | None:
    """The score of a ``city_credit_score`` proof's claims; None when has_score is not True or the
    score is not an int from 350 to 950 (docs/decisions/health-defensive-claims.md)."""
    if claims.get("has_score") is not True:
        return None
    score = claims.get("score")
    if not isinstance(score, int) or isinstance(score, bool) or not MIN_SCORE <= score <= MAX_SCORE:
        return None
    return score


def read_insured(claims: Mapping[str, object]) -> bool:
    """Whether a ``medical_insurance_enrolment`` proof's claims say the patient is insured:
    enrolled is True (records sets it for an active enrolment only)."""
    return claims.get("enrolled") is True


def assess(
    score_claims: Mapping[str, object],
    insurance_claims: Mapping[str, object],
    defaults_history: Sequence[PastDefault],
    *,
    policy: CreditPolicy = DEFAULT_CREDIT_POLICY,
) -> Assessment:
    """The account's status, tier and limits from the two proofs' claims and its defaults."""
    return assess_values(read_score(score_claims), read_insured(insurance_claims), defaults_history, policy=policy)


def nothing_on_record() -> Assessment:
    """A resident no department has published anything about (identity has not registered them):
    enrolled without credit, NO_SCORE, since a score is what they would first need; insurance
    not on record either."""
    return Assessment(AccountStatus.ACTIVE, CreditTier.NONE, NoCreditReason.NO_SCORE, 0, False, 0, 0, 0)


def assess_values(
    score: int | None,
    insured: bool,
    defaults_history: Sequence[PastDefault],
    *,
    policy: CreditPolicy = DEFAULT_CREDIT_POLICY,
) -> Assessment:
    """:func:`assess` from values already read (an account stores its score and insurance flag,
    and is re-assessed from them when a bill defaults or is repaid). ``score`` None: no score."""
    if score is not None and (not _is_int(score) or not MIN_SCORE <= score <= MAX_SCORE):
        raise ValueError(f"score must be None or an int from {MIN_SCORE} to {MAX_SCORE}")
    defaults = len(defaults_history)
    if defaults >= policy.max_defaults:
        status = AccountStatus.CLOSED
    elif any(record.repaid_at is None for record in defaults_history):
        status = AccountStatus.SUSPENDED
    else:
        status = AccountStatus.ACTIVE

    reason: NoCreditReason | None = None
    earned = policy.tier_for(score) if score is not None else None
    if not insured:
        reason = NoCreditReason.NOT_INSURED
    elif score is None:
        reason = NoCreditReason.NO_SCORE
    elif earned is None:
        reason = NoCreditReason.SCORE_TOO_LOW
    if reason is not None or earned is None:
        return Assessment(status, CreditTier.NONE, reason, score or 0, insured, defaults, 0, 0)

    if status is AccountStatus.CLOSED:
        outpatient = inpatient = 0
    else:
        outpatient = policy.lowered(earned.outpatient_limit_fen, defaults)
        inpatient = policy.lowered(earned.inpatient_limit_fen, defaults)
    return Assessment(status, earned.tier, None, score or 0, insured, defaults, outpatient, inpatient)


def available_credit(limit_fen: int, outstanding_fen: int) -> int:
    """The limit less what is outstanding, never negative (a limit lowered after a default may
    sit below what is already owed). Both are ints of fen, at least 0: anything else is a bug in
    the caller (TypeError, ValueError), never bad user input."""
    for name, value in (("limit_fen", limit_fen), ("outstanding_fen", outstanding_fen)):
        if not _is_int(value):
            raise TypeError(f"{name} must be an int of fen, not {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{name} must not be negative (got {value})")
    return max(0, limit_fen - outstanding_fen)
