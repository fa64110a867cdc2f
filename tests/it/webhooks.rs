//! Webhooks against a real receiver on 127.0.0.1: payload and headers, a valid Standard Webhooks
//! signature, retries (same webhook-id) on 5xx, none on 4xx, and delivery across a restart.

use crate::support::{eventually, Receiver, Server};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What a receiver would do: recompute the signature from the id, timestamp and raw body.
fn signature_is_valid(got: &crate::support::Received) -> bool {
    let key = STANDARD.decode(SECRET.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    let signed =
        format!("{}.{}.{}", got.header("webhook-id").unwrap(), got.header("webhook-timestamp").unwrap(), got.body);
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    got.header("webhook-signature").is_some_and(|sigs| sigs.split(' ').any(|s| s == expected))
}

#[test]
fn a_finished_async_task_posts_its_outcome_signed() {
    let receiver = Receiver::start(vec![]);
    let server = Server::start_with(json!({"webhook": {"secret": SECRET}}));
    let id = server.submit(json!({"prompt": "notify me", "webhook_url": receiver.url}));
    let got = receiver.wait_for(1, 15);
    assert_eq!(got.len(), 1);
    let hook = &got[0];
    let body = hook.json();
    assert_eq!(body["event"], "task.completed");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let data = &body["data"];
    assert_eq!(data["task_id"], id.as_str());
    assert_eq!(data["status"], "completed");
    assert_eq!(data["result"], "You said: notify me");
    assert_eq!(data["cost_usd"], 0.0125);
    assert!(data["session_id"].is_string() && data["usage"].is_object() && data["duration_ms"].is_u64());
    assert!(hook.header("webhook-id").unwrap().starts_with("msg_"));
    let sent_at: i64 = hook.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 60);
    assert_eq!(hook.header("content-type"), Some("application/json"));
    assert!(signature_is_valid(hook), "signature {:?} does not verify", hook.header("webhook-signature"));
    let task = server.wait_task(&id, 10, |t| t["webhook"]["status"] == "delivered");
    assert_eq!(task["webhook"], json!({"url": receiver.url, "status": "delivered", "attempts": 1, "last_error": null}));
    assert!(!server.log_text().contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "the secret is never logged");
}

#[test]
fn a_5xx_is_retried_with_the_same_webhook_id_until_it_succeeds() {
    let receiver = Receiver::start(vec![(500, None), (503, Some(1)), (200, None)]);
    let server = Server::start();
    let id = server.submit(json!({"prompt": "@@fail=api", "webhook_url": receiver.url}));
    let got = receiver.wait_for(3, 30);
    assert_eq!(got.len(), 3, "two failures then a success");
    let ids: Vec<&str> = got.iter().map(|g| g.header("webhook-id").unwrap()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(got[0].json()["event"], "task.failed");
    assert!(got[0].json()["data"]["error"].as_str().unwrap().contains("API Error"));
    let task = server.wait_task(&id, 10, |t| t["webhook"]["status"] == "delivered");
    assert_eq!(task["webhook"]["attempts"], 3);
}

#[test]
fn a_4xx_is_not_retried() {
    let receiver = Receiver::start(vec![(400, None)]);
    let server = Server::start();
    let id = server.submit(json!({"prompt": "x", "webhook_url": receiver.url}));
    let task = server.wait_task(&id, 15, |t| t["webhook"]["status"] == "failed");
    assert_eq!(task["webhook"]["attempts"], 1, "{task}");
    assert!(task["webhook"]["last_error"].as_str().unwrap().contains("400"));
    // Longer than the first backoff: still one request.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(receiver.received().len(), 1);
}

#[test]
fn retries_give_up_after_webhook_retries() {
    let receiver = Receiver::start(vec![(500, None); 10]);
    let server = Server::start_with(json!({"webhook": {"retries": 1}}));
    let id = server.submit(json!({"prompt": "x", "webhook_url": receiver.url}));
    let task = server.wait_task(&id, 20, |t| t["webhook"]["status"] == "failed");
    assert_eq!(task["webhook"]["attempts"], 2);
    assert_eq!(receiver.received().len(), 2);
}

#[test]
fn the_default_url_is_used_when_enabled_and_sync_tasks_send_nothing() {
    let receiver = Receiver::start(vec![]);
    let server = Server::start_with(json!({"webhook": {"enabled": true, "defaultUrl": receiver.url}}));
    assert_eq!(server.ask("sync: no webhook").status, 200);
    let id = server.submit(json!({"prompt": "async: webhook"}));
    let got = receiver.wait_for(1, 15);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["data"]["task_id"], id.as_str());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(receiver.received().len(), 1);
}

#[test]
fn a_pending_delivery_is_sent_after_a_restart() {
    // The first attempt fails with Retry-After: 3; the server dies before the retry.
    let receiver = Receiver::start(vec![(503, Some(3))]);
    let mut server = Server::start();
    let id = server.submit(json!({"prompt": "x", "webhook_url": receiver.url}));
    let first = receiver.wait_for(1, 15);
    assert_eq!(first.len(), 1);
    assert!(eventually(10, || server.get(&format!("/api/tasks/{id}")).json["task"]["webhook"]["attempts"] == 1));
    server.restart();
    let got = receiver.wait_for(2, 20);
    assert_eq!(got.len(), 2, "the delivery was lost across the restart");
    assert_eq!(got[1].header("webhook-id"), got[0].header("webhook-id"));
    let task = server.wait_task(&id, 10, |t| t["webhook"]["status"] == "delivered");
    assert_eq!(task["webhook"]["attempts"], 2);
}

#[test]
fn a_task_interrupted_by_a_crash_is_reported_after_the_restart() {
    let receiver = Receiver::start(vec![]);
    let mut server = Server::start();
    let id = server.submit(json!({"prompt": "@@sleep=30", "webhook_url": receiver.url}));
    server.wait_for_runs(1);
    server.restart();
    let got = receiver.wait_for(1, 15);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["event"], "task.interrupted");
    assert_eq!(got[0].json()["data"]["task_id"], id.as_str());
}
