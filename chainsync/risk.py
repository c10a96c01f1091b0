"""The IP risk model, defined once: what each security signal weighs, how fast a score decays, where an
address is blocked, and the threat levels read from scores.

The API scores addresses live with it (:mod:`api.security.risk`); dbt's ``fct_ip_risk`` scores the landed
security events with the same model, handed over as variables (:meth:`RiskModel.dbt_vars`, passed by the
dbt asset as ``--vars``; the defaults in ``dbt_project.yml`` are these constants, checked by a test).
The half-life,
the block score and the credential-stuffing count are settings (``CHAINSYNC_RISK_HALF_LIFE_MINUTES``,
``CHAINSYNC_RISK_BLOCK_SCORE``, ``CHAINSYNC_CREDENTIAL_STUFFING_USERS``), so changing one moves the API
and the marts together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, get_args

ThreatLevel = Literal["low", "elevated", "high", "critical"]
THREAT_LEVELS: tuple[ThreatLevel, ...] = get_args(ThreatLevel)

# How much each signal adds to an address's score (the block score is 10 by default). A signal not listed
# weighs DEFAULT_WEIGHT in the API; the marts score only the listed ones.
SIGNAL_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "login_failure": 2.0,
        "2fa_failure": 3.0,
        "refresh_failure": 1.0,
        "refresh_token_reuse": 5.0,
        "bad_credentials": 0.5,  # a protected route answered 401
        "authorization_denied": 1.0,
        "not_found": 0.25,  # probing for paths
        "validation_failure": 0.25,
        "suspicious_input": 4.0,
        "rate_limited": 1.0,
    }
)
DEFAULT_WEIGHT = 1.0

# An address's level by its score, as shares of the block score: at the block score it is critical, at
# half of it high, at a fifth elevated (10 / 5 / 2 with the default block score).
ADDRESS_LEVEL_SHARES: Mapping[ThreatLevel, float] = MappingProxyType(
    {"critical": 1.0, "high": 0.5, "elevated": 0.2}
)

# Without scores (a snapshot without fct_ip_risk): the day's failed security events, at or above which
# the chain is elevated, high, critical.
DAILY_FAILURE_LEVELS: Mapping[ThreatLevel, int] = MappingProxyType(
    {"critical": 200, "high": 50, "elevated": 10}
)


def level_rank(level: str | None) -> int:
    """The position of ``level`` in :data:`THREAT_LEVELS` (-1 for anything else)."""
    return THREAT_LEVELS.index(level) if level in THREAT_LEVELS else -1  # type: ignore[arg-type]


def worst_level(levels: Iterable[str | None], default: ThreatLevel = "low") -> ThreatLevel:
    """The highest threat level among ``levels`` (values that are not levels are ignored)."""
    ranks = [level_rank(v) for v in levels]
    best = max(ranks, default=-1)
    return THREAT_LEVELS[best] if best >= 0 else default


def daily_failure_level(failures: int) -> ThreatLevel:
    """The chain's threat level from one day's failed security events (:data:`DAILY_FAILURE_LEVELS`)."""
    for level in ("critical", "high", "elevated"):
        if failures >= DAILY_FAILURE_LEVELS[level]:
            return level
    return "low"


@dataclass(frozen=True)
class RiskModel:
    """The parameters of the risk score: signal weights, the half-life of a score (minutes), the score at
    which an address is blocked, and how many distinct usernames failing from one address (within 15
    minutes, in the API) count as credential stuffing."""

    half_life_minutes: float = 30.0
    block_score: float = 10.0
    stuffing_usernames: int = 5
    weights: Mapping[str, float] = field(default_factory=lambda: SIGNAL_WEIGHTS)

    @classmethod
    def from_settings(cls, settings: Any) -> RiskModel:
        return cls(
            half_life_minutes=settings.risk_half_life_minutes,
            block_score=settings.risk_block_score,
            stuffing_usernames=settings.credential_stuffing_users,
        )

    @property
    def half_life_seconds(self) -> float:
        return self.half_life_minutes * 60

    def weight(self, signal: str) -> float:
        return self.weights.get(signal, DEFAULT_WEIGHT)

    def level_scores(self) -> dict[ThreatLevel, float]:
        """The score at or above which an address is critical, high, elevated."""
        return {level: share * self.block_score for level, share in ADDRESS_LEVEL_SHARES.items()}

    def address_level(self, score: float, usernames_failed: int = 0) -> ThreatLevel:
        """An address's level from its score (and the distinct usernames that failed from it)."""
        if usernames_failed >= self.stuffing_usernames:
            return "critical"
        for level, at in self.level_scores().items():
            if score >= at:
                return level
        return "low"

    def threat_level(self, *, critical_events: int, blocks: int, top_score: float) -> ThreatLevel:
        """The system's threat level now: from the last hour's critical events, the addresses blocked
        and the highest current address score."""
        if critical_events >= 3 or blocks >= 10:
            return "critical"
        if critical_events >= 1 or blocks >= 3:
            return "high"
        if blocks >= 1 or top_score >= self.block_score / 2:
            return "elevated"
        return "low"

    def dbt_vars(self) -> dict[str, Any]:
        """The model as dbt variables (``fct_ip_risk`` reads them with ``var(...)``)."""
        return {
            "risk_signal_weights": dict(self.weights),
            "risk_half_life_seconds": float(self.half_life_seconds),
            "risk_level_scores": {k: float(v) for k, v in self.level_scores().items()},
            "risk_stuffing_usernames": self.stuffing_usernames,
        }
