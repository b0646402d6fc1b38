"""Access by role: operators, listed reviewers and contributors, consumers' entitlements; each
refusal names the policy rule."""

import pytest

from governance.access import (
    AccessRefused,
    entitled_selection,
    require_contributor,
    require_operator,
    require_reviewer,
)
from governance.policy import Policy, Roles

OPEN = Policy()  # the shipped roles: operator only; anyone reviews, contributes and consumes
LISTED = Policy(roles=Roles(operators=["ops"], reviewers=["rita"], contributors=["hosp"],
                            consumers={"reader": ["hosp"], "admin": ["*"], "none": []}))
EXPERTS = ["hosp", "firm"]  # a model's contributor experts, router order


def test_operators_only_release_and_the_refusal_names_the_rule():
    require_operator(OPEN, "operator", "release")
    require_operator(LISTED, "ops", "promote")
    with pytest.raises(AccessRefused) as e:
        require_operator(LISTED, "operator", "release")
    assert e.value.rule == "roles.operators"
    assert str(e.value).startswith("roles.operators: 'operator' is not an operator, and only "
                                   "operators release (operators: ops)")


def test_empty_lists_admit_anyone_and_listed_ones_only_themselves():
    require_reviewer(OPEN, "anyone")
    require_contributor(OPEN, "anyone")
    require_reviewer(LISTED, "rita")
    require_contributor(LISTED, "hosp")
    with pytest.raises(AccessRefused, match=r"^roles.reviewers: 'sam' is not a reviewer"):
        require_reviewer(LISTED, "sam")
    with pytest.raises(AccessRefused, match=r"^roles.contributors: 'firm' is not a contributor"):
        require_contributor(LISTED, "firm")


def test_consumers_get_their_entitled_experts_only():
    assert entitled_selection(OPEN, "anyone", None, EXPERTS) is None  # no consumers listed
    assert entitled_selection(OPEN, "anyone", ["firm"], EXPERTS) == ["firm"]
    assert entitled_selection(LISTED, "reader", None, EXPERTS) == ["hosp"]  # default: entitled
    assert entitled_selection(LISTED, "reader", ["hosp"], EXPERTS) == ["hosp"]
    assert entitled_selection(LISTED, "admin", None, EXPERTS) == EXPERTS
    assert entitled_selection(LISTED, "none", None, EXPERTS) == []  # the public expert only
    with pytest.raises(AccessRefused, match="'reader' is not entitled to firm"):
        entitled_selection(LISTED, "reader", ["hosp", "firm"], EXPERTS)
    with pytest.raises(AccessRefused, match=r"^roles.consumers: 'stranger' is not a consumer"):
        entitled_selection(LISTED, "stranger", None, EXPERTS)
