"""How long the platform keeps what clients gave it and what it made for them.

Storage enforces the object lifetimes (S3 lifecycle rules, and its own sweeper where the
endpoint ignores them); the gateway shows them (a task's ``expired_at``, its URLs gone)
and deletes task records past their retention. Both read the same settings, so the two
always agree. Days may be fractional: tests use lifetimes of seconds.
"""

from __future__ import annotations

from pydantic import Field

from pixelrelay.settings import ServiceSettings

DAY_SECONDS = 86_400
# S3 signs a download URL for at most seven days.
MAX_URL_SECONDS = 7 * DAY_SECONDS


class RetentionSettings(ServiceSettings):
    # Results and a task's stored inputs (references, mask): deleted this long after the
    # task was stored.
    result_ttl_days: float = Field(default=7.0, gt=0)
    # Uploads: deleted this long after they were uploaded.
    upload_ttl_days: float = Field(default=7.0, gt=0)

    @property
    def result_ttl_seconds(self) -> int:
        return max(1, round(self.result_ttl_days * DAY_SECONDS))

    @property
    def upload_ttl_seconds(self) -> int:
        return max(1, round(self.upload_ttl_days * DAY_SECONDS))


def url_seconds(ttl_seconds: int) -> int:
    """A download URL's lifetime for an object kept ``ttl_seconds``: no longer than the
    object, nor than S3 allows."""
    return min(ttl_seconds, MAX_URL_SECONDS)
