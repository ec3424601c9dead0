//! What a client may make the store do in one request is bounded: the meta filters of a job
//! list (each one more probe of the store's meta index) are capped by distinct keys and by
//! parameters in all, refused past the cap as a `422` naming the parameter, and served
//! within it with exactly the matching jobs, on either store.

use crate::helpers::{TestApp, assert_problem};
use portauthority_core::Limits;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// `meta.<key>=<value>` parameters joined into a query string.
fn query(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("meta.{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Asserts a 422 whose one error names `field`, and returns its message.
fn assert_refused(status: u16, body: &Value, field: &str) -> String {
    assert_problem(status, body, 422);
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(
        errors.len(),
        1,
        "one error, however far past the limit: {body}"
    );
    assert_eq!(errors[0]["field"], field, "{body}");
    errors[0]["message"].as_str().expect("message").to_owned()
}

#[tokio::test]
async fn seventeen_meta_keys_are_refused_naming_the_seventeenth() {
    let app = TestApp::spawn().await;
    let keys = Limits::default().meta_filter_keys_max;
    assert_eq!(keys, 16, "the documented default");
    let params: Vec<(String, String)> = (1..=keys + 1)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect();
    let (status, body) = app.get(&format!("/v1/jobs?{}", query(&params))).await;
    let message = assert_refused(status, &body, "meta.k17");
    assert!(
        message.contains("at most 16 different meta keys") && message.contains("got 17"),
        "{message}"
    );
}

#[tokio::test]
async fn one_meta_key_repeated_2000_times_is_refused() {
    let app = TestApp::spawn().await;
    let params: Vec<(String, String)> = (0..2000)
        .map(|i| ("release_id".to_owned(), i.to_string()))
        .collect();
    let (status, body) = app.get(&format!("/v1/jobs?{}", query(&params))).await;
    let message = assert_refused(status, &body, "meta.release_id");
    assert!(
        message.contains("at most 64 meta filters") && message.contains("got 2000"),
        "{message}"
    );
}

#[tokio::test]
async fn the_meta_filter_limits_are_configurable() {
    let app = TestApp::spawn_with(|c| {
        c.limits.meta_filter_keys_max = 2;
        c.limits.meta_filter_values_max = 3;
    })
    .await;
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let ok = pairs(&[("a", "1"), ("b", "1"), ("a", "1")]);
    let (status, body) = app.get(&format!("/v1/jobs?{}", query(&ok))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .get(&format!(
            "/v1/jobs?{}",
            query(&pairs(&[("a", "1"), ("b", "1"), ("c", "1")]))
        ))
        .await;
    assert_refused(status, &body, "meta.c");
    let (status, body) = app
        .get(&format!(
            "/v1/jobs?{}",
            query(&pairs(&[("a", "1"), ("b", "1"), ("a", "1"), ("b", "2")]))
        ))
        .await;
    assert_refused(status, &body, "meta.b");
}

#[tokio::test]
async fn the_most_meta_filters_allowed_return_exactly_the_matching_jobs() {
    let app = TestApp::spawn().await;
    let limits = Limits::default();
    let keys = limits.meta_filter_keys_max;
    let per_key = limits.meta_filter_values_max / keys;
    let full = || -> Map<String, Value> {
        (0..keys)
            .map(|i| {
                let v = if i % 2 == 0 {
                    json!(i * 10)
                } else {
                    json!(format!("v{i}"))
                };
                (format!("k{i}"), v)
            })
            .collect()
    };
    let create = |meta: Map<String, Value>| {
        let app = &app;
        async move {
            let body = json!({"type": "build", "namespace": "com.limits", "meta": meta});
            let (status, res) = app.post("/v1/jobs", body).await;
            assert_eq!(status, 200, "{res}");
            res["job"]["id"].as_str().expect("id").to_owned()
        }
    };
    let mut matching = BTreeSet::new();
    for _ in 0..3 {
        matching.insert(create(full()).await);
    }
    for i in 0..keys {
        let mut miss = full();
        if i % 2 == 0 {
            // The string spelling of the number: `i` alone would match it, `i.0` does not.
            miss.insert(format!("k{i}"), json!((i * 10).to_string()));
        } else {
            miss.remove(&format!("k{i}"));
        }
        create(miss).await;
    }

    // Every key `per_key` times, numbers in several spellings: the limits exactly.
    let mut params = Vec::new();
    for i in 0..keys {
        for n in 0..per_key {
            let v = match (i % 2, n % 3) {
                (0, 0) => (i * 10).to_string(),
                (0, 1) => format!("{}.0", i * 10),
                (0, _) => format!("{}e1", i),
                _ => format!("v{i}"),
            };
            params.push((format!("k{i}"), v));
        }
    }
    assert_eq!(params.len(), limits.meta_filter_values_max);
    for extra in [
        "",
        "&sort=updated_at",
        "&namespace=com.limits&status=pending",
    ] {
        let (status, body) = app
            .get(&format!("/v1/jobs?{}&size=100{extra}", query(&params)))
            .await;
        assert_eq!(status, 200, "{extra}: {body}");
        let got: BTreeSet<String> = body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["id"].as_str().expect("id").to_owned())
            .collect();
        assert_eq!(got, matching, "{extra}");
        assert_eq!(body["total_items"], matching.len(), "{extra}");
    }
}
