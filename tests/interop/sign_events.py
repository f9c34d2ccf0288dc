"""An independent signer, written from the contract (section 7) alone, with
the Python `cryptography` package: no jointops code.

  sign_events.py vector
      prints the section 8 vector as this signer computes it:
      public key hex, signed bytes hex, signature hex (one a line)
  sign_events.py sign SEED_HEX KEY_ID IN OUT
      IN has "record key<TAB>value hex" lines; OUT gets
      "record key<TAB>value hex<TAB>key id<TAB>signature hex" lines; prints
      the public key as the hub's keyring takes it (standard base64)
"""

import base64
import struct
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def signed_bytes(key: bytes, value: bytes) -> bytes:
    # "jointops-sig-v1", a zero byte, the key's length (4 bytes big-endian),
    # the key, the value exactly as on the wire.
    return b"jointops-sig-v1" + b"\x00" + struct.pack(">I", len(key)) + key + value


def public_raw(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def vector() -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    key = b"CLIW-2023-10/MPS/MPS-AR-0001"
    value = bytes.fromhex("c301ef9df2252ebbaba402")
    print(public_raw(private).hex())
    print(signed_bytes(key, value).hex())
    print(private.sign(signed_bytes(key, value)).hex())


def sign(seed_hex: str, key_id: str, src: str, dst: str) -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex))
    with open(src) as f, open(dst, "w") as out:
        for line in f.read().splitlines():
            key, value_hex = line.split("\t")
            sig = private.sign(signed_bytes(key.encode("utf-8"), bytes.fromhex(value_hex)))
            out.write(f"{key}\t{value_hex}\t{key_id}\t{sig.hex()}\n")
    print(base64.standard_b64encode(public_raw(private)).decode("ascii"))


if __name__ == "__main__":
    if sys.argv[1] == "vector":
        vector()
    else:
        sign(*sys.argv[2:6])
