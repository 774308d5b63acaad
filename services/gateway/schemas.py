"""REST shapes (reAPI-compatible), used for request parsing and the OpenAPI spec.

They only fix JSON types; value rules live in validation.py, shared with gRPC.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]


class GenerationBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(description="gpt-image-2 (basic) or gpt-image-2-official (stable)")
    prompt: str | None = Field(None, description="1-4000 characters")
    size: str | None = Field(
        None, description="auto, a ratio such as 16:9, or WIDTHxHEIGHT (stable only); default 1:1"
    )
    resolution: str | None = Field(None, description="1k (default), 2k or 4k")
    n: Int32 | None = Field(None, description="images per task: 1 on basic, 1-4 on stable")
    image_urls: list[str] | None = Field(None, description="up to 16 reference image URLs")
    quality: str | None = Field(None, description="stable only: auto, low, medium, high")
    background: str | None = Field(None, description="stable only: auto, opaque, transparent")
    moderation: str | None = Field(None, description="stable only: auto, low")
    mask_url: str | None = Field(None, description="stable only: PNG mask for inpainting")
    output_format: str | None = Field(None, description="stable only: png, jpeg, webp")
    output_compression: Int32 | None = Field(None, description="stable only: 0-100, jpeg/webp")


class SubmitOut(BaseModel):
    id: str
    model: str
    status: str
    created_at: int


class ImageOut(BaseModel):
    url: str
    width: int
    height: int
    format: str
    content_type: str
    bytes: int
    sha256: str


class OutputOut(BaseModel):
    image_urls: list[str]
    images: list[ImageOut]


class TaskErrorOut(BaseModel):
    code: int
    type: str
    message: str


class ParamsOut(BaseModel):
    size: str
    resolution: str
    width: int
    height: int
    n: int
    quality: str | None = None
    background: str | None = None
    moderation: str | None = None
    output_format: str
    output_compression: int | None = None
    image_urls: list[str] | None = None
    mask_url: str | None = None


class CreditsOut(BaseModel):
    reserved: int
    charged: int
    price_id: str = Field(description="the price-list row the task was charged under")


class TimingsOut(BaseModel):
    queued_ms: int | None = None
    processing_ms: int | None = None
    total_ms: int | None = None


class TaskOut(BaseModel):
    id: str
    model: str
    status: str = Field(description="processing | completed | failed")
    created_at: int
    output: OutputOut | None = None
    error: TaskErrorOut | None = None
    params: ParamsOut
    credits: CreditsOut
    expires_at: int | None = Field(None, description="when the image URLs stop working")
    timings: TimingsOut


class TaskListOut(BaseModel):
    data: list[TaskOut]
    next_cursor: str | None


class EstimateOut(BaseModel):
    model: str
    credits: int
    unit_credits: int
    params: ParamsOut


class UploadOut(BaseModel):
    id: str
    url: str = Field(description="use in image_urls or mask_url")
    format: str
    width: int
    height: int
    bytes: int
    expires_at: int


class BalanceOut(BaseModel):
    account_id: str
    balance: int
    held: int


class ErrorBody(BaseModel):
    code: int
    type: str
    message: str
    param: str | None
    request_id: str


class ErrorOut(BaseModel):
    error: ErrorBody
