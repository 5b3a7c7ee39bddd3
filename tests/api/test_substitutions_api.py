"""Out of office through the JSON API (/api/v1/substitutions) and the /out-of-office page: who may do what, every
refusal as a 422 naming the field, CSRF on cookie sessions, and that the rows the API writes are the ones
resolve_candidates follows when a task opens."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import Session

from models.approvals import Substitution
from models.common import utcnow
from models.records import AuditEvent
from models.substitutions import SubstitutionRefused, create_substitution
from models.users import User
from tests.api.api_world import (  # noqa: F401  (fixtures)
    CSRF_INPUT,
    anonymous,
    api_app,
    api_world,
    as_user,
    login,
)

URL = "/api/v1/substitutions"


@pytest.fixture(autouse=True)
def substitution_routes(api_app):
    """The app under test (api/main.py includes the substitution routers)."""
    return api_app


def iso(moment: datetime) -> str:
    return moment.isoformat()


def period(days_from_now: float = 1, length_days: float = 7) -> dict:
    start = utcnow() + timedelta(days=days_from_now)
    return {"starts_at": iso(start), "ends_at": iso(start + timedelta(days=length_days))}


def local(moment: datetime) -> str:
    """What an <input type="datetime-local"> sends."""
    return moment.strftime("%Y-%m-%dT%H:%M")


def refusal(response, field: str) -> str:
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert [e["loc"] for e in errors] == [["body", field]], errors
    return errors[0]["msg"]


# ------------------------------------------------------------------------------------------- create and read


def test_anyone_names_a_substitute_for_themselves(as_user, engine):
    sam = as_user("sam")
    created = sam.post(URL, json={"substitute": "cora", **period(days_from_now=-0.5)})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["username"], body["substitute"], body["created_by"], body["state"]) == (
        "sam", "cora", "sam", "current")
    assert sam.get(f"{URL}/{body['id']}").json() == body
    with Session(engine) as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "substitution.create")).one()
        assert (event.actor, event.entity_id, event.data["substitute"]) == ("sam", str(body["id"]), "cora")


def test_times_without_an_offset_are_utc_and_offsets_are_converted(as_user):
    sam = as_user("sam")
    naive = sam.post(URL, json={"substitute": "cora", "starts_at": "2099-03-01T08:00:00",
                                "ends_at": "2099-03-02T08:00:00"})
    assert naive.status_code == 201, naive.text
    assert datetime.fromisoformat(naive.json()["starts_at"]) == datetime(2099, 3, 1, 8, tzinfo=UTC)
    shifted = sam.post(URL, json={"substitute": "cora", "starts_at": "2099-04-01T08:00:00+02:00",
                                  "ends_at": "2099-04-02T08:00:00+02:00"})
    assert shifted.status_code == 201, shifted.text
    assert datetime.fromisoformat(shifted.json()["starts_at"]) == datetime(2099, 4, 1, 6, tzinfo=UTC)


def test_only_admins_name_a_substitute_for_someone_else(as_user):
    refused = as_user("sam").post(URL, json={"username": "pia", "substitute": "cora", **period()})
    assert refused.status_code == 403
    assert "admin" in refused.json()["detail"]

    by_admin = as_user("ada").post(URL, json={"username": "pia", "substitute": "cora", **period()})
    assert by_admin.status_code == 201, by_admin.text
    assert (by_admin.json()["username"], by_admin.json()["created_by"]) == ("pia", "ada")
    # Pia entered nothing, but it is her absence: she sees it and may remove it.
    assert [r["id"] for r in as_user("pia").get(URL).json()["items"]] == [by_admin.json()["id"]]


def test_the_list_shows_mine_what_i_stand_in_for_and_admins_see_all(as_user):
    sam, cora, pia, ada = as_user("sam"), as_user("cora"), as_user("pia"), as_user("ada")
    mine = sam.post(URL, json={"substitute": "cora", **period(days_from_now=2)}).json()
    later = sam.post(URL, json={"substitute": "fin", **period(days_from_now=20)}).json()
    others = pia.post(URL, json={"substitute": "wes", **period(days_from_now=1)}).json()
    with Session(sam.app.state.engine) as s, s.begin():  # a period that is over (the API refuses to add one)
        s.add(Substitution(username="sam", substitute="wes", starts_at=utcnow() - timedelta(days=9),
                           ends_at=utcnow() - timedelta(days=2), created_by="sam"))

    listed = sam.get(URL).json()
    assert [r["id"] for r in listed["items"]] == [mine["id"], later["id"]] and listed["total"] == 2
    assert [r["state"] for r in listed["items"]] == ["upcoming", "upcoming"]
    with_past = sam.get(URL, params={"include_past": True}).json()
    assert with_past["total"] == 3 and with_past["items"][0]["state"] == "past"

    assert [r["id"] for r in cora.get(URL).json()["items"]] == [mine["id"]]  # she stands in
    assert [r["id"] for r in pia.get(URL).json()["items"]] == [others["id"]]
    assert pia.get(f"{URL}/{mine['id']}").status_code == 404
    assert ada.get(URL).json()["total"] == 3
    assert [r["id"] for r in ada.get(URL, params={"username": "pia"}).json()["items"]] == [others["id"]]


def test_anonymous_callers_get_401(anonymous):
    assert anonymous.get(URL).status_code == 401
    assert anonymous.post(URL, json={"substitute": "cora", **period()}).status_code == 401


# ------------------------------------------------------------------------------------------- refusals


def test_a_substitute_who_is_no_active_user_is_refused(as_user, engine):
    sam = as_user("sam")
    assert "no active user 'nobody'" in refusal(sam.post(URL, json={"substitute": "nobody", **period()}),
                                                "substitute")
    with Session(engine) as s, s.begin():
        s.scalars(select(User).where(User.username == "wes")).one().active = False
    assert "no active user 'wes'" in refusal(sam.post(URL, json={"substitute": "wes", **period()}), "substitute")
    assert "no active user" in refusal(
        as_user("ada").post(URL, json={"username": "ghost", "substitute": "cora", **period()}), "username")


def test_yourself_as_substitute_is_refused(as_user):
    message = refusal(as_user("sam").post(URL, json={"substitute": "sam", **period()}), "substitute")
    assert "yourself" in message


def test_an_end_before_the_start_or_in_the_past_is_refused(as_user):
    sam = as_user("sam")
    start = utcnow() + timedelta(days=3)
    backwards = {"substitute": "cora", "starts_at": iso(start), "ends_at": iso(start - timedelta(hours=1))}
    assert "after the start" in refusal(sam.post(URL, json=backwards), "ends_at")
    same = {"substitute": "cora", "starts_at": iso(start), "ends_at": iso(start)}
    assert "after the start" in refusal(sam.post(URL, json=same), "ends_at")
    over = {"substitute": "cora", **period(days_from_now=-10, length_days=2)}
    assert "already over" in refusal(sam.post(URL, json=over), "ends_at")


def test_overlapping_periods_of_one_person_are_refused(as_user):
    sam = as_user("sam")
    start = utcnow() + timedelta(days=5)
    first = sam.post(URL, json={"substitute": "cora", "starts_at": iso(start),
                                "ends_at": iso(start + timedelta(days=5))})
    assert first.status_code == 201
    overlapping = {"substitute": "fin", "starts_at": iso(start + timedelta(days=4)),
                   "ends_at": iso(start + timedelta(days=8))}
    message = refusal(sam.post(URL, json=overlapping), "starts_at")
    assert "overlaps your period" in message and "cora" in message
    inside = {"substitute": "fin", "starts_at": iso(start + timedelta(days=1)),
              "ends_at": iso(start + timedelta(days=2))}
    refusal(sam.post(URL, json=inside), "starts_at")
    # Touching is not overlapping: the next period may start when the first ends.
    after = {"substitute": "fin", "starts_at": iso(start + timedelta(days=5)),
             "ends_at": iso(start + timedelta(days=6))}
    assert sam.post(URL, json=after).status_code == 201
    # Someone else may be away at the same time.
    assert as_user("pia").post(URL, json={"substitute": "cora", **overlapping}).status_code == 201


def test_a_chain_that_loops_back_to_the_person_is_refused(as_user):
    sam, cora, pia = as_user("sam"), as_user("cora"), as_user("pia")
    start = utcnow() + timedelta(days=10)
    window = {"starts_at": iso(start), "ends_at": iso(start + timedelta(days=7))}
    assert sam.post(URL, json={"substitute": "cora", **window}).status_code == 201

    direct = refusal(cora.post(URL, json={"substitute": "sam", **window}), "substitute")
    assert "loop back to cora" in direct and "cora → sam → cora" in direct

    assert cora.post(URL, json={"substitute": "pia", **window}).status_code == 201
    longer = refusal(pia.post(URL, json={"substitute": "sam", **window}), "substitute")
    assert "pia → sam → cora → pia" in longer


def test_periods_that_never_meet_in_time_are_no_loop_but_a_partial_loop_is(as_user):
    sam, cora, pia = as_user("sam"), as_user("cora"), as_user("pia")
    day0 = (utcnow() + timedelta(days=30)).replace(microsecond=0)

    def days(a: float, b: float) -> dict:
        return {"starts_at": iso(day0 + timedelta(days=a)), "ends_at": iso(day0 + timedelta(days=b))}

    assert sam.post(URL, json={"substitute": "cora", **days(0, 5)}).status_code == 201
    # Cora is away right after Sam is back: at no moment do the two hand over to each other.
    assert cora.post(URL, json={"substitute": "sam", **days(5, 9)}).status_code == 201
    # Pia -> Sam -> Cora (days 4-5) -> Sam (from day 5) ...: never back to Pia.
    assert pia.post(URL, json={"substitute": "sam", **days(4, 12)}).status_code == 201
    # Cora -> Pia on days 0-2: Pia is not away then.
    assert cora.post(URL, json={"substitute": "pia", **days(0, 2)}).status_code == 201
    # Cora -> Pia on days 3-5 loops on day 4 only (Pia -> Sam -> Cora); still refused, and the message says when.
    message = refusal(cora.post(URL, json={"substitute": "pia", **days(3, 5)}), "substitute")
    assert "cora → pia → sam → cora" in message
    assert (day0 + timedelta(days=4)).strftime("%Y-%m-%d %H:%M") in message
    assert (day0 + timedelta(days=5)).strftime("%Y-%m-%d %H:%M") in message


# ------------------------------------------------------------------------------------------- delete


def test_delete_by_the_person_away_the_entrant_or_an_admin(as_user, engine):
    sam, cora, pia, ada = as_user("sam"), as_user("cora"), as_user("pia"), as_user("ada")
    own = sam.post(URL, json={"substitute": "cora", **period(days_from_now=1)}).json()
    assert cora.delete(f"{URL}/{own['id']}").status_code == 403  # the substitute may not
    assert pia.delete(f"{URL}/{own['id']}").status_code == 404  # a stranger does not even see it
    assert sam.delete(f"{URL}/{own['id']}").status_code == 204
    assert sam.get(f"{URL}/{own['id']}").status_code == 404
    assert sam.delete(f"{URL}/{own['id']}").status_code == 404

    pias = pia.post(URL, json={"substitute": "wes", **period(days_from_now=1)}).json()
    assert ada.delete(f"{URL}/{pias['id']}").status_code == 204
    with Session(engine) as s:
        deleted = s.scalars(select(AuditEvent.actor).where(AuditEvent.action == "substitution.delete")).all()
        assert sorted(deleted) == ["ada", "sam"]


# ------------------------------------------------------------------------------------------- CSRF and the page


def test_cookie_sessions_need_the_csrf_token_to_write(login):
    sam = login("sam")
    token = sam.headers.pop("X-CSRF-Token")
    assert sam.post(URL, json={"substitute": "cora", **period()}).status_code == 403
    sam.headers["X-CSRF-Token"] = token
    assert sam.post(URL, json={"substitute": "cora", **period()}).status_code == 201


def test_the_page_needs_a_login(anonymous):
    page = anonymous.get("/out-of-office", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")


def test_the_page_lists_and_adds_and_removes_periods(login, engine):
    sam = login("sam")
    page = sam.get("/out-of-office")
    assert page.status_code == 200
    assert 'id="ooo-form"' in page.text and "No current or upcoming periods" in page.text
    token = CSRF_INPUT.search(page.text).group(1)
    assert 'name="username"' not in page.text  # only admins name someone else

    start = (utcnow() + timedelta(days=2)).replace(second=0, microsecond=0)
    form = {"csrf_token": token, "substitute": "cora", "starts_at": local(start),
            "ends_at": local(start + timedelta(days=3))}
    saved = sam.post("/out-of-office", data=form, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == "/out-of-office"
    listed = sam.get("/out-of-office").text
    assert "cora stands in for sam" in listed  # the flash
    assert 'id="ooo-table"' in listed and start.strftime("%Y-%m-%d %H:%M") in listed
    with Session(engine) as s:
        row = s.scalars(select(Substitution)).one()
        assert (row.username, row.substitute, row.starts_at) == ("sam", "cora", start)

    clash = sam.post("/out-of-office", data={**form, "substitute": "fin"})
    assert clash.status_code == 422
    assert 'id="err-starts_at"' in clash.text and "overlaps your period" in clash.text
    assert 'value="fin"' in clash.text  # what was typed is kept

    missing = sam.post("/out-of-office", data={**form, "substitute": "", "ends_at": "soon"})
    assert missing.status_code == 422
    assert 'id="err-substitute"' in missing.text and 'id="err-ends_at"' in missing.text

    no_token = sam.post("/out-of-office", data={k: v for k, v in form.items() if k != "csrf_token"},
                        headers={"X-CSRF-Token": ""})
    assert no_token.status_code == 403

    removed = sam.post(f"/out-of-office/{row.id}/delete", data={"csrf_token": token}, follow_redirects=False)
    assert removed.status_code == 303
    after = sam.get("/out-of-office").text
    assert "Removed: cora no longer stands in for sam" in after and 'id="ooo-table"' not in after


def test_admins_use_the_page_for_anyone(login, engine):
    ada = login("ada")
    page = ada.get("/out-of-office")
    assert 'name="username"' in page.text
    token = CSRF_INPUT.search(page.text).group(1)
    start = utcnow() + timedelta(days=1)
    done = ada.post("/out-of-office", follow_redirects=False, data={
        "csrf_token": token, "username": "pia", "substitute": "wes",
        "starts_at": local(start), "ends_at": local(start + timedelta(days=1)),
    })
    assert done.status_code == 303
    with Session(engine) as s:
        assert [(r.username, r.substitute, r.created_by) for r in s.scalars(select(Substitution))] == [
            ("pia", "wes", "ada")]


def test_a_non_admin_cannot_slip_a_username_into_the_form(login, engine):
    sam = login("sam")
    token = CSRF_INPUT.search(sam.get("/out-of-office").text).group(1)
    start = utcnow() + timedelta(days=1)
    refused = sam.post("/out-of-office", data={
        "csrf_token": token, "username": "pia", "substitute": "wes",
        "starts_at": local(start), "ends_at": local(start + timedelta(days=1)),
    })
    assert refused.status_code == 422 and "only an admin" in refused.text
    with Session(engine) as s:
        assert s.scalars(select(Substitution)).first() is None


# ------------------------------------------------------------------------------------------- the workflow side


def test_resolve_candidates_follows_the_periods_the_api_wrote(as_user, engine):
    from activities.approvals import ApprovalActivities
    from workflows.contracts import ResolveCandidatesInput

    sam, cora = as_user("sam"), as_user("cora")
    assert sam.post(URL, json={"substitute": "cora", **period(days_from_now=-1, length_days=3)}).status_code == 201
    # Cora is away too: her own substitute follows (transitively).
    assert cora.post(URL, json={"substitute": "fin", **period(days_from_now=-1, length_days=3)}).status_code == 201
    resolved = ApprovalActivities(engine).resolve_candidates(ResolveCandidatesInput((), ("sales",), utcnow()))
    assert "fin" in resolved.substitutes
    later = ApprovalActivities(engine).resolve_candidates(
        ResolveCandidatesInput((), ("sales",), utcnow() + timedelta(days=5)))
    assert later.substitutes == ()


# ------------------------------------------------------------------------------------------- PostgreSQL


def test_two_requests_at_once_cannot_build_a_loop_on_postgres(pg_engine, monkeypatch):
    import models.substitutions as rules

    with Session(pg_engine) as s, s.begin():
        for name in ("amy", "bob"):
            s.add(User(username=name, full_name=name.title(), email=f"{name}@example.com", password_hash="!"))
    start = utcnow() + timedelta(days=1)
    checked = threading.Barrier(2)
    original = rules.check_substitution

    def check_then_wait_for_the_other(*args, **kwargs):
        # Without the lock both requests would pass their checks here before either writes (then both insert:
        # amy -> bob and bob -> amy, a loop). With it, the second never gets here while the first is open, so
        # the first waits out its second and goes on.
        original(*args, **kwargs)
        try:
            checked.wait(timeout=1)
        except threading.BrokenBarrierError:
            pass

    monkeypatch.setattr(rules, "check_substitution", check_then_wait_for_the_other)
    outcomes: list[str] = []

    def away(username: str, substitute: str) -> None:
        with Session(pg_engine) as s, s.begin():
            try:
                create_substitution(s, username=username, substitute=substitute, starts_at=start,
                                    ends_at=start + timedelta(days=2), created_by=username)
                outcomes.append("created")
            except SubstitutionRefused as refused:
                outcomes.append(f"refused {refused.field}")

    threads = [threading.Thread(target=away, args=pair) for pair in (("amy", "bob"), ("bob", "amy"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["created", "refused substitute"]
    with Session(pg_engine) as s:
        assert len(s.scalars(select(Substitution)).all()) == 1
