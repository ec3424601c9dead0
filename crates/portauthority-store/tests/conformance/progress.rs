//! A job's progress as every store shows it: the rate kept in the job row by the writes that
//! move its counters, and decayed to the time of each read (the store's clock, moved by the
//! test: nothing sleeps).

use crate::harness::{Ctx, create_with_tasks, get_job, job_req, set_task};
use portauthority_core::api::EtaReason;
use portauthority_core::{Status, TaskUpdate};
use portauthority_store::Store;
use std::sync::Arc;

/// Completes tasks one every 600 ms (100 a minute) through single updates and then batches,
/// and checks the ETA a read gives against the truth, then stops and checks the stall.
async fn a_steady_rate_gives_an_eta_within_ten_percent_and_a_stall_turns_it_null(
    store: Arc<dyn Store>,
    ctx: Ctx,
) {
    let (job, tasks) = create_with_tasks(&store, job_req(), 400).await;
    let fresh = get_job(&store, job.id).await.progress;
    assert_eq!(fresh.fraction, Some(0.0));
    assert_eq!(fresh.eta_reason, Some(EtaReason::TooFewSamples));
    assert_eq!(fresh.rate_per_minute, None);

    // 100 one at a time, then 100 more in batches of 10 every 6 s: the same rate.
    for id in &tasks[..100] {
        ctx.clock.advance_ms(600);
        set_task(&store, job.id, *id, Status::Completed)
            .await
            .expect("completes");
    }
    for chunk in tasks[100..200].chunks(10) {
        ctx.clock.advance_ms(6_000);
        let updates = chunk
            .iter()
            .map(|id| TaskUpdate::status(job.id, *id, Status::Completed))
            .collect();
        for r in store.update_tasks(updates).await.expect("a batch") {
            r.expect("completes");
        }
    }
    ctx.clock.advance_ms(3_000);
    let now = ctx.clock_now();
    let p = get_job(&store, job.id).await.progress;
    assert_eq!(p.fraction, Some(0.5));
    let rate = p.rate_per_minute.expect("a rate");
    assert!((rate - 100.0).abs() < 10.0, "rate {rate}");
    // 200 left at 100 a minute: 120 s from now.
    let eta = p.eta.expect("an eta").as_millis() - now.as_millis();
    assert!((eta - 120_000).abs() < 12_000, "eta in {eta} ms");
    assert_eq!(p.eta_reason, None);

    // Nothing finishes for three minutes: stalled, and the rate shown has decayed.
    ctx.clock.advance_ms(180_000);
    let stalled = get_job(&store, job.id).await.progress;
    assert_eq!(
        (stalled.eta, stalled.eta_reason),
        (None, Some(EtaReason::Stalled))
    );
    assert!(stalled.rate_per_minute.expect("a rate") < rate / 4.0);
    // Lists show the same.
    let page = store
        .list_jobs(Default::default(), Default::default())
        .await
        .expect("a list");
    let listed = page.items.iter().find(|j| j.id == job.id).expect("listed");
    assert_eq!(listed.progress.eta_reason, Some(EtaReason::Stalled));

    // Work resumes: the ETA comes back.
    for id in &tasks[200..210] {
        ctx.clock.advance_ms(600);
        set_task(&store, job.id, *id, Status::Completed)
            .await
            .expect("completes");
    }
    assert!(get_job(&store, job.id).await.progress.eta.is_some());

    // Cancelled: terminal, every task counted.
    let done = store
        .set_job_status(job.id, Status::Cancelled, None)
        .await
        .expect("cancels");
    assert_eq!(done.progress.fraction, Some(1.0));
    assert_eq!(done.progress.eta_reason, Some(EtaReason::Terminal));
}

/// A job with `auto_complete: false` has no ETA while open, however fast its tasks finish;
/// a job without tasks says so.
async fn an_open_ended_job_and_an_empty_job_say_why_they_have_no_eta(
    store: Arc<dyn Store>,
    ctx: Ctx,
) {
    let req = portauthority_core::api::CreateJobRequest {
        auto_complete: Some(false),
        ..job_req()
    };
    let (job, tasks) = create_with_tasks(&store, req, 10).await;
    for id in &tasks {
        ctx.clock.advance_ms(1_000);
        set_task(&store, job.id, *id, Status::Completed)
            .await
            .expect("completes");
    }
    let p = get_job(&store, job.id).await.progress;
    assert_eq!(
        (p.fraction, p.eta_reason),
        (Some(1.0), Some(EtaReason::OpenEnded))
    );
    assert!(p.rate_per_minute.is_some());

    let (empty, _) = create_with_tasks(&store, job_req(), 0).await;
    let p = get_job(&store, empty.id).await.progress;
    assert_eq!((p.fraction, p.eta_reason), (None, Some(EtaReason::NoTasks)));
}

conformance_ctx!(
    a_steady_rate_gives_an_eta_within_ten_percent_and_a_stall_turns_it_null,
    an_open_ended_job_and_an_empty_job_say_why_they_have_no_eta,
);
