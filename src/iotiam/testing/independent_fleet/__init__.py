"""An independent judge of detection: a labelled fleet written from ``docs/events.md``
alone, by someone who never read the detectors, and never used to tune them.

``generate(seed, devices=N)`` gives a ``Fleet`` (sites in three time zones, six device
archetypes with their own rhythms, the benign churn of a real fleet, and the ten attack
kinds after a tuning period); ``score(attacks, findings)`` gives precision, recall and
worst delay per finding type and per attack kind.
"""

from iotiam.testing.independent_fleet.attacks import KINDS, Attack
from iotiam.testing.independent_fleet.generator import Fleet, generate, timestamp
from iotiam.testing.independent_fleet.scoring import Score, Tally, matches, score

__all__ = ["KINDS", "Attack", "Fleet", "Score", "Tally", "generate", "matches", "score",
           "timestamp"]
