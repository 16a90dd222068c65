"""The NEXUS client/server protocol: one encrypted query, bytes only between the parties.

    client                                              server
    tokenize, embed (it holds the embedding table)
    HELLO {model, params, n, mask, compress}   ----->
                                               <-----   SETUP {Galois elements, input level, missing keys}
    KEY x k (public key material only)         ----->   (once per client: cached by client id)
    QUERY compressed (or slot-packed) cts      ----->   decompress, encrypted forward, bootstraps
                                               <-----   RESULT cts dropped to level 0
    decrypt, unpack logits, argmax -> label

Modules:
    wire       frames (magic, version, type, JSON header, blobs, CRC-32), their limits,
               ProtocolError, blob kinds, serialized-size formulas, parameter-set names
    transport  LocalTransport (in process), TcpTransport (u64 length per frame), Ledger (bytes)
    models     ToyModel (refimpl's stand-in), NexusBert (refimpl.nexus.bert), load_model
    server     Server, ServerSession (one connection's state machine), key_levels, serve
    client     Client
Compression and input expansion (NEXUS Alg. 5) are refimpl.nexus.compression's; the command
line (`refimpl nexus serve|query|calibrate`) is refimpl.cli.nexus.

Reference: NEXUS §2 (system model), §3.1 and Alg. 5 (compression), §6 (bandwidth)
(Zhang et al., NDSS 2025).
"""

from .client import Client
from .models import CALIBRATION_SENTENCES, CALIBRATION_TOKENS, RANGES_FILE, NexusBert, ToyModel, load_model
from .server import ClientKeys, Server, ServerSession, key_levels, serve
from .transport import Ledger, LocalTransport, TcpTransport
from .wire import (
    FRAME_HEAD, MAGIC, MAX_FRAME, MAX_HEADER, SERVER_KINDS, TYPES, VERSION, ProtocolError, blob_kind,
    ciphertext_nbytes, decode_message, encode_message, json_default, public_key_nbytes, resolve_params,
    switching_key_nbytes,
)

__all__ = [
    "CALIBRATION_SENTENCES", "CALIBRATION_TOKENS", "FRAME_HEAD", "MAGIC", "MAX_FRAME", "MAX_HEADER", "RANGES_FILE",
    "SERVER_KINDS", "TYPES", "VERSION", "Client", "ClientKeys", "Ledger", "LocalTransport", "NexusBert",
    "ProtocolError", "Server", "ServerSession", "TcpTransport", "ToyModel", "blob_kind", "ciphertext_nbytes",
    "decode_message", "encode_message", "json_default", "key_levels", "load_model", "public_key_nbytes",
    "resolve_params", "serve", "switching_key_nbytes",
]
