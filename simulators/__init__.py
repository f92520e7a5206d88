"""Simulated patients for testing vitalstream: a seeded ward cohort with individual
baselines, circadian rhythm, device sampling and artefacts, and labelled deterioration
events (archetype, onset, event time). See docs/simulator.md.

>>> cohort = SCENARIOS["smoke"].cohort()
>>> len(cohort.events()) >= 2
True
"""

from simulators.archetypes import ARCHETYPES
from simulators.cohort import DEFAULT_START_MS, Cohort, SimPatient, generate_cohort
from simulators.scenarios import SCENARIOS, Scenario, scenario

__all__ = ["ARCHETYPES", "DEFAULT_START_MS", "SCENARIOS", "Cohort", "Scenario", "SimPatient",
           "generate_cohort", "scenario"]
