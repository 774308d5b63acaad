"""Who may call each storage RPC (callers.py): the gateway writes uploads and reference
inputs and reads uploads back, deletes an account's objects and audits results; the dispatcher reads a
task's inputs and writes its results, each with the task's capability (capabilities.py,
checked by the servicer)."""

from __future__ import annotations

from pixelrelay.callers import DISPATCHER, GATEWAY, AccessPolicy

STORAGE_ACCESS = AccessPolicy(
    {
        "PutObject": frozenset({GATEWAY}),
        "GetObject": frozenset({GATEWAY, DISPATCHER}),
        "StoreImages": frozenset({DISPATCHER}),
        "Reannounce": frozenset({DISPATCHER}),
        "DeletePrefixes": frozenset({GATEWAY}),
        "FindMissing": frozenset({GATEWAY}),
    }
)
