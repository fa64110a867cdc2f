//! Copying one store into another (`ccs copy-to-redis`): every record of every kind that the
//! destination does not have yet. Records the destination has are left as they are, so a copy
//! can run again after an interruption and never overwrites newer data.

use std::fmt;

use super::{Durable, Records, Store, StoreError};

/// How many records of one kind were copied, and how many the destination had already.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub kind: &'static str,
    pub copied: usize,
    pub present: usize,
}

impl fmt::Display for Copied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} copied, {} already there (left as they were)", self.kind, self.copied, self.present)
    }
}

impl Store {
    /// Copies what `to` lacks of this store's records into it, kind by kind.
    pub fn copy_into(&self, to: &Store) -> Result<Vec<Copied>, StoreError> {
        Ok(vec![
            copy_kind("sessions", &*self.sessions, &*to.sessions)?,
            copy_kind("turns", &*self.turns, &*to.turns)?,
            copy_kind("tasks", &*self.tasks, &*to.tasks)?,
            copy_kind("deliveries", &*self.deliveries, &*to.deliveries)?,
            copy_kind("statistics", &*self.statistics, &*to.statistics)?,
            copy_kind("conversations", &*self.conversations, &*to.conversations)?,
        ])
    }
}

fn copy_kind<T: Clone + IdOf>(
    kind: &'static str,
    from: &dyn Records<T>,
    to: &dyn Records<T>,
) -> Result<Copied, StoreError> {
    let mut counts = Copied { kind, ..Copied::default() };
    for record in from.all()? {
        let id = record.id_of();
        if to.get(&id)?.is_some() {
            counts.present += 1;
            continue;
        }
        to.put(&id, (*record).clone(), Durable::Now)?;
        counts.copied += 1;
    }
    Ok(counts)
}

/// The id a record is stored under.
trait IdOf {
    fn id_of(&self) -> String;
}

impl IdOf for crate::model::Session {
    fn id_of(&self) -> String {
        self.id.clone()
    }
}

impl IdOf for crate::model::Turn {
    fn id_of(&self) -> String {
        crate::model::Turn::key(&self.session_id, self.seq)
    }
}

impl IdOf for crate::model::Task {
    fn id_of(&self) -> String {
        self.id.clone()
    }
}

impl IdOf for crate::model::Delivery {
    fn id_of(&self) -> String {
        self.id.clone()
    }
}

impl IdOf for crate::model::ConversationLink {
    fn id_of(&self) -> String {
        self.id.clone()
    }
}

impl IdOf for crate::model::Day {
    fn id_of(&self) -> String {
        self.date.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Day;

    #[test]
    fn a_copy_adds_what_is_missing_and_leaves_what_is_there() {
        let redis = crate::redis_link::testing::RedisServer::start();
        let from = Store::in_memory();
        let to = Store::on_redis(redis.link("ccs:"));
        for (date, total) in [("2026-12-01", 3), ("2026-12-02", 5)] {
            let day = Day { date: date.into(), total_requests: total, ..Day::default() };
            from.statistics.put(date, day, Durable::Now).unwrap();
        }
        let newer = Day { date: "2026-12-02".into(), total_requests: 9, ..Day::default() };
        to.statistics.put("2026-12-02", newer, Durable::Now).unwrap();
        let copied = from.copy_into(&to).unwrap();
        let days = copied.iter().find(|c| c.kind == "statistics").unwrap();
        assert_eq!((days.copied, days.present), (1, 1));
        assert_eq!(to.statistics.get("2026-12-01").unwrap().unwrap().total_requests, 3);
        assert_eq!(to.statistics.get("2026-12-02").unwrap().unwrap().total_requests, 9, "not overwritten");
        let again = from.copy_into(&to).unwrap();
        assert!(again.iter().all(|c| c.copied == 0), "a second copy copies nothing: {again:?}");
    }
}
