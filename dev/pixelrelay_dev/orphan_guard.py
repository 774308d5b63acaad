"""python -m pixelrelay_dev.orphan_guard LAUNCHER_PID COMMAND [ARG ...]

Becomes COMMAND (exec, same process) after asking Linux to send it SIGTERM when its parent,
the launcher, dies, however it dies: a SIGKILLed `make run` once left its children holding
every port. The request survives exec, so it covers nats-server and rclone as well as our
services. It is done here, not in a preexec_fn: that forces a plain fork() in a launcher
that runs gRPC, whose fork handlers then crashed a child at start now and then (SIGABRT,
"epoll_wait error: Bad file descriptor").
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def signal_me_when_my_parent_dies(sig: int) -> None:
    """Linux's parent-death signal for this process; elsewhere nothing."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


def main() -> None:
    launcher, command = int(sys.argv[1]), sys.argv[2:]
    signal_me_when_my_parent_dies(signal.SIGTERM)
    if os.getppid() != launcher:  # the launcher died before the request took effect
        sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
