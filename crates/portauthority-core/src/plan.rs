//! The command layer: one pure planner per command.
//!
//! A store loads the rows a command names, hands them to the command's planner here, and
//! executes the [`Plan`] it returns in one transaction (SQLite: the writer's savepoint;
//! PostgreSQL: a transaction that holds the job's row lock). A planner decides everything
//! a command does: idempotent repeats and conflicts, the state machine's verdict
//! (`machine.rs`), the rows to insert and update, the history events with their per-job
//! sequence numbers, and which of those events are published ([`published`]). A store only
//! maps rows and runs SQL; it never decides. When a planner refuses, nothing is written.
//!
//! Per-job order: every command that appends to a job's history runs while its job is
//! locked, and numbers its events from the job's `last_seq` on, so a job's events are
//! numbered 1, 2, 3, ... without gaps in the order they commit, on every store.

use crate::api::{EventKind, HistoryEvent, Job, NewJob, NewTask, Task};
use crate::auth::Scope;
use crate::command::{AddTasks, NewNote, SetJobStatus, TaskUpdate};
use crate::ids::{JobId, TaskId};
use crate::machine::{self, EventDraft, JobState, Refusal, TaskChange, TaskState};
use crate::progress::{self, Rate};
use crate::status::{Counters, Status};
use crate::time::Timestamp;
use crate::validate::Meta;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// Whether an event of this kind goes to the outbox (to be published on the bus and to
/// webhooks) as well as to the history. The one place that decides it.
pub const fn published(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Created | EventKind::TaskAdded | EventKind::StatusChanged
    )
}

/// What a command reads and writes of a job row besides its tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct JobHead {
    /// The job's namespace: what the caller's scope is checked against.
    pub namespace: String,
    pub state: JobState,
    /// The per-job sequence number of the job's last history event (0: none yet).
    pub last_seq: i64,
    /// When the job times out while it is open: its `start_time` plus its
    /// `timeout_seconds`, fixed at creation (see [`job_times_out_at`]).
    pub times_out_at: Option<Timestamp>,
    /// How fast its tasks finish: moved by the write that moves the counters (see
    /// [`Jobs::finish`]), so it changes only when the state does.
    pub rate: Rate,
}

impl JobHead {
    /// The deadline a store keeps for the job: where the sweeper finds it.
    pub fn deadline(&self) -> Option<Timestamp> {
        machine::deadline(self.state.status, self.times_out_at)
    }
}

/// When a job with a timeout times out, if it is still open then.
pub fn job_times_out_at(job: &Job) -> Option<Timestamp> {
    machine::times_out_at(job.start_time, job.timeout_seconds)
}

/// The deadline a store keeps for a job row.
pub fn job_deadline(job: &Job) -> Option<Timestamp> {
    machine::deadline(job.status, job_times_out_at(job))
}

/// The deadline a store keeps for a task row: `timeout_seconds` after its last heartbeat,
/// progress or status change (each of which sets its `updated_at`; a new task's is its
/// creation), none when it has no timeout or is terminal.
pub fn task_deadline(task: &Task) -> Option<Timestamp> {
    machine::deadline(
        task.status,
        machine::times_out_at(task.updated_at, task.timeout_seconds),
    )
}

/// A job row as loaded whole: what the API shows plus what only the rules read.
#[derive(Clone, Debug)]
pub struct StoredJob {
    pub job: Job,
    /// See `JobState::explicit`.
    pub explicit: bool,
    pub last_seq: i64,
    pub rate: Rate,
}

/// `job.progress` as of `now`, from its counters and `rate`.
pub fn set_progress(job: &mut Job, rate: &Rate, now: Timestamp) {
    job.progress = progress::progress(job.status, job.auto_complete, &job.tasks, rate, now);
}

impl StoredJob {
    /// A row as loaded, its progress as of `now` (the time of the read).
    pub fn loaded(mut job: Job, explicit: bool, last_seq: i64, rate: Rate, now: Timestamp) -> Self {
        set_progress(&mut job, &rate, now);
        StoredJob {
            job,
            explicit,
            last_seq,
            rate,
        }
    }

    pub fn head(&self) -> JobHead {
        JobHead {
            namespace: self.job.namespace.clone(),
            state: JobState {
                status: self.job.status,
                explicit: self.explicit,
                auto_complete: self.job.auto_complete,
                counters: self.job.tasks,
                end_time: self.job.end_time,
            },
            last_seq: self.last_seq,
            times_out_at: job_times_out_at(&self.job),
            rate: self.rate,
        }
    }

    /// The row as it is after `w`.
    fn apply(&mut self, w: &JobWrite, now: Timestamp) {
        let s = &w.after.state;
        self.job.status = s.status;
        self.job.end_time = s.end_time;
        self.job.tasks = s.counters;
        self.explicit = s.explicit;
        self.last_seq = w.after.last_seq;
        self.rate = w.after.rate;
        if w.state_changed() {
            self.job.updated_at = now;
        }
        set_progress(&mut self.job, &self.rate, now);
    }
}

/// The state of a task as the rules see it.
pub fn task_state(t: &Task) -> TaskState {
    TaskState {
        status: t.status,
        attempt: t.attempt,
        end_time: t.end_time,
        progress: t.progress,
        error: t.error.clone(),
    }
}

/// A history event to append, numbered within its job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub job_id: JobId,
    pub task_id: Option<TaskId>,
    /// 1, 2, 3, ... per job, in commit order.
    pub job_seq: i64,
    pub draft: EventDraft,
    /// A note's data: compact JSON.
    pub data: Option<String>,
}

impl NewEvent {
    /// Whether this event goes to the outbox too.
    pub fn published(&self) -> bool {
        published(self.draft.kind)
    }

    /// The event as the API shows it, once the store has given it its sequence number.
    pub fn into_history(self, seq: i64, time: Timestamp) -> Result<HistoryEvent, Refusal> {
        let data = self
            .data
            .map(RawValue::from_string)
            .transpose()
            .map_err(|e| Refusal::Invalid(format!("note data is not JSON: {e}")))?;
        Ok(HistoryEvent {
            seq,
            job_seq: self.job_seq,
            job_id: self.job_id,
            task_id: self.task_id,
            kind: self.draft.kind,
            time,
            from: self.draft.from,
            to: self.draft.to,
            reason: self.draft.reason,
            message: self.draft.message,
            data,
            progress: self.draft.progress,
        })
    }
}

/// A job whose row changes: its head as loaded and as it must be written.
#[derive(Clone, Debug, PartialEq)]
pub struct JobWrite {
    pub id: JobId,
    pub before: JobHead,
    pub after: JobHead,
}

impl JobWrite {
    /// Whether more than the sequence changes (status, counters, end time): then the row's
    /// `updated_at` moves too. A heartbeat or a note changes only the sequence.
    pub fn state_changed(&self) -> bool {
        self.before.state != self.after.state
    }

    /// Whether status, explicitness or end time change (the columns most indexes cover).
    pub fn status_changed(&self) -> bool {
        let (b, a) = (&self.before.state, &self.after.state);
        b.status != a.status || b.explicit != a.explicit || b.end_time != a.end_time
    }
}

/// A task whose row changes: its new content and the status stored before.
#[derive(Clone, Debug)]
pub struct TaskWrite {
    pub task: Task,
    pub stored: Status,
}

/// A job to insert.
#[derive(Clone, Debug)]
pub struct JobInsert {
    pub job: Job,
    /// The validated meta, for the store's meta index rows.
    pub meta: Meta,
    /// The per-job sequence of the last of the events that create it.
    pub last_seq: i64,
}

/// What a command writes, in one transaction. A store writes, in this order: the new job,
/// the new tasks, the changed tasks, the cancelled tasks, the changed jobs, then the events
/// (each published one with its outbox row).
#[derive(Clone, Debug)]
pub struct Plan {
    pub now: Timestamp,
    pub new_job: Option<JobInsert>,
    pub new_tasks: Vec<Task>,
    pub tasks: Vec<TaskWrite>,
    /// Open tasks that become `cancelled` (status, end time and updated_at = `now`).
    pub cancel: Vec<TaskId>,
    pub jobs: Vec<JobWrite>,
    pub events: Vec<NewEvent>,
}

impl Plan {
    /// How this plan changes the installation's count of tasks in each status: the new
    /// job's counters plus the change of every job it writes (a job's counters always
    /// equal its tasks' statuses, so their changes add up to the tasks' changes). The
    /// stores keep a running total of it in the plan's own transaction, so that tasks by
    /// status are known without counting rows.
    pub fn task_count_change(&self) -> Counters {
        let created = self
            .new_job
            .as_ref()
            .map(|n| n.job.tasks)
            .unwrap_or_default();
        self.jobs.iter().fold(created, |sum, w| {
            sum.plus(&w.after.state.counters.minus(&w.before.state.counters))
        })
    }

    fn new(now: Timestamp) -> Plan {
        Plan {
            now,
            new_job: None,
            new_tasks: Vec::new(),
            tasks: Vec::new(),
            cancel: Vec::new(),
            jobs: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// Numbers the events of the jobs a plan touches and tracks their heads.
struct Jobs {
    /// (job, head as loaded, head after the plan so far), in the order first touched.
    heads: Vec<(JobId, JobHead, JobHead)>,
    /// Where each job is in `heads`: a batch touches up to a thousand jobs.
    index: HashMap<JobId, usize>,
}

impl Jobs {
    fn new() -> Jobs {
        Jobs {
            heads: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn slot(&mut self, id: JobId, head: &JobHead) -> &mut (JobId, JobHead, JobHead) {
        let heads = &mut self.heads;
        let i = *self.index.entry(id).or_insert_with(|| {
            heads.push((id, head.clone(), head.clone()));
            heads.len() - 1
        });
        &mut self.heads[i]
    }

    /// Appends an event of job `id` (whose current head is `head`, if not yet tracked).
    fn event(
        &mut self,
        plan: &mut Plan,
        id: JobId,
        head: &JobHead,
        task_id: Option<TaskId>,
        draft: EventDraft,
        data: Option<String>,
    ) {
        let slot = self.slot(id, head);
        slot.2.last_seq += 1;
        plan.events.push(NewEvent {
            job_id: id,
            task_id,
            job_seq: slot.2.last_seq,
            draft,
            data,
        });
    }

    fn set_state(&mut self, id: JobId, head: &JobHead, state: JobState) {
        self.slot(id, head).2.state = state;
    }

    fn current(&self, id: JobId) -> Option<&JobHead> {
        self.index.get(&id).map(|&i| &self.heads[i].2)
    }

    /// Adds a write for every job whose head changed, its rate moved by the tasks the plan
    /// finishes (net of retries that reopen finished ones) at the plan's time.
    fn finish(self, plan: &mut Plan) {
        for (id, before, mut after) in self.heads {
            let finished = |h: &JobHead| h.state.counters.total - h.state.counters.open();
            after.rate = before
                .rate
                .record(finished(&after) - finished(&before), plan.now);
            if before != after {
                plan.jobs.push(JobWrite { id, before, after });
            }
        }
    }
}

/// A loaded job as `scope` sees it: one outside the scope is not there (404, never 403, so
/// that a key cannot learn that a job of another namespace exists).
pub fn visible<T>(scope: &Scope, job: Option<T>, namespace: impl Fn(&T) -> &str) -> Option<T> {
    job.filter(|j| scope.allows(namespace(j)))
}

/// Refuses to create anything in a namespace outside `scope` (403: the caller names the
/// namespace, so nothing is revealed).
pub fn may_create_in(scope: &Scope, namespaces: &[&str]) -> Result<(), Refusal> {
    match namespaces.iter().find(|n| !scope.allows(n)) {
        Some(n) => Err(Refusal::Forbidden(format!(
            "this key may not create in namespace {n:?}"
        ))),
        None => Ok(()),
    }
}

/// Where a task to add stands against the task already stored under its id, if any: new
/// (`None`: to insert), an idempotent repeat (`Some(stored)`), or a conflict.
fn classify_task(
    job_id: JobId,
    t: &NewTask,
    stored: Option<&Task>,
) -> Result<Option<Task>, Refusal> {
    match stored {
        None => Ok(None),
        Some(existing) if t.id_supplied && t.matches(job_id, existing) => {
            Ok(Some(existing.clone()))
        }
        Some(existing) if existing.job_id != job_id => Err(Refusal::Conflict(format!(
            "task id {} is already used by job {}",
            t.id, existing.job_id
        ))),
        Some(_) => Err(Refusal::Conflict(format!(
            "task {} already exists with different content",
            t.id
        ))),
    }
}

/// A task as it is right after being added: pending, first attempt.
fn added_task(job_id: JobId, t: &NewTask, now: Timestamp) -> Task {
    Task {
        id: t.id,
        job_id,
        task_type: t.task_type.as_str().to_owned(),
        namespace: t.namespace.as_str().to_owned(),
        status: Status::Pending,
        start_time: t.start_time.unwrap_or(now),
        end_time: None,
        attempt: 1,
        progress: None,
        error: None,
        meta: t.meta.to_raw(),
        timeout_seconds: t.timeout_seconds,
        created_at: now,
        updated_at: now,
    }
}

/// A job as the API returns it (and the row): its stored value, and whether this call
/// created it (false: it already existed with the same content, and this is the stored
/// one).
#[derive(Clone, Debug)]
pub struct Created<T> {
    pub value: T,
    pub created: bool,
}

/// Creates a job with its first tasks. `existing` is the job stored under the id, if any;
/// `stored` the tasks stored under the ids of `new.tasks`.
pub fn create_job(
    scope: &Scope,
    new: NewJob,
    existing: Option<StoredJob>,
    stored: &HashMap<TaskId, Task>,
    now: Timestamp,
) -> Result<(Plan, Created<Job>), Refusal> {
    let mut namespaces = vec![new.namespace.as_str()];
    namespaces.extend(new.tasks.iter().map(|t| t.namespace.as_str()));
    may_create_in(scope, &namespaces)?;
    let mut plan = Plan::new(now);
    if let Some(existing) = existing {
        let same = new.matches(&existing.job)
            && new
                .tasks
                .iter()
                .all(|t| t.id_supplied && stored.get(&t.id).is_some_and(|s| t.matches(new.id, s)));
        if !same {
            return Err(Refusal::Conflict(format!(
                "job {} already exists with different content",
                new.id
            )));
        }
        let created = Created {
            value: existing.job,
            created: false,
        };
        return Ok((plan, created));
    }
    for t in &new.tasks {
        if let Some(existing) = classify_task(new.id, t, stored.get(&t.id))? {
            return Err(Refusal::Conflict(format!(
                "task id {} is already used by job {}",
                existing.id, existing.job_id
            )));
        }
    }
    let state = machine::new_job(new.auto_complete, new.tasks.len() as i64);
    let mut job = Job {
        id: new.id,
        correlation_id: new.correlation_id.clone(),
        job_type: new.job_type.as_str().to_owned(),
        namespace: new.namespace.as_str().to_owned(),
        status: state.status,
        start_time: new.start_time.unwrap_or(now),
        end_time: None,
        tasks: state.counters,
        meta: new.meta.to_raw(),
        auto_complete: new.auto_complete,
        timeout_seconds: new.timeout_seconds,
        created_at: now,
        updated_at: now,
        progress: Default::default(),
    };
    set_progress(&mut job, &Rate::default(), now);
    // Numbered from nothing: the inserted row carries the `last_seq` its events leave.
    let empty = JobHead {
        namespace: job.namespace.clone(),
        state,
        last_seq: 0,
        times_out_at: job_times_out_at(&job),
        rate: Rate::default(),
    };
    let mut jobs = Jobs::new();
    let created = EventDraft::simple(EventKind::Created);
    jobs.event(&mut plan, new.id, &empty, None, created, None);
    for t in &new.tasks {
        plan.new_tasks.push(added_task(new.id, t, now));
        let added = EventDraft::simple(EventKind::TaskAdded);
        jobs.event(&mut plan, new.id, &empty, Some(t.id), added, None);
    }
    plan.new_job = Some(JobInsert {
        job: job.clone(),
        meta: new.meta,
        last_seq: jobs.current(new.id).map_or(0, |h| h.last_seq),
    });
    Ok((
        plan,
        Created {
            value: job,
            created: true,
        },
    ))
}

/// Adds tasks to a job, all or none. `stored` holds the tasks stored under the ids of
/// `cmd.tasks`. Tasks that are idempotent repeats are returned as stored.
pub fn add_tasks(
    scope: &Scope,
    cmd: AddTasks,
    job: Option<JobHead>,
    stored: &HashMap<TaskId, Task>,
    now: Timestamp,
) -> Result<(Plan, Vec<Task>), Refusal> {
    let head =
        visible(scope, job, |h| &h.namespace).ok_or_else(|| Refusal::job_not_found(cmd.job_id))?;
    let namespaces: Vec<&str> = cmd.tasks.iter().map(|t| t.namespace.as_str()).collect();
    may_create_in(scope, &namespaces)?;
    let mut plan = Plan::new(now);
    let mut parts = Vec::with_capacity(cmd.tasks.len());
    for t in &cmd.tasks {
        parts.push(classify_task(cmd.job_id, t, stored.get(&t.id))?);
    }
    let fresh = parts.iter().filter(|p| p.is_none()).count() as i64;
    if fresh == 0 {
        return Ok((plan, parts.into_iter().flatten().collect()));
    }
    let (state, job_event) = machine::add_tasks(&head.state, fresh, now)?;
    let mut jobs = Jobs::new();
    let mut out = Vec::with_capacity(parts.len());
    for (t, part) in cmd.tasks.iter().zip(parts) {
        out.push(match part {
            Some(existing) => existing,
            None => {
                let task = added_task(cmd.job_id, t, now);
                plan.new_tasks.push(task.clone());
                let added = EventDraft::simple(EventKind::TaskAdded);
                jobs.event(&mut plan, cmd.job_id, &head, Some(t.id), added, None);
                task
            }
        });
    }
    jobs.set_state(cmd.job_id, &head, state);
    if let Some(e) = job_event {
        jobs.event(&mut plan, cmd.job_id, &head, None, e, None);
    }
    jobs.finish(&mut plan);
    Ok((plan, out))
}

/// Whether setting `to` on `job` cancels its open tasks, so that the store must load them
/// (their ids and statuses) for [`set_job_status`].
pub fn set_job_status_cancels(job: &JobState, to: Status) -> bool {
    machine::cancels_open_tasks(job, to)
}

/// Sets a job's status explicitly. `open` lists the job's pending and in-progress tasks
/// when [`set_job_status_cancels`] says they are needed (else it may be empty).
pub fn set_job_status(
    scope: &Scope,
    cmd: SetJobStatus,
    job: Option<StoredJob>,
    open: &[(TaskId, Status)],
    now: Timestamp,
) -> Result<(Plan, Job), Refusal> {
    let mut row = visible(scope, job, |j| &j.job.namespace)
        .ok_or_else(|| Refusal::job_not_found(cmd.job_id))?;
    let head = row.head();
    let mut plan = Plan::new(now);
    let out = machine::set_job_status(&head.state, cmd.to, cmd.reason.clone(), now)?;
    let Some(job_event) = out.job_event else {
        return Ok((plan, row.job));
    };
    let mut jobs = Jobs::new();
    if out.cancel_open_tasks {
        for (task_id, from) in open {
            plan.cancel.push(*task_id);
            let e = EventDraft::status(*from, Status::Cancelled, cmd.reason.clone());
            jobs.event(&mut plan, cmd.job_id, &head, Some(*task_id), e, None);
        }
    }
    jobs.set_state(cmd.job_id, &head, out.job);
    jobs.event(&mut plan, cmd.job_id, &head, None, job_event, None);
    jobs.finish(&mut plan);
    for w in &plan.jobs {
        row.apply(w, now);
    }
    Ok((plan, row.job))
}

/// Applies task updates (status changes, heartbeats), each on its own: items apply in
/// request order, each seeing the changes of the items before it; a refused item (not
/// found, a rule) changes nothing and gets its own refusal. `jobs` and `tasks` hold the
/// rows found for the ids the updates name.
pub fn update_tasks(
    scope: &Scope,
    updates: &[TaskUpdate],
    jobs: &HashMap<JobId, JobHead>,
    mut tasks: HashMap<TaskId, Task>,
    now: Timestamp,
) -> (Plan, Vec<Result<Task, Refusal>>) {
    let mut plan = Plan::new(now);
    let mut heads = Jobs::new();
    let mut results = Vec::with_capacity(updates.len());
    // The stored status of each changed task, in the order of its first change.
    let mut changed: Vec<(TaskId, Status)> = Vec::new();
    for u in updates {
        let (Some(loaded), Some(task)) = (
            visible(scope, jobs.get(&u.job_id), |h| &h.namespace),
            tasks.get_mut(&u.task_id).filter(|t| t.job_id == u.job_id),
        ) else {
            results.push(Err(Refusal::task_not_found(u.job_id, u.task_id)));
            continue;
        };
        // The sweeper found the task due a moment ago; under the job's lock it may have
        // seen a heartbeat or a change since, and then it is not due any more.
        if matches!(u.change, TaskChange::TimeOut) && !machine::is_due(task_deadline(task), now) {
            results.push(Err(Refusal::Conflict(format!(
                "task {} is not due to time out: it saw activity since, or has finished",
                u.task_id
            ))));
            continue;
        }
        let head = heads.current(u.job_id).unwrap_or(loaded).clone();
        let out = match machine::change_task(&head.state, &task_state(task), &u.change, now) {
            Ok(out) => out,
            Err(refusal) => {
                results.push(Err(refusal));
                continue;
            }
        };
        if let Some(e) = out.task_event {
            if !changed.iter().any(|(id, _)| *id == u.task_id) {
                changed.push((u.task_id, task.status));
            }
            heads.event(&mut plan, u.job_id, loaded, Some(u.task_id), e, None);
            if let Some(e) = out.job_event {
                heads.event(&mut plan, u.job_id, loaded, None, e, None);
            }
            heads.set_state(u.job_id, loaded, out.job);
            let s = &out.task;
            task.status = s.status;
            task.attempt = s.attempt;
            task.end_time = s.end_time;
            task.progress = s.progress;
            task.error = s.error.clone();
            task.updated_at = now;
        }
        results.push(Ok(task.clone()));
    }
    for (id, stored) in changed {
        if let Some(task) = tasks.remove(&id) {
            plan.tasks.push(TaskWrite { task, stored });
        }
    }
    heads.finish(&mut plan);
    (plan, results)
}

/// Appends a note to a job's history, or to one of its tasks' (`task`: the task stored
/// under `note.task_id`, if the note names one). The event is the plan's only one.
pub fn add_note(
    scope: &Scope,
    note: NewNote,
    job: Option<JobHead>,
    task: Option<&Task>,
    now: Timestamp,
) -> Result<Plan, Refusal> {
    let head =
        visible(scope, job, |h| &h.namespace).ok_or_else(|| Refusal::job_not_found(note.job_id))?;
    if let Some(task_id) = note.task_id
        && task.is_none_or(|t| t.job_id != note.job_id || t.id != task_id)
    {
        return Err(Refusal::task_not_found(note.job_id, task_id));
    }
    let mut plan = Plan::new(now);
    let mut jobs = Jobs::new();
    let draft = EventDraft {
        message: Some(note.message),
        ..EventDraft::simple(EventKind::Note)
    };
    jobs.event(
        &mut plan,
        note.job_id,
        &head,
        note.task_id,
        draft,
        note.data,
    );
    jobs.finish(&mut plan);
    Ok(plan)
}
