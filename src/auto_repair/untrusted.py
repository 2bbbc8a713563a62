"""Text from a function's logs is written by whoever can make the function log: often an end user of the product
behind it. This module is the one place that makes such text harmless wherever it goes. Pure code.

* ``fold(text)``: what a reader (human or model) would see: Unicode look-alikes folded to their plain form (NFKC:
  fullwidth ``＜`` becomes ``<``), invisible format characters (zero-width, bidi overrides such as U+202E) and
  controls (CR/LF included) removed or turned into spaces, whitespace collapsed.
* ``clean_line(text, limit)``: ``fold`` plus a length cap, for one line of free text in a record or a notice.
* ``escape(text)``: ``clean_line`` plus HTML-entity escaping of ``& < > " { } [ ] `` and backticks, so a log line
  can neither open or close a tag nor pass for JSON of our result schema.
* ``Fence``: the per-request delimiters of an untrusted block in a model prompt. The tag carries a random nonce,
  so a line cannot close the block without guessing it, and escaped lines hold no ``<`` at all.
* ``echoes_untrusted(text, sources)``: whether model output repeats log text (or looks like an instruction); such
  output is not copied into the reasoning.

The decision never reads log text: the rules read counts and parsed numbers, and every place that shows a human
or a model something about the logs describes them (signature kinds, counts) instead of quoting them. The one
exception is the model prompt's fenced block, where ``escape`` applies.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

# A quoted log line in a prompt: long enough to show the signature, short enough that no line dominates.
LINE_LIMIT = 240
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "{": "&#123;", "}": "&#125;", "[": "&#91;",
            "]": "&#93;", "`": "&#96;"}
_ESCAPE = re.compile("[" + re.escape("".join(_ESCAPES)) + "]")
_SPACE = re.compile(r"\s+")
# Shared substrings of at least this many characters between model output and a log line count as an echo.
ECHO_CHARS = 24
_INSTRUCTION = re.compile(
    r"ignore (all |any |the )?(previous|prior|above|earlier)|disregard|system prompt|new instructions|"
    r"</?\s*(system|assistant|user|instructions?|untrusted\w*|tool\w*)\b|isMemoryIssue|recommendedMemory|"
    r"忽略|无视|無視|指示|ignora|olvida|игнорир|забудь|ignoriere|ignorez", re.IGNORECASE)


def _visible(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Cf":  # zero-width characters, bidi embeddings/overrides/isolates, BOM, soft hyphen
        return ""
    if category in ("Cc", "Zl", "Zp") or category == "Cs":  # controls (CR, LF, ESC ...), separators, surrogates
        return " "
    return ch


def fold(text: object) -> str:
    """The text a reader sees, in plain characters on one line."""
    raw = text if isinstance(text, str) else str(text)
    raw = raw.encode("utf-8", "replace").decode("utf-8", "replace")
    folded = unicodedata.normalize("NFKC", raw)
    return _SPACE.sub(" ", "".join(_visible(ch) for ch in folded)).strip()


def clean_line(text: object, limit: int = LINE_LIMIT) -> str:
    """``fold`` capped at ``limit`` characters (an ellipsis marks the cut)."""
    folded = fold(text)
    return folded if len(folded) <= limit else folded[: max(limit - 1, 0)] + "…"


def escape(text: object, limit: int = LINE_LIMIT) -> str:
    """A log line as it may appear inside a fenced prompt block: folded, capped, no markup, no JSON."""
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], clean_line(text, limit))


@dataclass(frozen=True)
class Fence:
    """Delimiters of one prompt's untrusted blocks: ``<{name}_{nonce}>`` ... ``</{name}_{nonce}>``."""

    nonce: str = field(default_factory=lambda: secrets.token_hex(8))

    def tag(self, name: str) -> str:
        return f"{name}_{self.nonce}"

    def block(self, name: str, lines: Iterable[str], limit: int = LINE_LIMIT) -> list[str]:
        tag = self.tag(name)
        return [f"<{tag}>", *(escape(line, limit) for line in lines), f"</{tag}>"]


def log_messages(logs: object) -> list[str]:
    """The text of a request's log entries (``{"message": ...}`` or plain strings): what a model answer may echo."""
    entries = logs if isinstance(logs, list) else []
    messages = (entry.get("message") if isinstance(entry, dict) else entry for entry in entries)
    return [message for message in messages if isinstance(message, str)]


def looks_like_instruction(text: object) -> bool:
    return bool(_INSTRUCTION.search(fold(text)))


def echoes_untrusted(text: object, sources: Iterable[str]) -> bool:
    """True when ``text`` repeats ``ECHO_CHARS`` consecutive characters of any source line or reads like an
    instruction: model output that quotes the logs carries the logs' text on, so it is not passed along."""
    folded = fold(text).lower()
    if looks_like_instruction(folded):
        return True
    for source in sources:
        line = fold(source).lower()
        for start in range(0, max(len(line) - ECHO_CHARS + 1, 0), 4):
            if line[start:start + ECHO_CHARS] in folded:
                return True
    return False
