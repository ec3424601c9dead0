//! `portauthority task ...`: add tasks to a job and report their progress.

use super::client::{ClientArgs, Ctx, Exit};
use super::flags::{self, PageArgs};
use super::output;
use clap::{Args, Subcommand};
use portauthority_client::TaskQuery;
use portauthority_core::api::{
    CreateTaskRequest, HeartbeatRequest, Progress, SetTaskStatusRequest, Task, TaskEnvelope,
    TasksEnvelope,
};
use portauthority_core::{JobId, Status, TaskId};
use serde_json::Value;

#[derive(Args, Debug)]
#[command(after_long_help = "\
A task moves pending -> in_progress -> completed | failed | cancelled; a failed task can be
started again (a retry). The job's status follows its tasks.

Examples:
  JOB=$(portauthority job create --type send --namespace com.a -o json | jq -r .job.id)
  TASK=$(portauthority task add $JOB --type email -o json | jq -r .task.id)
  portauthority task start $JOB $TASK --progress 0/250
  portauthority task heartbeat $JOB $TASK --progress 120/250 --message 'halfway'
  portauthority task complete $JOB $TASK
  portauthority task fail $JOB $TASK --error 'SMTP 554: rejected'
  portauthority task list $JOB --status failed")]
pub struct TaskArgs {
    #[command(flatten)]
    pub conn: ClientArgs,
    #[command(subcommand)]
    pub command: TaskCommand,
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Add a task (or, with --count, several at once) to a job.
    #[command(after_long_help = "\
Examples:
  portauthority task add 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10 --type email
  portauthority task add 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10 --type email --count 500 --meta batch=7")]
    Add(AddArgs),
    /// Show one task.
    Get(TaskRef),
    /// List a job's tasks, filtered, sorted and paged.
    List {
        /// The job's id.
        #[arg(value_parser = flags::job_id)]
        job: JobId,
        /// Only tasks in one of these statuses (comma-separated or repeated).
        #[arg(long, value_name = "STATUS[,STATUS]", value_parser = flags::statuses)]
        status: Vec<Vec<Status>>,
        /// Only tasks of this type.
        #[arg(long = "type", value_name = "TYPE")]
        task_type: Option<String>,
        /// Only tasks of this namespace.
        #[arg(long)]
        namespace: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Mark a task in progress (from pending, or a retry of a failed task), optionally with
    /// its progress.
    Start(ChangeArgs),
    /// Mark a task completed.
    Complete(ChangeArgs),
    /// Mark a task failed, with the error that stopped it.
    Fail(FailArgs),
    /// Report that a running task is alive (keeps a task with a timeout from timing out),
    /// optionally with progress and a message.
    Heartbeat {
        #[command(flatten)]
        at: TaskRef,
        /// CURRENT or CURRENT/TOTAL, e.g. 120/250.
        #[arg(long, value_parser = flags::progress)]
        progress: Option<Progress>,
        /// A line for the history.
        #[arg(long)]
        message: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The job's id.
    #[arg(value_parser = flags::job_id)]
    job: JobId,
    /// What kind of task (1-128 characters).
    #[arg(long = "type", value_name = "TYPE")]
    task_type: String,
    /// Where it belongs (default: the job's namespace).
    #[arg(long)]
    namespace: Option<String>,
    /// The task's id (a UUID); the server makes one when left out.
    #[arg(long, conflicts_with = "count", value_parser = flags::task_id)]
    id: Option<TaskId>,
    /// A meta entry, KEY=VALUE (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = flags::meta_entry)]
    meta: Vec<(String, Value)>,
    /// The whole meta object as JSON; --meta entries are added over it.
    #[arg(long, value_name = "JSON", value_parser = flags::json_object)]
    meta_json: Option<serde_json::Map<String, Value>>,
    /// Fail the task (reason timed_out) when it sees no heartbeat, progress or status
    /// change for this many seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout_seconds: Option<i64>,
    /// Add this many such tasks in one atomic batch (at most the server's batch limit,
    /// 1000 by default).
    #[arg(long, value_name = "N")]
    count: Option<usize>,
}

/// Which task: its job's id, then its own.
#[derive(Args, Debug)]
pub struct TaskRef {
    /// The job's id.
    #[arg(value_parser = flags::job_id)]
    job: JobId,
    /// The task's id.
    #[arg(value_parser = flags::task_id)]
    task: TaskId,
}

#[derive(Args, Debug)]
pub struct ChangeArgs {
    #[command(flatten)]
    at: TaskRef,
    /// CURRENT or CURRENT/TOTAL, e.g. 3/10.
    #[arg(long, value_parser = flags::progress)]
    progress: Option<Progress>,
    /// Why, recorded in the history.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Args, Debug)]
pub struct FailArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// The error that stopped the task, kept on it.
    #[arg(long)]
    error: Option<String>,
}

pub async fn run(ctx: Ctx, command: TaskCommand) -> anyhow::Result<Exit> {
    match command {
        TaskCommand::Add(args) => add(&ctx, args).await?,
        TaskCommand::Get(at) => {
            let task = ctx.client.get_task(at.job, at.task).await?;
            let env = TaskEnvelope { task };
            output::emit(&ctx, &env, || output::task_view(&env.task))?;
        }
        TaskCommand::List {
            job,
            status,
            task_type,
            namespace,
            page,
        } => {
            let query = TaskQuery {
                namespace,
                task_type,
                statuses: status.into_iter().flatten().collect(),
                paging: page.query(),
            };
            let page = ctx.client.list_tasks(job, &query).await?;
            output::emit(&ctx, &page, || {
                if !page.tasks.is_empty() {
                    output::tasks_table(&page.tasks).print();
                }
                println!("{}", output::footer(&page.info, "tasks"));
            })?;
        }
        TaskCommand::Start(c) => change(&ctx, Status::InProgress, c, None).await?,
        TaskCommand::Complete(c) => change(&ctx, Status::Completed, c, None).await?,
        TaskCommand::Fail(f) => change(&ctx, Status::Failed, f.change, f.error).await?,
        TaskCommand::Heartbeat {
            at,
            progress,
            message,
        } => {
            let req = HeartbeatRequest { progress, message };
            let task = ctx.client.heartbeat(at.job, at.task, &req).await?;
            let env = TaskEnvelope { task };
            output::emit(&ctx, &env, || {
                println!(
                    "task {} is {} (progress {})",
                    env.task.id,
                    env.task.status,
                    output::progress(env.task.progress)
                );
            })?;
        }
    }
    Ok(Exit::Ok)
}

async fn add(ctx: &Ctx, args: AddArgs) -> anyhow::Result<()> {
    let namespace = match args.namespace {
        Some(n) => n,
        None => ctx.client.get_job(args.job).await?.namespace,
    };
    let request = CreateTaskRequest {
        id: args.id,
        task_type: Some(args.task_type),
        namespace: Some(namespace),
        meta: flags::meta(args.meta_json, &args.meta),
        start_time: None,
        timeout_seconds: args.timeout_seconds,
    };
    match args.count {
        None => {
            let task = ctx.client.add_task(args.job, &request).await?;
            let env = TaskEnvelope { task };
            output::emit(ctx, &env, || output::task_view(&env.task))
        }
        Some(n) => {
            let tasks = ctx.client.add_tasks(args.job, vec![request; n]).await?;
            let env = TasksEnvelope { tasks };
            output::emit(ctx, &env, || {
                if !env.tasks.is_empty() {
                    output::tasks_table(&env.tasks).print();
                }
                println!("added {} tasks to job {}", env.tasks.len(), args.job);
            })
        }
    }
}

async fn change(
    ctx: &Ctx,
    status: Status,
    args: ChangeArgs,
    error: Option<String>,
) -> anyhow::Result<()> {
    let req = SetTaskStatusRequest {
        status,
        reason: args.reason,
        error,
        progress: args.progress,
    };
    let task = ctx
        .client
        .set_task_status(args.at.job, args.at.task, &req)
        .await?;
    let env = TaskEnvelope { task };
    output::emit(ctx, &env, || print_change(&env.task))
}

fn print_change(t: &Task) {
    let mut line = format!("task {} is {}", t.id, t.status);
    if t.attempt > 1 {
        line.push_str(&format!(" (attempt {})", t.attempt));
    }
    if let Some(p) = t.progress {
        line.push_str(&format!(", progress {}", output::progress(Some(p))));
    }
    println!("{line}");
}
