//! `portauthority history ...`: read a job's or a task's history, and post notes to it.

use super::client::{ClientArgs, Ctx, Exit};
use super::flags;
use super::output;
use clap::{Args, Subcommand};
use portauthority_core::api::{HistoryPage, NoteRequest};
use portauthority_core::{JobId, TaskId};
use serde_json::Value;

#[derive(Args, Debug)]
#[command(after_long_help = "\
Every change of a job and its tasks is an event in its history, numbered (SEQ) in the
order it happened; notes are events clients post.

Examples:
  portauthority history list 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10
  portauthority history list 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10 --task 0193a0b2-6d2f-7a01-8b11-3c4d5e6f7a8b
  portauthority history list 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10 --after 120 --size 50
  portauthority history add 0193a0b2-5c1e-7e44-9d52-0f5c8f5a2f10 'paused for the maintenance window' --data '{\"ticket\":\"OPS-7\"}'")]
pub struct HistoryArgs {
    #[command(flatten)]
    pub conn: ClientArgs,
    #[command(subcommand)]
    pub command: HistoryCommand,
}

#[derive(Subcommand, Debug)]
pub enum HistoryCommand {
    /// List a job's history (its own events and its tasks'), or one task's, oldest first.
    List {
        /// The job's id.
        #[arg(value_parser = flags::job_id)]
        job: JobId,
        /// Only this task's events.
        #[arg(long, value_parser = flags::task_id)]
        task: Option<TaskId>,
        /// Only events after this SEQ (to read on from a previous page).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Events per page, 1 to 1000.
        #[arg(long, default_value_t = 100)]
        size: u32,
    },
    /// Post a note to a job's history (or, with --task, to a task's).
    Add {
        /// The job's id.
        #[arg(value_parser = flags::job_id)]
        job: JobId,
        /// The note.
        message: String,
        /// Attach the note to this task.
        #[arg(long, value_parser = flags::task_id)]
        task: Option<TaskId>,
        /// Structured data for the note, a JSON object.
        #[arg(long, value_name = "JSON", value_parser = flags::json_object)]
        data: Option<serde_json::Map<String, Value>>,
    },
}

pub async fn run(ctx: Ctx, command: HistoryCommand) -> anyhow::Result<Exit> {
    match command {
        HistoryCommand::List {
            job,
            task,
            after,
            size,
        } => {
            let page = match task {
                Some(t) => ctx.client.task_history(job, t, after, size).await?,
                None => ctx.client.job_history(job, after, size).await?,
            };
            output::emit(&ctx, &page, || print_page(&page))?;
        }
        HistoryCommand::Add {
            job,
            message,
            task,
            data,
        } => {
            let note = NoteRequest {
                message,
                data: data.map(Value::Object),
            };
            let env = ctx.client.add_note(job, task, &note).await?;
            output::emit(&ctx, &env, || {
                println!("added event {} to the history of job {job}", env.event.seq);
            })?;
        }
    }
    Ok(Exit::Ok)
}

fn print_page(page: &HistoryPage) {
    if page.events.is_empty() {
        println!("no events");
        return;
    }
    output::events_table(&page.events).print();
    if let Some(next) = page.next_after {
        println!("more: --after {next}");
    }
}
