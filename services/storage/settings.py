from __future__ import annotations

from pydantic import SecretStr

from pixelrelay.settings import ServiceSettings


class StorageSettings(ServiceSettings):
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
    # How long result URLs stay valid (S3 presigning allows at most 7 days).
    url_ttl_seconds: int = 7 * 24 * 3600
