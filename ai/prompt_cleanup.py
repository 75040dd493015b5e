"""Turn a model's raw output into clean page text, and the generation limits per prompt family.

No Django: pure functions, used by the call_llm activity (for the final and the partial text).
"""

from __future__ import annotations

import re

# Per prompt family: a base model continues a manuscript and must be stopped before it starts
# the next page; an instruction model answers the ask and stops by itself.
GENERATION_LIMITS: dict[str, dict] = {
    "chat": {"max_tokens": 400, "temperature": 0.8, "stop": []},
    "completion": {
        "max_tokens": 160,
        "temperature": 0.7,
        "stop": ["\nPage ", "\n\n\n", "\nTitle:", "\nSummary:"],
    },
}

_PAGE_LABEL = re.compile(
    r"^\s*(?:\*\*)?\s*(?:page\s*\d+|chapter\s*\d+)\s*(?:\((?:[^)]*)\))?\s*[:.\-–—]\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
_NEXT_LABEL = re.compile(r"\n\s*(?:\*\*)?\s*(?:page|chapter)\s*\d+\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")


def clean_page_text(raw: str, *, page_number: int) -> str:
    """Strip echoes of "Page N:" labels, cut at the next page's label, drop a trailing
    half-sentence when a whole one exists, tidy whitespace and surrounding quotes."""
    text = (raw or "").replace("\r\n", "\n").strip()
    if not text:
        return ""
    original = text
    text = _PAGE_LABEL.sub("", text, count=1)
    cut = _NEXT_LABEL.search(text)
    if cut:
        text = text[: cut.start()]
    text = text.strip().strip("*").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    ends = list(_SENTENCE_END.finditer(text))
    if ends and ends[-1].end() < len(text.rstrip()):
        text = text[: ends[-1].end()]
    text = text.strip()
    return text or original
