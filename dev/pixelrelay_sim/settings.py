from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class SimSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIM_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8090
    # Added to every answer; 0 makes benchmark figures the platform's own.
    latency_ms: int = 0
    # If set, requests must carry this key (as OpenAI checks its keys).
    api_key: str = ""
    log_level: str = "info"
    # Azure OpenAI's image deployments it serves (pixelrelay_sim/azure.py), "name=model,...":
    # any other deployment is answered 404 DeploymentNotFound.
    azure_deployments: str = "gpt-image-2=gpt-image-2"

    def deployments(self) -> dict[str, str]:
        pairs = (item.partition("=") for item in self.azure_deployments.split(",") if item)
        return {name.strip(): (model or name).strip() for name, _, model in pairs}
