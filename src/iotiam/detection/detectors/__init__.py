"""One module per detector; ``default_detectors`` is the pipeline the engine runs."""

from __future__ import annotations

from iotiam.detection.detectors.auth_failure_burst import AuthFailureBurst
from iotiam.detection.detectors.firmware_drift import FirmwareDrift
from iotiam.detection.detectors.lateral_movement import LateralMovement
from iotiam.detection.detectors.mass_reregistration import MassReregistration
from iotiam.detection.detectors.message_size import MessageSize
from iotiam.detection.detectors.new_destination import NewDestination
from iotiam.detection.detectors.rate_change import RateChange
from iotiam.detection.detectors.topic_probing import TopicProbing
from iotiam.detection.detectors.unusual_source import UnusualSource
from iotiam.detection.detectors.unusual_time import UnusualTime
from iotiam.detection.ports import PersistentDetector

__all__ = ["AuthFailureBurst", "FirmwareDrift", "LateralMovement", "MassReregistration",
           "MessageSize", "NewDestination", "RateChange", "TopicProbing", "UnusualSource",
           "UnusualTime", "default_detectors"]


def default_detectors(learning_seconds: float) -> list[PersistentDetector]:
    """Every detector, each with the same per-device learning period."""
    return [
        RateChange(learning_seconds=learning_seconds),
        MessageSize(learning_seconds=learning_seconds),
        NewDestination(learning_seconds=learning_seconds),
        LateralMovement(learning_seconds=learning_seconds),
        TopicProbing(learning_seconds=learning_seconds),
        AuthFailureBurst(learning_seconds=learning_seconds),
        UnusualSource(learning_seconds=learning_seconds),
        UnusualTime(learning_seconds=learning_seconds),
        FirmwareDrift(learning_seconds=learning_seconds),
        MassReregistration(learning_seconds=learning_seconds),
    ]
