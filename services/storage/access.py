"""Who may call each storage RPC (callers.py): the gateway writes uploads and reference
inputs and reads uploads back, and deletes an account's objects; the dispatcher reads inputs and writes results."""

from __future__ import annotations

from pixelrelay.callers import DISPATCHER, GATEWAY, AccessPolicy

STORAGE_ACCESS = AccessPolicy(
    {
        "PutObject": frozenset({GATEWAY}),
        "GetObject": frozenset({GATEWAY, DISPATCHER}),
        "StoreImages": frozenset({DISPATCHER}),
        "Reannounce": frozenset({DISPATCHER}),
        "DeletePrefixes": frozenset({GATEWAY}),
    }
)
