"""The policy designer pages (HTML): kinds and versions, one version as a readable decision table, a structured
editor for drafts with each problem shown at the rule and field it concerns, the diff to the published version,
the simulation report, and the publish / retire / copy / discard / import forms (all with CSRF tokens).

Writes go through the same functions as the JSON API (api/policies.py), so they share checks and audit events.
The editor works without JavaScript: every rule shows spare condition rows and the form ends with a spare rule;
blank rows are ignored. ui/static/policies.js only hides the spares until asked for and moves rows up and down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlmodel import Session

from api.deps import CsrfProtected, PageUser, SessionDep, current_roles, has_role, require_roles
from api.policies import (
    DESIGNER,
    Refusal,
    create_draft_as,
    discard_as,
    find_version,
    publish_as,
    retire_as,
    update_draft_as,
    version_public,
)
from models.approval_policies import PolicyError, body_from_json, body_to_json, known_groups
from models.approvals import ApprovalPolicy, PolicyStatus
from models.policy_designer import (
    CHANGE_LABELS,
    DEFAULT_SIMULATION_LIMIT,
    FACT_LABELS,
    FACTS,
    HIT_POLICY_LABELS,
    KIND_LABELS,
    MAX_SIMULATION_LIMIT,
    OP_LABELS,
    check,
    comparison_base,
    conditions_text,
    diff,
    hit_policy_explained,
    import_body,
    is_kind,
    kind_label,
    list_kinds,
    parse_body,
    simulate,
    sla_text,
    today,
    value_text,
)
from models.users import User
from ui import TEMPLATES, flash
from workflows.approval_rules import NUMERIC_FACTS, NUMERIC_OPS, TEXT_OPS, ExpiryAction, HitPolicy, PolicyBody, PolicyProblem

router = APIRouter(include_in_schema=False, dependencies=[CsrfProtected])
DesignerPage = Annotated[User, Depends(require_roles(DESIGNER, page=True))]

SPARE_CONDITIONS = 2  # blank condition rows under each rule
NEW_RULE_CONDITIONS = 3
SIMULATION_LIMITS = (50, 200, 500, 1000)
MAX_IMPORT_CHARS = 500_000


# ------------------------------------------------------------------------------------------- helpers


def _render(request: Request, session: Session, name: str, context: dict[str, Any], code: int = 200) -> HTMLResponse:
    session.commit()  # end the read transaction before rendering (SQLite holds its write lock until then)
    context.setdefault("active_nav", "policies")
    return TEMPLATES.TemplateResponse(request=request, name=name, context=context, status_code=code)


def _not_found(request: Request, session: Session, what: str) -> HTMLResponse:
    return _render(request, session, "pages/not_found.html",
                   {"title": "Not found", "what": what, "ident": "", "back": "/policies",
                    "back_label": "Back to policies"}, code=status.HTTP_404_NOT_FOUND)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def _url(policy: ApprovalPolicy, suffix: str = "") -> str:
    return f"/policies/{policy.kind}/{policy.version}{suffix}"


def _is_designer(request: Request) -> bool:
    return has_role(current_roles(request), DESIGNER)


def _version_or_none(session: Session, kind: str, version: str) -> ApprovalPolicy | None:
    if not is_kind(kind) or not (version.isascii() and version.isdigit() and len(version) < 10):
        return None
    try:
        return find_version(session, kind, int(version))
    except Refusal:
        return None


# ------------------------------------------------------------------------------------------- decision table


@dataclass
class TableRow:
    position: int
    rule_id: str
    cells: dict[str, str]  # fact -> "> 10 and ≤ 20"; absent: any value
    step_name: str
    groups: list[str]
    users: list[str]
    sla: str
    expire_action: str
    delegable: bool


@dataclass
class DecisionTable:
    facts: list[str]  # the input columns: facts some rule tests, in the usual order
    rows: list[TableRow]


def decision_table(body: PolicyBody) -> DecisionTable:
    used = {c.fact for r in body.rules for c in r.conditions}
    facts = [f for f in FACTS if f in used] + sorted(used - set(FACTS))
    rows = []
    for i, rule in enumerate(body.rules, 1):
        cells: dict[str, list[str]] = {}
        for c in rule.conditions:
            cells.setdefault(c.fact, []).append(f"{OP_LABELS.get(c.op, c.op)} {value_text(c)}")
        step = rule.step
        rows.append(TableRow(position=i, rule_id=rule.rule_id, cells={k: " and ".join(v) for k, v in cells.items()},
                             step_name=step.name, groups=list(step.candidate_groups), users=list(step.candidate_users),
                             sla=sla_text(step), expire_action=step.sla.expire_action.value, delegable=step.delegable))
    return DecisionTable(facts=facts, rows=rows)


# ------------------------------------------------------------------------------------------- the editor


@dataclass
class EditorCondition:
    index: int
    fact: str = ""
    op: str = ""
    value: str = ""


@dataclass
class EditorRule:
    index: int
    position: str = ""
    rule_id: str = ""
    step_name: str = ""
    groups: list[str] = field(default_factory=list)
    users: str = ""
    remind: str = "24"
    escalate: str = "48"
    escalate_to: list[str] = field(default_factory=list)
    expire: str = "120"
    expire_action: str = ExpiryAction.reject.value
    delegable: bool = True
    removed: bool = False
    conditions: list[EditorCondition] = field(default_factory=list)

    @property
    def blank(self) -> bool:
        return not (self.rule_id.strip() or self.step_name.strip() or self.groups or self.users.strip()
                    or any(c.fact for c in self.conditions))


@dataclass
class Editor:
    hit_policy: str = HitPolicy.first.value
    quorum: str = ""
    note: str = ""
    effective_from: str = ""
    rules: list[EditorRule] = field(default_factory=list)


def _hours(value: int | None) -> str:
    return "" if value is None else str(value)


def editor_from_body(body: PolicyBody, *, note: str = "", effective_from: date | None = None) -> Editor:
    rules = []
    for i, rule in enumerate(body.rules):
        sla = rule.step.sla
        conds = [EditorCondition(j, c.fact, c.op, ", ".join(c.value) if isinstance(c.value, tuple) else str(c.value))
                 for j, c in enumerate(rule.conditions)]
        rules.append(EditorRule(
            index=i, position=str(i + 1), rule_id=rule.rule_id, step_name=rule.step.name,
            groups=list(rule.step.candidate_groups), users=", ".join(rule.step.candidate_users),
            remind=_hours(sla.remind_after_hours), escalate=_hours(sla.escalate_after_hours),
            escalate_to=list(sla.escalate_to_groups), expire=_hours(sla.expire_after_hours),
            expire_action=sla.expire_action.value, delegable=rule.step.delegable, conditions=conds))
    return Editor(hit_policy=body.hit_policy.value, quorum="" if body.quorum is None else str(body.quorum),
                  note=note, effective_from=effective_from.isoformat() if effective_from else "", rules=rules)


def with_spares(editor: Editor) -> Editor:
    """The editor as the form shows it: spare condition rows under every rule and one spare rule at the end."""
    for rule in editor.rules:
        start = max((c.index for c in rule.conditions), default=-1) + 1
        blanks = sum(1 for c in rule.conditions if not c.fact)
        rule.conditions += [EditorCondition(start + k) for k in range(max(0, SPARE_CONDITIONS - blanks))]
    if not editor.rules or not editor.rules[-1].blank:
        index = max((r.index for r in editor.rules), default=-1) + 1
        editor.rules.append(EditorRule(index=index, position=str(len(editor.rules) + 1), escalate="",
                                       conditions=[EditorCondition(k) for k in range(NEW_RULE_CONDITIONS)]))
    return editor


_RULE_KEY = re.compile(r"^r(\d{1,3})\.")
_COND_KEY = re.compile(r"^r(\d{1,3})\.c(\d{1,3})\.(fact|op|value)$")


def editor_from_form(form: Any) -> Editor:
    """The editor exactly as the browser sent it (so a refused form comes back with what was typed)."""
    def one(key: str) -> str:
        value = form.get(key)
        return value.strip() if isinstance(value, str) else ""

    rule_ids = sorted({int(m.group(1)) for k in form.keys() if (m := _RULE_KEY.match(k))})
    rules = []
    for i in rule_ids:
        p = f"r{i}."
        cond_ids = sorted({int(m.group(2)) for k in form.keys() if (m := _COND_KEY.match(k)) and int(m.group(1)) == i})
        conds = [EditorCondition(j, one(f"{p}c{j}.fact"), one(f"{p}c{j}.op"), one(f"{p}c{j}.value")) for j in cond_ids]
        rules.append(EditorRule(
            index=i, position=one(p + "position"), rule_id=one(p + "rule_id"), step_name=one(p + "step_name"),
            groups=[g for g in form.getlist(p + "groups") if isinstance(g, str) and g],
            users=one(p + "users"), remind=one(p + "remind"), escalate=one(p + "escalate"),
            escalate_to=[g for g in form.getlist(p + "escalate_to") if isinstance(g, str) and g],
            expire=one(p + "expire"), expire_action=one(p + "expire_action") or ExpiryAction.reject.value,
            delegable=bool(form.get(p + "delegable")), removed=bool(form.get(p + "remove")), conditions=conds))
    return Editor(hit_policy=one("hit_policy"), quorum=one("quorum"), note=one("note")[:500],
                  effective_from=one("effective_from"), rules=rules)


@dataclass
class FormMap:
    """Where each rule and condition of the built body came from in the form (blank rows are dropped)."""

    rules: list[int] = field(default_factory=list)  # body rule index -> form rule index
    conditions: dict[tuple[int, int], int] = field(default_factory=dict)  # (body rule, body cond) -> form cond


def _number(text: str) -> str:
    """ "50 000" reads as 50000; anything that is still not a number stays as typed, for the error to quote."""
    squeezed = text.replace(" ", "").replace("_", "")
    try:
        Decimal(squeezed)
    except InvalidOperation:
        return text
    return squeezed


def _sort_key(rule: EditorRule) -> tuple:
    try:
        return (float(rule.position), rule.index)
    except ValueError:
        return (float(rule.index + 1), rule.index)


def body_from_editor(editor: Editor, kind: str) -> tuple[dict[str, Any], FormMap, list[PolicyProblem]]:
    """The JSON body the form describes, how to map problems back onto the form, and the problems found while
    reading it (hours or quorum that are not whole numbers)."""
    problems: list[PolicyProblem] = []
    fmap = FormMap()
    rules = []
    for rule in sorted((r for r in editor.rules if not r.removed and not r.blank), key=_sort_key):
        k = len(rules)
        fmap.rules.append(rule.index)
        conds = []
        for cond in (c for c in rule.conditions if c.fact):
            fmap.conditions[(k, len(conds))] = cond.index
            if cond.op in ("in", "not_in"):
                value: Any = [v.strip() for v in cond.value.split(",") if v.strip()]
            elif cond.fact in NUMERIC_FACTS:
                value = _number(cond.value)
            else:
                value = cond.value
            conds.append({"fact": cond.fact, "op": cond.op, "value": value})
        sla: dict[str, Any] = {"escalate_to_groups": rule.escalate_to, "expire_action": rule.expire_action}
        for name, text in (("remind_after_hours", rule.remind), ("escalate_after_hours", rule.escalate),
                           ("expire_after_hours", rule.expire)):
            if not text:
                sla[name] = None
            elif text.isascii() and text.isdigit() and len(text) < 7:
                sla[name] = int(text)
            else:
                sla[name] = None
                problems.append(PolicyProblem(f"rules[{k}].step.sla.{name}", f"{text!r} is not a whole number of hours"))
        rules.append({
            "rule_id": rule.rule_id,
            "conditions": conds,
            "step": {"name": rule.step_name, "candidate_groups": rule.groups,
                     "candidate_users": [u.strip() for u in rule.users.split(",") if u.strip()],
                     "sla": sla, "delegable": rule.delegable},
        })
    quorum: int | None = None
    if editor.quorum:
        if editor.quorum.isascii() and editor.quorum.isdigit() and len(editor.quorum) < 4:
            quorum = int(editor.quorum)
        else:
            problems.append(PolicyProblem("quorum", f"{editor.quorum!r} is not a whole number"))
    if quorum is not None and editor.hit_policy != HitPolicy.collect.value:
        quorum = None  # the quorum box only means something for COLLECT; ignore what was left in it
    return {"kind": kind, "hit_policy": editor.hit_policy, "rules": rules, "quorum": quorum}, fmap, problems


_SLA_FIELDS = {"remind_after_hours": "remind", "escalate_after_hours": "escalate", "expire_after_hours": "expire",
               "escalate_to_groups": "escalate_to", "expire_action": "expire_action"}
_WHERE_RULE = re.compile(r"^rules\[(\d+)\](.*)$")
_WHERE_COND = re.compile(r"^\.conditions\[(\d+)\](?:\.(fact|op|value))?")


def form_key(where: str, fmap: FormMap) -> str:
    """A problem's place in the body ("rules[1].conditions[0].value") as the key of the form field it concerns
    ("r3.c0.value"); a rule-level problem maps to the rule ("r3")."""
    m = _WHERE_RULE.match(where)
    if not m:
        return {"body": "form"}.get(where, where)
    k, rest = int(m.group(1)), m.group(2)
    if k >= len(fmap.rules):
        return "rules"
    r = f"r{fmap.rules[k]}"
    if (c := _WHERE_COND.match(rest)) is not None:
        j = fmap.conditions.get((k, int(c.group(1))))
        if j is None:
            return r
        return f"{r}.c{j}.{c.group(2)}" if c.group(2) else f"{r}.c{j}"
    if rest == ".rule_id":
        return f"{r}.rule_id"
    if rest == ".step.name":
        return f"{r}.step_name"
    if rest in (".step", ".step.candidate_groups", ".step.candidate_users"):
        return f"{r}.step"
    if rest.startswith(".step.sla."):
        return f"{r}.{_SLA_FIELDS.get(rest.removeprefix('.step.sla.'), 'sla')}"
    if rest.startswith(".step.sla"):
        return f"{r}.sla"
    if rest == ".step.delegable":
        return f"{r}.delegable"
    return r


@dataclass
class FormProblems:
    by_key: dict[str, list[str]] = field(default_factory=dict)
    listed: list[dict[str, str]] = field(default_factory=list)  # anchor, label, reason: the summary at the top

    def __bool__(self) -> bool:
        return bool(self.listed)

    def at(self, key: str) -> list[str]:
        return self.by_key.get(key, [])

    def under(self, prefix: str) -> int:
        return sum(len(v) for k, v in self.by_key.items() if k == prefix or k.startswith(prefix + "."))


def form_problems(problems: list[PolicyProblem], fmap: FormMap, editor: Editor) -> FormProblems:
    out = FormProblems()
    rules = {r.index: r for r in editor.rules}
    for p in problems:
        key = form_key(p.where, fmap)
        out.by_key.setdefault(key, []).append(p.reason)
        m = re.match(r"^r(\d+)", key)
        if m:
            rule = rules.get(int(m.group(1)))
            label = f"Rule {rule.rule_id or '(no id)'}" if rule else "A rule"
            anchor = f"rule-{m.group(1)}"
        else:
            label, anchor = {"hit_policy": ("Hit policy", "f-hit_policy"), "quorum": ("Quorum", "f-quorum"),
                             "rules": ("Rules", "rules"), "kind": ("Kind", "form")}.get(key, ("Policy", "form"))
        out.listed.append({"anchor": anchor, "label": label, "reason": p.reason})
    return out


def read_editor(session: Session, editor: Editor, kind: str) -> tuple[dict[str, Any] | None, FormProblems]:
    """The form's body when it may be saved, else None and every problem placed on the form."""
    data, fmap, problems = body_from_editor(editor, kind)
    # Unreadable fields were left empty in `data`, so the rest is still checked: the designer sees every problem
    # of the form at once, not one round trip per problem.
    try:
        body = parse_body(data)
    except PolicyError as exc:
        problems += exc.problems
    else:
        problems += check(session, body, kind=kind)
        data = body_to_json(body)
    return (None if problems else data), form_problems(problems, fmap, editor)


def _editor_context(session: Session) -> dict[str, Any]:
    return {
        "groups": sorted(known_groups(session)),
        "facts": [(f, FACT_LABELS[f], f in NUMERIC_FACTS) for f in FACTS],
        "ops": [(op, OP_LABELS[op], op in NUMERIC_OPS, op in TEXT_OPS) for op in OP_LABELS],
        "hit_policies": [(h.value, HIT_POLICY_LABELS[h]) for h in HitPolicy],
        "expiry_actions": [a.value for a in ExpiryAction],
    }


def _parse_date(text: str) -> tuple[date | None, list[PolicyProblem]]:
    if not text:
        return None, []
    try:
        return date.fromisoformat(text), []
    except ValueError:
        return None, [PolicyProblem("effective_from", f"{text!r} is not a date (YYYY-MM-DD)")]


# ------------------------------------------------------------------------------------------- list


@router.get("/policies", response_class=HTMLResponse)
def policies_index(request: Request, session: SessionDep, user: PageUser):
    return _index(request, session)


def _index(request: Request, session: Session, *, import_text: str = "", import_problems: list | None = None,
           code: int = 200) -> HTMLResponse:
    as_of = today()
    return _render(request, session, "policies/index.html", {
        "title": "Approval policies", "kinds": list_kinds(session, as_of), "as_of": as_of,
        "is_designer": _is_designer(request), "hit_policy_labels": HIT_POLICY_LABELS,
        "import_text": import_text, "import_problems": import_problems or [],
    }, code)


@router.get("/policies/{kind}", response_class=HTMLResponse)
def policies_of_kind(kind: str, request: Request, session: SessionDep, user: PageUser):
    if not is_kind(kind):
        return _not_found(request, session, "document kind")
    return _redirect(f"/policies#kind-{kind}")


# ------------------------------------------------------------------------------------------- one version


def _previous_published(session: Session, policy: ApprovalPolicy) -> ApprovalPolicy | None:
    return session.scalars(
        select(ApprovalPolicy)
        .where(ApprovalPolicy.kind == policy.kind, ApprovalPolicy.version < policy.version,
               ApprovalPolicy.status.in_([PolicyStatus.published, PolicyStatus.retired]))
        .order_by(ApprovalPolicy.version.desc()).limit(1)
    ).first()


def _detail(request: Request, session: Session, policy: ApprovalPolicy, *, editor: Editor | None = None,
            problems: FormProblems | None = None, against: str | None = None, code: int = 200) -> HTMLResponse:
    body = body_from_json(policy.body)
    user = request.state.user
    designer = _is_designer(request)
    siblings = list(session.scalars(select(ApprovalPolicy).where(ApprovalPolicy.kind == policy.kind)
                                    .order_by(ApprovalPolicy.version.desc())))
    base = None
    if against and against.isdigit():
        base = next((p for p in siblings if p.version == int(against) and p.id != policy.id), None)
    if base is None:
        base = comparison_base(session, policy) if policy.status == PolicyStatus.draft else _previous_published(
            session, policy)
    changes = diff(body_from_json(base.body) if base else None, body, from_version=base.version if base else None,
                   to_version=policy.version)
    editable = designer and policy.status == PolicyStatus.draft
    if editable and editor is None:
        editor = editor_from_body(body, note=policy.note, effective_from=policy.effective_from)
    context = {
        "title": f"{kind_label(policy.kind)} · version {policy.version}",
        "policy": version_public(session, policy),
        "kind_label": kind_label(policy.kind),
        "body": body,
        "table": decision_table(body),
        "fact_labels": FACT_LABELS,
        "hit_policy_label": HIT_POLICY_LABELS[body.hit_policy],
        "hit_policy_text": hit_policy_explained(body),
        "diff": changes,
        "base": base,
        "compare_choices": [p for p in siblings if p.id != policy.id],
        "is_designer": designer,
        "editable": editable,
        "is_author": user.username == policy.authored_by,
        "editor": with_spares(editor) if editable else None,
        "problems": problems or FormProblems(),
        "simulation_limits": SIMULATION_LIMITS,
        "default_limit": DEFAULT_SIMULATION_LIMIT,
        **_editor_context(session),
    }
    return _render(request, session, "policies/detail.html", context, code)


@router.get("/policies/{kind}/new", response_class=HTMLResponse)
def new_draft_form(kind: str, request: Request, session: SessionDep, user: DesignerPage):
    if not is_kind(kind):
        return _not_found(request, session, "document kind")
    return _new_page(request, session, kind, Editor())


def _new_page(request: Request, session: Session, kind: str, editor: Editor, problems: FormProblems | None = None,
              code: int = 200) -> HTMLResponse:
    return _render(request, session, "policies/new.html", {
        "title": f"New {kind_label(kind).lower()} policy", "kind": kind, "kind_label": kind_label(kind),
        "editor": with_spares(editor), "problems": problems or FormProblems(), **_editor_context(session),
    }, code)


@router.post("/policies/{kind}/new", response_class=HTMLResponse)
async def create_draft_page(kind: str, request: Request, session: SessionDep, user: DesignerPage):
    form = await request.form()
    return await run_in_threadpool(_create_from_form, request, session, user, kind, form)


def _create_from_form(request: Request, session: Session, user: User, kind: str, form: Any):
    if not is_kind(kind):
        return _not_found(request, session, "document kind")
    editor = editor_from_form(form)
    effective_from, date_problems = _parse_date(editor.effective_from)
    data, problems = read_editor(session, editor, kind)
    if date_problems:
        problems.by_key["effective_from"] = [p.reason for p in date_problems]
        problems.listed += [{"anchor": "f-effective_from", "label": "Effective from", "reason": p.reason}
                            for p in date_problems]
    if data is None or date_problems:
        return _new_page(request, session, kind, editor, problems, status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        policy = create_draft_as(session, user, kind, body=data, note=editor.note, effective_from=effective_from)
    except Refusal as r:
        session.rollback()
        flash(request, r.message, "error")
        return _new_page(request, session, kind, editor, code=r.status_code)
    session.commit()
    flash(request, f"Draft version {policy.version} saved. Simulate it, then ask another designer to publish it.",
          "success")
    return _redirect(_url(policy))


@router.get("/policies/{kind}/{version}", response_class=HTMLResponse)
def policy_page(kind: str, version: str, request: Request, session: SessionDep, user: PageUser,
                against: str | None = None):
    policy = _version_or_none(session, kind, version)
    if policy is None:
        return _not_found(request, session, "policy version")
    return _detail(request, session, policy, against=against)


@router.post("/policies/{kind}/{version}", response_class=HTMLResponse)
async def save_draft_page(kind: str, version: str, request: Request, session: SessionDep, user: DesignerPage):
    form = await request.form()
    return await run_in_threadpool(_save_from_form, request, session, user, kind, version, form)


def _save_from_form(request: Request, session: Session, user: User, kind: str, version: str, form: Any):
    policy = _version_or_none(session, kind, version)
    if policy is None:
        return _not_found(request, session, "policy version")
    if policy.status != PolicyStatus.draft:
        try:
            update_draft_as(session, user, policy, body=policy.body, note=None, effective_from=policy.effective_from)
        except Refusal as r:
            flash(request, r.message, "error")
        return _redirect(_url(policy))
    editor = editor_from_form(form)
    effective_from, date_problems = _parse_date(editor.effective_from)
    data, problems = read_editor(session, editor, policy.kind)
    if date_problems:
        problems.by_key["effective_from"] = [p.reason for p in date_problems]
        problems.listed += [{"anchor": "f-effective_from", "label": "Effective from", "reason": p.reason}
                            for p in date_problems]
    if data is None or date_problems:
        return _detail(request, session, policy, editor=editor, problems=problems,
                       code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    try:
        update_draft_as(session, user, policy, body=data, note=editor.note, effective_from=effective_from)
    except Refusal as r:
        session.rollback()
        flash(request, r.message, "error")
        return _redirect(_url(policy))
    session.commit()
    flash(request, f"Version {policy.version} saved. You edited it last, so another designer publishes it.", "success")
    return _redirect(_url(policy))


def _act(request: Request, session: Session, policy: ApprovalPolicy | None, action, success: str,
         to: str | None = None) -> HTMLResponse | RedirectResponse:
    if policy is None:
        return _not_found(request, session, "policy version")
    back = _url(policy)
    try:
        result = action(policy)
    except Refusal as r:
        session.rollback()
        flash(request, r.message + (": " + "; ".join(p.reason for p in r.problems) if r.problems else ""), "error")
        return _redirect(back)
    # Worded before the commit: a discarded draft cannot be read after it.
    message = success.format(policy=policy, result=result)
    target = to.format(policy=policy, result=result) if to else back
    session.commit()
    flash(request, message, "success")
    return _redirect(target)


@router.post("/policies/{kind}/{version}/publish")
def publish_page(kind: str, version: str, request: Request, session: SessionDep, user: DesignerPage):
    policy = _version_or_none(session, kind, version)
    return _act(request, session, policy, lambda p: publish_as(session, user, p),
                "Version {policy.version} published: new requests pin it from its effective date.")


@router.post("/policies/{kind}/{version}/retire")
def retire_page(kind: str, version: str, request: Request, session: SessionDep, user: DesignerPage):
    policy = _version_or_none(session, kind, version)
    return _act(request, session, policy, lambda p: retire_as(session, user, p),
                "Version {policy.version} retired. Running processes keep it; new ones pin the version in force.")


@router.post("/policies/{kind}/{version}/copy")
def copy_page(kind: str, version: str, request: Request, session: SessionDep, user: DesignerPage):
    policy = _version_or_none(session, kind, version)
    return _act(request, session, policy,
                lambda p: create_draft_as(session, user, p.kind, copy_of=p.version),
                "Draft version {result.version} made from version {policy.version}: edit it below.",
                to="/policies/{result.kind}/{result.version}#editor")


@router.post("/policies/{kind}/{version}/discard")
def discard_page(kind: str, version: str, request: Request, session: SessionDep, user: DesignerPage):
    policy = _version_or_none(session, kind, version)
    return _act(request, session, policy, lambda p: discard_as(session, user, p),
                "Draft version {policy.version} discarded.", to="/policies#kind-{policy.kind}")


@router.get("/policies/{kind}/{version}/simulation", response_class=HTMLResponse)
def simulation_page(kind: str, version: str, request: Request, session: SessionDep, user: PageUser,
                    limit: str = str(DEFAULT_SIMULATION_LIMIT), baseline: str = "pinned", show: str = "changed"):
    policy = _version_or_none(session, kind, version)
    if policy is None:
        return _not_found(request, session, "policy version")
    n = int(limit) if limit.isdigit() and len(limit) < 6 else DEFAULT_SIMULATION_LIMIT
    n = max(1, min(n, MAX_SIMULATION_LIMIT))
    baseline = baseline if baseline in ("pinned", "in_force") else "pinned"
    show = show if show in ("changed", "all") else "changed"
    result = simulate(session, body_from_json(policy.body), n, baseline=baseline, draft_version=policy.version)
    rows = result.requests if show == "all" else [r for r in result.requests if r.change != "unchanged"]

    def link(**changes: Any) -> str:
        params = {"limit": n, "baseline": baseline, "show": show, **changes}
        return f"{_url(policy, '/simulation')}?{urlencode(params)}"

    return _render(request, session, "policies/simulation.html", {
        "title": f"Simulation · {kind_label(policy.kind)} v{policy.version}", "policy": version_public(session, policy),
        "kind_label": kind_label(policy.kind), "sim": result, "rows": rows, "show": show, "link": link,
        "change_labels": CHANGE_LABELS, "fact_labels": FACT_LABELS, "limits": SIMULATION_LIMITS,
    })


# ------------------------------------------------------------------------------------------- import


@router.post("/policies/import", response_class=HTMLResponse)
async def import_page(request: Request, session: SessionDep, user: DesignerPage):
    form = await request.form()
    text = form.get("document")
    text = text if isinstance(text, str) else ""
    upload = form.get("file")
    if upload is not None and not isinstance(upload, str) and getattr(upload, "filename", ""):
        raw = await upload.read(MAX_IMPORT_CHARS + 1)
        text = raw.decode("utf-8", errors="replace")
    return await run_in_threadpool(_import, request, session, user, text)


def _import(request: Request, session: Session, user: User, text: str):
    if not text.strip():
        return _index(request, session, import_problems=[{"where": "document", "reason": "paste a policy JSON "
                                                          "document or choose a file"}], code=422)
    if len(text) > MAX_IMPORT_CHARS:
        return _index(request, session, import_problems=[{"where": "document", "reason": "the document is too large"}],
                      code=422)
    try:
        body = import_body(text)
        policy = create_draft_as(session, user, body.kind.value, body=body_to_json(body),
                                 note="imported from a JSON document", imported=True)
    except PolicyError as exc:
        return _index(request, session, import_text=text,
                      import_problems=[{"where": p.where, "reason": p.reason} for p in exc.problems], code=422)
    except Refusal as r:
        session.rollback()
        return _index(request, session, import_text=text, code=r.status_code,
                      import_problems=[{"where": p.where, "reason": p.reason} for p in r.problems]
                      or [{"where": "document", "reason": r.message}])
    session.commit()
    flash(request, f"Imported as draft version {policy.version} of the {kind_label(policy.kind).lower()} policy.",
          "success")
    return _redirect(_url(policy))


__all__ = ["router", "decision_table", "editor_from_body", "editor_from_form", "body_from_editor", "form_key",
           "KIND_LABELS", "conditions_text"]
