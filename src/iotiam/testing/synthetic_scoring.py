"""Score what discovery and the risk register answered against a synthetic network's truth.

Everything here reads the REST answers as JSON (``GET /v1/discovery/assets`` items,
``GET /v1/risk/entries`` items), so the same scoring serves the integration test and a
benchmark. Each asset is attributed to the identities whose identifying values it
carries (never by IP, which DHCP moves); an asset with nothing but an address is
attributed to whoever held that address while the asset was seen.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from iotiam.testing.synthetic_evidence import Truth
from iotiam.testing.synthetic_network import CHECKED_FACTORS, DORMANT

#: identifier kinds that name a device (``ip`` does not: it names a place for a while)
NAMING_KINDS = ("certificate", "issuer-serial", "psk-identity", "client-id", "mac",
                "hostname")


def _seconds(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


@dataclass
class AssetScore:
    """How the discovered assets line up with the unmanaged devices."""

    assets: int = 0
    unmanaged: int = 0
    found: int = 0
    #: assets beyond one per unmanaged device (a shared-credential pair may be one or two)
    splits: int = 0
    #: assets that hold two or more unrelated devices
    merges: int = 0
    #: assets attributed to a registered device they are not (an unmanaged box, or
    #: another registered device)
    false_device_matches: int = 0
    #: assets that are in truth a registered device the reconciler failed to match
    registered_as_assets: int = 0
    #: assets with nothing the truth can name
    unknown_assets: int = 0
    #: identity -> the asset ids it was found in
    assets_of: dict[str, set[str]] = field(default_factory=dict)
    #: one per unmanaged device, a shared-credential pair counted once
    expected_assets: int = 0
    #: asset id -> the identities it holds
    identities_of: dict[str, set[str]] = field(default_factory=dict)

    @property
    def recall(self) -> float:
        """Share of the observed unmanaged devices found as an asset."""
        return self.found / self.unmanaged if self.unmanaged else 1.0


def asset_identities(truth: Truth, asset: Mapping[str, Any],
                     owners: Mapping[str, set[str]]) -> set[str]:
    """The identities an asset (as the API renders it) is, by its naming identifiers."""
    found: set[str] = set()
    for ident in asset.get("identifiers") or ():
        if ident.get("kind") in NAMING_KINDS:
            found |= owners.get(str(ident.get("value")), set())
    if not found and asset.get("ip"):
        found = truth.holder(asset.get("site"), str(asset["ip"]),
                             _seconds(asset["first_seen"]), _seconds(asset["last_seen"]))
    return found


def score_assets(truth: Truth, assets: Sequence[Mapping[str, Any]]) -> AssetScore:
    """Found, split, merged and falsely matched assets."""
    owners = truth.owners()
    groups = truth.groups()
    devices = truth.network.devices
    score = AssetScore(assets=len(assets), unmanaged=len(truth.observed_unmanaged()))
    by_group: dict[str, set[str]] = defaultdict(set)
    for asset in assets:
        asset_id = str(asset["id"])
        who = asset_identities(truth, asset, owners)
        score.identities_of[asset_id] = who
        unmanaged = {w for w in who if not devices[w].registered}
        registered = who - unmanaged
        for label in who:
            score.assets_of.setdefault(label, set()).add(asset_id)
        device_id = asset.get("device_id")
        if device_id:
            if unmanaged or (registered and device_id not in registered):
                score.false_device_matches += 1
            continue
        if not who:
            score.unknown_assets += 1
        elif not unmanaged:
            score.registered_as_assets += 1
        if len({groups[w] for w in unmanaged}) + (1 if registered and unmanaged else 0) > 1:
            score.merges += 1
        for label in unmanaged:
            by_group[groups[label]].add(asset_id)
    observed = truth.observed_unmanaged()
    score.found = sum(1 for label in observed if groups[label] in by_group)
    # a shared-credential pair may fairly be one asset (they share an identifier) or
    # two (they are two boxes): only more than that is a split
    size = Counter(groups[label] for label in observed)
    score.splits = sum(max(0, len(ids) - size[g]) for g, ids in by_group.items())
    score.expected_assets = len({groups[label] for label in observed})
    return score


@dataclass
class FactorScore:
    """One risk factor: seeded identities, those reported on them, and the extras."""

    factor: str
    seeded: set[str]
    reported: set[str]

    @property
    def missed(self) -> set[str]:
        """Seeded but not reported on the right identity."""
        return self.seeded - self.reported

    @property
    def extra(self) -> set[str]:
        """Reported on an identity the truth did not seed it on."""
        return self.reported - self.seeded


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
        if "|" in value:
            yield from value.split("|")
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def entry_identities(entry: Mapping[str, Any], keys: Mapping[str, set[str]],
                     assets: AssetScore) -> set[str]:
    """The identities a risk entry is about: its subject, or what its evidence names."""
    subject_id = str(entry.get("subject_id") or "")
    if entry.get("subject") == "asset" and subject_id in assets.identities_of:
        return set(assets.identities_of[subject_id])
    found = set(keys.get(subject_id, set()))
    if not found:
        for factor in entry.get("factors") or ():
            for text in _strings(factor.get("evidence") or {}):
                found |= keys.get(text, set())
                found |= assets.identities_of.get(text, set())
    return found


def score_risks(truth: Truth, entries: Sequence[Mapping[str, Any]], assets: AssetScore
                ) -> dict[str, FactorScore]:
    """For each checked factor: was it reported on every identity it was seeded on."""
    keys = truth.owners()
    reported: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        who = entry_identities(entry, keys, assets)
        for factor in entry.get("factors") or ():
            reported[str(factor.get("factor"))] |= who
    seeded = truth.risks()
    never = {label for label, d in truth.network.devices.items() if d.fate == "never"}
    out: dict[str, FactorScore] = {}
    for factor in CHECKED_FACTORS:
        want = {label for label, factors in seeded.items() if factor in factors}
        got = reported.get(factor, set())
        if factor == DORMANT:
            got = got - never  # "never seen" may fairly count as dormant too
        out[factor] = FactorScore(factor, want, got)
    return out


def false_matches(truth: Truth, assets: AssetScore, risks: Mapping[str, FactorScore]
                  ) -> int:
    """Things attributed to the wrong identity: assets matched to a device they are not,
    merged strangers, and registered devices given a sighting that was not theirs
    (a zombie that is gone, or a shared credential that is not shared)."""
    devices = truth.network.devices
    phantom = {label for factor in ("zombie", "shared-credential")
               for label in risks[factor].extra if devices[label].registered}
    return assets.false_device_matches + assets.merges + len(phantom)


def table(truth: Truth, assets: AssetScore, risks: Mapping[str, FactorScore]) -> str:
    """A small text table of the figures, for the test's output."""
    observed = len({r.registered for r in truth.records if r.registered}) + assets.unmanaged
    rows = [("unmanaged devices observed", str(assets.unmanaged)),
            ("assets reported", f"{assets.assets} (ideal {assets.expected_assets})"),
            ("found as an asset", f"{assets.found} ({assets.recall:.2%})"),
            ("split (extra assets)", str(assets.splits)),
            ("merged strangers", str(assets.merges)),
            ("asset matched to the wrong device", str(assets.false_device_matches)),
            ("registered device left as an asset", str(assets.registered_as_assets)),
            ("assets nobody is", str(assets.unknown_assets)),
            ("false matches / observed identities",
             f"{false_matches(truth, assets, risks)} / {observed}")]
    for factor, score in risks.items():
        rows.append((f"risk {factor}", f"{len(score.seeded & score.reported)}/"
                     f"{len(score.seeded)} found, {len(score.extra)} extra"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


__all__ = ["AssetScore", "FactorScore", "asset_identities", "entry_identities",
           "false_matches", "score_assets", "score_risks", "table"]
