// Types of tollgate-client (hand-written; the code is plain JavaScript).
import { EventEmitter } from 'node:events';

export type CredentialKind = 'api_key' | 'access_token' | 'jwt';
export type DenyCode =
  | 'MALFORMED' | 'NOT_FOUND' | 'BAD_SIGNATURE' | 'EXPIRED' | 'NOT_YET_VALID' | 'REVOKED'
  | 'DISABLED' | 'IP_NOT_ALLOWED' | 'INSUFFICIENT_PERMISSIONS' | 'RATE_LIMITED'
  | 'USAGE_EXCEEDED' | 'TEAM_RATE_LIMITED' | 'QUOTA_EXCEEDED';
export type ErrorCodeName =
  | 'MALFORMED_FRAME' | 'UNSUPPORTED_VERSION' | 'FRAME_TOO_LARGE' | 'UNKNOWN_MESSAGE_TYPE'
  | 'SERVER_BUSY' | 'INTERNAL';

/** u64 fields are Numbers up to 2^53 - 1, BigInts beyond. */
export type U64 = number | bigint;

export interface RateLimit { limit: number; remaining: number; resetMs: U64 }

export interface Allow {
  allowed: true;
  kind: CredentialKind;
  subject: string;
  teamId: string;
  credentialId: string;
  roles: string[];
  permissions: Record<string, string[]>;
  /** Uses left after this one; null when the credential has no usage cap. */
  remainingUses: U64 | null;
  rateLimit: RateLimit | null;
}

export interface Deny {
  allowed: false;
  code: DenyCode;
  retryAfterMs: U64 | null;
  /** For logs; do not parse. */
  reason: string;
  rateLimit: RateLimit | null;
}

export type Verdict = Allow | Deny;

export interface QuotaResult { ok: boolean; used: U64; limit: U64 | null }

export type Permissions = Array<[string, string]> | Record<string, string[]>;

export interface VerifyOptions {
  /** The end user's address; IPv4-mapped IPv6 is sent as IPv4. */
  ip?: string | Buffer | null;
  permissions?: Permissions;
  /** Rate-limit units, default 1. */
  cost?: number;
  /** Consumed atomically with an allow. */
  quota?: [string, number] | { name: string; amount?: number } | null;
  timeoutMs?: number;
}

export interface VerifyRequest extends VerifyOptions { credential: string | Buffer }

export interface ClientOptions {
  /** Per request, from the call until the answer (default 1000). */
  timeoutMs?: number;
  /** Per connection attempt, until the daemon's hello (default 1000). */
  connectTimeoutMs?: number;
  /** Requests in flight on the connection; more wait their turn (default 1024). */
  maxInFlight?: number;
  /** Backoff between failed connection attempts, doubling (default 20 .. 2000 ms). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

export declare const DEFAULTS: Readonly<Required<ClientOptions>>;

export declare class Client extends EventEmitter {
  constructor(path: string, options?: ClientOptions);
  verify(credential: string | Buffer, options?: VerifyOptions): Promise<Verdict>;
  verify(request: VerifyRequest, options?: VerifyOptions): Promise<Verdict>;
  consumeQuota(teamId: string, quota: string, amount: number, options?: { timeoutMs?: number }): Promise<QuotaResult>;
  releaseQuota(teamId: string, quota: string, amount: number, options?: { timeoutMs?: number }): Promise<QuotaResult>;
  ping(options?: { timeoutMs?: number }): Promise<void>;
  /** Queued requests fail; those in flight are still answered. */
  close(): Promise<void>;
  readonly inFlight: number;
  on(event: 'connect', listener: () => void): this;
  on(event: 'disconnect', listener: (cause?: Error) => void): this;
  on(event: 'reconnecting', listener: (info: { attempt: number; delayMs: number; error: Error }) => void): this;
}

export declare class TollgateError extends Error {}
export declare class ErrorFrame extends TollgateError {
  requestId: number;
  code: number;
  codeName: ErrorCodeName;
  detail: string;
}
export declare class HandshakeRejected extends ErrorFrame {}
export declare class ConnectionClosed extends TollgateError {}
export declare class TimeoutError extends TollgateError { timeoutMs: number }
export declare class ClientClosed extends TollgateError {}
export declare class ProtocolError extends Error {}
export declare class FieldTooLong extends RangeError {}

/** The minimal request and response an Express-style middleware needs. */
export interface MiddlewareRequest {
  headers: Record<string, string | string[] | undefined>;
  socket?: { remoteAddress?: string };
  tollgate?: Allow;
}
export interface MiddlewareResponse {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(): unknown;
}

export interface MiddlewareOptions<Req extends MiddlewareRequest = MiddlewareRequest> {
  permissions?: Permissions | ((req: Req) => Permissions | undefined);
  cost?: number | ((req: Req) => number | undefined);
  quota?: VerifyOptions['quota'] | ((req: Req) => VerifyOptions['quota']);
  /** The end user's address (default: the socket's peer). */
  ip?: (req: Req) => string | undefined;
  /** The cookie holding a credential (default tollgate_token). */
  cookie?: string;
}

export declare function tollgate<Req extends MiddlewareRequest = MiddlewareRequest>(
  client: Client,
  options?: MiddlewareOptions<Req>,
): (req: Req, res: MiddlewareResponse, next: (err?: unknown) => void) => void;

export declare function credentialOf(headers: MiddlewareRequest['headers'], cookie?: string): string | null;
export declare const LIMIT_CODES: ReadonlySet<DenyCode>;
export declare const codec: unknown;
