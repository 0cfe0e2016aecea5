"""The Python client alone: COUNT verifications of one key with verify_many
(128 in flight), over one connection."""
import sys, time
from tollgate_client import Client, VerifyRequest

socket, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Client(socket, timeout=60) as c:
    c.ping()
    t0 = time.perf_counter()
    vs = c.verify_many([VerifyRequest(key)] * count)
    s = time.perf_counter() - t0
assert all(v.allowed for v in vs), "a verification was denied"
print(f"python-client-pipelined {round(count / s)}")
