"""Built-in policies: the least-privilege default for devices and the quarantine policy."""

from __future__ import annotations

from iotiam.policy.models import PolicyDocument
from iotiam.policy.parsing import parse_policy

DEFAULT_DEVICE_POLICY_YAML = """\
name: iotiam-default-device
version: 1
description: Connect as yourself; publish, subscribe and receive only in your own namespace.
statements:
  - sid: connect-as-self
    effect: allow
    actions: [mqtt:connect]
    clients: ["${device.id}"]
  - sid: own-namespace
    effect: allow
    actions: [mqtt:publish, mqtt:subscribe, mqtt:receive]
    topics: ["devices/${device.id}/#"]
"""

QUARANTINE_POLICY_YAML = """\
name: iotiam-quarantine
version: 1
description: >-
  What a quarantined device keeps: its quarantine channel and firmware updates for its
  type, nothing else.
statements:
  - sid: connect-as-self
    effect: allow
    actions: [mqtt:connect]
    clients: ["${device.id}"]
  - sid: quarantine-channel
    effect: allow
    actions: [mqtt:publish, mqtt:subscribe, mqtt:receive]
    topics: ["quarantine/${device.id}/#"]
  - sid: firmware-updates
    effect: allow
    actions: [mqtt:subscribe, mqtt:receive]
    topics: ["firmware/${device.type}/#"]
"""

#: attach to the root org unit (or a tenant) to give every device least privilege
DEFAULT_DEVICE_POLICY: PolicyDocument = parse_policy(DEFAULT_DEVICE_POLICY_YAML)
#: replaces every allow of a quarantined device (denies still apply)
QUARANTINE_POLICY: PolicyDocument = parse_policy(QUARANTINE_POLICY_YAML)
