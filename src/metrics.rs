//! In-process counters for `GET /metrics`: HTTP requests by route and status, the CLI run-time
//! histogram and webhook outcomes. (Totals that must survive a restart, such as cost and tokens,
//! come from the statistics store instead.)

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Upper bounds (seconds) of the CLI duration histogram.
pub const DURATION_BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<Histogram>,
    webhooks: Mutex<BTreeMap<&'static str, u64>>,
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    pub fn count_request(&self, method: &str, route: &str, status: u16) {
        *self.requests.lock().entry((method.to_string(), route.to_string(), status)).or_insert(0) += 1;
    }

    pub fn observe_cli(&self, seconds: f64) {
        let mut h = self.durations.lock();
        for (bucket, bound) in h.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// `delivered`, `failed` or `retried`.
    pub fn count_webhook(&self, outcome: &'static str) {
        *self.webhooks.lock().entry(outcome).or_insert(0) += 1;
    }

    /// The counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP ccs_http_requests_total HTTP requests by method, route and status.");
        let _ = writeln!(out, "# TYPE ccs_http_requests_total counter");
        for ((method, route, status), n) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "ccs_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        render_refused(out);
        let h = self.durations.lock();
        let _ = writeln!(out, "# HELP ccs_cli_duration_seconds Run time of claude CLI processes.");
        let _ = writeln!(out, "# TYPE ccs_cli_duration_seconds histogram");
        for (bound, n) in DURATION_BUCKETS.iter().zip(h.buckets) {
            let _ = writeln!(out, "ccs_cli_duration_seconds_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "ccs_cli_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "ccs_cli_duration_seconds_sum {}", h.sum);
        let _ = writeln!(out, "ccs_cli_duration_seconds_count {}", h.count);
        let _ = writeln!(out, "# HELP ccs_webhook_deliveries_total Webhook attempts by outcome.");
        let _ = writeln!(out, "# TYPE ccs_webhook_deliveries_total counter");
        let webhooks = self.webhooks.lock();
        for outcome in ["delivered", "failed", "retried"] {
            let _ = writeln!(
                out,
                "ccs_webhook_deliveries_total{{outcome=\"{outcome}\"}} {}",
                webhooks.get(outcome).copied().unwrap_or(0)
            );
        }
    }
}

/// The statuses the HTTP layer answers itself, before a request reaches ccs (a bad, slow or
/// oversized head): a fixed set of labels.
pub const REFUSED_STATUSES: [u16; 8] = [400, 408, 414, 417, 431, 501, 505, 0];

/// Answers the HTTP layer gave itself, by the index of their status in `REFUSED_STATUSES` (the
/// last slot counts any other). Process-wide: tiny_http calls its hook without any context.
static REFUSED: [AtomicU64; REFUSED_STATUSES.len()] = [const { AtomicU64::new(0) }; REFUSED_STATUSES.len()];

/// Counts an answer the HTTP layer gave itself.
pub fn count_refused(status: u16) {
    let slot = REFUSED_STATUSES.iter().position(|s| *s == status).unwrap_or(REFUSED_STATUSES.len() - 1);
    REFUSED[slot].fetch_add(1, Ordering::Relaxed);
}

fn render_refused(out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP ccs_http_refused_total Requests refused before routing (bad, slow or oversized heads) by status."
    );
    let _ = writeln!(out, "# TYPE ccs_http_refused_total counter");
    for (status, n) in REFUSED_STATUSES.iter().zip(&REFUSED) {
        let label = if *status == 0 { "other".to_string() } else { status.to_string() };
        let _ = writeln!(out, "ccs_http_refused_total{{status=\"{label}\"}} {}", n.load(Ordering::Relaxed));
    }
}

/// Escapes a Prometheus label value.
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_cli(0.4);
        m.observe_cli(3.0);
        m.observe_cli(1000.0);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("ccs_cli_duration_seconds_bucket{le=\"0.5\"} 1\n"));
        assert!(out.contains("ccs_cli_duration_seconds_bucket{le=\"5\"} 2\n"));
        assert!(out.contains("ccs_cli_duration_seconds_bucket{le=\"600\"} 2\n"));
        assert!(out.contains("ccs_cli_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("ccs_cli_duration_seconds_count 3\n"));
    }
}
