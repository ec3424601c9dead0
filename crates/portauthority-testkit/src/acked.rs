//! What a client of the durability tests (SIGKILL of the server, restart of PostgreSQL)
//! sent and had acknowledged, and the check of a stored job against it: everything
//! acknowledged is there, nothing is half-written, counters equal a recount, and each
//! task's last status event matches its status.
//!
//! The tests keep one [`JobRecord`] per job they create, mark a change in flight before
//! sending it and acknowledged when a 2xx answers it, then [`verify`] each job after the
//! server (or its database) came back.

use crate::workload::Rng;
use portauthority_client::Client;
use portauthority_core::api::EventKind;
use portauthority_core::{Counters, JobId, Status, TaskId};
use std::collections::{HashMap, HashSet};

/// One task as its client knows it.
#[derive(Debug)]
pub struct TaskRecord {
    pub id: TaskId,
    /// Its creation was acknowledged (false: in flight when the test cut in).
    pub acked: bool,
    /// The request that created it, shared by the tasks created together.
    pub group: usize,
    /// The last acknowledged status.
    pub status: Status,
    /// A status change sent and never answered with a 2xx.
    pub in_flight: Option<Status>,
}

/// One job as its client knows it.
#[derive(Debug)]
pub struct JobRecord {
    pub id: JobId,
    /// Its creation was acknowledged (false: in flight when the test cut in).
    pub acked: bool,
    pub auto_complete: bool,
    /// The acknowledged explicit status (`PUT .../status` on the job), if any.
    pub explicit: Option<Status>,
    /// An explicit status sent and never answered with a 2xx.
    pub explicit_in_flight: Option<Status>,
    pub tasks: Vec<TaskRecord>,
}

impl JobRecord {
    /// Whether the job is terminal by the acknowledged writes: nothing more may be sent.
    pub fn is_terminal(&self) -> bool {
        self.explicit.is_some()
            || (self.auto_complete
                && !self.tasks.is_empty()
                && self.tasks.iter().all(|t| t.status.is_terminal()))
    }
}

/// The next status for a task, or None to leave it where it is. Each is safe to send again
/// after a 503 whose write may have been committed: the repeat is an idempotent no-op
/// (same terminal status) or a progress report (`in_progress` again).
pub fn next_status(rng: &mut Rng, from: Status) -> Option<Status> {
    use Status::*;
    Some(match from {
        Pending => match rng.below(10) {
            0..=5 => InProgress,
            6 | 7 => Completed,
            8 => Failed,
            _ => Cancelled,
        },
        InProgress => match rng.below(10) {
            0..=6 => Completed,
            7 | 8 => Failed,
            _ => Cancelled,
        },
        Failed if rng.chance(60) => InProgress,
        _ => return None,
    })
}

/// Checks one stored job against what was sent and acknowledged; returns what disagrees.
pub async fn verify(client: &Client, job: &JobRecord) -> Vec<String> {
    let id = job.id;
    let mut bad = Vec::new();
    let stored = match client.get_job(id).await {
        Ok(j) => j,
        Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => {
            if job.acked {
                bad.push(format!("job {id}: acknowledged, but lost: {e}"));
            }
            return bad;
        }
        Err(e) => return vec![format!("job {id}: reading it failed: {e}")],
    };
    let tasks = match client.all_tasks(id).await {
        Ok(t) => t,
        Err(e) => return vec![format!("job {id}: reading its tasks failed: {e}")],
    };
    let history = match client.job_history(id, 0, 1000).await {
        Ok(h) if h.next_after.is_none() => h.events,
        Ok(_) => return vec![format!("job {id}: more history than expected")],
        Err(e) => return vec![format!("job {id}: reading its history failed: {e}")],
    };
    let by_id: HashMap<TaskId, &portauthority_core::api::Task> =
        tasks.iter().map(|t| (t.id, t)).collect();

    // Tasks created by one request exist all together or not at all.
    let mut groups: HashMap<usize, (usize, usize)> = HashMap::new();
    for t in &job.tasks {
        let g = groups.entry(t.group).or_default();
        g.0 += 1;
        if by_id.contains_key(&t.id) {
            g.1 += 1;
        }
    }
    for (group, (sent, found)) in &groups {
        if *found != 0 && found != sent {
            bad.push(format!(
                "job {id}: {found} of the {sent} tasks of one request exist (request {group})"
            ));
        }
    }
    let known: HashSet<TaskId> = job.tasks.iter().map(|t| t.id).collect();
    for t in &tasks {
        if !known.contains(&t.id) {
            bad.push(format!("job {id}: task {} was never sent", t.id));
        }
    }
    for t in &job.tasks {
        match by_id.get(&t.id) {
            None if t.acked => bad.push(format!("job {id}: task {} acknowledged, but lost", t.id)),
            None => {}
            Some(s) => {
                let ok = s.status == t.status || Some(s.status) == t.in_flight;
                if !ok {
                    bad.push(format!(
                        "job {id}: task {} is {}, acknowledged {}, in flight {:?}",
                        t.id, s.status, t.status, t.in_flight
                    ));
                }
                // The history was written in the same transaction as the status.
                let last = history
                    .iter()
                    .rev()
                    .find(|e| e.task_id == Some(t.id) && e.kind == EventKind::StatusChanged)
                    .and_then(|e| e.to)
                    .unwrap_or(Status::Pending);
                if last != s.status {
                    bad.push(format!(
                        "job {id}: task {} is {}, its last history event says {last}",
                        t.id, s.status
                    ));
                }
            }
        }
    }

    let recount = Counters::recount(tasks.iter().map(|t| t.status));
    if stored.tasks != recount || !stored.tasks.is_consistent() {
        bad.push(format!(
            "job {id}: counters {:?}, recount {recount:?}",
            stored.tasks
        ));
    }
    let derived = stored.tasks.derived_status(stored.auto_complete);
    let allowed: Vec<Status> = match (job.explicit, job.explicit_in_flight) {
        (Some(s), _) => vec![s],
        (None, Some(s)) => vec![s, derived],
        (None, None) => vec![derived],
    };
    if !allowed.contains(&stored.status) {
        bad.push(format!(
            "job {id}: status {}, expected one of {allowed:?} (counters {:?})",
            stored.status, stored.tasks
        ));
    }
    bad
}
