"""The prompt templates: rendering for blank and non-blank pages (snapshots), versions, and the
guard that a template's wording never changes without a version bump."""

import hashlib
from pathlib import Path

import pytest

from ai.prompts import TEMPLATE_FOR_FAMILY, PromptError, PromptLibrary

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
SNAPSHOTS = Path(__file__).parent / "snapshots"

# Jobs are traced to the exact wording through (template key, version), so each version's
# fingerprint is recorded in snapshots/<key>.v<version>.sha256. Changing a template? Bump its
# version line and record the new fingerprint (the failure message prints it).

STORY = {
    "story_title": "Moss and the Moon",
    "story_description": "A snail's quest to return the moon's light.",
    "existing_pages": [
        {"order": 0, "content": "Moss woke under a wet leaf."},
        {"order": 1, "content": "The moon was dim."},
    ],
    "page_number": 3,
}


@pytest.fixture
def library() -> PromptLibrary:
    return PromptLibrary(PROMPTS)


def test_every_family_has_a_template(library):
    for key in TEMPLATE_FOR_FAMILY.values():
        assert library.version(key)


@pytest.mark.parametrize("key", sorted(TEMPLATE_FOR_FAMILY.values()))
def test_wording_changes_need_a_version_bump(library, key):
    version = library.version(key)
    digest = hashlib.sha256(library.path(key).read_bytes()).hexdigest()
    snapshot = SNAPSHOTS / f"{key}.v{version}.sha256"
    assert snapshot.exists(), f"new version {version} of {key}: record {digest} in {snapshot}"
    assert snapshot.read_text().strip() == digest, (
        f"prompts/{key}.jinja changed but is still version {version}: bump its version line "
        f"(new fingerprint {digest})"
    )


@pytest.mark.parametrize("current", ["", "Moss was sad."])
def test_chat_template_snapshot(library, current):
    rendered = library.render("page_content", {**STORY, "current_content": current})
    mode = "revise" if current else "continue"
    snapshot = SNAPSHOTS / f"page_content.{mode}.txt"
    assert rendered.text + "\n" == snapshot.read_text()
    assert rendered.key == "page_content"
    assert rendered.version == "1"


def test_chat_prompt_for_a_blank_page_asks_for_the_next_page(library):
    text = library.render("page_content", {**STORY, "current_content": ""}).text
    assert text.startswith('You are a creative storyteller writing "Moss and the Moon".')
    assert "Story Summary: A snail's quest" in text
    assert "Page 1: Moss woke under a wet leaf.\nPage 2: The moon was dim." in text
    assert text.endswith("Please write the next page of this story.")
    assert "revise" not in text


def test_chat_prompt_for_a_page_with_text_asks_to_revise_it(library):
    text = library.render("page_content", {**STORY, "current_content": "Moss was sad."}).text
    assert "Current page content to revise:\nMoss was sad." in text
    assert text.endswith("Please revise and improve this page content.")


def test_prompts_are_not_html_escaped(library):
    text = library.render(
        "page_content", {**STORY, "story_title": 'Tom & "Jerry" <3', "current_content": ""}
    ).text
    assert 'Tom & "Jerry" <3' in text


def test_missing_variable_is_an_error_not_a_blank(library):
    with pytest.raises(PromptError, match="current_content"):
        library.render("page_content", {k: v for k, v in STORY.items()})


def test_unknown_or_unversioned_template_is_refused(tmp_path):
    lib = PromptLibrary(tmp_path)
    with pytest.raises(PromptError, match="No prompt template"):
        lib.version("nope")
    (tmp_path / "bare.jinja").write_text("Hello {{ name }}")
    with pytest.raises(PromptError, match="must start with"):
        lib.render("bare", {"name": "x"})
    with pytest.raises(PromptError, match="Bad template key"):
        lib.path("../etc/passwd")
