"""Reference images and masks: loaded, checked and stored before a task is accepted.

A URL to one of the caller's own uploads is read from storage by key (never over HTTP);
any other URL goes through the SSRF-safe fetcher.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from pixelrelay import objects
from pixelrelay.errors import ApiError, E
from pixelrelay.storage_client import StorageClient
from pixelrelay.v1 import common_pb2
from pixelrelay_gateway.inputs.decode_pool import DecodeWorkers
from pixelrelay_gateway.inputs.fetch import SafeFetcher
from pixelrelay_gateway.inputs.images import (
    DecodeBudget,
    InputImage,
    check_content_type,
    check_mask,
    inspect_image,
)


@dataclass(frozen=True)
class Inputs:
    references: list[InputImage]
    mask: InputImage | None

    @property
    def first_size(self) -> tuple[int, int] | None:
        return (self.references[0].width, self.references[0].height) if self.references else None


def upload_key(url: str) -> tuple[str, str] | None:
    """(storage key, owner account) when ``url`` names an upload of ours."""
    try:
        path = httpx.URL(url).path
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    return objects.upload_in_path(path)


class AccountSlots:
    """At most ``per_account`` fetches (or decodes) at once for one account, on this
    gateway: one tenant's 64 slow URLs once took every connection and timed out another's
    fetch; two of its slow decodes once held the decode budget while another tenant's
    64x64 upload waited 27 s."""

    def __init__(self, per_account: int):
        self.per_account = per_account
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, account_id: str) -> AsyncIterator[None]:
        semaphore, users = self._slots.get(account_id, (asyncio.Semaphore(self.per_account), 0))
        self._slots[account_id] = (semaphore, users + 1)
        try:
            async with semaphore:
                yield
        finally:
            semaphore, users = self._slots[account_id]
            if users == 1:
                del self._slots[account_id]  # nobody waits: forget the account
            else:
                self._slots[account_id] = (semaphore, users - 1)


class ReferenceLoader:
    def __init__(
        self,
        fetcher: SafeFetcher,
        storage: StorageClient,
        budget: DecodeBudget,
        workers: DecodeWorkers,
        *,
        max_image_bytes: int,
        per_account: int = 8,
        decodes_per_account: int = 1,
        total_timeout: float = 30.0,
    ):
        self.fetcher = fetcher
        self.storage = storage
        self.budget = budget
        self.workers = workers
        self.max_image_bytes = max_image_bytes
        self.slots = AccountSlots(per_account)
        self.decode_slots = AccountSlots(decodes_per_account)
        self.total_timeout = total_timeout

    async def checked(
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
        return await self.inspect(data, param, account_id)

    async def inspect(self, data: bytes, param: str, account_id: str) -> InputImage:
        """Check one image (an upload or a reference) within this gateway's decode budget,
        and within the account's share of its decode workers: an account waits for its own
        decodes, not for another's."""
        async with self.decode_slots.slot(account_id):
            return await inspect_image(data, param, self.budget, self.workers)

    async def load(self, spec: common_pb2.ImageSpec, account_id: str) -> Inputs:
        """Every reference and the mask, checked; the first error wins."""
        urls = list(spec.image_urls)
        params = [f"image_urls[{i}]" for i in range(len(urls))]
        if spec.mask_url:
            urls.append(spec.mask_url)
            params.append("mask_url")
        try:
            async with asyncio.timeout(self.total_timeout), asyncio.TaskGroup() as group:
                # The first failure cancels the other fetches (and frees their slots).
                tasks = [
                    group.create_task(self._one(url, param, account_id))
                    for url, param in zip(urls, params, strict=True)
                ]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        except TimeoutError:
            raise ApiError(
                E.IMAGE_FETCH_FAILED,
                f"the reference images took more than {self.total_timeout:g} s in all",
                param="image_urls",
            ) from None
        loaded = [task.result() for task in tasks]
        references = loaded[: len(spec.image_urls)]
        mask = loaded[-1] if spec.mask_url else None
        if mask is not None:
            check_mask(mask, references[0])
        return Inputs(references, mask)

    async def _one(self, url: str, param: str, account_id: str) -> InputImage:
        own = upload_key(url)
        if own is not None:
            key, owner = own
            if owner != account_id:
                raise ApiError(E.UPLOAD_NOT_FOUND, f"{param}: no such upload", param=param)
            try:
                data = await self.storage.get_object(key)
            except ApiError as err:
                if err.kind is E.UPLOAD_NOT_FOUND:
                    raise ApiError(
                        E.UPLOAD_NOT_FOUND, f"{param}: no such upload", param=param
                    ) from err
                raise
        else:
            async with self.slots.slot(account_id):
                data, content_type = await self.fetcher.fetch(url, param)
            check_content_type(content_type, param)
        return await self.inspect(data, param, account_id)

    async def store(self, task_id: str, inputs: Inputs) -> tuple[list[str], str]:
        """Write the inputs beside the task; returns their keys for the job."""
        keys = [
            objects.input_key(task_id, f"ref{i}", ref.format)
            for i, ref in enumerate(inputs.references)
        ]
        writes = [
            self.storage.put_object(key, ref.data, ref.content_type)
            for key, ref in zip(keys, inputs.references, strict=True)
        ]
        mask_key = objects.input_key(task_id, "mask", "png") if inputs.mask else ""
        if inputs.mask is not None:
            writes.append(
                self.storage.put_object(mask_key, inputs.mask.data, inputs.mask.content_type)
            )
        await asyncio.gather(*writes)
        return keys, mask_key
