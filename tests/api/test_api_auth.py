"""Who gets in: sessions, login failures, CSRF, API tokens, roles, and what is audited."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from api.deps import PageUser
from models.records import AuditEvent
from models.users import ApiToken, User
from tests.api.api_world import anonymous, api_app, api_world, login  # noqa: F401  (fixtures)
from tests.api.api_world import PASSWORD, csrf_from_login_page, product_body


def audit_rows(engine, action: str) -> list[AuditEvent]:
    with Session(engine) as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def test_anonymous_json_request_is_401_with_a_json_body(anonymous):
    r = anonymous.get("/api/v1/products")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/json")
    assert "not authenticated" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert anonymous.post("/api/v1/products", json={}).status_code == 401  # 401 before CSRF or validation


def test_anonymous_page_request_redirects_to_login_with_next(api_app):
    probe = APIRouter()

    @probe.get("/probe/page")
    def page(user: PageUser) -> dict:
        return {"user": user.username}

    api_app.include_router(probe)
    with TestClient(api_app) as client:
        r = client.get("/probe/page?tab=2", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=%2Fprobe%2Fpage%3Ftab%3D2"


def test_wrong_password_is_refused_generically_and_audited(anonymous, engine):
    token = csrf_from_login_page(anonymous)
    wrong = anonymous.post("/login", data={"username": "sam", "password": "nope", "csrf_token": token},
                           follow_redirects=False)
    unknown = anonymous.post("/login", data={"username": "ghost", "password": "nope", "csrf_token": token},
                             follow_redirects=False)
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert "invalid username or password" in r.text
    assert anonymous.get("/api/v1/me").status_code == 401
    failed = audit_rows(engine, "login_failed")
    assert [(e.actor, e.reason) for e in failed] == [("sam", "wrong password"), ("ghost", "unknown user")]


def test_login_sets_a_session_rotates_csrf_and_is_audited(anonymous, engine):
    before = csrf_from_login_page(anonymous)
    r = anonymous.post("/login", data={"username": "sam", "password": PASSWORD, "csrf_token": before,
                                       "next": "/api/v1/me"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/api/v1/me"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    me = anonymous.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["username"] == "sam" and me.json()["groups"] == ["sales"]
    assert "password_hash" not in me.json()
    assert me.headers["X-CSRF-Token"] != before  # a token planted before login is worthless after it
    assert [e.actor for e in audit_rows(engine, "login")] == ["sam"]


def test_login_never_redirects_off_site(anonymous):
    token = csrf_from_login_page(anonymous)
    r = anonymous.post("/login", data={"username": "sam", "password": PASSWORD, "csrf_token": token,
                                       "next": "//evil.example/x"}, follow_redirects=False)
    assert r.headers["location"] == "/"


def test_login_form_without_or_with_a_wrong_csrf_token_is_403(anonymous):
    csrf_from_login_page(anonymous)
    missing = anonymous.post("/login", data={"username": "sam", "password": PASSWORD})
    forged = anonymous.post("/login", data={"username": "sam", "password": PASSWORD, "csrf_token": "forged"})
    assert missing.status_code == 403 and forged.status_code == 403
    assert anonymous.get("/api/v1/me").status_code == 401


def test_cookie_session_writes_need_the_csrf_token(login, api_world):
    client = login("pia")
    token = client.headers.pop("X-CSRF-Token")
    refused = client.post("/api/v1/products", json=product_body(api_world, "CSRF-1"))
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = client.post("/api/v1/products", json=product_body(api_world, "CSRF-1"), headers={"X-CSRF-Token": "x"})
    assert wrong.status_code == 403
    ok = client.post("/api/v1/products", json=product_body(api_world, "CSRF-1"), headers={"X-CSRF-Token": token})
    assert ok.status_code == 201
    # A form POST (logout) without the field is refused too, and the session survives it.
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/api/v1/me").status_code == 200
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/api/v1/me").status_code == 401


def test_api_token_works_until_revoked(login, api_app, engine, api_world):
    owner = login("pia")
    created = owner.post("/api/v1/tokens", json={"name": "erp sync"})
    assert created.status_code == 201
    body = created.json()
    secret = body["token"]
    assert secret.startswith("tf_") and body["prefix"] == secret[:12]
    listed = owner.get("/api/v1/tokens").json()
    assert [t["name"] for t in listed] == ["erp sync"] and "token" not in listed[0]
    with Session(engine) as s:  # only the hash is stored
        row = s.get(ApiToken, body["id"])
        assert row.token_sha256 != secret and secret not in row.token_sha256 and row.last_used_at is None

    machine = TestClient(api_app, headers={"Authorization": f"Bearer {secret}"})
    assert machine.get("/api/v1/me").json()["username"] == "pia"
    # Bearer requests need no CSRF token: a cross-site page cannot send the header.
    assert machine.post("/api/v1/products", json=product_body(api_world, "TOK-1")).status_code == 201
    with Session(engine) as s:
        assert s.get(ApiToken, body["id"]).last_used_at is not None

    assert TestClient(api_app, headers={"Authorization": "Bearer tf_wrong"}).get("/api/v1/me").status_code == 401
    assert TestClient(api_app, headers={"Authorization": "Basic abc"}).get("/api/v1/me").status_code == 401
    # Someone else cannot revoke it (not even see it); the owner can.
    assert login("sam").delete(f"/api/v1/tokens/{body['id']}").status_code == 404
    revoked = owner.delete(f"/api/v1/tokens/{body['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert machine.get("/api/v1/me").status_code == 401
    assert [e.actor for e in audit_rows(engine, "token_create")] == ["pia"]
    assert [e.entity_id for e in audit_rows(engine, "token_revoke")] == [str(body["id"])]


def test_role_refusal_is_403_and_admin_passes(login, api_world):
    sales = login("sam")
    r = sales.post("/api/v1/products", json=product_body(api_world, "ROLE-1"))
    assert r.status_code == 403 and "purchasing" in r.json()["detail"]
    assert sales.get("/api/v1/users").status_code == 403
    assert login("ada").post("/api/v1/products", json=product_body(api_world, "ROLE-1")).status_code == 201


def test_deactivated_user_loses_session_and_tokens(login, api_app, engine):
    sam = login("sam")
    secret = sam.post("/api/v1/tokens", json={"name": "script"}).json()["token"]
    admin = login("ada")
    r = admin.post(f"/api/v1/users/{sam.get('/api/v1/me').json()['id']}/deactivate")
    assert r.status_code == 200 and r.json()["active"] is False
    assert sam.get("/api/v1/me").status_code == 401
    assert TestClient(api_app, headers={"Authorization": f"Bearer {secret}"}).get("/api/v1/me").status_code == 401
    again = TestClient(api_app)
    token = csrf_from_login_page(again)
    refused = again.post("/login", data={"username": "sam", "password": PASSWORD, "csrf_token": token})
    assert refused.status_code == 401
    assert audit_rows(engine, "login_failed")[-1].reason == "inactive user"


def test_password_change_ends_other_sessions(login, api_world):
    sam = login("sam")
    admin = login("ada")
    r = admin.patch(f"/api/v1/users/{api_world.users['sam']}", json={"password": "a-brand-new-password"})
    assert r.status_code == 200
    assert sam.get("/api/v1/me").status_code == 401
    assert login("sam", "a-brand-new-password").get("/api/v1/me").status_code == 200


def test_admin_manages_users_and_groups(login, engine):
    admin = login("ada")
    bad = admin.post("/api/v1/users", json={"username": "new user", "full_name": "N", "email": "x",
                                            "password": "short", "groups": ["sales", "wizard"]})
    assert bad.status_code == 422
    fields = {e["loc"][-1] for e in bad.json()["detail"]}
    assert {"username", "email", "password", "groups"} <= fields
    made = admin.post("/api/v1/users", json={"username": "nina", "full_name": "Nina Buyer",
                                             "email": "nina@example.com", "password": "long-enough-pw",
                                             "groups": ["purchasing", "quality"]})
    assert made.status_code == 201, made.text
    user = made.json()
    assert user["groups"] == ["purchasing", "quality"] and "password" not in user
    assert admin.post("/api/v1/users", json={"username": "nina", "full_name": "N", "email": "n@example.com",
                                             "password": "long-enough-pw"}).status_code == 409
    regrouped = admin.put(f"/api/v1/users/{user['id']}/groups", json={"groups": ["purchasing-manager"]})
    assert regrouped.json()["groups"] == ["purchasing-manager"]
    listed = admin.get("/api/v1/users", params={"group": "purchasing-manager"}).json()
    assert [u["username"] for u in listed["items"]] == ["nina"] and listed["total"] == 1
    nina = login("nina", "long-enough-pw")
    assert nina.get("/api/v1/me").json()["groups"] == ["purchasing-manager"]
    with Session(engine) as s:
        stored = s.scalar(select(User).where(User.username == "nina"))
        assert stored.password_hash.startswith("$argon2")
    assert admin.post(f"/api/v1/users/{admin.get('/api/v1/me').json()['id']}/deactivate").status_code == 409
