//! `job watch ID` and `job list --watch`: live views drawn from the server's watch streams
//! (Server-Sent Events). On a terminal they redraw in place; otherwise they print one plain
//! line per change, for logs and scripts.

use super::client::{Ctx, Exit, Output};
use super::job::ListArgs;
use super::output::{self, say};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use portauthority_client::{WatchEvent, WatchStream};
use portauthority_core::api::{Job, JobEnvelope, WatchChange};
use portauthority_core::{JobId, Status};
use std::collections::HashMap;
use std::time::Duration;

/// How long a view waits without a change before it reads the job again: a change made
/// between the first read and the stream opening is then still shown.
const QUIET: Duration = Duration::from_secs(10);

/// The exit code a job's outcome stands for (DESIGN.md "CLI exit codes").
fn outcome(status: Status) -> Exit {
    match status {
        Status::Failed => Exit::JobFailed,
        Status::Cancelled => Exit::JobCancelled,
        _ => Exit::Ok,
    }
}

/// One line of a job's state: `ID in_progress 2/3 tasks (66%): 1 pending, 0 running, 2
/// completed, 0 failed, 0 cancelled; 4.0/min, eta in 15s`.
pub fn line(j: &Job) -> String {
    let c = &j.tasks;
    format!(
        "{} {} {}/{} tasks ({}): {} pending, {} running, {} completed, {} failed, {} cancelled; {}, eta {}",
        j.id,
        j.status,
        ended(j),
        c.total,
        output::percent(j),
        c.pending,
        c.in_progress,
        c.completed,
        c.failed,
        c.cancelled,
        output::rate(j),
        output::eta(j),
    )
}

fn ended(j: &Job) -> u64 {
    let c = &j.tasks;
    (c.completed + c.failed + c.cancelled) as u64
}

/// Reads the next change, reopening the stream after a `resync`, and giving `None` after
/// [`QUIET`] without one.
async fn next_change(
    ctx: &Ctx,
    stream: &mut WatchStream,
    open: &dyn Fn(&Ctx, Option<String>) -> WatchStream,
) -> anyhow::Result<Option<Box<WatchChange>>> {
    loop {
        match tokio::time::timeout(QUIET, stream.next()).await {
            Err(_) => return Ok(None),
            Ok(Some(Ok(WatchEvent::Change { change, .. }))) => return Ok(Some(change)),
            Ok(Some(Ok(WatchEvent::Resync { from }))) => *stream = open(ctx, Some(from)),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => anyhow::bail!("the watch stream ended"),
        }
    }
}

/// `job watch ID`: follows the job until it ends and exits with its outcome.
pub async fn job(ctx: &Ctx, id: JobId) -> anyhow::Result<Exit> {
    let open = move |ctx: &Ctx, from| ctx.client.watch_job(id, from);
    let mut stream = open(ctx, None);
    let mut job = ctx.client.get_job(id).await?;
    let json = ctx.output == Output::Json;
    if job.status.is_terminal() {
        let env = JobEnvelope { job };
        output::emit(ctx, &env, || output::job_view(&env.job))?;
        return Ok(outcome(env.job.status));
    }
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(job.tasks.total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut last = String::new();
    loop {
        if json {
            output::json(&JobEnvelope { job: job.clone() })?;
        } else if bar.is_hidden() {
            let l = line(&job);
            if l != last {
                say!("{l}");
                last = l;
            }
        } else {
            let c = &job.tasks;
            bar.set_length(c.total as u64);
            bar.set_position(ended(&job));
            bar.set_message(format!(
                "{} {}: {} running, {} failed, {} cancelled; {}, eta {}",
                output::percent(&job),
                job.status,
                c.in_progress,
                c.failed,
                c.cancelled,
                output::rate(&job),
                output::eta(&job)
            ));
        }
        if job.status.is_terminal() {
            break;
        }
        job = match next_change(ctx, &mut stream, &open).await? {
            Some(change) if change.job.id == id => change.job,
            Some(_) => continue,
            None => ctx.client.get_job(id).await?,
        };
    }
    if !bar.is_hidden() {
        bar.finish_and_clear();
        say!("{}", line(&job));
    }
    Ok(outcome(job.status))
}

/// `job list --watch`: the list's first page, kept up to date from `/v1/watch`.
pub async fn list(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<Exit> {
    let query = args.query();
    let mut filter: Vec<(&str, String)> = Vec::new();
    if let Some(ns) = &query.namespace {
        filter.push(("namespace", ns.clone()));
    }
    if let Some(t) = &query.job_type {
        filter.push(("type", t.clone()));
    }
    if let Some(c) = &query.correlation_id {
        filter.push(("correlation_id", c.clone()));
    }
    if !query.statuses.is_empty() {
        let s: Vec<String> = query.statuses.iter().map(|s| s.to_string()).collect();
        filter.push(("status", s.join(",")));
    }
    let meta: Vec<(String, String)> = query
        .meta
        .iter()
        .map(|(k, v)| (format!("meta.{k}"), v.clone()))
        .collect();
    for (k, v) in &meta {
        filter.push((k.as_str(), v.clone()));
    }
    let filter: Vec<(String, String)> =
        filter.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let open = move |ctx: &Ctx, from| {
        let f: Vec<(&str, String)> = filter
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        ctx.client.watch(&f, from)
    };
    let mut stream = open(ctx, None);
    let page = ctx.client.list_jobs(&query).await?;
    let json = ctx.output == Output::Json;
    let term = console::Term::stdout();
    let live = !json && term.is_term();
    let mut order: Vec<JobId> = page.jobs.iter().map(|j| j.id).collect();
    let mut jobs: HashMap<JobId, Job> = page.jobs.into_iter().map(|j| (j.id, j)).collect();
    let mut drawn = 0usize;
    let draw = |order: &[JobId], jobs: &HashMap<JobId, Job>, drawn: &mut usize| {
        let rows: Vec<Job> = order
            .iter()
            .filter_map(|id| jobs.get(id).cloned())
            .collect();
        let text = output::jobs_table(&rows).render(output::terminal_width());
        if live {
            let _ = term.clear_last_lines(*drawn);
        }
        *drawn = text.lines().count();
        output::write_out(&text);
    };
    if json {
        for id in &order {
            output::json(&JobEnvelope {
                job: jobs[id].clone(),
            })?;
        }
    } else {
        draw(&order, &jobs, &mut drawn);
    }
    loop {
        let Some(change) = next_change(ctx, &mut stream, &open).await? else {
            continue;
        };
        let job = change.job;
        // The stream's namespace is a prefix; the list's is exact.
        if query
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != job.namespace)
        {
            continue;
        }
        if json {
            output::json(&JobEnvelope { job })?;
            continue;
        }
        if !jobs.contains_key(&job.id) {
            order.insert(0, job.id);
        }
        if live {
            jobs.insert(job.id, job);
            draw(&order, &jobs, &mut drawn);
        } else {
            say!("{}", line(&job));
            jobs.insert(job.id, job);
        }
    }
}
