"""Turn a model's raw answer into clean page text, and the generation limits per prompt family.

Pure functions, standard library only: no Django, no LiteLLM, so it is unit-tested on its own and
usable from a Temporal activity or workflow code alike.

Two prompt families:
- "chat": instruction-following models (hosted ones) with prompts/page_content.jinja.
- "completion": BASE models such as the embedded Gemma 3 270M with
  prompts/page_content_completion.jinja, which lays the story out as a manuscript ending in
  "Page N:" (or "Polished page N:" for a revision). A base model then writes one line and, left
  alone, goes on to invent page N+1, "The End." and a whole new book: the stop sequence cuts it at
  the end of the line and clean_page_text() below removes what slips through.
"""

from __future__ import annotations

import re

__all__ = ["GENERATION_LIMITS", "clean_page_text"]

# Keyword arguments for litellm.(a)completion / (a)text_completion, per prompt family.
GENERATION_LIMITS: dict[str, dict] = {
    "chat": {
        # A picture-book page is 1-4 sentences (~20-80 words); 400 tokens leave room for a model
        # that writes a longer page or adds a heading, which clean_page_text removes.
        "max_tokens": 400,
        "temperature": 0.8,
        # No stop sequence: instruction-tuned models end on their own. An empty list, not None,
        # so callers can always iterate it. (No top_p either: some providers refuse temperature
        # and top_p together.)
        "stop": [],
    },
    "completion": {
        # Measured on Gemma 3 270M with page_content_completion.jinja: a page line is 7-40 tokens.
        # 120 (~90 words) never cut a real page short, and bounds the worst case to a few seconds
        # on 2 CPU cores (10-25 tokens/s while the rest of the stack is busy).
        "max_tokens": 120,
        # 0.7 / 0.9: at 0.3-0.5 the model mostly copies a draft verbatim or repeats the example
        # pages; at 0.8+ it drifts off the story (a lion eats the rabbit).
        "temperature": 0.7,
        "top_p": 0.9,
        # One page is one line in the prompt's layout, so the first newline ends the page. Without
        # it the model writes "\nThe End.\n\nA children's picture book\n\nTitle: ..." every time.
        "stop": ["\n"],
    },
}

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen"
    "|sixteen|seventeen|eighteen|nineteen|twenty"
)
_PAGE_NUMBER = rf"(?:\d+|{_NUMBER_WORDS})"
_NOISE = r"[\s#>*_`~]*"  # markdown around a label: "**Page 3:**", "## Page 3", "> Page 3"

# A label the model echoes before the page text: "Page 3:", "Page 3 (final, polished):",
# "Polished page 3:", "Revised version:", "**Page three** -", "Page 3." ...
_LEADING_LABEL = re.compile(
    rf"""^{_NOISE}(?:
        (?:(?:final|polished|revised|improved|rewritten|new|next|draft\s+of)[\s,]*)*
            page\s*{_PAGE_NUMBER}\s*(?:\([^)\n]{{0,40}}\))?
      | (?:final|polished|revised|improved|rewritten)(?:[\s,]+(?:version|text|page|draft))*
    ){_NOISE}\s*[:.\-\u2013\u2014]+{_NOISE}""",
    re.IGNORECASE | re.VERBOSE,
)
# A chat model's preamble line: "Here is the revised page:", "Sure! Here's page 3:".
_PREAMBLE = re.compile(
    r"^\s*(?:sure|certainly|of course|okay|ok|absolutely|here(?:'s|\u2019s| is| are))\b"
    r"[^\n]{0,120}:\s*\n",
    re.IGNORECASE,
)
# Where the page ends: a line that starts another page or chapter, a label of the prompt's layout,
# the end of the book, a horizontal rule or a note to the author.
_NEXT_SECTION_LINE = re.compile(
    rf"""\n{_NOISE}(?:
        (?:page|chapter|part)\s+(?:{_PAGE_NUMBER}|[ivxlc]+)\b
      | (?:draft|polished|revised|title|summary|story\s+summary|existing\s+pages|notes?)
            \b[^:\n]{{0,40}}:
      | how\s+the\s+story\s+goes\s+on
      | a\s+children's\s+picture\s+book
      | the\s+end[.!]*[ \t]*(?:\n|$)
      | (?:-{{3,}}|\*{{3,}}|_{{3,}}|={{3,}})\s*(?:\n|$)
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# "... sang softly. Page 4: The next day ..." on the same line.
_NEXT_PAGE_INLINE = re.compile(
    rf"(?:\bpage|\bchapter)\s+{_PAGE_NUMBER}\s*(?:\([^)\n]{{0,40}}\))?\s*:", re.IGNORECASE
)
_CODE_FENCE = re.compile(r"^\s*```[a-z]*\s*$", re.IGNORECASE | re.MULTILINE)
_HEADING_LINE = re.compile(r"^\s*#{1,6}\s+[^\n]*(?:\n|$)")
_EMPHASIS = re.compile(
    r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1|(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"
)
_QUOTE_PAIRS = {'"': '"', "\u201c": "\u201d", "'": "'", "\u2018": "\u2019", "\u00ab": "\u00bb"}
# A sentence end: . ! ? or an ellipsis, then closing quotes/brackets, then whitespace or the end.
_SENTENCE_END = re.compile(r"(?:[.!?]+|\u2026)[\"'\u201d\u2019\u00bb)\]]*(?=\s|$)")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words a sentence does not end on: a tail ending in one was cut off mid-sentence.
_DANGLING_WORDS = _words(
    """a an the and or but nor so yet because that which who whom whose when where while if then
    than as of to in on at by for from with into onto over under about after before through up
    down out off his her their its my your our this these those is was were are am be been being
    had has have do did does will would could should can may might must shall said says very too
    not no some any every each all more most such just also even only how what why whether until
    since though although unless like across behind between toward towards against along among
    upon within without beside near"""
)
# "went to the big" is unfinished although "big" could end a sentence: a determiner and then a
# common adjective is a noun phrase cut off (without a tagger we only know the common ones).
_DETERMINERS = _words("a an the his her their its my your our this that these those some")
_ADJECTIVES = _words(
    """big little small tiny old new young great long tall short happy sad good bad best first last
    next other same whole red blue green yellow white black brown gray grey dark bright warm cold
    soft shiny wide deep high"""
)
_ABBREVIATIONS = _words("mr mrs ms dr st mt jr sr prof vs etc e.g i.e")


def clean_page_text(raw: str, *, page_number: int) -> str:
    """Clean page text out of a model's raw output.

    Strips an echoed "Page N:"-style label and a chat preamble, cuts at the next page, chapter or
    layout marker (see page_content_completion.jinja), removes markdown emphasis, headings and
    code fences and quotes wrapping the whole text, drops a trailing unfinished sentence when a
    finished one precedes it, collapses whitespace (a blank line between paragraphs survives)
    and capitalises sentence starts. Never returns "" when ``raw`` had a word in it: the stripped
    raw text is the fallback.

    ``page_number`` is the 1-based number of the page being written; labels are removed whatever
    number they carry (a base model sometimes numbers the page wrong), so it only documents intent
    and keeps call sites explicit.
    """
    del page_number  # see docstring: every leading page label is removed, matching or not
    if not raw:
        return ""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = _CODE_FENCE.sub("", text)
    text = _strip_head(text)
    text = _cut_at_next_section(text)
    text = _EMPHASIS.sub(lambda m: m.group(2) or m.group(3), text)
    text = _collapse_whitespace(text)
    text = _strip_wrapping_quotes(text)
    text = _drop_unfinished_tail(text)
    text = _close_open_quote(text)
    text = _capitalise_sentences(text)
    if not re.search(r"\w", text):  # only punctuation or markdown left
        text = ""
    if not text and re.search(r"\w", raw):
        return " ".join(raw.split())
    return text


def _strip_head(text: str) -> str:
    """Remove preambles, headings and echoed labels before the page text (repeatedly)."""
    while True:
        before = text
        text = text.lstrip()
        text = _PREAMBLE.sub("", text, count=1)
        heading = _HEADING_LINE.match(text)
        if heading and text[heading.end() :].strip():
            text = text[heading.end() :]
        text = _LEADING_LABEL.sub("", text, count=1)
        if text == before:
            return text


def _cut_at_next_section(text: str) -> str:
    cut = len(text)
    line_marker = _NEXT_SECTION_LINE.search(text)
    if line_marker:
        cut = line_marker.start()
    inline = _NEXT_PAGE_INLINE.search(text, 1)
    if inline and inline.start() < cut:
        cut = inline.start()
    return text[:cut]


def _collapse_whitespace(text: str) -> str:
    paragraphs = re.split(r"\n\s*\n", text)
    cleaned = []
    for paragraph in paragraphs:
        lines = [" ".join(line.split()) for line in paragraph.split("\n")]
        joined = "\n".join(line for line in lines if line)
        if joined:
            cleaned.append(joined)
    return "\n\n".join(cleaned)


def _strip_wrapping_quotes(text: str) -> str:
    while len(text) >= 2:
        opening, closing = text[0], text[-1]
        if _QUOTE_PAIRS.get(opening) != closing:
            return text
        inner = text[1:-1]
        # '"Hi," said Pip. "Bye."' starts and ends with a quote but is dialogue, not a wrapping.
        if opening in inner or closing in inner:
            return text
        text = inner.strip()
    return text


def _drop_unfinished_tail(text: str) -> str:
    """Drop a trailing unfinished sentence, or finish one that only lacks its full stop.

    A tail after the last finished sentence was cut off by max_tokens ("... and said, \"", "... to
    see how many") or is a whole sentence the model ended with the line but without a full stop
    ("Owl had a hole in a tree but it was too small for a fox"). The first kind is dropped; the
    second keeps its words and gets a full stop. A text with no finished sentence is kept whole.
    """
    stripped = text.rstrip()
    ends = [
        m for m in _SENTENCE_END.finditer(stripped) if not _is_abbreviation(stripped, m.start())
    ]
    if ends and ends[-1].end() == len(stripped):
        return stripped
    tail = stripped[ends[-1].end() :] if ends else stripped
    if _looks_finished(tail):
        return stripped + "."
    if not ends:
        return stripped  # a single unfinished sentence: keep it rather than return nothing
    return stripped[: ends[-1].end()]


def _looks_finished(tail: str) -> bool:
    words = re.findall(r"[A-Za-z']+", tail)
    if len(words) < 4 or tail.count('"') % 2 or tail.count("\u201c") > tail.count("\u201d"):
        return False
    if re.search(r"[,;:\-\u2013\u2014(\"'\u201c\u2018]\s*$", tail):
        return False
    if words[-1].lower() in _DANGLING_WORDS:
        return False
    return not (words[-2].lower() in _DETERMINERS and words[-1].lower() in _ADJECTIVES)


def _is_abbreviation(text: str, dot_index: int) -> bool:
    if text[dot_index] != ".":
        return False
    word = re.search(r"([A-Za-z.]+)$", text[:dot_index])
    return bool(word) and word.group(1).lower() in _ABBREVIATIONS


def _close_open_quote(text: str) -> str:
    """Close a quotation the model opened and never closed ('"You are not my friend.')."""
    if not text or text[-1] not in ".!?\u2026":
        return text
    if text.count('"') % 2 == 1:
        return text + '"'
    if text.count("\u201c") > text.count("\u201d"):
        return text + "\u201d"
    return text


def _capitalise_sentences(text: str) -> str:
    """Capitalise the page's first letter and each letter after a full stop.

    Only after a bare full stop: base models copy a draft's lower case ("the rabbit was sad. he
    wanted..."), while after "!" / "?" or a closing quote lower case is usually right
    ('"Help!" cried Pip.', "Whoosh! went the wind.").
    """

    def upper(match: re.Match[str]) -> str:
        return match.group(1) + match.group(2).upper()

    text = re.sub(r"^([\"'\u201c\u2018(]*)([a-z])", upper, text)
    return re.sub(r"((?<![.\w]\.)(?<!\.\.)(?<=\w)\.\s+)([a-z])", upper, text)
