"""ApprovalChain: one durable workflow per approval request.

It pins the policy version in force (an activity, so the version is in its history), evaluates it with the pure
rules of workflows/approval_rules.py, and runs the resulting stages: one step after another (FIRST, RULE_ORDER)
or all steps at once with a quorum (COLLECT). Each step is a human task: people claim, release, delegate,
resolve, forward and decide through Updates whose validators refuse at once (stale version, task not open,
actor not allowed, segregation of duties); every handler re-checks, because two Updates accepted in the same
workflow task both pass their validators before either handler runs. Each task waits on durable timers from
the pinned policy: reminder, escalation to the next group, expiry with the policy's action. "Request changes"
sends the request back to the requester, who resubmits into the same chain; earlier approvals stand.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.approvals import ApprovalActivities
    from workflows.approval_rules import ExpiryAction, PolicyBody, RequestFacts, RoutedStep, StepSpec, evaluate
    from workflows.contracts import (
        APPROVAL_CHAIN_WORKFLOW,
        APPROVAL_STATUS_SIGNAL,
        Actor,
        ApprovalChainInput,
        ApprovalOutcome,
        ApprovalResult,
        ApprovalStatusNotice,
        ChainStatus,
        DecideCommand,
        DecisionRecord,
        DelegateCommand,
        FinishRequestInput,
        ForwardCommand,
        LoadPolicyInput,
        NotifyInput,
        PinnedPolicy,
        RegisterRequestInput,
        ResolveCandidatesInput,
        ResubmitCommand,
        SaveTaskInput,
        TaskCommand,
        TaskSnapshot,
        TaskView,
    )
    from workflows.search_attributes import (
        TRADEFLOW_CURRENT_GROUP,
        TRADEFLOW_STATUS,
        SearchAttributeBoard,
        approval_attributes,
    )

# workflow.patched id: a cancellation that arrives while a task's row is being written closes that task too (before,
# the row could stay "ready" in the inbox of a chain that had ended).
CLOSE_TASK_BEING_OPENED_PATCH = "close-task-being-opened"
# workflow.patched id: a cancellation that finds the chain waiting on an activity closes the open tasks too. It
# arrives there as that activity's ActivityError (cause CancelledError), not as asyncio.CancelledError: the activity
# is cancelled with TRY_CANCEL, so the workflow stops waiting at once. Before, such a chain stopped as cancelled and
# left its tasks "ready" (a cancellation during the "Approval needed" mail right after a task opened, for one).
CLOSE_TASKS_WHEN_CANCEL_HITS_ACTIVITY_PATCH = "close-tasks-when-cancel-hits-activity"

DB_ACTIVITY = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=10)),
}

# Task statuses and outcomes as the human_task table spells them (models/approvals.py).
READY, RESERVED, COMPLETED, SKIPPED, EXPIRED, CANCELLED = (
    "ready", "reserved", "completed", "skipped", "expired", "cancelled",
)
APPROVED, REJECTED, CHANGES_REQUESTED = "approved", "rejected", "changes_requested"
DECISIONS = (APPROVED, REJECTED, CHANGES_REQUESTED)


@dataclass
class _Task:
    """A task as this workflow holds it (never crosses the Temporal boundary; TaskSnapshot does)."""

    key: str
    step_index: int
    round: int
    step: StepSpec
    rule_ids: tuple[str, ...]
    candidate_groups: tuple[str, ...]
    candidate_users: tuple[str, ...]
    created_at: datetime
    follow_up_at: datetime | None
    escalate_at: datetime | None
    due_at: datetime | None
    status: str = READY
    outcome: str | None = None
    assignee: str | None = None
    owner: str | None = None
    delegation_state: str = "none"
    escalation_level: int = 0
    reminded: bool = False
    completed_at: datetime | None = None
    completed_by: str | None = None
    acting_for: str | None = None
    covers: dict[str, str] = field(default_factory=dict)  # substitute -> the person away they stand in for
    comment: str = ""
    version: int = 1

    @property
    def is_open(self) -> bool:
        return self.status in (READY, RESERVED)


def _refuse(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def _after(start: datetime, hours: int | None) -> datetime | None:
    return start + timedelta(hours=hours) if hours else None


@workflow.defn(name=APPROVAL_CHAIN_WORKFLOW)
class ApprovalChainWorkflow:
    @workflow.init
    def __init__(self, request: ApprovalChainInput) -> None:
        self._request = request
        self._board = SearchAttributeBoard.for_this_run()
        self._facts: RequestFacts = request.facts
        self._policy: PinnedPolicy | None = None
        self._tasks: dict[str, _Task] = {}
        # Tasks whose inbox row is being written: an approver may see the row (and act) a moment before the
        # activity's completion reaches this workflow. Their updates are accepted and wait for the task.
        self._opening: set[str] = set()
        self._decisions: list[DecisionRecord] = []
        self._approvers: set[str] = set()  # who approved in this chain, for segregation of duties
        self._status = "pending"
        self._current_step = 0
        self._resubmission: ResubmitCommand | None = None
        self._cancel_reason: str | None = None

    # ------------------------------------------------------------------------------------------ run

    @workflow.run
    async def run(self, request: ApprovalChainInput) -> ApprovalResult:
        try:
            outcome = await self._run_chain(request)
        except (asyncio.CancelledError, ActivityError) as stopped:
            if not is_cancelled_exception(stopped):
                raise
            if isinstance(stopped, ActivityError) and not workflow.patched(CLOSE_TASKS_WHEN_CANCEL_HITS_ACTIVITY_PATCH):
                raise
            # The parent process was cancelled: close the open tasks so no inbox keeps them, then stop.
            self._cancel_reason = self._cancel_reason or "the process was cancelled"
            # Temporal delivers the cancellation once; activities started after it run normally.
            await self._close_open_tasks(CANCELLED, "cancelled")
            await self._finish(ApprovalOutcome.cancelled.value)
            raise
        await self._finish(outcome)
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._board.flush()  # nothing is left after that wait; a guard, should a later edit set one late
        return ApprovalResult(
            request_key=request.request_key,
            outcome=outcome,
            policy_version=self._policy.version if self._policy else None,
            decisions=tuple(self._decisions),
        )

    async def _run_chain(self, request: ApprovalChainInput) -> str:
        # An amendment is judged by the quote policy (policy_kind), on the rules its prices met (rule_ids); chains
        # started before these fields existed carry neither, and load and route exactly as they did.
        self._policy = await workflow.execute_activity_method(
            ApprovalActivities.load_policy, LoadPolicyInput(request.policy_kind or request.kind,
                                                            workflow.now().date()), **DB_ACTIVITY
        )
        routing = evaluate(_only_rules(self._policy.body, request.rule_ids), self._facts)
        self._board.set(*approval_attributes(kind=request.kind, requester=request.requester,
                                             amount=self._facts.amount))
        await self._register()
        if not routing.needs_approval:
            self._decisions.append(
                DecisionRecord("", "no approval needed", (), APPROVED, None, None,
                               f"no rule of {request.kind} policy v{self._policy.version} matched", workflow.now())
            )
            return ApprovalOutcome.approved.value
        if routing.parallel:
            return await self._run_stage(list(enumerate(routing.steps)), routing.quorum)
        for index, routed in enumerate(routing.steps):
            self._current_step = index
            outcome = await self._run_stage([(index, routed)], 1)
            if outcome != ApprovalOutcome.approved.value:
                return outcome
        return ApprovalOutcome.approved.value

    async def _run_stage(self, steps: list[tuple[int, RoutedStep]], quorum: int) -> str:
        """Open the stage's tasks and wait until the quorum approves, too many reject, or changes are asked
        for; in that last case wait for the requester's resubmission and open the stage's next round."""
        round_no = 0
        while True:
            keys = [await self._open_task(index, routed, round_no) for index, routed in steps]
            result = await self._await_stage(keys, quorum)
            if result != CHANGES_REQUESTED:
                return result
            self._status = "changes_requested"
            await self._set_request_status("changes_requested")
            asked = [self._tasks[k].comment for k in keys if self._tasks[k].outcome == CHANGES_REQUESTED]
            await self._tell_parent("changes_requested", "; ".join(asked))
            await self._notify(
                f"{self._request.request_key}:changes:{round_no}",
                f"Changes requested: {self._request.title}",
                f"An approver asked for changes to {self._request.document_ref}. Edit it and resubmit.",
                users=(self._request.requester,),
            )
            try:
                await workflow.wait_condition(
                    lambda: self._resubmission is not None or self._cancel_reason is not None,
                    timeout=timedelta(hours=self._request.resubmit_within_hours),
                )
            except asyncio.TimeoutError:
                self._cancel_reason = "not resubmitted in time"
            if self._cancel_reason is not None:
                return ApprovalOutcome.cancelled.value
            resubmission, self._resubmission = self._resubmission, None
            if resubmission.facts is not None:
                self._facts = resubmission.facts
            self._status = "pending"
            await self._register()
            await self._tell_parent("pending", resubmission.comment)
            round_no += 1

    async def _await_stage(self, keys: list[str], quorum: int) -> str:
        tasks = [self._tasks[k] for k in keys]
        allowed_rejections = len(tasks) - quorum

        def tally() -> tuple[int, int, bool]:
            approvals = sum(1 for t in tasks if t.outcome == APPROVED)
            rejections = sum(1 for t in tasks if t.outcome == REJECTED)
            changes = any(t.outcome == CHANGES_REQUESTED for t in tasks)
            return approvals, rejections, changes

        def settled() -> bool:
            approvals, rejections, changes = tally()
            return (self._cancel_reason is not None or changes or approvals >= quorum
                    or rejections > allowed_rejections)

        while not settled():
            deadline = self._next_deadline(tasks)
            timeout = max(deadline - workflow.now(), timedelta(0)) if deadline else None
            try:
                await workflow.wait_condition(settled, timeout=timeout)
            except asyncio.TimeoutError:
                await self._fire_deadlines(tasks)
        approvals, rejections, changes = tally()
        if self._cancel_reason is not None:
            await self._close_open_tasks(CANCELLED, "cancelled")
            return ApprovalOutcome.cancelled.value
        await self._close_open_tasks(SKIPPED, "skipped", only=tasks)
        if changes:
            return CHANGES_REQUESTED
        return ApprovalOutcome.approved.value if approvals >= quorum else ApprovalOutcome.rejected.value

    # ------------------------------------------------------------------------------------------ tasks

    async def _open_task(self, index: int, routed: RoutedStep, round_no: int) -> str:
        step = routed.step
        key = f"{self._request.request_key}/step{index + 1}/round{round_no + 1}"
        now = workflow.now()
        resolved = await workflow.execute_activity_method(
            ApprovalActivities.resolve_candidates,
            ResolveCandidatesInput(step.candidate_users, step.candidate_groups, now),
            **DB_ACTIVITY,
        )
        task = _Task(
            key=key,
            step_index=index,
            round=round_no,
            step=step,
            rule_ids=routed.rule_ids,
            candidate_groups=step.candidate_groups,
            candidate_users=resolved.candidate_users,
            created_at=now,
            follow_up_at=_after(now, step.sla.remind_after_hours),
            escalate_at=_after(now, step.sla.escalate_after_hours) if step.sla.escalate_to_groups else None,
            due_at=_after(now, step.sla.expire_after_hours),
            covers=dict(resolved.covers),
        )
        why = f"policy {self._policy.kind} v{self._policy.version}, rule {', '.join(routed.rule_ids)}"
        if resolved.substitutes:
            why += f"; substitutes for people away: {', '.join(resolved.substitutes)}"
        self._opening.add(key)
        try:
            await self._save(task, "created", "system", reason=why)
        except (asyncio.CancelledError, ActivityError) as stopped:
            # The process was cancelled while the row was being written: the row may well exist (people may see
            # it), so the clean-up must know the task to close it; closing writes it closed whatever the first
            # write did (save_task keeps the higher version). Such a cancellation nearly always arrives as the
            # save's ActivityError; asyncio.CancelledError only when the save had finished in the same moment.
            if is_cancelled_exception(stopped) and workflow.patched(CLOSE_TASK_BEING_OPENED_PATCH):
                self._tasks[key] = task
                self._opening.discard(key)
            raise
        # Known to updates and queries only once its inbox row exists: nobody can act on a task they cannot see.
        self._tasks[key] = task
        self._opening.discard(key)
        await self._notify(
            f"{key}:created",
            f"Approval needed: {self._request.title}",
            f"{self._request.requester} asks for approval of {self._request.document_ref} ({step.name}).\n"
            f"Why you: {why}.",
            task_key=key,
            users=task.candidate_users,
            groups=task.candidate_groups,
        )
        self._show_progress()
        return key

    def _next_deadline(self, tasks: list[_Task]) -> datetime | None:
        pending: list[datetime] = []
        for t in tasks:
            if not t.is_open:
                continue
            if t.follow_up_at and not t.reminded:
                pending.append(t.follow_up_at)
            if t.escalate_at and t.escalation_level == 0:
                pending.append(t.escalate_at)
            if t.due_at:
                pending.append(t.due_at)
        return min(pending) if pending else None

    async def _fire_deadlines(self, tasks: list[_Task]) -> None:
        now = workflow.now()
        for t in tasks:
            if not t.is_open:
                continue
            if t.due_at and now >= t.due_at:
                await self._expire(t)
                continue
            if t.escalate_at and t.escalation_level == 0 and now >= t.escalate_at:
                await self._escalate(t)
            if t.follow_up_at and not t.reminded and now >= t.follow_up_at:
                t.reminded = True
                t.version += 1
                await self._save(t, "reminded", "system", reason="reminder: the task is still open")
                await self._notify(
                    f"{t.key}:reminder",
                    f"Reminder: approval waiting: {self._request.title}",
                    f"The approval of {self._request.document_ref} ({t.step.name}) is still open.",
                    task_key=t.key,
                    users=(t.assignee,) if t.assignee else t.candidate_users,
                    groups=() if t.assignee else t.candidate_groups,
                )

    async def _escalate(self, t: _Task) -> None:
        groups = t.step.sla.escalate_to_groups
        resolved = await workflow.execute_activity_method(
            ApprovalActivities.resolve_candidates, ResolveCandidatesInput((), groups, workflow.now()), **DB_ACTIVITY
        )
        # As in jBPM: escalation replaces the potential owners and puts a claimed task back to ready.
        previous = ", ".join(t.candidate_groups + t.candidate_users) or "nobody"
        t.candidate_groups, t.candidate_users = groups, resolved.candidate_users
        t.status, t.assignee, t.owner, t.delegation_state = READY, None, None, "none"
        t.escalation_level += 1
        t.version += 1
        await self._save(t, "escalated", "system", reason=f"not decided in time; moved from {previous} to "
                                                           f"{', '.join(groups)}")
        await self._notify(
            f"{t.key}:escalated",
            f"Escalated to you: {self._request.title}",
            f"The approval of {self._request.document_ref} ({t.step.name}) was not decided in time and now "
            f"waits for {', '.join(groups)}.",
            task_key=t.key,
            users=t.candidate_users,
            groups=groups,
        )
        self._show_progress()

    async def _expire(self, t: _Task) -> None:
        action = t.step.sla.expire_action
        t.status = EXPIRED
        t.outcome = APPROVED if action == ExpiryAction.approve else REJECTED
        t.completed_at = workflow.now()
        t.version += 1
        reason = f"expired after {t.step.sla.expire_after_hours} h; policy says {action.value}"
        self._decisions.append(
            DecisionRecord(t.key, t.step.name, t.rule_ids, EXPIRED, None, None, reason, t.completed_at)
        )
        await self._save(t, "expired", "system", reason=reason)
        await self._notify(
            f"{t.key}:expired",
            f"Approval expired: {self._request.title}",
            f"Nobody decided on {self._request.document_ref} ({t.step.name}) in time: {reason}.",
            task_key=t.key,
            users=(self._request.requester,),
        )

    async def _close_open_tasks(self, status: str, action: str, only: list[_Task] | None = None) -> None:
        for t in only if only is not None else list(self._tasks.values()):
            if t.is_open:
                t.status = status
                t.completed_at = workflow.now()
                t.version += 1
                self._decisions.append(
                    DecisionRecord(t.key, t.step.name, t.rule_ids, status, None, None, self._cancel_reason or "",
                                   t.completed_at)
                )
                await self._save(t, action, "system", reason=self._cancel_reason or "no longer needed")

    # --------------------------------------------------------------------------------- activities

    def _snapshot(self, t: _Task) -> TaskSnapshot:
        r = self._request
        return TaskSnapshot(
            task_key=t.key, request_key=r.request_key, workflow_id=workflow.info().workflow_id,
            step_index=t.step_index, round=t.round, step_name=t.step.name, kind=r.kind, title=r.title,
            document_ref=r.document_ref, requester=r.requester, branch=r.branch, amount=str(self._facts.amount),
            status=t.status, outcome=t.outcome, assignee=t.assignee, owner=t.owner,
            delegation_state=t.delegation_state, priority=r.priority, created_at=t.created_at,
            follow_up_at=t.follow_up_at, escalate_at=t.escalate_at, due_at=t.due_at,
            escalation_level=t.escalation_level, completed_at=t.completed_at, completed_by=t.completed_by,
            acting_for=t.acting_for, comment=t.comment, policy_kind=self._policy.kind,
            policy_version=self._policy.version, rule_ids=t.rule_ids, candidate_groups=t.candidate_groups,
            candidate_users=t.candidate_users, version=t.version,
        )

    async def _save(self, t: _Task, action: str, actor: str, acting_for: str | None = None, reason: str = "") -> None:
        # The snapshot is taken now, before any await: a slower write of an older version cannot win.
        snapshot = self._snapshot(t)
        await workflow.execute_activity_method(
            ApprovalActivities.save_task, SaveTaskInput(snapshot, action, actor, acting_for, reason), **DB_ACTIVITY
        )

    async def _notify(self, message_key: str, subject: str, body: str, *, task_key: str | None = None,
                      users: tuple[str, ...] = (), groups: tuple[str, ...] = ()) -> None:
        await workflow.execute_activity_method(
            ApprovalActivities.notify, NotifyInput(message_key, subject, body, task_key, tuple(users), tuple(groups)),
            **DB_ACTIVITY,
        )

    async def _register(self) -> None:
        r = self._request
        await workflow.execute_activity_method(
            ApprovalActivities.register_request,
            RegisterRequestInput(
                request_key=r.request_key, workflow_id=workflow.info().workflow_id, kind=r.kind,
                document_ref=r.document_ref, title=r.title, requester=r.requester, branch=r.branch,
                amount=str(self._facts.amount), facts=_facts_dict(self._facts), details=r.details,
                policy_version=self._policy.version,
            ),
            **DB_ACTIVITY,
        )

    async def _tell_parent(self, status: str, comment: str = "") -> None:
        """A parent process (QuoteToCash) mirrors "changes requested" on its document and lets the requester
        edit it; it cannot query a child, so the chain signals it. Standalone chains have no parent and issue no
        command here, so histories recorded before this existed replay unchanged."""
        parent = workflow.info().parent
        if parent is None:
            return
        try:
            await workflow.get_external_workflow_handle(parent.workflow_id).signal(
                APPROVAL_STATUS_SIGNAL, ApprovalStatusNotice(self._request.request_key, status, comment)
            )
        except FailureError:
            pass  # the parent closed meanwhile: nobody is left to tell, and the chain goes on regardless

    async def _set_request_status(self, status: str) -> None:
        await workflow.execute_activity_method(
            ApprovalActivities.finish_request,
            FinishRequestInput(self._request.request_key, status, reason=self._cancel_reason or "",
                               at=workflow.now()),
            **DB_ACTIVITY,
        )

    async def _finish(self, outcome: str) -> None:
        self._status = outcome
        self._board.set(TRADEFLOW_STATUS.value_set(outcome))
        await self._set_request_status(outcome)
        await self._notify(
            f"{self._request.request_key}:{outcome}",
            f"Approval {outcome}: {self._request.title}",
            f"The approval of {self._request.document_ref} ended: {outcome}.",
            users=(self._request.requester,),
        )
        self._show_progress()

    def _show_progress(self) -> None:
        """Operators read this in the Temporal UI: where the chain stands and for whom it waits."""
        open_tasks = [t for t in self._tasks.values() if t.is_open]
        groups = sorted({g for t in open_tasks for g in t.candidate_groups})
        if open_tasks:
            self._board.set(TRADEFLOW_CURRENT_GROUP.value_set(",".join(groups) or "users"))
        lines = [
            f"**{self._request.title}** ({self._request.document_ref}), requested by {self._request.requester}",
            f"Status: {self._status}; policy {self._request.kind} v{self._policy.version if self._policy else '?'}",
        ]
        for t in open_tasks:
            who = t.assignee or ", ".join(t.candidate_groups + t.candidate_users)
            lines.append(f"- waiting: {t.step.name} for {who}, due {t.due_at:%Y-%m-%d %H:%M} UTC" if t.due_at
                         else f"- waiting: {t.step.name} for {who}")
        for d in self._decisions[-5:]:
            lines.append(f"- {d.step_name}: {d.outcome} by {d.actor or 'system'}")
        workflow.set_current_details("\n".join(lines))

    # ------------------------------------------------------------------------------------- checks

    async def _task_known(self, task_key: str) -> None:
        # Only a task being opened is waited for (never the case in histories written before this existed, whose
        # validators refused such updates), so replay of older histories issues the same commands.
        if task_key in self._opening:
            await workflow.wait_condition(lambda: task_key not in self._opening)

    def _open(self, task_key: str, expected_version: int | None) -> _Task:
        task = self._tasks.get(task_key)
        if task is None:
            raise _refuse(f"task {task_key} is not part of this approval", "TaskNotFound")
        if not task.is_open:
            raise _refuse(f"task {task_key} is {task.status}, not open", "TaskNotOpen")
        if expected_version is not None and expected_version != task.version:
            raise _refuse(
                f"task {task_key} changed since you loaded it (version {expected_version}, now {task.version}); "
                "reload and try again",
                "StaleVersion",
            )
        return task

    @staticmethod
    def _candidate_in_own_right(task: _Task, actor: Actor) -> bool:
        """A candidate by the step itself (named user or member of a candidate group), not as a substitute."""
        return actor.username in task.step.candidate_users or bool(set(actor.groups) & set(task.candidate_groups))

    @staticmethod
    def _is_candidate(task: _Task, actor: Actor) -> bool:
        return actor.username in task.candidate_users or bool(set(actor.groups) & set(task.candidate_groups))

    def _check_not_party(self, username: str, what: str) -> None:
        if username == self._request.requester:
            raise _refuse(f"{username} requested this approval and may not {what} it", "SegregationOfDuties")
        if username in self._approvers:
            raise _refuse(f"{username} already approved in this chain and may not {what} it again",
                          "SegregationOfDuties")

    def _check_claim(self, cmd: TaskCommand) -> _Task:
        task = self._open(cmd.task_key, cmd.expected_version)
        if task.status == RESERVED:
            if task.assignee == cmd.actor.username:
                return task
            raise _refuse(f"task {cmd.task_key} is already claimed by {task.assignee}", "TaskAlreadyClaimed")
        if not (self._is_candidate(task, cmd.actor) or cmd.actor.is_admin):
            raise _refuse(f"{cmd.actor.username} is not a candidate for task {cmd.task_key}", "NotAllowed")
        self._check_not_party(cmd.actor.username, "claim")
        return task

    def _check_release(self, cmd: TaskCommand) -> _Task:
        task = self._open(cmd.task_key, cmd.expected_version)
        if task.status != RESERVED:
            raise _refuse(f"task {cmd.task_key} is not claimed", "TaskNotClaimed")
        if task.delegation_state == "pending":
            raise _refuse("a delegated task is handed back with resolve, not released", "NotAllowed")
        if task.assignee != cmd.actor.username and not cmd.actor.is_admin:
            raise _refuse(f"only {task.assignee} (or an admin) may release task {cmd.task_key}", "NotAllowed")
        return task

    def _check_delegate(self, cmd: DelegateCommand) -> _Task:
        task = self._open(cmd.task_key, cmd.expected_version)
        if not task.step.delegable:
            raise _refuse(f"the policy does not allow delegating step {task.step.name}", "NotAllowed")
        if task.assignee != cmd.actor.username and not cmd.actor.is_admin:
            raise _refuse("claim the task before delegating it", "NotAllowed")
        if not cmd.to_user or cmd.to_user == cmd.actor.username:
            raise _refuse("delegate to someone else", "InvalidCommand")
        self._check_not_party(cmd.to_user, "decide")
        return task

    def _check_resolve(self, cmd: TaskCommand) -> _Task:
        task = self._open(cmd.task_key, cmd.expected_version)
        if task.delegation_state != "pending" or task.assignee != cmd.actor.username:
            raise _refuse(f"{cmd.actor.username} holds no delegation of task {cmd.task_key}", "NotAllowed")
        return task

    def _check_forward(self, cmd: ForwardCommand) -> _Task:
        task = self._open(cmd.task_key, cmd.expected_version)
        if not (cmd.to_groups or cmd.to_users):
            raise _refuse("forward to at least one group or user", "InvalidCommand")
        allowed = task.assignee == cmd.actor.username or (task.status == READY and self._is_candidate(task, cmd.actor))
        if not (allowed or cmd.actor.is_admin):
            raise _refuse(f"{cmd.actor.username} may not forward task {cmd.task_key}", "NotAllowed")
        if self._request.requester in cmd.to_users:
            raise _refuse("a task cannot be forwarded to the requester", "SegregationOfDuties")
        return task

    def _check_decide(self, cmd: DecideCommand) -> _Task:
        if cmd.outcome not in DECISIONS:
            raise _refuse(f"unknown decision {cmd.outcome!r}; use one of {', '.join(DECISIONS)}", "InvalidCommand")
        task = self._open(cmd.task_key, cmd.expected_version)
        actor = cmd.actor.username
        if task.status == RESERVED and task.assignee != actor:
            raise _refuse(f"task {cmd.task_key} is claimed by {task.assignee}", "TaskAlreadyClaimed")
        if task.status == READY and not self._is_candidate(task, cmd.actor):
            raise _refuse(f"{actor} is not a candidate for task {cmd.task_key}", "NotAllowed")
        self._check_not_party(actor, "decide")
        if task.delegation_state == "pending" and task.owner:
            self._check_not_party(task.owner, "decide")
        if cmd.outcome in (REJECTED, CHANGES_REQUESTED) and not cmd.comment.strip():
            raise _refuse("say why: a rejection or a request for changes needs a comment", "CommentRequired")
        return task

    def _check_resubmit(self, cmd: ResubmitCommand) -> None:
        if self._status != "changes_requested":
            raise _refuse("nothing to resubmit: no changes were requested", "NotAllowed")
        if cmd.actor.username != self._request.requester:
            raise _refuse(f"only the requester {self._request.requester} may resubmit", "NotAllowed")

    # ------------------------------------------------------------------------------------ updates

    @staticmethod
    def _view(t: _Task) -> TaskView:
        return TaskView(t.key, t.status, t.outcome, t.assignee, t.owner, t.delegation_state, t.candidate_groups,
                        t.candidate_users, t.version)

    @workflow.update
    async def claim(self, cmd: TaskCommand) -> TaskView:
        await self._task_known(cmd.task_key)
        task = self._check_claim(cmd)
        if task.status == RESERVED:
            return self._view(task)  # claiming again what one holds changes nothing
        task.status, task.assignee = RESERVED, cmd.actor.username
        task.version += 1
        await self._save(task, "claimed", cmd.actor.username, reason=cmd.comment)
        return self._view(task)

    @claim.validator
    def validate_claim(self, cmd: TaskCommand) -> None:
        if cmd.task_key not in self._opening:  # else the handler waits for the task, then checks
            self._check_claim(cmd)

    @workflow.update
    async def release(self, cmd: TaskCommand) -> TaskView:
        await self._task_known(cmd.task_key)
        task = self._check_release(cmd)
        task.status, task.assignee = READY, None
        task.version += 1
        await self._save(task, "released", cmd.actor.username, reason=cmd.comment)
        return self._view(task)

    @release.validator
    def validate_release(self, cmd: TaskCommand) -> None:
        if cmd.task_key not in self._opening:  # else the handler waits for the task, then checks
            self._check_release(cmd)

    @workflow.update
    async def delegate(self, cmd: DelegateCommand) -> TaskView:
        await self._task_known(cmd.task_key)
        task = self._check_delegate(cmd)
        task.owner = task.owner or task.assignee or cmd.actor.username
        task.status, task.assignee, task.delegation_state = RESERVED, cmd.to_user, "pending"
        task.version += 1
        await self._save(task, "delegated", cmd.actor.username, reason=f"to {cmd.to_user}. {cmd.comment}".strip())
        await self._notify(
            f"{task.key}:delegated:{task.version}",
            f"Delegated to you: {self._request.title}",
            f"{cmd.actor.username} delegated the approval of {self._request.document_ref} to you. {cmd.comment}",
            task_key=task.key,
            users=(cmd.to_user,),
        )
        return self._view(task)

    @delegate.validator
    def validate_delegate(self, cmd: DelegateCommand) -> None:
        if cmd.task_key not in self._opening:  # else the handler waits for the task, then checks
            self._check_delegate(cmd)

    @workflow.update
    async def resolve(self, cmd: TaskCommand) -> TaskView:
        await self._task_known(cmd.task_key)
        task = self._check_resolve(cmd)
        task.assignee, task.delegation_state = task.owner, "resolved"
        task.version += 1
        await self._save(task, "resolved", cmd.actor.username, acting_for=task.owner, reason=cmd.comment)
        return self._view(task)

    @resolve.validator
    def validate_resolve(self, cmd: TaskCommand) -> None:
        if cmd.task_key not in self._opening:  # else the handler waits for the task, then checks
            self._check_resolve(cmd)

    @workflow.update
    async def forward(self, cmd: ForwardCommand) -> TaskView:
        await self._task_known(cmd.task_key)
        task = self._check_forward(cmd)
        task.candidate_groups, task.candidate_users = tuple(cmd.to_groups), tuple(cmd.to_users)
        task.status, task.assignee, task.owner, task.delegation_state = READY, None, None, "none"
        task.version += 1
        target = ", ".join(cmd.to_groups + cmd.to_users)
        await self._save(task, "forwarded", cmd.actor.username, reason=f"to {target}. {cmd.comment}".strip())
        await self._notify(
            f"{task.key}:forwarded:{task.version}",
            f"Forwarded to you: {self._request.title}",
            f"{cmd.actor.username} forwarded the approval of {self._request.document_ref}. {cmd.comment}",
            task_key=task.key,
            users=task.candidate_users,
            groups=task.candidate_groups,
        )
        self._show_progress()
        return self._view(task)

    @forward.validator
    def validate_forward(self, cmd: ForwardCommand) -> None:
        if cmd.task_key not in self._opening:  # else the handler waits for the task, then checks
            self._check_forward(cmd)

    @workflow.update
    async def decide(self, cmd: DecideCommand) -> TaskView:
        await self._task_known(cmd.task_key)
        task = self._check_decide(cmd)
        actor = cmd.actor.username
        acting_for = task.owner if task.delegation_state == "pending" and task.owner != actor else None
        if acting_for is None and actor in task.covers and not self._candidate_in_own_right(task, cmd.actor):
            acting_for = task.covers[actor]  # a substitute decides for the person who is away
        task.status, task.outcome, task.assignee = COMPLETED, cmd.outcome, actor
        task.completed_at, task.completed_by, task.acting_for = workflow.now(), actor, acting_for
        task.comment = cmd.comment
        task.version += 1
        if cmd.outcome == APPROVED:
            self._approvers.add(actor)
            if acting_for:
                self._approvers.add(acting_for)
        self._decisions.append(
            DecisionRecord(task.key, task.step.name, task.rule_ids, cmd.outcome, actor, acting_for, cmd.comment,
                           task.completed_at)
        )
        await self._save(task, cmd.outcome, actor, acting_for=acting_for, reason=cmd.comment)
        self._show_progress()
        return self._view(task)

    @decide.validator
    def validate_decide(self, cmd: DecideCommand) -> None:
        if cmd.task_key not in self._opening:  # else the handler waits for the task, then checks
            self._check_decide(cmd)

    @workflow.update
    async def resubmit(self, cmd: ResubmitCommand) -> str:
        self._check_resubmit(cmd)
        self._resubmission = cmd
        self._status = "resubmitted"
        return "resubmitted"

    @resubmit.validator
    def validate_resubmit(self, cmd: ResubmitCommand) -> None:
        self._check_resubmit(cmd)

    @workflow.signal
    def cancel(self, reason: str) -> None:
        self._cancel_reason = reason or "cancelled"

    @workflow.query
    def status(self) -> ChainStatus:
        return ChainStatus(
            request_key=self._request.request_key,
            status=self._status,
            policy_version=self._policy.version if self._policy else None,
            current_step=self._current_step,
            open_tasks=tuple(self._view(t) for t in self._tasks.values() if t.is_open),
            decisions=tuple(self._decisions),
        )


def _facts_dict(facts: RequestFacts) -> dict:
    return {
        "amount": str(facts.amount),
        "discount_percent": str(facts.discount_percent),
        "margin_percent": str(facts.margin_percent),
        "customer_segment": facts.customer_segment,
        "category": facts.category,
        "branch": facts.branch,
        "requester": facts.requester,
    }


def _only_rules(body: PolicyBody, rule_ids: tuple[str, ...]) -> PolicyBody:
    """The policy narrowed to the rules the parent named; all of it when it named none, or when the version pinned
    here has none of them any more (a newer version was published meanwhile: it is judged as it now stands)."""
    kept = tuple(r for r in body.rules if r.rule_id in rule_ids)
    return replace(body, rules=kept) if kept else body
