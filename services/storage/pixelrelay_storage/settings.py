from __future__ import annotations

from pydantic import SecretStr

from pixelrelay.retention import RetentionSettings


class StorageSettings(RetentionSettings):
    grpc_port: int = 50052
    # Any S3 endpoint: MinIO, R2, AWS, or moto's server in development.
    s3_endpoint: str = "http://127.0.0.1:9000"
    # Where clients download from, if it differs (a CDN or public MinIO host).
    s3_public_endpoint: str = ""
    s3_access_key: SecretStr = SecretStr("pixelrelay-dev")
    s3_secret_key: SecretStr = SecretStr("pixelrelay-dev-secret")
    s3_region: str = "us-east-1"
    s3_bucket: str = "pixelrelay"
    # Create the bucket when it is missing, at start and whenever it disappears (an S3
    # endpoint that came back empty). False where the bucket is provisioned for us and our
    # credentials may not create one: storage then reports NOT_SERVING until it is back.
    s3_create_bucket: bool = True
    # Set the bucket's lifecycle rules at start (RESULT_TTL_DAYS, UPLOAD_TTL_DAYS, rounded
    # up to whole days), so the endpoint deletes expired objects itself. False where our
    # credentials may not change the bucket's configuration.
    s3_lifecycle_rules: bool = True
    # Seconds between sweeps that delete expired objects ourselves, for endpoints that do
    # not apply lifecycle rules (moto; some S3-compatible stores); 0 = no sweeps.
    object_sweep_interval: float = 3600.0
    # Verify the gateways' task capabilities (capabilities.py): required.
    task_capability_keys: SecretStr = SecretStr("")
