"""Which settings apply to a host: :class:`HostRules` resolves a host name to its
:class:`HostRule` through the patterns of a :class:`Politeness` (``*`` first, then wildcards
from the widest to the narrowest, then the exact name, each overriding the one before)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from shoal.config import HostPolicy, Politeness, Timeouts, check_host_pattern

_T = TypeVar("_T")

#: Host names whose resolved rule is kept, at most.
_CACHE_LIMIT = 65_536


@dataclass(frozen=True, slots=True)
class HostRule:
    """The settings one host gets, every override applied."""

    max_in_flight: int
    per_second: float | None = None
    burst: int = 1
    delay_s: float = 0.0
    jitter: float = 0.0
    timeouts: Timeouts | None = None
    headers: Mapping[str, str] | None = None

    @property
    def paced(self) -> bool:
        return self.per_second is not None or self.delay_s > 0


class HostRules:
    """Resolves host names to rules; results are cached (bounded)."""

    def __init__(self, politeness: Politeness, max_in_flight: int) -> None:
        self.politeness = politeness
        self._base = HostRule(
            max_in_flight=max_in_flight,
            per_second=politeness.per_second,
            burst=politeness.burst,
            delay_s=politeness.delay_s,
            jitter=politeness.jitter,
        )
        self._patterns = {check_host_pattern(p): rule for p, rule in politeness.hosts.items()}
        self._cache: dict[str, HostRule] = {}

    @property
    def per_host(self) -> int:
        """The in-flight cap of a host no pattern matches."""
        return self._base.max_in_flight

    @property
    def uniform(self) -> bool:
        """True when every host gets the same rule."""
        return not self._patterns

    def for_host(self, host: str) -> HostRule:
        if not self._patterns:
            return self._base
        rule = self._cache.get(host)
        if rule is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            rule = self._cache[host] = self._resolve(host)
        return rule

    def _resolve(self, host: str) -> HostRule:
        rule = self._base
        if not self._patterns:
            return rule
        name = host.lower().rstrip(".")
        labels = name.split(".")
        # Widest first, so narrower patterns override: *, *.com, *.example.com, exact.
        candidates = ["*"] + ["*." + ".".join(labels[i:]) for i in range(len(labels) - 1, -1, -1)]
        candidates.append(name)
        for pattern in candidates:
            policy = self._patterns.get(pattern)
            if policy is not None:
                rule = _overlay(rule, policy)
        return rule


def _overlay(rule: HostRule, policy: HostPolicy) -> HostRule:
    headers = rule.headers
    if policy.headers:
        headers = {**(headers or {}), **policy.headers}
    return HostRule(
        max_in_flight=_pick(policy.max_in_flight, rule.max_in_flight),
        per_second=policy.per_second if policy.per_second is not None else rule.per_second,
        burst=_pick(policy.burst, rule.burst),
        delay_s=_pick(policy.delay_s, rule.delay_s),
        jitter=_pick(policy.jitter, rule.jitter),
        timeouts=policy.timeouts if policy.timeouts is not None else rule.timeouts,
        headers=headers,
    )


def _pick(value: _T | None, default: _T) -> _T:
    return default if value is None else value
