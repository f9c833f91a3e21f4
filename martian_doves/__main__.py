"""``python -m martian_doves`` is the ``doves`` command."""

from __future__ import annotations

from martian_doves.cli import main

if __name__ == "__main__":
    main()
