'use strict';
// The client and the middleware against the real daemon. tests/it/node_client.rs
// starts the daemons and sets TOLLGATE_* (credentials made for the test);
// without them every test here fails, it does not skip.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Client, tollgate, HandshakeRejected } = require('..');

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests with \`cargo test --test node_client\``);
  return v;
}

const socket = () => env('TOLLGATE_SOCKET');

test('an allow carries who the credential acts for', async () => {
  const c = new Client(socket());
  const v = await c.verify(env('TOLLGATE_TEST_KEY'), { permissions: { documents: ['read'] }, ip: '203.0.113.9' });
  assert.equal(v.allowed, true);
  assert.equal(v.kind, 'api_key');
  assert.equal(v.subject, env('TOLLGATE_TEST_USER'));
  assert.equal(v.teamId, env('TOLLGATE_TEST_TEAM'));
  assert.equal(v.credentialId, env('TOLLGATE_TEST_KEY_ID'));
  assert.deepEqual(v.roles, ['Administrator']);
  assert.deepEqual(v.permissions, { documents: ['read', 'write'] });
  const token = await c.verify(env('TOLLGATE_TEST_TOKEN'));
  assert.equal(token.kind, 'access_token');
  const jwt = await c.verify(env('TOLLGATE_TEST_JWT'));
  assert.equal(jwt.kind, 'jwt');
  assert.equal(jwt.subject, env('TOLLGATE_TEST_USER'));
  await c.close();
});

test('each deny code the fixtures can produce', async () => {
  const c = new Client(socket());
  const code = async (cred, opts) => (await c.verify(cred, opts)).code;
  assert.equal(await code('not a key'), 'MALFORMED');
  assert.equal(await code(env('TOLLGATE_TEST_DELETED_KEY')), 'NOT_FOUND');
  assert.equal(await code(env('TOLLGATE_TEST_DISABLED_KEY')), 'DISABLED');
  assert.equal(await code(env('TOLLGATE_TEST_EXPIRED_KEY')), 'EXPIRED');
  assert.equal(await code(env('TOLLGATE_TEST_REVOKED_TOKEN')), 'REVOKED');
  assert.equal(await code(env('TOLLGATE_TEST_KEY'), { permissions: [['documents', 'delete']] }), 'INSUFFICIENT_PERMISSIONS');
  const ipKey = env('TOLLGATE_TEST_IP_KEY');
  assert.equal(await code(ipKey, { ip: '192.0.2.1' }), 'IP_NOT_ALLOWED');
  assert.equal(await code(ipKey), 'IP_NOT_ALLOWED');
  assert.equal((await c.verify(ipKey, { ip: '10.1.2.3' })).allowed, true);
  assert.equal((await c.verify(ipKey, { ip: '::ffff:10.1.2.3' })).allowed, true);
  assert.equal((await c.verify(ipKey, { ip: '2001:db8::7' })).allowed, true);
  const rate = env('TOLLGATE_TEST_RATE_KEY');
  for (let i = 0; i < 3; i++) assert.equal((await c.verify(rate)).allowed, true);
  const limited = await c.verify(rate);
  assert.equal(limited.code, 'RATE_LIMITED');
  assert.ok(limited.retryAfterMs > 0 && limited.retryAfterMs <= 60000, `${limited.retryAfterMs}`);
  assert.deepEqual([limited.rateLimit.limit, limited.rateLimit.remaining], [3, 0]);
  await c.close();
});

test('10,000 pipelined verifications, answered out of order, each matched to its request', async () => {
  // Strict durability: allows of the counted key wait for the disk, denies
  // go out at once, so answers overtake each other.
  const c = new Client(socket(), { timeoutMs: 20000 });
  const counted = env('TOLLGATE_TEST_COUNTED_KEY');
  const jobs = [];
  for (let i = 0; i < 10000; i++) {
    if (i % 3 === 2) jobs.push(c.verify(`tg_bogus${i}`).then((v) => ['deny', v]));
    else jobs.push(c.verify(counted).then((v) => ['allow', v]));
  }
  const results = await Promise.all(jobs);
  const remaining = [];
  for (const [want, v] of results) {
    assert.equal(v.allowed, want === 'allow');
    if (v.allowed) remaining.push(v.remainingUses);
  }
  // Every allow consumed exactly one use: the counts left are all distinct.
  assert.equal(new Set(remaining).size, remaining.length);
  assert.equal(Math.max(...remaining) - Math.min(...remaining), remaining.length - 1);
  await c.close();
});

test('quotas and ping', async () => {
  const c = new Client(socket());
  const team = env('TOLLGATE_TEST_QUOTA_TEAM');
  const a = await c.consumeQuota(team, 'documents', 3);
  assert.equal(a.ok, true);
  const b = await c.releaseQuota(team, 'documents', 3);
  assert.equal(b.used, a.used - 3);
  assert.deepEqual(await c.consumeQuota(team, 'nonesuch', 1), { ok: false, used: 0, limit: 0 });
  await c.ping();
  await c.close();
});

test('a busy daemon refuses the second connection; the client retries until the first closes', async (t) => {
  const first = new Client(env('TOLLGATE_BUSY_SOCKET'));
  const second = new Client(env('TOLLGATE_BUSY_SOCKET'), {
    timeoutMs: 20000,
    backoffInitialMs: 10,
    backoffMaxMs: 50,
  });
  t.after(() => Promise.all([first.close(), second.close()]));
  await first.ping();
  const refusals = [];
  second.on('reconnecting', ({ error }) => refusals.push(error));
  const p = second.ping();
  // The daemon sends SERVER_BUSY and closes without reading the hello, so the
  // hello's write may fail first (EPIPE, SPEC.md section 3): which of the two
  // an attempt sees is a race, so wait (bounded) for an attempt that read the
  // refusal itself rather than for a fixed time.
  const busy = (e) => e instanceof HandshakeRejected && e.codeName === 'SERVER_BUSY';
  const deadline = Date.now() + 10000;
  while (!refusals.some(busy) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(refusals.length >= 1, 'refused while the first client holds the only connection');
  assert.ok(refusals.some(busy), `${refusals}`);
  assert.ok(refusals.every((e) => busy(e) || ['EPIPE', 'ECONNRESET'].includes(e.code)), `${refusals}`);
  await first.close();
  await p;
});

/** The middleware in a node:http server; resolves to its URL and closer. */
async function app(client, options) {
  const mw = tollgate(client, options);
  const srv = http.createServer((req, res) =>
    mw(req, res, (err) => {
      if (err) {
        res.statusCode = 500;
        return res.end(String(err));
      }
      res.end(JSON.stringify({ subject: req.tollgate.subject, kind: req.tollgate.kind }));
    }),
  );
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${srv.address().port}`, close: () => new Promise((r) => srv.close(r)) };
}

test('the middleware answers as /auth does: 200, 401, 403, 429 with their headers', async () => {
  const c = new Client(socket());
  const { url, close } = await app(c, { permissions: (req) => (req.url.startsWith('/admin') ? [['admin', 'write']] : [['documents', 'read']]) });
  const get = (p, headers = {}) => fetch(url + p, { headers });
  const key = env('TOLLGATE_TEST_KEY');

  for (const headers of [{ authorization: `Bearer ${key}` }, { 'x-api-key': key }, { cookie: `a=b; tollgate_token=${key}` }]) {
    const r = await get('/docs', headers);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { subject: env('TOLLGATE_TEST_USER'), kind: 'api_key' });
  }
  let r = await get('/docs');
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="tollgate"');
  assert.equal(r.headers.get('x-auth-denial'), 'MISSING_CREDENTIAL');
  r = await get('/docs', { authorization: 'Bearer tg_nope' });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="tollgate", error="invalid_token"');
  r = await get('/docs', { authorization: `Bearer ${'x'.repeat(9000)}` });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('x-auth-denial'), 'MALFORMED');
  r = await get('/admin', { 'x-api-key': key });
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('x-auth-denial'), 'INSUFFICIENT_PERMISSIONS');
  assert.equal(r.headers.get('www-authenticate'), null);
  // The peer is 127.0.0.1, outside this key's allowlist.
  r = await get('/docs', { 'x-api-key': env('TOLLGATE_TEST_IP_KEY') });
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('x-auth-denial'), 'IP_NOT_ALLOWED');

  const rate = { 'x-api-key': env('TOLLGATE_TEST_MW_RATE_KEY') };
  for (let i = 0; i < 2; i++) {
    r = await get('/docs', rate);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-ratelimit-limit'), '2');
    assert.equal(r.headers.get('x-ratelimit-remaining'), String(1 - i));
  }
  r = await get('/docs', rate);
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('x-auth-denial'), 'RATE_LIMITED');
  const retry = Number(r.headers.get('retry-after'));
  assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
  assert.equal(r.headers.get('x-ratelimit-remaining'), '0');
  await close();
  await c.close();
});

test('the middleware fails closed when the daemon cannot be asked', async () => {
  const c = new Client('/nonexistent/tollgate.sock', { timeoutMs: 100 });
  const { url, close } = await app(c, {});
  const r = await fetch(`${url}/docs`, { headers: { 'x-api-key': env('TOLLGATE_TEST_KEY') } });
  assert.equal(r.status, 500);
  assert.match(await r.text(), /TimeoutError/);
  await close();
  await c.close();
});
