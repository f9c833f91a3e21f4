"""The README's state graphs are what ``doves graph`` draws now (``make graphs`` writes them again)."""

from __future__ import annotations

from readme_graphs import MARKER, README, ROOT, expected


def test_the_readme_diagrams_and_their_pictures_are_up_to_date() -> None:
    text = README.read_text()
    markers = MARKER.findall(text)
    assert len(markers) == 5, "the seed's machines, the traffic light, the order, the thumbnails, a store"
    readme, pictures = expected(text)
    assert readme == text, "a diagram in README.md is out of date: run make graphs"
    for path, svg in pictures.items():
        picture = ROOT / path
        assert picture.exists() and picture.read_text() == svg, f"{path} is out of date: run make graphs"
