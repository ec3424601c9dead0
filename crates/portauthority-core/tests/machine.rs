//! Tests of the pure state machine (`portauthority_core::machine`).
//!
//! The rules under test are the "Domain" section of DESIGN.md and its "Precise rules the
//! table leaves open". The file has three parts:
//!
//! * **Harness**: a `Model` job (a `JobState` plus the `TaskState` of each task) that runs
//!   commands through the machine the way a store does, applying an outcome only when the
//!   machine accepts the command, and applying the cancel-open-tasks cascade itself.
//! * **Unit tests**, one rule each, named as the sentence they check.
//! * **A property test** that runs random command sequences against the model and checks
//!   every outcome against an independent reading of DESIGN.md (`allowed`, `derive`,
//!   `expect_job_status`), plus the invariants that must hold after every step.
//!
//! The machine is pure, so "a refused command writes nothing" is the harness's job here
//! (and the store's in production): the property test checks that the machine refuses
//! exactly what DESIGN.md forbids, and that an accepted no-op returns its input unchanged.

use portauthority_core::api::{EventKind, Progress};
use portauthority_core::machine::{
    self, EventDraft, JobOutcome, JobState, Refusal, TaskChange, TaskOutcome, TaskState,
};
use portauthority_core::{Counters, Status, Timestamp};
use proptest::prelude::*;
use proptest::sample::Index;

use Status::{Cancelled, Completed, Failed, InProgress, Pending};

// =======================================================================================
// Harness
// =======================================================================================

/// One job and its tasks, as a store would hold them.
///
/// Every command reads the clock once (`tick`), so each step has its own timestamp and a
/// test can tell which step set an `end_time`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    job: JobState,
    tasks: Vec<TaskState>,
    clock: i64,
}

impl Model {
    /// A job registered with no tasks.
    fn new(auto_complete: bool) -> Model {
        Model::with_tasks(auto_complete, 0)
    }

    /// A job registered with `n` tasks created atomically with it (all `pending`).
    fn with_tasks(auto_complete: bool, n: usize) -> Model {
        Model {
            job: machine::new_job(auto_complete, n as i64),
            tasks: vec![TaskState::new(); n],
            clock: 1_000,
        }
    }

    /// Advances the clock and returns the new time.
    fn tick(&mut self) -> Timestamp {
        self.clock += 1;
        Timestamp::from_millis(self.clock)
    }

    /// The time of the last command.
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.clock)
    }

    /// Adds `n` pending tasks.
    fn add_tasks(&mut self, n: usize) -> Result<Option<EventDraft>, Refusal> {
        let now = self.tick();
        let (job, event) = machine::add_tasks(&self.job, n as i64, now)?;
        self.job = job;
        self.tasks.extend(std::iter::repeat_n(TaskState::new(), n));
        Ok(event)
    }

    /// Applies `change` to task `i`.
    fn change(&mut self, i: usize, change: &TaskChange) -> Result<TaskOutcome, Refusal> {
        let now = self.tick();
        let outcome = machine::change_task(&self.job, &self.tasks[i], change, now)?;
        self.job = outcome.job.clone();
        self.tasks[i] = outcome.task.clone();
        Ok(outcome)
    }

    /// Sets task `i` to `to`, with nothing else in the request.
    fn set_task(&mut self, i: usize, to: Status) -> Result<TaskOutcome, Refusal> {
        self.change(i, &status(to))
    }

    /// Sets the job's status explicitly, cancelling its open tasks when the machine says
    /// so (the store does this in the same transaction).
    fn set_job(&mut self, to: Status) -> Result<JobOutcome, Refusal> {
        let now = self.tick();
        let outcome = machine::set_job_status(&self.job, to, Some("because".into()), now)?;
        self.job = outcome.job.clone();
        if outcome.cancel_open_tasks {
            for task in self.tasks.iter_mut().filter(|t| !t.status.is_terminal()) {
                task.status = Cancelled;
                task.end_time = Some(now);
            }
        }
        Ok(outcome)
    }

    /// The task statuses, in order.
    fn statuses(&self) -> Vec<Status> {
        self.tasks.iter().map(|t| t.status).collect()
    }

    /// Tasks that are `pending` or `in_progress`.
    fn open(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| !t.status.is_terminal())
            .count()
    }
}

/// A bare status change request.
fn status(to: Status) -> TaskChange {
    TaskChange::Status {
        to,
        reason: None,
        error: None,
        progress: None,
    }
}

/// A status change request carrying an error message.
fn status_with_error(to: Status, error: &str) -> TaskChange {
    TaskChange::Status {
        to,
        reason: None,
        error: Some(error.into()),
        progress: None,
    }
}

/// A heartbeat, optionally with progress.
fn heartbeat(progress: Option<Progress>) -> TaskChange {
    TaskChange::Heartbeat {
        progress,
        message: None,
    }
}

fn progress(current: u64, total: u64) -> Progress {
    Progress {
        current,
        total: Some(total),
    }
}

fn is_conflict<T: std::fmt::Debug>(r: &Result<T, Refusal>) -> bool {
    matches!(r, Err(Refusal::Conflict(_)))
}

fn is_invalid<T: std::fmt::Debug>(r: &Result<T, Refusal>) -> bool {
    matches!(r, Err(Refusal::Invalid(_)))
}

// =======================================================================================
// The rules, written out independently of the machine
//
// These restate DESIGN.md directly, so that the property test does not check the machine
// against itself.
// =======================================================================================

/// Whether a task status change `from -> to` is accepted (as a change or as a no-op).
///
/// DESIGN.md, "Task transitions" and "Precise rules":
/// - `pending` -> `in_progress` | `completed` | `failed` | `cancelled`
/// - `in_progress` -> `completed` | `failed` | `cancelled`, and `in_progress` again
/// - `failed` -> `pending` | `in_progress` (a retry); `failed` -> `completed`/`cancelled` is 409
/// - a terminal task set to the status it has is a no-op; any other change of a
///   `completed` or `cancelled` task is 409
///
/// DESIGN.md does not list `in_progress -> pending` (so it is refused) nor say what
/// `pending -> pending` is; like every other repeat of the current status it is taken as
/// an idempotent no-op.
fn allowed(from: Status, to: Status) -> bool {
    match from {
        Pending => true,
        InProgress => matches!(to, InProgress | Completed | Failed | Cancelled),
        Failed => matches!(to, Pending | InProgress | Failed),
        Completed => to == Completed,
        Cancelled => to == Cancelled,
    }
}

/// Whether an accepted `from -> to` is an idempotent no-op (nothing written, no event).
/// `in_progress -> in_progress` is not: it reports progress, which is recorded.
fn is_no_op(from: Status, to: Status) -> bool {
    from == to && from != InProgress
}

/// Whether `from -> to` is a retry (`attempt` + 1, the job reopens).
fn is_retry(from: Status, to: Status) -> bool {
    from == Failed && matches!(to, Pending | InProgress)
}

/// The status a job derives from its tasks' statuses (DESIGN.md, "Job status is derived").
fn derive(tasks: &[Status], auto_complete: bool) -> Status {
    if tasks.iter().all(|s| *s == Pending) {
        // Also true of a job with no tasks.
        Pending
    } else if tasks.iter().any(|s| !s.is_terminal()) || !auto_complete {
        // `auto_complete: false`: every task terminal still leaves the job in_progress.
        InProgress
    } else if tasks.contains(&Failed) {
        Failed
    } else if tasks.contains(&Completed) {
        Completed
    } else {
        Cancelled
    }
}

/// What setting a job's status explicitly should do.
#[derive(Debug, PartialEq, Eq)]
enum JobStatusExpectation {
    /// 422: `pending` and `in_progress` can never be set.
    Invalid,
    /// 409.
    Conflict,
    /// The job already has that terminal status: nothing changes.
    NoOp,
    /// The job takes the status; `cancel` says whether open tasks become cancelled.
    Set { cancel: bool },
}

/// DESIGN.md: `failed` and `cancelled` may be set any time (open tasks become
/// `cancelled`); `completed` only when no task is open (else 409); `pending` or
/// `in_progress` is 422; another status on a terminal job is 409.
fn expect_job_status(job_status: Status, open_tasks: usize, to: Status) -> JobStatusExpectation {
    use JobStatusExpectation::*;
    if !to.is_terminal() {
        Invalid
    } else if job_status.is_terminal() {
        if job_status == to { NoOp } else { Conflict }
    } else if to == Completed && open_tasks > 0 {
        Conflict
    } else {
        Set {
            cancel: to != Completed && open_tasks > 0,
        }
    }
}

// =======================================================================================
// Unit tests: statuses and counters
// =======================================================================================

#[test]
fn only_completed_failed_and_cancelled_are_terminal() {
    assert!(!Pending.is_terminal());
    assert!(!InProgress.is_terminal());
    assert!(Completed.is_terminal());
    assert!(Failed.is_terminal());
    assert!(Cancelled.is_terminal());
}

#[test]
fn statuses_are_written_as_snake_case_strings() {
    for (s, json) in [
        (Pending, "\"pending\""),
        (InProgress, "\"in_progress\""),
        (Completed, "\"completed\""),
        (Failed, "\"failed\""),
        (Cancelled, "\"cancelled\""),
    ] {
        assert_eq!(serde_json::to_string(&s).unwrap(), json);
        assert_eq!(serde_json::from_str::<Status>(json).unwrap(), s);
    }
}

#[test]
fn an_unknown_status_is_refused_on_input() {
    assert!(serde_json::from_str::<Status>("\"done\"").is_err());
    assert!("In_Progress".parse::<Status>().is_err());
}

#[test]
fn counters_are_written_with_the_designs_field_names() {
    let c = Counters::recount([Pending, InProgress, Completed, Failed, Cancelled, Failed]);
    let json = serde_json::to_value(c).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "total": 6, "pending": 1, "in_progress": 1,
            "failed": 2, "completed": 1, "cancelled": 1
        })
    );
    assert!(c.is_consistent());
}

#[test]
fn counters_that_do_not_add_up_are_inconsistent() {
    let mut c = Counters::recount([Pending, Completed]);
    c.total = 3;
    assert!(!c.is_consistent());
    let mut c = Counters::recount([Pending]);
    c.shift(Completed, Pending, 1); // completed goes negative
    assert!(!c.is_consistent());
}

// =======================================================================================
// Unit tests: task transitions
// =======================================================================================

#[test]
fn a_new_task_is_pending_at_attempt_one() {
    let t = TaskState::new();
    assert_eq!(t.status, Pending);
    assert_eq!(t.attempt, 1);
    assert_eq!(t.end_time, None);
    assert_eq!(t.progress, None);
    assert_eq!(t.error, None);
}

#[test]
fn a_pending_task_can_start_complete_fail_or_be_cancelled() {
    for to in [InProgress, Completed, Failed, Cancelled] {
        let mut m = Model::with_tasks(true, 2);
        let out = m.set_task(0, to).unwrap();
        assert_eq!(out.task.status, to);
        assert_eq!(out.task_event, Some(EventDraft::status(Pending, to, None)));
        assert_eq!(m.job.counters, Counters::recount(m.statuses()));
    }
}

#[test]
fn an_in_progress_task_can_complete_fail_or_be_cancelled() {
    for to in [Completed, Failed, Cancelled] {
        let mut m = Model::with_tasks(true, 2);
        m.set_task(0, InProgress).unwrap();
        let out = m.set_task(0, to).unwrap();
        assert_eq!(out.task.status, to);
        assert_eq!(
            out.task_event,
            Some(EventDraft::status(InProgress, to, None))
        );
    }
}

#[test]
fn an_in_progress_task_cannot_go_back_to_pending() {
    let mut m = Model::with_tasks(true, 1);
    m.set_task(0, InProgress).unwrap();
    let before = m.clone();
    assert!(is_conflict(&m.set_task(0, Pending)));
    assert_eq!(m.tasks, before.tasks);
    assert_eq!(m.job, before.job);
}

#[test]
fn setting_a_pending_task_to_pending_is_a_no_op() {
    let mut m = Model::with_tasks(true, 1);
    let before = m.clone();
    let out = m.set_task(0, Pending).unwrap();
    assert_eq!(out.task_event, None);
    assert_eq!(out.job_event, None);
    assert_eq!((m.job, m.tasks), (before.job, before.tasks));
}

#[test]
fn reporting_in_progress_again_records_progress_as_a_heartbeat() {
    let mut m = Model::with_tasks(true, 1);
    m.set_task(0, InProgress).unwrap();
    let job_before = m.job.clone();
    let out = m
        .change(
            0,
            &TaskChange::Status {
                to: InProgress,
                reason: Some("halfway".into()),
                error: None,
                progress: Some(progress(5, 10)),
            },
        )
        .unwrap();
    assert_eq!(out.task.status, InProgress);
    assert_eq!(out.task.progress, Some(progress(5, 10)));
    let event = out.task_event.expect("progress is recorded");
    assert_eq!(event.kind, EventKind::Heartbeat);
    assert_eq!(event.progress, Some(progress(5, 10)));
    assert_eq!(event.message.as_deref(), Some("halfway"));
    assert_eq!(out.job_event, None);
    assert_eq!(m.job, job_before);
}

#[test]
fn a_status_change_without_progress_keeps_the_last_progress() {
    let mut m = Model::with_tasks(true, 1);
    m.change(0, &heartbeat(Some(progress(3, 10)))).unwrap();
    m.set_task(0, InProgress).unwrap();
    assert_eq!(m.tasks[0].progress, Some(progress(3, 10)));
    m.set_task(0, Completed).unwrap();
    assert_eq!(m.tasks[0].progress, Some(progress(3, 10)));
}

#[test]
fn a_heartbeat_keeps_an_open_task_in_its_status() {
    for from in [Pending, InProgress] {
        let mut m = Model::with_tasks(true, 1);
        if from == InProgress {
            m.set_task(0, InProgress).unwrap();
        }
        let job_before = m.job.clone();
        let out = m.change(0, &heartbeat(Some(progress(1, 4)))).unwrap();
        assert_eq!(out.task.status, from);
        assert_eq!(out.task.progress, Some(progress(1, 4)));
        let event = out.task_event.expect("a heartbeat is recorded");
        assert_eq!(event.kind, EventKind::Heartbeat);
        assert_eq!(event.progress, Some(progress(1, 4)));
        assert_eq!(out.job_event, None);
        assert_eq!(m.job, job_before);
    }
}

#[test]
fn a_heartbeat_on_a_finished_task_is_a_conflict() {
    for to in [Completed, Failed, Cancelled] {
        let mut m = Model::with_tasks(true, 2);
        m.set_task(0, to).unwrap();
        let before = m.clone();
        assert!(is_conflict(&m.change(0, &heartbeat(None))));
        assert_eq!((m.job, m.tasks), (before.job, before.tasks));
    }
}

#[test]
fn setting_a_terminal_task_to_its_own_status_is_a_no_op() {
    for to in [Completed, Failed, Cancelled] {
        let mut m = Model::with_tasks(true, 2);
        m.set_task(0, to).unwrap();
        let before = m.clone();
        let out = m.change(0, &status_with_error(to, "again")).unwrap();
        assert_eq!(out.task_event, None, "{to} -> {to}");
        assert_eq!(out.job_event, None);
        // The request's error is not written either: a no-op writes nothing.
        assert_eq!((m.job, m.tasks), (before.job, before.tasks));
    }
}

#[test]
fn a_completed_or_cancelled_task_cannot_change() {
    for from in [Completed, Cancelled] {
        for to in Status::ALL.into_iter().filter(|to| *to != from) {
            let mut m = Model::with_tasks(true, 2);
            m.set_task(0, from).unwrap();
            assert!(is_conflict(&m.set_task(0, to)), "{from} -> {to}");
        }
    }
}

#[test]
fn failed_to_completed_is_a_conflict() {
    let mut m = Model::with_tasks(true, 2);
    m.set_task(0, Failed).unwrap();
    assert!(is_conflict(&m.set_task(0, Completed)));
    assert_eq!(m.tasks[0].status, Failed);
}

#[test]
fn failed_to_cancelled_is_a_conflict() {
    let mut m = Model::with_tasks(true, 2);
    m.set_task(0, Failed).unwrap();
    assert!(is_conflict(&m.set_task(0, Cancelled)));
    assert_eq!(m.tasks[0].status, Failed);
}

#[test]
fn retrying_a_failed_task_adds_one_to_its_attempt() {
    for to in [Pending, InProgress] {
        let mut m = Model::with_tasks(true, 2);
        m.change(0, &status_with_error(Failed, "disk full"))
            .unwrap();
        assert_eq!(m.tasks[0].error.as_deref(), Some("disk full"));

        let out = m.set_task(0, to).unwrap();
        assert_eq!(out.task.status, to);
        assert_eq!(out.task.attempt, 2);
        assert_eq!(out.task.end_time, None);
        assert_eq!(
            out.task.error, None,
            "a retry clears the last attempt's error"
        );
        assert_eq!(out.task_event, Some(EventDraft::status(Failed, to, None)));

        // A second failure and retry make attempt 3.
        m.set_task(0, Failed).unwrap();
        assert_eq!(m.set_task(0, to).unwrap().task.attempt, 3);
    }
}

#[test]
fn only_a_retry_changes_the_attempt() {
    let mut m = Model::with_tasks(true, 1);
    m.set_task(0, InProgress).unwrap();
    m.change(0, &heartbeat(None)).unwrap();
    m.set_task(0, InProgress).unwrap();
    m.set_task(0, Completed).unwrap();
    assert_eq!(m.tasks[0].attempt, 1);
}

#[test]
fn a_task_gets_an_end_time_when_it_finishes_and_loses_it_when_retried() {
    let mut m = Model::with_tasks(true, 2);
    m.set_task(0, InProgress).unwrap();
    assert_eq!(m.tasks[0].end_time, None);
    m.set_task(0, Failed).unwrap();
    let failed_at = m.now();
    assert_eq!(m.tasks[0].end_time, Some(failed_at));

    // A no-op keeps the original end time.
    m.set_task(0, Failed).unwrap();
    assert_eq!(m.tasks[0].end_time, Some(failed_at));

    m.set_task(0, InProgress).unwrap();
    assert_eq!(m.tasks[0].end_time, None);
}

// =======================================================================================
// Unit tests: the job's derived status
// =======================================================================================

#[test]
fn a_job_without_tasks_is_pending() {
    assert_eq!(machine::new_job(true, 0).status, Pending);
    assert_eq!(machine::new_job(false, 0).status, Pending);
}

#[test]
fn a_job_created_with_tasks_counts_them_as_pending() {
    let job = machine::new_job(true, 3);
    assert_eq!(job.status, Pending);
    assert_eq!(job.counters, Counters::recount([Pending; 3]));
    assert!(!job.explicit);
    assert_eq!(job.end_time, None);
}

#[test]
fn a_job_with_a_started_task_is_in_progress() {
    let mut m = Model::with_tasks(true, 2);
    let out = m.set_task(0, InProgress).unwrap();
    assert_eq!(m.job.status, InProgress);
    assert_eq!(
        out.job_event,
        Some(EventDraft::status(Pending, InProgress, None))
    );
}

#[test]
fn a_job_with_a_finished_task_and_a_pending_one_is_in_progress() {
    for to in [Completed, Failed, Cancelled] {
        let mut m = Model::with_tasks(true, 2);
        m.set_task(0, to).unwrap();
        assert_eq!(m.job.status, InProgress, "after a task became {to}");
        assert_eq!(m.job.end_time, None);
    }
}

#[test]
fn a_finished_job_fails_if_any_task_failed() {
    let mut m = Model::with_tasks(true, 3);
    m.set_task(0, Completed).unwrap();
    m.set_task(1, Cancelled).unwrap();
    let out = m.set_task(2, Failed).unwrap();
    assert_eq!(m.job.status, Failed);
    assert_eq!(
        out.job_event,
        Some(EventDraft::status(InProgress, Failed, None))
    );
}

#[test]
fn a_finished_job_completes_if_no_task_failed_and_one_completed() {
    let mut m = Model::with_tasks(true, 3);
    m.set_task(0, Cancelled).unwrap();
    m.set_task(1, Completed).unwrap();
    m.set_task(2, Cancelled).unwrap();
    assert_eq!(m.job.status, Completed);
}

#[test]
fn a_finished_job_whose_tasks_were_all_cancelled_is_cancelled() {
    let mut m = Model::with_tasks(true, 2);
    m.set_task(0, Cancelled).unwrap();
    m.set_task(1, Cancelled).unwrap();
    assert_eq!(m.job.status, Cancelled);
}

#[test]
fn a_job_gets_an_end_time_when_it_finishes_and_loses_it_when_it_reopens() {
    let mut m = Model::with_tasks(true, 1);
    m.set_task(0, Failed).unwrap();
    assert_eq!(m.job.status, Failed);
    assert_eq!(m.job.end_time, Some(m.now()));
    m.set_task(0, Pending).unwrap();
    assert_eq!(m.job.status, Pending);
    assert_eq!(m.job.end_time, None);
}

#[test]
fn a_retry_reopens_a_failed_job() {
    let mut m = Model::with_tasks(true, 2);
    m.set_task(0, Completed).unwrap();
    m.set_task(1, Failed).unwrap();
    assert_eq!(m.job.status, Failed);

    let out = m.set_task(1, InProgress).unwrap();
    assert_eq!(m.job.status, InProgress);
    assert_eq!(m.job.end_time, None);
    assert_eq!(
        out.job_event,
        Some(EventDraft::status(Failed, InProgress, None))
    );

    m.set_task(1, Completed).unwrap();
    assert_eq!(m.job.status, Completed);
}

#[test]
fn an_auto_complete_false_job_stays_in_progress_when_every_task_is_finished() {
    let mut m = Model::with_tasks(false, 2);
    m.set_task(0, Completed).unwrap();
    let out = m.set_task(1, Failed).unwrap();
    assert_eq!(m.job.status, InProgress);
    assert_eq!(m.job.end_time, None);
    assert_eq!(out.job_event, None);
}

#[test]
fn an_auto_complete_false_job_whose_tasks_were_all_cancelled_stays_in_progress() {
    let mut m = Model::with_tasks(false, 1);
    m.set_task(0, Cancelled).unwrap();
    assert_eq!(m.job.status, InProgress);
}

#[test]
fn an_auto_complete_false_job_ends_when_a_client_sets_its_status() {
    let mut m = Model::with_tasks(false, 1);
    m.set_task(0, Completed).unwrap();
    let out = m.set_job(Completed).unwrap();
    assert_eq!(m.job.status, Completed);
    assert!(m.job.explicit);
    assert_eq!(m.job.end_time, Some(m.now()));
    assert!(!out.cancel_open_tasks);
    assert_eq!(
        out.job_event,
        Some(EventDraft::status(
            InProgress,
            Completed,
            Some("because".into())
        ))
    );
}

// =======================================================================================
// Unit tests: adding tasks
// =======================================================================================

#[test]
fn adding_tasks_to_an_open_job_counts_them_as_pending() {
    let mut m = Model::new(true);
    assert_eq!(m.add_tasks(2).unwrap(), None);
    assert_eq!(m.job.status, Pending);
    m.set_task(0, InProgress).unwrap();
    assert_eq!(m.add_tasks(1).unwrap(), None);
    assert_eq!(m.job.status, InProgress);
    assert_eq!(
        m.job.counters,
        Counters::recount([InProgress, Pending, Pending])
    );
}

#[test]
fn adding_a_task_to_a_finished_job_is_a_conflict() {
    // Finished by its tasks.
    let mut m = Model::with_tasks(true, 1);
    m.set_task(0, Completed).unwrap();
    let before = m.job.clone();
    assert!(is_conflict(&m.add_tasks(1)));
    assert_eq!(m.job, before);
    assert_eq!(m.tasks.len(), 1);

    // Finished by a client.
    for to in [Completed, Failed, Cancelled] {
        let mut m = Model::new(true);
        m.set_job(to).unwrap();
        assert!(is_conflict(&m.add_tasks(1)), "job set {to}");
    }
}

#[test]
fn adding_a_task_to_an_auto_complete_false_job_whose_tasks_finished_is_allowed() {
    let mut m = Model::with_tasks(false, 1);
    m.set_task(0, Completed).unwrap();
    assert_eq!(m.job.status, InProgress);
    m.add_tasks(1).unwrap();
    assert_eq!(m.job.status, InProgress);
    assert_eq!(m.job.counters, Counters::recount([Completed, Pending]));
}

// =======================================================================================
// Unit tests: setting a job's status explicitly
// =======================================================================================

#[test]
fn setting_pending_or_in_progress_on_a_job_is_invalid() {
    for to in [Pending, InProgress] {
        let mut m = Model::with_tasks(true, 1);
        assert!(is_invalid(&m.set_job(to)), "open job set {to}");

        // Invalid whatever the state: also on a finished job.
        m.set_task(0, Completed).unwrap();
        assert!(is_invalid(&m.set_job(to)), "finished job set {to}");
    }
}

#[test]
fn failing_a_job_cancels_its_open_tasks() {
    let mut m = Model::with_tasks(true, 4);
    m.set_task(0, InProgress).unwrap();
    m.set_task(1, Completed).unwrap();
    m.set_task(2, Failed).unwrap();

    let out = m.set_job(Failed).unwrap();
    assert!(out.cancel_open_tasks);
    assert_eq!(m.job.status, Failed);
    assert!(m.job.explicit);
    assert_eq!(m.job.end_time, Some(m.now()));
    assert_eq!(m.statuses(), [Cancelled, Completed, Failed, Cancelled]);
    assert_eq!(m.job.counters, Counters::recount(m.statuses()));
    assert_eq!(
        out.job_event,
        Some(EventDraft::status(
            InProgress,
            Failed,
            Some("because".into())
        ))
    );
}

#[test]
fn cancelling_a_job_cancels_its_open_tasks() {
    let mut m = Model::with_tasks(true, 2);
    m.set_task(0, InProgress).unwrap();
    let out = m.set_job(Cancelled).unwrap();
    assert!(out.cancel_open_tasks);
    assert_eq!(m.job.status, Cancelled);
    assert_eq!(m.statuses(), [Cancelled, Cancelled]);
    assert_eq!(m.job.counters, Counters::recount(m.statuses()));
}

#[test]
fn failing_or_cancelling_a_job_without_open_tasks_cancels_nothing() {
    for to in [Failed, Cancelled] {
        let out = Model::new(true).set_job(to).unwrap();
        assert!(!out.cancel_open_tasks);
        assert_eq!(out.job.status, to);

        let mut m = Model::with_tasks(false, 1);
        m.set_task(0, Completed).unwrap();
        let out = m.set_job(to).unwrap();
        assert!(!out.cancel_open_tasks);
        assert_eq!(m.statuses(), [Completed]);
    }
}

#[test]
fn completing_a_job_with_open_tasks_is_a_conflict() {
    for open in [Pending, InProgress] {
        let mut m = Model::with_tasks(true, 2);
        m.set_task(0, Completed).unwrap();
        if open == InProgress {
            m.set_task(1, InProgress).unwrap();
        }
        let before = m.clone();
        assert!(is_conflict(&m.set_job(Completed)), "with a task {open}");
        assert_eq!((m.job, m.tasks), (before.job, before.tasks));
    }
}

#[test]
fn completing_a_job_without_tasks_is_allowed() {
    let mut m = Model::new(true);
    let out = m.set_job(Completed).unwrap();
    assert_eq!(m.job.status, Completed);
    assert!(!out.cancel_open_tasks);
}

#[test]
fn completing_a_job_whose_tasks_failed_is_allowed() {
    // The client decides: "completed only when no task is non-terminal".
    let mut m = Model::with_tasks(false, 1);
    m.set_task(0, Failed).unwrap();
    m.set_job(Completed).unwrap();
    assert_eq!(m.job.status, Completed);
}

#[test]
fn setting_a_finished_job_to_its_own_status_is_a_no_op() {
    // Set by a client.
    let mut m = Model::with_tasks(true, 1);
    m.set_job(Cancelled).unwrap();
    let before = m.clone();
    let out = m.set_job(Cancelled).unwrap();
    assert_eq!(out.job_event, None);
    assert!(!out.cancel_open_tasks);
    assert_eq!((m.job, m.tasks), (before.job, before.tasks));

    // Derived from its tasks: stays derived.
    let mut m = Model::with_tasks(true, 1);
    m.set_task(0, Completed).unwrap();
    let before = m.job.clone();
    assert_eq!(m.set_job(Completed).unwrap().job_event, None);
    assert_eq!(m.job, before);
}

#[test]
fn setting_another_status_on_a_finished_job_is_a_conflict() {
    for (first, then) in [
        (Failed, Cancelled),
        (Cancelled, Failed),
        (Completed, Failed),
    ] {
        let mut m = Model::new(true);
        m.set_job(first).unwrap();
        assert!(is_conflict(&m.set_job(then)), "{first} then {then}");
        assert_eq!(m.job.status, first);
    }
    // Also when its tasks finished it.
    let mut m = Model::with_tasks(true, 1);
    m.set_task(0, Completed).unwrap();
    assert!(is_conflict(&m.set_job(Cancelled)));
}

#[test]
fn a_job_set_explicitly_keeps_its_status_while_its_tasks_are_finished() {
    // Set `cancelled` while a task had failed: the counters alone would derive `failed`.
    let mut m = Model::with_tasks(true, 2);
    m.set_task(0, Failed).unwrap();
    m.set_job(Cancelled).unwrap();
    assert_eq!(m.job.counters.derived_status(true), Failed);
    // A no-op on a task does not re-derive it.
    m.set_task(1, Cancelled).unwrap();
    assert_eq!(m.job.status, Cancelled);
    assert!(m.job.explicit);
}

#[test]
fn a_retry_reopens_an_explicitly_failed_job() {
    let mut m = Model::with_tasks(true, 3);
    m.set_task(0, Failed).unwrap();
    m.set_task(1, InProgress).unwrap();
    m.set_job(Failed).unwrap();
    assert_eq!(m.statuses(), [Failed, Cancelled, Cancelled]);

    let out = m.set_task(0, InProgress).unwrap();
    assert_eq!(out.task.attempt, 2);
    assert!(!m.job.explicit, "the job's status is derived again");
    assert_eq!(m.job.status, InProgress);
    assert_eq!(m.job.end_time, None);
    assert_eq!(
        out.job_event,
        Some(EventDraft::status(Failed, InProgress, None))
    );

    // From here on it derives as usual: the cancelled tasks stay cancelled.
    m.set_task(0, Completed).unwrap();
    assert_eq!(m.job.status, Completed);
}

#[test]
fn a_retry_reopens_an_explicitly_completed_job() {
    let mut m = Model::with_tasks(false, 2);
    m.set_task(0, Completed).unwrap();
    m.set_task(1, Failed).unwrap();
    m.set_job(Completed).unwrap();

    m.set_task(1, Pending).unwrap();
    assert!(!m.job.explicit);
    assert_eq!(m.job.status, InProgress);
    assert_eq!(m.job.end_time, None);
    // And tasks can be added again.
    m.add_tasks(1).unwrap();
}

// =======================================================================================
// Unit tests: timeouts
// =======================================================================================

#[test]
fn a_timeout_fails_an_open_task_with_reason_timed_out_like_a_clients_change() {
    for from in [Pending, InProgress] {
        let mut m = Model::with_tasks(true, 2);
        if from == InProgress {
            m.set_task(0, InProgress).unwrap();
        }
        let by_client = {
            let mut c = m.clone();
            c.change(
                0,
                &TaskChange::Status {
                    to: Failed,
                    reason: Some(machine::TIMED_OUT.into()),
                    error: None,
                    progress: None,
                },
            )
            .unwrap()
        };
        let out = m.change(0, &TaskChange::TimeOut).unwrap();
        assert_eq!(out, by_client, "from {from}");
        assert_eq!(out.task.status, Failed);
        let event = out.task_event.expect("a status event");
        assert_eq!((event.from, event.to), (Some(from), Some(Failed)));
        assert_eq!(event.reason.as_deref(), Some("timed_out"));
    }
}

#[test]
fn a_timeout_of_a_finished_task_changes_nothing_or_is_a_conflict() {
    let mut m = Model::with_tasks(true, 3);
    m.set_task(0, Completed).unwrap();
    m.set_task(1, Cancelled).unwrap();
    m.set_task(2, Failed).unwrap();
    assert!(is_conflict(&m.change(0, &TaskChange::TimeOut)));
    assert!(is_conflict(&m.change(1, &TaskChange::TimeOut)));
    let out = m.change(2, &TaskChange::TimeOut).unwrap();
    assert_eq!(out.task_event, None, "a failed task stays as it is");
}

#[test]
fn a_deadline_is_the_timeout_after_the_last_activity_and_none_once_terminal() {
    let since = Timestamp::from_millis(10_000);
    let at = machine::times_out_at(since, Some(3));
    assert_eq!(at, Some(Timestamp::from_millis(13_000)));
    assert_eq!(machine::times_out_at(since, None), None);
    for s in Status::ALL {
        let expected = if s.is_terminal() { None } else { at };
        assert_eq!(machine::deadline(s, at), expected, "{s}");
    }
    assert!(!machine::is_due(at, Timestamp::from_millis(12_999)));
    assert!(machine::is_due(at, Timestamp::from_millis(13_000)));
    assert!(!machine::is_due(None, Timestamp::from_millis(i64::MAX)));
    let far = machine::times_out_at(Timestamp::from_millis(i64::MAX - 1), Some(i64::MAX));
    assert_eq!(far, Some(Timestamp::from_millis(i64::MAX)), "saturates");
}

// =======================================================================================
// Property test: random command sequences
// =======================================================================================

/// A command a client can send about one job.
#[derive(Clone, Debug)]
enum Command {
    AddTasks(usize),
    /// A status change of the task at `task` (an index into the job's tasks).
    TaskStatus {
        task: Index,
        to: Status,
        progress: Option<Progress>,
        error: Option<String>,
    },
    Heartbeat {
        task: Index,
        progress: Option<Progress>,
    },
    /// Any status, including the refused `pending` and `in_progress`.
    SetJobStatus(Status),
}

fn any_status() -> impl Strategy<Value = Status> {
    prop::sample::select(Status::ALL.to_vec())
}

fn any_progress() -> impl Strategy<Value = Option<Progress>> {
    prop::option::of(
        (0u64..100, prop::option::of(0u64..100))
            .prop_map(|(current, total)| Progress { current, total }),
    )
}

fn any_error() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop::sample::select(vec!["disk full", "timed out"]).prop_map(String::from))
}

/// Task status changes dominate, as they do in production; setting the job's status is
/// rare enough that most sequences run a while before a client ends the job, and retries
/// reopen it often enough to exercise reopening.
fn any_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        2 => (1usize..=3).prop_map(Command::AddTasks),
        8 => (any::<Index>(), any_status(), any_progress(), any_error()).prop_map(
            |(task, to, progress, error)| Command::TaskStatus { task, to, progress, error }
        ),
        2 => (any::<Index>(), any_progress())
            .prop_map(|(task, progress)| Command::Heartbeat { task, progress }),
        1 => any_status().prop_map(Command::SetJobStatus),
    ]
}

/// The invariants that hold after every step, whatever the command and its result.
fn check_invariants(m: &Model) -> Result<(), TestCaseError> {
    let job = &m.job;

    // The stored counters are the counts of the tasks.
    prop_assert_eq!(job.counters, Counters::recount(m.statuses()));
    prop_assert!(job.counters.is_consistent(), "{:?}", job.counters);

    // A derived status follows the rules (both as the crate computes it and as DESIGN.md
    // states it).
    if !job.explicit {
        prop_assert_eq!(job.status, job.counters.derived_status(job.auto_complete));
        prop_assert_eq!(job.status, derive(&m.statuses(), job.auto_complete));
    }

    // Only a terminal status is ever set explicitly.
    if job.explicit {
        prop_assert!(job.status.is_terminal(), "explicit {}", job.status);
    }
    // An `auto_complete: false` job is terminal only because a client said so.
    if !job.auto_complete && job.status.is_terminal() {
        prop_assert!(
            job.explicit,
            "auto_complete=false job became {}",
            job.status
        );
    }
    // A finished job has no open task (its tasks finished it, or the cascade closed them).
    if job.status.is_terminal() {
        prop_assert_eq!(m.open(), 0);
    }

    // `end_time` is set exactly while terminal, for the job and each task.
    prop_assert_eq!(job.end_time.is_some(), job.status.is_terminal());
    for (i, t) in m.tasks.iter().enumerate() {
        prop_assert_eq!(t.end_time.is_some(), t.status.is_terminal(), "task {}", i);
        prop_assert!(t.attempt >= 1, "task {} attempt {}", i, t.attempt);
    }
    Ok(())
}

/// A refused command writes nothing: the job and its tasks are as they were.
fn check_unchanged(m: &Model, before: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(&m.job, &before.job);
    prop_assert_eq!(&m.tasks, &before.tasks);
    Ok(())
}

/// Checks what the machine did to the job (as opposed to a task) during a step:
/// a status change comes with the matching event and end time, nothing else does.
fn check_job_step(
    before: &JobState,
    after: &JobState,
    job_event: &Option<EventDraft>,
    now: Timestamp,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(after.auto_complete, before.auto_complete);
    if after.status == before.status {
        prop_assert_eq!(job_event, &None);
        prop_assert_eq!(after.end_time, before.end_time);
    } else {
        let event = job_event
            .as_ref()
            .expect("a job status change has an event");
        prop_assert_eq!(event.kind, EventKind::StatusChanged);
        prop_assert_eq!(event.from, Some(before.status));
        prop_assert_eq!(event.to, Some(after.status));
        let end = after.status.is_terminal().then_some(now);
        prop_assert_eq!(after.end_time, end);
    }
    Ok(())
}

/// Runs one command against the model and checks its outcome against the rules.
fn step(m: &mut Model, command: &Command) -> Result<(), TestCaseError> {
    let before = m.clone();
    match command {
        Command::AddTasks(n) => {
            let result = m.add_tasks(*n);
            if before.job.status.is_terminal() {
                prop_assert!(is_conflict(&result), "added to a {} job", before.job.status);
                check_unchanged(m, &before)?;
            } else {
                let event = result.expect("adding to an open job is accepted");
                prop_assert_eq!(m.tasks.len(), before.tasks.len() + n);
                prop_assert!(!m.job.status.is_terminal());
                check_job_step(&before.job, &m.job, &event, m.now())?;
            }
        }

        Command::TaskStatus {
            task,
            to,
            progress,
            error,
        } => {
            if m.tasks.is_empty() {
                return Ok(());
            }
            let i = task.index(m.tasks.len());
            let from = before.tasks[i].status;
            let change = TaskChange::Status {
                to: *to,
                reason: None,
                error: error.clone(),
                progress: *progress,
            };
            let result = m.change(i, &change);

            // Accepted exactly when DESIGN.md allows it; a refusal is a conflict (409).
            prop_assert_eq!(
                result.is_ok(),
                allowed(from, *to),
                "{} -> {}: {:?}",
                from,
                to,
                result
            );
            let out = match result {
                Ok(out) => out,
                Err(refusal) => {
                    prop_assert!(matches!(refusal, Refusal::Conflict(_)), "{:?}", refusal);
                    return check_unchanged(m, &before);
                }
            };

            let t = &out.task;
            let was = &before.tasks[i];
            if is_no_op(from, *to) {
                // An idempotent no-op returns its input and records nothing.
                prop_assert_eq!(&out.task_event, &None);
                prop_assert_eq!(&out.job_event, &None);
                prop_assert_eq!(t, was);
                prop_assert_eq!(&out.job, &before.job);
                return Ok(());
            }
            let event = out.task_event.as_ref().expect("a change is recorded");
            prop_assert_eq!(event.progress, *progress);
            if from == InProgress && *to == InProgress {
                // Progress report: a heartbeat event, the job untouched.
                prop_assert_eq!(event.kind, EventKind::Heartbeat);
                prop_assert_eq!(&out.job, &before.job);
            } else {
                prop_assert_eq!(event.kind, EventKind::StatusChanged);
                prop_assert_eq!((event.from, event.to), (Some(from), Some(*to)));
            }

            prop_assert_eq!(t.status, *to);
            let retry = is_retry(from, *to);
            prop_assert_eq!(t.attempt, was.attempt + i64::from(retry));
            if retry {
                prop_assert_eq!(t.end_time, None);
                // The job reopens, whoever ended it.
                prop_assert!(!m.job.explicit);
                prop_assert!(!m.job.status.is_terminal());
            } else if from != *to {
                prop_assert_eq!(t.end_time, to.is_terminal().then_some(m.now()));
            } else {
                prop_assert_eq!(t.end_time, was.end_time);
            }
            prop_assert_eq!(t.progress, progress.or(was.progress));
            // A request's error is kept; a retry starts without the last attempt's error.
            let kept = if retry { None } else { was.error.clone() };
            prop_assert_eq!(&t.error, &error.clone().or(kept));

            // Without a retry, a job a client ended never changes (its tasks are all
            // terminal and only a retry can change a terminal task), and an
            // `auto_complete: false` job never finishes by itself.
            if before.job.explicit && !retry {
                prop_assert_eq!(&m.job, &before.job);
            }
            if !m.job.auto_complete && !before.job.status.is_terminal() {
                prop_assert!(!m.job.status.is_terminal());
            }
            check_job_step(&before.job, &m.job, &out.job_event, m.now())?;
        }

        Command::Heartbeat { task, progress } => {
            if m.tasks.is_empty() {
                return Ok(());
            }
            let i = task.index(m.tasks.len());
            let was = &before.tasks[i];
            let result = m.change(
                i,
                &TaskChange::Heartbeat {
                    progress: *progress,
                    message: Some("alive".into()),
                },
            );
            if was.status.is_terminal() {
                prop_assert!(is_conflict(&result), "heartbeat on a {} task", was.status);
                return check_unchanged(m, &before);
            }
            let out = result.expect("a heartbeat on an open task is accepted");
            let event = out.task_event.as_ref().expect("a heartbeat is recorded");
            prop_assert_eq!(event.kind, EventKind::Heartbeat);
            prop_assert_eq!(event.progress, *progress);
            prop_assert_eq!(event.message.as_deref(), Some("alive"));
            // Only the progress may change.
            let expected = TaskState {
                progress: progress.or(was.progress),
                ..was.clone()
            };
            prop_assert_eq!(&out.task, &expected);
            prop_assert_eq!(&out.job, &before.job);
            prop_assert_eq!(&out.job_event, &None);
        }

        Command::SetJobStatus(to) => {
            let expected = expect_job_status(before.job.status, before.open(), *to);
            let result = m.set_job(*to);
            match (expected, result) {
                (JobStatusExpectation::Invalid, Err(Refusal::Invalid(_)))
                | (JobStatusExpectation::Conflict, Err(Refusal::Conflict(_))) => {
                    check_unchanged(m, &before)?;
                }
                (JobStatusExpectation::NoOp, Ok(out)) => {
                    prop_assert_eq!(&out.job_event, &None);
                    prop_assert!(!out.cancel_open_tasks);
                    prop_assert_eq!(&m.job, &before.job);
                    prop_assert_eq!(&m.tasks, &before.tasks);
                }
                (JobStatusExpectation::Set { cancel }, Ok(out)) => {
                    prop_assert_eq!(out.cancel_open_tasks, cancel);
                    prop_assert_eq!(m.job.status, *to);
                    prop_assert!(m.job.explicit);
                    prop_assert_eq!(m.job.end_time, Some(m.now()));
                    // Terminal tasks are untouched; open ones were cancelled now.
                    for (t, was) in m.tasks.iter().zip(&before.tasks) {
                        if was.status.is_terminal() {
                            prop_assert_eq!(t, was);
                        } else {
                            prop_assert_eq!(t.status, Cancelled);
                            prop_assert_eq!(t.end_time, Some(m.now()));
                            prop_assert_eq!(t.attempt, was.attempt);
                        }
                    }
                    let event = out
                        .job_event
                        .as_ref()
                        .expect("an explicit status is recorded");
                    prop_assert_eq!(event.kind, EventKind::StatusChanged);
                    prop_assert_eq!((event.from, event.to), (Some(before.job.status), Some(*to)));
                    prop_assert_eq!(event.reason.as_deref(), Some("because"));
                }
                (expected, result) => {
                    prop_assert!(
                        false,
                        "set {} on a {} job with {} open task(s): expected {:?}, got {:?}",
                        to,
                        before.job.status,
                        before.open(),
                        expected,
                        result
                    );
                }
            }
        }
    }

    check_invariants(m)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random command sequences keep the counters, the derived status, the end times and
    /// the attempts consistent, and the machine accepts exactly what DESIGN.md allows.
    #[test]
    fn random_command_sequences_follow_the_rules(
        auto_complete in any::<bool>(),
        initial_tasks in 0usize..=3,
        commands in prop::collection::vec(any_command(), 1..80),
    ) {
        let mut m = Model::with_tasks(auto_complete, initial_tasks);
        check_invariants(&m)?;
        for command in &commands {
            step(&mut m, command)?;
        }
    }

    /// The crate's derived status agrees with DESIGN.md for any mix of task statuses
    /// (including mixes a short command sequence rarely reaches).
    #[test]
    fn derived_status_matches_the_design_for_any_tasks(
        auto_complete in any::<bool>(),
        statuses in prop::collection::vec(any_status(), 0..12),
    ) {
        let counters = Counters::recount(statuses.iter().copied());
        prop_assert!(counters.is_consistent());
        prop_assert_eq!(counters.total as usize, statuses.len());
        prop_assert_eq!(counters.derived_status(auto_complete), derive(&statuses, auto_complete));
    }

    /// `change_task` accepts exactly the transitions DESIGN.md allows, from any job state
    /// in which the task can be (not just those the sequences above reach).
    #[test]
    fn change_task_accepts_exactly_the_allowed_transitions(
        from in any_status(),
        to in any_status(),
        attempt in 1i64..5,
    ) {
        // A job of this one task, derived from it.
        let task = TaskState {
            status: from,
            attempt,
            end_time: from.is_terminal().then_some(Timestamp::from_millis(1)),
            progress: None,
            error: None,
        };
        let counters = Counters::recount([from]);
        let job_status = counters.derived_status(true);
        let job = JobState {
            status: job_status,
            explicit: false,
            auto_complete: true,
            counters,
            end_time: job_status.is_terminal().then_some(Timestamp::from_millis(1)),
        };
        let result = machine::change_task(&job, &task, &status(to), Timestamp::from_millis(2));
        prop_assert_eq!(result.is_ok(), allowed(from, to), "{} -> {}", from, to);
        if let Ok(out) = result {
            prop_assert_eq!(out.task.attempt, attempt + i64::from(is_retry(from, to)));
            prop_assert_eq!(out.task_event.is_none(), is_no_op(from, to));
        }
    }
}
