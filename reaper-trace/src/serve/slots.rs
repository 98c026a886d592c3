//! The table of open connections, and who gives way when it is full.
//!
//! A connection is *waiting* from its accept until its request head is
//! complete (TLS handshake included) and its client authorized, *serving*
//! while its response is produced and written, and waiting again while it
//! lingers after it. When
//! every slot is taken, a new connection evicts the oldest waiting one: idle
//! and slowloris clients cannot keep a scraper out, however many they hold
//! (issue 19, item 11). Only when every slot is serving is the newcomer
//! refused. Eviction goes through a [`Notify`] that the connection's task
//! selects on, so the table needs no task handles and is tested alone.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::Notify;

/// What a connection's task holds: its slot, given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    /// Notified when the connection is evicted.
    pub evicted: Arc<Notify>,
}

impl Slot {
    /// The request head is complete: from now on the connection is not
    /// evicted for newcomers (its deadlines still apply).
    pub fn serving(&self) {
        self.slots.set_serving(self.id, true);
    }

    /// The response is written: the connection may be evicted again.
    pub fn done(&self) {
        self.slots.set_serving(self.id, false);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.table().entries.remove(&self.id);
    }
}

/// Why a connection got no slot.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

struct Entry {
    serving: bool,
    evicted: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    /// Ids grow with each accept: the first waiting entry is the oldest.
    next: u64,
    entries: BTreeMap<u64, Entry>,
}

/// At most `max` connections; the oldest waiting one gives way.
pub struct Slots {
    max: usize,
    table: Mutex<Table>,
}

impl Slots {
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere cannot leave the map inconsistent: use it.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection, evicting the oldest waiting one when
    /// all are taken.
    pub fn admit(self: &Arc<Self>) -> Result<Slot, Full> {
        let mut table = self.table();
        if table.entries.len() >= self.max {
            let oldest_waiting = table
                .entries
                .iter()
                .find(|(_, e)| !e.serving)
                .map(|(&id, _)| id)
                .ok_or(Full)?;
            if let Some(entry) = table.entries.remove(&oldest_waiting) {
                // Stores a permit if the task is not waiting yet.
                entry.evicted.notify_one();
            }
        }
        let id = table.next;
        table.next += 1;
        let evicted = Arc::new(Notify::new());
        table.entries.insert(
            id,
            Entry {
                serving: false,
                evicted: Arc::clone(&evicted),
            },
        );
        Ok(Slot {
            slots: Arc::clone(self),
            id,
            evicted,
        })
    }

    fn set_serving(&self, id: u64, serving: bool) {
        if let Some(entry) = self.table().entries.get_mut(&id) {
            entry.serving = serving;
        }
    }

    /// Connections holding a slot.
    pub fn len(&self) -> usize {
        self.table().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::{future::Future as _, pin::pin, task::Context};

    use super::*;

    /// Whether `notify` holds a notification (without a runtime).
    fn notified(notify: &Notify) -> bool {
        let mut waker_cx = Context::from_waker(std::task::Waker::noop());
        pin!(notify.notified()).poll(&mut waker_cx).is_ready()
    }

    #[test]
    fn the_oldest_waiting_connection_gives_way() {
        let slots = Slots::new(3);
        let a = slots.admit().expect("a");
        let b = slots.admit().expect("b");
        let c = slots.admit().expect("c");
        a.serving();
        // Full: b is the oldest that is not serving.
        let d = slots.admit().expect("d evicts b");
        assert!(notified(&b.evicted));
        assert!(!notified(&a.evicted) && !notified(&c.evicted) && !notified(&d.evicted));
        assert_eq!(slots.len(), 3);
        // b's task ends: its slot is already gone, nothing else changes.
        drop(b);
        assert_eq!(slots.len(), 3);
        let e = slots.admit().expect("e evicts c");
        assert!(notified(&c.evicted));
        drop((c, d, e));
        assert_eq!(slots.len(), 1);
        drop(a);
        assert!(slots.is_empty());
    }

    #[test]
    fn newcomers_are_refused_only_when_all_are_serving() {
        let slots = Slots::new(2);
        let a = slots.admit().expect("a");
        let b = slots.admit().expect("b");
        a.serving();
        b.serving();
        assert_eq!(slots.admit().err(), Some(Full));
        // Once a response is written, its lingering connection gives way.
        a.done();
        let c = slots.admit().expect("c evicts a");
        assert!(notified(&a.evicted));
        assert!(!notified(&b.evicted));
        drop((a, b, c));
        assert!(slots.is_empty());
    }
}
