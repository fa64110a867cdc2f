//! Statistics (SPEC 6): one durable record per day, updated as each CLI run ends, so totals
//! survive restarts and a write costs the same however long ccs has run. Costs are summed in
//! integer micro-dollars (no float drift); the API shows dollars.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::app::App;
// A day's counters are a record of the store (`model`); named here too for the API.
pub use crate::model::{Day, ModelCount};
use crate::model::{Task, TaskStatus};
use crate::money;
use crate::store::{Durable, StoreError};

/// Counts one finished run of the CLI (when `statistics.enabled`).
pub fn record(app: &App, task: &Task) {
    if !app.config().statistics.enabled {
        return;
    }
    let date = Utc::now().date_naive().to_string();
    let usage = |key: &str| task.usage.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cost = money::to_micros(task.cost_usd.unwrap_or(0.0));
    let mut run = Day {
        date: String::new(),
        total_requests: 1,
        successful_requests: u64::from(task.status == TaskStatus::Completed),
        failed_requests: u64::from(task.status != TaskStatus::Completed),
        cost_micros: cost,
        input_tokens: usage("input_tokens"),
        output_tokens: usage("output_tokens"),
        duration_ms: task.duration_ms.unwrap_or(0),
        models: BTreeMap::new(),
    };
    run.models.insert(task.model.clone(), ModelCount { count: 1, cost_micros: cost });
    let fresh = || Day { date: date.clone(), ..Day::default() };
    // `Soon`: the task's end is written `Now` after this, before anyone hears of it.
    let result = app.store.statistics.upsert(&date, Durable::Soon, fresh, |day| day.add(&run));
    if let Err(e) = result {
        log::error!("statistics for task {} not saved: {e}", task.id);
    }
}

/// Every day's counters summed.
pub fn totals(app: &App) -> Result<Day, StoreError> {
    let mut total = Day::default();
    for day in app.store.statistics.all()? {
        total.add(&day);
    }
    Ok(total)
}

/// The counters of each date from `from` to `to` (inclusive), newest first; days without runs
/// are zeros.
pub fn days(app: &App, from: NaiveDate, to: NaiveDate) -> Result<Vec<Day>, StoreError> {
    let mut out = Vec::new();
    let mut date = to;
    while date >= from {
        let key = date.to_string();
        out.push(app.store.statistics.get(&key)?.map_or_else(|| Day { date: key, ..Day::default() }, |d| (*d).clone()));
        match date.checked_sub_days(Days::new(1)) {
            Some(previous) => date = previous,
            None => break,
        }
    }
    Ok(out)
}

/// The last `n` days up to today, newest first.
pub fn recent(app: &App, n: u64) -> Result<Vec<Day>, StoreError> {
    let today = Utc::now().date_naive();
    let from = today.checked_sub_days(Days::new(n.saturating_sub(1))).unwrap_or(today);
    days(app, from, today)
}

/// `{requests, tokens, costs, models, avg_duration_ms}` of a total.
pub fn summary(total: &Day) -> Value {
    let models: BTreeMap<&String, Value> = total
        .models
        .iter()
        .map(|(k, m)| (k, json!({"count": m.count, "cost_usd": money::to_usd(m.cost_micros)})))
        .collect();
    json!({
        "requests": {"total": total.total_requests, "successful": total.successful_requests, "failed": total.failed_requests},
        "tokens": {"total_input": total.input_tokens, "total_output": total.output_tokens},
        "costs": {"total_usd": money::to_usd(total.cost_micros)},
        "models": models,
        "avg_duration_ms": total.avg_duration_ms(),
    })
}

/// Models by number of runs, most used first.
pub fn top_models(total: &Day, limit: usize) -> Vec<Value> {
    let mut models: Vec<(&String, &ModelCount)> = total.models.iter().collect();
    models.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
    models
        .into_iter()
        .take(limit)
        .map(|(name, m)| json!({"model": name, "count": m.count, "cost_usd": money::to_usd(m.cost_micros)}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_days_sums_counts_and_micro_dollars_exactly() {
        let mut total = Day::default();
        for _ in 0..1000 {
            let mut run =
                Day { total_requests: 1, successful_requests: 1, cost_micros: 100, duration_ms: 3, ..Day::default() };
            run.models.insert("m".into(), ModelCount { count: 1, cost_micros: 100 });
            total.add(&run);
        }
        assert_eq!(total.total_requests, 1000);
        assert_eq!(money::to_usd(total.cost_micros), 0.1);
        assert_eq!(total.avg_duration_ms(), 3);
        assert_eq!(summary(&total)["models"]["m"], json!({"count": 1000, "cost_usd": 0.1}));
        assert_eq!(Day::default().avg_duration_ms(), 0);
    }
}
