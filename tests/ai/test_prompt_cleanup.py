"""clean_page_text and GENERATION_LIMITS: plain pytest, no Django.

    .venv/bin/python -m pytest tests/ai/test_prompt_cleanup.py -p no:django -q

The REAL_* fixtures are verbatim outputs of the embedded Gemma 3 270M (base model, Q4_K_M,
llama-cpp-python 0.3.36) for prompts/page_content_completion.jinja v1, at temperature 0.7 and
top_p 0.9; the comment on each says for which story and with which stop / max_tokens.
"""

from pathlib import Path

import jinja2
import pytest

from ai.prompt_cleanup import GENERATION_LIMITS, clean_page_text

# --- Real outputs, with the production stop sequence ("\n") -------------------------------------

# "The Brave Little Acorn", blank page 3 after two pages.
REAL_BLANK_PAGE = [
    (
        " Pip got up from the grass and went to see a storm coming. She was afraid she might not"
        " make it, so she climbed into her little acorn basket.",
        "Pip got up from the grass and went to see a storm coming. She was afraid she might not"
        " make it, so she climbed into her little acorn basket.",
    ),
    (
        " But he didn't stay there for long. He saw a small bird flying by and wanted to join him"
        " in the sky.",
        "But he didn't stay there for long. He saw a small bird flying by and wanted to join him"
        " in the sky.",
    ),
    # "Luna and the Lost Star", blank page 2 in the middle (pages 3 and 4 written).
    (
        " She climbed up the nearest tree and found it. It was a star in her hand, but she could"
        " not see it.",
        "She climbed up the nearest tree and found it. It was a star in her hand, but she could"
        " not see it.",
    ),
    # "Milo's Big Day at the Zoo", blank page 1, no summary.
    (
        " Milo the lion was very excited to meet his new friends.",
        "Milo the lion was very excited to meet his new friends.",
    ),
]

# Revisions. "Dot the Dragon Learns to Share", page 2 draft: "a rabbit came. he wanted to play
# with the ball. dot said no its mine. the rabbit was sad." The model keeps the draft's lower case.
REAL_REVISION = [
    (
        " the rabbit was sad and tired. he wanted to play with the ball again.",
        "The rabbit was sad and tired. He wanted to play with the ball again.",
    ),
    (
        " Rabbit was sad. he wanted to play with the ball, but dot said no it is mine.",
        "Rabbit was sad. He wanted to play with the ball, but dot said no it is mine.",
    ),
    # The line ended (stop "\n") on a whole sentence without its full stop: keep it, finish it.
    (
        " the rabbit was so sad. he wanted to play with the ball",
        "The rabbit was so sad. He wanted to play with the ball.",
    ),
    # "Fern the Fox Finds a Home", page 2 draft: "She asked the owl. Owl had a hole in a tree but
    # it was to small for a fox."
    (
        " She asked the owl. Owl had a hole in a tree but it was to small for a fox",
        "She asked the owl. Owl had a hole in a tree but it was to small for a fox.",
    ),
    (
        " The owl had a hole in her tree. She dug the hole, but it was too big for a fox to live"
        " in.",
        "The owl had a hole in her tree. She dug the hole, but it was too big for a fox to live"
        " in.",
    ),
]

# max_tokens=22 with stop "\n": finish_reason "length", cut mid-sentence.
REAL_TRUNCATED = [
    (
        " The little acorn was scared, but the wind kept it warm. Pip put on his coat and ran off"
        " to",
        "The little acorn was scared, but the wind kept it warm.",
    ),
    (
        " In the dark of night, he found his acorn under a tree. The wind was blowing and Pip had"
        " to",
        "In the dark of night, he found his acorn under a tree.",
    ),
]

# Without any stop sequence (max_tokens=80) the base model finishes the page, then writes the
# next pages, "The End." and a new book: everything after the page must go.
REAL_RUN_ON = [
    (
        " There was a big storm coming, and the wind whipped up snow. Pip fell in his boots and"
        " had to get out of the tree.\nThe End.\n\nA children's picture book\n\nTitle: The Little"
        " Owl\nSummary: A little owl can hear the world around her through its eyes.\nPage 1:"
        " She was a tiny bird, but she had an amazing vision because it",
        3,
        "There was a big storm coming, and the wind whipped up snow. Pip fell in his boots and"
        " had to get out of the tree.",
    ),
    (
        " Milo the cat was very happy. He ran around and got his paws on all the big animals,"
        " including a giraffe.\nPage 2: And he wanted to see how many giraffes could stand up"
        " like that. So he walked away for an hour long ride.\nPage 3: As soon as he had seen four"
        ' or five of them, Milo looked at his friend and said, "',
        1,
        "Milo the cat was very happy. He ran around and got his paws on all the big animals,"
        " including a giraffe.",
    ),
    (
        " the rabbit ran away. he wanted to play with the ball.\n\nDraft: it was a long winter"
        " day at camp. Dot had not slept well and she did not want to stay in her bed all by"
        " herself!\nPolished page 2: the dog got wet, too!\n\nDraft: tom was having fun at his"
        " brother's house. he had been playing with the cat,",
        2,
        "The rabbit ran away. He wanted to play with the ball.",
    ),
    (
        " Rabbit was sad. he wanted to play with the ball.\nDraft of page 3: The rabbit ran away"
        " in the park. he went to sleep at night. Dot saw him sleeping and she hid her toys.\n\n"
        "Draft: they were going home together, but it was raining so bad they could not go out.\n"
        "Polished: They were leaving home for a change.",
        2,
        "Rabbit was sad. He wanted to play with the ball.",
    ),
    (
        " the rabbit was sad. he had to play with the ball.\n\nTitle: Dot the Dragon Learns To"
        " Play\nSummary: Dot is a small dragon who does not like sharing her toys, until she makes"
        " a new friend.\nPage 3: The little red hen came home from school and saw that Dot was"
        " playing in the garden.",
        2,
        "The rabbit was sad. He had to play with the ball.",
    ),
]


@pytest.mark.parametrize(("raw", "clean"), REAL_BLANK_PAGE + REAL_REVISION + REAL_TRUNCATED)
def test_real_single_line_outputs(raw, clean):
    assert clean_page_text(raw, page_number=3) == clean


@pytest.mark.parametrize(("raw", "page_number", "clean"), REAL_RUN_ON)
def test_real_run_on_outputs_are_cut_after_the_page(raw, page_number, clean):
    assert clean_page_text(raw, page_number=page_number) == clean


# --- Echoed labels, markers and chat-model noise (synthetic, in the shapes models produce) ------


@pytest.mark.parametrize(
    "raw",
    [
        "Page 3: Pip found a warm hole in the roots.",
        "  Page 3:Pip found a warm hole in the roots.",
        "**Page 3:** Pip found a warm hole in the roots.",
        "## Page 3\n\nPip found a warm hole in the roots.",
        "Page three - Pip found a warm hole in the roots.",
        "Page 3 (final, polished): Pip found a warm hole in the roots.",
        "Polished page 3: Pip found a warm hole in the roots.",
        "Revised version: Pip found a warm hole in the roots.",
        "Page 4: Pip found a warm hole in the roots.",  # a base model numbering the page wrong
        "Here is the revised page:\n\nPip found a warm hole in the roots.",
        "Sure! Here's page 3:\n\n**Page 3:** Pip found a warm hole in the roots.",
        '"Pip found a warm hole in the roots."',
        "\u201cPip found a warm hole in the roots.\u201d",
        "```\nPip found a warm hole in the roots.\n```",
        "Pip found a warm hole in the roots.\n\n---\n\nLet me know if you want another version!",
        "Pip found a warm hole in the roots.\n\nNote: I kept the tone gentle for young readers.",
        "Pip found a warm hole in the roots. Page 4: The next morning, snow covered the hill.",
        "Pip found a warm hole in the roots.\nChapter 2\nThe next morning, snow covered the hill.",
        "Pip found a warm hole in the roots.\n\nTHE END",
        "Pip   found a warm\thole in the roots.   ",
        "\n\n Pip found a warm hole in the roots.\n\n\n",
    ],
)
def test_noise_around_the_page_is_removed(raw):
    assert clean_page_text(raw, page_number=3) == "Pip found a warm hole in the roots."


def test_ordinary_lines_that_start_like_markers_are_kept():
    raw = "Pip walked on.\nThe end of the road was near.\nPage after page of snow lay ahead."
    assert clean_page_text(raw, page_number=2) == raw


def test_markdown_emphasis_is_unwrapped():
    raw = "Pip found a **warm** hole in the roots. *Whoosh!* went the wind."
    assert clean_page_text(raw, page_number=3) == (
        "Pip found a warm hole in the roots. Whoosh! went the wind."
    )


def test_paragraphs_survive_as_one_blank_line():
    raw = "Pip shivered.\n\n\n\n  The wind   howled all night.  "
    assert clean_page_text(raw, page_number=2) == "Pip shivered.\n\nThe wind howled all night."


def test_dialogue_quotes_are_not_mistaken_for_wrapping():
    raw = '"Hello," said Pip. "Will you be my friend?"'
    assert clean_page_text(raw, page_number=2) == raw


def test_an_opened_quote_is_closed():
    raw = " \"You're not supposed to play with the ball, rabbit."  # real, dragon revision
    assert (
        clean_page_text(raw, page_number=2)
        == '"You\'re not supposed to play with the ball, rabbit."'
    )


def test_abbreviations_are_not_sentence_ends():
    assert clean_page_text("Pip waved to Mr. Fox and ran home", page_number=2) == (
        "Pip waved to Mr. Fox and ran home."
    )


def test_a_determiner_and_adjective_at_the_end_is_cut_off():
    raw = "Pip ran home. He went to the big"
    assert clean_page_text(raw, page_number=2) == "Pip ran home."


def test_a_single_unfinished_sentence_is_kept_rather_than_dropped():
    assert clean_page_text(" Pip ran to the", page_number=1) == "Pip ran to the"


def test_sentence_starts_are_capitalised_but_not_after_an_ellipsis():
    raw = "pip was cold... so cold. he shivered!"
    assert clean_page_text(raw, page_number=1) == "Pip was cold... so cold. He shivered!"


@pytest.mark.parametrize("raw", ["Page 3:", "The End.", "Title: The Little Owl", "---", "**"])
def test_never_empty_when_the_raw_text_had_words(raw):
    cleaned = clean_page_text(raw, page_number=3)
    if any(ch.isalnum() for ch in raw):
        assert cleaned.strip()
    else:
        assert cleaned == ""


@pytest.mark.parametrize("raw", ["", "   ", "\n\n"])
def test_nothing_in_nothing_out(raw):
    assert clean_page_text(raw, page_number=1) == ""


def test_page_number_is_keyword_only():
    with pytest.raises(TypeError):
        clean_page_text("Pip ran.", 3)  # type: ignore[misc]


# --- GENERATION_LIMITS --------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["chat", "completion"])
def test_limits_have_the_keys_callers_use(family):
    limits = GENERATION_LIMITS[family]
    assert isinstance(limits["max_tokens"], int) and 0 < limits["max_tokens"] <= 1024
    assert 0 <= limits["temperature"] <= 1.5
    assert isinstance(limits["stop"], list)  # iterable even when empty
    assert len(limits["stop"]) <= 4  # OpenAI-compatible APIs accept at most four


def test_completion_family_stops_at_the_end_of_the_page_line():
    assert "\n" in GENERATION_LIMITS["completion"]["stop"]


# --- The completion template's layout, which the stop sequence and the cleanup rely on ---------

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
STORY = {
    "story_title": "The Brave Little Acorn",
    "story_description": "A tiny acorn must survive a winter storm.",
    "existing_pages": [
        {"order": 0, "content": "Pip lived on the old oak."},
        {"order": 1, "content": ""},
        {"order": 2, "content": "Spring came,\nand Pip  sprouted."},
    ],
    "current_content": "",
    "page_number": 2,
}


def _render(**options) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        **options,
    )
    return env.get_template("page_content_completion.jinja").render(**STORY)


def test_template_carries_a_version_header():
    first_line = (PROMPTS / "page_content_completion.jinja").read_text().splitlines()[0]
    assert first_line == "{#- version: 1 -#}"


def test_template_ends_where_the_page_begins_whatever_the_environment_options():
    plain = _render()
    assert plain.endswith("\nPage 1: Pip lived on the old oak.\nPage 2:")
    assert "How the story goes on later: Spring came, and Pip sprouted.\n" in plain  # one line
    for options in (
        {"trim_blocks": True, "lstrip_blocks": True},
        {"keep_trailing_newline": True},
    ):
        assert _render(**options) == plain


def test_template_for_a_revision_ends_at_the_polished_page():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROMPTS), undefined=jinja2.StrictUndefined
    )
    text = env.get_template("page_content_completion.jinja").render(
        **{**STORY, "current_content": "pip was cold. he hid.", "page_number": 2}
    )
    assert text.endswith(
        "Page 1: Pip lived on the old oak.\n\nDraft of page 2: pip was cold. he hid.\n"
        "Polished page 2:"
    )
