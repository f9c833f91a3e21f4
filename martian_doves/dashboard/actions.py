"""What the dashboard can change: retry failed states, forget ended machines; only with its token.

The dashboard reads freely, but a ``POST`` that changes the store must carry the token
the dashboard printed when it started (``Authorization: Bearer TOKEN``), compared in
constant time; without it, or with another, the answer is 403 and nothing changes.
``--read-only`` has no token at all: every action is refused. A web page elsewhere
cannot act either: it does not know the token, its requests name another host (421)
or origin (403), and a JSON body with a custom header is never a simple cross-site
request a browser would send without asking first.
"""

from __future__ import annotations

import hmac
import json
import secrets

from martian_doves.dashboard.views import ViewError, inspectable
from martian_doves.model import JSONDict
from martian_doves.stores.base import AdminStore, Store

#: Largest request body an action reads.
MAX_BODY_BYTES = 64 * 1024
#: Most states one action names (a page of the list).
MAX_NAMES = 100
#: Longest state name accepted.
MAX_NAME_CHARS = 255


def new_token() -> str:
    """A fresh random token (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


class Actions:
    """Who may act: the holder of ``token``; nobody when it is None (``--read-only``).

    Args:
        token: the token actions need, or None for a read-only dashboard.
    """

    def __init__(self, token: str | None) -> None:
        self.token = token

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def authorize(self, authorization: str | None) -> None:
        """Let a request through if its ``Authorization`` header carries the token.

        Raises:
            ViewError: 403, the dashboard is read-only, or the token is missing or wrong.
        """
        if self.token is None:
            raise ViewError(403, "this dashboard is read-only (started with --read-only): nothing can be changed")
        scheme, _, given = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ViewError(403, "retry and delete need the token the dashboard printed when it started")
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise ViewError(403, "wrong token: use the one the dashboard printed when it started")


def names_of(body: bytes) -> list[str]:
    """The state names of an action's body, ``{"names": ["a.state", ...]}``.

    Raises:
        ViewError: 400, the body is not such an object (one line saying why).
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ViewError(400, 'the body must be JSON: {"names": ["a.state", ...]}') from None
    names = document.get("names") if isinstance(document, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ViewError(400, 'the body must be {"names": ["a.state", ...]} with at least one name')
    if len(names) > MAX_NAMES:
        raise ViewError(400, f"at most {MAX_NAMES} names at once, not {len(names)}")
    if any(len(name) > MAX_NAME_CHARS for name in names):
        raise ViewError(400, f"a state name is at most {MAX_NAME_CHARS} characters")
    return list(dict.fromkeys(names))


def retry(store: Store, names: list[str]) -> JSONDict:
    """Make the named failed states pending again with fresh attempts (``doves retry NAME...``).

    Returns:
        ``{"asked": n, "retried": m}``: names that were not failed states are skipped.

    Raises:
        ViewError: 501, this store cannot retry.
    """
    if not isinstance(store, AdminStore):
        raise ViewError(501, f"{store.description} cannot retry states")
    return {"asked": len(names), "retried": store.retry_failed(names)}


def forget(store: Store, names: list[str]) -> JSONDict:
    """Delete the machines of the named states, each whole, once it has ended (``InspectableStore.forget``).

    Returns:
        ``{"asked": n, "forgotten": m}``, ``m`` counting every state removed.
    """
    return {"asked": len(names), "forgotten": inspectable(store).forget(names)}
