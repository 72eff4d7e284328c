"""The score orders the register: what to fix first comes first."""

from __future__ import annotations

from iotiam.inventory.models import Criticality, DeviceClass
from iotiam.risk.builder import FleetIndex, RegisterBuilder
from iotiam.risk.models import RiskFactor, RiskSettings, Severity, Weighting, hit
from iotiam.risk.scoring import MAX_SCORE, score

from .facts import NOW, asset, cert, device, device_type, seen_device


def test_ok_unmanaged_controller_outranks_dormant_sensor() -> None:
    builder = RegisterBuilder(FleetIndex(
        now=NOW, settings=RiskSettings(), types={"sensor": device_type()},
        certificates={"dev-1": [cert(issued_days=1, lifetime_days=365)]},
        seen_devices={"dev-1": seen_device("dev-1", last_days=60)}))
    (dormant,) = builder.device_entries(device(updated_days=60))
    controller = builder.asset_entry(asset(ports=(502,)))
    plain = builder.asset_entry(asset("ast-2"))
    assert controller is not None and plain is not None
    assert {h.factor for h in dormant.factors} == {RiskFactor.DORMANT_VALID_CREDENTIALS}
    assert controller.score > plain.score > dormant.score


def test_ok_criticality_class_and_write_access_raise_the_score() -> None:
    hits = [hit(RiskFactor.NEVER_ROTATED, "x")]
    low = score(hits, Weighting(Criticality.LOW, DeviceClass.SENSOR))
    critical = score(hits, Weighting(Criticality.CRITICAL, DeviceClass.SENSOR))
    controller = score(hits, Weighting(Criticality.LOW, DeviceClass.CONTROLLER))
    writer = score(hits, Weighting(Criticality.LOW, DeviceClass.SENSOR, can_write=True))
    assert low < writer and low < controller < critical


def test_ok_one_critical_outranks_several_low() -> None:
    weighting = Weighting(Criticality.LOW, DeviceClass.SENSOR)
    critical = score([hit(RiskFactor.SHARED_CREDENTIAL, "x")], weighting)
    lows = score([hit(f, "x", severity=Severity.LOW) for f in list(RiskFactor)[:5]],
                 weighting)
    assert critical > lows > score([hit(RiskFactor.UNMANAGED, "x", severity=Severity.LOW)],
                                   weighting)
    assert score([], weighting) == 0


def test_ok_a_factor_counts_once_at_its_worst() -> None:
    """As the register stores it: one row per factor, its worst hit's severity."""
    weighting = Weighting(Criticality.LOW, DeviceClass.SENSOR)
    once = score([hit(RiskFactor.SHARED_CREDENTIAL, "x")], weighting)
    twice = score([hit(RiskFactor.SHARED_CREDENTIAL, "x", severity=Severity.LOW),
                   hit(RiskFactor.SHARED_CREDENTIAL, "y")], weighting)
    assert twice == once == 100


def test_ok_max_score_is_the_worst_entry_there_can_be() -> None:
    heaviest = Weighting(Criticality.CRITICAL, DeviceClass.CONTROLLER, can_write=True)
    everything = [hit(f, "x", severity=Severity.CRITICAL) for f in RiskFactor]
    assert score(everything * 2, heaviest) == MAX_SCORE
    assert score(everything[:-1], heaviest) < MAX_SCORE
    assert score(everything, Weighting(can_write=True)) < MAX_SCORE
