//! Kafka's framing: every request and response is an int32 byte count, then that many bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Kafka's `socket.request.max.bytes` default.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Buffer growth per read: memory follows the bytes that arrived, not the length a peer claims.
const READ_CHUNK: usize = 64 * 1024;

const LENGTH_BYTES: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("negative frame length {0}")]
    Negative(i32),
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
}

/// Splits a byte stream into frames; reading is cancel-safe (bytes read are never lost).
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max_frame_bytes: usize,
}

impl FrameReader {
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameReader { buf: BytesMut::new(), max_frame_bytes }
    }

    /// The next whole frame's payload, if it has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some(len) = self.declared_len()? else {
            return Ok(None);
        };
        if self.buf.len() < LENGTH_BYTES + len {
            return Ok(None);
        }
        self.buf.advance(LENGTH_BYTES);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Reads what the stream has; `Ok(0)` at its end.
    pub async fn read_from<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> std::io::Result<usize> {
        let wanted = match self.declared_len() {
            Ok(Some(len)) => (LENGTH_BYTES + len).saturating_sub(self.buf.len()),
            _ => LENGTH_BYTES,
        };
        self.buf.reserve(wanted.clamp(LENGTH_BYTES, READ_CHUNK));
        reader.read_buf(&mut self.buf).await
    }

    /// The length the buffered frame declares, checked before anything is allocated for it.
    fn declared_len(&self) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = self.buf.get(..LENGTH_BYTES) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let len = usize::try_from(len).map_err(|_| FrameError::Negative(len))?;
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge { len, max: self.max_frame_bytes });
        }
        Ok(Some(len))
    }
}

/// A buffer for one outgoing frame, its length still to be filled in by [`finish`].
pub(crate) fn start() -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    buf
}

/// Fills in the length of a frame begun with [`start`].
pub(crate) fn finish(mut buf: BytesMut) -> Result<Bytes, FrameError> {
    let len = buf.len() - LENGTH_BYTES;
    let declared = i32::try_from(len).map_err(|_| FrameError::TooLarge { len, max: i32::MAX as usize })?;
    buf[..LENGTH_BYTES].copy_from_slice(&declared.to_be_bytes());
    Ok(buf.freeze())
}
