//! Live streams are long-lived connections: each holds a slot, capped in
//! all and per token, given back when the stream ends or its client leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::lock;

#[derive(Default)]
struct Open {
    total: usize,
    by_token: HashMap<String, usize>,
}

pub(super) struct StreamSlots {
    max: usize,
    per_token: usize,
    open: Arc<Mutex<Open>>,
}

/// One open stream; dropping it frees the slot.
pub(super) struct StreamSlot {
    open: Arc<Mutex<Open>>,
    token: String,
}

impl StreamSlots {
    pub(super) fn new(max: usize, per_token: usize) -> Self {
        StreamSlots { max, per_token, open: Arc::default() }
    }

    /// A slot for `token`'s new stream, or `None` when a cap is reached.
    pub(super) fn take(&self, token: &str) -> Option<StreamSlot> {
        let mut open = lock(&self.open);
        let mine = open.by_token.get(token).copied().unwrap_or(0);
        if open.total >= self.max || mine >= self.per_token {
            return None;
        }
        open.total += 1;
        metrics::gauge!("jointops_api_open_streams").set(open.total as f64);
        open.by_token.insert(token.to_string(), mine + 1);
        Some(StreamSlot { open: self.open.clone(), token: token.to_string() })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        open.total -= 1;
        metrics::gauge!("jointops_api_open_streams").set(open.total as f64);
        if let Some(n) = open.by_token.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                open.by_token.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_per_token_and_in_all_and_slots_come_back() {
        let s = StreamSlots::new(3, 2);
        let a1 = s.take("a").unwrap();
        let _a2 = s.take("a").unwrap();
        assert!(s.take("a").is_none(), "per token");
        let _b1 = s.take("b").unwrap();
        assert!(s.take("c").is_none(), "in all");
        drop(a1);
        assert!(s.take("c").is_some());
    }
}
