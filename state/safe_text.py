"""Text that is safe to print: database passwords masked, terminal control characters escaped.

One place for both, so the CLI, `--once` and the dashboard show the same thing. A prompt or a
message comes from users and agents; printed raw, `\x1b]52;...` could write the clipboard and
`\x1b[2J` clear the screen. A database URL's password must never reach a terminal, a log or a
`--json` document.
"""

from __future__ import annotations

import re

# scheme://user:PASSWORD@host — the password is everything up to the last '@' of the authority.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*:)[^\s'\"/]*(?=@)")
MASK = "***"

# C0 controls except tab and newline, DEL, and C1 controls; plus the bidi overrides that can make
# text read differently from what it is.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Lone surrogates: what Python makes of bytes that are not UTF-8 (argv, environment, files).
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def mask_password(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's spelling of a raw byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with terminal control characters (and invalid UTF-8) shown as `\\x1b`-style escapes.
    Newlines and tabs are escaped too unless `keep_newlines` (a table cell must stay one line).
    Printable text (nearly every cell) is returned as it is: each character escaped here is one
    `str.isprintable` refuses (Cc, Cf, Cs), and a 1,000-row table has 7,000 cells."""
    if text.isprintable():
        return text
    if not keep_newlines:
        text = text.replace("\n", "\\n").replace("\t", "\\t")
    text = _CONTROL.sub(lambda m: _escape(m.group()), text)
    return _SURROGATE.sub(lambda m: _escape(m.group()), text)


def has_surrogates(text: str) -> bool:
    """Whether `text` holds bytes that were not valid UTF-8 (decoded with surrogateescape)."""
    return _SURROGATE.search(text) is not None
