//! A PostgreSQL replication connection (`replication=database`), spoken directly over the wire
//! protocol because tokio-postgres cannot open one.
//!
//! ```text
//!   connect ──▶ startup + auth (trust, cleartext, MD5, SCRAM-SHA-256), optional TLS
//!      │
//!      ├──▶ simple_query / identify_system / create_slot      (simple query protocol only:
//!      │                                                       the walsender rejects extended)
//!      ▼
//!   start_replication ──▶ ReplicationStream
//!                           ├─ next_frame(): CopyData payloads (XLogData, keepalives)
//!                           └─ status task: standby status updates with the confirmed LSN,
//!                              every `status_interval`, on every change, and on request
//! ```
//!
//! The status updates run on their own task over the socket's write half, so the walsender hears
//! from us even while the consumer of frames is held up by Kafka: its `wal_sender_timeout` counts
//! any message from the client, and the reading side simply waits.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use bytes::{Buf, Bytes, BytesMut};
use postgres_protocol::{
    authentication::{
        md5_hash,
        sasl::{ChannelBinding, ScramSha256},
    },
    message::frontend,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf},
    net::TcpStream,
    sync::{Notify, watch},
    task::JoinHandle,
};

use super::{
    frames,
    tls::{self, BoxStream},
};
use crate::event::Lsn;

/// Where and as whom to connect.
#[derive(Clone)]
pub struct ConnectConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<SecretString>,
    pub dbname: String,
    pub ssl: tls::SslConfig,
    pub application_name: String,
    pub connect_timeout: Duration,
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[hidden]"))
            .field("dbname", &self.dbname)
            .field("ssl", &self.ssl)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// What went wrong on a replication connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to PostgreSQL at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("connecting to PostgreSQL at {address} timed out after {timeout:?}")]
    ConnectTimeout { address: String, timeout: Duration },
    #[error("PostgreSQL connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS to PostgreSQL failed: {0}")]
    Tls(String),
    #[error("authentication as {user} failed: {reason}")]
    Auth { user: String, reason: String },
    #[error("PostgreSQL answered {severity} {code}: {message}{}{}",
        .detail.as_deref().map(|d| format!(" (detail: {d})")).unwrap_or_default(),
        .hint.as_deref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
    Server {
        severity: String,
        code: String,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    #[error("protocol violation from PostgreSQL: {0}")]
    Protocol(String),
    #[error("PostgreSQL ended the replication stream (a server shutdown or restart)")]
    StreamEnded,
}

impl Error {
    /// SQLSTATE of a server error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether reconnecting later may help: lost connections, server shutting down or starting,
    /// too many connections. Wrong credentials, missing objects and protocol errors are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Io(_)
            | Error::StreamEnded => true,
            Error::Server { code, .. } => {
                code.starts_with("08") // connection exception
                    || code.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
                    || code == "53300" // too many connections
                    || code == "55006" // object in use: a slot still held by an old walsender
                    || code == "40001"
                    || code == "40P01"
            }
            Error::Tls(_) | Error::Auth { .. } | Error::Protocol(_) => false,
        }
    }
}

/// The result of one statement of a simple query: column names and text rows.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl QueryResult {
    /// The value of `column` in the first row.
    pub fn first(&self, column: &str) -> Option<&str> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.rows.first()?.get(index)?.as_deref()
    }
}

/// IDENTIFY_SYSTEM's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    pub system_id: String,
    pub timeline: u32,
    pub xlog_position: Lsn,
    pub dbname: Option<String>,
}

/// What CREATE_REPLICATION_SLOT does with the snapshot it builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotSnapshot {
    /// Export it for other sessions (valid until the next command on this connection).
    Export,
    /// Use it in the current transaction of this connection (which must be REPEATABLE READ).
    Use,
    /// No snapshot.
    Nothing,
}

/// CREATE_REPLICATION_SLOT's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    pub slot_name: String,
    pub consistent_point: Lsn,
    pub snapshot_name: Option<String>,
}

/// A connection in the ordinary (query) state.
pub struct ReplicationConnection {
    stream: BoxStream,
    read: BytesMut,
    parameters: HashMap<String, String>,
}

impl fmt::Debug for ReplicationConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationConnection")
            .field("server_version", &self.parameters.get("server_version"))
            .finish_non_exhaustive()
    }
}

/// One backend message: its tag and body.
struct BackendMessage {
    tag: u8,
    body: Bytes,
}

impl ReplicationConnection {
    pub async fn connect(config: &ConnectConfig) -> Result<Self, Error> {
        let address = format!("{}:{}", config.host, config.port);
        let tcp = tokio::time::timeout(config.connect_timeout, TcpStream::connect(&address))
            .await
            .map_err(|_| Error::ConnectTimeout {
                address: address.clone(),
                timeout: config.connect_timeout,
            })?
            .map_err(|source| Error::Connect {
                address: address.clone(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        let stream = tokio::time::timeout(
            config.connect_timeout,
            tls::negotiate(tcp, &config.host, &config.ssl),
        )
        .await
        .map_err(|_| Error::ConnectTimeout {
            address: address.clone(),
            timeout: config.connect_timeout,
        })??;
        let mut connection = Self {
            stream,
            read: BytesMut::with_capacity(64 * 1024),
            parameters: HashMap::new(),
        };
        tokio::time::timeout(config.connect_timeout, connection.startup(config))
            .await
            .map_err(|_| Error::ConnectTimeout {
                address,
                timeout: config.connect_timeout,
            })??;
        Ok(connection)
    }

    /// A server parameter reported at startup (`server_version`, `TimeZone`, ...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// The server's major version number (e.g. 15), from `server_version`.
    pub fn server_major_version(&self) -> Option<u32> {
        let version = self.parameter("server_version")?;
        version
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    async fn startup(&mut self, config: &ConnectConfig) -> Result<(), Error> {
        let mut buf = BytesMut::new();
        frontend::startup_message(
            [
                ("user", config.user.as_str()),
                ("database", config.dbname.as_str()),
                ("replication", "database"),
                ("application_name", config.application_name.as_str()),
                ("client_encoding", "UTF8"),
            ],
            &mut buf,
        )?;
        self.send(&buf).await?;
        self.authenticate(config).await?;
        loop {
            let message = self.receive().await?;
            match message.tag {
                b'S' => {
                    let mut body = message.body;
                    let name = read_cstr(&mut body)?;
                    let value = read_cstr(&mut body)?;
                    self.parameters.insert(name, value);
                }
                b'K' | b'N' => {}
                b'Z' => return Ok(()),
                b'E' => return Err(server_error(message.body)),
                tag => return Err(unexpected("startup", tag)),
            }
        }
    }

    async fn authenticate(&mut self, config: &ConnectConfig) -> Result<(), Error> {
        let auth_error = |reason: &str| Error::Auth {
            user: config.user.clone(),
            reason: reason.to_owned(),
        };
        let password = || {
            config
                .password
                .as_ref()
                .map(|p| p.expose_secret().as_bytes().to_vec())
                .ok_or_else(|| auth_error("the server asks for a password and none is configured"))
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            let message = self.receive().await?;
            if message.tag == b'E' {
                return Err(server_error(message.body));
            }
            if message.tag != b'R' {
                return Err(unexpected("authentication", message.tag));
            }
            let mut body = message.body;
            if body.remaining() < 4 {
                return Err(Error::Protocol("short authentication message".to_owned()));
            }
            let mut buf = BytesMut::new();
            match body.get_i32() {
                0 => return Ok(()),
                3 => frontend::password_message(&password()?, &mut buf)?,
                5 => {
                    if body.remaining() < 4 {
                        return Err(Error::Protocol("MD5 request without salt".to_owned()));
                    }
                    let salt = [body[0], body[1], body[2], body[3]];
                    let hash = md5_hash(config.user.as_bytes(), &password()?, salt);
                    frontend::password_message(hash.as_bytes(), &mut buf)?;
                }
                10 => {
                    let mut offered = Vec::new();
                    while body.has_remaining() && body[0] != 0 {
                        offered.push(read_cstr(&mut body)?);
                    }
                    if !offered.iter().any(|m| m == "SCRAM-SHA-256") {
                        return Err(auth_error(&format!(
                            "the server offers only {offered:?}; SCRAM-SHA-256 is supported"
                        )));
                    }
                    let state = ScramSha256::new(&password()?, ChannelBinding::unsupported());
                    frontend::sasl_initial_response("SCRAM-SHA-256", state.message(), &mut buf)?;
                    scram = Some(state);
                }
                11 => {
                    let state = scram
                        .as_mut()
                        .ok_or_else(|| Error::Protocol("SASL continue before start".to_owned()))?;
                    state
                        .update(&body)
                        .map_err(|e| auth_error(&format!("SCRAM exchange failed: {e}")))?;
                    frontend::sasl_response(state.message(), &mut buf)?;
                }
                12 => {
                    let state = scram
                        .as_mut()
                        .ok_or_else(|| Error::Protocol("SASL final before start".to_owned()))?;
                    state.finish(&body).map_err(|e| {
                        auth_error(&format!("the server's SCRAM signature is invalid: {e}"))
                    })?;
                    continue;
                }
                other => {
                    return Err(auth_error(&format!(
                        "unsupported authentication method (code {other}); use trust, password, md5 or scram-sha-256"
                    )));
                }
            }
            self.send(&buf).await?;
        }
    }

    /// Runs SQL (one or more statements) with the simple query protocol; one result per
    /// statement. A server error is returned after the server is ready again.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<QueryResult>, Error> {
        let mut buf = BytesMut::new();
        frontend::query(sql, &mut buf)?;
        self.send(&buf).await?;
        let mut results = Vec::new();
        let mut current = QueryResult::default();
        let mut error = None;
        loop {
            let message = self.receive().await?;
            match message.tag {
                b'T' => current.columns = parse_row_description(message.body)?,
                b'D' => current.rows.push(parse_data_row(message.body)?),
                b'C' | b'I' => results.push(std::mem::take(&mut current)),
                b'E' => error = Some(server_error(message.body)),
                b'N' | b'S' => {}
                b'Z' => {
                    return match error {
                        Some(error) => Err(error),
                        None => Ok(results),
                    };
                }
                tag => return Err(unexpected("query", tag)),
            }
        }
    }

    pub async fn identify_system(&mut self) -> Result<SystemIdentity, Error> {
        let results = self.simple_query("IDENTIFY_SYSTEM").await?;
        let result = results
            .first()
            .ok_or_else(|| Error::Protocol("IDENTIFY_SYSTEM returned nothing".to_owned()))?;
        let field = |name: &str| {
            result
                .first(name)
                .ok_or_else(|| Error::Protocol(format!("IDENTIFY_SYSTEM lacks {name}")))
        };
        Ok(SystemIdentity {
            system_id: field("systemid")?.to_owned(),
            timeline: field("timeline")?
                .parse()
                .map_err(|_| Error::Protocol("IDENTIFY_SYSTEM timeline is not a number".into()))?,
            xlog_position: parse_lsn(field("xlogpos")?)?,
            dbname: result.first("dbname").map(str::to_owned),
        })
    }

    /// Creates a logical slot with pgoutput. The name must already be validated
    /// (`[a-z0-9_]{1,63}`): it is spliced into the command.
    pub async fn create_slot(
        &mut self,
        slot_name: &str,
        temporary: bool,
        snapshot: SlotSnapshot,
    ) -> Result<CreatedSlot, Error> {
        let snapshot = match snapshot {
            SlotSnapshot::Export => "EXPORT_SNAPSHOT",
            SlotSnapshot::Use => "USE_SNAPSHOT",
            SlotSnapshot::Nothing => "NOEXPORT_SNAPSHOT",
        };
        let temporary = if temporary { " TEMPORARY" } else { "" };
        let sql =
            format!("CREATE_REPLICATION_SLOT {slot_name}{temporary} LOGICAL pgoutput {snapshot}");
        let results = self.simple_query(&sql).await?;
        let result = results.first().ok_or_else(|| {
            Error::Protocol("CREATE_REPLICATION_SLOT returned nothing".to_owned())
        })?;
        Ok(CreatedSlot {
            slot_name: result.first("slot_name").unwrap_or(slot_name).to_owned(),
            consistent_point: parse_lsn(result.first("consistent_point").ok_or_else(|| {
                Error::Protocol("CREATE_REPLICATION_SLOT lacks consistent_point".to_owned())
            })?)?,
            snapshot_name: result.first("snapshot_name").map(str::to_owned),
        })
    }

    /// Starts logical replication from `start` and turns the connection into a stream.
    /// `options` are pgoutput's (`proto_version`, `publication_names`, `messages`); values are
    /// quoted here.
    pub async fn start_replication(
        mut self,
        slot_name: &str,
        start: Lsn,
        options: &[(&str, &str)],
        status_interval: Duration,
    ) -> Result<ReplicationStream, Error> {
        let options = options
            .iter()
            .map(|(key, value)| format!("\"{key}\" '{}'", value.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("START_REPLICATION SLOT {slot_name} LOGICAL {start} ({options})");
        let mut buf = BytesMut::new();
        frontend::query(&sql, &mut buf)?;
        self.send(&buf).await?;
        loop {
            let message = self.receive().await?;
            match message.tag {
                b'W' => break,
                b'N' | b'S' => {}
                b'E' => {
                    let error = server_error(message.body);
                    // Drain to ReadyForQuery so the error is the server's, not a framing one.
                    while self.receive().await?.tag != b'Z' {}
                    return Err(error);
                }
                tag => return Err(unexpected("START_REPLICATION", tag)),
            }
        }
        let (reader, writer) = tokio::io::split(self.stream);
        let (confirmed, confirmed_rx) = watch::channel(start);
        let reply_now = Arc::new(Notify::new());
        let status_task = tokio::spawn(send_status_updates(
            writer,
            confirmed_rx,
            Arc::clone(&reply_now),
            status_interval,
        ));
        Ok(ReplicationStream {
            reader,
            read: self.read,
            confirmed,
            reply_now,
            status_task,
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn receive(&mut self) -> Result<BackendMessage, Error> {
        read_message(&mut self.stream, &mut self.read).await
    }
}

/// The CopyBoth phase of a replication connection.
pub struct ReplicationStream {
    reader: ReadHalf<BoxStream>,
    read: BytesMut,
    confirmed: watch::Sender<Lsn>,
    reply_now: Arc<Notify>,
    status_task: JoinHandle<Result<(), Error>>,
}

impl fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("confirmed", &*self.confirmed.borrow())
            .finish_non_exhaustive()
    }
}

impl ReplicationStream {
    /// The next CopyData payload (an XLogData or keepalive frame); None when the server ended the
    /// stream. A keepalive that asks for a reply is answered from the status task.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            if self.status_task.is_finished() {
                return Err(self.status_error().await);
            }
            let message = read_message(&mut self.reader, &mut self.read).await?;
            match message.tag {
                b'd' => {
                    let body = message.body;
                    // Keepalive: 'k' walEnd:u64 sendTime:i64 replyRequested:u8.
                    if body.len() == 18 && body[0] == b'k' && body[17] == 1 {
                        self.reply_now.notify_one();
                    }
                    return Ok(Some(body));
                }
                // CopyDone, or CommandComplete when the server ends COPY on shutdown.
                b'c' | b'C' => return Ok(None),
                b'E' => return Err(server_error(message.body)),
                b'N' | b'S' => {}
                tag => return Err(unexpected("replication stream", tag)),
            }
        }
    }

    /// Records that everything up to `lsn` is durably delivered downstream; the next standby
    /// status update tells the server, which may then release the WAL before it. Never call this
    /// before the write that contains the changes up to `lsn` is durable.
    pub fn confirm(&self, lsn: Lsn) {
        self.confirmed.send_if_modified(|current| {
            if lsn > *current {
                *current = lsn;
                true
            } else {
                false
            }
        });
    }

    pub fn confirmed(&self) -> Lsn {
        *self.confirmed.borrow()
    }

    async fn status_error(&mut self) -> Error {
        match (&mut self.status_task).await {
            Ok(Err(error)) => error,
            Ok(Ok(())) => Error::Protocol("status updates stopped".to_owned()),
            Err(join) => Error::Protocol(format!("status task failed: {join}")),
        }
    }
}

impl Drop for ReplicationStream {
    fn drop(&mut self) {
        self.status_task.abort();
    }
}

async fn send_status_updates(
    mut writer: WriteHalf<BoxStream>,
    mut confirmed: watch::Receiver<Lsn>,
    reply_now: Arc<Notify>,
    interval: Duration,
) -> Result<(), Error> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = reply_now.notified() => {}
            changed = confirmed.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
        let lsn = *confirmed.borrow_and_update();
        // written = flushed = applied: only `flushed` moves the slot, the others are reported.
        let update = frames::standby_status_update(lsn, lsn, lsn, frames::now_pg_micros(), false);
        let mut buf = BytesMut::new();
        frontend::CopyData::new(&update[..])?.write(&mut buf);
        writer.write_all(&buf).await?;
        writer.flush().await?;
    }
}

/// Reads one backend message: tag, Int32 length (including itself), body.
async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> Result<BackendMessage, Error> {
    // Replication messages carry whole transactions' rows; 1 GB is PostgreSQL's own limit.
    const MAX_MESSAGE: usize = 1 << 30;
    loop {
        if buf.len() >= 5 {
            let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
            if len < 4 || len as usize > MAX_MESSAGE {
                return Err(Error::Protocol(format!(
                    "message {:?} has invalid length {len}",
                    buf[0] as char
                )));
            }
            let total = 1 + len as usize;
            if buf.len() >= total {
                let mut frame = buf.split_to(total);
                let tag = frame[0];
                frame.advance(5);
                return Ok(BackendMessage {
                    tag,
                    body: frame.freeze(),
                });
            }
            buf.reserve(total - buf.len());
        }
        if reader.read_buf(buf).await? == 0 {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "PostgreSQL closed the connection",
            )));
        }
    }
}

fn read_cstr(body: &mut Bytes) -> Result<String, Error> {
    let end = body
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| Error::Protocol("string without terminator".to_owned()))?;
    let text = String::from_utf8(body[..end].to_vec())
        .map_err(|_| Error::Protocol("string is not UTF-8".to_owned()))?;
    body.advance(end + 1);
    Ok(text)
}

fn server_error(mut body: Bytes) -> Error {
    let mut fields = HashMap::new();
    while body.has_remaining() && body[0] != 0 {
        let kind = body.get_u8();
        match read_cstr(&mut body) {
            Ok(value) => {
                fields.insert(kind, value);
            }
            Err(error) => return error,
        }
    }
    Error::Server {
        severity: fields.remove(&b'S').unwrap_or_else(|| "ERROR".to_owned()),
        code: fields.remove(&b'C').unwrap_or_default(),
        message: fields.remove(&b'M').unwrap_or_default(),
        detail: fields.remove(&b'D'),
        hint: fields.remove(&b'H'),
    }
}

fn unexpected(phase: &str, tag: u8) -> Error {
    Error::Protocol(format!(
        "unexpected message {:?} during {phase}",
        tag as char
    ))
}

fn parse_row_description(mut body: Bytes) -> Result<Vec<String>, Error> {
    if body.remaining() < 2 {
        return Err(Error::Protocol("short RowDescription".to_owned()));
    }
    let count = body.get_i16();
    let mut names = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        names.push(read_cstr(&mut body)?);
        // table oid, column number, type oid, type size, type modifier, format code
        if body.remaining() < 18 {
            return Err(Error::Protocol("short RowDescription field".to_owned()));
        }
        body.advance(18);
    }
    Ok(names)
}

fn parse_data_row(mut body: Bytes) -> Result<Vec<Option<String>>, Error> {
    if body.remaining() < 2 {
        return Err(Error::Protocol("short DataRow".to_owned()));
    }
    let count = body.get_i16();
    let mut values = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        if body.remaining() < 4 {
            return Err(Error::Protocol("short DataRow value".to_owned()));
        }
        let len = body.get_i32();
        if len < 0 {
            values.push(None);
            continue;
        }
        let len = len as usize;
        if body.remaining() < len {
            return Err(Error::Protocol("DataRow value past its end".to_owned()));
        }
        let value = String::from_utf8(body[..len].to_vec())
            .map_err(|_| Error::Protocol("DataRow value is not UTF-8".to_owned()))?;
        body.advance(len);
        values.push(Some(value));
    }
    Ok(values)
}

fn parse_lsn(text: &str) -> Result<Lsn, Error> {
    text.parse()
        .map_err(|e: crate::event::ParseLsnError| Error::Protocol(e.to_string()))
}
