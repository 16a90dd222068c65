"""The NEXUS client/server protocol: one encrypted query, bytes only between the parties.

    client                                              server
    tokenize, embed (it holds the embedding table)
    HELLO {model, params, n, mask, compress,
           output, client secret}              ----->   client id = hash of the secret
                                               <-----   SETUP {Galois elements, input level, missing keys, nonce}
    KEY x k (public key material only)         ----->   (once per client: cached by client id)
    QUERY compressed (or slot-packed) cts      ----->   decompress, encrypted forward, bootstraps, Argmax
                                               <-----   RESULT cts dropped to level 0
    decrypt the Argmax selection vector -> label (the logits only with reveal_logits)
    every client frame after the first SETUP carries an HMAC-SHA256 tag; TCP runs over TLS 1.3

Modules:
    wire       frames (magic, version, type, JSON header, blobs, CRC-32), their limits,
               ProtocolError, blob kinds, serialized-size formulas, parameter-set names,
               client ids and frame tags (ours)
    transport  LocalTransport (in process), TcpTransport (u64 length per frame, timeouts), Ledger (bytes)
    tls        the server certificate (`refimpl nexus keys`) and TLS 1.3 contexts (ours)
    models     ToyModel (refimpl's stand-in), NexusBert (refimpl.nexus.bert), load_model
    server     Server, ServerSession (one connection's state machine), key_levels
    keycache   ClientKeys, KeyCache (a client's keys; LRU by bytes in memory, ours)
    listener   serve: TCP/TLS connections, one thread each, timeouts, progress frames (ours)
    client     Client
Compression and input expansion (NEXUS Alg. 5) are refimpl.nexus.compression's; the command
line (`refimpl nexus keys|serve|query|calibrate`) is refimpl.cli.nexus. The threat model:
docs/threat-model.md; malformed inputs: docs/robustness.md.

Reference: NEXUS §2 (system model), §3.1 and Alg. 5 (compression), §6 (bandwidth)
(Zhang et al., NDSS 2025).
"""

from .client import Client
from .models import CALIBRATION_SENTENCES, CALIBRATION_TOKENS, RANGES_FILE, NexusBert, ToyModel, load_model
from .keycache import ClientKeys, KeyCache
from .listener import serve
from .server import Server, ServerSession, key_levels
from .transport import Ledger, LocalTransport, TcpTransport
from .wire import (
    FRAME_HEAD, MAGIC, MAX_FRAME, MAX_HEADER, SERVER_KINDS, TYPES, VERSION, AuthenticationError, ProtocolError,
    blob_kind, ciphertext_nbytes, client_id_of, decode_message, encode_message, frame_limit, header_limit,
    json_default, public_key_nbytes, resolve_params, seal, session_key, switching_key_nbytes, unseal,
)

__all__ = [
    "CALIBRATION_SENTENCES", "CALIBRATION_TOKENS", "FRAME_HEAD", "MAGIC", "MAX_FRAME", "MAX_HEADER", "RANGES_FILE",
    "SERVER_KINDS", "TYPES", "VERSION", "AuthenticationError", "Client", "ClientKeys", "KeyCache", "Ledger",
    "LocalTransport", "NexusBert", "ProtocolError", "Server", "ServerSession", "TcpTransport", "ToyModel", "blob_kind",
    "ciphertext_nbytes", "client_id_of", "decode_message", "encode_message", "frame_limit", "header_limit",
    "json_default", "key_levels", "load_model", "public_key_nbytes", "resolve_params", "seal", "serve",
    "session_key", "switching_key_nbytes", "unseal",
]
