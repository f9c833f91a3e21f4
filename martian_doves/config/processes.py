"""How worker processes, their supervisor and the commands around them run and show what they do."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Self

from martian_doves.errors import ConfigError
from martian_doves.logs import FORMATS, LEVELS
from martian_doves.retry import RetryPolicy
from martian_doves.settings import Checked, setting

#: Default limit on one tick: generous (the seed's slowest tick is 10 s), as dramatiq's 10 minutes.
TICK_TIMEOUT_SECONDS = 600.0
#: Longest heartbeat interval chosen when none is given (shorter for leases under 4 times it).
HEARTBEAT_SECONDS = 2.0
#: Shortest token the dashboard accepts (``--token``): guessing one must be hopeless.
MIN_TOKEN_CHARS = 16


def _default_worker_name() -> str:
    return f"{os.uname().nodename}-{os.getpid()}"


@dataclass(frozen=True)
class WorkerOptions(Checked):
    """How one worker process behaves. Every field but ``name`` and ``retry`` has a ``doves run`` flag."""

    #: Unique among the store's workers; ``doves run`` uses ``--name``-<pid>.
    name: str = field(default_factory=_default_worker_name)
    concurrency: int = setting(
        1, "Ticks each worker process runs at once (threads). Raise it for machines that wait on I/O.",
        short="-c", minimum=1)
    #: None: adapt (``Worker``), where a store commits a claimed batch at once (PostgreSQL);
    #: one state per request elsewhere.
    prefetch: int | None = setting(
        None, "States a worker claims per request: more saves round trips, fewer balances slow ticks.",
        minimum=1, show_default="adapt: on PostgreSQL up to 64 while ticks take under 5 ms, 1 while they are "
                                "slower; 1 on a folder")
    #: None: ``HEARTBEAT_SECONDS``, or a quarter of the store's lease if that is shorter
    #: (see ``fitted_to``, which ``Worker`` applies).
    heartbeat_seconds: float | None = setting(
        None, "How often a worker renews its leases; at most half of --lease-seconds.",
        minimum=0, above_minimum=True, show_default=f"{HEARTBEAT_SECONDS:g}, or a quarter of --lease-seconds "
                                                    "if shorter")
    poll_seconds: float = setting(
        1.0, "Longest sleep between looks for work when no wake-up arrives (e.g. on NFS).",
        minimum=0, above_minimum=True)
    exit_when_finished: bool = setting(
        True, "Keep running when nothing is left, picking up new states, until SIGTERM or Ctrl-C.",
        flag="--watch", negate=True)
    #: A thread cannot be killed, so the process running an overrun tick is replaced. On by
    #: default: a state whose tick never ends (``tick_seconds: 1e9``) must not hold a worker
    #: for ever. None or 0: no limit (only on request).
    tick_timeout_seconds: float | None = setting(
        TICK_TIMEOUT_SECONDS, "A tick running longer is retried (or failed, reason tick_timeout) and its worker "
                              "process replaced. 0: no limit.",
        flag="--tick-timeout", metavar="SECONDS", minimum=0)
    shutdown_grace_seconds: float = setting(
        10.0, "On SIGTERM/Ctrl-C, how long in-flight ticks may finish before their states are released.",
        minimum=0)
    chain: bool = setting(
        True, "Let a worker follow a machine's lineage itself (saves a claim per tick); --no-chain spreads "
              "every successor over all workers.")
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_requested_retries: int = setting(
        100, "Retries a handler may ask for (raise Retry) per state before the state fails with retry_limit; "
             "they are not failed attempts.", minimum=0)
    fail_unknown_states: bool = setting(
        False, "Claim states that no loaded machine handles and fail them with unknown_state. Without it they "
               "wait for a worker that has their machine (another host, a later deploy).")

    def validate(self) -> Self:
        """Return ``self`` if every value, those of ``retry`` included, is usable.

        Raises:
            ConfigError: a value is out of range (one line, naming the flag).
        """
        super().validate()
        self.retry.validate()
        return self

    def fitted_to(self, lease_seconds: float) -> WorkerOptions:
        """These options with a heartbeat that keeps leases of ``lease_seconds`` alive.

        A heartbeat slower than half the lease lets a healthy worker's claim expire and
        its tick run twice, so an unset heartbeat becomes ``HEARTBEAT_SECONDS`` or a
        quarter of the lease, whichever is shorter, and a given one must fit.

        Raises:
            ConfigError: ``heartbeat_seconds`` is more than half of ``lease_seconds``.
        """
        heartbeat = self.heartbeat_seconds
        if heartbeat is None:
            return dataclasses.replace(self, heartbeat_seconds=min(HEARTBEAT_SECONDS, lease_seconds / 4))
        if heartbeat > lease_seconds / 2:
            raise ConfigError(f"--heartbeat-seconds {heartbeat:g} must be at most half of the store's lease "
                              f"({lease_seconds:g} s, from --lease-seconds, the store URL or the default)")
        return self


@dataclass(frozen=True)
class SupervisorOptions(Checked):
    """How the supervisor runs its workers."""

    workers: int = setting(
        1, "Worker processes to run on this host; a dead one is replaced.", short="-w", minimum=1, maximum=1024)
    stop_margin_seconds: float = setting(
        5.0, "Time beyond the workers' shutdown grace before stragglers are killed.", minimum=0, cli=False)
    respawn_base_seconds: float = setting(
        0.5, "First delay before a dead worker is replaced; doubles per quick death of the same slot.",
        minimum=0, cli=False)
    respawn_max_seconds: float = setting(
        30.0, "Upper bound of the respawn delay (a dead worker is replaced however often it dies).",
        minimum=0, cli=False)
    min_uptime_seconds: float = setting(
        10.0, "A worker that dies sooner than this after its start doubles the delay; one that ran longer "
              "starts the backoff over.", minimum=0, cli=False)
    status_seconds: float = setting(
        1.0, "How often store.status() is sampled for the progress display and metrics.",
        minimum=0, above_minimum=True, cli=False)
    metrics_port: int | None = setting(
        None, "Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port, logged).",
        metavar="PORT", minimum=0, maximum=65535, show_default="off")
    metrics_host: str = setting(
        "0.0.0.0", "Address the metrics endpoint listens on (127.0.0.1 keeps it to this host).", metavar="HOST")

@dataclass(frozen=True)
class LogOptions(Checked):
    """How a command and its workers log."""

    log_level: str = setting("info", "Least important messages shown; 'info' shows the machines' output.",
                             choices=LEVELS)
    log_format: str = setting(
        "text", "'text' for people, 'json' for one JSON object per line (time, level, logger, message, worker, "
                "action, ...).", choices=FORMATS)

@dataclass(frozen=True)
class ProgressOptions(Checked):
    """How ``doves run`` shows its progress."""

    progress: bool = setting(
        True, "Show progress: a live line on a terminal, a log line every --progress-seconds otherwise.")
    progress_seconds: float = setting(
        5.0, "Interval of the progress log lines when the output is not a terminal.",
        minimum=0, above_minimum=True)

@dataclass(frozen=True)
class DashboardOptions(Checked):
    """Where ``doves dashboard`` serves and how often it reads the store."""

    #: The page shows state names and failure messages: local unless asked otherwise.
    host: str = setting(
        "127.0.0.1", "Address to listen on. The page shows state names and failure messages: --host 0.0.0.0 "
                     "exposes it to every network this host is on.", metavar="HOST", env="DOVES_DASHBOARD_HOST")
    port: int = setting(8080, "Port to listen on (0: any free port, logged).", metavar="PORT", minimum=0,
                        maximum=65535, env="DOVES_DASHBOARD_PORT")
    refresh_seconds: float = setting(
        2.0, "How often the store's status is read and the page updates; a slow count waits nine times its "
             "own duration, so the store is never busy counting more than a tenth of the time.",
        metavar="SECONDS", minimum=0.1, env="DOVES_DASHBOARD_REFRESH_SECONDS")
    #: Guards against DNS rebinding: a page elsewhere cannot read this one under its own name.
    allowed_hosts: tuple[str, ...] = setting(
        (), "Also answer requests for this host name (repeatable; the variable takes several, separated by "
            "spaces). Only the --host address, localhost, 127.0.0.1 and [::1] are answered otherwise (any "
            "address with --host 0.0.0.0), so no web page elsewhere can read this one by DNS rebinding.",
        flag="--allow-host", metavar="NAME", env="DOVES_DASHBOARD_ALLOW_HOST")
    #: Retry and delete change the store: only whoever holds this token may ask for them.
    token: str | None = setting(
        None, "The token retry and delete need (at least 16 characters; prefer the variable to the flag, "
              "which other users can see in the process list). Unset: a new one is made and printed at "
              "start-up. Without it the page is read-only.", metavar="TOKEN", env="DOVES_DASHBOARD_TOKEN",
        show_default="a new one, printed")
    #: No actions at all, whatever the token.
    read_only: bool = setting(False, "Refuse every action (retry, delete) and make no token.",
                              env="DOVES_DASHBOARD_READ_ONLY")

    def validate(self) -> Self:
        """Also refuse a token short enough to guess.

        Raises:
            ConfigError: a value is out of range, or ``token`` is shorter than ``MIN_TOKEN_CHARS``.
        """
        super().validate()
        if self.token is not None and len(self.token.strip()) < MIN_TOKEN_CHARS:
            raise ConfigError(f"--token must be at least {MIN_TOKEN_CHARS} characters (a new one is made when "
                              "it is not given)")
        return self
