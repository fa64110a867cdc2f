//! The shared queue against a real redis-server of each test's own; two or three `RedisQueue`s
//! on one Redis are that many servers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::redis_link::testing::RedisServer;

const LEASE: Duration = Duration::from_millis(1000);

fn server(redis: &RedisServer) -> RedisQueue {
    let queue = RedisQueue::open(redis.link("ccs:"), uuid::Uuid::new_v4().to_string(), LEASE, 0).unwrap();
    queue.set_workers(1);
    queue
}

fn entry(id: &str, priority: u8, seq: u64, session: Option<&str>) -> Entry {
    let priority = Priority::new(priority.into()).unwrap();
    Entry { task_id: id.into(), priority, seq, session_id: session.map(str::to_string), pinned: false }
}

fn pinned(id: &str, seq: u64) -> Entry {
    Entry { pinned: true, ..entry(id, 10, seq, None) }
}

fn take_id(q: &RedisQueue) -> String {
    let (e, _) = q.take().unwrap();
    q.done(&e.task_id);
    e.task_id
}

fn eventually(seconds: u64, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ok()
}

#[test]
fn priorities_and_arrival_order_hold_across_servers() {
    let redis = RedisServer::start();
    let (a, b) = (server(&redis), server(&redis));
    let seqs: Vec<u64> = (0..4).map(|i| if i % 2 == 0 { a.next_seq() } else { b.next_seq() }.unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "one counter for all servers");
    a.push(entry("a", 5, 1, None)).unwrap();
    b.push(entry("b", 9, 2, None)).unwrap();
    a.push(entry("c", 5, 3, None)).unwrap();
    b.push(entry("d", 9, 4, None)).unwrap();
    a.push(entry("e", 1, 5, None)).unwrap();
    assert_eq!(a.counts().unwrap(), (5, 0));
    let order: Vec<String> = (0..5).map(|i| take_id(if i % 2 == 0 { &b } else { &a })).collect();
    assert_eq!(order, ["b", "d", "a", "c", "e"]);
    assert_eq!(b.counts().unwrap(), (0, 0));
}

#[test]
fn seq_numbers_start_above_what_the_store_holds() {
    let redis = RedisServer::start();
    let q = RedisQueue::open(redis.link("ccs:"), uuid::Uuid::new_v4().to_string(), LEASE, 41).unwrap();
    assert_eq!(q.next_seq().unwrap(), 42);
    // A server that starts with an older store does not go back.
    let other = RedisQueue::open(redis.link("ccs:"), uuid::Uuid::new_v4().to_string(), LEASE, 7).unwrap();
    assert_eq!(other.next_seq().unwrap(), 43);
}

/// 3 servers × 2 workers take `entries` (pushed from the servers in turn); each turn holds its
/// worker a moment. Returns, per session, the seqs in the order they were taken, and the ids
/// taken (with repeats, if any); fails on two turns of a session at once.
fn run_on_three_servers(entries: Vec<Entry>) -> (HashMap<String, Vec<u64>>, Vec<String>) {
    let redis = RedisServer::start();
    let servers: Vec<Arc<RedisQueue>> = (0..3).map(|_| Arc::new(server(&redis))).collect();
    let total = entries.len();
    let log = Arc::new(parking_lot::Mutex::new((HashMap::<String, Vec<u64>>::new(), Vec::new())));
    let busy = Arc::new(parking_lot::Mutex::new(HashSet::<String>::new()));
    let overlaps = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for q in &servers {
        assert_eq!(q.set_workers(2), 1);
        for _ in 0..2 {
            let (q, log, busy, overlaps) = (q.clone(), log.clone(), busy.clone(), overlaps.clone());
            workers.push(std::thread::spawn(move || {
                while let Some((e, _)) = q.take() {
                    if let Some(s) = &e.session_id {
                        if !busy.lock().insert(s.clone()) {
                            overlaps.lock().push(format!("{s}: {} while another turn ran", e.task_id));
                        }
                        log.lock().0.entry(s.clone()).or_default().push(e.seq);
                    }
                    log.lock().1.push(e.task_id.clone());
                    std::thread::sleep(Duration::from_millis(1));
                    if let Some(s) = &e.session_id {
                        busy.lock().remove(s);
                    }
                    q.done(&e.task_id);
                }
            }));
        }
    }
    for (i, e) in entries.into_iter().enumerate() {
        servers[i % 3].push(e).unwrap();
    }
    assert!(eventually(60, || log.lock().1.len() >= total), "taken: {}", log.lock().1.len());
    std::thread::sleep(Duration::from_millis(300)); // a second take of one would show now
    for q in &servers {
        assert!(q.close().is_empty());
    }
    for w in workers {
        w.join().unwrap();
    }
    assert!(overlaps.lock().is_empty(), "{:?}", overlaps.lock());
    assert_eq!(servers[0].counts().unwrap(), (0, 0));
    let log = log.lock();
    (log.0.clone(), log.1.clone())
}

#[test]
fn each_of_500_tasks_is_taken_exactly_once_by_three_servers() {
    let entries = (1..=500).map(|i| entry(&format!("t{i}"), (i % 10 + 1) as u8, i, None)).collect();
    let (_, taken) = run_on_three_servers(entries);
    assert_eq!(taken.len(), 500);
    assert_eq!(taken.iter().collect::<HashSet<_>>().len(), 500, "a task was taken twice");
}

#[test]
fn a_sessions_turns_never_overlap_and_run_in_order_across_servers() {
    // Later turns with higher priorities must still wait for the earlier ones.
    let entries = (1..=120)
        .map(|i| {
            let session = format!("S{}", i % 4);
            entry(&format!("t{i}"), (i % 10 + 1) as u8, i, Some(&session))
        })
        .collect();
    let (by_session, taken) = run_on_three_servers(entries);
    assert_eq!(taken.len(), 120);
    for (session, seqs) in by_session {
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "session {session} ran out of order");
        assert_eq!(seqs.len(), 30);
    }
}

#[test]
fn a_waiting_task_cancelled_on_another_server_never_runs_and_its_session_goes_on() {
    let redis = RedisServer::start();
    let (a, b) = (server(&redis), server(&redis));
    a.push(entry("t1", 5, 1, Some("T"))).unwrap();
    a.push(entry("t2", 5, 2, Some("T"))).unwrap();
    a.push(entry("t3", 5, 3, Some("T"))).unwrap();
    assert_eq!(b.cancel("t2").unwrap(), Cancelled::Pending, "a later turn");
    assert_eq!(b.cancel("t1").unwrap(), Cancelled::Pending, "the session's head");
    assert_eq!(b.cancel("zzz").unwrap(), Cancelled::NotQueued);
    assert!(!b.is_queued("t1").unwrap());
    assert_eq!(a.counts().unwrap(), (1, 0));
    assert_eq!(take_id(&a), "t3");
    assert!(!a.session_busy("T").unwrap());
}

#[test]
fn a_cancel_sent_to_another_server_reaches_the_one_that_runs_the_task() {
    let redis = RedisServer::start();
    let (a, b) = (server(&redis), server(&redis));
    a.push(entry("x", 5, 1, None)).unwrap();
    let (taken, cancel) = a.take().unwrap();
    assert_eq!(taken.task_id, "x");
    let asked = Instant::now();
    assert_eq!(b.cancel("x").unwrap(), Cancelled::Running);
    assert!(eventually(2, || cancel.is_cancelled()), "the cancel did not reach the server that runs x");
    assert!(asked.elapsed() < Duration::from_secs(2));
    a.done("x");
    assert_eq!(b.counts().unwrap(), (0, 0));
}

#[test]
fn a_dead_servers_tasks_are_handed_to_exactly_one_other_server_after_its_lease() {
    let redis = RedisServer::start();
    let (a, b, c) = (server(&redis), server(&redis), server(&redis));
    a.push(entry("x", 5, 1, Some("S"))).unwrap();
    a.push(entry("y", 5, 2, Some("S"))).unwrap(); // waits for x
    let (taken, _) = a.take_now().unwrap();
    assert_eq!(taken.task_id, "x");
    a.push(pinned("p", 3)).unwrap(); // only a may take it
    assert!(b.take_now().is_none(), "y waits for x; p is a's");
    drop(a); // a dies: no done, no heartbeat
    assert!(b.lost().is_empty() && c.lost().is_empty(), "lost before its lease ran out");
    let died = Instant::now();
    let mut lost = Vec::new();
    assert!(eventually(5, || {
        lost.extend(b.lost());
        lost.extend(c.lost());
        lost.len() >= 2
    }));
    std::thread::sleep(Duration::from_millis(200));
    lost.extend(b.lost());
    lost.extend(c.lost());
    assert!(died.elapsed() >= LEASE / 2, "claimed after {:?}", died.elapsed());
    let x = Lost::Running(Entry { session_id: Some("S".into()), ..entry("x", 5, 1, None) });
    let p = Lost::Abandoned(pinned("p", 3));
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert!(lost.contains(&x) && lost.contains(&p), "{lost:?}");
    // x's session goes on: its next turn runs elsewhere.
    assert_eq!(take_id(&b), "y");
    assert_eq!(c.counts().unwrap(), (0, 0));
}

#[test]
fn a_server_started_again_under_its_id_finds_what_it_held_out_of_the_queue_at_once() {
    let redis = RedisServer::start();
    let open = || RedisQueue::open(redis.link("ccs:"), "host:5546".into(), LEASE * 60, 0).unwrap();
    let (before, other) = (open(), server(&redis));
    before.set_workers(1);
    before.push(entry("x", 5, 1, Some("S"))).unwrap();
    before.push(entry("y", 5, 2, Some("S"))).unwrap();
    before.take_now().unwrap();
    before.push(pinned("p", 3)).unwrap();
    drop(before); // killed: no done, its lease (a minute) still runs
    let again = open();
    assert!(!again.is_queued("x").unwrap(), "what it ran is out of the queue, for recovery to end");
    assert!(!again.is_queued("p").unwrap(), "so is the sync task its client waited for");
    assert!(again.lost().is_empty() && other.lost().is_empty(), "nothing is left for a lease to settle");
    assert_eq!(take_id(&other), "y", "the session goes on");
}

#[test]
fn many_tasks_pinned_to_one_server_hide_no_work_from_the_others_and_keep_the_order() {
    let redis = RedisServer::start();
    let (a, b) = (server(&redis), server(&redis));
    for i in 0..100 {
        a.push(pinned(&format!("sync-{i}"), i + 1)).unwrap(); // priority 10, all a's
    }
    a.push(entry("async", 1, 100, None)).unwrap();
    assert_eq!(b.take_now().unwrap().0.task_id, "async", "b takes what it may at once");
    // a takes its own and the shared ones by (priority, arrival) together.
    a.push(entry("urgent", 10, 0, None)).unwrap();
    a.push(pinned("late", 200)).unwrap();
    assert_eq!(a.take_now().unwrap().0.task_id, "urgent");
    assert_eq!(a.take_now().unwrap().0.task_id, "sync-0");
    assert_eq!(a.counts().unwrap(), (100, 3));
}

#[test]
fn a_pinned_task_is_taken_only_by_the_server_that_pushed_it() {
    let redis = RedisServer::start();
    let (a, b) = (server(&redis), server(&redis));
    a.push(pinned("p", 1)).unwrap();
    b.push(entry("q", 1, 2, None)).unwrap();
    let (first, _) = b.take_now().unwrap();
    assert_eq!(first.task_id, "q", "p (priority 10) is a's");
    assert!(b.take_now().is_none());
    let (mine, _) = a.take_now().unwrap();
    assert_eq!(mine, pinned("p", 1));
    // A server that stops takes its pinned tasks out (nobody else may run them), not others'.
    b.push(pinned("pb", 3)).unwrap();
    a.push(pinned("pa", 4)).unwrap();
    assert_eq!(a.close(), [pinned("pa", 4)]);
    assert!(b.is_queued("pb").unwrap());
}

#[test]
fn a_push_of_a_task_the_queue_holds_does_nothing() {
    let redis = RedisServer::start();
    let (a, b) = (server(&redis), server(&redis));
    a.push(entry("x", 5, 1, None)).unwrap();
    b.push(entry("x", 5, 1, None)).unwrap();
    assert_eq!(a.counts().unwrap(), (1, 0));
    let (taken, _) = a.take_now().unwrap();
    b.push(taken.clone()).unwrap();
    assert_eq!(a.counts().unwrap(), (0, 1), "running: not queued again");
    assert!(b.is_queued("x").unwrap());
    a.done("x");
    assert!(!b.is_queued("x").unwrap());
    assert_eq!(a.counts().unwrap(), (0, 0));
}

#[test]
fn a_new_priority_reorders_waiting_tasks_on_every_server() {
    let redis = RedisServer::start();
    let (a, b) = (server(&redis), server(&redis));
    a.push(entry("a", 5, 1, None)).unwrap();
    a.push(entry("b", 5, 2, None)).unwrap();
    a.push(entry("s1", 5, 3, Some("S"))).unwrap();
    a.push(entry("s2", 1, 4, Some("S"))).unwrap();
    assert!(b.reprioritize("b", Priority::new(10).unwrap()).unwrap());
    assert!(b.reprioritize("s2", Priority::new(10).unwrap()).unwrap(), "a later turn keeps its new priority");
    assert!(!b.reprioritize("nope", Priority::new(10).unwrap()).unwrap());
    assert_eq!(take_id(&a), "b");
    let (taken, _) = a.take_now().unwrap();
    assert_eq!(taken.task_id, "a");
    assert!(!b.reprioritize("a", Priority::new(1).unwrap()).unwrap(), "running");
    a.done("a");
    assert_eq!(take_id(&a), "s1");
    let (s2, _) = b.take().unwrap();
    assert_eq!((s2.task_id.as_str(), s2.priority), ("s2", Priority::new(10).unwrap()));
}

#[test]
fn a_sessions_next_turn_waits_a_moment_for_the_server_that_ran_the_last_one() {
    let redis = RedisServer::start();
    let (a, b) = (server(&redis), server(&redis));
    a.push(entry("t1", 5, 1, Some("S"))).unwrap();
    assert_eq!(take_id(&a), "t1"); // a has S's live process now
    b.push(entry("t2", 5, 2, Some("S"))).unwrap();
    assert!(b.take_now().is_none(), "left to a for a moment");
    std::thread::sleep(PREFER + Duration::from_millis(50));
    let (taken, _) = b.take_now().unwrap();
    assert_eq!(taken.task_id, "t2", "a did not take it: b does");
}

#[test]
fn without_redis_calls_fail_and_a_waiting_worker_goes_on_when_it_is_back() {
    let redis = RedisServer::start();
    let port = redis.port;
    let q = Arc::new(server(&redis));
    drop(redis);
    let err = q.push(entry("x", 5, 1, None)).unwrap_err();
    assert!(err.to_string().contains("not reachable") && err.to_string().contains("by itself"), "{err}");
    assert!(q.fault().is_some());
    let worker = {
        let q = q.clone();
        std::thread::spawn(move || q.take().map(|(e, _)| e.task_id))
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(!worker.is_finished(), "the worker waits");
    let _back = RedisServer::start_on(port);
    assert!(eventually(10, || q.push(entry("x", 5, 1, None)).is_ok()));
    assert!(eventually(5, || worker.is_finished()), "the worker did not take x once Redis was back");
    assert_eq!(worker.join().unwrap().as_deref(), Some("x"));
    assert!(q.fault().is_none());
}

#[test]
fn a_server_cut_off_from_redis_stops_its_tasks_before_its_claims_run_out() {
    // Else another server settles them and runs the session's next turn while they still run.
    let redis = RedisServer::start();
    let q = server(&redis);
    q.push(entry("x", 5, 1, Some("S"))).unwrap();
    let (_, cancel) = q.take_now().unwrap();
    std::thread::sleep(LEASE / 2);
    assert!(!cancel.is_interrupt(), "a server that reaches Redis keeps its task");
    let cut_off = Instant::now();
    drop(redis);
    assert!(eventually(3, || cancel.is_interrupt()), "the task runs on without a claim");
    assert!(cut_off.elapsed() < LEASE, "stopped after {:?}, past the lease", cut_off.elapsed());
}

#[test]
fn a_dropped_queue_ends_its_threads_even_without_redis() {
    let redis = RedisServer::start();
    let up = server(&redis);
    let down = server(&redis);
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        drop(up);
        drop(redis);
        std::thread::sleep(Duration::from_millis(300)); // its subscriber is reconnecting now
        drop(down);
        let _ = tx.send(());
    });
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok(), "a queue's threads did not end");
}
