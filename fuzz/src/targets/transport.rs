//! The broker-to-broker transport: frame decoding and peer messages.

use arbitrary::Unstructured;
use bytes::{Bytes, BytesMut};
use raft::eraftpb::{Entry, Message, MessageType};
use raft_node::group_id::GroupId;
use raft_node::peer_message::PeerMessage;
use raft_node::transport::frame::{self, FrameError, FrameHeader, HANDSHAKE_LEN, HEADER_LEN};

use super::mutate;
use crate::largest_allocation;

/// The body cap the target reads with (the broker's is larger; the fuzzer's inputs smaller).
const MAX_BODY: u32 = 1 << 16;

/// Property: a byte stream (after a 16-byte handshake) read as the inbound side does never
/// panics: the handshake and every frame header and body decode or give a typed
/// `FrameError`; a frame that decodes re-encodes to exactly its bytes; and every payload of
/// a frame goes through `PeerMessage::decode` under that target's property. The first byte
/// picks raw bytes or a valid stream of encoded peer messages, mutated.
pub fn frames(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else { return };
    let bytes = if mode % 4 == 0 { rest.to_vec() } else { valid_stream(&mut Unstructured::new(rest)) };
    let Some((handshake, mut bytes)) = bytes.split_first_chunk::<HANDSHAKE_LEN>() else { return };
    match frame::decode_handshake(*handshake) {
        Ok(node) => assert_eq!(frame::encode_handshake(node), *handshake),
        Err(e) => assert!(matches!(e, FrameError::BadMagic(_) | FrameError::UnsupportedVersion(_)), "{e}"),
    }
    while let Some((header_bytes, rest)) = bytes.split_first_chunk::<HEADER_LEN>() {
        let header = match FrameHeader::parse(*header_bytes, MAX_BODY) {
            Ok(header) => header,
            Err(e) => {
                assert!(matches!(e, FrameError::TooLarge { .. } | FrameError::TooShort(_)), "{e}");
                return;
            }
        };
        let len = header.body_len as usize;
        if rest.len() < len {
            return; // incomplete: the reader waits for more
        }
        let body = Bytes::copy_from_slice(&rest[..len]);
        let (decoded, largest) = largest_allocation(|| frame::decode_body(header, body));
        assert!(largest <= 2 * len + 64, "decoding a {len}-byte body allocated {largest} bytes at once");
        match decoded {
            Ok(payloads) => {
                let mut again = BytesMut::new();
                frame::encode_frame(&payloads, &mut again);
                assert_eq!(&again[..], &bytes[..HEADER_LEN + len], "a decoded frame re-encodes to its bytes");
                for payload in payloads {
                    peer_message(&payload);
                }
            }
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        FrameError::BadChecksum { .. }
                            | FrameError::Empty
                            | FrameError::Truncated { .. }
                            | FrameError::TrailingBytes(_)
                    ),
                    "{e}"
                );
                return; // the connection closes
            }
        }
        bytes = &rest[len..];
    }
}

/// Property: `PeerMessage::decode` of arbitrary bytes (and, with a first byte % 4 != 0, of
/// valid encoded peer messages with structured mutations) never panics and allocates at most
/// a bounded multiple of the input at once; garbage is a typed error; whatever decodes
/// re-encodes to a message that decodes to itself; an unmutated message decodes exactly.
pub fn peer_messages(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else { return };
    if mode % 4 == 0 {
        peer_message(rest);
        return;
    }
    let mut u = Unstructured::new(rest);
    let message = valid_message(&mut u);
    let mut bytes = message.encode().to_vec();
    if !mutate(&mut u, &mut bytes) {
        assert_eq!(PeerMessage::decode(&bytes).as_ref(), Ok(&message));
    }
    peer_message(&bytes);
}

/// What protobuf 2 allocates at once whatever the message: a `bytes` field reserves its
/// claimed length before reading it when that is under 10,000,000 (`READ_RAW_BYTES_MAX_ALLOC`),
/// so four bytes can make it allocate almost 10 MB; larger claims are read in chunks.
const PROTOBUF_ALLOWANCE: usize = 10_000_000 + (64 << 10);

fn peer_message(bytes: &[u8]) {
    let (decoded, largest) = largest_allocation(|| PeerMessage::decode(bytes));
    assert!(
        largest <= 4 * bytes.len() + PROTOBUF_ALLOWANCE,
        "decoding {} bytes allocated {largest} bytes at once",
        bytes.len()
    );
    if let Ok(message) = decoded {
        // From the first encoding on, a message round-trips. The first may
        // not, with equal contents: in crash-861c… the `snapshot` field
        // comes twice, protobuf 2 merges the second into the first and
        // leaves that snapshot an empty unknown-field map (`Some({})`),
        // which its derived equality tells from the `None` a fresh decode
        // has.
        let normal = PeerMessage::decode(&message.encode()).expect("an encoded peer message decodes");
        let again = normal.encode();
        assert_eq!(PeerMessage::decode(&again).as_ref(), Ok(&normal), "a decoded peer message round-trips");
    }
}

fn valid_stream(u: &mut Unstructured<'_>) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&frame::encode_handshake(u.arbitrary().unwrap_or(1)));
    for _ in 0..u.int_in_range(0..=3u8).unwrap_or(0) {
        let payloads: Vec<Bytes> =
            (0..u.int_in_range(1..=3u8).unwrap_or(1)).map(|_| valid_message(u).encode()).collect();
        frame::encode_frame(&payloads, &mut out);
    }
    let mut bytes = out.to_vec();
    mutate(u, &mut bytes);
    bytes
}

fn valid_message(u: &mut Unstructured<'_>) -> PeerMessage {
    let group = if u.ratio(1, 4).unwrap_or(false) {
        GroupId::Metadata
    } else {
        GroupId::Partition { topic: u.arbitrary().unwrap_or_default(), partition: u.arbitrary().unwrap_or(0) }
    };
    if u.ratio(1, 4).unwrap_or(false) {
        return PeerMessage::LeaderHint { group, term: u.arbitrary().unwrap_or(0), leader: u.arbitrary().unwrap_or(0) };
    }
    let mut message = Message::default();
    const TYPES: [MessageType; 6] = [
        MessageType::MsgAppend,
        MessageType::MsgAppendResponse,
        MessageType::MsgHeartbeat,
        MessageType::MsgRequestVote,
        MessageType::MsgSnapshot,
        MessageType::MsgReadIndex,
    ];
    message.set_msg_type(TYPES[u.choose_index(TYPES.len()).unwrap_or(0)]);
    message.from = u.arbitrary().unwrap_or(1);
    message.to = u.arbitrary().unwrap_or(2);
    message.term = u.arbitrary().unwrap_or(0);
    message.log_term = u.arbitrary().unwrap_or(0);
    message.index = u.arbitrary().unwrap_or(0);
    message.commit = u.arbitrary().unwrap_or(0);
    message.reject = u.arbitrary().unwrap_or(false);
    for index in 0..u.int_in_range(0..=3u64).unwrap_or(0) {
        let data: Vec<u8> = (0..u.int_in_range(0..=24usize).unwrap_or(0)).map(|_| u.arbitrary().unwrap_or(0)).collect();
        let (first, term) = (message.index.wrapping_add(index + 1), message.term);
        message.mut_entries().push(Entry { index: first, term, data: data.into(), ..Default::default() });
    }
    if message.get_msg_type() == MessageType::MsgSnapshot {
        let snapshot = message.mut_snapshot();
        snapshot.data = Bytes::from_static(b"snapshot");
        snapshot.mut_metadata().index = u.arbitrary().unwrap_or(0);
        snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    }
    PeerMessage::Raft { group, message }
}
