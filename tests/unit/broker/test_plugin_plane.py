"""What the change feed makes iotiam push to the broker plugin."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from iotiam.broker.decision_socket import DecisionSocket
from iotiam.broker.dynsec import BrokerUnavailable
from iotiam.broker.installed_files import BrokerFileInstaller
from iotiam.broker.layout import BrokerConfig, BrokerFiles, render_config
from iotiam.broker.plugin_plane import PdpAnswers, PluginAuthorization
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.sync_ports import Updates
from iotiam.changes import (
    CertificateRevoked,
    CredentialRevoked,
    DeviceChanged,
    PolicyChanged,
    Published,
    TrustChanged,
)
from iotiam.errors import InternalError
from iotiam.policy.actions import CONNECT, PUBLISH
from iotiam.policy.models import Decision, Deny, Permit, Subject


class Pushes:
    """Stands in for the socket and the file installer: records what happens, in order."""

    def __init__(self) -> None:
        self.done: list[tuple[str, ...]] = []

    def forget(self, device_id: str) -> None:
        self.done.append(("forget", device_id))

    def kick(self, device_id: str) -> None:
        self.done.append(("kick", device_id))

    def forget_all(self) -> None:
        self.done.append(("forget all",))

    def install(self) -> bool:
        self.done.append(("install files",))
        return True


def plane(pushes: Pushes, may_connect: set[str]) -> PluginAuthorization:
    return PluginAuthorization(BrokerFiles(Path("/nonexistent")),
                               cast(BrokerFileInstaller, pushes),
                               cast(ManagedMosquitto, None), cast(DecisionSocket, pushes),
                               lambda ids: {d for d in ids if d in may_connect})


def test_plugin_plane_ok_revocation_installs_the_crl_then_kicks() -> None:
    pushes = Pushes()
    authorization = plane(pushes, {"dev-1"})
    follow = authorization.follow
    follow(Published(1, CertificateRevoked(5, "issuing", "dev-1")))
    follow(Published(2, CredentialRevoked("psk", "psk-1", "dev-2")))
    follow(Published(3, CertificateRevoked(6, "issuing", None)))  # no device: nothing to do
    # the feed's thread only queues them and wakes the kicking thread
    assert pushes.done == []
    authorization.kick_revoked()
    assert pushes.done == [("install files",), ("kick", "dev-1"), ("kick", "dev-2")]
    authorization.kick_revoked()  # nothing new: no install, no kick
    assert len(pushes.done) == 3


def test_plugin_plane_ok_revocation_kicks_even_when_the_crl_cannot_be_installed() -> None:
    class Refusing(Pushes):
        def install(self) -> bool:
            raise BrokerUnavailable("refusing to install this CRL on the broker: expired")

    pushes = Refusing()
    authorization = plane(pushes, set())
    authorization.follow(Published(1, CertificateRevoked(5, "issuing", "dev-1")))
    with pytest.raises(BrokerUnavailable):
        authorization.kick_revoked()
    assert pushes.done == [("kick", "dev-1")]


def test_plugin_plane_ok_device_change_forgets_or_kicks_who_may_not_connect() -> None:
    pushes = Pushes()
    follow = plane(pushes, {"dev-1"}).follow
    follow(Published(1, DeviceChanged(("dev-1", "dev-2"))))
    follow(Published(2, TrustChanged(("dev-1",))))
    assert pushes.done == [("forget", "dev-1"), ("kick", "dev-2"), ("forget", "dev-1")]


def test_plugin_plane_ok_a_batch_of_changed_devices_is_decided_in_one_call() -> None:
    pushes = Pushes()
    asked: list[list[str]] = []

    def allowed(device_ids: Sequence[str]) -> set[str]:
        asked.append(list(device_ids))
        return {d for d in device_ids if d != "dev-2"}

    authorization = PluginAuthorization(BrokerFiles(Path("/nonexistent")),
                                        cast(BrokerFileInstaller, pushes),
                                        cast(ManagedMosquitto, None),
                                        cast(DecisionSocket, pushes), allowed)
    authorization.follow(Published(1, TrustChanged(("dev-1", "dev-2", "dev-3"))))
    assert asked == [["dev-1", "dev-2", "dev-3"]]
    assert pushes.done == [("forget", "dev-1"), ("kick", "dev-2"), ("forget", "dev-3")]


def test_plugin_plane_ok_policy_change_forgets_everything_and_kicks_nobody() -> None:
    pushes = Pushes()
    plane(pushes, set()).follow(Published(1, PolicyChanged("p")))
    assert pushes.done == [("forget all",)]


def test_plugin_plane_ok_safety_net_acts_on_unpublished_changes() -> None:
    pushes = Pushes()
    reread: list[str] = []
    asked: list[datetime] = []
    start = datetime(2026, 1, 1, tzinfo=UTC)

    def updates(since: datetime) -> Updates:
        asked.append(since)
        return Updates(changed={"dev-2", "dev-1"}, policies_changed=True,
                       until=since + timedelta(seconds=1))

    watched = PluginAuthorization(BrokerFiles(Path("/nonexistent")),
                                  cast(BrokerFileInstaller, pushes),
                                  cast(ManagedMosquitto, None), cast(DecisionSocket, pushes),
                                  lambda ids: {d for d in ids if d == "dev-1"},
                                  updates=updates,
                                  reread=reread.append)
    assert watched._safety_net(start) == start + timedelta(seconds=1)
    assert asked == [start]
    assert sorted(reread) == ["dev-1", "dev-2"]  # read afresh before being decided on
    assert pushes.done == [("forget all",), ("forget", "dev-1"), ("kick", "dev-2")]


class Pdp:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str | None]] = []
        self.forgotten: list[str | None] = []
        self.batches: list[list[str]] = []

    def forget(self, device_id: str | None = None) -> None:
        self.forgotten.append(device_id)

    def cached_many(self, device_ids: Sequence[str]) -> dict[str, Subject | None]:
        self.batches.append(list(device_ids))
        return {d: self.cached(d) for d in device_ids}

    def cached(self, device_id: str) -> Subject | None:
        if device_id == "gone":
            return None
        return Subject(device_id=device_id, type_name="sensor", org_unit_id="root",
                       org_path="/root/")

    def decide(self, subject: Subject, action: str, resource: str, *,
               source_ip: str | None = None) -> Decision:
        self.asked.append((action, resource, source_ip))
        return Permit(()) if resource.startswith("devices/") or action == CONNECT else \
            Deny("no")


def test_pdp_answers_ok_ask_the_decision_point() -> None:
    pdp = Pdp()
    answers = PdpAnswers(pdp, pdp)
    assert answers.answer("dev-1", PUBLISH, "10.0.0.1", "devices/dev-1/t").allowed
    assert answers.may_connect("dev-1")
    assert pdp.asked == [(PUBLISH, "devices/dev-1/t", "10.0.0.1"), (CONNECT, "dev-1", None)]
    answers.reread("dev-1")
    assert pdp.forgotten == ["dev-1"]


def test_pdp_answers_ok_many_devices_read_together_then_decided() -> None:
    pdp = Pdp()
    answers = PdpAnswers(pdp, pdp)
    assert answers.may_connect_many(["dev-1", "gone", "dev-2"]) == {"dev-1", "dev-2"}
    assert pdp.batches == [["dev-1", "gone", "dev-2"]]
    assert pdp.asked == [(CONNECT, "dev-1", None), (CONNECT, "dev-2", None)]


def test_pdp_answers_fail_many_devices_denied_when_the_store_fails() -> None:
    class Failing(Pdp):
        def cached_many(self, device_ids: Sequence[str]) -> dict[str, Subject | None]:
            raise InternalError("the database is not answering")

    pdp = Failing()
    assert PdpAnswers(pdp, pdp).may_connect_many(["dev-1", "dev-2"]) == set()
    assert pdp.asked == []


def test_pdp_answers_fail_unknown_or_malformed_device_is_denied() -> None:
    pdp = Pdp()
    answers = PdpAnswers(pdp, pdp)
    assert not answers.may_connect("gone")
    denied = answers.answer("bad id/with slash", PUBLISH, None, "devices/x/t")
    assert not denied.allowed and pdp.asked == []


def test_render_config_ok_plugin_asked_before_dynsec(tmp_path: Path) -> None:
    files = BrokerFiles(tmp_path)
    lines = render_config(BrokerConfig(auth="plugin"), files, Path("/dynsec.so"),
                          Path("/iotiam_auth.so")).splitlines()
    ours, theirs = lines.index("plugin /iotiam_auth.so"), lines.index("plugin /dynsec.so")
    assert ours < theirs
    assert lines[ours + 1:theirs] == [f"plugin_opt_socket {files.plugin_socket}",
                                      "plugin_opt_defer_user iotiam-broker-admin"]
    plain = render_config(BrokerConfig(), files, Path("/dynsec.so"))
    assert "iotiam_auth" not in plain
