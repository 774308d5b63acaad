"""The model names clients choose between. The gateway validates a request by its model
(gateway/core/validation.py); the dispatcher serves each from its channels (channels.yaml)."""

from __future__ import annotations

BASIC = "gpt-image-2"  # one image, flat price per resolution
STABLE = "gpt-image-2-official"  # up to 4 images, quality tiers, masks, transparency
PUBLIC_MODELS = (BASIC, STABLE)

# Shown by ListModels (OpenAI's GET /v1/models): when each was first served here.
RELEASED = {BASIC: 1_776_729_600, STABLE: 1_776_729_600}  # 2026-04-21, the snapshot's date
DESCRIPTIONS = {
    BASIC: "one image per task, flat price per resolution",
    STABLE: "up to 4 images, quality tiers, masks, transparent backgrounds, output formats",
}
