// One benchmark HTTP server on node:http, guarded by either
//   tollgate:    the tollgate-client middleware over the daemon's socket
//                (one connection, every request's verification pipelined), or
//   better-auth: better-auth's api-key plugin (memory adapter, the key's rate
//                limit off), one auth.api.verifyApiKey per request.
// Both answer 200 "ok" to an allowed request and 401 otherwise; the key is
// read from X-API-Key.
//
//   node server.mjs tollgate PORT SOCKET
//   node server.mjs better-auth PORT      (prints the key it made, then serves)
import http from 'node:http';
import { createRequire } from 'node:module';

const [mode, port, socket] = process.argv.slice(2);
const ok = (res) => {
  res.statusCode = 200;
  res.end('ok');
};

let handler;
if (mode === 'tollgate') {
  const { Client, tollgate } = createRequire(import.meta.url)('../index.js');
  const client = new Client(socket, { timeoutMs: 5000 });
  const mw = tollgate(client, {});
  handler = (req, res) =>
    mw(req, res, (err) => {
      if (err) {
        res.statusCode = 500;
        return res.end();
      }
      ok(res);
    });
} else if (mode === 'better-auth') {
  const { betterAuth } = await import('better-auth');
  const { apiKey } = await import('better-auth/plugins');
  const { memoryAdapter } = await import('better-auth/adapters/memory');
  const db = { user: [], session: [], account: [], verification: [], apikey: [] };
  const auth = betterAuth({
    database: memoryAdapter(db),
    secret: 'bench-secret-bench-secret-bench-secret-0123',
    baseURL: `http://127.0.0.1:${port}`,
    emailAndPassword: { enabled: true },
    plugins: [apiKey({ rateLimit: { enabled: false } })],
    logger: { disabled: true },
  });
  const { user } = await auth.api.signUpEmail({ body: { email: 'bench@example.com', password: 'correct horse battery', name: 'bench' } });
  const key = await auth.api.createApiKey({ body: { userId: user.id, name: 'bench', rateLimitEnabled: false } });
  process.stdout.write(`${key.key}\n`);
  handler = (req, res) => {
    const k = req.headers['x-api-key'];
    auth.api.verifyApiKey({ body: { key: String(k ?? '') } }).then(
      (r) => {
        if (r.valid) return ok(res);
        res.statusCode = 401;
        res.end();
      },
      () => {
        res.statusCode = 500;
        res.end();
      },
    );
  };
} else {
  console.error('usage: node server.mjs tollgate PORT SOCKET | better-auth PORT');
  process.exit(2);
}
http.createServer(handler).listen(Number(port), '127.0.0.1', () => process.stderr.write(`${mode} listening on ${port}\n`));
