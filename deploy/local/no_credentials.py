"""Shows that the secure broker refuses a client without credentials.

usage: no_credentials.py HOST:PORT CA_PEM

Connects with TLS (trusting the local CA, so the refusal is not a
certificate error) and asks for metadata without logging in: a SASL_SSL
listener answers nothing but a SASL handshake, and closes the connection.
Exits 1 if the broker answers the request.
"""
import socket
import ssl
import struct
import sys

host, port = sys.argv[1].rsplit(":", 1)
context = ssl.create_default_context(cafile=sys.argv[2])
context.check_hostname = False
client_id = b"no-credentials"
# Metadata v0, all topics: api key 3, version 0, correlation id 1.
request = struct.pack(">hhih", 3, 0, 1, len(client_id)) + client_id + struct.pack(">i", 0)
with socket.create_connection((host, int(port)), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(struct.pack(">i", len(request)) + request)
        try:
            answer = tls.recv(4)
        except (ConnectionError, ssl.SSLError):
            answer = b""
if answer:
    print(f"    {sys.argv[1]} ANSWERED a client without credentials", file=sys.stderr)
    sys.exit(1)
print(f"    A client without credentials asked {sys.argv[1]} for metadata over TLS: the broker closed the connection unanswered.")
