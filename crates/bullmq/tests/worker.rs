//! The worker against a real Redis, with BullMQ's own Queue as producer and observer.

mod common;

use bullmq::{Conn, ConnOptions, Failure, Job, Outcome, Processor, Scripts, Worker, WorkerEvent, WorkerOptions};
use common::{bullmq_dir, node, Redis};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Behaviour = dyn Fn(&Job) -> (Duration, Outcome) + Send + Sync;

struct TestProcessor {
    room: usize,
    runs: AtomicUsize,
    seen: Mutex<Vec<(String, i64)>>,
    stalled: Mutex<Vec<String>>,
    behave: Box<Behaviour>,
}

impl TestProcessor {
    fn new(room: usize, behave: impl Fn(&Job) -> (Duration, Outcome) + Send + Sync + 'static) -> Arc<TestProcessor> {
        Arc::new(TestProcessor {
            room,
            runs: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            stalled: Mutex::new(Vec::new()),
            behave: Box::new(behave),
        })
    }
}

impl Processor for TestProcessor {
    fn may_take(&self, _queue: &str, held: usize) -> bool {
        held < self.room
    }

    fn process(&self, _queue: &str, job: Job, _token: String) -> BoxFuture<'static, Outcome> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push((job.id.clone(), bullmq::ops::now_ms()));
        let (wait, outcome) = (self.behave)(&job);
        async move {
            tokio::time::sleep(wait).await;
            outcome
        }
        .boxed()
    }

    fn event(&self, _queue: &str, event: WorkerEvent<'_>) {
        if let WorkerEvent::Stalled { job_id } = event {
            self.stalled.lock().unwrap().push(job_id.to_string());
        }
    }
}

async fn start(redis: &Redis, queue: &str, opts: impl FnOnce(&mut WorkerOptions), p: Arc<TestProcessor>) -> Arc<Worker> {
    let conn = Conn::connect(ConnOptions {
        target: bullmq::Target::Url(redis.url()),
        command_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
    })
    .await
    .unwrap();
    let scripts = Arc::new(Scripts::load(&bullmq_dir()).unwrap());
    let mut o = WorkerOptions::new("bull", queue);
    opts(&mut o);
    let w = Worker::new(conn, scripts, o, format!("test-{queue}"));
    w.start(p);
    w
}

async fn until(limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met in {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_jobs_added_by_bullmq_with_their_return_values() {
    let redis = Redis::start();
    let p = TestProcessor::new(4, |job| {
        let n: serde_json::Value = serde_json::from_str(&job.data).unwrap();
        let doubled = n["n"].as_i64().unwrap() * 2;
        (Duration::from_millis(2), Outcome::Completed(doubled.to_string()))
    });
    let w = start(&redis, "q1", |_| {}, p.clone()).await;
    let out = node(
        &redis.url(),
        "q1",
        "const q = new bullmq.Queue(queue, { connection }); const ev = new bullmq.QueueEvents(queue, { connection, lastEventId: '0-0' });
         await ev.waitUntilReady();
         const jobs = await q.addBulk(Array.from({ length: 50 }, (_, i) => ({ name: 't', data: { n: i } })));
         const r = await Promise.all(jobs.map((j) => j.waitUntilFinished(ev, 20000)));
         console.log(JSON.stringify({ r, counts: await q.getJobCounts('completed', 'active', 'wait', 'failed') }));
         await ev.close(); await q.close();",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let expected: Vec<i64> = (0..50).map(|i| i * 2).collect();
    assert_eq!(v["r"], serde_json::json!(expected));
    assert_eq!(
        v["counts"],
        serde_json::json!({"completed": 50, "active": 0, "wait": 0, "failed": 0})
    );
    assert_eq!(p.runs.load(Ordering::SeqCst), 50);
    w.stop();
    assert!(w.idle_within(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_bullmqs_exponential_backoff_then_fails() {
    let redis = Redis::start();
    let p = TestProcessor::new(2, |_| {
        (
            Duration::ZERO,
            Outcome::Failed(Failure {
                message: "boom".into(),
                stack: Some("stack of boom".into()),
                unrecoverable: false,
                custom_backoff: None,
            }),
        )
    });
    let w = start(&redis, "q2", |_| {}, p.clone()).await;
    let out = node(
        &redis.url(),
        "q2",
        "const q = new bullmq.Queue(queue, { connection }); const ev = new bullmq.QueueEvents(queue, { connection, lastEventId: '0-0' });
         await ev.waitUntilReady();
         const job = await q.add('t', {}, { attempts: 3, backoff: { type: 'exponential', delay: 100 } });
         let reason = null; try { await job.waitUntilFinished(ev, 20000); } catch (e) { reason = e.message; }
         const j = await bullmq.Job.fromId(q, job.id);
         console.log(JSON.stringify({ reason, attemptsMade: j.attemptsMade, stacktrace: j.stacktrace, state: await j.getState() }));
         await ev.close(); await q.close();",
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["reason"], "boom");
    assert_eq!(v["attemptsMade"], 3);
    assert_eq!(v["state"], "failed");
    assert_eq!(v["stacktrace"].as_array().unwrap().len(), 3);
    assert_eq!(p.runs.load(Ordering::SeqCst), 3);
    let seen = p.seen.lock().unwrap().clone();
    let gaps: Vec<i64> = seen.windows(2).map(|w| w[1].1 - w[0].1).collect();
    // 100 ms, then 200 ms (BullMQ's exponential: delay · 2^(attempt-1)).
    assert!(gaps[0] >= 95 && gaps[1] >= 195, "gaps {gaps:?}");
    w.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrecoverable_failure_is_not_retried() {
    let redis = Redis::start();
    let p = TestProcessor::new(1, |_| {
        (
            Duration::ZERO,
            Outcome::Failed(Failure {
                message: "no".into(),
                stack: None,
                unrecoverable: true,
                custom_backoff: None,
            }),
        )
    });
    let w = start(&redis, "q3", |_| {}, p.clone()).await;
    let out = node(
        &redis.url(),
        "q3",
        "const q = new bullmq.Queue(queue, { connection }); const ev = new bullmq.QueueEvents(queue, { connection, lastEventId: '0-0' });
         await ev.waitUntilReady();
         const job = await q.add('t', {}, { attempts: 5 });
         let reason = null; try { await job.waitUntilFinished(ev, 20000); } catch (e) { reason = e.message; }
         console.log(JSON.stringify({ reason }));
         await ev.close(); await q.close();",
    );
    assert!(out.contains("\"reason\":\"no\""), "{out}");
    assert_eq!(p.runs.load(Ordering::SeqCst), 1);
    w.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_given_back_waits_again_without_using_an_attempt() {
    let redis = Redis::start();
    let p = TestProcessor::new(1, |_| (Duration::ZERO, Outcome::GiveBack));
    let w = start(&redis, "q4", |_| {}, p.clone()).await;
    node(
        &redis.url(),
        "q4",
        "const q = new bullmq.Queue(queue, { connection }); await q.add('t', {}, { jobId: 'j1' }); await q.close();",
    );
    until(Duration::from_secs(10), || p.runs.load(Ordering::SeqCst) >= 1).await;
    w.stop();
    assert!(w.idle_within(Duration::from_secs(5)).await);
    let out = node(
        &redis.url(),
        "q4",
        "const q = new bullmq.Queue(queue, { connection }); const j = await bullmq.Job.fromId(q, 'j1');
         console.log(JSON.stringify({ state: await j.getState(), attemptsMade: j.attemptsMade })); await q.close();",
    );
    assert!(out.contains("\"state\":\"waiting\"") && out.contains("\"attemptsMade\":0"), "{out}");
}

/// The lock is renewed by this crate for as long as the job runs: another worker's
/// stalled check, running often, never takes a job that outlives its lock duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_keeps_its_lock_and_is_not_stalled() {
    let redis = Redis::start();
    let p = TestProcessor::new(1, |_| (Duration::from_millis(3000), Outcome::Completed("\"done\"".into())));
    let w = start(&redis, "q5", |o| o.lock_duration_ms = 1000, p.clone()).await;
    // A second worker with no room: only its stalled checker runs, every 300 ms.
    let idle = TestProcessor::new(0, |_| (Duration::ZERO, Outcome::GiveBack));
    let checker = start(&redis, "q5", |o| o.stalled_interval_ms = 300, idle.clone()).await;
    let out = node(
        &redis.url(),
        "q5",
        "const q = new bullmq.Queue(queue, { connection }); const ev = new bullmq.QueueEvents(queue, { connection, lastEventId: '0-0' });
         await ev.waitUntilReady(); let stalled = 0; ev.on('stalled', () => stalled++);
         const job = await q.add('t', {});
         const r = await job.waitUntilFinished(ev, 20000);
         console.log(JSON.stringify({ r, stalled })); await ev.close(); await q.close();",
    );
    assert!(out.contains("\"r\":\"done\"") && out.contains("\"stalled\":0"), "{out}");
    assert_eq!(p.runs.load(Ordering::SeqCst), 1);
    assert!(idle.stalled.lock().unwrap().is_empty());
    w.stop();
    checker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_with_another_signature_are_refused_naming_the_version() {
    let dir = std::env::temp_dir().join(format!("bullmq-rs-scripts-{}", std::process::id()));
    let scripts = dir.join("dist/cjs/scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    for e in std::fs::read_dir(bullmq_dir().join("dist/cjs/scripts")).unwrap().flatten() {
        std::fs::copy(e.path(), scripts.join(e.file_name())).unwrap();
    }
    std::fs::rename(scripts.join("moveToActive-11.js"), scripts.join("moveToActive-12.js")).unwrap();
    std::fs::write(dir.join("package.json"), "{\"version\":\"9.9.9\"}").unwrap();
    let err = Scripts::load(&dir).err().expect("refused").to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        err.contains("bullmq 9.9.9") && err.contains("moveToActive with 12 keys") && err.contains("takes 11"),
        "{err}"
    );
}
