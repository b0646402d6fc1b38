"""Contributor ids: lowercase `[a-z0-9-]{2,40}`, validated wherever one enters the system."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

PUBLIC_EXPERT = "public"  # expert 0 of every merge: the anchor's FFN; no contributor may take it
_ID = re.compile(r"[a-z0-9-]{2,40}")


class InvalidContributorId(ValueError):
    pass


def validate_contributor_id(value: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidContributorId(
            f"contributor id {value!r} is invalid; use 2-40 characters of a-z, 0-9 and '-'")
    if value == PUBLIC_EXPERT:
        raise InvalidContributorId(f"contributor id '{PUBLIC_EXPERT}' is reserved for the anchor's "
                                   f"public expert; choose another")
    return value


ContributorId = Annotated[str, AfterValidator(validate_contributor_id)]
