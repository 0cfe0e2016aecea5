// The Node client alone: COUNT verifications of one key, all issued at once
// (the client keeps 1024 in flight), over one connection.
import { createRequire } from 'node:module';
const { Client } = createRequire(import.meta.url)('../index.js');
const [socket, key, count] = process.argv.slice(2);
const c = new Client(socket, { timeoutMs: 60000 });
await c.ping();
const n = Number(count);
const t0 = process.hrtime.bigint();
const vs = await Promise.all(Array.from({ length: n }, () => c.verify(key)));
const s = Number(process.hrtime.bigint() - t0) / 1e9;
if (!vs.every((v) => v.allowed)) throw new Error('a verification was denied');
console.log(`node-client-pipelined ${Math.round(n / s)}`);
await c.close();
