//! List output written as it is read: a JSON array (one element a line), NDJSON, or the
//! readable listing, a page at a time, so that memory is a page whatever the answer's size.
//!
//! A session or key is written as its head and then its events as they come: its JSON
//! object is opened with the head's fields and `"events":[`, and closed when the next head
//! or the end comes. Tables are sized to the rows of each page, not of the whole answer.

use std::io::{self, Read, Seek, SeekFrom, Write};

use serde::Serialize;

use super::render;
use crate::domain::{Alert, FailedLogin, KeyGeneration, QuorumView};
use crate::model::TrailEntry;
use crate::store::dynamodb::items::ViewRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Table,
    Json,
    Ndjson,
}

/// What an open element still has to write when it closes.
enum Open {
    None,
    /// A session or key object: its events array, then what follows it (a key's
    /// `shared_with`), then `}`. For tables: the lines after the events.
    Object {
        events: usize,
        tail: String,
    },
}

pub(super) struct ListOut<W: Write> {
    out: W,
    format: Format,
    /// Elements written (JSON: a separator before every one but the first).
    elements: usize,
    open: Open,
    /// Whether separators and brackets are written: not when elements are kept apart to
    /// be put in order later ([`Reorder`]).
    framed: bool,
    empty_note: &'static str,
    /// Table rows held until a page of them is sized and written.
    logins: Vec<FailedLogin>,
    alerts: Vec<Alert>,
}

/// Rows of a table sized together.
const TABLE_PAGE: usize = 500;

fn json<T: Serialize + ?Sized>(value: &T) -> io::Result<String> {
    serde_json::to_string(value).map_err(io::Error::other)
}

impl<W: Write> ListOut<W> {
    pub fn new(out: W, format: Format, empty_note: &'static str) -> Self {
        Self {
            out,
            format,
            elements: 0,
            open: Open::None,
            framed: true,
            empty_note,
            logins: Vec::new(),
            alerts: Vec::new(),
        }
    }

    /// Starts an element: closes the one before, writes the separator.
    fn element(&mut self) -> io::Result<()> {
        self.close()?;
        if self.framed && self.format == Format::Json {
            self.out
                .write_all(if self.elements == 0 { b"[\n" } else { b",\n" })?;
        }
        self.elements += 1;
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        if let Open::Object { tail, .. } = std::mem::replace(&mut self.open, Open::None) {
            match self.format {
                Format::Table => self.out.write_all(tail.as_bytes())?,
                Format::Json | Format::Ndjson => write!(self.out, "]{tail}}}")?,
            }
            if self.format == Format::Ndjson {
                self.out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    /// One whole element: a JSON value, or its table text.
    pub fn value<T: Serialize + ?Sized>(&mut self, value: &T, text: &str) -> io::Result<()> {
        self.element()?;
        match self.format {
            Format::Table => self.out.write_all(text.as_bytes()),
            Format::Json => self.out.write_all(json(value)?.as_bytes()),
            Format::Ndjson => writeln!(self.out, "{}", json(value)?),
        }
    }

    /// Starts an object whose last fields are an `events` array (and `trailing`, written
    /// after it, as JSON object members after a comma): `head` is its JSON with empty
    /// events and nothing trailing.
    fn object(&mut self, head: &str, text: &str, trailing: String) -> io::Result<()> {
        self.element()?;
        match self.format {
            Format::Table => self.out.write_all(text.as_bytes())?,
            Format::Json | Format::Ndjson => {
                // `head` ends in `"events":[]}`: the array is kept open.
                let open = head
                    .strip_suffix("]}")
                    .ok_or_else(|| io::Error::other("a head's JSON does not end in its events"))?;
                self.out.write_all(open.as_bytes())?;
            }
        }
        self.open = Open::Object {
            events: 0,
            tail: trailing,
        };
        Ok(())
    }

    fn event<T: Serialize>(&mut self, event: &T, text: &str) -> io::Result<()> {
        let Open::Object { events, .. } = &mut self.open else {
            return Ok(());
        };
        let first = *events == 0;
        *events += 1;
        match self.format {
            Format::Table => self.out.write_all(text.as_bytes()),
            Format::Json | Format::Ndjson => {
                if !first {
                    self.out.write_all(b",")?;
                }
                self.out.write_all(json(event)?.as_bytes())
            }
        }
    }

    /// Writes one row of a sessions, keys, failed-logins or alerts listing.
    pub fn row(&mut self, row: ViewRow) -> io::Result<()> {
        match row {
            ViewRow::SessionHead(session) => {
                let head = json(&session)?;
                self.object(&head, &render::session_line(&session), String::new())
            }
            ViewRow::SessionEvent(event) => self.event(&event, &render::session_event_line(&event)),
            ViewRow::KeyHead(key) => {
                let trailing = match self.format {
                    Format::Table => render::key_share_lines(&key),
                    Format::Json | Format::Ndjson if key.shared_with.is_empty() => String::new(),
                    Format::Json | Format::Ndjson => {
                        format!(",\"shared_with\":{}", json(&key.shared_with)?)
                    }
                };
                let head = json(&KeyGeneration {
                    shared_with: Vec::new(),
                    ..key.clone()
                })?;
                self.object(&head, &render::key_line(&key), trailing)
            }
            ViewRow::KeyEvent(event) => self.event(&event, &render::key_event_line(&event)),
            ViewRow::FailedLogin(login) if self.format == Format::Table => {
                self.logins.push(login);
                self.table_rows(false)
            }
            ViewRow::Alert(alert) if self.format == Format::Table => {
                self.alerts.push(alert);
                self.table_rows(false)
            }
            ViewRow::FailedLogin(login) => self.value(&login, ""),
            ViewRow::Alert(alert) => self.value(&alert, ""),
            ViewRow::Stream(_) | ViewRow::Other => Ok(()),
        }
    }

    /// Writes the table rows held, once there are a page of them (or `all`).
    fn table_rows(&mut self, all: bool) -> io::Result<()> {
        if self.logins.len() >= TABLE_PAGE || (all && !self.logins.is_empty()) {
            let table = render::failed_logins_table(&std::mem::take(&mut self.logins));
            self.table_page(&table)?;
        }
        if self.alerts.len() >= TABLE_PAGE || (all && !self.alerts.is_empty()) {
            let table = render::alerts_table(&std::mem::take(&mut self.alerts));
            self.table_page(&table)?;
        }
        Ok(())
    }

    /// A page of a table's rows at once (sized to them), under `header` the first time.
    pub fn table_page(&mut self, table: &str) -> io::Result<()> {
        let (header, rows) = table.split_once('\n').unwrap_or((table, ""));
        if rows.starts_with("(none)") {
            return Ok(());
        }
        if self.elements == 0 {
            writeln!(self.out, "{header}")?;
        }
        self.elements += 1;
        self.out.write_all(rows.as_bytes())?;
        self.out.flush()
    }

    /// Trail records, a page of them.
    pub fn trail(&mut self, page: &[TrailEntry]) -> io::Result<()> {
        if self.format == Format::Table {
            return self.table_page(&render::trail_table(page));
        }
        for entry in page {
            self.value(&render::entry_json(entry), "")?;
        }
        self.out.flush()
    }

    /// Ends the listing: closes what is open and the array.
    pub fn finish(mut self) -> io::Result<W> {
        self.close()?;
        self.table_rows(true)?;
        match self.format {
            Format::Json if self.elements == 0 => self.out.write_all(b"[]\n")?,
            Format::Json => self.out.write_all(b"\n]\n")?,
            Format::Ndjson => {}
            Format::Table if self.elements == 0 => writeln!(self.out, "{}", self.empty_note)?,
            Format::Table => {}
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The quorum view, written as its two lists are read: `{"tokens":[…],"m_values":[…]}`, or
/// one token or M-value setting a line (NDJSON), or the listing.
pub(super) struct QuorumOut<W: Write> {
    out: W,
    format: Format,
    tokens: usize,
    m_values: usize,
}

impl<W: Write> QuorumOut<W> {
    pub fn new(out: W, format: Format) -> Self {
        Self {
            out,
            format,
            tokens: 0,
            m_values: 0,
        }
    }

    pub fn page(&mut self, page: QuorumView) -> io::Result<()> {
        if self.format == Format::Table {
            if !page.tokens.is_empty() || !page.m_values.is_empty() {
                let text = render::quorum_table(&page);
                self.out.write_all(text.as_bytes())?;
            }
            self.tokens += page.tokens.len();
            self.m_values += page.m_values.len();
            return self.out.flush();
        }
        let json_format = self.format == Format::Json;
        for token in &page.tokens {
            if json_format {
                self.out.write_all(if self.tokens == 0 {
                    b"{\"tokens\":[\n"
                } else {
                    b",\n"
                })?;
            }
            self.tokens += 1;
            self.out.write_all(json(token)?.as_bytes())?;
            if !json_format {
                self.out.write_all(b"\n")?;
            }
        }
        for setting in &page.m_values {
            if json_format {
                if self.m_values == 0 {
                    self.open_tokens()?;
                    self.out.write_all(b"\"m_values\":[\n")?;
                } else {
                    self.out.write_all(b",\n")?;
                }
            }
            self.m_values += 1;
            self.out.write_all(json(setting)?.as_bytes())?;
            if !json_format {
                self.out.write_all(b"\n")?;
            }
        }
        self.out.flush()
    }

    /// Closes the tokens' list (opening it first when there was no token).
    fn open_tokens(&mut self) -> io::Result<()> {
        if self.tokens == 0 {
            self.out.write_all(b"{\"tokens\":[],\n")
        } else {
            self.out.write_all(b"\n],\n")
        }
    }

    pub fn finish(mut self) -> io::Result<()> {
        match self.format {
            Format::Json if self.m_values == 0 => {
                self.open_tokens()?;
                self.out.write_all(b"\"m_values\":[]}\n")?;
            }
            Format::Json => self.out.write_all(b"\n]}\n")?,
            Format::Ndjson => {}
            Format::Table if self.tokens + self.m_values == 0 => {
                self.out.write_all(b"(no quorum records)\n")?;
            }
            Format::Table => {}
        }
        self.out.flush()
    }
}

/// Puts elements read in one order out in another without holding them: each is written
/// to a scratch file as it is read, with its place in the wanted order kept beside, and
/// the file is read back in that order at the end. What it holds is one order key and two
/// numbers an element.
pub(super) struct Reorder<K: Ord> {
    scratch: ListOut<io::BufWriter<std::fs::File>>,
    spans: Vec<(K, u64, u64)>,
    started: Option<(K, u64)>,
    written: u64,
}

impl<K: Ord> Reorder<K> {
    pub fn new(format: Format) -> io::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "hsm-audit-{}-{}.scratch",
            std::process::id(),
            fastrand::u64(..)
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // The file is gone once closed, however the process ends (where the system
        // keeps an open file after it is removed).
        let _ = std::fs::remove_file(&path);
        let mut scratch = ListOut::new(io::BufWriter::new(file), format, "");
        scratch.framed = false;
        Ok(Self {
            scratch,
            spans: Vec::new(),
            started: None,
            written: 0,
        })
    }

    /// Starts the next element, whose place is `key`.
    pub fn start(&mut self, key: K) -> io::Result<()> {
        self.end()?;
        self.started = Some((key, self.written));
        Ok(())
    }

    fn end(&mut self) -> io::Result<()> {
        self.scratch.close()?;
        self.scratch.out.flush()?;
        let at = self.scratch.out.get_mut().stream_position()?;
        if let Some((key, from)) = self.started.take() {
            self.spans.push((key, from, at - from));
        }
        self.written = at;
        Ok(())
    }

    pub fn row(&mut self, row: ViewRow) -> io::Result<()> {
        self.scratch.row(row)
    }

    /// Writes every element to `out` in key order.
    pub fn finish<W: Write>(mut self, out: &mut ListOut<W>) -> io::Result<()> {
        self.end()?;
        self.spans.sort_by(|a, b| a.0.cmp(&b.0));
        let mut file = self
            .scratch
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        let mut buffer = Vec::new();
        for (_, from, length) in self.spans {
            file.seek(SeekFrom::Start(from))?;
            buffer.clear();
            (&mut file).take(length).read_to_end(&mut buffer)?;
            out.element()?;
            out.out.write_all(&buffer)?;
        }
        Ok(())
    }
}
