"""python -m pixelrelay_sim: serve the simulated OpenAI Images API."""

from __future__ import annotations

import uvicorn

from pixelrelay.logging import configure_logging
from pixelrelay_sim.app import create_app
from pixelrelay_sim.settings import SimSettings


def main() -> None:
    settings = SimSettings()
    configure_logging("pixelrelay_sim", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
