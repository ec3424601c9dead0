#!/usr/bin/env python3
"""Latency of GET /v1/jobs query shapes against a running portauthority server.

usage: measure.py BASE_URL LABEL [--reps N] [--only SUBSTR] [--concurrency C --seconds S]

Sequential mode: for every shape, 3 warm-up requests then N timed ones on one keep-alive
connection; prints p50/p99/max in ms and the page's total_items / item count.
Concurrent mode: C threads, each with its own connection, loop over one shape for S seconds
(Python's client costs about a core at a few thousand requests/s: for concurrency figures,
listload/ is the lighter client). The shapes expect a database loaded by `portauthority seed`
(its namespaces, types, teams). See docs/list-performance.md.
"""
import http.client, json, sys, time, threading, urllib.parse, argparse

NS_BIG, NS_SMALL = "com.shipyard.billing", "com.shipyard.support"
TYPE_BIG = "import.batch"


def shapes(corr):
    s = []
    def add(name, q, modes=("p1", "deep", "cursor")):
        for m in modes:
            s.append((f"{name} [{m}]", q, m))
    add("no filter", {})
    s.append(("no filter [page 20000: offset 500k]", {}, "verydeep"))
    s.append(("no filter [page 39999: offset 1M-25]", {}, "last"))
    add(f"namespace={NS_BIG} (28%)", {"namespace": NS_BIG})
    add(f"namespace={NS_SMALL} (1.4%)", {"namespace": NS_SMALL}, ("p1", "cursor"))
    add(f"type={TYPE_BIG} (34%)", {"type": TYPE_BIG})
    add("correlation_id", {"correlation_id": corr}, ("p1",))
    add("status=completed (70%)", {"status": "completed"})
    add("status=pending (8%)", {"status": "pending"})
    add("status=pending,in_progress (18%)", {"status": "pending,in_progress"}, ("p1", "cursor"))
    add("meta.release_id=4321 (100 jobs)", {"meta.release_id": "4321"}, ("p1",))
    add("meta.team=atlas (10%)", {"meta.team": "atlas"})
    add("namespace+status+meta.team", {"namespace": NS_BIG, "status": "failed", "meta.team": "atlas"}, ("p1", "cursor"))
    add("namespace+type", {"namespace": NS_BIG, "type": TYPE_BIG})
    for f in ["start_time", "end_time", "created_at", "updated_at", "type", "namespace", "status"]:
        for o in ["asc", "desc"]:
            if f == "start_time" and o == "asc":
                continue
            add(f"sort={f}&order={o}", {"sort": f, "order": o})
    add(f"namespace={NS_BIG}&sort=updated_at&order=desc", {"namespace": NS_BIG, "sort": "updated_at", "order": "desc"}, ("p1", "cursor"))
    add("status=failed&sort=end_time&order=desc", {"status": "failed", "sort": "end_time", "order": "desc"}, ("p1", "cursor"))
    return s


class Conn:
    def __init__(self, base):
        u = urllib.parse.urlparse(base)
        self.host, self.port = u.hostname, u.port
        self.c = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def get(self, q):
        path = "/v1/jobs?" + urllib.parse.urlencode(q)
        t = time.perf_counter()
        self.c.request("GET", path)
        r = self.c.getresponse()
        body = r.read()
        dt = (time.perf_counter() - t) * 1000
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {body[:300]!r}")
        return dt, json.loads(body)


def query_for(conn, q, mode):
    q = dict(q)
    if mode == "deep":
        q["page"] = "2000"
    elif mode == "verydeep":
        q["page"] = "20000"
    elif mode == "last":
        q["page"] = "39999"
    elif mode == "cursor":
        # The cursor of page 2000 (or of the last full page before it): a deep position.
        _, first = conn.get(dict(q, size="1"))
        pages = max(1, min(2000, first["total_items"] // 25))
        _, deep = conn.get(dict(q, page=str(pages)))
        if deep.get("next"):
            q["after"] = deep["next"]
    return q


def pct(xs, p):
    xs = sorted(xs)
    i = max(1, min(len(xs), int(-(-len(xs) * p // 1)))) - 1
    return xs[i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("label")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--only", default=None)
    ap.add_argument("--concurrency", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    conn = Conn(a.base)
    _, any_page = conn.get({"page": "100"})
    corr = next(j["correlation_id"] for j in any_page["jobs"] if j["correlation_id"])
    results = []
    for name, q, mode in shapes(corr):
        if a.only and not any(o in name for o in a.only.split("|")):
            continue
        qq = query_for(conn, q, mode)
        if a.concurrency:
            lat, errs = [], []
            stop = time.perf_counter() + a.seconds
            def worker():
                c = Conn(a.base)
                while time.perf_counter() < stop:
                    try:
                        dt, _ = c.get(qq)
                        lat.append(dt)
                    except Exception as e:  # noqa
                        errs.append(str(e))
                        c = Conn(a.base)
            ts = [threading.Thread(target=worker) for _ in range(a.concurrency)]
            t0 = time.perf_counter()
            [t.start() for t in ts]
            [t.join() for t in ts]
            el = time.perf_counter() - t0
            r = dict(shape=name, c=a.concurrency, n=len(lat), rps=len(lat) / el,
                     p50=pct(lat, .5), p99=pct(lat, .99), max=max(lat), errors=len(errs))
            print(f"{a.label:8} {name:60} c={a.concurrency} n={r['n']:6} {r['rps']:8.0f}/s p50 {r['p50']:7.2f} p99 {r['p99']:7.2f} max {r['max']:7.2f} err {len(errs)}", flush=True)
        else:
            reps = a.reps
            for _ in range(3):
                dt, body = conn.get(qq)
            if dt > 500:
                reps = max(10, reps // 10)
            lat = []
            for _ in range(reps):
                dt, body = conn.get(qq)
                lat.append(dt)
            r = dict(shape=name, n=reps, p50=pct(lat, .5), p99=pct(lat, .99), max=max(lat),
                     total=body["total_items"], items=len(body["jobs"]))
            print(f"{a.label:8} {name:60} n={reps:4} p50 {r['p50']:8.2f} p99 {r['p99']:8.2f} max {r['max']:8.2f}  total={r['total']} items={r['items']}", flush=True)
        results.append(r)
    if a.json:
        json.dump(results, open(a.json, "w"), indent=1)


main()
