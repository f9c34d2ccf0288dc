//! A large file planned on one thread while the parts planned before it are
//! recorded and sent on another: planning (pseudonymise, encode, compare)
//! and recording (the fsync'd outbox) each take about half the work, and
//! the machine has a core for each.

use tokio::sync::mpsc;

use super::export::ExportRow;
use super::ledger::{bucket_of, Entry, Ledger, BATCH};
use super::plan::{LedgerFacts, Plan, Planner};
use super::publish::PublishError;
use super::send::Sender;
use crate::config::AgentSettings;
use crate::domain::Millis;

/// Parts planned ahead of the one being recorded: enough to keep both
/// threads busy, few enough to bound the memory to a few parts.
const AHEAD: usize = 2;

/// Plans, records and sends the rows a part at a time, in the order of the
/// ledger's buckets: a part is whole buckets (so a record's rows are never
/// split), and each bucket is rewritten once. A crash part-way leaves the
/// parts before it recorded; publishing the file again finds those rows
/// unchanged and records the rest. The order of reports of different
/// records does not matter to the hub.
///
/// Returns the file's tally, without entries or messages.
pub(super) async fn plan_and_send(
    settings: &AgentSettings,
    producer: &mut Sender,
    ledger: &mut Ledger,
    file: &str,
    rows: Vec<ExportRow>,
    now: Millis,
) -> Result<Plan, PublishError> {
    let (order, known) = bucket_order(ledger, &rows)?;
    let facts = LedgerFacts::of(settings, ledger)?;
    let (parts, mut planned) = mpsc::channel::<Plan>(AHEAD);
    let (settings_copy, file_copy) = (settings.clone(), file.to_string());
    let planning = tokio::task::spawn_blocking(move || {
        plan_parts(&settings_copy, &facts, &file_copy, &rows, &order, &known, now, &parts)
    });
    let mut failed = None;
    while let Some(part) = planned.recv().await {
        if let Err(e) = record_and_offer(settings, producer, ledger, &part).await {
            failed = Some(e);
            break;
        }
    }
    // Dropping the receiver stops the planning thread at its next part.
    drop(planned);
    let tally = planning.await.expect("the planning thread does not panic");
    match failed {
        Some(e) => Err(e),
        None => Ok(tally?),
    }
}

/// What the ledger holds for each row, in the order of [`bucket_order`].
type Known = Vec<Option<Box<Entry>>>;

/// The rows' indices in the order of their ledger buckets (in file order
/// within a bucket), each with its bucket, and what the ledger holds for
/// each, read now for the planning thread to compare with.
fn bucket_order(ledger: &Ledger, rows: &[ExportRow]) -> Result<(Vec<(u32, usize)>, Known), PublishError> {
    let mut order: Vec<(u32, usize)> = rows.iter().enumerate().map(|(i, r)| (bucket_of(&r.record_id), i)).collect();
    // Unstable is enough: the (bucket, index) pairs are distinct.
    order.sort_unstable();
    let known = ledger.lookup(&order.iter().map(|&(_, i)| rows[i].record_id.as_str()).collect::<Vec<_>>())?;
    Ok((order, known))
}

async fn record_and_offer(
    settings: &AgentSettings,
    producer: &mut Sender,
    ledger: &mut Ledger,
    part: &Plan,
) -> Result<(), PublishError> {
    if part.entries.is_empty() {
        return Ok(());
    }
    let (entries, messages): (Vec<&Entry>, Vec<&(String, Vec<u8>)>) =
        (part.entries.iter().collect(), part.messages.iter().collect());
    let seqs = ledger.record_part(&entries, &messages)?;
    Ok(producer.offer(settings, ledger, &seqs, &messages).await?)
}

/// The planning thread: cuts `order` into parts of whole buckets of at least
/// [`BATCH`] rows and hands each planned part on; returns the tally.
#[allow(clippy::too_many_arguments)]
fn plan_parts(
    settings: &AgentSettings,
    facts: &LedgerFacts,
    file: &str,
    rows: &[ExportRow],
    order: &[(u32, usize)],
    known: &[Option<Box<Entry>>],
    now: Millis,
    parts: &mpsc::Sender<Plan>,
) -> Result<Plan, PublishError> {
    let mut planner = Planner::new(settings, facts, file, now);
    let mut tally = Plan::default();
    let mut chunk: Vec<&ExportRow> = Vec::with_capacity(2 * BATCH);
    let (mut from, mut buckets) = (0, order.chunk_by(|a, b| a.0 == b.0).peekable());
    while let Some(bucket) = buckets.next() {
        chunk.extend(bucket.iter().map(|&(_, i)| &rows[i]));
        if chunk.len() < BATCH && buckets.peek().is_some() {
            continue;
        }
        let mut part = Plan::default();
        planner.plan_rows(&chunk, &known[from..from + chunk.len()], &mut part)?;
        from += chunk.len();
        chunk.clear();
        tally.absorb(&mut part);
        if parts.blocking_send(part).is_err() {
            break; // the recorder stopped, and says why
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::plan::plan;
    use crate::agent::plan::tests::{row, settings, T};
    use crate::domain::ArrestOffence;

    /// Plans `rows` in parts on a thread, as [`plan_and_send`] does, and
    /// returns the tally with every part's entries and messages appended.
    fn in_parts(s: &AgentSettings, ledger: &Ledger, rows: Vec<ExportRow>) -> Plan {
        let (order, known) = bucket_order(ledger, &rows).unwrap();
        let facts = LedgerFacts::of(s, ledger).unwrap();
        let (parts, mut planned) = mpsc::channel(AHEAD);
        std::thread::scope(|scope| {
            // The sender moves to the thread: the parts end when it does.
            let planning = scope.spawn(|| {
                let parts = parts;
                plan_parts(s, &facts, "f.csv", &rows, &order, &known, T, &parts)
            });
            let (mut entries, mut messages, mut count) = (Vec::new(), Vec::new(), 0);
            while let Some(mut part) = planned.blocking_recv() {
                count += 1;
                entries.append(&mut part.entries);
                messages.append(&mut part.messages);
            }
            let tally = planning.join().unwrap().unwrap();
            assert!(count > 2, "planned in {count} parts");
            Plan { entries, messages, ..tally.in_line_order() }
        })
    }

    /// Rows of a file big enough for several parts: new records, records
    /// repeated identically and with other content, an unknown operation,
    /// and (on the second run) records changed since.
    fn rows(n: usize, second: bool) -> Vec<ExportRow> {
        let mut rows = Vec::new();
        for i in 0..n {
            let group = if second && i % 7 == 0 { ArrestOffence::Weapons } else { ArrestOffence::Other };
            let joint = (i % 3 == 0).then(|| format!("JA-{}", i % 1000));
            rows.push(row(i as u64 + 2, &format!("r{i}"), joint.as_deref(), group, second && i % 11 == 0));
        }
        let line = n as u64 + 2;
        rows.push(row(line, "r5", None, ArrestOffence::Other, false)); // as line 7 said
        rows.push(row(line + 1, "r6", None, ArrestOffence::DrugSupply, false)); // differs from line 8
        let mut elsewhere = row(line + 2, "x", None, ArrestOffence::Other, false);
        elsewhere.operation = "ELSEWHERE".into();
        rows.push(elsewhere);
        rows
    }

    fn sorted(mut messages: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
        messages.sort();
        messages
    }

    #[test]
    fn a_file_planned_in_parts_is_planned_as_a_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let mut ledger = Ledger::open(dir.path()).unwrap();
        for second in [false, true] {
            let whole = plan(&s, &ledger, "f.csv", rows(3 * BATCH, second), vec![], T).unwrap();
            let parts = in_parts(&s, &ledger, rows(3 * BATCH, second));
            let counts = |p: &Plan| (p.published, p.withdrawn, p.unchanged, p.entries.len());
            assert_eq!(counts(&parts), counts(&whole), "second run: {second}");
            let refusals = |p: &Plan| p.rejected.iter().map(|r| (r.line, r.reason.clone())).collect::<Vec<_>>();
            assert_eq!(refusals(&parts), refusals(&whole));
            assert_eq!(refusals(&whole).len(), 2, "{:?}", refusals(&whole));
            assert_eq!(sorted(parts.messages), sorted(whole.messages.clone()));
            ledger.record(&whole.entries, &whole.messages).unwrap();
        }
    }
}
