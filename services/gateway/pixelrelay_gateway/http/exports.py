"""An account export as an HTTP download (pixelrelay/export.py writes the file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.responses import Response, StreamingResponse

from pixelrelay import export
from pixelrelay.v1 import public_api_pb2

ExportFormat = Annotated[
    Literal["json", "csv"],
    Query(description="json: one document with the account, tasks and ledger; csv: one part"),
]
ExportPart = Annotated[
    Literal["tasks", "ledger"], Query(description="which part a CSV holds (json: both)")
]

# For the OpenAPI spec: what a 200 carries.
EXPORT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the export, as a download",
        "content": {"application/json": {}, "text/csv": {}},
    }
}


async def export_download(
    items: AsyncIterator[public_api_pb2.ExportItem], name: str, fmt: str, part: str
) -> Response:
    """An error (a refused credential, an unknown account) is an ordinary error response,
    not a broken download (``export.started``)."""
    everything = await export.started(items)
    filename = f"{name}.json" if fmt == "json" else f"{name}-{part}.csv"
    return StreamingResponse(
        export.render(everything, fmt, part),
        media_type="application/json" if fmt == "json" else "text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
