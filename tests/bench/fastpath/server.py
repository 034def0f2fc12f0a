"""The resident server prototype (tests/bench/fastpath.py): one object path
per connection, answered 0 (no site can be there) or 1 (undecided), with
its own CPU per request kept for the bench's `stats` request."""
import os, socket, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../.."))
from pvpass.link.elfobj import ElfObject
from pvpass.link.tablecheck import call_candidates
path = sys.argv[1]
try: os.unlink(path)
except OSError: pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(path); s.listen(64)
cpu = 0.0; n = 0
while True:
    c, _ = s.accept()
    t0 = time.process_time()
    req = c.recv(4096).decode()
    if req == "stats":
        c.sendall(f"{cpu} {n}".encode()); c.close(); continue
    o = ElfObject.read(req)
    v = b"1" if o.section(".parainstructions") is not None or call_candidates(o) else b"0"
    c.sendall(v); c.close()
    cpu += time.process_time() - t0; n += 1
