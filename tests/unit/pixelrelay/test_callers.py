from __future__ import annotations

import grpc
import pytest

from pixelrelay.callers import (
    ADMIN,
    GATEWAY,
    AccessPolicy,
    TrustedCallers,
    credential_metadata,
    digest,
    new_credential,
)
from pixelrelay.errors import ApiError, E, ErrorKind, as_public, error_from_rpc, error_metadata

GATEWAY_CREDENTIAL = new_credential()
ADMIN_CREDENTIAL = new_credential()
TRUSTED = TrustedCallers.of({GATEWAY: GATEWAY_CREDENTIAL, ADMIN: ADMIN_CREDENTIAL})
POLICY = AccessPolicy({"TopUp": frozenset({ADMIN}), "Quote": frozenset({GATEWAY})})


def test_credentials_are_long_random_and_distinct() -> None:
    made = {new_credential() for _ in range(100)}
    assert len(made) == 100
    assert all(c.startswith("pxs_") and len(c) >= 44 for c in made)


def test_the_spec_round_trips_and_holds_no_credential() -> None:
    spec = TRUSTED.spec()
    assert GATEWAY_CREDENTIAL not in spec and ADMIN_CREDENTIAL not in spec
    assert f"gateway:{digest(GATEWAY_CREDENTIAL)}" in spec
    assert TrustedCallers.parse(spec) == TRUSTED
    assert TrustedCallers.parse("") == TrustedCallers({})


@pytest.mark.parametrize(
    "spec", ["gateway", "gateway:abc", ":" + "a" * 64, "gateway:" + "z" * 64, "gateway=" + "a" * 64]
)
def test_a_malformed_spec_is_refused_at_start(spec: str) -> None:
    with pytest.raises(ValueError, match="TRUSTED_CALLERS"):
        TrustedCallers.parse(spec)


@pytest.mark.parametrize(
    ("metadata", "caller"),
    [
        (credential_metadata(GATEWAY_CREDENTIAL), GATEWAY),
        (credential_metadata(ADMIN_CREDENTIAL), ADMIN),
        ((), None),
        (None, None),
        (credential_metadata(new_credential()), None),
        ((("authorization", GATEWAY_CREDENTIAL),), None),  # no Bearer scheme
        ((("authorization", f"Basic {GATEWAY_CREDENTIAL}"),), None),
        ((("x-other", f"Bearer {GATEWAY_CREDENTIAL}"),), None),
        ((("authorization", "Bearer "),), None),
    ],
)
def test_a_caller_is_identified_by_its_credential_only(
    metadata: tuple[tuple[str, str], ...] | None, caller: str | None
) -> None:
    assert TRUSTED.identify(metadata) == caller


def test_the_policy_refuses_unknown_callers_and_callers_without_the_right() -> None:
    POLICY.check("/pixelrelay.v1.Billing/TopUp", ADMIN)
    POLICY.check("/pixelrelay.v1.Billing/Quote", GATEWAY)
    for method, caller, kind in [
        ("/pixelrelay.v1.Billing/TopUp", None, E.SERVICE_CREDENTIAL_INVALID),
        ("/pixelrelay.v1.Billing/TopUp", GATEWAY, E.CALLER_NOT_ALLOWED),
        ("/pixelrelay.v1.Billing/NewMethod", ADMIN, E.CALLER_NOT_ALLOWED),  # unlisted: nobody
    ]:
        with pytest.raises(ApiError) as caught:
            POLICY.check(method, caller)
        assert caught.value.kind is kind


def test_health_checks_and_public_apis_need_no_service_credential() -> None:
    POLICY.check("/grpc.health.v1.Health/Check", None)
    AccessPolicy({}, public=True).check("/pixelrelay.v1.PublicApi/GetTask", None)


@pytest.mark.parametrize("kind", [E.SERVICE_CREDENTIAL_INVALID, E.CALLER_NOT_ALLOWED])
def test_a_refused_internal_call_is_our_fault_to_public_clients(kind: ErrorKind) -> None:
    """A 401 would make a client blame its own API key for our misconfiguration."""
    assert as_public(ApiError(kind)).kind is E.INTERNAL
    mine = ApiError(E.INVALID_API_KEY)
    assert as_public(mine) is mine


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,  # "Received RST_STREAM": the peer was killed mid-call
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
    ],
)
def test_a_failure_without_our_code_is_the_transport_and_retryable(
    code: grpc.StatusCode,
) -> None:
    failure = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone")
    assert error_from_rpc(failure).kind is E.UNAVAILABLE


def test_a_peers_own_error_keeps_its_code() -> None:
    meta = grpc.aio.Metadata(*error_metadata(ApiError(E.INTERNAL)))
    failure = grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), meta, "bug")
    assert error_from_rpc(failure).kind is E.INTERNAL  # a bug over there stays a 500 here
