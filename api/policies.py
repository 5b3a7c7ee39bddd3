"""Approval policies as JSON under /api/v1/policies: list, read, draft, validate, diff, simulate, publish, retire,
export and import.

Everyone logged in may read; process designers (and admins) write. Publishing needs a second person: the last
author of a draft is refused with 403 (four eyes on the rules themselves). A policy with problems is a 422 that
lists every problem with `where` (a path into the body, e.g. "rules[2].conditions[0].value") and `reason`; an
operation the version's state does not allow (editing a published version, publishing twice) is a 409.

The write operations are plain functions (`create_draft_as`, `update_draft_as`, `publish_as`, `retire_as`,
`discard_as`) that the HTML pages (api/policy_pages.py) call too, so both paths share one code path and one audit
trail: every change and every refused publish or edit is an audit event.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from api.audit import audit
from api.deps import CsrfProtected, CurrentUser, SessionDep, require_roles
from models.approval_policies import PolicyError, body_from_json, body_to_json, policy_in_force
from models.approval_policies import create_draft as store_create_draft
from models.approval_policies import publish as store_publish
from models.approval_policies import retire as store_retire
from models.approval_policies import update_draft as store_update_draft
from models.approvals import ApprovalPolicy, PolicyStatus
from models.policy_designer import (
    DEFAULT_SIMULATION_LIMIT,
    MAX_SIMULATION_LIMIT,
    Baseline,
    KindOverview,
    PolicyDiff,
    Simulation,
    VersionSummary,
    check,
    comparison_base,
    delete_draft,
    diff,
    export_policy,
    get_version,
    hit_policy_explained,
    import_body,
    in_force_version,
    kind_label,
    list_kinds,
    parse_body,
    problem_dicts,
    simulate,
    summarize,
    today,
)
from models.users import User
from workflows.approval_rules import DocumentKind, PolicyBody, PolicyProblem

DESIGNER = "process-designer"
ENTITY = "approval_policy"

router = APIRouter(prefix="/api/v1/policies", tags=["policies"], dependencies=[CsrfProtected])
Designer = Annotated[User, Depends(require_roles(DESIGNER))]


# ------------------------------------------------------------------------------------------- data models


class Problem(BaseModel):
    where: str
    reason: str


class ProblemReport(BaseModel):
    detail: str
    problems: list[Problem]


class Message(BaseModel):
    detail: str


class ValidationResult(BaseModel):
    valid: bool
    problems: list[Problem]


class PolicyList(BaseModel):
    as_of: date
    kinds: list[KindOverview]


class PolicyVersionPublic(VersionSummary):
    kind_label: str
    hit_policy_text: str
    body: dict[str, Any]


class DraftCreate(BaseModel):
    """A new draft: a whole body, or a copy of an existing version of the same kind (`copy_of`)."""

    body: dict[str, Any] | None = None
    copy_of: int | None = Field(default=None, ge=1, description="version to copy the rules from")
    note: str = Field(default="", max_length=500)
    effective_from: date | None = None


class DraftUpdate(BaseModel):
    """Replaces a draft's body, note and effective date (an omitted effective date means: from publication)."""

    body: dict[str, Any]
    note: str | None = Field(default=None, max_length=500)
    effective_from: date | None = None


class SimulateRequest(BaseModel):
    body: dict[str, Any]
    limit: int = Field(default=DEFAULT_SIMULATION_LIMIT, ge=1, le=MAX_SIMULATION_LIMIT)
    baseline: Baseline = "pinned"


class DiffRequest(BaseModel):
    body: dict[str, Any]
    against: int | None = Field(default=None, ge=1, description="version to compare with; default: the one in force")


REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"model": Message, "description": "not allowed (four eyes: the author cannot publish)"},
    404: {"model": Message, "description": "no such version"},
    409: {"model": Message, "description": "the version's state does not allow this"},
    422: {"model": ProblemReport, "description": "the policy has problems; each with where and reason"},
}


# ------------------------------------------------------------------------------------------- operations


class Refusal(Exception):
    """An operation refused: HTTP status, a clear message, and the policy's problems when there are any."""

    def __init__(self, status_code: int, message: str, problems: list[PolicyProblem] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.problems = problems or []

    def response(self) -> JSONResponse:
        content: dict[str, Any] = {"detail": self.message}
        if self.status_code == 422 or self.problems:
            content["problems"] = problem_dicts(self.problems)
        return JSONResponse(content, status_code=self.status_code)


def entity_id(policy: ApprovalPolicy) -> str:
    return f"{policy.kind}:v{policy.version}"


def find_version(session: Session, kind: str, version: int) -> ApprovalPolicy:
    policy = get_version(session, kind, version)
    if policy is None:
        raise Refusal(404, f"no {kind} policy version {version}")
    return policy


def checked_body(session: Session, data: Any, kind: str) -> PolicyBody:
    """Parse and fully validate a body for `kind`; Refusal 422 with every problem otherwise."""
    try:
        body = parse_body(data)
    except PolicyError as exc:
        raise Refusal(422, str(exc), exc.problems) from None
    problems = check(session, body, kind=kind)
    if problems:
        raise Refusal(422, f"the policy has {len(problems)} problem{'s' if len(problems) != 1 else ''}", problems)
    return body


def _store(call, *args, **kw) -> ApprovalPolicy:
    try:
        return call(*args, **kw)
    except PolicyError as exc:
        raise Refusal(422 if exc.problems else 409, str(exc), exc.problems) from None


def create_draft_as(session: Session, user: User, kind: str, *, body: Any = None, copy_of: int | None = None,
                    note: str = "", effective_from: date | None = None, imported: bool = False) -> ApprovalPolicy:
    if body is None and copy_of is None:
        raise Refusal(422, "give the draft a body, or name a version to copy (copy_of)",
                      [PolicyProblem("body", "a body or copy_of is required")])
    source = None
    if body is None:
        source = find_version(session, kind, copy_of)
        body = source.body
        note = note or f"copy of version {source.version}"
    parsed = checked_body(session, body, kind)
    policy = _store(store_create_draft, session, parsed, author=user.username, note=note,
                    effective_from=effective_from)
    audit(session, actor=user.username, action="policy_import" if imported else "policy_create", entity_kind=ENTITY,
          entity_id=entity_id(policy), data={"copy_of": source.version if source else None, "note": note,
                                             "body_sha256": policy.body_sha256,
                                             "effective_from": effective_from})
    return policy


def update_draft_as(session: Session, user: User, policy: ApprovalPolicy, *, body: Any, note: str | None,
                    effective_from: date | None) -> ApprovalPolicy:
    if policy.status != PolicyStatus.draft:
        message = f"version {policy.version} is {policy.status.value}; only drafts can be edited (copy it to a new draft)"
        audit(session, actor=user.username, action="policy_update_refused", entity_kind=ENTITY,
              entity_id=entity_id(policy), reason=message)
        session.commit()
        raise Refusal(409, message)
    parsed = checked_body(session, body, policy.kind)
    before = policy.body_sha256
    _store(store_update_draft, session, policy, parsed, editor=user.username, note=note, effective_from=effective_from)
    audit(session, actor=user.username, action="policy_update", entity_kind=ENTITY, entity_id=entity_id(policy),
          data={"body_sha256_before": before, "body_sha256": policy.body_sha256, "note": policy.note,
                "effective_from": effective_from})
    return policy


FOUR_EYES = ("you are the author of this version (you wrote its rules last); the author cannot publish it: "
             "another process designer must (four eyes)")


def publish_as(session: Session, user: User, policy: ApprovalPolicy) -> ApprovalPolicy:
    refusal = None
    if policy.status != PolicyStatus.draft:
        refusal = Refusal(409, f"version {policy.version} is already {policy.status.value}; only a draft can be published")
    elif policy.authored_by == user.username:
        refusal = Refusal(403, FOUR_EYES)
    else:
        problems = check(session, body_from_json(policy.body), kind=policy.kind)
        if problems:
            refusal = Refusal(422, "the draft has problems now (a group or user it names is gone?); edit it first",
                              problems)
    if refusal is not None:
        audit(session, actor=user.username, action="policy_publish_refused", entity_kind=ENTITY,
              entity_id=entity_id(policy), reason=refusal.message[:500])
        session.commit()
        raise refusal
    _store(store_publish, session, policy, publisher=user.username)
    audit(session, actor=user.username, action="policy_publish", entity_kind=ENTITY, entity_id=entity_id(policy),
          data={"author": policy.authored_by, "body_sha256": policy.body_sha256,
                "effective_from": policy.effective_from})
    return policy


def retire_as(session: Session, user: User, policy: ApprovalPolicy) -> ApprovalPolicy:
    if policy.status != PolicyStatus.published:
        raise Refusal(409, f"only published versions can be retired; version {policy.version} is {policy.status.value}")
    was_in_force = in_force_version(session, policy.kind) == policy.version
    _store(store_retire, session, policy)
    audit(session, actor=user.username, action="policy_retire", entity_kind=ENTITY, entity_id=entity_id(policy),
          data={"was_in_force": was_in_force, "in_force_now": in_force_version(session, policy.kind)})
    return policy


def discard_as(session: Session, user: User, policy: ApprovalPolicy) -> None:
    ident, sha = entity_id(policy), policy.body_sha256
    try:
        delete_draft(session, policy)
    except PolicyError as exc:
        raise Refusal(409, str(exc)) from None
    audit(session, actor=user.username, action="policy_discard", entity_kind=ENTITY, entity_id=ident,
          data={"body_sha256": sha})


def version_public(session: Session, policy: ApprovalPolicy, as_of: date | None = None) -> PolicyVersionPublic:
    as_of = as_of or today()
    summary = summarize(policy, in_force_version(session, policy.kind, as_of), as_of)
    body = body_from_json(policy.body)
    return PolicyVersionPublic(**summary.model_dump(), kind_label=kind_label(policy.kind),
                               hit_policy_text=hit_policy_explained(body), body=policy.body)


# ------------------------------------------------------------------------------------------- read


@router.get("", response_model=PolicyList)
def list_policies(session: SessionDep, _: CurrentUser, as_of: date | None = None) -> PolicyList:
    """Every document kind with its versions (newest first) and the version in force on `as_of` (default today)."""
    as_of = as_of or today()
    return PolicyList(as_of=as_of, kinds=list_kinds(session, as_of))


@router.post("/validate", response_model=ValidationResult, responses={422: {"model": ProblemReport}})
def validate_body(session: SessionDep, _: CurrentUser, body: Annotated[dict[str, Any], Body()]):
    """Check a policy body without saving it: 200 when it may be saved, else 422 listing every problem."""
    try:
        kind = str(body.get("kind", ""))
        checked_body(session, body, kind if kind in DocumentKind._value2member_map_ else None)
    except Refusal as r:
        return r.response()
    return ValidationResult(valid=True, problems=[])


@router.post("/simulate", response_model=Simulation, responses={422: {"model": ProblemReport}})
def simulate_body(session: SessionDep, _: CurrentUser, request: SimulateRequest):
    """Simulate an unsaved body against the most recent real requests of its kind."""
    try:
        body = checked_body(session, request.body, str(request.body.get("kind", "")))
    except Refusal as r:
        return r.response()
    result = simulate(session, body, request.limit, baseline=request.baseline)
    session.commit()
    return result


@router.get("/{kind}", response_model=KindOverview)
def get_kind(kind: DocumentKind, session: SessionDep, _: CurrentUser, as_of: date | None = None) -> KindOverview:
    return next(k for k in list_kinds(session, as_of) if k.kind == kind.value)


@router.get("/{kind}/in-force", response_model=PolicyVersionPublic, responses={404: {"model": Message}})
def get_in_force(kind: DocumentKind, session: SessionDep, _: CurrentUser, as_of: date | None = None):
    """The version a process starting on `as_of` (default today) would pin."""
    as_of = as_of or today()
    policy = policy_in_force(session, kind.value, as_of)
    if policy is None:
        raise HTTPException(404, f"no published {kind.value} policy is in force on {as_of.isoformat()}")
    return version_public(session, policy, as_of)


@router.get("/{kind}/{version}", response_model=PolicyVersionPublic, responses={404: {"model": Message}})
def get_policy_version(kind: DocumentKind, version: int, session: SessionDep, _: CurrentUser):
    try:
        return version_public(session, find_version(session, kind.value, version))
    except Refusal as r:
        return r.response()


@router.get("/{kind}/{version}/export", responses={404: {"model": Message}})
def export_version(kind: DocumentKind, version: int, session: SessionDep, _: CurrentUser):
    """The version as a JSON document that POST /api/v1/policies/import reads back."""
    try:
        policy = find_version(session, kind.value, version)
    except Refusal as r:
        return r.response()
    return JSONResponse(export_policy(policy), headers={
        "Content-Disposition": f'attachment; filename="policy-{policy.kind}-v{policy.version}.json"'})


@router.get("/{kind}/{version}/diff", response_model=PolicyDiff, responses={404: {"model": Message}})
def diff_version(kind: DocumentKind, version: int, session: SessionDep, _: CurrentUser,
                 against: Annotated[int | None, Query(ge=1, description="default: the version in force")] = None):
    """What this version changes, rule by rule, against `against` (default: the version in force today, else the
    newest published one)."""
    try:
        policy = find_version(session, kind.value, version)
        base = find_version(session, kind.value, against) if against else comparison_base(session, policy)
    except Refusal as r:
        return r.response()
    return diff(body_from_json(base.body) if base else None, body_from_json(policy.body),
                from_version=base.version if base else None, to_version=policy.version)


@router.post("/{kind}/diff", response_model=PolicyDiff, responses={404: {"model": Message}, 422: {"model": ProblemReport}})
def diff_body(kind: DocumentKind, session: SessionDep, _: CurrentUser, request: DiffRequest):
    """What an unsaved body would change against `against` (default: the version in force)."""
    try:
        body = checked_body(session, request.body, kind.value)
        if request.against:
            base = find_version(session, kind.value, request.against)
        else:
            base = policy_in_force(session, kind.value, today())
    except Refusal as r:
        return r.response()
    return diff(body_from_json(base.body) if base else None, body,
                from_version=base.version if base else None, to_version=None)


@router.get("/{kind}/{version}/simulation", response_model=Simulation, responses={404: {"model": Message}})
def simulate_version(kind: DocumentKind, version: int, session: SessionDep, _: CurrentUser,
                     limit: Annotated[int, Query(ge=1, le=MAX_SIMULATION_LIMIT)] = DEFAULT_SIMULATION_LIMIT,
                     baseline: Baseline = "pinned"):
    """Replay this version (typically a draft) against the `limit` most recent real requests of its kind; for each,
    the routing then (the version it pinned, or with baseline=in_force the version in force today) and now."""
    try:
        policy = find_version(session, kind.value, version)
    except Refusal as r:
        return r.response()
    result = simulate(session, body_from_json(policy.body), limit, baseline=baseline, draft_version=policy.version)
    session.commit()
    return result


# ------------------------------------------------------------------------------------------- write


@router.post("/import", response_model=PolicyVersionPublic, status_code=status.HTTP_201_CREATED,
             responses=REFUSALS)
def import_policy(session: SessionDep, user: Designer, document: Annotated[dict[str, Any], Body()],
                  note: Annotated[str | None, Query(max_length=500)] = None):
    """A new draft from an exported document (GET .../export) or a bare body; its kind says where it goes."""
    try:
        body = import_body(document)
        source = f"{document.get('kind')} v{document.get('version')}" if "format" in document else "a JSON body"
        policy = create_draft_as(session, user, body.kind.value, body=body_to_json(body),
                                 note=note if note is not None else f"imported from {source}"[:500],
                                 effective_from=None, imported=True)
    except PolicyError as exc:
        return Refusal(422, str(exc), exc.problems).response()
    except Refusal as r:
        return r.response()
    result = version_public(session, policy)
    session.commit()
    return result


@router.post("/{kind}/drafts", response_model=PolicyVersionPublic, status_code=status.HTTP_201_CREATED,
             responses=REFUSALS)
def create_policy_draft(kind: DocumentKind, request: DraftCreate, session: SessionDep, user: Designer):
    """A new draft version (the next number for the kind), from a body or as a copy of `copy_of`."""
    try:
        policy = create_draft_as(session, user, kind.value, body=request.body, copy_of=request.copy_of,
                                 note=request.note, effective_from=request.effective_from)
    except Refusal as r:
        return r.response()
    result = version_public(session, policy)
    session.commit()
    return result


@router.put("/{kind}/{version}", response_model=PolicyVersionPublic, responses=REFUSALS)
def update_policy_draft(kind: DocumentKind, version: int, request: DraftUpdate, session: SessionDep, user: Designer):
    """Replace a draft's rules. Published and retired versions never change (409): copy them to a new draft."""
    try:
        policy = find_version(session, kind.value, version)
        update_draft_as(session, user, policy, body=request.body, note=request.note,
                        effective_from=request.effective_from)
    except Refusal as r:
        return r.response()
    result = version_public(session, policy)
    session.commit()
    return result


@router.delete("/{kind}/{version}", status_code=status.HTTP_204_NO_CONTENT, responses=REFUSALS)
def discard_policy_draft(kind: DocumentKind, version: int, session: SessionDep, user: Designer):
    """Discard a draft. Published and retired versions are history and stay (409)."""
    try:
        discard_as(session, user, find_version(session, kind.value, version))
    except Refusal as r:
        return r.response()
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{kind}/{version}/publish", response_model=PolicyVersionPublic, responses=REFUSALS)
def publish_policy(kind: DocumentKind, version: int, session: SessionDep, user: Designer):
    """Publish a draft: from its effective date (or now) new processes pin it. The draft's author may not (403)."""
    try:
        policy = publish_as(session, user, find_version(session, kind.value, version))
    except Refusal as r:
        return r.response()
    result = version_public(session, policy)
    session.commit()
    return result


@router.post("/{kind}/{version}/retire", response_model=PolicyVersionPublic, responses=REFUSALS)
def retire_policy(kind: DocumentKind, version: int, session: SessionDep, user: Designer):
    """Retire a published version: new processes stop pinning it (running ones keep it)."""
    try:
        policy = retire_as(session, user, find_version(session, kind.value, version))
    except Refusal as r:
        return r.response()
    result = version_public(session, policy)
    session.commit()
    return result


__all__ = ["router", "Refusal", "create_draft_as", "update_draft_as", "publish_as", "retire_as", "discard_as",
           "version_public", "find_version", "checked_body", "DESIGNER"]
