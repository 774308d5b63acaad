"""The public operations, implemented once: the gRPC edge (grpc/servicer.py) and the REST
edge (http/reapi.py) both call this."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import Counter

from pixelrelay import bus, catalog, objects, scopes
from pixelrelay.batching import Batcher
from pixelrelay.billing_client import BillingClient
from pixelrelay.capabilities import TaskCapabilities, TaskGrant
from pixelrelay.catalog import Catalog
from pixelrelay.crashpoints import crash_point
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E, insufficient_credits
from pixelrelay.ids import content_id, new_id
from pixelrelay.limits import page_limit
from pixelrelay.relay import MAX_PARTIAL_IMAGES, NO_RELAY, Relay, RelayReceiver
from pixelrelay.sealing import PromptSealer, job_binding
from pixelrelay.storage_client import StorageClient
from pixelrelay.v1 import billing_pb2, common_pb2, jobs_pb2, public_api_pb2
from pixelrelay_gateway.core.accounts import AccountData
from pixelrelay_gateway.core.authcache import AuthCache
from pixelrelay_gateway.core.idempotency import Claim, IdempotencyStore, fingerprint, key_digest
from pixelrelay_gateway.core.models import listed
from pixelrelay_gateway.core.ratelimit import RateLimiter
from pixelrelay_gateway.core.store import (
    DEFAULT_PAGE,
    MAX_PAGE,
    TaskRecord,
    TaskStatus,
    TaskStore,
    message_to_json,
    now_ms,
)
from pixelrelay_gateway.core.uploads import NO_QUOTA, Quota, UploadRecord, UploadStore
from pixelrelay_gateway.core.usage import usage_page
from pixelrelay_gateway.core.validation import price_item, resolve
from pixelrelay_gateway.core.waiting import TaskWaiters
from pixelrelay_gateway.inputs.images import InputImage, check_content_type, check_mask
from pixelrelay_gateway.inputs.references import Inputs, ReferenceLoader

log = logging.getLogger(__name__)

TASKS_ACCEPTED = Counter("pixelrelay_tasks_accepted_total", "Tasks queued", ["model"])
SYNC_IMAGES = Counter(
    "pixelrelay_sync_images_total",
    "Images answered to waiting requests, by where the bytes came from",
    ["source"],  # relayed (from the dispatcher) | storage (read back)
)

STATUSES = tuple(TaskStatus)


def bearer_key(authorization: str | None) -> str:
    """The API key from an ``Authorization: Bearer …`` value, or 10001."""
    if not authorization:
        raise ApiError(E.MISSING_API_KEY)
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(E.MISSING_API_KEY, "use the header Authorization: Bearer <api key>")
    return key.strip()


class _HoldSettled(Exception):
    """A resumed submit's task id already has a settled hold (it expired meanwhile)."""


class PublicApi:
    def __init__(
        self,
        *,
        billing: BillingClient,
        storage: StorageClient,
        references: ReferenceLoader,
        db: Database,
        store: TaskStore,
        nc: NATS,
        js: JetStreamContext,
        hold_ttl_seconds: int,
        max_image_bytes: int,
        sealer: PromptSealer,
        capabilities: TaskCapabilities,
        limiter: RateLimiter | None = None,
        idempotency: IdempotencyStore | None = None,
        uploads: UploadStore | None = None,
        upload_quota: Quota = NO_QUOTA,
        waiters: TaskWaiters | None = None,
        sync_wait_seconds: float = 300.0,
        models: Catalog | None = None,
    ):
        self.models = models or catalog.load()
        self._models = listed(self.models)
        self.billing = billing
        self.storage = storage
        self.references = references
        self.db = db
        self.store = store
        self.nc = nc
        self.js = js
        self.max_image_bytes = max_image_bytes
        self.sealer = sealer
        self.capabilities = capabilities
        self.hold_ttl_seconds = hold_ttl_seconds
        self.limiter = limiter or RateLimiter(billing.take_request)
        self.idempotency = idempotency or IdempotencyStore(db.engine)
        self.uploads = uploads or UploadStore(db.engine)
        self.upload_quota = upload_quota
        self.accounts = AccountData(storage, db, store, self.uploads, self.idempotency)
        self.waiters = waiters or TaskWaiters()
        self.sync_wait_seconds = sync_wait_seconds
        self.auth = AuthCache(billing.authenticate)
        # Submits that arrive together are recorded in one transaction.
        self._inserts: Batcher[TaskRecord, None] = Batcher(
            "task_insert", lambda records: db.run(store.insert_many, records)
        )

    async def authenticate(self, authorization: str | None, scope: str) -> billing_pb2.Principal:
        """Who is calling, after their key's rate limit, if the key has ``scope`` (every
        public call passes here)."""
        # Reading one's own tasks survives a billing outage (authcache.py); nothing else.
        principal = await self.auth.principal(
            bearer_key(authorization), in_outage=scope == scopes.READ
        )
        await self.limiter.take(principal.key_id, principal.rate_limit)
        scopes.require(principal.scopes, scope)
        return principal

    def vouched(self, authorization: str) -> bool:
        """The header's key was accepted by billing lately (authcache.py)."""
        try:
            return self.auth.vouches_for(bearer_key(authorization))
        except ApiError:
            return False

    async def admit(self, authorization: str | None) -> None:
        """The caller's key is valid, known from its headers alone: checked before a body is
        read (16 unauthenticated 60 MB edits once took the gateway from 332 to 936 MB).
        Scope and rate limit are the operation's own ``authenticate``, which finds the
        principal cached."""
        await self.auth.principal(bearer_key(authorization))

    async def create_generation(
        self, authorization: str | None, request: public_api_pb2.CreateGenerationRequest
    ) -> public_api_pb2.Task:
        """Validate, load references, hold the price, record, queue. Any failure before the
        queue answers an error and leaves nothing charged. With an idempotency key, a
        repeat gets the task the first made (idempotency.py)."""
        principal = await self.authenticate(authorization, scopes.GENERATE)
        return await self._create(principal, request)

    async def _create(
        self,
        principal: billing_pb2.Principal,
        request: public_api_pb2.CreateGenerationRequest,
        relay: Relay = NO_RELAY,
    ) -> public_api_pb2.Task:
        """create_generation for an authenticated caller; a repeat of an idempotent request
        has nothing relayed to it (its job named another subject, or none)."""
        if not request.idempotency_key:
            return await self._submit(principal, request, new_id("task"), relay)
        account_id = principal.account_id
        key = key_digest(request.idempotency_key)
        claim = await self._claim(account_id, key, request)
        if claim.done or (claim.resumed and await self._recorded(claim.task_id, account_id)):
            await self.db.run(self.idempotency.finish, account_id=account_id, key_sha256=key)
            return await self.db.run(self.store.get, claim.task_id, account_id)
        try:
            try:
                task = await self._submit(principal, request, claim.task_id, relay)
            except _HoldSettled:
                # The first attempt's hold outlived it and was released: start afresh.
                await self.db.run(self.idempotency.forget, account_id=account_id, key_sha256=key)
                fresh = await self._claim(account_id, key, request)
                task = await self._submit(principal, request, fresh.task_id, relay)
        except Exception:
            await self.db.run(self.idempotency.forget, account_id=account_id, key_sha256=key)
            raise
        await self.db.run(self.idempotency.finish, account_id=account_id, key_sha256=key)
        return task

    async def generate_images(
        self, authorization: str | None, request: public_api_pb2.GenerateImagesRequest
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
        principal = await self.authenticate(authorization, scopes.GENERATE)
        async with contextlib.AsyncExitStack() as stack:
            # Listening before the job is queued: nothing relayed can come first.
            receiver = await self._relay_receiver()
            stack.push_async_callback(receiver.close)
            relay = Relay(request.partial_images, receiver.subject)
            task = await self._create(principal, request.request, relay)
            receiver.task_id = task.id
            yield public_api_pb2.GenerationEvent(accepted=task)
            wait = request.wait_seconds if request.wait_seconds > 0 else self.sync_wait_seconds
            waiting = asyncio.ensure_future(
                self.waiters.wait(
                    task.id,
                    lambda: self.db.run(self.store.get, task.id),
                    min(wait, self.sync_wait_seconds),
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

    async def _relay_receiver(self) -> RelayReceiver:
        try:
            return await RelayReceiver().open(self.nc)
        except Exception as exc:  # the bus is away: nothing is submitted either
            raise ApiError(E.UNAVAILABLE) from exc

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

    async def _submit(
        self,
        principal: billing_pb2.Principal,
        request: public_api_pb2.CreateGenerationRequest,
        task_id: str,
        relay: Relay = NO_RELAY,
    ) -> public_api_pb2.Task:
        spec, prompt = resolve(request, self.models)
        inputs = Inputs([], None)
        if spec.image_urls:
            await self._affordable(principal.account_id, spec)
            inputs = await self.references.load(spec, principal.account_id)
        elif request.images:
            inputs = await self._inline_inputs(request, principal.account_id)
        if inputs.references:
            spec, prompt = resolve(request, self.models, reference_size=inputs.first_size)
        hold = await self.billing.reserve(
            task_id=task_id,
            account_id=principal.account_id,
            item=price_item(spec),
            key_id=principal.key_id,  # its deadline is billing's (pixelrelay_billing/sweeper.py)
        )
        if hold.state != billing_pb2.HOLD_STATE_PENDING:  # a resumed task id, settled since
            raise _HoldSettled(task_id)
        crash_point("gateway.after_reserve")
        record = TaskRecord(
            id=task_id,
            account_id=principal.account_id,
            key_id=principal.key_id,
            model=spec.model,
            created_at_ms=now_ms(),
            spec_json=message_to_json(spec),
            credits_reserved=hold.amount,
            price_id=hold.price_id,
        )
        try:
            reference_keys, mask_key = await self.references.store(task_id, inputs)
            job = jobs_pb2.GenerationJob(
                task_id=task_id,
                account_id=principal.account_id,
                spec=spec,
                created_at_ms=record.created_at_ms,
                reference_keys=reference_keys,
                mask_key=mask_key,
                partial_images=relay.partial_images,
                relay_subject=relay.subject,
                # This task alone, for the dispatcher's calls to storage.
                capability=self.capabilities.issue(
                    TaskGrant(
                        task_id,
                        principal.account_id,
                        hold.amount,
                        record.created_at_ms // 1000 + self.hold_ttl_seconds,
                    )
                ),
            )
            job.key_id, job.sealed_prompt = self.sealer.seal(prompt, task_id, job_binding(job))
            await self._inserts.submit(record)
            crash_point("gateway.before_publish")
            await bus.publish(
                self.js, bus.job_subject(task_id), job.SerializeToString(), msg_id=task_id
            )
        except Exception as exc:
            # Not queued means not charged: undo the record and the hold, answer 503.
            await self._undo_submit(task_id)
            if isinstance(exc, ApiError):
                raise
            raise ApiError(E.UNAVAILABLE) from exc
        TASKS_ACCEPTED.labels(spec.model).inc()
        log.info(
            "task accepted",
            extra={
                "task_id": task_id,
                "model": spec.model,
                "credits": hold.amount,
                "references": len(inputs.references),
            },
        )
        return record.to_proto()

    async def _undo_submit(self, task_id: str) -> None:
        try:
            await self.db.run(self.store.delete, task_id)
            await self.billing.release(task_id=task_id, reason="not_queued")
        except Exception:
            # The hold's deadline still releases it (billing's sweeper).
            log.warning("could not undo a failed submit", extra={"task_id": task_id}, exc_info=True)

    async def _inline_inputs(
        self, request: public_api_pb2.CreateGenerationRequest, account_id: str
    ) -> Inputs:
        """The images sent with the request, checked as fetched ones are."""
        references = [
            await self._checked_image(image.data, image.content_type, "image", account_id)
            for image in request.images
        ]
        mask = None
        if request.HasField("mask"):
            mask = await self._checked_image(
                request.mask.data, request.mask.content_type, "mask", account_id
            )
            check_mask(mask, references[0], "mask")
        return Inputs(references, mask)

    async def _checked_image(
        self, data: bytes, content_type: str, param: str, account_id: str
    ) -> InputImage:
        """One image a client sent (an upload, an inline reference): present, within the
        size limit, of the type it says, decodable within the budget and the account's
        share of the decode workers."""
        if not data:
            raise ApiError(E.MISSING_PARAMETER, f"{param} is required", param=param)
        if len(data) > self.max_image_bytes:
            raise ApiError(
                E.IMAGE_TOO_LARGE,
                f"{param}: larger than {self.max_image_bytes // (1024 * 1024)} MiB",
                param=param,
            )
        check_content_type(content_type, param)
        return await self.references.inspect(data, param, account_id)

    async def _affordable(self, account_id: str, spec: common_pb2.ImageSpec) -> None:
        """402 before any reference is fetched or decoded: an account without the credits
        once made the gateway fetch and decode 17 large images (1 GB, 2.7 s) to learn it.
        The hold after the fetch is still the check that counts."""
        quote, account = await asyncio.gather(
            self.billing.quote(price_item(spec)), self.billing.get_account(account_id)
        )
        if account.balance < quote.credits:
            raise insufficient_credits(quote.credits, account.balance)

    async def estimate_generation(
        self,
        authorization: str | None,
        request: public_api_pb2.CreateGenerationRequest,
    ) -> public_api_pb2.Estimate:
        """The price of a request; references are not fetched (size auto uses the prompt)."""
        await self.authenticate(authorization, scopes.GENERATE)
        spec, _prompt = resolve(request, self.models)
        quote = await self.billing.quote(price_item(spec))
        return public_api_pb2.Estimate(
            model=spec.model, credits=quote.credits, unit_credits=quote.unit_credits, spec=spec
        )

    async def get_task(
        self, authorization: str | None, request: public_api_pb2.GetTaskRequest
    ) -> public_api_pb2.Task:
        principal = await self.authenticate(authorization, scopes.READ)
        return await self.db.run(self.store.get, request.id, principal.account_id)

    async def list_tasks(
        self,
        authorization: str | None,
        request: public_api_pb2.ListTasksRequest,
    ) -> public_api_pb2.ListTasksResponse:
        principal = await self.authenticate(authorization, scopes.READ)
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
        self, authorization: str | None, request: public_api_pb2.ListTaskUsageRequest
    ) -> public_api_pb2.ListTaskUsageResponse:
        principal = await self.authenticate(authorization, scopes.BILLING_READ)
        return await usage_page(self.db, self.store, principal.account_id, request)

    async def get_balance(
        self,
        authorization: str | None,
        request: public_api_pb2.GetBalanceRequest,
    ) -> public_api_pb2.AccountBalance:
        principal = await self.authenticate(authorization, scopes.BILLING_READ)
        account = await self.billing.get_account(principal.account_id)
        return public_api_pb2.AccountBalance(
            account_id=account.id, balance=account.balance, held=account.held
        )

    async def create_upload(
        self, authorization: str | None, request: public_api_pb2.CreateUploadRequest
    ) -> public_api_pb2.Upload:
        principal = await self.authenticate(authorization, scopes.GENERATE)
        image = await self._checked_image(
            request.data, request.content_type, "file", principal.account_id
        )
        # Named by its content: a retried upload (lost answer) is the same upload, stored
        # once, so uploads need no Idempotency-Key.
        upload_id = content_id("upl", principal.account_id, image.data)
        key = objects.upload_key(principal.account_id, upload_id, image.format)
        record = UploadRecord(
            id=upload_id,
            account_id=principal.account_id,
            key=key,
            bytes=len(image.data),
            created_at_ms=now_ms(),
            expires_at_ms=0,  # storage says when, below
        )
        await self.db.run(self.uploads.admit, record, self.upload_quota, now_ms=now_ms())
        stored = await self.storage.put_object(key, image.data, image.content_type)
        record.expires_at_ms = stored.kept_until * 1000
        await self.db.run(self.uploads.record, record)
        log.info("upload stored", extra={"upload_id": upload_id, "bytes": len(image.data)})
        return public_api_pb2.Upload(
            id=upload_id,
            url=stored.url,
            format=image.format,
            width=image.width,
            height=image.height,
            bytes=len(image.data),
            expires_at=stored.expires_at,
        )

    async def list_usage(
        self, authorization: str | None, request: public_api_pb2.ListUsageRequest
    ) -> billing_pb2.ListLedgerEntriesResponse:
        principal = await self.authenticate(authorization, scopes.BILLING_READ)
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
        self, authorization: str | None, request: public_api_pb2.CreateKeyRequest
    ) -> billing_pb2.CreatedApiKey:
        principal = await self.authenticate(authorization, scopes.KEYS_MANAGE)
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
        self, authorization: str | None, request: public_api_pb2.ListKeysRequest
    ) -> billing_pb2.ListApiKeysResponse:
        principal = await self.authenticate(authorization, scopes.KEYS_MANAGE)
        return await self.billing.list_api_keys(principal.account_id)

    async def revoke_key(
        self, authorization: str | None, request: public_api_pb2.RevokeKeyRequest
    ) -> billing_pb2.ApiKeyInfo:
        principal = await self.authenticate(authorization, scopes.KEYS_MANAGE)
        return await self.billing.revoke_api_key(
            request.key_id,
            principal.account_id,
            by_key_id=principal.key_id,
            cascade=request.cascade,
        )

    async def export_account(
        self, authorization: str | None, request: public_api_pb2.ExportAccountRequest
    ) -> AsyncIterator[public_api_pb2.ExportItem]:
        """The caller's own account, tasks and ledger (a key that may read both)."""
        principal = await self.authenticate(authorization, scopes.BILLING_READ)
        scopes.require(principal.scopes, scopes.READ)
        if request.account_id and request.account_id != principal.account_id:
            raise ApiError(E.ACCOUNT_NOT_FOUND, param="account_id")
        async for item in self.accounts.export(self.billing, principal.account_id):
            yield item

    async def list_models(
        self, authorization: str | None, request: public_api_pb2.ListModelsRequest
    ) -> public_api_pb2.ListModelsResponse:
        await self.authenticate(authorization, scopes.GENERATE)
        return self._models
