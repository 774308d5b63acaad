from __future__ import annotations

import base64

import pytest

from pixelrelay.sealing import PromptSealer, SealError, new_job_key

PROMPT = "a lighthouse at dawn, secret marker 7f3a"


def test_a_sealed_prompt_opens_only_for_its_task() -> None:
    sealer = PromptSealer.parse(new_job_key())
    key_id, sealed = sealer.seal(PROMPT, "task_a")
    assert PROMPT.encode() not in sealed and b"lighthouse" not in sealed
    assert sealer.open(key_id, sealed, "task_a") == PROMPT
    with pytest.raises(SealError, match="does not open"):
        sealer.open(key_id, sealed, "task_b")  # moved to another task
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealError, match="does not open"):
        sealer.open(key_id, tampered, "task_a")


def test_the_same_prompt_seals_differently_each_time() -> None:
    sealer = PromptSealer.parse(new_job_key())
    assert sealer.seal(PROMPT, "t")[1] != sealer.seal(PROMPT, "t")[1]


def test_rotation_seals_with_the_first_key_and_opens_with_any() -> None:
    old, new = new_job_key(), new_job_key()
    before = PromptSealer.parse(old)
    old_id, sealed = before.seal(PROMPT, "t")
    during = PromptSealer.parse(f"{new},{old}")
    assert during.seal(PROMPT, "t")[0] == new.split(":")[0]
    assert during.open(old_id, sealed, "t") == PROMPT
    after = PromptSealer.parse(new)
    with pytest.raises(SealError, match="no key"):
        after.open(old_id, sealed, "t")


@pytest.mark.parametrize(
    "spec",
    ["", "k1", "k1:not-base64!", f"k1:{base64.b64encode(b'short').decode()}", ":" + "A" * 44],
)
def test_bad_job_keys_stop_the_start(spec: str) -> None:
    with pytest.raises(ValueError, match="JOB_KEYS"):
        PromptSealer.parse(spec)
