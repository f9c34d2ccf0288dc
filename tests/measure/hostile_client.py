#!/usr/bin/env python3
"""Measures, against a `jointops serve` started from BINARY with a fresh
config, how long a revoked token's live stream goes on, how long a half-sent
request's connection stays open, and how long SIGTERM takes with a stream
open. Waits at most LIMIT seconds for each.

    python3 tests/measure/hostile_client.py target/debug/jointops 30
"""
import os, socket, subprocess, sys, tempfile, time, http.client

binary, limit = sys.argv[1], float(sys.argv[2])
d = tempfile.mkdtemp()
port = 18000 + os.getpid() % 1000
cfg = os.path.join(d, "hub.toml")
open(cfg, "w").write(f'[kafka]\n[store]\npath = "hub.sqlite"\n[api]\nlisten = "127.0.0.1:{port}"\n'
    '[[operations]]\nid = "OP-1"\nstarts = "2023-10-09T00:00:00Z"\nends = "2023-10-16T00:00:00Z"\n')
issued = subprocess.run([binary, "token", "issue", "--role", "coordinator", "--config", cfg], capture_output=True, text=True, check=True)
token = issued.stdout.strip()
token_id = issued.stderr.split()[1]
serve = subprocess.Popen([binary, "serve", "--config", cfg], stderr=subprocess.DEVNULL)
try:
    deadline = time.time() + 30
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1); c.request("GET", "/readyz"); c.getresponse().read(); break
        except OSError:
            assert time.time() < deadline, "serve never ready"; time.sleep(0.05)
    # 1. A live stream, then its token revoked.
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET /api/v1/operations/OP-1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    first = s.recv(65536)
    assert b"200 OK" in first and b"event: totals" in first or b"200" in first, first
    subprocess.run([binary, "token", "revoke", "--config", cfg, token_id], check=True, capture_output=True)
    t0 = time.time(); s.settimeout(0.2); seen = first
    while time.time() - t0 < limit:
        try:
            got = s.recv(65536)
            seen += got
            # The stream's end: the last chunk of the body, or a closed connection.
            if got == b"" or seen.endswith(b"\r\n0\r\n\r\n"): break
        except socket.timeout:
            pass
    dt = time.time() - t0
    print(f"revoked stream: {'ended %.2f s after the revocation' % dt if dt < limit else 'still streaming %.0f s after the revocation' % limit}")
    # 2. A request whose headers never end.
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /api/v1/operations HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    t0 = time.time(); s.settimeout(0.2)
    while time.time() - t0 < limit:
        try:
            if s.recv(65536) == b"": break
        except socket.timeout:
            pass
        except ConnectionResetError:
            break
    dt = time.time() - t0
    print(f"slow-header connection: {'closed after %.2f s' % dt if dt < limit else 'still open after %.0f s' % limit}")
    # 3. SIGTERM with a live stream open.
    s = socket.create_connection(("127.0.0.1", port))
    issued = subprocess.run([binary, "token", "issue", "--role", "coordinator", "--config", cfg], capture_output=True, text=True, check=True)
    s.sendall(f"GET /api/v1/operations/OP-1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {issued.stdout.strip()}\r\n\r\n".encode())
    s.recv(65536)
    t0 = time.time(); serve.terminate()
    try:
        serve.wait(timeout=limit); print(f"SIGTERM with a stream open: exited after {time.time() - t0:.2f} s")
    except subprocess.TimeoutExpired:
        print(f"SIGTERM with a stream open: still running after {limit:.0f} s")
finally:
    serve.kill(); serve.wait()
