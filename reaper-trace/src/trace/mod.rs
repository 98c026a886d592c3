//! What the kernel and /proc tell us, typed: ring-buffer records decoded
//! into events, and the vocabulary every later stage shares.

pub mod clock;
pub mod comm;
pub mod decode;
pub mod escape;
pub mod event;
pub mod follow;
pub mod host_facts;
pub mod names;
pub mod pidns;
pub mod stack;
pub mod starts;
#[cfg(test)]
pub mod test_events;
pub mod totals;
