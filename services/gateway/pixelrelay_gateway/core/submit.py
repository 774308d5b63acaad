"""The submit step: one request for an authenticated caller, resolved, its references
loaded, its price held, recorded and queued (PublicApi's create_generation and
generate_images both submit through here). Built in ``__main__`` with what it uses."""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext
from prometheus_client import Counter

from pixelrelay import bus
from pixelrelay.batching import Batcher
from pixelrelay.billing_client import BillingClient
from pixelrelay.capabilities import TaskCapabilities, TaskGrant
from pixelrelay.catalog import Catalog
from pixelrelay.crashpoints import crash_point
from pixelrelay.db import Database
from pixelrelay.errors import ApiError, E, insufficient_credits
from pixelrelay.relay import NO_RELAY, Relay
from pixelrelay.sealing import PromptSealer, job_binding
from pixelrelay.v1 import billing_pb2, common_pb2, jobs_pb2, public_api_pb2
from pixelrelay_gateway.core.store import TaskRecord, TaskStore, message_to_json, now_ms
from pixelrelay_gateway.core.validation import price_item, resolve, sized_by_reference
from pixelrelay_gateway.inputs.images import check_mask
from pixelrelay_gateway.inputs.references import Inputs, ReferenceLoader

log = logging.getLogger(__name__)

TASKS_ACCEPTED = Counter("pixelrelay_tasks_accepted_total", "Tasks queued", ["model"])


class HoldSettled(Exception):
    """A resumed submit's task id already has a settled hold (it expired meanwhile)."""


class Submitter:
    def __init__(
        self,
        *,
        models: Catalog,
        billing: BillingClient,
        references: ReferenceLoader,
        db: Database,
        store: TaskStore,
        js: JetStreamContext,
        sealer: PromptSealer,
        capabilities: TaskCapabilities,
        hold_ttl_seconds: int,
    ):
        self.models = models
        self.billing = billing
        self.references = references
        self.db = db
        self.store = store
        self.js = js
        self.sealer = sealer
        self.capabilities = capabilities
        self.hold_ttl_seconds = hold_ttl_seconds
        # Submits that arrive together are recorded in one transaction.
        self._inserts: Batcher[TaskRecord, None] = Batcher(
            "task_insert", lambda records: db.run(store.insert_many, records)
        )

    async def submit(
        self,
        principal: billing_pb2.Principal,
        request: public_api_pb2.CreateGenerationRequest,
        task_id: str,
        relay: Relay = NO_RELAY,
    ) -> public_api_pb2.Task:
        """Validate, load references, hold the price, record, queue. Any failure before the
        queue answers an error and leaves nothing charged. Raises ``HoldSettled`` when
        ``task_id`` (a resumed one) has a hold that settled meanwhile."""
        spec, prompt = resolve(request, self.models)  # every rule, before anything is fetched
        inputs = Inputs([], None)
        if spec.image_urls:
            await self._affordable(principal.account_id, spec)
            inputs = await self.references.load(spec, principal.account_id)
        elif request.images:
            inputs = await self._inline_inputs(request, principal.account_id)
        spec = sized_by_reference(request, spec, self.models, inputs.first_size)
        hold = await self.billing.reserve(
            task_id=task_id,
            account_id=principal.account_id,
            item=price_item(spec),
            key_id=principal.key_id,  # its deadline is billing's (pixelrelay_billing/sweeper.py)
        )
        if hold.state != billing_pb2.HOLD_STATE_PENDING:  # a resumed task id, settled since
            raise HoldSettled(task_id)
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
            await self._undo(task_id)
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

    async def _undo(self, task_id: str) -> None:
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
            await self.references.checked(image.data, image.content_type, "image", account_id)
            for image in request.images
        ]
        mask = None
        if request.HasField("mask"):
            mask = await self.references.checked(
                request.mask.data, request.mask.content_type, "mask", account_id
            )
            check_mask(mask, references[0], "mask")
        return Inputs(references, mask)

    async def _affordable(self, account_id: str, spec: common_pb2.ImageSpec) -> None:
        """402 before any reference is fetched or decoded: an account without the credits
        once made the gateway fetch and decode 17 large images (1 GB, 2.7 s) to learn it.
        The hold after the fetch is still the check that counts."""
        quote, account = await asyncio.gather(
            self.billing.quote(price_item(spec)), self.billing.get_account(account_id)
        )
        if account.balance < quote.credits:
            raise insufficient_credits(quote.credits, account.balance)
