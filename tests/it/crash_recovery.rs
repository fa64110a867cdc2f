//! Durability (SPEC 7): nothing acknowledged is lost, a crash interrupts (never re-runs) what
//! was running, waiting tasks run after a restart, hundreds of tasks from many clients all end
//! completed, and a data folder that cannot be written (full, read-only) is refused, reported
//! and recovered from.

use std::collections::HashSet;

use crate::support::{alive, eventually, Server};
use serde_json::json;

#[test]
fn kill_9_with_one_task_running_and_several_waiting() {
    let mut server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    let running = server.submit(json!({"prompt": "long @@sleep=30"}));
    server.wait_for_runs(1);
    let waiting: Vec<String> = (0..4).map(|i| server.submit(json!({"prompt": format!("waiting {i}")}))).collect();
    let cancelled = server.submit(json!({"prompt": "cancelled"}));
    assert_eq!(server.delete(&format!("/api/tasks/{cancelled}")).status, 200);

    server.restart(); // kill -9, then start again on the same home

    let task = server.get(&format!("/api/tasks/{running}")).json["task"].clone();
    assert_eq!(task["status"], "interrupted", "{task}");
    assert!(task["error"].as_str().unwrap().contains("retry"));
    for id in &waiting {
        assert_eq!(server.wait_final(id)["status"], "completed", "waiting task {id}");
    }
    assert_eq!(server.get(&format!("/api/tasks/{cancelled}")).json["task"]["status"], "cancelled");
    // The interrupted task was not run again by itself, and the waiting ones ran in order.
    let prompts = server.prompts_run();
    assert_eq!(prompts.iter().filter(|p| p.starts_with("long")).count(), 1);
    assert_eq!(prompts[1..], ["waiting 0", "waiting 1", "waiting 2", "waiting 3"]);
    // `retry` is how it runs again.
    let retry = server.post(&format!("/api/tasks/{running}/retry"), json!({}));
    assert_eq!(retry.status, 201, "{}", retry.text);
}

#[test]
fn a_sync_request_waiting_at_kill_9_is_cancelled_at_the_next_start_and_never_runs() {
    let mut server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    let blocker = server.submit(json!({"prompt": "long @@sleep=30"}));
    server.wait_for_runs(1);
    let waiting =
        server.post_in_background("/api/claude", json!({"prompt": "sync, waiting", "project_path": server.project}));
    let mut id = String::new();
    assert!(eventually(10, || {
        let pending = server.get("/api/tasks?status=pending").json["tasks"].clone();
        id = pending[0]["id"].as_str().unwrap_or_default().to_string();
        !id.is_empty()
    }));
    // A sync task is written `Soon` (its client hears only its end): visible at once, on disk
    // within milliseconds. A kill before that loses it, which is right but not this test's case.
    assert!(eventually(10, || saved(&server, &id)), "the waiting task reached the disk");

    server.restart(); // kill -9: the sync client is disconnected

    assert_eq!(waiting.join().unwrap().status, 0, "its connection dropped");
    let task = server.get(&format!("/api/tasks/{id}")).json["task"].clone();
    assert_eq!(task["status"], "cancelled", "{task}");
    assert!(task["error"].as_str().unwrap().contains("client was disconnected"), "{task}");
    assert_eq!(server.get(&format!("/api/tasks/{blocker}")).json["task"]["status"], "interrupted");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!server.prompts_run().iter().any(|p| p == "sync, waiting"), "it never ran");
}

#[test]
fn a_cli_left_running_by_a_killed_server_dies_with_its_grandchild_at_the_next_start() {
    let mut server = Server::start();
    let id = server.submit(json!({"prompt": "@@grandchild @@sleep=60"}));
    assert!(eventually(10, || server.calls().iter().any(|c| c["grandchild_pid"].is_u64())));
    let cli = server.starts()[0]["pid"].as_u64().unwrap() as u32;
    let grandchild = server.calls().iter().find_map(|c| c["grandchild_pid"].as_u64()).unwrap() as u32;

    server.kill9();
    // Nothing ties the CLI to the server: its group runs on until the next start.
    assert!(alive(cli) && alive(grandchild), "the group should outlive a kill -9 of the server");
    server.launch();

    assert!(eventually(5, || !alive(cli) && !alive(grandchild)), "a process of the run survived the restart");
    let task = server.get(&format!("/api/tasks/{id}")).json["task"].clone();
    assert_eq!(task["status"], "interrupted", "{task}");
    assert!(task.get("pgid").is_none(), "the process group is not part of the API: {task}");
    let log = server.log_text();
    assert!(log.contains(&format!("task {id}: killed process group {cli} (pids ")), "{log}");
}

#[test]
fn a_graceful_stop_keeps_waiting_tasks_and_interrupts_running_ones() {
    // The file store's own files are read below.
    let mut server = Server::start_with(json!({"storageType": "file", "taskQueue": {"concurrency": 1}}));
    let running = server.submit(json!({"prompt": "@@sleep=30"}));
    server.wait_for_runs(1);
    let waiting = server.submit(json!({"prompt": "after the restart"}));
    assert_eq!(server.terminate(), Some(0));
    let task: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.state_dir().join(format!("data/tasks/{running}.json"))).unwrap())
            .unwrap();
    assert_eq!(task["status"], "interrupted");
    // A clean stop empties the journal into the record files: nothing is left to replay.
    let data = server.state_dir().join("data");
    let journals: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("journal"))
        .collect();
    assert!(journals.is_empty(), "{journals:?}");
    server.restart();
    assert_eq!(server.wait_final(&waiting)["status"], "completed");
}

#[test]
fn a_graceful_stop_answers_waiting_sync_requests_503() {
    let mut server = Server::start_with(json!({"taskQueue": {"concurrency": 1}}));
    let running =
        server.post_in_background("/api/claude", json!({"prompt": "@@sleep=30", "project_path": server.project}));
    server.wait_for_runs(1);
    let waiting =
        server.post_in_background("/api/claude", json!({"prompt": "never ran", "project_path": server.project}));
    assert!(eventually(10, || server.get("/health").json["queue"]["pending"] == 1));
    assert_eq!(server.terminate(), Some(0));
    let (running, waiting) = (running.join().unwrap(), waiting.join().unwrap());
    assert_eq!(running.status, 503, "{}", running.text);
    assert!(running.error().contains("server stopped"), "{}", running.error());
    assert_eq!(waiting.status, 503, "{}", waiting.text);
    assert!(waiting.error().contains("shutting down"), "{}", waiting.error());
    assert!(!server.prompts_run().contains(&"never ran".to_string()));
}

#[test]
fn hundreds_of_tasks_from_many_clients_all_complete() {
    const CLIENTS: usize = 8;
    const EACH: usize = 40;
    let server = Server::start_with(json!({"taskQueue": {"concurrency": 4}, "logLevel": "warn"}));
    let (port, project) = (server.port, server.project.clone());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let project = project.clone();
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let body =
                            json!({"prompt": format!("client {c} task {i}"), "project_path": project}).to_string();
                        let r = crate::support::http(port, "POST", "/api/tasks/async", Some(body.as_bytes()), &[]);
                        assert_eq!(r.status, 201, "{}", r.text);
                        r.json["task"]["id"].as_str().unwrap().to_string()
                    })
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let acknowledged: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert_eq!(acknowledged.iter().collect::<HashSet<_>>().len(), CLIENTS * EACH);
    assert!(
        eventually(120, || {
            let q = server.get("/api/tasks/queue/status").json["queue"].clone();
            q["completed"].as_u64() == Some((CLIENTS * EACH) as u64)
        }),
        "not every task completed: {}",
        server.get("/api/tasks/queue/status").text
    );
    for id in &acknowledged {
        let task = server.get(&format!("/api/tasks/{id}")).json["task"].clone();
        assert_eq!(task["status"], "completed", "{id}: {task}");
    }
    assert_eq!(server.starts().len(), CLIENTS * EACH, "each task ran exactly once");
    assert!(crate::support::max_overlap(&server.calls()) <= 4);
}

/// A tmpfs of `size` mounted on a temp folder, unmounted on drop; `None` (the caller skips) where
/// this user may not mount (CI runs as root).
struct SmallDisk(crate::support::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = crate::support::TempDir::new("small-disk");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk(dir))
    }

    /// Remounts it read-only. ccs holds no file of it open for writing between writes, but a
    /// write may be under way (then the kernel answers busy): tried again, bounded.
    fn read_only(&self) {
        let remounted = crate::support::eventually(10, || self.remount("ro"));
        assert!(remounted, "could not remount {} read-only", self.0.path().display());
    }

    fn writable(&self) {
        assert!(self.remount("rw"), "could not remount {} read-write", self.0.path().display());
    }

    fn remount(&self, mode: &str) -> bool {
        std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.0.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Fills the disk to the last byte.
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.0.path().join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        while filler.write_all(&block).is_ok() {}
        while filler.write_all(&block[..1]).is_ok() {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[test]
fn a_sync_request_on_a_full_disk_answers_at_once_and_its_task_ends_failed() {
    let Some(disk) = SmallDisk::mount("4m") else {
        eprintln!(
            "SKIPPED a_sync_request_on_a_full_disk_answers_at_once_and_its_task_ends_failed: cannot mount a tmpfs"
        );
        return;
    };
    let mut server = Server::start_with(json!({"storageType": "file", "dataDir": disk.0.path().join("data")}));
    assert_eq!(server.ask("while there is room").status, 200);
    // A clean stop empties the journal into the record files: the journal the next server starts
    // is empty, so retiring it after the failed write frees no room (else the retry could
    // succeed in the room it freed, and the disk would not be full any more).
    assert_eq!(server.terminate(), Some(0));
    server.launch();
    disk.fill();
    let asked = std::time::Instant::now();
    let r = server.ask("on a full disk");
    assert!(asked.elapsed() < std::time::Duration::from_secs(20), "answered after {:?}", asked.elapsed());
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.error().contains("disk space"), "{}", r.error());
    let failed = server.get("/api/tasks?status=failed").json;
    let task = &failed["tasks"][0];
    assert!(task["error"].as_str().unwrap_or_default().contains("could not be saved"), "{failed}");
    assert_eq!(server.get("/api/tasks?status=processing").json["tasks"], json!([]));
    let health = server.get("/health").json;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["store"]["reason"].as_str().unwrap_or_default().contains("No space left"), "{health}");
    drop(server);
}

#[test]
fn a_read_only_data_folder_refuses_writes_says_so_and_recovers_by_itself() {
    let Some(disk) = SmallDisk::mount("16m") else {
        eprintln!(
            "SKIPPED a_read_only_data_folder_refuses_writes_says_so_and_recovers_by_itself: cannot mount a tmpfs"
        );
        return;
    };
    let mut server = Server::start_with(json!({"storageType": "file", "dataDir": disk.0.path().join("data")}));
    let session = server.new_session(json!({"project_path": server.project, "metadata": {"when": "before"}}));
    let task = server.submit(json!({"prompt": "before"}));
    assert_eq!(server.wait_final(&task)["status"], "completed");
    let health = || server.get("/health").json;
    assert_eq!(health()["status"], "ok", "{}", health());

    disk.read_only();
    let failed = server.post("/api/sessions", json!({"project_path": server.project}));
    assert_eq!(failed.status, 503, "{}", failed.text);
    assert!(failed.error().contains("Read-only file system"), "{}", failed.error());
    let h = health();
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["store"]["reason"].as_str().unwrap_or_default().contains("Read-only file system"), "{h}");
    let refused = server.post("/api/tasks/async", json!({"prompt": "while read-only", "project_path": server.project}));
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert!(
        refused.error().contains("refused until") && refused.error().contains("GET /health"),
        "{}",
        refused.error()
    );
    assert_eq!(server.get(&format!("/api/tasks/{task}")).json["task"]["status"], "completed", "reads still work");

    disk.writable();
    assert!(eventually(10, || health()["status"] == "ok"), "the store did not recover: {}", health());
    assert!(server.log_text().contains("the store's journal is written again"), "no log line says it recovered");
    let after = server.new_session(json!({"project_path": server.project, "metadata": {"when": "after"}}));

    server.restart();
    for id in [&session, &after] {
        assert_eq!(server.get(&format!("/api/sessions/{id}")).status, 200, "session {id} was lost");
    }
    assert_eq!(server.get(&format!("/api/tasks/{task}")).json["task"]["status"], "completed");
    let sessions = server.get("/api/sessions").json;
    assert_eq!(sessions["sessions"].as_array().map(Vec::len), Some(3), "two created, one by the task: {sessions}");
}

/// Whether the record `id` is durable: in a file of the data folder (the journal or its record
/// file); in Redis a write is durable when it returns.
fn saved(server: &Server, id: &str) -> bool {
    fn holds(dir: &std::path::Path, id: &str) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else { return false };
        entries.flatten().any(|entry| {
            let path = entry.path();
            if path.is_dir() {
                holds(&path, id)
            } else {
                std::fs::read(&path).is_ok_and(|bytes| bytes.windows(id.len()).any(|w| w == id.as_bytes()))
            }
        })
    }
    crate::support::redis_server::redis_in_tests() || holds(&server.state_dir().join("data"), id)
}
