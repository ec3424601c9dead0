//! The store alone, without HTTP: the same operations the load generator drives, so the
//! difference shows what the HTTP layer adds.
//!
//! `cargo bench -p portauthority-store` runs against a SQLite file in a temporary folder;
//! with `PORTAUTHORITY_BENCH_DATABASE_URL=postgres://...` (a server to create a scratch
//! database on) it runs against PostgreSQL too. "seq" benchmarks issue one operation at a
//! time (each pays a whole commit); "c16" ones run 16 concurrent callers, which is where
//! group commit and the pool earn their keep.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portauthority_core::api::{CreateJobRequest, CreateTaskRequest, NewJob, NewTask};
use portauthority_core::{JobId, Limits, Status, TaskId};
use portauthority_store::{JobFilter, Paging, Store, TaskUpdate};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn new_job(i: usize) -> NewJob {
    CreateJobRequest {
        job_type: Some(format!("bench-{}", i % 7)),
        namespace: Some(format!("com.bench.ns{}", i % 5)),
        meta: Some(serde_json::json!({"bench_group": i % 100})),
        auto_complete: Some(false),
        ..Default::default()
    }
    .validate(&Limits::default(), &portauthority_store::system::SystemIds)
    .expect("valid job")
}

fn new_tasks(n: usize) -> Vec<NewTask> {
    (0..n)
        .map(|_| {
            CreateTaskRequest {
                task_type: Some("step".into()),
                namespace: Some("com.bench.tasks".into()),
                ..Default::default()
            }
            .validate(&Limits::default(), &portauthority_store::system::SystemIds)
            .expect("valid task")
        })
        .collect()
}

/// A store with `jobs` jobs of `tasks` tasks each, for the benchmarks to work on.
async fn prepared(
    url: &str,
    jobs: usize,
    tasks: usize,
) -> (Arc<dyn Store>, Vec<(JobId, TaskId)>, Vec<JobId>) {
    let store = portauthority_store::open(url).await.expect("store opens");
    let mut all_tasks = Vec::new();
    let mut job_ids = Vec::new();
    for i in 0..jobs {
        let job = store.create_job(new_job(i)).await.expect("job").value;
        job_ids.push(job.id);
        let created = store
            .add_tasks(job.id, new_tasks(tasks))
            .await
            .expect("tasks");
        all_tasks.extend(created.into_iter().map(|t| (job.id, t.id)));
    }
    (store, all_tasks, job_ids)
}

/// Runs `iters` operations from 16 concurrent callers; returns the elapsed time.
async fn concurrent<F, Fut>(iters: u64, op: F) -> Duration
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i as u64 >= iters {
                        break;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    start.elapsed()
}

fn bench_store(c: &mut Criterion, name: &str, url: String) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (store, tasks, jobs) = rt.block_on(prepared(&url, 64, 2000));
    let mut g = c.benchmark_group(name);
    g.sample_size(10).measurement_time(Duration::from_secs(3));

    let counter = Arc::new(AtomicUsize::new(0));
    g.throughput(Throughput::Elements(1));
    {
        let (store, counter) = (store.clone(), counter.clone());
        g.bench_function("create_job/seq", |b| {
            b.to_async(&rt).iter(|| {
                let store = store.clone();
                let i = counter.fetch_add(1, Ordering::Relaxed);
                async move { store.create_job(new_job(i)).await.expect("create") }
            })
        });
    }
    {
        let store = store.clone();
        g.bench_function("create_job/c16", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                concurrent(iters, move |i| {
                    let store = store.clone();
                    async move {
                        store.create_job(new_job(i)).await.expect("create");
                    }
                })
            })
        });
    }
    // Each status benchmark moves tasks it has not touched yet: pending → in_progress.
    let cursor = Arc::new(AtomicUsize::new(0));
    let tasks = Arc::new(tasks);
    {
        let (store, tasks, cursor) = (store.clone(), tasks.clone(), cursor.clone());
        g.bench_function("task_status/seq", |b| {
            b.to_async(&rt).iter(|| {
                let store = store.clone();
                let (job, task) = tasks[cursor.fetch_add(1, Ordering::Relaxed) % tasks.len()];
                async move {
                    store
                        .update_tasks(vec![TaskUpdate::status(job, task, Status::InProgress)])
                        .await
                        .expect("update")
                }
            })
        });
    }
    {
        let (store, tasks, cursor) = (store.clone(), tasks.clone(), cursor.clone());
        g.bench_function("task_status/c16", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, tasks, cursor) = (store.clone(), tasks.clone(), cursor.clone());
                concurrent(iters, move |_| {
                    let store = store.clone();
                    let (job, task) = tasks[cursor.fetch_add(1, Ordering::Relaxed) % tasks.len()];
                    async move {
                        store
                            .update_tasks(vec![TaskUpdate::status(job, task, Status::InProgress)])
                            .await
                            .expect("update");
                    }
                })
            })
        });
    }
    g.throughput(Throughput::Elements(100));
    {
        let (store, tasks, cursor) = (store.clone(), tasks.clone(), cursor.clone());
        g.bench_function("task_status_batch100/c16", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, tasks, cursor) = (store.clone(), tasks.clone(), cursor.clone());
                concurrent(iters, move |_| {
                    let store = store.clone();
                    let start = cursor.fetch_add(100, Ordering::Relaxed);
                    let batch = (start..start + 100)
                        .map(|k| {
                            let (job, task) = tasks[k % tasks.len()];
                            TaskUpdate::status(job, task, Status::InProgress)
                        })
                        .collect();
                    async move {
                        store.update_tasks(batch).await.expect("batch");
                    }
                })
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    {
        let (store, jobs) = (store.clone(), Arc::new(jobs));
        g.bench_function("get_job/c16", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (store, jobs) = (store.clone(), jobs.clone());
                concurrent(iters, move |i| {
                    let store = store.clone();
                    let id = jobs[i % jobs.len()];
                    async move {
                        store.get_job(id).await.expect("get");
                    }
                })
            })
        });
    }
    {
        let store = store.clone();
        g.bench_function("list_jobs_page1/c16", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = store.clone();
                concurrent(iters, move |_| {
                    let store = store.clone();
                    async move {
                        store
                            .list_jobs(JobFilter::default(), Paging::default())
                            .await
                            .expect("list");
                    }
                })
            })
        });
    }
    g.finish();
    rt.block_on(store.close());
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    bench_store(
        c,
        "sqlite",
        format!("sqlite://{}", dir.path().join("bench.db").display()),
    );
    if let Ok(admin) = std::env::var("PORTAUTHORITY_BENCH_DATABASE_URL") {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let url = rt
            .block_on(portauthority_testkit::postgres::scratch_database(
                &admin, "pa_bench",
            ))
            .expect("scratch database");
        bench_store(c, "postgres", url);
    } else {
        eprintln!("skipping PostgreSQL: PORTAUTHORITY_BENCH_DATABASE_URL is not set");
    }
}

criterion_group!(store_benches, benches);
criterion_main!(store_benches);
