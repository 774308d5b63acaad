"""An account's data as a whole: its export, and its deletion, which spans every service.

Both run for the operator (Admin, on gRPC and /admin/v1) with the operator's credential
forwarded to billing, whose answer to the first call decides whether they may; the export
also runs for the account's own keys (PublicApi.ExportAccount).

Deletion, in this order, each step idempotent so a deletion cut short is finished by
running it again:
1. billing revokes every key, releases every pending hold (their jobs are then dropped
   by the dispatcher) and marks the account deleted, keeping its ledger;
2. storage deletes the account's uploads and every task's inputs and results;
3. the gateway deletes the account's task, upload and idempotency records.
A job already past its hold check when the account is deleted may still store its images
after step 2; its capture is refused (the hold is released) and its objects are deleted
with every other result when their lifetime ends (RESULT_TTL_DAYS).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pixelrelay import objects
from pixelrelay.billing_client import BillingClient
from pixelrelay.db import Database
from pixelrelay.storage_client import StorageClient
from pixelrelay.v1 import admin_pb2, billing_pb2, public_api_pb2
from pixelrelay_gateway.core.idempotency import IdempotencyStore
from pixelrelay_gateway.core.store import TaskStore
from pixelrelay_gateway.core.uploads import UploadStore

log = logging.getLogger(__name__)

PAGE = 100  # tasks or entries per read while exporting
PREFIXES_PER_CALL = 500  # prefixes per storage call while deleting


@dataclass(frozen=True)
class AccountData:
    storage: StorageClient
    db: Database
    tasks: TaskStore
    uploads: UploadStore
    idempotency: IdempotencyStore

    async def export(
        self, billing: BillingClient, account_id: str
    ) -> AsyncIterator[public_api_pb2.ExportItem]:
        """The account, its tasks, its ledger entries; ``billing`` acts for the caller
        (the operator, or the gateway for the account's own key)."""
        account = await billing.get_account(account_id)  # first: it authorises the rest
        yield public_api_pb2.ExportItem(account=account)
        cursor = ""
        while True:
            records, cursor = await self.db.run(
                self.tasks.page, account_id=account_id, limit=PAGE, cursor=cursor
            )
            for record in records:
                yield public_api_pb2.ExportItem(task=record.to_proto())
            if not cursor:
                break
        while True:
            page = await billing.list_ledger_entries(
                billing_pb2.ListLedgerEntriesRequest(
                    account_id=account_id, cursor=cursor, limit=PAGE
                )
            )
            for entry in page.entries:
                yield public_api_pb2.ExportItem(entry=entry)
            cursor = page.next_cursor
            if not cursor:
                break

    async def delete(
        self, billing: BillingClient, account_id: str, reason: str
    ) -> admin_pb2.AccountDeletion:
        deleted = await billing.delete_account(account_id, reason)  # authorises the rest
        task_ids = await self.db.run(self.tasks.ids_of, account_id)
        prefixes = [objects.account_uploads(account_id)]
        prefixes += [objects.task_objects(task_id) for task_id in task_ids]
        removed = 0
        for start in range(0, len(prefixes), PREFIXES_PER_CALL):
            removed += await self.storage.delete_prefixes(
                prefixes[start : start + PREFIXES_PER_CALL]
            )
        tasks = await self.db.run(self.tasks.delete_account, account_id)
        uploads = await self.db.run(self.uploads.delete_account, account_id)
        await self.db.run(self.idempotency.delete_account, account_id)
        result = admin_pb2.AccountDeletion(
            account=deleted.account,
            keys_revoked=deleted.keys_revoked,
            holds_released=len(deleted.released_task_ids),
            objects_deleted=removed,
            tasks_deleted=tasks,
            uploads_deleted=uploads,
        )
        log.info(
            "account data deleted",
            extra={
                "account_id": account_id,
                "objects": removed,
                "tasks": tasks,
                "uploads": uploads,
            },
        )
        return result
