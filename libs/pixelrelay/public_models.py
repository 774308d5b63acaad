"""The model names clients choose between. The gateway validates a request by its model
(gateway/core/validation.py); the dispatcher serves each from its channels (channels.yaml)."""

from __future__ import annotations

BASIC = "gpt-image-2"  # one image, flat price per resolution
STABLE = "gpt-image-2-official"  # up to 4 images, quality tiers, masks, transparency
PUBLIC_MODELS = (BASIC, STABLE)
