// Who is calling, and may they? Every listener has one way to tell the
// caller (socket, token, certificate); every service one table of who may
// call which method. Health and reflection are not services of ours: they
// stay open, as probes and grpcurl need them before any credentials.
import type { PeerCertificate } from 'node:tls';
import type { Metadata } from '@grpc/grpc-js';
import { PermissionDeniedError, UnauthenticatedError } from './errors';

export const Role = {
  /** Everything: the unix socket, the admin token, a certificate with O=admin. */
  Admin: 'admin',
  /** Reads (env values redacted) and PushOnce. */
  Reader: 'reader',
  /** The agent's own services calling each other. */
  Internal: 'internal',
} as const;
export type Role = (typeof Role)[keyof typeof Role];

export interface Caller {
  readonly role: Role;
  /** How the caller proved it: the socket's file mode, a token, a client certificate, or being this process. */
  readonly via: 'socket' | 'token' | 'certificate';
  /** A certificate's subject (CN), for the audit log. */
  readonly subject?: string;
}

/** Tells the caller of one call on one listener, or throws UnauthenticatedError. */
export type Authenticate = (metadata: Metadata, peerCertificate: PeerCertificate | undefined) => Caller;

/** Who may call a service's methods: a default, and exceptions by method name (as in the proto, e.g. "Get"). */
export interface Access {
  readonly roles: readonly Role[];
  readonly methods?: Readonly<Record<string, readonly Role[]>>;
}

export const INTERNAL_ONLY: Access = { roles: [Role.Internal] };

export function authorize(access: Access, method: string, caller: Caller): void {
  const allowed = access.methods?.[method] ?? access.roles;
  if (!allowed.includes(caller.role)) throw new PermissionDeniedError(`${method}: the ${caller.role} role may not call this method`);
}

/**
 * Tokens and the role each grants, compared in constant time: the presented
 * token is compared with every token, each laid over zeros to the width of
 * the longest, character by character to the end of that width, whichever
 * matches. What it tells by timing is only whether the token is longer than
 * the longest. The comparison is plain JavaScript on UTF-16 code units (a
 * string is equal exactly when its code units are): a call into
 * crypto.timingSafeEqual per token, with the buffers it needs, cost a Get
 * with one call in flight several microseconds more (README, "Get").
 */
export class TokenBook {
  private readonly entries: ReadonlyArray<{ units: Uint16Array; length: number; role: Role }>;
  private readonly width: number;

  constructor(tokens: ReadonlyArray<readonly [token: string, role: Role]>) {
    const given = tokens.filter(([t]) => t !== '');
    this.width = Math.max(1, ...given.map(([t]) => t.length));
    this.entries = given.map(([t, role]) => ({ units: laid(t, this.width), length: t.length, role }));
  }

  match(presented: string): Role | undefined {
    const length = presented.length;
    if (length > this.width) return undefined;
    let found: Role | undefined;
    for (const e of this.entries) {
      let diff = length ^ e.length;
      // Every position of the width, whatever differed before: the time does not depend on where a difference is.
      for (let i = 0; i < this.width; i++) diff |= (i < length ? presented.charCodeAt(i) : 0) ^ e.units[i]!;
      if (diff === 0 && found === undefined) found = e.role;
    }
    return found;
  }
}

/** A token's code units, then zeros to width. */
function laid(token: string, width: number): Uint16Array {
  const units = new Uint16Array(width);
  for (let i = 0; i < token.length; i++) units[i] = token.charCodeAt(i);
  return units;
}

export function bearerToken(metadata: Metadata): string | undefined {
  return parseBearer(metadata.get('authorization')[0]);
}

/** The token of an `authorization: Bearer <token>` value (gRPC metadata or an HTTP header). */
export function parseBearer(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  if (value.startsWith('Bearer ') && printable(value, 7)) return value.slice(7); // what every client sends, without a pattern match per call
  const m = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return m?.[1];
}

/** Whether value from index from on is one or more printable ASCII characters other than space (none of them \s). */
function printable(value: string, from: number): boolean {
  if (value.length <= from) return false;
  for (let i = from; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

/** The caller a token proves, one per role (not a new object per call). */
const BY_TOKEN: Readonly<Record<Role, Caller>> = Object.freeze(
  Object.fromEntries(Object.values(Role).map((role) => [role, Object.freeze({ role, via: 'token' as const })])) as Record<Role, Caller>,
);

/** Bearer tokens only (internal listeners, and the public TCP listener without client certificates). */
export function tokenAuth(book: TokenBook): Authenticate {
  return (md) => {
    const token = bearerToken(md);
    if (token === undefined) throw new UnauthenticatedError('missing credentials: send "authorization: Bearer <token>"');
    const role = book.match(token);
    if (role === undefined) throw new UnauthenticatedError('invalid token');
    return BY_TOKEN[role];
  };
}

/**
 * A client certificate (mTLS) names its role in its subject's Organization
 * (O=admin or O=reader), as Kubernetes reads groups from O; its CN is who it
 * is. A bearer token is still accepted on top, for a certificate without role.
 */
export function certificateAuth(book: TokenBook): Authenticate {
  const byToken = tokenAuth(book);
  return (md, cert) => {
    if (cert && Object.keys(cert).length > 0) {
      const orgs = ([] as string[]).concat(cert.subject?.O ?? []);
      const subject = ([] as string[]).concat(cert.subject?.CN ?? [])[0] ?? '';
      if (orgs.includes(Role.Admin)) return { role: Role.Admin, via: 'certificate', subject };
      if (orgs.includes(Role.Reader)) return { role: Role.Reader, via: 'certificate', subject };
      if (bearerToken(md) === undefined) throw new PermissionDeniedError(`certificate ${JSON.stringify(subject)} names no role (O=admin or O=reader)`);
    }
    return byToken(md, cert);
  };
}

/** The unix socket: its file mode already decided; whoever opened it is an admin, as with docker.sock. */
export const socketAuth: Authenticate = () => ({ role: Role.Admin, via: 'socket' });

/** The client certificate of a call on a TLS listener (only such a listener has one to ask for). */
export function peerCertificate(call: object, tls: boolean): PeerCertificate | undefined {
  return tls ? (call as { getAuthContext?: () => { sslPeerCertificate?: PeerCertificate } | null }).getAuthContext?.()?.sslPeerCertificate : undefined;
}

/** What the log says of a refused call: who the caller was, when known, and why. */
export function refusal(caller: Caller | undefined, err: unknown): Record<string, string> {
  const who = caller ? { role: caller.role, via: caller.via, ...(caller.subject !== undefined ? { subject: caller.subject } : {}) } : {};
  return { ...who, reason: (err as Error).message };
}

/** Where a call being served keeps its caller (a property of the call: it goes with it). */
const CALLER = Symbol('agent.caller');

/** The caller of a call being served (set by the server before the handler runs). */
export function callerOf(call: object): Caller | undefined {
  return (call as { [CALLER]?: Caller })[CALLER];
}

export function setCaller(call: object, caller: Caller): void {
  (call as { [CALLER]?: Caller })[CALLER] = caller;
}
