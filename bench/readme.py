"""Writing a benchmark's section of ``bench/README.md`` between its markers.

Example:
    >>> replace_section("<!-- x:start -->", "<!-- x:end -->", "...", "## X")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def replace_section(start: str, end: str, block: str, heading: str) -> None:
    """Put ``block`` in bench/README.md in place of the text from ``start`` to ``end``.

    Args:
        start: The opening marker (or its beginning); ``block`` starts with it.
        end: The closing marker; ``block`` ends with it.
        block: The new section text, markers included.
        heading: Where the markers are not there yet, the block is appended under this heading.
    """
    text = README.read_text()
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n{block}\n"
    README.write_text(text)
