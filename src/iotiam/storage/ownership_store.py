"""SQL for ownership transfers: move a device between org units, drop old bindings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select, update

from iotiam.inventory.models import DeviceState
from iotiam.storage.credential_standing import refresh_standing
from iotiam.storage.tables import inventory


class SqlOwnershipStore:
    """The inventory writes of a transfer, kept apart from the hot device store."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def move_device(
        self, device_id: str, org_unit_id: str, org_path: str, at: datetime
    ) -> None:
        """Put a device into another org unit, back in the pending state."""
        self._c.execute(
            update(inventory.devices)
            .where(inventory.devices.c.id == device_id)
            .values(org_unit_id=org_unit_id, org_path=org_path,
                    state=str(DeviceState.PENDING), updated_at=at)
        )
        # its credential row counts under its new org unit now
        refresh_standing(self._c, [device_id])

    def leave_groups_outside(self, device_id: str, org_path: str) -> list[str]:
        """Drop the device from every group whose subtree no longer holds ``org_path``."""
        rows = self._c.execute(
            select(inventory.groups.c.id, inventory.groups.c.org_path)
            .join(inventory.group_members,
                  inventory.group_members.c.group_id == inventory.groups.c.id)
            .where(inventory.group_members.c.device_id == device_id)
            .order_by(inventory.groups.c.id)
        )
        # a member must live inside its group's subtree (Inventory.add_to_group)
        leaving = [r.id for r in rows if not org_path.startswith(r.org_path)]
        if leaving:
            self._c.execute(delete(inventory.group_members).where(
                inventory.group_members.c.device_id == device_id,
                inventory.group_members.c.group_id.in_(leaving)))
        return leaving
