'use strict';
// An Express-style middleware, `(req, res, next)`, that verifies the request's
// credential over the socket and answers denials the way tollgate's `/auth`
// and the nginx example do (src/http/nginx.rs, examples/nginx/nginx.conf):
// 401 with `WWW-Authenticate`, 403, or 429 with `Retry-After`, each with
// `X-Auth-Denial: <CODE>`, and `X-RateLimit-*` when the credential is
// rate-limited. It works with Express, Connect, and node:http (pass a `next`).

/** Codes about spending: answered 429 (nginx's example maps /auth's 403 so). */
const LIMIT_CODES = new Set(['RATE_LIMITED', 'USAGE_EXCEEDED', 'TEAM_RATE_LIMITED', 'QUOTA_EXCEEDED']);
/** Codes about the credential itself: answered 401. */
const INVALID_CODES = new Set(['MALFORMED', 'NOT_FOUND', 'BAD_SIGNATURE', 'EXPIRED', 'NOT_YET_VALID', 'REVOKED']);

const CHALLENGE = 'Bearer realm="tollgate"';
const CHALLENGE_INVALID = 'Bearer realm="tollgate", error="invalid_token"';

/**
 * The credential presented, in /auth's order: `Authorization: Bearer`, then
 * `X-API-Key`, then the cookie; `null` when there is none.
 */
function credentialOf(headers, cookie = 'tollgate_token') {
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^\s*bearer\s+(.*)$/i.exec(auth);
    if (m) return m[1].trim();
  }
  const key = headers['x-api-key'];
  if (key !== undefined) return (Array.isArray(key) ? key[0] : key).trim();
  const cookies = headers.cookie;
  if (typeof cookies === 'string') {
    for (const pair of cookies.split(';')) {
      const eq = pair.indexOf('=');
      if (eq < 0 || pair.slice(0, eq).trim() !== cookie) continue;
      const v = pair.slice(eq + 1).trim();
      return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
    }
  }
  return null;
}

/** Whole seconds, rounded up, as `Retry-After` and `X-RateLimit-Reset` count. */
const secs = (ms) => Math.ceil(Number(ms) / 1000);

function setRateLimit(res, rl) {
  if (!rl) return;
  res.setHeader('X-RateLimit-Limit', String(rl.limit));
  res.setHeader('X-RateLimit-Remaining', String(rl.remaining));
  res.setHeader('X-RateLimit-Reset', String(secs(rl.resetMs)));
}

/** The status a deny code gets. */
function statusOf(code) {
  if (INVALID_CODES.has(code)) return 401;
  if (LIMIT_CODES.has(code)) return 429;
  return 403;
}

function deny(res, status, code, challenge) {
  res.statusCode = status;
  res.setHeader('X-Auth-Denial', code);
  if (challenge) res.setHeader('WWW-Authenticate', challenge);
  res.setHeader('Content-Length', '0');
  res.end();
}

/**
 * `tollgate(client, options)` returns `(req, res, next)`. Options:
 *
 * - `permissions`: `[[resource, action], ...]`, `{resource: [actions]}`, or a
 *   function of `req` returning either (default: none);
 * - `cost`, `quota`: as for `client.verify`, or functions of `req`;
 * - `ip(req)`: the end user's address (default: the socket's peer; behind a
 *   proxy, return the address it vouches for);
 * - `cookie`: the cookie holding a credential (default `tollgate_token`).
 *
 * On an allow, `req.tollgate` is the verdict and `next()` is called; the
 * response carries `X-RateLimit-*` if the credential is rate-limited. On a
 * denial the response is sent and `next` is not called. If the daemon cannot
 * be asked (timeout, connection), `next(error)` is called: Express answers
 * 500, so a request is never let through unverified.
 */
function tollgate(client, options = {}) {
  const value = (v, req) => (typeof v === 'function' ? v(req) : v);
  const cookie = options.cookie ?? 'tollgate_token';
  const ipOf = options.ip ?? ((req) => req.socket?.remoteAddress);
  return function tollgateMiddleware(req, res, next) {
    const credential = credentialOf(req.headers, cookie);
    if (credential === null) return deny(res, 401, 'MISSING_CREDENTIAL', CHALLENGE);
    let request;
    try {
      request = {
        credential,
        ip: ipOf(req),
        permissions: value(options.permissions, req),
        cost: value(options.cost, req),
        quota: value(options.quota, req),
      };
    } catch (e) {
      return next(e);
    }
    client.verify(request).then(
      (v) => {
        setRateLimit(res, v.rateLimit);
        if (v.allowed) {
          req.tollgate = v;
          return next();
        }
        const status = statusOf(v.code);
        if (status === 429 && v.retryAfterMs != null) {
          res.setHeader('Retry-After', String(Math.max(1, secs(v.retryAfterMs))));
        }
        deny(res, status, v.code, status === 401 ? CHALLENGE_INVALID : null);
      },
      (e) => {
        // A credential over the protocol's limits is a bad credential, not a
        // failure of the daemon.
        if (e && e.name === 'FieldTooLong') return deny(res, 401, 'MALFORMED', CHALLENGE_INVALID);
        next(e);
      },
    );
  };
}

module.exports = { tollgate, credentialOf, statusOf, LIMIT_CODES, INVALID_CODES };
