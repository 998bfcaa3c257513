"""Who holds a purchase: a process named by host, pid and start time."""

from __future__ import annotations

import os
import socket

__all__ = ["default_owner", "process_alive"]


def _start_and_state(pid: int) -> tuple[str, str] | None:
    """Return a process's start time (clock ticks since boot) and state letter.

    None where ``/proc`` cannot tell (another OS, or the process is gone).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses
    # itself: the fields we want come after the last ")".
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20:  # pragma: no cover - a kernel we do not know
        return None
    return fields[19], fields[0]


def default_owner() -> str:
    """Name this process as a journal owner: ``host:pid:start``.

    The start time tells a live process from a new one that reuses the pid
    of a dead one. It is ``-`` where ``/proc`` is not available; then only
    the pid is checked.
    """
    pid = os.getpid()
    found = _start_and_state(pid)
    start = "-" if found is None else found[0]
    return f"{socket.gethostname()}:{pid}:{start}"


def process_alive(owner: str) -> bool:
    """Tell whether the process named `owner` may still run.

    Only a process of this host, named as `default_owner` names it, can be
    judged dead: it is dead when its pid runs no process, when the process
    with that pid started at another time (the pid was reused), or when it
    is a zombie (killed, not yet reaped). Anything else counts as alive: a
    journal never takes a purchase from an owner it cannot judge.
    """
    host, sep, rest = owner.partition(":")
    pid_text, sep2, start = rest.partition(":")
    if not sep or not sep2 or host != socket.gethostname() or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    found = _start_and_state(pid)
    if found is None:
        return True
    started, state = found
    if state in ("Z", "X"):
        return False
    return start in ("-", started)
