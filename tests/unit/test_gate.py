"""The authorisation gate's rules, one act at a time, with the sandbox cast (alice operator, bob and carol
approvers, erin admin, victor viewer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsconsole.core.change.gate import Act, Forbidden, authorize, fleet_scope, refusal
from opsconsole.core.change.rbac import Directory, Grant, Identity, Role, Scope
from opsconsole.core.change.requests import RequestRefused
from opsconsole.core.errors import UsageError
from opsconsole.core.fleet.model import Fleet

SEED = Path(__file__).resolve().parents[2] / "inventory"
PROD_EU = Scope.of(environments=["prod"], regions=["eu-west-1"])


@pytest.fixture(scope="module")
def cast(seed_fleet: Fleet) -> Directory:
    return Directory.load(SEED, sandbox=True, fleet=seed_fleet)


def test_forbidden_is_a_refusal_titled_not_allowed() -> None:
    assert issubclass(Forbidden, RequestRefused) and issubclass(Forbidden, UsageError)
    assert Forbidden("x").title == "not allowed"


@pytest.mark.parametrize(("act", "allowed"), [
    (Act.FILE, {"alice", "bob", "carol", "erin"}),
    (Act.VOTE, {"bob", "carol", "erin"}),
    (Act.RUN, {"alice", "bob", "carol", "erin"}),
    (Act.BREAK_GLASS, {"erin"}),
    (Act.OVERRIDE, {"alice", "bob", "carol", "erin"}),
    (Act.MANAGE_TOKENS, {"erin"}),
])
def test_who_may_do_what(cast: Directory, seed_fleet: Fleet, act: Act, allowed: set[str]) -> None:
    scope = fleet_scope(seed_fleet) if act is Act.MANAGE_TOKENS else PROD_EU
    for name in ("alice", "bob", "carol", "erin", "victor"):
        who = cast.cast_member(name)
        if name in allowed:
            authorize(act, who, scope=scope)
        else:
            with pytest.raises(Forbidden) as refused:
                authorize(act, who, scope=scope)
            role = who.role_for(scope).value
            assert name in refused.value.message and role in refused.value.message
            assert "prod" in refused.value.message


def test_a_requester_never_votes_on_their_own_request(cast: Directory) -> None:
    with pytest.raises(Forbidden, match="someone else"):
        authorize(Act.VOTE, cast.cast_member("erin"), scope=PROD_EU, requester="erin")
    authorize(Act.VOTE, cast.cast_member("bob"), scope=PROD_EU, requester="erin")


def test_a_break_glass_request_runs_only_for_an_admin(cast: Directory) -> None:
    with pytest.raises(Forbidden, match="only an admin"):
        authorize(Act.RUN, cast.cast_member("alice"), scope=PROD_EU, break_glass=True)
    authorize(Act.RUN, cast.cast_member("erin"), scope=PROD_EU, break_glass=True)


def test_cancelling_a_request_takes_its_requester_or_an_admin(cast: Directory) -> None:
    authorize(Act.CANCEL_REQUEST, cast.cast_member("alice"), scope=PROD_EU, requester="alice")
    authorize(Act.CANCEL_REQUEST, cast.cast_member("erin"), scope=PROD_EU, requester="alice")
    with pytest.raises(Forbidden, match="admin"):
        authorize(Act.CANCEL_REQUEST, cast.cast_member("bob"), scope=PROD_EU, requester="alice")


def test_cancelling_a_job_takes_an_operator_or_its_requester(cast: Directory) -> None:
    authorize(Act.CANCEL_JOB, cast.cast_member("bob"), scope=PROD_EU, requester="alice")
    authorize(Act.CANCEL_JOB, cast.cast_member("victor"), scope=PROD_EU, requester="victor")
    with pytest.raises(Forbidden, match="victor is a viewer"):
        authorize(Act.CANCEL_JOB, cast.cast_member("victor"), scope=PROD_EU, requester="alice")


def test_roles_are_checked_in_the_acts_scope() -> None:
    staging_only = Identity("sam", "os:sam", (Grant(Role.ADMIN, environments=frozenset({"staging"})),))
    authorize(Act.BREAK_GLASS, staging_only, scope=Scope.of(environments=["staging"]))
    assert refusal(Act.FILE, staging_only, scope=PROD_EU) == (
        "sam is a viewer in prod in eu-west-1: filing a change needs an operator role there"
    )
