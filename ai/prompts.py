"""Prompt templates: versioned Jinja2 files under prompts/, rendered here and never by Django.

Each template starts with `{#- version: N -#}`; the job records the key and that version, so an
output can always be traced to the exact wording that produced it. Bump the version whenever a
template's wording changes (tests/ai/test_prompts.py holds a fingerprint per version).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

# Which template a model family gets: base models continue text, instruction models follow asks.
TEMPLATE_FOR_FAMILY: dict[str, str] = {
    "chat": "page_content",
    "completion": "page_content_completion",
}
_VERSION_RE = re.compile(r"^\{#-?\s*version:\s*(?P<version>[\w.-]+)\s*-?#\}")


class PromptError(Exception):
    pass


@dataclass(frozen=True)
class RenderedPrompt:
    key: str
    version: str
    text: str


class PromptLibrary:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.directory),
            undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string
            autoescape=False,  # prompts are plain text; escaping would feed "&lt;" to the model
            keep_trailing_newline=False,
        )

    def path(self, key: str) -> Path:
        if not re.fullmatch(r"[a-z0-9_]+", key):
            raise PromptError(f"Bad template key {key!r}")
        return self.directory / f"{key}.jinja"

    def template(self, key: str) -> jinja2.Template:
        """The compiled template; the environment keeps it after the first load."""
        return self.env.get_template(self.path(key).name)

    def version(self, key: str) -> str:
        path = self.path(key)
        try:
            head = path.read_text(encoding="utf-8").lstrip()
        except FileNotFoundError as exc:
            raise PromptError(f"No prompt template {path}") from exc
        match = _VERSION_RE.match(head)
        if not match:
            raise PromptError(f"{path} must start with '{{#- version: N -#}}'")
        return match["version"]

    def render(self, key: str, context: dict[str, Any]) -> RenderedPrompt:
        version = self.version(key)
        try:
            text = self.template(key).render(**context)
        except jinja2.UndefinedError as exc:
            raise PromptError(f"Template {key} v{version}: {exc}") from exc
        return RenderedPrompt(key=key, version=version, text=text.strip())


@lru_cache(maxsize=8)
def library(directory: str) -> PromptLibrary:
    return PromptLibrary(Path(directory))
