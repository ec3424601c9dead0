//! `portauthority job ...`: register, inspect, list and end jobs.

use super::client::{ClientArgs, Ctx, Exit};
use super::flags::{self, PageArgs};
use super::output::{self, say};
use super::watch;
use clap::{Args, Subcommand};
use portauthority_client::JobQuery;
use portauthority_core::api::{CreateJobRequest, CreateTaskRequest, JobEnvelope};
use portauthority_core::{JobId, Status, Timestamp};
use serde_json::Value;

#[derive(Args, Debug)]
#[command(after_long_help = "\
Examples:
  portauthority job create --type send --namespace com.shipyard.email --meta release_id=123 --tasks 3
  portauthority job list --namespace com.shipyard.email --status in_progress,failed
  portauthority job get 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10
  portauthority job cancel 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10 --reason 'release withdrawn'
  portauthority job list --meta release_id=123 --output json | jq -r '.jobs[].id'")]
pub struct JobArgs {
    #[command(flatten)]
    pub conn: ClientArgs,
    #[command(subcommand)]
    pub command: JobCommand,
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Register a job, optionally with its tasks (created together, atomically).
    #[command(after_long_help = "\
Examples:
  portauthority job create --type send --namespace com.shipyard.email
  portauthority job create --type send --namespace com.shipyard.email \\
      --correlation-id release-123 --meta release_id=123 --meta team=atlas --tasks 100
  portauthority job create --type import --namespace com.a --no-auto-complete --output json

With --id, creating the same job again returns it unchanged (safe to retry); the same id
with different content is a conflict (exit 4).")]
    Create(CreateArgs),
    /// Show one job: status, task counters, times and meta.
    Get {
        /// The job's id.
        #[arg(value_parser = flags::job_id)]
        job: JobId,
    },
    /// List jobs, filtered, sorted and paged.
    #[command(after_long_help = "\
Examples:
  portauthority job list
  portauthority job list --namespace com.shipyard.email --status failed
  portauthority job list --meta release_id=123 --meta team=atlas --sort updated_at --order desc
  portauthority job list --size 100 --page 2 --output json
  portauthority job list --namespace com.shipyard.email --watch

Every filter given must match. DONE is the share of tasks that have ended.")]
    List(ListArgs),
    /// Set a job's status explicitly: completed (only when no task is still open), failed
    /// or cancelled (its open tasks become cancelled).
    #[command(after_long_help = "\
Examples:
  portauthority job status 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10 completed
  portauthority job status 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10 failed --reason 'upstream gone'")]
    Status {
        /// The job's id.
        #[arg(value_parser = flags::job_id)]
        job: JobId,
        /// completed, failed or cancelled.
        #[arg(value_parser = flags::status)]
        status: Status,
        /// Why, recorded in the job's history.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Follow a job live until it ends: a progress bar with counts, rate and ETA on a
    /// terminal, one line per change otherwise. Exits 0 when the job completes, 8 when it
    /// fails, 9 when it is cancelled (at once when it has already ended).
    #[command(after_long_help = "\
Examples:
  portauthority job watch 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10
  portauthority job watch 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10 && echo released
  portauthority job watch 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10 --output json  # one document per change")]
    Watch {
        /// The job's id.
        #[arg(value_parser = flags::job_id)]
        job: JobId,
    },
    /// Cancel a job: its pending and running tasks become cancelled.
    Cancel {
        /// The job's id.
        #[arg(value_parser = flags::job_id)]
        job: JobId,
        /// Why, recorded in the job's history.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// What kind of job (1-128 characters), e.g. `send`.
    #[arg(long = "type", value_name = "TYPE")]
    job_type: String,
    /// Where it belongs (1-128 characters), e.g. `com.shipyard.email`.
    #[arg(long)]
    namespace: String,
    /// The job's id (a UUID); the server makes one when left out.
    #[arg(long, value_parser = flags::job_id)]
    id: Option<JobId>,
    /// The caller's own reference, to find the job by later.
    #[arg(long)]
    correlation_id: Option<String>,
    /// A meta entry, KEY=VALUE (repeatable). Numbers, true, false and null are stored as
    /// JSON; anything else as a string.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = flags::meta_entry)]
    meta: Vec<(String, Value)>,
    /// The whole meta object as JSON; --meta entries are added over it.
    #[arg(long, value_name = "JSON", value_parser = flags::json_object)]
    meta_json: Option<serde_json::Map<String, Value>>,
    /// Keep the job open when all its tasks have ended, until its status is set.
    #[arg(long)]
    no_auto_complete: bool,
    /// When the job began (RFC 3339); default: now.
    #[arg(long, value_name = "TIME", value_parser = flags::timestamp)]
    start_time: Option<Timestamp>,
    /// Fail the job (reason timed_out) if it has not ended this many seconds after it
    /// started.
    #[arg(long, value_name = "SECONDS")]
    timeout_seconds: Option<i64>,
    /// Create this many tasks with the job.
    #[arg(long, value_name = "N", default_value_t = 0)]
    tasks: usize,
    /// The type of the tasks from --tasks (default: the job's type).
    #[arg(long, value_name = "TYPE", requires = "tasks")]
    task_type: Option<String>,
    /// The namespace of the tasks from --tasks (default: the job's namespace).
    #[arg(long, value_name = "NAMESPACE", requires = "tasks")]
    task_namespace: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only jobs of this namespace (exactly).
    #[arg(long)]
    namespace: Option<String>,
    /// Only jobs of this type.
    #[arg(long = "type", value_name = "TYPE")]
    job_type: Option<String>,
    /// Only jobs in one of these statuses: pending, in_progress, completed, failed,
    /// cancelled (comma-separated or repeated).
    #[arg(long, value_name = "STATUS[,STATUS]", value_parser = flags::statuses)]
    status: Vec<Vec<Status>>,
    /// Only jobs with this correlation id.
    #[arg(long)]
    correlation_id: Option<String>,
    /// Only jobs whose meta KEY is VALUE (repeatable; all must match).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = flags::meta_filter)]
    meta: Vec<(String, String)>,
    #[command(flatten)]
    page: PageArgs,
    /// Keep the table live: redrawn in place on each change on a terminal, one line per
    /// change otherwise (`--output json`: one document per change). Runs until stopped.
    #[arg(long)]
    pub watch: bool,
}

impl ListArgs {
    pub fn query(&self) -> JobQuery {
        JobQuery {
            namespace: self.namespace.clone(),
            job_type: self.job_type.clone(),
            correlation_id: self.correlation_id.clone(),
            statuses: self.status.iter().flatten().copied().collect(),
            meta: self.meta.clone(),
            paging: self.page.query(),
        }
    }
}

pub async fn run(ctx: Ctx, command: JobCommand) -> anyhow::Result<Exit> {
    match command {
        JobCommand::Create(args) => {
            let job = ctx.client.create_job(&args.request()).await?;
            show(&ctx, JobEnvelope { job })?;
        }
        JobCommand::Get { job } => {
            let job = ctx.client.get_job(job).await?;
            show(&ctx, JobEnvelope { job })?;
        }
        JobCommand::Watch { job } => return watch::job(&ctx, job).await,
        JobCommand::List(args) if args.watch => return watch::list(&ctx, &args).await,
        JobCommand::List(args) => {
            let page = ctx.client.list_jobs(&args.query()).await?;
            output::emit(&ctx, &page, || {
                if !page.jobs.is_empty() {
                    output::jobs_table(&page.jobs).print();
                }
                say!("{}", output::footer(&page.info, "jobs"));
            })?;
        }
        JobCommand::Status {
            job,
            status,
            reason,
        } => set_status(&ctx, job, status, reason).await?,
        JobCommand::Cancel { job, reason } => {
            set_status(&ctx, job, Status::Cancelled, reason).await?
        }
    }
    Ok(Exit::Ok)
}

fn show(ctx: &Ctx, env: JobEnvelope) -> anyhow::Result<()> {
    output::emit(ctx, &env, || output::job_view(&env.job))
}

async fn set_status(
    ctx: &Ctx,
    job: JobId,
    status: Status,
    reason: Option<String>,
) -> anyhow::Result<()> {
    let job = ctx
        .client
        .set_job_status(job, status, reason.as_deref())
        .await?;
    let env = JobEnvelope { job };
    output::emit(ctx, &env, || {
        let j = &env.job;
        say!(
            "job {} is {} ({} of {} tasks ended)",
            j.id,
            j.status,
            j.tasks.completed + j.tasks.failed + j.tasks.cancelled,
            j.tasks.total
        );
    })
}

impl CreateArgs {
    fn request(self) -> CreateJobRequest {
        let tasks = (self.tasks > 0).then(|| {
            let task = CreateTaskRequest {
                task_type: Some(self.task_type.unwrap_or_else(|| self.job_type.clone())),
                namespace: Some(
                    self.task_namespace
                        .unwrap_or_else(|| self.namespace.clone()),
                ),
                ..CreateTaskRequest::default()
            };
            vec![task; self.tasks]
        });
        CreateJobRequest {
            id: self.id,
            correlation_id: self.correlation_id,
            job_type: Some(self.job_type),
            namespace: Some(self.namespace),
            meta: flags::meta(self.meta_json, &self.meta),
            auto_complete: self.no_auto_complete.then_some(false),
            start_time: self.start_time,
            timeout_seconds: self.timeout_seconds,
            tasks,
        }
    }
}
