"""Who owns a job, and whether that owner is still alive: identity and heartbeat, judged in database time.

A job records its owner (:class:`~opsconsole.core.processes.Owner`: host, boot id, pid and the pid's start
time, or a worker id) and a heartbeat the owner renews in the store's clock while the run goes. Whether a
``running`` job is dead is then decided without guessing:

* its owner is on **this** host and boot, and that exact process (pid *and* start time) is gone: dead at
  once (a crash here is repaired by the next command, without waiting);
* its owner is on **another** host (or in another container): only a heartbeat older than
  :data:`HEARTBEAT_TTL_S` in database time makes it dead — a second console or replica on the same
  PostgreSQL never marks someone else's live run ``interrupted``;
* a row written before owners existed (``owner`` NULL) is judged as before: by its pid, on this host.

The columns are added by migration 0005 (``jobs.owner``, ``jobs.heartbeat_at``, ``leases.owner``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from opsconsole.core.clock import utc
from opsconsole.core.processes import Owner

#: How often an owner renews the heartbeat of each of its running jobs.
HEARTBEAT_EVERY_S = 5.0
#: A job whose heartbeat is older than this (database time) is dead, wherever its owner was.
HEARTBEAT_TTL_S = 30.0


def job_owner_dead(
    owner_token: str | None,
    heartbeat_at: datetime | None,
    *,
    now: datetime,
    legacy_pid: int | None = None,
    ttl_s: float = HEARTBEAT_TTL_S,
    this_owner: Owner | None = None,
) -> bool:
    """Whether a job's owner is provably gone (see the module's rules). ``now`` is database time.

    The caller has already set aside the jobs this process is running: a job owned by this process (or,
    written before owners, by its pid) that it is not running is dead.
    """
    me = this_owner or Owner.current()
    owner = Owner.parse(owner_token)
    if owner is not None:
        if owner == me:
            return True  # this very process, and the caller found no run of it going here
        here = owner.alive_here(host=me.host, boot=me.boot)
        if here is not None:
            return not here
        beat = utc(heartbeat_at)
        return beat is None or beat + timedelta(seconds=ttl_s) < now
    # written before owners were recorded: the pid, on this host (as before)
    from opsconsole.core.processes import pid_alive  # noqa: PLC0415

    return legacy_pid is None or legacy_pid == me.pid or not pid_alive(legacy_pid)
