"""The public operations, implemented once: the gRPC edge (grpc/servicer.py) and the REST
edges (http/reapi.py, http/openai_api.py) both call this.

An edge authenticates the caller once (authenticator.py) and calls the operation with the
``Principal``, keyword-only: ``api.get_task(request, principal=principal)``. Each operation
checks its own scope first (libs/pixelrelay/scopes.py), so none runs for a key without it
whoever calls. The collaborators are built in ``__main__``; the submit step is submit.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from prometheus_client import Counter

from pixelrelay import scopes
from pixelrelay.billing_client import BillingClient
from pixelrelay.catalog import Catalog
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E
from pixelrelay.ids import new_id
from pixelrelay.limits import page_limit
from pixelrelay.relay import MAX_PARTIAL_IMAGES, NO_RELAY, Relay, RelayInbox
from pixelrelay.storage_client import StorageClient
from pixelrelay.v1 import billing_pb2, public_api_pb2
from pixelrelay_gateway.core.accounts import AccountData
from pixelrelay_gateway.core.idempotency import Claim, IdempotencyStore, fingerprint, key_digest
from pixelrelay_gateway.core.models import listed
from pixelrelay_gateway.core.store import DEFAULT_PAGE, MAX_PAGE, TaskStatus, TaskStore, now_ms
from pixelrelay_gateway.core.submit import HoldSettled, Submitter
from pixelrelay_gateway.core.uploads import Uploader
from pixelrelay_gateway.core.usage import usage_page
from pixelrelay_gateway.core.validation import price_item, resolve
from pixelrelay_gateway.core.waiting import TaskWaiters

SYNC_IMAGES = Counter(
    "pixelrelay_sync_images_total",
    "Images answered to waiting requests, by where the bytes came from",
    ["source"],  # relayed (from the dispatcher) | storage (read back)
)

STATUSES = tuple(TaskStatus)
Principal = billing_pb2.Principal


class PublicApi:
    def __init__(
        self,
        *,
        models: Catalog,
        submitter: Submitter,
        uploader: Uploader,
        billing: BillingClient,
        storage: StorageClient,
        db: Database,
        store: TaskStore,
        idempotency: IdempotencyStore,
        accounts: AccountData,
        waiters: TaskWaiters,
        relays: RelayInbox,
    ):
        self.models = models
        self._models = listed(models)
        self.submitter = submitter
        self.uploader = uploader
        self.billing = billing
        self.storage = storage
        self.db = db
        self.store = store
        self.idempotency = idempotency
        self.accounts = accounts
        self.waiters = waiters
        self.relays = relays

    async def create_generation(
        self, request: public_api_pb2.CreateGenerationRequest, *, principal: Principal
    ) -> public_api_pb2.Task:
        """Validate, load references, hold the price, record, queue (submit.py). Any
        failure before the queue answers an error and leaves nothing charged. With an
        idempotency key, a repeat gets the task the first made (idempotency.py)."""
        scopes.require(principal.scopes, scopes.GENERATE)
        return await self._create(principal, request)

    async def _create(
        self,
        principal: Principal,
        request: public_api_pb2.CreateGenerationRequest,
        relay: Relay = NO_RELAY,
    ) -> public_api_pb2.Task:
        """create_generation for a caller whose scope was checked; a repeat of an idempotent
        request has nothing relayed to it (its job named another subject, or none)."""
        submit = self.submitter.submit
        if not request.idempotency_key:
            return await submit(principal, request, new_id("task"), relay)
        account_id = principal.account_id
        key = key_digest(request.idempotency_key)
        claim = await self._claim(account_id, key, request)
        if claim.done or (claim.resumed and await self._recorded(claim.task_id, account_id)):
            await self.db.run(self.idempotency.finish, account_id=account_id, key_sha256=key)
            return await self.db.run(self.store.get, claim.task_id, account_id)
        try:
            try:
                task = await submit(principal, request, claim.task_id, relay)
            except HoldSettled:
                # The first attempt's hold outlived it and was released: start afresh.
                await self.db.run(self.idempotency.forget, account_id=account_id, key_sha256=key)
                fresh = await self._claim(account_id, key, request)
                task = await submit(principal, request, fresh.task_id, relay)
        except Exception:
            await self.db.run(self.idempotency.forget, account_id=account_id, key_sha256=key)
            raise
        await self.db.run(self.idempotency.finish, account_id=account_id, key_sha256=key)
        return task

    async def generate_images(
        self, request: public_api_pb2.GenerateImagesRequest, *, principal: Principal
    ) -> AsyncGenerator[public_api_pb2.GenerationEvent]:
        """Submit (CreateGeneration, the same hold and checks), wait until the task settles
        (passing on its previews, if asked), then each image's bytes and the settled task.
        The images come relayed from the dispatcher (relay.py) when they arrived whole and
        are exactly what was stored, else from storage. The task does not depend on this
        call: a caller that goes away leaves it to complete and be charged once."""
        if not 0 <= request.partial_images <= MAX_PARTIAL_IMAGES:
            raise ApiError(
                E.INVALID_PARAMETER,
                f"partial_images must be 0 to {MAX_PARTIAL_IMAGES}",
                param="partial_images",
            )
        scopes.require(principal.scopes, scopes.GENERATE)
        async with contextlib.AsyncExitStack() as stack:
            # Listening before the job is queued: nothing relayed can come first.
            receiver = self.relays.receiver()
            stack.callback(receiver.close)
            relay = Relay(request.partial_images, receiver.subject)
            task = await self._create(principal, request.request, relay)
            receiver.task_id = task.id
            yield public_api_pb2.GenerationEvent(accepted=task)
            waiting = asyncio.ensure_future(
                self.waiters.wait(
                    task.id, lambda: self.db.run(self.store.get, task.id), request.wait_seconds
                )
            )
            stack.callback(waiting.cancel)  # the caller went away: stop waiting
            async for partial in receiver.previews(waiting):
                yield public_api_pb2.GenerationEvent(partial=partial)
            settled = await waiting
            if settled.status == TaskStatus.COMPLETED:
                for image in settled.images:
                    data = await receiver.final(image.index, image.sha256)
                    SYNC_IMAGES.labels("storage" if data is None else "relayed").inc()
                    if data is None:
                        data = await self.storage.get_object(image.key)
                    yield public_api_pb2.GenerationEvent(
                        image=public_api_pb2.ImageData(
                            index=image.index, data=data, format=image.format
                        )
                    )
        yield public_api_pb2.GenerationEvent(settled=settled)

    async def _claim(
        self, account_id: str, key: str, request: public_api_pb2.CreateGenerationRequest
    ) -> Claim:
        return await self.db.run(
            self.idempotency.claim,
            account_id=account_id,
            key_sha256=key,
            fingerprint=fingerprint(request),
            task_id=new_id("task"),
            now_ms=now_ms(),
        )

    async def _recorded(self, task_id: str, account_id: str) -> bool:
        try:
            await self.db.run(self.store.get, task_id, account_id)
        except ApiError as err:
            if err.kind is E.TASK_NOT_FOUND:
                return False
            raise
        return True

    async def estimate_generation(
        self, request: public_api_pb2.CreateGenerationRequest, *, principal: Principal
    ) -> public_api_pb2.Estimate:
        """The price of a request; references are not fetched (size auto uses the prompt)."""
        scopes.require(principal.scopes, scopes.GENERATE)
        spec, _prompt = resolve(request, self.models)
        quote = await self.billing.quote(price_item(spec))
        return public_api_pb2.Estimate(
            model=spec.model, credits=quote.credits, unit_credits=quote.unit_credits, spec=spec
        )

    async def get_task(
        self, request: public_api_pb2.GetTaskRequest, *, principal: Principal
    ) -> public_api_pb2.Task:
        scopes.require(principal.scopes, scopes.READ)
        return await self.db.run(self.store.get, request.id, principal.account_id)

    async def list_tasks(
        self, request: public_api_pb2.ListTasksRequest, *, principal: Principal
    ) -> public_api_pb2.ListTasksResponse:
        scopes.require(principal.scopes, scopes.READ)
        limit = page_limit(request.limit, default=DEFAULT_PAGE, maximum=MAX_PAGE)
        if request.status and request.status not in STATUSES:
            raise ApiError(
                E.INVALID_PARAMETER, f"status must be one of {', '.join(STATUSES)}", param="status"
            )
        records, next_cursor = await self.db.run(
            self.store.page,
            account_id=principal.account_id,
            limit=limit,
            cursor=request.cursor,
            status=request.status,
        )
        return public_api_pb2.ListTasksResponse(
            tasks=[r.to_proto() for r in records], next_cursor=next_cursor
        )

    async def list_task_usage(
        self, request: public_api_pb2.ListTaskUsageRequest, *, principal: Principal
    ) -> public_api_pb2.ListTaskUsageResponse:
        scopes.require(principal.scopes, scopes.BILLING_READ)
        return await usage_page(self.db, self.store, principal.account_id, request)

    async def get_balance(
        self, request: public_api_pb2.GetBalanceRequest, *, principal: Principal
    ) -> public_api_pb2.AccountBalance:
        scopes.require(principal.scopes, scopes.BILLING_READ)
        account = await self.billing.get_account(principal.account_id)
        return public_api_pb2.AccountBalance(
            account_id=account.id, balance=account.balance, held=account.held
        )

    async def create_upload(
        self, request: public_api_pb2.CreateUploadRequest, *, principal: Principal
    ) -> public_api_pb2.Upload:
        scopes.require(principal.scopes, scopes.GENERATE)
        return await self.uploader.upload(principal.account_id, request)

    async def list_usage(
        self, request: public_api_pb2.ListUsageRequest, *, principal: Principal
    ) -> billing_pb2.ListLedgerEntriesResponse:
        scopes.require(principal.scopes, scopes.BILLING_READ)
        return await self.billing.list_ledger_entries(
            billing_pb2.ListLedgerEntriesRequest(
                account_id=principal.account_id,
                since=request.since,
                until=request.until,
                cursor=request.cursor,
                limit=request.limit,
            )
        )

    async def create_key(
        self, request: public_api_pb2.CreateKeyRequest, *, principal: Principal
    ) -> billing_pb2.CreatedApiKey:
        scopes.require(principal.scopes, scopes.KEYS_MANAGE)
        return await self.billing.create_api_key(
            principal.account_id,
            request.name,
            scopes=list(request.scopes),
            parent_key_id=principal.key_id,
            expires_at=request.expires_at,
            credit_limit=request.credit_limit if request.HasField("credit_limit") else None,
            rate_limit=request.rate_limit if request.HasField("rate_limit") else None,
        )

    async def list_keys(
        self, request: public_api_pb2.ListKeysRequest, *, principal: Principal
    ) -> billing_pb2.ListApiKeysResponse:
        scopes.require(principal.scopes, scopes.KEYS_MANAGE)
        return await self.billing.list_api_keys(principal.account_id)

    async def revoke_key(
        self, request: public_api_pb2.RevokeKeyRequest, *, principal: Principal
    ) -> billing_pb2.ApiKeyInfo:
        scopes.require(principal.scopes, scopes.KEYS_MANAGE)
        return await self.billing.revoke_api_key(
            request.key_id,
            principal.account_id,
            by_key_id=principal.key_id,
            cascade=request.cascade,
        )

    async def export_account(
        self, request: public_api_pb2.ExportAccountRequest, *, principal: Principal
    ) -> AsyncIterator[public_api_pb2.ExportItem]:
        """The caller's own account, tasks and ledger (a key that may read both)."""
        scopes.require(principal.scopes, scopes.BILLING_READ)
        scopes.require(principal.scopes, scopes.READ)
        if request.account_id and request.account_id != principal.account_id:
            raise ApiError(E.ACCOUNT_NOT_FOUND, param="account_id")
        async for item in self.accounts.export(self.billing, principal.account_id):
            yield item

    async def list_models(
        self, request: public_api_pb2.ListModelsRequest, *, principal: Principal
    ) -> public_api_pb2.ListModelsResponse:
        scopes.require(principal.scopes, scopes.GENERATE)
        return self._models
