//! The pure core of the stage: changes in, cells `(window, group key) → accumulators` kept,
//! result rows and state deltas out at each commit. No I/O: the task feeds it and stores what it
//! returns, in one transaction.
//!
//! ```text
//!   change ──► retract old image ──► add new image ──► cells (dirty) ──► take_commit():
//!              (stored per row key,   (after)            │               upserts / deletes of
//!               else `before`)                           │               result rows, state
//!                                                        ▼               deltas, closed cells
//!                                    watermark W ≥ end + lateness ⇒ final, purged
//! ```
//!
//! `changelog.mode=retract`: the last image of each row (by record key) is kept, so an update
//! or delete retracts exactly what was added, whether or not the event carries a full `before`.
//! `append`: every insert or update is a fact counted once; deletes are ignored.
//! Sessions merge when their spans `[t, t + gap)` touch or overlap; a retraction does not split a
//! session.

use std::{
    collections::{BTreeMap, hash_map::Entry},
    sync::Arc,
};

use foldhash::HashMap;

use super::{
    aggregate::{Accumulator, AggregateFn, Value},
    state_codec::{
        CELL_REMOVED, CELL_STORED, ROW_REMOVED, ROW_STORED, StateLog, StateReader, StateWriter,
    },
    time::{Micros, Window, WindowKind},
};

/// A group key: one value per `group.by` column.
pub type GroupKey = Arc<[Value]>;

/// `emit.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    OnUpdate,
    OnWindowClose,
}

/// `changelog.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangelogMode {
    Retract,
    Append,
}

/// What the engine computes: windows, aggregates (each with the index of its input among the
/// image's inputs) and when rows are written.
#[derive(Debug, Clone)]
pub struct EngineSpec {
    pub kind: WindowKind,
    pub allowed_lateness: Micros,
    pub aggregates: Vec<(AggregateFn, Option<usize>)>,
    pub emit: EmitMode,
    pub changelog: ChangelogMode,
}

/// What one row image adds to the aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub time: Micros,
    pub group: GroupKey,
    /// The aggregate input columns, in the order the spec's indexes refer to.
    pub inputs: Box<[Value]>,
}

/// Why an image cannot contribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageProblem {
    InvalidEventTime,
    NullGroupKey,
}

/// The kind of a change event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// `c` or `r`.
    Insert,
    Update,
    Delete,
}

/// A row's identity: the record key's payload as compact JSON text. Shared, since the row
/// images, their expiry queue and the changes since the last commit all name it.
pub type RowKey = Arc<str>;

/// A decoded change event.
#[derive(Debug, Clone)]
pub struct ChangeInput {
    pub kind: ChangeKind,
    /// The record key's identity (the primary key); `None` for keyless tables.
    pub row_key: Option<RowKey>,
    /// The `before` image when it has the fields (not a key-only image).
    pub before: Option<Result<Contribution, ImageProblem>>,
    pub after: Option<Result<Contribution, ImageProblem>>,
    /// The source position `(last commit LSN, LSN)`, for dropping duplicates per row.
    pub position: Option<(u64, u64)>,
}

/// Why (part of) a change was not applied; the record goes to the late-events topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LateReason {
    /// A window it belongs to had closed (W ≥ end + allowed lateness).
    TooLate,
    /// The event-time field is missing, null or unreadable.
    InvalidEventTime,
    /// A group-by column is null (the result table's key cannot hold it).
    NullGroupKey,
    /// An update or delete of a row whose earlier image is not known (neither kept nor in
    /// `before`).
    UnknownBeforeImage,
    /// A retraction from a cell without that value (it would go negative).
    NegativeCount,
}

impl LateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLate => "window_closed",
            Self::InvalidEventTime => "invalid_event_time",
            Self::NullGroupKey => "null_group_key",
            Self::UnknownBeforeImage => "unknown_before_image",
            Self::NegativeCount => "negative_count",
        }
    }
}

/// What was not applied of one change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LateNotice {
    pub reasons: Vec<LateReason>,
    /// The windows the change missed (closed ones).
    pub windows: Vec<Window>,
}

impl LateNotice {
    fn note(&mut self, reason: LateReason) {
        if !self.reasons.contains(&reason) {
            self.reasons.push(reason);
        }
    }
}

/// The outcome of `apply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// Applied in part or not at all; say so downstream.
    Late(LateNotice),
    /// Same source position as the row's last applied change: dropped.
    Duplicate,
}

/// One result row to upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub group: GroupKey,
    pub window: Window,
    /// One per aggregate.
    pub values: Vec<Value>,
    pub is_final: bool,
    /// No earlier commit wrote this row: the result table follows the stored state, which
    /// never held its cell (on_update), or the window closes only once (on_window_close).
    pub is_new: bool,
}

/// Everything one commit writes.
#[derive(Debug, Default)]
pub struct CommitDelta {
    pub upserts: Vec<ResultRow>,
    pub deletes: Vec<(GroupKey, Window)>,
    /// Cells and row images stored or removed since the last commit, as log entries.
    pub state: StateLog,
}

#[derive(Debug, Clone)]
struct Cell {
    live_rows: i64,
    accumulators: Box<[Accumulator]>,
}

#[derive(Debug, Clone)]
struct RowImage {
    contribution: Contribution,
    position: Option<(u64, u64)>,
}

/// The stage's state and its changes since the last commit.
#[derive(Debug)]
pub struct Engine {
    spec: EngineSpec,
    cells: BTreeMap<Window, HashMap<GroupKey, Cell>>,
    /// Sessions per group: start → end.
    sessions: HashMap<GroupKey, BTreeMap<Micros, Micros>>,
    rows: HashMap<RowKey, RowImage>,
    watermark: Option<Micros>,
    /// The watermark up to which row images were purged.
    purged_at: Option<Micros>,
    /// Row keys by the watermark after which their image can go (tumbling and hopping
    /// windows), so that purging does not scan every image at every commit. An entry whose
    /// image changed since is checked and skipped.
    expiry: BTreeMap<Micros, Vec<RowKey>>,
    /// Cells changed since the last commit, each with whether the stored state held it then
    /// (the state mirrors memory at each commit): one created and removed in between was
    /// never written, so there is nothing to delete.
    dirty_cells: HashMap<(Window, GroupKey), bool>,
    /// Row images changed since the last commit, with whether the stored state held one then.
    dirty_rows: HashMap<RowKey, bool>,
    /// Reused for window assignment.
    scratch: Vec<Window>,
}

impl Engine {
    pub fn new(spec: EngineSpec) -> Self {
        Self {
            spec,
            cells: BTreeMap::new(),
            sessions: HashMap::default(),
            rows: HashMap::default(),
            watermark: None,
            purged_at: None,
            expiry: BTreeMap::new(),
            dirty_cells: HashMap::default(),
            dirty_rows: HashMap::default(),
            scratch: Vec::new(),
        }
    }

    /// The watermark changes are classified against (set after each batch).
    pub fn set_watermark(&mut self, watermark: Option<Micros>) {
        self.watermark = watermark;
    }

    pub fn watermark(&self) -> Option<Micros> {
        self.watermark
    }

    /// How many cells and row images are held.
    pub fn sizes(&self) -> (usize, usize) {
        (self.cells.values().map(HashMap::len).sum(), self.rows.len())
    }

    fn closed(&self, window: &Window) -> bool {
        self.watermark
            .is_some_and(|w| w >= window.end.saturating_add(self.spec.allowed_lateness))
    }

    fn new_cell(&self) -> Cell {
        Cell {
            live_rows: 0,
            accumulators: self
                .spec
                .aggregates
                .iter()
                .map(|(function, _)| Accumulator::new(*function))
                .collect(),
        }
    }

    /// Applies one change.
    pub fn apply(&mut self, change: ChangeInput) -> Applied {
        let mut notice = LateNotice::default();
        match self.spec.changelog {
            ChangelogMode::Append => {
                if change.kind != ChangeKind::Delete {
                    self.add_image(change.after, &mut notice);
                }
            }
            ChangelogMode::Retract => {
                // Taken out (the change replaces or removes it), not cloned.
                let mut stored = change.row_key.as_ref().and_then(|k| self.rows.remove(k));
                let repeated = |image: &mut RowImage| {
                    change
                        .position
                        .zip(image.position)
                        .is_some_and(|(position, last)| position <= last)
                };
                if let (Some(image), Some(key)) = (stored.take_if(repeated), &change.row_key) {
                    self.rows.insert(Arc::clone(key), image);
                    return Applied::Duplicate;
                }
                let had_image = stored.is_some();
                let old = match (stored, change.kind) {
                    (Some(image), _) => Some(Ok(image.contribution)),
                    (None, ChangeKind::Insert) => None,
                    (None, _) => Some(change.before.unwrap_or(Err(ImageProblem::InvalidEventTime))),
                };
                match old {
                    Some(Ok(old)) => self.retract(&old, &mut notice),
                    Some(Err(_)) => notice.note(LateReason::UnknownBeforeImage),
                    None => {}
                }
                let added = if change.kind == ChangeKind::Delete {
                    None
                } else {
                    self.add_image(change.after, &mut notice)
                };
                if let Some(key) = change.row_key {
                    // Whether an image was held before this change, as looked up above.
                    self.dirty_rows.entry(Arc::clone(&key)).or_insert(had_image);
                    // Without a new image, the row has none: the old one was taken out above.
                    if let Some(contribution) = added {
                        self.keep_row(
                            key,
                            RowImage {
                                contribution,
                                position: change.position,
                            },
                        );
                    }
                }
            }
        }
        if notice.reasons.is_empty() {
            Applied::Done
        } else {
            notice.windows.sort_unstable_by_key(|w| (w.start, w.end));
            notice.windows.dedup();
            Applied::Late(notice)
        }
    }

    /// Adds an image; returns it when it is valid (even if its windows had closed: it is the
    /// row's image all the same).
    fn add_image(
        &mut self,
        image: Option<Result<Contribution, ImageProblem>>,
        notice: &mut LateNotice,
    ) -> Option<Contribution> {
        match image {
            Some(Ok(contribution)) => {
                self.add(&contribution, notice);
                Some(contribution)
            }
            Some(Err(ImageProblem::InvalidEventTime)) | None => {
                notice.note(LateReason::InvalidEventTime);
                None
            }
            Some(Err(ImageProblem::NullGroupKey)) => {
                notice.note(LateReason::NullGroupKey);
                None
            }
        }
    }

    fn add(&mut self, contribution: &Contribution, notice: &mut LateNotice) {
        if let WindowKind::Session { gap } = self.spec.kind {
            self.add_to_session(contribution, gap, notice);
            return;
        }
        let mut windows = std::mem::take(&mut self.scratch);
        self.spec.kind.assign(contribution.time, &mut windows);
        for window in &windows {
            if self.closed(window) {
                notice.note(LateReason::TooLate);
                notice.windows.push(*window);
                continue;
            }
            self.add_to_cell(*window, contribution);
        }
        self.scratch = windows;
    }

    fn add_to_cell(&mut self, window: Window, contribution: &Contribution) {
        let aggregates = &self.spec.aggregates;
        let (cell, existed) = match self
            .cells
            .entry(window)
            .or_default()
            .entry(Arc::clone(&contribution.group))
        {
            Entry::Occupied(held) => (held.into_mut(), true),
            Entry::Vacant(fresh) => (
                fresh.insert(Cell {
                    live_rows: 0,
                    accumulators: aggregates
                        .iter()
                        .map(|(function, _)| Accumulator::new(*function))
                        .collect(),
                }),
                false,
            ),
        };
        cell.live_rows += 1;
        for (accumulator, (_, input)) in cell.accumulators.iter_mut().zip(&self.spec.aggregates) {
            if let Some(index) = input {
                accumulator.add(contribution.inputs.get(*index).unwrap_or(&Value::Null));
            }
        }
        self.dirty_cells
            .entry((window, Arc::clone(&contribution.group)))
            .or_insert(existed);
    }

    fn add_to_session(
        &mut self,
        contribution: &Contribution,
        gap: Micros,
        notice: &mut LateNotice,
    ) {
        let group = &contribution.group;
        let mut merged = Window::new(contribution.time, contribution.time.saturating_add(gap));
        // Sessions that overlap or touch [t, t + gap): start ≤ t + gap and end ≥ t.
        let touching: Vec<Window> = self
            .sessions
            .get(group)
            .map(|sessions| {
                sessions
                    .range(..=merged.end)
                    .rev()
                    .take_while(|(_, end)| **end >= merged.start)
                    .map(|(start, end)| Window::new(*start, *end))
                    .collect()
            })
            .unwrap_or_default();
        for window in &touching {
            merged = Window::new(merged.start.min(window.start), merged.end.max(window.end));
        }
        if self.closed(&merged) {
            notice.note(LateReason::TooLate);
            notice.windows.push(merged);
            return;
        }
        let mut cell = self.new_cell();
        for window in &touching {
            let old = self.remove_cell(window, group);
            let existed = old.is_some();
            if let Some(old) = old {
                cell.live_rows += old.live_rows;
                for (into, from) in cell.accumulators.iter_mut().zip(old.accumulators.iter()) {
                    into.merge(from);
                }
            }
            if let Some(sessions) = self.sessions.get_mut(group) {
                sessions.remove(&window.start);
            }
            self.dirty_cells
                .entry((*window, Arc::clone(group)))
                .or_insert(existed);
        }
        // Whether the merged cell was held before this change (it is not when new; when it
        // is one of the touching sessions, that was noted above).
        let existed = self
            .cells
            .get(&merged)
            .is_some_and(|g| g.contains_key(group));
        self.dirty_cells
            .entry((merged, Arc::clone(group)))
            .or_insert(existed);
        self.cells
            .entry(merged)
            .or_default()
            .insert(Arc::clone(group), cell);
        self.sessions
            .entry(Arc::clone(group))
            .or_default()
            .insert(merged.start, merged.end);
        self.add_to_cell(merged, contribution);
    }

    fn remove_cell(&mut self, window: &Window, group: &GroupKey) -> Option<Cell> {
        let groups = self.cells.get_mut(window)?;
        let cell = groups.remove(group);
        if groups.is_empty() {
            self.cells.remove(window);
        }
        cell
    }

    /// The session of `group` holding `time`.
    fn session_of(&self, group: &GroupKey, time: Micros) -> Option<Window> {
        let (start, end) = self.sessions.get(group)?.range(..=time).next_back()?;
        (time < *end).then(|| Window::new(*start, *end))
    }

    fn retract(&mut self, contribution: &Contribution, notice: &mut LateNotice) {
        let mut windows = std::mem::take(&mut self.scratch);
        windows.clear();
        match self.spec.kind {
            WindowKind::Session { gap } => {
                match self.session_of(&contribution.group, contribution.time) {
                    Some(session) => windows.push(session),
                    // Its session closed and was purged.
                    None => windows.push(Window::new(
                        contribution.time,
                        contribution.time.saturating_add(gap),
                    )),
                }
            }
            kind => kind.assign(contribution.time, &mut windows),
        }
        for window in &windows {
            if self.closed(window) {
                notice.note(LateReason::TooLate);
                notice.windows.push(*window);
                continue;
            }
            self.retract_from_cell(*window, contribution, notice);
        }
        self.scratch = windows;
    }

    fn retract_from_cell(
        &mut self,
        window: Window,
        contribution: &Contribution,
        notice: &mut LateNotice,
    ) {
        let group = &contribution.group;
        let Some(cell) = self.cells.get_mut(&window).and_then(|g| g.get_mut(group)) else {
            notice.note(LateReason::NegativeCount);
            return;
        };
        let input = |index: &Option<usize>| {
            index.map(|i| contribution.inputs.get(i).unwrap_or(&Value::Null))
        };
        // Every accumulator is checked first: a retraction is applied whole or not at all.
        let whole = cell.live_rows > 0
            && cell.accumulators.iter().zip(&self.spec.aggregates).all(
                |(accumulator, (_, index))| {
                    input(index).is_none_or(|value| accumulator.can_retract(value))
                },
            );
        if !whole {
            notice.note(LateReason::NegativeCount);
            return;
        }
        for (accumulator, (_, index)) in cell.accumulators.iter_mut().zip(&self.spec.aggregates) {
            if let Some(value) = input(index) {
                // Cannot fail: checked above.
                let _ = accumulator.retract(value);
            }
        }
        cell.live_rows -= 1;
        if cell.live_rows == 0 {
            self.remove_cell(&window, group);
            if matches!(self.spec.kind, WindowKind::Session { .. })
                && let Some(sessions) = self.sessions.get_mut(group)
            {
                sessions.remove(&window.start);
                if sessions.is_empty() {
                    self.sessions.remove(group);
                }
            }
        }
        self.dirty_cells
            .entry((window, Arc::clone(group)))
            .or_insert(true);
    }

    fn row(
        &self,
        group: &GroupKey,
        window: Window,
        cell: &Cell,
        is_final: bool,
        is_new: bool,
    ) -> ResultRow {
        ResultRow {
            group: Arc::clone(group),
            window,
            values: cell
                .accumulators
                .iter()
                .map(|a| a.result(cell.live_rows))
                .collect(),
            is_final,
            is_new,
        }
    }

    /// What the next commit writes: closed windows (final, then purged from state), changed
    /// cells (on_update), emptied cells, and the state deltas. Clears the change tracking.
    pub fn take_commit(&mut self) -> CommitDelta {
        let mut delta = CommitDelta::default();
        let emit_updates = self.spec.emit == EmitMode::OnUpdate;
        // Closed windows: end + lateness ≤ W. Cells are ordered by end.
        let closed: Vec<Window> = self
            .cells
            .keys()
            .take_while(|w| self.closed(w))
            .copied()
            .collect();
        for window in closed {
            let Some(groups) = self.cells.remove(&window) else {
                continue;
            };
            for (group, cell) in groups {
                // A cell created since the last commit has no stored state to remove.
                let stored = self.dirty_cells.remove(&(window, Arc::clone(&group))) != Some(false);
                let is_new = !emit_updates || !stored;
                delta
                    .upserts
                    .push(self.row(&group, window, &cell, true, is_new));
                if stored {
                    encode_cell_removed(&mut delta.state, window, &group);
                }
                if let Some(sessions) = self.sessions.get_mut(&group) {
                    sessions.remove(&window.start);
                    if sessions.is_empty() {
                        self.sessions.remove(&group);
                    }
                }
            }
        }
        for ((window, group), stored) in std::mem::take(&mut self.dirty_cells) {
            match self.cells.get(&window).and_then(|g| g.get(&group)) {
                Some(cell) => {
                    if emit_updates {
                        delta
                            .upserts
                            .push(self.row(&group, window, cell, false, !stored));
                    }
                    encode_cell(&mut delta.state, window, &group, cell);
                }
                // Neither its state nor (on_update) its result row was ever written.
                None if !stored => {}
                None => {
                    encode_cell_removed(&mut delta.state, window, &group);
                    if emit_updates {
                        delta.deletes.push((group, window));
                    }
                }
            }
        }
        self.purge_rows();
        for (key, stored) in std::mem::take(&mut self.dirty_rows) {
            match self.rows.get(&key) {
                Some(image) => encode_row(&mut delta.state, &key, image),
                // An image kept and dropped since the last commit was never written.
                None if stored => {
                    delta.state.entry(ROW_REMOVED).str(&key);
                }
                None => {}
            }
        }
        delta
    }

    /// Every cell and row image held, as log entries that restore them on their own (what a
    /// compacted state log holds). Changes since the last commit are included, so call this
    /// right after [`Self::take_commit`].
    pub fn encode_all(&self) -> StateLog {
        let mut log = StateLog::default();
        for (window, groups) in &self.cells {
            for (group, cell) in groups {
                encode_cell(&mut log, *window, group, cell);
            }
        }
        for (key, image) in &self.rows {
            encode_row(&mut log, key, image);
        }
        log
    }

    /// Applies one chunk of the stored state log (chunks in the order they were written);
    /// returns how many entries it held.
    pub fn replay(&mut self, chunk: &[u8]) -> Result<u64, String> {
        let mut input = StateReader::new(chunk)?;
        let mut entries = 0;
        while !input.at_end() {
            entries += 1;
            match input.u8()? {
                CELL_STORED => {
                    let window = Window::new(input.i64()?, input.i64()?);
                    let group = decode_group(&mut input)?;
                    let live_rows = input.i64()?;
                    let accumulators = self
                        .spec
                        .aggregates
                        .iter()
                        .map(|(function, _)| Accumulator::decode(*function, &mut input))
                        .collect::<Result<Box<[_]>, _>>()?;
                    if matches!(self.spec.kind, WindowKind::Session { .. }) {
                        self.sessions
                            .entry(Arc::clone(&group))
                            .or_default()
                            .insert(window.start, window.end);
                    }
                    self.cells.entry(window).or_default().insert(
                        group,
                        Cell {
                            live_rows,
                            accumulators,
                        },
                    );
                }
                CELL_REMOVED => {
                    let window = Window::new(input.i64()?, input.i64()?);
                    let group = decode_group(&mut input)?;
                    self.remove_cell(&window, &group);
                    if let Some(sessions) = self.sessions.get_mut(&group) {
                        if sessions.get(&window.start) == Some(&window.end) {
                            sessions.remove(&window.start);
                        }
                        if sessions.is_empty() {
                            self.sessions.remove(&group);
                        }
                    }
                }
                ROW_STORED => {
                    let key: RowKey = input.str()?.into();
                    let time = input.i64()?;
                    let group = decode_group(&mut input)?;
                    let inputs = decode_values(&mut input)?.into();
                    let position = match input.u8()? {
                        0 => None,
                        _ => Some((input.u64()?, input.u64()?)),
                    };
                    self.keep_row(
                        key,
                        RowImage {
                            contribution: Contribution {
                                time,
                                group,
                                inputs,
                            },
                            position,
                        },
                    );
                }
                ROW_REMOVED => {
                    let key = input.str()?;
                    self.rows.remove(key);
                }
                tag => return Err(format!("unknown entry tag {tag} in a state chunk")),
            }
        }
        Ok(entries)
    }

    /// The watermark at which nothing can be retracted from an image at `time` any more.
    fn horizon(&self, time: Micros) -> Micros {
        self.spec
            .kind
            .last_end(time)
            .saturating_add(self.spec.allowed_lateness)
    }

    fn keep_row(&mut self, key: RowKey, image: RowImage) {
        if !matches!(self.spec.kind, WindowKind::Session { .. }) {
            // On the windows' grid: one entry per window, not per row.
            let horizon = self.horizon(image.contribution.time);
            self.expiry.entry(horizon).or_default().push(key.clone());
        }
        self.rows.insert(key, image);
    }

    /// Drops row images whose every window has closed: nothing can be retracted from them.
    fn purge_rows(&mut self) {
        let Some(watermark) = self.watermark else {
            return;
        };
        if self.purged_at == Some(watermark) || self.rows.is_empty() {
            return;
        }
        self.purged_at = Some(watermark);
        let expired: Vec<RowKey> = if matches!(self.spec.kind, WindowKind::Session { .. }) {
            // A session's end moves with its rows: scan.
            self.rows
                .iter()
                .filter(|(_, image)| {
                    let c = &image.contribution;
                    self.horizon(c.time) <= watermark && self.session_of(&c.group, c.time).is_none()
                })
                .map(|(key, _)| key.clone())
                .collect()
        } else {
            let later = self.expiry.split_off(&watermark.saturating_add(1));
            let due = std::mem::replace(&mut self.expiry, later);
            due.into_values()
                .flatten()
                .filter(|key| {
                    self.rows
                        .get(key)
                        .is_some_and(|image| self.horizon(image.contribution.time) <= watermark)
                })
                .collect()
        };
        for key in expired {
            if self.rows.remove(&key).is_some() {
                self.dirty_rows.entry(key).or_insert(true);
            }
        }
    }
}

fn encode_group(out: &mut StateWriter<'_>, group: &GroupKey) {
    out.count(group.len());
    for value in group.iter() {
        value.encode(out);
    }
}

fn decode_values(input: &mut StateReader<'_>) -> Result<Vec<Value>, String> {
    let n = input.count()?;
    let mut values = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        values.push(Value::decode(input)?);
    }
    Ok(values)
}

fn decode_group(input: &mut StateReader<'_>) -> Result<GroupKey, String> {
    decode_values(input).map(Into::into)
}

fn encode_cell(log: &mut StateLog, window: Window, group: &GroupKey, cell: &Cell) {
    let mut out = log.entry(CELL_STORED);
    out.i64(window.start).i64(window.end);
    encode_group(&mut out, group);
    out.i64(cell.live_rows);
    for accumulator in &cell.accumulators {
        accumulator.encode(&mut out);
    }
}

fn encode_cell_removed(log: &mut StateLog, window: Window, group: &GroupKey) {
    let mut out = log.entry(CELL_REMOVED);
    out.i64(window.start).i64(window.end);
    encode_group(&mut out, group);
}

fn encode_row(log: &mut StateLog, key: &str, image: &RowImage) {
    let c = &image.contribution;
    let mut out = log.entry(ROW_STORED);
    out.str(key).i64(c.time);
    encode_group(&mut out, &c.group);
    out.count(c.inputs.len());
    for value in &c.inputs {
        value.encode(&mut out);
    }
    match image.position {
        None => out.u8(0),
        Some((commit, lsn)) => out.u8(1).u64(commit).u64(lsn),
    };
}

#[cfg(test)]
mod tests;
