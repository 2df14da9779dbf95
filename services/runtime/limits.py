"""Process limits a server needs that a shell's defaults do not give."""

import resource

import structlog

log = structlog.get_logger()


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files (RLIMIT_NOFILE) to its hard limit
    and return the new soft limit; child processes inherit it.

    Every WebSocket is a file descriptor, and many shells start with a soft limit of
    1,024, far below the 10,000 sockets one api process is sized for. The hard limit is
    the operator's (ulimit -Hn, the container runtime's nofile): this never exceeds it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-file limit", soft=soft, hard=hard, error=str(e))
    return soft
