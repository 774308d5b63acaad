"""The REST JSON shapes reAPI clients read, rendered from the public protos."""

from __future__ import annotations

from pixelrelay.errors import ApiError, E
from pixelrelay.v1 import common_pb2, public_api_pb2
from pixelrelay_gateway.http import translate


def task(status: str, **fields: object) -> public_api_pb2.Task:
    return public_api_pb2.Task(
        id="task_1",
        model="gpt-image-2",
        status=status,
        spec=common_pb2.ImageSpec(model="gpt-image-2", width=1024, height=1024, n=1),
        **fields,  # type: ignore[arg-type]
    )


def test_a_completed_task_lists_its_images() -> None:
    image = common_pb2.StoredImage(index=0, url="https://s3/x/0.png", format="png")
    done = translate.task_json(task("completed", images=[image]))
    assert done["status"] == "completed" and done["error"] is None
    assert done["output"]["image_urls"] == ["https://s3/x/0.png"]


def test_a_running_task_has_no_output_and_a_failed_one_its_error() -> None:
    assert translate.task_json(task("processing"))["output"] is None
    error = public_api_pb2.TaskError(code=70001, type="upstream_failed", message="try again")
    failed = translate.task_json(task("failed", error=error))
    assert failed["output"] is None
    assert failed["error"] == {"code": 70001, "type": "upstream_failed", "message": "try again"}


def test_lists_page_with_a_cursor_or_null() -> None:
    page = public_api_pb2.ListTasksResponse(tasks=[task("processing")], next_cursor="")
    listed = translate.task_list_json(page)
    assert [t["id"] for t in listed["data"]] == ["task_1"] and listed["next_cursor"] is None


def test_the_error_envelope() -> None:
    err = ApiError(E.INVALID_PARAMETER, "n must be 1-4", param="n")
    assert translate.error_json(err, "req_1") == {
        "error": {
            "code": 20003,
            "type": "invalid_parameter",
            "message": "n must be 1-4",
            "param": "n",
            "request_id": "req_1",
        }
    }
