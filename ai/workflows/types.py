"""Data that crosses the workflow/activity boundary, and so lands in Temporal's history.

Ids, prompts and outputs only: never an API key or anything else secret (keys live in the
worker's environment and are read by the activity that calls the model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.common import SearchAttributeKey

TASK_QUEUE_DEFAULT = "story-sprout"

# Registered on the dev server by `make run` and on clusters by `manage.py
# register_search_attributes`: the Temporal UI can then list "all runs for story 7".
AI_JOB_ID = SearchAttributeKey.for_int("AiJobId")
STORY_ID = SearchAttributeKey.for_int("StoryId")
PAGE_ID = SearchAttributeKey.for_int("PageId")
AI_JOB_TYPE = SearchAttributeKey.for_keyword("AiJobType")
AI_JOB_STATUS = SearchAttributeKey.for_keyword("AiJobStatus")
SEARCH_ATTRIBUTES = (AI_JOB_ID, STORY_ID, PAGE_ID, AI_JOB_TYPE, AI_JOB_STATUS)

# The failure kind of a step that refuses, or stops, because the author pressed Stop.
STOPPED_KIND = "cancel_requested"


@dataclass
class StepTimeouts:
    """Seconds. The LLM step may be retried for `llm_schedule_to_close_s` in all, so a model server
    that is still starting (or a provider outage) is waited out rather than failed."""

    render_s: float = 10.0
    llm_start_to_close_s: float = 90.0
    llm_heartbeat_s: float = 15.0
    llm_schedule_to_close_s: float = 600.0
    attach_s: float = 15.0


@dataclass
class GenerateTextInput:
    job_id: int
    # Activity that applies the text to its target; named by the owning app so `ai` never
    # imports it (stories registers "attach_page_text").
    attach_activity: str
    # Local activities for the short, idempotent database steps and the model call's first
    # attempt (see docs/architecture.md); False: every step an ordinary activity.
    local_steps: bool = True
    timeouts: StepTimeouts = field(default_factory=StepTimeouts)


@dataclass
class PromptSpec:
    prompt: str
    family: str
    template_key: str
    template_version: str


@dataclass
class LlmCall:
    job_id: int
    prompt: str
    family: str


@dataclass
class LlmResult:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: str  # a Decimal as text: exact, and JSON-safe in the history


@dataclass
class AttachInput:
    job_id: int
    text: str


@dataclass
class AttachResult:
    applied: bool
    note: str = ""


@dataclass
class JobFailure:
    job_id: int
    message: str
    kind: str


@dataclass
class GenerateTextResult:
    job_id: int
    applied: bool
    total_tokens: int
