"""Who may call each billing RPC (callers.py). The gateway serves the public API on behalf of
API keys; the dispatcher calls nothing (it learns a task's settlement from the bus); only
the operator's admin credential mints credits, creates or lists accounts or checks the
ledger."""

from __future__ import annotations

from pixelrelay.callers import ADMIN, GATEWAY, AccessPolicy

_GATEWAY = frozenset({GATEWAY})
_ADMIN = frozenset({ADMIN})
_BOTH = frozenset({GATEWAY, ADMIN})

BILLING_ACCESS = AccessPolicy(
    {
        "Authenticate": _GATEWAY,
        "Quote": _GATEWAY,
        "ReserveMany": _GATEWAY,
        "Release": _GATEWAY,  # its own submit, failed before the job was queued
        "TakeRequests": _GATEWAY,  # per-key request limits, shared by the replicas
        "GetAccount": _BOTH,
        "CreateApiKey": _BOTH,
        "ListApiKeys": _BOTH,
        "RevokeApiKey": _BOTH,
        "ListLedgerEntries": _BOTH,
        "CreateAccount": _ADMIN,
        "ListAccounts": _ADMIN,
        "TopUp": _ADMIN,
        "Adjust": _ADMIN,
        "CheckLedger": _ADMIN,
        "DeleteAccount": _ADMIN,
        # people's sign-in, for the gateway's Sessions service; the operator may issue a
        # reset link (a platform without a mailer)
        "CreateLogin": _GATEWAY,
        "SignIn": _GATEWAY,
        "SignOut": _GATEWAY,
        "GetLogin": _BOTH,
        "ChangePassword": _GATEWAY,
        "IssueLoginToken": _BOTH,
        "UseLoginToken": _GATEWAY,
        "CreateInvite": _ADMIN,
        "ListInvites": _ADMIN,
        "RevokeInvite": _ADMIN,
        "VerifyAdmin": _ADMIN,  # the gateway's own admin operations ask it first
    }
)
