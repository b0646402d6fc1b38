"""The HTTP API's records: OpenAI's completion and chat shapes, plus flexo's fields.

flexo's request fields (`experts`, `attribution`) are what the `openai` client sends through
`extra_body`; flexo's response fields (`release`, `experts_on`, `attribution`) arrive as extra
attributes of the client's objects. Every field is validated here, so a malformed request is a
4xx naming the field before any work is queued.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

MAX_TOKENS_LIMIT = 1024  # no request generates more than this; the context may allow less


class Experts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    only: list[str] | None = None  # contributor ids to use, instead of every entitled one
    exclude: list[str] = []  # contributor ids to switch off


class GenerationFields(BaseModel):
    """What completions and chat completions share."""

    model_config = ConfigDict(extra="ignore")  # OpenAI fields flexo does not act on

    model: str
    max_tokens: int = Field(16, ge=1, le=MAX_TOKENS_LIMIT,
                            validation_alias=AliasChoices("max_tokens", "max_new_tokens",
                                                          "max_completion_tokens"))
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)  # one choice per prompt
    stream: bool = False
    experts: Experts = Experts()
    attribution: Literal["routing", "loo"] | None = None


class CompletionRequest(GenerationFields):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        prompts = [value] if isinstance(value, str) else value
        if not prompts or any(not p.strip() for p in prompts):
            raise ValueError("the prompt is empty; send text to continue")
        return value

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(GenerationFields):
    messages: list[Message] = Field(min_length=1)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AttributionOut(BaseModel):
    routing: dict[str, float]  # expert -> share of routing weight over the generated tokens
    loo: dict[str, float | None] | None = None


class Choice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: None = None
    attribution: AttributionOut | None = None  # flexo: asked for with `attribution`


class FlexoFields(BaseModel):
    release: str  # the release that answered (`v3`), as the registry numbers it
    experts_on: list[str]  # public first


class Completion(FlexoFields):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: Literal["stop", "length"] | None
    attribution: AttributionOut | None = None


class ChatCompletion(FlexoFields):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "flexo"
    experts: list[str]  # flexo: the contributor experts this release holds


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
