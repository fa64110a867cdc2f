//! Handlers called as plain functions, without a socket: an `App` with the memory store and no
//! worker threads (a test takes tasks from the queue itself), and a `Ctx` built by hand.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::app::App;
use crate::fsutil::TempDir;
use crate::http::{ApiError, Ctx, Reply};
use crate::store::{Durable, Store};
use std::io;

fn app() -> Arc<App> {
    app_on(Store::in_memory())
}

fn app_on(store: Store) -> Arc<App> {
    App::for_tests(store)
}

fn with_body(body: Value) -> Ctx {
    Ctx { body: Some(body), ..Ctx::default() }
}

fn for_task(id: &str, body: Option<Value>) -> Ctx {
    Ctx { params: vec![("id".into(), id.into())], body, ..Ctx::default() }
}

/// The project folder of the tests: one that exists everywhere.
fn project() -> String {
    std::env::temp_dir().to_string_lossy().into_owned()
}

fn queue_async(app: &App, prompt: &str) -> String {
    let body = json!({"prompt": prompt, "project_path": project(), "async": true});
    let reply = super::claude::post(app, &with_body(body)).unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.body["task_id"].as_str().unwrap().to_string()
}

fn error_of(answer: Result<Reply, ApiError>) -> ApiError {
    match answer {
        Ok(reply) => panic!("expected an error, got {} {}", reply.status, reply.body),
        Err(err) => err,
    }
}

#[test]
fn an_async_run_is_answered_at_once_and_waits_in_the_queue() {
    let app = app();
    let id = queue_async(&app, "hello");
    assert_eq!(app.queue.counts().unwrap(), (1, 0));
    let (entry, _) = app.queue.take().unwrap();
    assert_eq!(entry.task_id, id);
    assert_eq!(app.store.tasks.get(&id).unwrap().unwrap().status, crate::model::TaskStatus::Pending);
}

#[test]
fn a_typo_in_a_field_is_a_400_that_names_it_and_nothing_is_queued() {
    let app = app();
    let err = error_of(super::claude::post(&app, &with_body(json!({"prompt": "x", "promt": "y"}))));
    assert_eq!(err.status, 400);
    assert!(err.message.contains("\"promt\" is not allowed"), "{}", err.message);
    assert_eq!(app.queue.counts().unwrap(), (0, 0));
}

#[test]
fn a_sync_run_is_answered_when_its_task_ends_and_a_gone_client_cancels_it() {
    let app = app();
    let reply = super::claude::post(&app, &with_body(json!({"prompt": "x", "project_path": project()}))).unwrap();
    let after = reply.after.expect("a sync run is answered when its task ends");
    assert_eq!(after.tasks.len(), 1);
    let id = after.tasks[0].as_ref().unwrap().clone();
    let on_gone = after.on_gone.expect("a gone client stops its run");
    on_gone(&app, &id);
    let task = app.store.tasks.get(&id).unwrap().unwrap();
    assert_eq!(task.status, crate::model::TaskStatus::Cancelled);
    assert!(task.error.as_deref().unwrap_or_default().contains("its client went away"), "{:?}", task.error);
    // Its end was kept for the request: the answer is the 409 of a cancelled run.
    let heard = Arc::new(parking_lot::Mutex::new(None));
    let into = heard.clone();
    app.ends.listen(&id, || None, Box::new(move |end| *into.lock() = Some(end)));
    let end = heard.lock().take().expect("the end was kept until asked for");
    assert_eq!(error_of((after.answer)(vec![Ok(end)])).status, 409);
}

#[test]
fn priority_bounds_are_checked_and_a_new_priority_reorders_the_queue() {
    let app = app();
    let first = queue_async(&app, "first");
    let second = queue_async(&app, "second");
    for bad in [json!(0), json!(11), json!(5.5), json!("7")] {
        let err = error_of(super::tasks::set_priority(&app, &for_task(&second, Some(json!({"priority": bad})))));
        assert_eq!((err.status, err.message.as_str()), (400, "\"priority\" must be an integer from 1 to 10"));
    }
    let reply = super::tasks::set_priority(&app, &for_task(&second, Some(json!({"priority": 9})))).unwrap();
    assert_eq!(reply.body["old_priority"], 5);
    assert_eq!(reply.body["new_priority"], 9);
    assert_eq!(app.store.tasks.get(&second).unwrap().unwrap().priority, crate::model::Priority::new(9).unwrap());
    assert_eq!(app.queue.take().unwrap().0.task_id, second, "the higher priority runs first");
    assert_eq!(app.queue.take().unwrap().0.task_id, first);
    // A running task keeps its priority.
    let err = error_of(super::tasks::set_priority(&app, &for_task(&first, Some(json!({"priority": 2})))));
    assert_eq!(err.status, 409);
}

#[test]
fn cancelling_a_waiting_task_answers_at_once_and_a_running_one_when_it_ends() {
    let app = app();
    let running = queue_async(&app, "running");
    let waiting = queue_async(&app, "waiting");
    let (taken, cancel) = app.queue.take().unwrap();
    assert_eq!(taken.task_id, running);
    let reply = super::tasks::cancel(&app, &for_task(&waiting, None)).unwrap();
    assert!(reply.after.is_none(), "a waiting task is answered at once");
    assert_eq!((reply.status, &reply.body["status"]), (200, &json!("cancelled")));
    assert_eq!(app.queue.counts().unwrap(), (0, 1));
    // The running one: its kill is asked for, and the answer waits for its end.
    let reply = super::tasks::cancel(&app, &for_task(&running, None)).unwrap();
    let after = reply.after.expect("a running task is answered when it has ended");
    assert_eq!(after.tasks.len(), 1);
    assert!(after.on_gone.is_none(), "a DELETE client that leaves does not undo the cancel");
    assert!(cancel.is_cancelled());
    // Cancelled twice: the second finds it ended.
    let err = error_of(super::tasks::cancel(&app, &for_task(&waiting, None)));
    assert_eq!(err.status, 409);
}

#[test]
fn a_new_priority_that_cannot_be_saved_changes_neither_the_record_nor_the_queue() {
    let dir = TempDir::new("handlers");
    let (store, faults) = Store::on_flaky_disk(dir.path());
    let app = app_on(store);
    let first = queue_async(&app, "first");
    let second = queue_async(&app, "second");
    faults.lock().down = true; // the data folder went read-only
    let err = error_of(super::tasks::set_priority(&app, &for_task(&second, Some(json!({"priority": 9})))));
    assert_eq!(err.status, 503, "{}", err.message);
    assert!(err.message.contains("could not save"), "{}", err.message);
    assert_eq!(app.store.tasks.get(&second).unwrap().unwrap().priority, crate::model::Priority::DEFAULT);
    assert_eq!(app.queue.take().unwrap().0.task_id, first, "the queue kept its order");
}

#[test]
fn a_cancel_that_a_running_task_outran_is_a_409_not_a_success() {
    let app = app();
    let id = queue_async(&app, "almost done");
    let (_, cancel) = app.queue.take().unwrap();
    let reply = super::tasks::cancel(&app, &for_task(&id, None)).unwrap();
    let after = reply.after.expect("a running task is answered when it has ended");
    assert!(cancel.is_cancelled());
    // The CLI had finished before the kill reached it: the task ended completed.
    let ended = app.store.tasks.update(&id, Durable::Now, |t| {
        t.status = crate::model::TaskStatus::Completed;
        true
    });
    let end = crate::events::TaskEnd { task: ended.unwrap().unwrap(), error: None };
    let err = error_of((after.answer)(vec![Ok(end)]));
    assert_eq!(err.status, 409);
    assert!(err.message.contains("already completed"), "{}", err.message);
    // Killed, but its end could not be saved (it shows `failed`): the store's 503, not a 409.
    let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
    let unsaved = crate::store::StoreError::new(crate::store::Op::Save, "task", &id, enospc, "");
    let shown = app.store.tasks.update(&id, Durable::Now, |t| {
        t.status = crate::model::TaskStatus::Failed;
        true
    });
    let end = crate::events::TaskEnd { task: shown.unwrap().unwrap(), error: Some(unsaved.into()) };
    assert_eq!(error_of(super::tasks::answer_cancelled(vec![Ok(end)])).status, 503);
}

#[test]
fn two_priority_changes_at_once_leave_the_record_and_the_queue_agreeing() {
    let app = app();
    for round in 0..2000 {
        let id = queue_async(&app, "contested");
        let start = Arc::new(std::sync::Barrier::new(2));
        let changes: Vec<_> = [3, 9]
            .into_iter()
            .map(|priority| {
                let (app, id, start) = (app.clone(), id.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    super::tasks::set_priority(&app, &for_task(&id, Some(json!({"priority": priority})))).unwrap();
                })
            })
            .collect();
        changes.into_iter().for_each(|c| c.join().unwrap());
        let (entry, _) = app.queue.take().unwrap();
        app.queue.done(&entry.task_id);
        assert_eq!(entry.priority, app.store.tasks.get(&id).unwrap().unwrap().priority, "round {round}");
    }
}

#[test]
fn cancelling_a_waiting_task_that_cannot_be_saved_is_a_503() {
    let dir = TempDir::new("handlers");
    let (store, faults) = Store::on_flaky_disk(dir.path());
    let app = app_on(store);
    let id = queue_async(&app, "doomed");
    faults.lock().down = true; // the data folder went read-only
    let err = error_of(super::tasks::cancel(&app, &for_task(&id, None)));
    assert_eq!(err.status, 503, "{}", err.message);
    assert!(err.message.contains("could not save"), "{}", err.message);
}

#[test]
fn a_nul_in_a_field_that_goes_on_the_command_line_is_a_400_not_a_cli_that_cannot_start() {
    let app = app();
    let fields = [
        ("disallowed_tools", json!(["Bash", "a\u{0}b"])),
        ("model", json!("m\u{0}")),
        ("system_prompt", json!("x\u{0}y")),
        ("append_system_prompt", json!("\u{0}")),
    ];
    for (field, value) in fields {
        for asynchronous in [false, true] {
            let mut body = json!({"prompt": "x", "project_path": project(), "async": asynchronous});
            body[field] = value.clone();
            let err = error_of(super::claude::post(&app, &with_body(body)));
            assert_eq!((err.status, err.field.as_deref()), (400, Some(field)), "{}", err.message);
            assert!(err.message.contains("NUL"), "{}", err.message);
        }
    }
    assert_eq!(app.queue.counts().unwrap(), (0, 0));
    // A session's model and system prompt go on the command line of each of its turns.
    let body = json!({"project_path": project(), "system_prompt": "a\u{0}"});
    let err = error_of(super::sessions::create(&app, &with_body(body)));
    assert_eq!((err.status, err.field.as_deref()), (400, Some("system_prompt")));
    // The prompt goes to the CLI's stdin, where a NUL is only a character.
    queue_async(&app, "a\u{0}b");
}
