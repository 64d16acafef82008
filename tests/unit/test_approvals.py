"""The approval state machine, event by event, and a property: no sequence of events breaks its rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from opsconsole.core.change.approvals import (
    Approve,
    Cancel,
    Drift,
    Event,
    Expire,
    Finish,
    Outcome,
    Refused,
    Reject,
    RequestState,
    RequestStatus,
    Start,
    step,
)

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)


def _request(needed: int = 2) -> RequestState:
    return RequestState(RequestStatus.REQUESTED, "alice", needed, "h1", T0 + timedelta(minutes=30))


def _ok(state: RequestState, event: Event) -> RequestState:
    after = step(state, event)
    assert isinstance(after, RequestState), after
    return after


def _refused(state: RequestState, event: Event) -> str:
    after = step(state, event)
    assert isinstance(after, Refused), after
    return after.reason


def test_two_distinct_approvers_approve() -> None:
    s = _ok(_request(), Approve("bob", "approver", True, LATER))
    assert s.status is RequestStatus.REQUESTED and s.approvals_missing == 1
    s = _ok(s, Approve("carol", "approver", True, LATER))
    assert s.status is RequestStatus.APPROVED and s.approvers == ("bob", "carol")


def test_self_approval_is_refused_even_for_an_admin() -> None:
    assert "someone else" in _refused(_request(), Approve("alice", "admin", True, LATER))


def test_a_person_counts_once() -> None:
    s = _ok(_request(), Approve("bob", "approver", True, LATER))
    assert "counts once" in _refused(s, Approve("bob", "approver", True, LATER))
    assert s.approvals_missing == 1


def test_ineligible_roles_cannot_vote() -> None:
    assert "viewer" in _refused(_request(), Approve("victor", "viewer", False, LATER))
    assert "operator" in _refused(_request(), Reject("dave", "operator", False, "no", LATER))


def test_one_reject_wins_and_needs_a_reason() -> None:
    s = _ok(_request(), Approve("bob", "approver", True, LATER))
    assert "reason" in _refused(s, Reject("carol", "approver", True, "  ", LATER))
    s = _ok(s, Reject("carol", "approver", True, "peak traffic", LATER))
    assert s.status is RequestStatus.REJECTED
    assert "rejected" in _refused(s, Approve("erin", "admin", True, LATER))


def test_expiry() -> None:
    req = _request()
    assert "valid until" in _refused(req, Expire(LATER))
    expired = _ok(req, Expire(req.expires_at))
    assert expired.status is RequestStatus.EXPIRED
    assert "expired" in _refused(req, Approve("bob", "approver", True, req.expires_at))


def test_an_expired_approval_cannot_start() -> None:
    s = _ok(
        _ok(_request(), Approve("bob", "approver", True, LATER)), Approve("carol", "approver", True, LATER)
    )
    assert "expired" in _refused(s, Start(s.expires_at + timedelta(seconds=1)))
    assert _ok(s, Start(LATER)).status is RequestStatus.RUNNING


def test_drift_sends_it_back_and_old_votes_do_not_count() -> None:
    s = _ok(
        _ok(_request(), Approve("bob", "approver", True, LATER)), Approve("carol", "approver", True, LATER)
    )
    s = _ok(s, Drift("h2", LATER))
    assert s.status is RequestStatus.REQUESTED and s.approvals_missing == 2
    s = _ok(s, Approve("bob", "approver", True, LATER))  # bob may vote again on the new plan
    assert s.approvers == ("bob",)


def test_cancel_only_by_the_requester() -> None:
    assert "only the requester" in _refused(_request(), Cancel("bob", LATER))
    assert _ok(_request(), Cancel("alice", LATER)).status is RequestStatus.CANCELLED


def test_run_outcomes() -> None:
    s = _ok(_ok(_request(1), Approve("bob", "approver", True, LATER)), Start(LATER))
    assert "already running" in _refused(s, Start(LATER))
    assert _ok(s, Finish(Outcome.INTERRUPTED, LATER)).status is RequestStatus.INTERRUPTED
    done = _ok(s, Finish(Outcome.SUCCEEDED, LATER))
    assert "succeeded" in _refused(done, Finish(Outcome.FAILED, LATER))


PEOPLE = ["alice", "bob", "carol", "erin", "victor"]
events = st.one_of(
    st.builds(Approve, st.sampled_from(PEOPLE), st.just("approver"), st.booleans(), st.just(LATER)),
    st.builds(
        Reject,
        st.sampled_from(PEOPLE),
        st.just("approver"),
        st.booleans(),
        st.sampled_from(["", "no"]),
        st.just(LATER),
    ),
    st.builds(Cancel, st.sampled_from(PEOPLE), st.just(LATER)),
    st.builds(Expire, st.sampled_from([LATER, T0 + timedelta(hours=1)])),
    st.builds(Drift, st.sampled_from(["h1", "h2", "h3"]), st.just(LATER)),
    st.builds(Start, st.sampled_from([LATER, T0 + timedelta(hours=1)])),
    st.builds(Finish, st.sampled_from(list(Outcome)), st.just(LATER)),
)


@given(st.lists(events, max_size=25), st.integers(min_value=1, max_value=3))
def test_no_sequence_breaks_the_rules(sequence: list[Event], needed: int) -> None:
    state = _request(needed)
    was_approved = False
    for event in sequence:
        after = step(state, event)
        if isinstance(after, Refused):
            continue
        assert state.requester not in after.approvers
        assert len(after.approvers) == len(set(after.approvers))
        if after.status is RequestStatus.APPROVED and state.status is RequestStatus.REQUESTED:
            assert len(after.approvers) >= needed
        if after.status is RequestStatus.RUNNING:
            assert state.status is RequestStatus.APPROVED and isinstance(event, Start)
            assert event.at < state.expires_at
            was_approved = True
        if state.status.terminal:
            raise AssertionError(f"{state.status} changed by {event}")
        state = after
    if state.status in (RequestStatus.SUCCEEDED, RequestStatus.FAILED, RequestStatus.INTERRUPTED):
        assert was_approved
