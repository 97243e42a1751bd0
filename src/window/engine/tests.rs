//! The acceptance scenarios of the windowing semantics, and a property: after any sequence of
//! inserts, updates (moving rows between groups and windows) and deletes, the cells equal a
//! fresh aggregation of the surviving rows.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const S: Micros = 1_000_000;

fn spec(kind: WindowKind, lateness: Micros, emit: EmitMode) -> EngineSpec {
    EngineSpec {
        kind,
        allowed_lateness: lateness,
        // count(*), sum(input 0), min(input 0), count_distinct(input 0)
        aggregates: vec![
            (AggregateFn::CountRows, None),
            (AggregateFn::Sum, Some(0)),
            (AggregateFn::Min, Some(0)),
            (AggregateFn::CountDistinct, Some(0)),
        ],
        emit,
        changelog: ChangelogMode::Retract,
    }
}

fn tumbling(size: Micros) -> WindowKind {
    WindowKind::Tumbling { size, offset: 0 }
}

fn image(time: Micros, group: i64, amount: i64) -> Contribution {
    Contribution {
        time,
        group: vec![Value::Int(group)].into(),
        inputs: vec![Value::Int(amount)].into(),
    }
}

fn insert(key: &str, c: Contribution) -> ChangeInput {
    ChangeInput {
        kind: ChangeKind::Insert,
        row_key: Some(key.into()),
        before: None,
        after: Some(Ok(c)),
        position: None,
    }
}

fn update(key: &str, c: Contribution) -> ChangeInput {
    ChangeInput {
        kind: ChangeKind::Update,
        row_key: Some(key.into()),
        before: None,
        after: Some(Ok(c)),
        position: None,
    }
}

fn delete(key: &str) -> ChangeInput {
    ChangeInput {
        kind: ChangeKind::Delete,
        row_key: Some(key.into()),
        before: None,
        after: None,
        position: None,
    }
}

/// The result rows the table holds after applying `deltas`.
#[derive(Default)]
struct Table(BTreeMap<RowKey, (Vec<Value>, bool)>);

/// Group values, window start, window end.
type RowKey = (Vec<Value>, Micros, Micros);

impl Table {
    /// Applies `delta` to a table that holds every earlier commit's rows.
    fn apply(&mut self, delta: &CommitDelta) {
        self.apply_to(delta, true);
    }

    /// Applies `delta` to a table that may have missed earlier commits (no `is_new` check).
    fn apply_later(&mut self, delta: &CommitDelta) {
        self.apply_to(delta, false);
    }

    fn apply_to(&mut self, delta: &CommitDelta, complete: bool) {
        for (group, window) in &delta.deletes {
            self.0.remove(&(group.to_vec(), window.start, window.end));
        }
        for row in &delta.upserts {
            let key = (row.group.to_vec(), row.window.start, row.window.end);
            // New rows are plainly inserted: one already there would fail the commit.
            if complete {
                assert_eq!(
                    row.is_new,
                    !self.0.contains_key(&key),
                    "is_new of the result row {key:?}"
                );
            }
            self.0.insert(key, (row.values.clone(), row.is_final));
        }
    }

    fn rows(&self) -> Vec<(i64, Micros, Micros, Vec<Value>)> {
        self.0
            .iter()
            .map(|((g, s, e), (v, _))| {
                let Value::Int(g) = g[0] else {
                    panic!("int group")
                };
                (g, *s, *e, v.clone())
            })
            .collect()
    }
}

fn results(count: i64, sum: i64, min: i64, distinct: i64) -> Vec<Value> {
    vec![
        Value::Int(count),
        Value::Num(bigdecimal::BigDecimal::from(sum)),
        Value::Int(min),
        Value::Int(distinct),
    ]
}

#[test]
fn lateness_scenario() {
    // D = 0, L = 5 s: t=1, t=16 → W = 16 ≥ 15 → [0,10) final; then t=9 is too late.
    let mut engine = Engine::new(spec(tumbling(10 * S), 5 * S, EmitMode::OnWindowClose));
    let mut table = Table::default();
    assert_eq!(engine.apply(insert("a", image(S, 1, 1))), Applied::Done);
    assert_eq!(
        engine.apply(insert("b", image(16 * S, 1, 1))),
        Applied::Done
    );
    table.apply(&engine.take_commit());
    assert!(
        table.0.is_empty(),
        "on_window_close writes nothing before W passes"
    );
    engine.set_watermark(Some(16 * S));
    let delta = engine.take_commit();
    assert_eq!(delta.upserts.len(), 1);
    assert!(delta.upserts[0].is_final);
    assert_eq!(delta.upserts[0].window, Window::new(0, 10 * S));
    table.apply(&delta);
    let Applied::Late(notice) = engine.apply(insert("c", image(9 * S, 1, 1))) else {
        panic!("t=9 is too late");
    };
    assert_eq!(notice.reasons, [LateReason::TooLate]);
    assert_eq!(notice.windows, [Window::new(0, 10 * S)]);
    assert!(
        engine.take_commit().upserts.is_empty(),
        "a closed window is never written again"
    );

    // With t=14 instead of t=16, t=9 is accepted.
    let mut engine = Engine::new(spec(tumbling(10 * S), 5 * S, EmitMode::OnWindowClose));
    engine.apply(insert("a", image(S, 1, 1)));
    engine.apply(insert("b", image(14 * S, 1, 1)));
    engine.set_watermark(Some(14 * S));
    assert!(engine.take_commit().upserts.is_empty());
    assert_eq!(engine.apply(insert("c", image(9 * S, 1, 1))), Applied::Done);
    engine.set_watermark(Some(15 * S));
    let delta = engine.take_commit();
    assert_eq!(delta.upserts.len(), 1);
    assert_eq!(delta.upserts[0].values[0], Value::Int(2));
}

#[test]
fn session_merge_deletes_replaced_rows() {
    // gap 5: t = 10, 12, 20 → [10,17) and [20,25); t = 16 → DELETE both, UPSERT [10,25).
    let mut engine = Engine::new(spec(
        WindowKind::Session { gap: 5 },
        100,
        EmitMode::OnUpdate,
    ));
    let mut table = Table::default();
    for (key, t) in [("a", 10), ("b", 12), ("c", 20)] {
        engine.apply(insert(key, image(t, 1, 1)));
    }
    table.apply(&engine.take_commit());
    let windows: Vec<(Micros, Micros)> = table.rows().iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(windows, [(10, 17), (20, 25)]);
    engine.apply(insert("d", image(16, 1, 1)));
    let delta = engine.take_commit();
    let mut deleted: Vec<Window> = delta.deletes.iter().map(|(_, w)| *w).collect();
    deleted.sort_unstable_by_key(|w| w.start);
    assert_eq!(deleted, [Window::new(10, 17), Window::new(20, 25)]);
    table.apply(&delta);
    assert_eq!(table.rows(), [(1, 10, 25, results(4, 4, 1, 1))]);
    // A retraction does not split the session.
    engine.apply(delete("d"));
    table.apply(&engine.take_commit());
    assert_eq!(table.rows(), [(1, 10, 25, results(3, 3, 1, 1))]);
}

#[test]
fn cdc_updates_deletes_and_duplicates() {
    let mut engine = Engine::new(spec(tumbling(10), 0, EmitMode::OnUpdate));
    let mut table = Table::default();
    // Update in place: amount 10 → 15.
    engine.apply(insert("k", image(3, 1, 10)));
    engine.apply(update("k", image(3, 1, 15)));
    table.apply(&engine.take_commit());
    assert_eq!(table.rows(), [(1, 0, 10, results(1, 15, 15, 1))]);
    // Update moving the window: t 3 → 13.
    engine.apply(update("k", image(13, 1, 15)));
    table.apply(&engine.take_commit());
    assert_eq!(table.rows(), [(1, 10, 20, results(1, 15, 15, 1))]);
    // Moving the group.
    engine.apply(update("k", image(13, 2, 15)));
    table.apply(&engine.take_commit());
    assert_eq!(table.rows(), [(2, 10, 20, results(1, 15, 15, 1))]);
    // A duplicate (same source position) is ignored.
    let mut positioned = update("k", image(13, 2, 99));
    positioned.position = Some((5, 6));
    assert_eq!(engine.apply(positioned.clone()), Applied::Done);
    assert_eq!(engine.apply(positioned), Applied::Duplicate);
    table.apply(&engine.take_commit());
    assert_eq!(table.rows(), [(2, 10, 20, results(1, 99, 99, 1))]);
    // Delete of the last row: the result row goes.
    engine.apply(delete("k"));
    table.apply(&engine.take_commit());
    assert!(table.rows().is_empty());
    // An update of a row never seen, without a before image: reported, not guessed.
    let Applied::Late(notice) = engine.apply(update("ghost", image(1, 1, 1))) else {
        panic!("unknown before image");
    };
    assert_eq!(notice.reasons, [LateReason::UnknownBeforeImage]);
}

#[test]
fn min_is_exact_under_retraction() {
    let mut engine = Engine::new(spec(tumbling(10), 0, EmitMode::OnUpdate));
    let mut table = Table::default();
    for (key, amount) in [("a", 5), ("b", 3), ("c", 7)] {
        engine.apply(insert(key, image(1, 1, amount)));
    }
    table.apply(&engine.take_commit());
    assert_eq!(table.rows()[0].3[2], Value::Int(3));
    engine.apply(delete("b"));
    table.apply(&engine.take_commit());
    assert_eq!(table.rows(), [(1, 0, 10, results(2, 12, 5, 2))]);
}

#[test]
fn state_round_trips_through_the_log_and_through_a_compacted_log() {
    let spec = spec(WindowKind::Session { gap: 5 }, 0, EmitMode::OnUpdate);
    let mut engine = Engine::new(spec.clone());
    let mut log: Vec<Vec<u8>> = Vec::new();
    for (key, t, g) in [("a", 10, 1), ("b", 12, 1), ("c", 30, 2), ("d", 40, 3)] {
        engine.apply(insert(key, image(t, g, t)));
    }
    log.extend(engine.take_commit().state.chunks().iter().cloned());
    // A merge, an emptied session and a dropped row image appear as removals.
    engine.apply(insert("e", image(16, 1, 7)));
    engine.apply(delete("d"));
    let delta = engine.take_commit();
    assert!(delta.state.entries() >= 4, "{:?}", delta.state);
    log.extend(delta.state.chunks().iter().cloned());

    let mut replayed = Engine::new(spec.clone());
    let entries: u64 = log
        .iter()
        .map(|chunk| replayed.replay(chunk).expect("replays"))
        .sum();
    assert!(entries >= 10, "{entries}");
    let mut compacted = Engine::new(spec);
    for chunk in engine.encode_all().chunks() {
        compacted.replay(chunk).expect("replays");
    }
    assert_eq!(replayed.sizes(), engine.sizes());
    assert_eq!(compacted.sizes(), engine.sizes());
    // The same change on all three gives the same result.
    for engine in [&mut engine, &mut replayed, &mut compacted] {
        engine.apply(update("b", image(13, 1, 100)));
    }
    let (mut a, mut b, mut c) = (Table::default(), Table::default(), Table::default());
    a.apply_later(&engine.take_commit());
    b.apply_later(&replayed.take_commit());
    c.apply_later(&compacted.take_commit());
    assert_eq!(a.rows(), b.rows());
    assert_eq!(a.rows(), c.rows());
    // No split on retraction: the session grows to the new span.
    assert_eq!(a.rows(), [(1, 10, 21, results(3, 117, 7, 3))]);
}

#[test]
fn a_damaged_state_chunk_is_an_error() {
    let mut engine = Engine::new(spec(tumbling(10), 0, EmitMode::OnUpdate));
    engine.apply(insert("a", image(1, 1, 5)));
    let delta = engine.take_commit();
    let chunk = &delta.state.chunks()[0];
    let mut fresh = Engine::new(spec(tumbling(10), 0, EmitMode::OnUpdate));
    assert!(fresh.replay(&chunk[..chunk.len() - 3]).is_err());
    let mut foreign = chunk.clone();
    foreign[1] = 99;
    assert!(fresh.replay(&foreign).is_err());
}

/// A fresh aggregation of the surviving rows: what the table must equal.
fn recompute(
    kind: WindowKind,
    rows: &BTreeMap<u8, (Micros, i64, i64)>,
) -> Vec<(i64, Micros, Micros, Vec<Value>)> {
    let mut cells: BTreeMap<(i64, Micros, Micros), Vec<i64>> = BTreeMap::new();
    let mut windows = Vec::new();
    for (time, group, amount) in rows.values() {
        kind.assign(*time, &mut windows);
        for w in &windows {
            cells
                .entry((*group, w.start, w.end))
                .or_default()
                .push(*amount);
        }
    }
    cells
        .into_iter()
        .map(|((g, s, e), amounts)| {
            let mut distinct = amounts.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let values = results(
                amounts.len() as i64,
                amounts.iter().sum(),
                *amounts.iter().min().expect("non-empty"),
                distinct.len() as i64,
            );
            (g, s, e, values)
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Upsert {
        key: u8,
        time: Micros,
        group: i64,
        amount: i64,
    },
    Delete {
        key: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..12, -30i64..30, 0i64..3, -5i64..5)
            .prop_map(|(key, time, group, amount)| Op::Upsert { key, time, group, amount }),
        1 => (0u8..12).prop_map(|key| Op::Delete { key }),
    ]
}

proptest! {
    #[test]
    fn table_equals_recomputation(
        ops in proptest::collection::vec(op(), 1..80),
        commit_every in 1usize..10,
        restart_every in 1usize..6,
        compact in any::<bool>(),
        hopping in any::<bool>(),
    ) {
        let kind = if hopping {
            WindowKind::Hopping { size: 10, advance: 5, offset: 0 }
        } else {
            tumbling(10)
        };
        let mut engine = Engine::new(spec(kind, 0, EmitMode::OnUpdate));
        let mut table = Table::default();
        let mut rows: BTreeMap<u8, (Micros, i64, i64)> = BTreeMap::new();
        // The stored state log, and how many commits since the last restart from it.
        let (mut log, mut commits): (Vec<Vec<u8>>, usize) = (Vec::new(), 0);
        for (i, op) in ops.into_iter().enumerate() {
            let applied = match op {
                Op::Upsert { key, time, group, amount } => {
                    let c = image(time, group, amount);
                    let change = if rows.insert(key, (time, group, amount)).is_some() {
                        update(&key.to_string(), c)
                    } else {
                        insert(&key.to_string(), c)
                    };
                    engine.apply(change)
                }
                Op::Delete { key } if rows.remove(&key).is_some() => {
                    engine.apply(delete(&key.to_string()))
                }
                Op::Delete { .. } => Applied::Done,
            };
            prop_assert_eq!(applied, Applied::Done);
            if i % commit_every == 0 {
                let delta = engine.take_commit();
                table.apply(&delta);
                log.extend(delta.state.chunks().iter().cloned());
                if compact {
                    log = engine.encode_all().chunks().to_vec();
                }
                commits += 1;
                if commits % restart_every == 0 {
                    // A restart: the state is what the log replays to.
                    engine = Engine::new(spec(kind, 0, EmitMode::OnUpdate));
                    for chunk in &log {
                        engine.replay(chunk).expect("replays");
                    }
                }
            }
        }
        table.apply(&engine.take_commit());
        prop_assert_eq!(table.rows(), recompute(kind, &rows));
    }
}

/// What was created and dropped between two commits was never written: the commit neither
/// deletes it nor its state; what was written before is deleted.
#[test]
fn nothing_is_deleted_that_was_never_written() {
    let mut engine = Engine::new(spec(tumbling(10), 0, EmitMode::OnUpdate));
    engine.apply(insert("a", image(1, 1, 5)));
    engine.apply(delete("a"));
    engine.apply(insert("b", image(2, 2, 5)));
    engine.apply(update("b", image(12, 2, 5)));
    let delta = engine.take_commit();
    assert!(delta.deletes.is_empty());
    assert_eq!(entries(&engine, &delta.state), ["cell+ [10, 20)", "row+ b"]);
    // Now written: removing it deletes the result row, the state and the image.
    engine.apply(delete("b"));
    let delta = engine.take_commit();
    assert_eq!(delta.deletes.len(), 1);
    assert_eq!(entries(&engine, &delta.state), ["cell- [10, 20)", "row- b"]);
    // A window opened and closed between commits: its final row, no state to remove.
    engine.apply(insert("c", image(25, 3, 5)));
    engine.set_watermark(Some(100));
    let delta = engine.take_commit();
    assert_eq!(delta.upserts.len(), 1);
    assert!(delta.upserts[0].is_final);
    assert_eq!(entries(&engine, &delta.state), Vec::<String>::new());
}

/// The entries of a state log, one line each (cells first, then rows, each sorted).
fn entries(engine: &Engine, log: &StateLog) -> Vec<String> {
    let (mut cells, mut rows) = (Vec::new(), Vec::new());
    for chunk in log.chunks() {
        let mut input = StateReader::new(chunk).expect("version");
        while !input.at_end() {
            match input.u8().expect("tag") {
                tag @ (CELL_STORED | CELL_REMOVED) => {
                    let window = Window::new(input.i64().unwrap(), input.i64().unwrap());
                    decode_group(&mut input).expect("group");
                    if tag == CELL_STORED {
                        input.i64().expect("live rows");
                        for (function, _) in &engine.spec.aggregates {
                            Accumulator::decode(*function, &mut input).expect("accumulator");
                        }
                    }
                    let sign = if tag == CELL_STORED { '+' } else { '-' };
                    cells.push(format!("cell{sign} [{}, {})", window.start, window.end));
                }
                ROW_STORED => {
                    let key = input.str().expect("key").to_owned();
                    input.i64().expect("time");
                    decode_group(&mut input).expect("group");
                    decode_values(&mut input).expect("inputs");
                    if input.u8().expect("position flag") == 1 {
                        input.u64().expect("commit");
                        input.u64().expect("lsn");
                    }
                    rows.push(format!("row+ {key}"));
                }
                ROW_REMOVED => rows.push(format!("row- {}", input.str().expect("key"))),
                tag => panic!("unknown tag {tag}"),
            }
        }
    }
    cells.sort();
    rows.sort();
    cells.into_iter().chain(rows).collect()
}

/// Row images go once every window they fed has closed, and not before: an image moved to a
/// later window since it was queued stays.
#[test]
fn row_images_are_purged_when_their_windows_close() {
    // Exactly at the last window's end (+ lateness), not an event-time span after the event.
    let mut engine = Engine::new(spec(tumbling(10), 2, EmitMode::OnUpdate));
    engine.apply(insert("a", image(5, 1, 1)));
    engine.set_watermark(Some(11));
    engine.take_commit();
    assert_eq!(engine.sizes().1, 1, "[0, 10) closes at 12");
    engine.set_watermark(Some(12));
    engine.take_commit();
    assert_eq!(engine.sizes().1, 0, "every window of a closed at 12");

    let mut engine = Engine::new(spec(tumbling(10), 0, EmitMode::OnUpdate));
    engine.apply(insert("a", image(5, 1, 1)));
    engine.apply(insert("b", image(6, 1, 1)));
    engine.take_commit();
    engine.apply(update("a", image(25, 1, 2)));
    engine.set_watermark(Some(20));
    let delta = engine.take_commit();
    assert_eq!(engine.sizes().1, 1, "a is kept, b purged");
    assert!(entries(&engine, &delta.state).contains(&"row- b".to_owned()));
    // a's image is still there to retract from.
    assert_eq!(engine.apply(update("a", image(26, 1, 3))), Applied::Done);
    engine.take_commit();
    engine.set_watermark(Some(40));
    let delta = engine.take_commit();
    assert_eq!(engine.sizes().1, 0);
    assert_eq!(entries(&engine, &delta.state), ["cell- [20, 30)", "row- a"]);
}
