"""What the folder store's own small files say: claims, done markers, registrations.

Each is read by ``layout.Layout``; a field a person's edit left wrong reads as its
default, never as an error.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from martian_doves.model import JSONDict

#: Separates a state name from its claim token in ``in_progress/``.
TOKEN_SEP = "@"


def new_token() -> str:
    """A fresh fencing token for a claim's name."""
    return secrets.token_hex(8)


def split_claim(entry: str) -> tuple[str, str]:
    """``x.state@TOKEN`` (an entry of ``in_progress/``) → ``("x.state", "TOKEN")``; no token (the
    seed's own flag, ``x.state``) → ``("x.state", "")``."""
    name, sep, token = entry.rpartition(TOKEN_SEP)
    return (name, token) if sep else (entry, "")


def as_count(value: object) -> int:
    """A count from one of our JSON files; 0 for anything a person's edit left there."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def as_time(value: object) -> float | None:
    """A time (epoch seconds) or duration from one of our JSON files; None if it is none."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ClaimRecord:
    """What a claim file says (and a done marker, which is the claim file moved)."""

    #: The worker holding the claim; ``?`` when the file does not say.
    worker: str | None
    #: Failed attempts so far (carried over from the hint on a retried state).
    attempts: int = 0
    #: Each failed attempt's error, oldest first.
    errors: tuple[str, ...] = ()
    #: The claim's fencing token (it is in the file name too).
    token: str | None = None
    #: When the claim was taken, epoch seconds.
    claimed_at: float | None = None
    #: Retries the handler asked for so far (``raise Retry``).
    retries: int = 0
    #: The successor this commit adopted: a file at its successor's name that names no
    #: parent (the seed's own successor); it is how ``history`` joins the two.
    adopted: str | None = None

    def encode(self) -> bytes:
        found: dict[str, object] = {"worker": self.worker, "token": self.token, "attempts": self.attempts,
                                    "errors": list(self.errors), "claimed_at": self.claimed_at,
                                    "retries": self.retries}
        if self.adopted is not None:
            found["adopted"] = self.adopted
        return json.dumps(found).encode()


def carried(attempts: int, errors: Sequence[str], retries: int) -> bytes:
    """What a hint carries to the next claim: failed attempts and requested retries (empty: none)."""
    if not (attempts or retries):
        return b""
    found: dict[str, object] = {"attempts": attempts, "errors": list(errors)}
    if retries:
        found["retries"] = retries
    return json.dumps(found).encode()


def claim_record(info: JSONDict) -> ClaimRecord:
    """A claim file's, hint's or done marker's contents as a ``ClaimRecord``; defaults for what is
    missing or not of its kind (worker ``?``, no attempts, no errors)."""
    errors = info.get("errors", [])
    token = info.get("token")
    adopted = info.get("adopted")
    return ClaimRecord(str(info.get("worker", "?")), as_count(info.get("attempts", 0)),
                       tuple(str(e) for e in errors) if isinstance(errors, list) else (),
                       token if isinstance(token, str) else None, as_time(info.get("claimed_at")),
                       as_count(info.get("retries", 0)), adopted if isinstance(adopted, str) else None)


@dataclass(frozen=True)
class Registration:
    """A worker's registration in ``workers/``, as far as it is readable."""

    #: The worker's name (the file's name).
    name: str
    #: Last stamp (heartbeat, or the semaphore's update phase), epoch seconds.
    seen_at: float
    host: str
    pid: int
    #: The mode the worker runs in; None if the file does not say.
    mode: str | None
    #: How long after ``seen_at`` the worker counts as alive; None if the file does not say.
    liveness_seconds: float | None
    #: When the worker registered, epoch seconds; None if the file does not say.
    started_at: float | None = None
    #: Why it is known dead (its supervisor said so); None while nobody has.
    ended: str | None = None
    #: The state names it has machines for; None: every state.
    machines: frozenset[str] | None = None
