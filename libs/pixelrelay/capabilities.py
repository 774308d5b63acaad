"""Authority over one task, granted by the gateway that queued it.

A service credential says which service calls; it says nothing about which task the call is
for, so a dispatcher's stolen credential reached every tenant's task. The gateway therefore
issues, with each job, a capability: the task id, its account, the hold's credits and the
latest moment it may be used (the task's deadline), with an HMAC-SHA256 under
TASK_CAPABILITY_KEYS, which the gateways and storage hold and dispatchers do not. The
dispatcher passes it on with every call it makes for that task (StoreImages, Reannounce,
GetObject of the task's inputs); storage acts on that task only with it, verified here.
Whoever holds a job can act on that one task, as its dispatcher must; the dispatcher's
credential alone acts on none (and it calls no billing RPC).

TASK_CAPABILITY_KEYS is a keyring (keyrings.py). To rotate: add the new key on storage
(anywhere in the list: it verifies with whichever a capability names), then put it
first on the gateways, and drop the old one everywhere once no task issued under it can
still run (HOLD_TTL_SECONDS, plus a day for a job still in the queue).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from pixelrelay.errors import ApiError, E
from pixelrelay.ids import is_id
from pixelrelay.keyrings import new_key_entry, parse_keyring
from pixelrelay.v1 import common_pb2

__all__ = ["TaskCapabilities", "TaskGrant", "new_capability_key"]

# The MAC covers this label too, so a MAC made for anything else under the same key (there
# is nothing else today) can never pass for a capability.
_LABEL = b"pixelrelay.task-capability.v1"


def new_capability_key() -> str:
    """A TASK_CAPABILITY_KEYS entry: a fresh id and 32 random bytes."""
    return new_key_entry()


@dataclass(frozen=True)
class TaskGrant:
    """What a verified capability allows: acting for ``task_id`` of ``account_id``, whose
    hold is ``credits``, until at most ``deadline`` (unix seconds)."""

    task_id: str
    account_id: str
    credits: int
    deadline: int


def _message(grant: TaskGrant) -> bytes:
    # Ids are base62 after their prefix (checked before a MAC is computed or compared), so
    # the separator cannot occur inside a field: one grant, one message.
    fields = (grant.task_id, grant.account_id, str(grant.credits), str(grant.deadline))
    return b"\n".join((_LABEL, *(f.encode() for f in fields)))


@dataclass(frozen=True)
class TaskCapabilities:
    current: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, spec: str) -> TaskCapabilities:
        current, keys = parse_keyring(
            spec,
            "TASK_CAPABILITY_KEYS",
            "billing and storage act on a task only with the gateway's capability for it; "
            "make one with `pixelrelay admin new-capability-key`",
        )
        return cls(current, keys)

    def issue(self, grant: TaskGrant) -> common_pb2.TaskCapability:
        """The gateway's grant for a task it queues (the ids are ones it made)."""
        if not (is_id(grant.task_id, "task") and is_id(grant.account_id, "acct")):
            raise ValueError("a capability is issued only for well-formed ids")
        return common_pb2.TaskCapability(
            task_id=grant.task_id,
            account_id=grant.account_id,
            credits=grant.credits,
            deadline=grant.deadline,
            key_id=self.current,
            mac=self._mac(self.keys[self.current], grant),
        )

    def verify(self, capability: common_pb2.TaskCapability, task_id: str) -> TaskGrant:
        """The grant, if ``capability`` is a gateway's, unaltered, for ``task_id``; else
        PERMISSION_DENIED (10007), whatever was wrong with it (no oracle for forgers)."""
        grant = TaskGrant(
            capability.task_id, capability.account_id, capability.credits, capability.deadline
        )
        key = self.keys.get(capability.key_id)
        if (
            key is None
            or grant.task_id != task_id
            or not is_id(grant.task_id, "task")
            or not is_id(grant.account_id, "acct")
            or not hmac.compare_digest(self._mac(key, grant), capability.mac)
        ):
            raise ApiError(E.TASK_CAPABILITY_INVALID)
        return grant

    @staticmethod
    def _mac(key: bytes, grant: TaskGrant) -> bytes:
        return hmac.new(key, _message(grant), hashlib.sha256).digest()
