"""Named scenarios: a cohort recipe with a name, so a report can say what it replayed.

>>> SCENARIOS["ward"].n_patients, SCENARIOS["ward"].hours
(200, 48.0)
"""

from __future__ import annotations

import dataclasses

from simulators.cohort import DEFAULT_START_MS, Cohort, generate_cohort


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    n_patients: int
    hours: float
    seed: int = 0
    deteriorating_fraction: float = 0.125
    wards: tuple[str, ...] = ("4B", "5A")
    monitor_period_s: float = 60.0
    start_ms: int = DEFAULT_START_MS

    def cohort(self) -> Cohort:
        return generate_cohort(self.n_patients, self.hours, seed=self.seed,
                               deteriorating_fraction=self.deteriorating_fraction,
                               start_ms=self.start_ms, wards=self.wards,
                               monitor_period_s=self.monitor_period_s)


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("ward", "Two medical wards: 200 patients for 48 h, 12.5 % deteriorating "
                 "(5 archetypes in turn), monitors, patches and 4-hourly spot checks.",
                 n_patients=200, hours=48.0, seed=2026, deteriorating_fraction=0.125),
        Scenario("smoke", "10 patients for 8 h, 3 deteriorating: fast, for tests.",
                 n_patients=10, hours=8.0, seed=7, deteriorating_fraction=0.3),
        Scenario("demo", "One ward of 24 patients for 24 h, 4 deteriorating: for the live demo.",
                 n_patients=24, hours=24.0, seed=11, deteriorating_fraction=1 / 6, wards=("4B",)),
    )
}


def scenario(name: str) -> Scenario:
    """The named scenario; raises KeyError naming the ones that exist."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
