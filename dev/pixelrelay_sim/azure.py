"""Azure OpenAI's image deployments, as the simulator answers them.

Azure serves the same Images API under its resource endpoint, one path per deployment:
POST /openai/deployments/{deployment}/images/generations?api-version=... (and /edits),
with the key in an ``api-key`` header. It refuses in its own words: 401 for a missing or
wrong key, 404 "Resource not found" without an api-version, 404 DeploymentNotFound for a
deployment the resource does not have. The deployment decides the model, not the body.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

from pixelrelay_sim.settings import SimSettings
from pixelrelay_sim.validation import OpenAIError

_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


class AzureError(OpenAIError):
    """Azure's error body: a code and a message, no type or param."""

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def deployed_model(request: Request, settings: SimSettings, deployment: str) -> str:
    """The model behind ``deployment``, or Azure's refusal of the request."""
    key = request.headers.get("api-key", "")
    if not key or (settings.api_key and key != settings.api_key):
        raise AzureError(
            401,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
            "to provide a valid key for an active subscription and use a correct regional "
            "API endpoint for your resource.",
            code="401",
        )
    version = request.query_params.get("api-version")
    if not version:
        raise AzureError(404, "Resource not found", code="404")
    if not _API_VERSION.match(version):
        raise AzureError(400, "API version not supported", code="BadRequest")
    model = settings.deployments().get(deployment)
    if model is None:
        raise AzureError(
            404,
            "The API deployment for this resource does not exist. If you created the "
            "deployment within the last 5 minutes, please wait a moment and try again.",
            code="DeploymentNotFound",
        )
    return model
