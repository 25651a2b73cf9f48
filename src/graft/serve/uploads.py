"""Reading uploaded images from a multipart/form-data body as it streams in, bounded.

The body is fed chunk by chunk to ``python-multipart``'s streaming parser (the one Starlette
uses), in a worker thread so that a hostile body never holds the event loop. Every limit is
enforced while parsing, so a request is refused as soon as it crosses one:

* the body's size (``max_bytes``; also checked against ``Content-Length`` before reading),
* the number of file parts (``max_files``) and of parts of any kind (``max_parts``: 20,000
  empty parts are refused after the first few dozen, not parsed to the end),
* the time the client takes to send it (``timeout_s``: a slow sender cannot hold a slot).

File contents stay in memory (``bytearray``); nothing is written to disk.

Example:
    >>> parser = UploadParser("multipart/form-data; boundary=b", max_files=2, max_bytes=1000)
    >>> parser.feed(b'--b\\r\\nContent-Disposition: form-data; name="f"; filename="a.png"\\r\\n'
    ...             b'\\r\\nPNG!\\r\\n--b--\\r\\n')
    >>> [(u.filename, bytes(u.data)) for u in parser.finish()]
    [('a.png', b'PNG!')]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect


class UploadError(Exception):
    """A request body that breaks a rule; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Upload:
    """One uploaded file: its name as the client gave it, and its bytes."""

    filename: str
    data: bytearray = field(default_factory=bytearray)


class UploadParser:
    """A streaming multipart/form-data parser that keeps only file parts, within limits.

    Args:
        content_type: The request's ``Content-Type`` header (with its boundary).
        max_files: Most file parts.
        max_bytes: Most bytes of body.
        max_parts: Most parts of any kind (default ``max_files + 16``).

    Raises:
        UploadError: 415 for a body that is not multipart/form-data.
    """

    def __init__(
        self,
        content_type: str,
        *,
        max_files: int,
        max_bytes: int,
        max_parts: int | None = None,
    ) -> None:
        from python_multipart.multipart import MultipartParser, parse_options_header

        kind, params = parse_options_header(content_type)
        if kind != b"multipart/form-data" or b"boundary" not in params:
            raise UploadError(
                415,
                "expected multipart/form-data with image files, "
                f"got {content_type or 'no content type'!r}",
            )
        self.max_files = max_files
        self.max_parts = max_parts if max_parts is not None else max_files + 16
        self.max_bytes = max_bytes
        self.received = 0
        self.files: list[Upload] = []
        self._parts = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._current: Upload | None = None
        self._parse_options = parse_options_header
        self._parser = MultipartParser(
            params[b"boundary"],
            {
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
            },
        )

    def feed(self, chunk: bytes) -> None:
        """Parse the next chunk of the body.

        Raises:
            UploadError: 413 past a limit, 400 for a malformed body.
        """
        from python_multipart.exceptions import FormParserError

        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise UploadError(
                413, f"request body exceeds the upload limit of {self.max_bytes:,} bytes"
            )
        try:
            self._parser.write(chunk)
        except FormParserError as err:
            raise UploadError(400, f"malformed multipart body ({err})") from err

    def finish(self) -> list[Upload]:
        """End the body; return the uploaded files in order."""
        from python_multipart.exceptions import FormParserError

        try:
            self._parser.finalize()
        except FormParserError as err:
            raise UploadError(400, f"malformed multipart body ({err})") from err
        return self.files

    # -- parser callbacks --------------------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > self.max_parts:
            raise UploadError(
                413,
                f"more than {self.max_parts} parts in one request; send at most "
                f"{self.max_files} files",
            )
        self._disposition = b""
        self._current = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = self._parse_options(self._disposition)
        if b"filename" not in options:
            return  # a plain form field: ignored
        if len(self.files) >= self.max_files:
            raise UploadError(
                413,
                f"more than {self.max_files} files in one request; the limit is {self.max_files}",
            )
        name = options[b"filename"].decode("utf-8", errors="replace")
        self._current = Upload(name)
        self.files.append(self._current)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current.data += data[start:end]


async def read_uploads(
    chunks: AsyncIterator[bytes],
    content_type: str,
    *,
    content_length: str | None,
    max_files: int,
    max_bytes: int,
    timeout_s: float,
) -> list[Upload]:
    """Read and parse a request body off the event loop, within every limit.

    Raises:
        UploadError: 413 (too large, too many files or parts), 415 (not multipart), 408 (not
            received within ``timeout_s``), 400 (malformed).
    """
    if content_length is not None and content_length.isdigit() and int(content_length) > max_bytes:
        raise UploadError(
            413,
            f"request body of {int(content_length):,} bytes exceeds the upload limit of "
            f"{max_bytes:,}",
        )
    parser = UploadParser(content_type, max_files=max_files, max_bytes=max_bytes)
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in chunks:
                if chunk:
                    await asyncio.to_thread(parser.feed, chunk)
    except TimeoutError as err:
        raise UploadError(
            408, f"the request body did not arrive within {timeout_s:g} s; send it faster"
        ) from err
    except ClientDisconnect as err:
        raise UploadError(400, "the client disconnected before sending the whole body") from err
    return parser.finish()
