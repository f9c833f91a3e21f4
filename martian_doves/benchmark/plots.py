"""The curves of ``doves bench --scale`` as PNG pictures, when matplotlib is installed (extra ``bench``)."""

from __future__ import annotations

from typing import Any


def available() -> bool:
    """Whether matplotlib can be imported (``pip install 'martian-doves[bench]'``)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot(curve: dict[str, Any], path: str, title: str) -> None:
    """Draw ``curve`` (from ``scale.memory_curve`` or ``scale.pending_curve``) into the PNG file ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axes = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    points = curve["points"]
    if curve["scale"] == "memory":
        xs = [p["transitions"] for p in points]
        for worker in range(len(points[0]["rss_mb"]) if points else 0):
            axes.plot(xs, [p["rss_mb"][worker] for p in points], marker=".", label=f"worker {worker + 1}")
        axes.set_xlabel("transitions processed")
        axes.set_ylabel("resident memory (MB)")
        axes.set_ylim(bottom=0)
        rated = [(p["transitions"], p["transitions_per_second"]) for p in points
                 if p.get("transitions_per_second") is not None]
        if rated:
            rate = axes.twinx()
            rate.plot([x for x, _ in rated], [y for _, y in rated], color="tab:gray", linestyle="--",
                      label="transitions/s")
            rate.set_ylabel("transitions/s since the sample before")
            rate.set_ylim(bottom=0)
        figure.legend(loc="lower right", bbox_to_anchor=(0.85, 0.2))
    else:
        xs = [p["pending"] for p in points]
        axes.plot(xs, [p["transitions_per_second"] for p in points], marker="o", label="transitions/s")
        axes.set_xscale("log")
        axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axes.set_xlabel("states pending at start")
        axes.set_ylabel("transitions/s")
        axes.set_ylim(bottom=0)
        seconds = axes.twinx()
        seconds.plot(xs, [p["first_commit_seconds"] for p in points], marker="s", color="tab:red",
                     label="first commit (s)")
        seconds.set_ylabel("first commit after start (s)")
        seconds.set_ylim(bottom=0)
        figure.legend(loc="lower right", bbox_to_anchor=(0.85, 0.2))
    axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    axes.set_title(title.replace(", ", "\n", 1), fontsize=10)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
