//! Commands run once per key: a duplicate has no second effect, however late, and a
//! concurrent duplicate waits for the first and then finds it.

use crate::harness::*;
use portauthority_core::api::EventKind;
use portauthority_core::{Command, NewNote, Status, TaskUpdate};
use portauthority_store::{Answer, HistoryScope, Once, Ran, Store};
use std::sync::Arc;

conformance!(
    a_duplicate_key_has_no_second_effect_and_replays_the_first_answer,
    a_key_reused_for_another_request_is_refused,
    a_refused_command_records_no_key,
    concurrent_commands_under_one_key_take_effect_once,
    a_batch_runs_each_command_on_its_own_and_in_order,
);

fn once(key: &str, fingerprint: &str, keep_answer: bool) -> Once {
    Once {
        key: key.into(),
        fingerprint: fingerprint.into(),
        keep_answer,
    }
}

fn note(job: &portauthority_core::api::Job, message: &str) -> Command {
    Command::AddNote(NewNote {
        job_id: job.id,
        task_id: None,
        message: message.into(),
        data: None,
    })
}

async fn notes(store: &Arc<dyn Store>, job: &portauthority_core::api::Job) -> usize {
    history(store, HistoryScope::Job(job.id))
        .await
        .iter()
        .filter(|e| e.kind == EventKind::Note)
        .count()
}

async fn a_duplicate_key_has_no_second_effect_and_replays_the_first_answer(store: Arc<dyn Store>) {
    let job = create(&store, job_req()).await;
    let first = store
        .run_once(once("http:note:1", "f1", true), note(&job, "hello"))
        .await
        .expect("first");
    let Ran::Applied(Answer::Note(written)) = first else {
        panic!("the first run applies: {first:?}")
    };
    // Later writes in between do not matter: the key is found, whatever came since.
    store
        .add_note(NewNote {
            job_id: job.id,
            task_id: None,
            message: "other".into(),
            data: None,
        })
        .await
        .expect("other note");
    let again = store
        .run_once(once("http:note:1", "f1", true), note(&job, "hello"))
        .await
        .expect("again");
    let Ran::Replayed(Some(Answer::Note(replayed))) = again else {
        panic!("the second run replays the first answer: {again:?}")
    };
    assert_eq!(replayed.seq, written.seq);
    assert_eq!(
        notes(&store, &job).await,
        2,
        "one note per key, plus the other"
    );

    // A bus key keeps no answer, and still has one effect.
    let bus = once("bus:/test:9", "", false);
    let cmd = Command::AddNote(NewNote {
        job_id: job.id,
        task_id: None,
        message: "bus".into(),
        data: None,
    });
    assert!(
        !store
            .run_once(bus.clone(), cmd.clone())
            .await
            .unwrap()
            .replayed()
    );
    let again = store.run_once(bus, cmd).await.unwrap();
    assert!(matches!(again, Ran::Replayed(None)), "{again:?}");
    assert_eq!(notes(&store, &job).await, 3);
}

async fn a_key_reused_for_another_request_is_refused(store: Arc<dyn Store>) {
    let job = create(&store, job_req()).await;
    store
        .run_once(once("http:k", "f1", true), note(&job, "one"))
        .await
        .expect("first");
    let err = store
        .run_once(once("http:k", "f2", true), note(&job, "two"))
        .await
        .expect_err("another request under the same key");
    assert!(
        matches!(err, portauthority_store::StoreError::Invalid(_)),
        "{err:?}"
    );
    assert_eq!(notes(&store, &job).await, 1);
}

async fn a_refused_command_records_no_key(store: Arc<dyn Store>) {
    let (job, tasks) = create_with_tasks(&store, job_req(), 1).await;
    let t = tasks[0];
    set_task(&store, job.id, t, Status::Completed)
        .await
        .expect("complete");
    // Per item: a refused item is part of the answer (the batch itself committed).
    let cmd = Command::UpdateTasks(vec![TaskUpdate::status(job.id, t, Status::InProgress)]);
    let ran = store
        .run_once(once("bus:/t:refused", "", false), cmd)
        .await
        .expect("runs");
    let Ran::Applied(Answer::Updates(items)) = ran else {
        panic!("{ran:?}")
    };
    assert!(matches!(
        items[0],
        Err(portauthority_core::Refusal::Conflict(_))
    ));
    // A whole command refused: nothing recorded, so the same key applies once it can.
    let missing = new_job(job_req()).id;
    let cmd = Command::AddNote(NewNote {
        job_id: missing,
        task_id: None,
        message: "early".into(),
        data: None,
    });
    let err = store
        .run_once(once("bus:/t:early", "", false), cmd)
        .await
        .expect_err("unknown job");
    assert!(matches!(err, portauthority_store::StoreError::NotFound(_)));
    let job2 = create(&store, job_req()).await;
    let cmd = Command::AddNote(NewNote {
        job_id: job2.id,
        task_id: None,
        message: "early".into(),
        data: None,
    });
    assert!(
        !store
            .run_once(once("bus:/t:early", "", false), cmd)
            .await
            .unwrap()
            .replayed()
    );
}

async fn concurrent_commands_under_one_key_take_effect_once(store: Arc<dyn Store>) {
    let job = create(&store, job_req()).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (store, cmd) = (store.clone(), note(&job, "same"));
        set.spawn(async move { store.run_once(once("http:c", "f", true), cmd).await });
    }
    let mut applied = 0;
    let mut seqs = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.expect("task").expect("run") {
            Ran::Applied(Answer::Note(e)) => {
                applied += 1;
                seqs.push(e.seq);
            }
            Ran::Replayed(Some(Answer::Note(e))) => seqs.push(e.seq),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(applied, 1);
    seqs.dedup();
    assert_eq!(seqs.len(), 1, "every caller got the one note's answer");
    assert_eq!(notes(&store, &job).await, 1);
}

async fn a_batch_runs_each_command_on_its_own_and_in_order(store: Arc<dyn Store>) {
    let job = create(&store, job_req()).await;
    let missing = new_job(job_req()).id;
    let refused = Command::AddNote(NewNote {
        job_id: missing,
        task_id: None,
        message: "nowhere".into(),
        data: None,
    });
    let batch = vec![
        (once("bus:/b:1", "", false), note(&job, "first")),
        (once("bus:/b:2", "", false), refused),
        (once("bus:/b:3", "", false), note(&job, "third")),
        // The same key again within the batch: it sees the first one's record.
        (once("bus:/b:1", "", false), note(&job, "first")),
    ];
    let results = store.run_once_batch(batch).await.expect("the batch");
    assert!(
        matches!(results[0], Ok(Ran::Applied(_))),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(
            results[1],
            Err(portauthority_store::StoreError::NotFound(_))
        ),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Ok(Ran::Applied(_))),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(results[3], Ok(Ran::Replayed(None))),
        "{:?}",
        results[3]
    );
    let messages: Vec<String> = history(&store, HistoryScope::Job(job.id))
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::Note)
        .filter_map(|e| e.message)
        .collect();
    assert_eq!(messages, ["first", "third"], "one note each, in order");
}
