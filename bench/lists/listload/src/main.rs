//! usage: listload BASE_URL CONCURRENCY SECONDS QUERY...   (QUERY: "namespace=x&page=2000", "-" for none)
//! A query containing `after=DEEP` gets the `next` cursor of its page 2000 (same other params).
use std::time::{Duration, Instant};
#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (base, c, secs) = (a[1].clone(), a[2].parse::<usize>().unwrap(), a[3].parse::<f64>().unwrap());
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    for q in &a[4..] {
        let mut q = if q == "-" { String::new() } else { q.clone() };
        if q.contains("after=DEEP") {
            let rest = q.replace("after=DEEP", "").trim_matches('&').to_string();
            let url = format!("{base}/v1/jobs?{rest}&page=2000");
            let v: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
            let next = v["next"].as_str().expect("a next cursor").to_string();
            q = format!("{rest}&after={next}");
        }
        let url = format!("{base}/v1/jobs?{q}");
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let start = Instant::now();
        let mut hs = Vec::new();
        for _ in 0..c {
            let (client, url) = (client.clone(), url.clone());
            hs.push(tokio::spawn(async move {
                let (mut lat, mut errs) = (Vec::new(), 0usize);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => { let _ = r.bytes().await; }
                        _ => errs += 1,
                    }
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                (lat, errs)
            }));
        }
        let (mut lat, mut errs) = (Vec::new(), 0);
        for h in hs { let (l, e) = h.await.unwrap(); lat.extend(l); errs += e; }
        let el = start.elapsed().as_secs_f64();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p = |x: f64| lat[((lat.len() as f64 * x).ceil() as usize).clamp(1, lat.len()) - 1];
        let shown = if q.len() > 70 { format!("{}…", &q[..70]) } else { q.clone() };
        println!("{:<72} c={c} {:>7.0}/s p50 {:>7.2} p99 {:>7.2} max {:>7.2} err {errs}", if shown.is_empty() { "(page 1, no filter)".into() } else { shown }, lat.len() as f64 / el, p(0.5), p(0.99), lat[lat.len() - 1]);
    }
}
