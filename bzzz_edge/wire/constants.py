"""Protocol constants of the bzzz-edge wire layer: secure channel, framing, envelopes. No I/O.

These are protocol facts, not tunables: changing one makes a node incompatible with the rest of
its network. Tunables (frame size limit actually used, replay window) live in the config and are
passed in; the defaults here are what the config starts from. The transport's fixed policy
(strikes and bans, handshake throttling, pacing, dial-book caps) is at the end.
"""

from __future__ import annotations

from typing import Final

# --- Secure channel (Noise) -------------------------------------------------------------------

#: The Noise protocol name. psk0 rather than psk3: the network key gates the very first message,
#: so a node without it learns nothing about the responder (see bzzz_edge/wire/noise.py).
NOISE_PROTOCOL_NAME: Final = b"Noise_XXpsk0_25519_ChaChaPoly_BLAKE2b"

#: Bound into the handshake hash by both sides; a different protocol version fails the handshake.
NOISE_PROLOGUE: Final = b"bzzz-edge/1"

#: Length of the network key, which is the Noise PSK.
NOISE_PSK_LEN: Final = 32

#: X25519 public key length (Noise DHLEN).
NOISE_DH_LEN: Final = 32

#: ChaCha20-Poly1305 authentication tag length.
NOISE_TAG_LEN: Final = 16

#: Largest Noise message (spec section 3), and so the largest value of the 2-byte length prefix.
NOISE_MAX_MESSAGE_LEN: Final = 65535

#: Largest plaintext that fits in one Noise transport message.
NOISE_MAX_PLAINTEXT_LEN: Final = NOISE_MAX_MESSAGE_LEN - NOISE_TAG_LEN

#: Each Noise message on the TCP stream is prefixed by its length, big-endian (libp2p-noise style).
NOISE_LENGTH_PREFIX_LEN: Final = 2

#: Nonce value that must never be used (Noise spec 5.1); sessions end before reaching it.
NOISE_MAX_NONCE: Final = 2**64 - 1

#: Ed25519 sizes.
ED25519_PUBLIC_KEY_LEN: Final = 32
ED25519_SIGNATURE_LEN: Final = 64

#: Node IDs are SHA-256 of the raw Ed25519 public key.
NODE_ID_LEN: Final = 32

#: Domain separation for the identity signature in handshake messages 2 and 3: the Ed25519
#: identity key signs this prefix followed by the sender's 32-byte X25519 static public key.
HANDSHAKE_IDENTITY_DOMAIN: Final = b"bzzz-edge/1 noise static key\x00"

#: Handshake payload carrying identity: Ed25519 public key || signature.
HANDSHAKE_IDENTITY_PAYLOAD_LEN: Final = ED25519_PUBLIC_KEY_LEN + ED25519_SIGNATURE_LEN

#: Exact sizes of the three handshake messages (without the 2-byte length prefix).
#: 1: e || tag of the empty payload (psk0 makes even the empty payload authenticated).
#: 2: e || enc(s) || enc(identity payload).  3: enc(s) || enc(identity payload).
HANDSHAKE_MSG1_LEN: Final = NOISE_DH_LEN + NOISE_TAG_LEN
HANDSHAKE_MSG2_LEN: Final = (
    NOISE_DH_LEN + NOISE_DH_LEN + NOISE_TAG_LEN + HANDSHAKE_IDENTITY_PAYLOAD_LEN + NOISE_TAG_LEN
)
HANDSHAKE_MSG3_LEN: Final = (
    NOISE_DH_LEN + NOISE_TAG_LEN + HANDSHAKE_IDENTITY_PAYLOAD_LEN + NOISE_TAG_LEN
)

# --- Application framing ----------------------------------------------------------------------

#: Application frames carry a 4-byte big-endian length prefix.
FRAME_HEADER_LEN: Final = 4

#: Default hard maximum of one application frame's payload (1 MiB).
DEFAULT_MAX_FRAME_SIZE: Final = 1_048_576

#: The prefix cannot express more than this.
FRAME_SIZE_LIMIT: Final = 2**32 - 1

# --- Envelopes --------------------------------------------------------------------------------

#: Envelope type of a relayed, origin-signed gossip message; it has a fixed layout.
GOSSIP_TYPE: Final = "gossip"
GOSSIP_VERSION: Final = 1

#: Domain separation for gossip signatures: Ed25519 signs this prefix followed by the canonical
#: msgpack encoding of [network_id, origin, seq, timestamp_ms, topic, body].
GOSSIP_SIGNATURE_DOMAIN: Final = b"bzzz-edge/gossip/v1\x00"

#: Message IDs are BLAKE2b(origin || seq as u64 big-endian) truncated to this many bytes.
MESSAGE_ID_LEN: Final = 16

#: Upper bounds checked on decode, so that garbage is refused early and with a clear reason.
MAX_TYPE_NAME_LEN: Final = 64
MAX_TYPE_VERSION: Final = 2**32 - 1
MAX_TOPIC_LEN: Final = 256
MAX_NETWORK_ID_LEN: Final = 64
MAX_SEQ: Final = 2**64 - 1
#: A gossip message's hop count (relays passed, outside the signature) fits one byte.
MAX_HOPS: Final = 255
MAX_TIMESTAMP_MS: Final = 2**63 - 1

#: Default replay window for gossip timestamps, either side of the receiver's clock.
DEFAULT_REPLAY_WINDOW_MS: Final = 60_000

# --- Transport policy (net/) ------------------------------------------------------------------
# Not wire-compatibility facts but fixed policy, kept here so each number lives in one place.

#: Strikes that ban an identity (``net._guard``); an IP is banned at IP_STRIKES_FACTOR times
#: as many, collected by all its identities.
MAX_STRIKES: Final = 10
IP_STRIKES_FACTOR: Final = 2
#: How long a strike counts, in seconds; a ban long past is forgotten after as long.
STRIKE_TTL: Final = 600.0
#: A first ban's length, doubled with each ban up to BAN_MAX (seconds).
BAN_INITIAL: Final = 1.0
BAN_MAX: Final = 300.0
#: Failed handshakes from one IP within HANDSHAKE_FAILURE_WINDOW seconds that throttle it: its
#: new connections are closed before any crypto for HANDSHAKE_THROTTLE seconds (doubling while
#: it goes on, up to BAN_MAX).
HANDSHAKE_FAILURES: Final = 20
HANDSHAKE_FAILURE_WINDOW: Final = 10.0
HANDSHAKE_THROTTLE: Final = 5.0
#: Identities and IPs the guard remembers, at most (per table).
GUARD_MAX_TRACKED: Final = 4096

#: Pacing: a peer may send bursts of this many times its per-second frame budget
#: (``network`` limits' ``max_frames_per_second``) before we stop reading from it a while.
PACING_BURST_FACTOR: Final = 2
#: Messages handled from one read before the connection's reader gives other tasks a turn.
#: Small, because a turn of every flooding peer's reader comes between two turns of an honest
#: peer's reader, of a connection's writer and of the membership timers: with eight insiders
#: flooding at once (a message costs up to ~150 us to check), slices of 32 made rounds of
#: ~40 ms, longer than a probe timeout on a LAN (the honest node suspected the victim in every
#: run) and let each writer drain a quarter of what was relayed; slices of 8 left no suspicion.
EVENTS_PER_TURN: Final = 8
#: Requests refused (busy, unknown method), in multiples of ``max_inflight_requests``, that
#: make a connection a protocol error.
REQUEST_FLOOD_FACTOR: Final = 16
#: Bytes asked of the socket per read while data streams in (the last read filled its size).
RECEIVE_SIZE: Final = 256 * 1024
#: Bytes asked of the socket per read otherwise: most reads bring one small frame. A read
#: allocates what it asks for, and glibc serves 256 KiB with mmap: each read of one frame was an
#: mmap, a page fault, an mremap (the shrink to what came) and an munmap (strace: three system
#: calls a message received); 64 KiB comes from the heap, below the mmap threshold.
RECEIVE_SIZE_SMALL: Final = 64 * 1024
#: Characters of a peer's RPC method name shown in logs and error answers.
SHOWN_METHOD_LEN: Final = 64

#: Dial book (``net._dialing``): mDNS answers come from anyone on the LAN segment, and a home
#: network rarely has more nodes than this.
DIAL_MDNS_MAX: Final = 64
#: Members known only from others' news, dialled at once: a few at a time is enough to meet
#: new members (each moves to the membership source once it answers), and a peer gossiping a
#: thousand made-up members gets no more than this many addresses dialled.
DIAL_RUMOUR_MAX: Final = 8
#: Addresses one host may announce over mDNS (a host runs one node, a test box a few): a single
#: machine announcing a thousand services gets this many dialled, not a thousand.
DIAL_MDNS_PER_HOST: Final = 4
