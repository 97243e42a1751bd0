//! The streaming replication frames carried inside CopyData once `START_REPLICATION` has switched
//! the connection to CopyBoth: the server's XLogData (`'w'`) and primary keepalive (`'k'`), and
//! the client's standby status update (`'r'`).
//!
//! Layouts are fixed by the "Streaming Replication Protocol" page of the PostgreSQL docs; all
//! integers are big-endian and timestamps are microseconds since 2000-01-01 00:00 UTC (the
//! "PostgreSQL epoch"). Parsing borrows from the CopyData payload so the pgoutput message inside an
//! XLogData reaches the decoder without a copy.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::event::Lsn;

/// Microseconds from 1970-01-01 to 2000-01-01 (UTC): Unix time minus this is PostgreSQL time.
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

const XLOG_DATA_TAG: u8 = b'w';
const KEEPALIVE_TAG: u8 = b'k';
const STANDBY_STATUS_UPDATE_TAG: u8 = b'r';

/// Tag, WAL start, WAL end and send time come before the payload.
const XLOG_DATA_HEADER_LEN: usize = 1 + 8 + 8 + 8;
/// Tag, WAL end, send time and the reply-requested byte.
const KEEPALIVE_LEN: usize = 1 + 8 + 8 + 1;
/// Tag, written, flushed, applied, client time and the reply-requested byte.
pub const STANDBY_STATUS_UPDATE_LEN: usize = 1 + 8 + 8 + 8 + 8 + 1;

/// One frame the server sends inside a CopyData message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    /// WAL data: here, exactly one pgoutput message in `data`.
    XLogData {
        /// Where the data starts in the WAL; 0/0 for messages without a position of their own
        /// (Relation and Type messages).
        wal_start: Lsn,
        /// The server's current end of WAL, not the end of this message.
        wal_end: Lsn,
        /// When the server sent the frame, in microseconds since the PostgreSQL epoch.
        send_time: i64,
        data: &'a [u8],
    },
    /// A primary keepalive; when `reply_requested` the client must answer with a standby status
    /// update at once or be disconnected at `wal_sender_timeout`.
    Keepalive {
        /// The last WAL position the server has sent.
        wal_end: Lsn,
        /// When the server sent the frame, in microseconds since the PostgreSQL epoch.
        send_time: i64,
        reply_requested: bool,
    },
}

/// A CopyData payload that is not a well-formed replication frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty replication frame: CopyData carried no bytes")]
    Empty,
    #[error(
        "unknown replication frame tag 0x{tag:02x}; expected 'w' (XLogData) or 'k' (keepalive)"
    )]
    UnknownTag { tag: u8 },
    #[error("XLogData frame truncated: {len} bytes, the header alone needs {XLOG_DATA_HEADER_LEN}")]
    XLogDataTooShort { len: usize },
    #[error("keepalive frame has {len} bytes; it must have exactly {KEEPALIVE_LEN}")]
    KeepaliveLength { len: usize },
    #[error("keepalive frame has reply-requested byte {value}; it must be 0 or 1")]
    InvalidReplyRequested { value: u8 },
}

/// Parses one CopyData payload from a replication connection.
pub fn parse_server_frame(buf: &[u8]) -> Result<ServerFrame<'_>, FrameError> {
    let (&tag, body) = buf.split_first().ok_or(FrameError::Empty)?;
    match tag {
        XLOG_DATA_TAG => {
            let too_short = || FrameError::XLogDataTooShort { len: buf.len() };
            let (wal_start, rest) = body.split_first_chunk::<8>().ok_or_else(too_short)?;
            let (wal_end, rest) = rest.split_first_chunk::<8>().ok_or_else(too_short)?;
            let (send_time, data) = rest.split_first_chunk::<8>().ok_or_else(too_short)?;
            Ok(ServerFrame::XLogData {
                wal_start: Lsn(u64::from_be_bytes(*wal_start)),
                wal_end: Lsn(u64::from_be_bytes(*wal_end)),
                send_time: i64::from_be_bytes(*send_time),
                data,
            })
        }
        KEEPALIVE_TAG => {
            let wrong_length = || FrameError::KeepaliveLength { len: buf.len() };
            if buf.len() != KEEPALIVE_LEN {
                return Err(wrong_length());
            }
            let (wal_end, rest) = body.split_first_chunk::<8>().ok_or_else(wrong_length)?;
            let (send_time, rest) = rest.split_first_chunk::<8>().ok_or_else(wrong_length)?;
            let reply_requested = match rest {
                [0] => false,
                [1] => true,
                [value] => return Err(FrameError::InvalidReplyRequested { value: *value }),
                _ => return Err(wrong_length()),
            };
            Ok(ServerFrame::Keepalive {
                wal_end: Lsn(u64::from_be_bytes(*wal_end)),
                send_time: i64::from_be_bytes(*send_time),
                reply_requested,
            })
        }
        tag => Err(FrameError::UnknownTag { tag }),
    }
}

/// The standby status update (`'r'`) to send inside CopyData. Only `flushed` advances the slot's
/// `confirmed_flush_lsn`; `client_time` is microseconds since the PostgreSQL epoch (see
/// [`now_pg_micros`]); `reply_requested` asks the server to answer with a keepalive at once.
pub fn standby_status_update(
    written: Lsn,
    flushed: Lsn,
    applied: Lsn,
    client_time: i64,
    reply_requested: bool,
) -> [u8; STANDBY_STATUS_UPDATE_LEN] {
    let mut frame = [0u8; STANDBY_STATUS_UPDATE_LEN];
    frame[0] = STANDBY_STATUS_UPDATE_TAG;
    frame[1..9].copy_from_slice(&written.0.to_be_bytes());
    frame[9..17].copy_from_slice(&flushed.0.to_be_bytes());
    frame[17..25].copy_from_slice(&applied.0.to_be_bytes());
    frame[25..33].copy_from_slice(&client_time.to_be_bytes());
    frame[33] = u8::from(reply_requested);
    frame
}

/// Converts a PostgreSQL wire timestamp to microseconds since the Unix epoch (saturating at the
/// ends of `i64`, which PostgreSQL's `infinity` timestamps use).
pub fn pg_epoch_micros_to_unix_micros(pg_micros: i64) -> i64 {
    pg_micros.saturating_add(PG_EPOCH_OFFSET_MICROS)
}

/// Converts microseconds since the Unix epoch to a PostgreSQL wire timestamp (saturating).
pub fn unix_micros_to_pg_epoch_micros(unix_micros: i64) -> i64 {
    unix_micros.saturating_sub(PG_EPOCH_OFFSET_MICROS)
}

/// The current time as a PostgreSQL wire timestamp, for the standby status update.
pub fn now_pg_micros() -> i64 {
    let unix_micros = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
        // A clock set before 1970: still report it rather than fail a keepalive reply.
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    };
    unix_micros_to_pg_epoch_micros(unix_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xlog_data(start: u64, end: u64, time: i64, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![b'w'];
        frame.extend_from_slice(&start.to_be_bytes());
        frame.extend_from_slice(&end.to_be_bytes());
        frame.extend_from_slice(&time.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn parses_xlog_data_and_borrows_its_payload() {
        let frame = xlog_data(0x16_B374_D848, 0x16_B374_D900, 744_000_000_000_123, b"B123");
        let parsed = parse_server_frame(&frame).expect("valid XLogData");
        assert_eq!(
            parsed,
            ServerFrame::XLogData {
                wal_start: Lsn(0x16_B374_D848),
                wal_end: Lsn(0x16_B374_D900),
                send_time: 744_000_000_000_123,
                data: b"B123",
            }
        );
    }

    #[test]
    fn xlog_data_may_carry_an_empty_payload_but_not_a_short_header() {
        let frame = xlog_data(1, 2, 3, b"");
        assert!(matches!(
            parse_server_frame(&frame),
            Ok(ServerFrame::XLogData { data: [], .. })
        ));
        for len in 1..XLOG_DATA_HEADER_LEN {
            assert_eq!(
                parse_server_frame(&frame[..len]),
                Err(FrameError::XLogDataTooShort { len })
            );
        }
    }

    #[test]
    fn parses_keepalive_literal_bytes() {
        let frame = [
            b'k', 0, 0, 0, 0x16, 0xB3, 0x74, 0xD8, 0x48, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 1,
        ];
        assert_eq!(
            parse_server_frame(&frame),
            Ok(ServerFrame::Keepalive {
                wal_end: Lsn(0x16_B374_D848),
                send_time: 256,
                reply_requested: true,
            })
        );
        let mut no_reply = frame;
        no_reply[17] = 0;
        assert!(matches!(
            parse_server_frame(&no_reply),
            Ok(ServerFrame::Keepalive {
                reply_requested: false,
                ..
            })
        ));
        let mut bad_flag = frame;
        bad_flag[17] = 2;
        assert_eq!(
            parse_server_frame(&bad_flag),
            Err(FrameError::InvalidReplyRequested { value: 2 })
        );
    }

    #[test]
    fn keepalive_must_have_exactly_eighteen_bytes() {
        let mut frame = vec![b'k'];
        frame.extend_from_slice(&[0; 17]);
        assert!(parse_server_frame(&frame).is_ok());
        for len in 1..KEEPALIVE_LEN {
            assert_eq!(
                parse_server_frame(&frame[..len]),
                Err(FrameError::KeepaliveLength { len })
            );
        }
        frame.push(0);
        assert_eq!(
            parse_server_frame(&frame),
            Err(FrameError::KeepaliveLength { len: 19 })
        );
    }

    #[test]
    fn rejects_empty_and_unknown_frames() {
        assert_eq!(parse_server_frame(&[]), Err(FrameError::Empty));
        assert_eq!(
            parse_server_frame(b"r0000"),
            Err(FrameError::UnknownTag { tag: b'r' })
        );
        let message = FrameError::UnknownTag { tag: b'r' }.to_string();
        assert!(message.contains("0x72"), "{message}");
    }

    #[test]
    fn standby_status_update_layout() {
        let frame = standby_status_update(
            Lsn(0x0102_0304_0506_0708),
            Lsn(0x1112_1314_1516_1718),
            Lsn(0x2122_2324_2526_2728),
            -2,
            true,
        );
        let expected: [u8; 34] = [
            b'r', 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x21,
            0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            0xFE, 1,
        ];
        assert_eq!(frame, expected);
        let quiet = standby_status_update(Lsn::ZERO, Lsn::ZERO, Lsn::ZERO, 0, false);
        assert_eq!(quiet[0], b'r');
        assert_eq!(quiet[33], 0);
    }

    #[test]
    fn converts_between_epochs() {
        // 2000-01-01 00:00:00 UTC is zero on the wire and 946684800 s in Unix time.
        assert_eq!(pg_epoch_micros_to_unix_micros(0), 946_684_800_000_000);
        assert_eq!(unix_micros_to_pg_epoch_micros(946_684_800_000_000), 0);
        // 1970-01-01 is before the PostgreSQL epoch.
        assert_eq!(unix_micros_to_pg_epoch_micros(0), -946_684_800_000_000);
        // PostgreSQL's +-infinity timestamps saturate instead of overflowing.
        assert_eq!(pg_epoch_micros_to_unix_micros(i64::MAX), i64::MAX);
        assert_eq!(unix_micros_to_pg_epoch_micros(i64::MIN), i64::MIN);
        for micros in [-1, 1, 812_345_678_901_234] {
            assert_eq!(
                unix_micros_to_pg_epoch_micros(pg_epoch_micros_to_unix_micros(micros)),
                micros
            );
        }
    }

    #[test]
    fn now_is_after_2024_on_the_pg_clock() {
        // 2024-01-01 00:00:00 UTC = Unix 1704067200 s.
        let jan_2024 = unix_micros_to_pg_epoch_micros(1_704_067_200_000_000);
        let now = now_pg_micros();
        assert!(now > jan_2024, "now_pg_micros() = {now}");
        let unix_now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970")
                .as_micros(),
        )
        .expect("fits");
        assert!((pg_epoch_micros_to_unix_micros(now) - unix_now).abs() < 60_000_000);
    }
}
