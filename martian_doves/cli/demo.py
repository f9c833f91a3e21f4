"""``doves demo``: the packaged examples on a fresh folder store, run with several workers."""

from __future__ import annotations

import importlib.resources
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from martian_doves import api, codec, report
from martian_doves.cli.options import fields_options, option, options_from
from martian_doves.cli.output import show
from martian_doves.cli.running import display_options, supervise
from martian_doves.config import LogOptions, ProgressOptions, StoreConfig, SupervisorOptions, WorkerOptions
from martian_doves.errors import ConfigError, DovesError
from martian_doves.model import State
from martian_doves.supervisor import WorkerSpec

#: ``tick_seconds`` written into the demo's payloads unless ``--seed-timing``.
DEMO_FAST_TICK_SECONDS = 0.2
#: Worker processes the demo runs unless ``--workers`` says otherwise.
DEMO_WORKERS = 4


def _demo_folder(directory: str | None) -> Path:
    """A new, empty folder for the demo: ``--dir``, else ``./doves-demo-<time>``, else a temp dir."""
    if directory:
        path = Path(directory)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(f"--dir {directory}: must be a new or empty folder")
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(100):
        path = Path.cwd() / (f"doves-demo-{stamp}" + (f"-{attempt}" if attempt else ""))
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError:
            break  # the current folder is not writable
    return Path(tempfile.mkdtemp(prefix="doves-demo-"))


def _example_states(fast: bool) -> list[State]:
    """The packaged examples, with a short ``tick_seconds`` in each payload when ``fast``."""
    states = []
    examples = importlib.resources.files("martian_doves") / "examples"
    for entry in sorted(examples.iterdir(), key=lambda e: e.name):
        if not codec.is_state_file_name(entry.name):
            continue
        state = codec.decode(entry.read_bytes(), entry.name)
        payload = {**state.payload, "tick_seconds": DEMO_FAST_TICK_SECONDS} if fast else state.payload
        states.append(State(entry.name, state.state, payload))
    return states


#: The machine model's demo: an order that is paid (the demo sends its event), one that is not
#: (its wait times out), and a batch of child machines joined at the end.
PAID_ORDER = "order-1.state"
#: Seconds the demo waits before it sends the paid order its ``payment`` event.
PAYMENT_AFTER_SECONDS = 1.0


def _machine_model_states(fast: bool) -> list[State]:
    """The shop orders and the thumbnail batch (``builtin.py``), with short waits when ``fast``."""
    tick = {"tick_seconds": DEMO_FAST_TICK_SECONDS} if fast else {}
    unpaid_within = 3 if fast else 20
    return [
        State(PAID_ORDER, "shop-order-placed", {"order": "1", "pay_within_seconds": 60, "ship_after_seconds": 1,
                                                 **tick}),
        State("order-2.state", "shop-order-placed", {"order": "2", "pay_within_seconds": unpaid_within, **tick}),
        State("thumbnails.state", "thumbnails", {"images": ["cat.jpg", "dog.jpg", "owl.jpg"], **tick}),
    ]


def _send_payment_later(config: StoreConfig) -> threading.Thread:
    """Send ``payment`` to the paid order from another thread while the workers run (as a shop would)."""
    def send() -> None:
        time.sleep(PAYMENT_AFTER_SECONDS)
        try:
            with api.opened(config) as store:
                store.send(PAID_ORDER, "payment", {"amount": 42, "card": "demo"})
            click.echo(f"Sent the event payment to {PAID_ORDER} (as `doves send STORE {PAID_ORDER} payment` does)",
                       err=True)
        except (DovesError, OSError) as e:  # the demo goes on; the order is then cancelled
            click.echo(f"Could not send payment to {PAID_ORDER}: {e}", err=True)

    thread = threading.Thread(target=send, name="demo-payment", daemon=True)
    thread.start()
    return thread


def _where_to_look(folder: Path) -> None:
    hints = [
        (f"ls {folder}", "every state file, successors included (countdown.state-1 ...)"),
        (f"ls {folder}/done", "one marker per finished state: who ran it"),
        (f"doves status {folder}", "this summary again"),
        (f"doves history {folder} countdown.state", "one machine's lineage, worker by worker"),
        (f"doves history {folder} {PAID_ORDER}", "an order that waited for its payment event, then a timer"),
        (f"ls {folder}/mailboxes/{PAID_ORDER}", "the events sent to it (00..01@order-1.state-1: taken by that wait)"),
        (f"doves history {folder} thumbnails.state", "a fan-out: three child machines, then their join"),
        (f"doves reset {folder} --successors", f"start over, then: doves run {folder} --workers {DEMO_WORKERS}"),
    ]
    click.echo("\nWhere to look:")
    width = max(len(command) for command, _ in hints)
    for command, meaning in hints:
        click.echo(f"  {command:<{width}}  # {meaning}")


@click.command()
@fields_options(SupervisorOptions, only=("workers",), defaults={"workers": DEMO_WORKERS},
                help={"workers": "Worker processes to run."})
@option("--dir", "directory", env="DOVES_DEMO_DIR", type=click.Path(file_okay=False), default=None,
        show_default="./doves-demo-<time>", help="Folder for the demo store (new or empty).")
@option("--fast/--seed-timing", env="DOVES_DEMO_FAST", default=True,
        help=f"--fast sets every tick to {DEMO_FAST_TICK_SECONDS:g} s so the demo takes seconds; --seed-timing "
             "keeps the seed's 1 s per tick and 10 s per slow-countdown tick (about a minute).")
@display_options
def demo(workers: int, directory: str | None, fast: bool, **params: Any) -> int:
    """See it work: copy the packaged example states into a fresh store and run them.

    Runs the seed's examples (three simple machines, a countdown, a slow countdown), a
    traffic light, two shop orders (one waits for the payment event the demo sends, then
    ships after a timer; the other is never paid and is cancelled when its wait times out)
    and a batch of thumbnails made by child machines and joined at the end, with several
    workers; shows their output and progress, then the store's status and where to look next.
    """
    folder = _demo_folder(directory).resolve()
    states = _example_states(fast) + _machine_model_states(fast)
    logs = options_from(LogOptions, params)
    spec = WorkerSpec(store=StoreConfig.of(str(folder)), worker=WorkerOptions(name="set-in-each-process"),
                      log_level=logs.log_level.lower(), log_format=logs.log_format)
    with api.opened(spec.store, existing=False) as store:
        store.submit(states)
    click.echo(f"Demo store: {folder}")
    click.echo(f"Copied {len(states)} example states into it: {', '.join(s.name for s in states)}")
    click.echo(f"Running them with {workers} workers"
               + (f" ({DEMO_FAST_TICK_SECONDS:g} s per tick; --seed-timing for the original timing)" if fast
                  else " (seed timing: about a minute)") + " ...")
    _send_payment_later(spec.store)
    code = supervise(spec, SupervisorOptions(workers=workers).validate(), options_from(ProgressOptions, params),
                     title="doves demo")
    with api.opened(spec.store) as store:
        result = store.status()
    click.echo("")
    show(False, None, report.status_renderable(result), report.status_text(result))
    _where_to_look(folder)
    return code
