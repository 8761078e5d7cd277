import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { Metadata } from '@grpc/grpc-js';
import { ConfigError } from '@agent/option';
import { authorize, bearerToken, certificateAuth, parseBearer, Role, TokenBook, tokenAuth } from './auth';
import { PermissionDeniedError, UnauthenticatedError } from './errors';
import { checkPlaintext } from './listeners';
import { ensureToken } from './private-files';

const md = (auth?: string): Metadata => {
  const m = new Metadata();
  if (auth !== undefined) m.set('authorization', auth);
  return m;
};
const cert = (subject: Record<string, string | string[]>): PeerCertificate => ({ subject } as unknown as PeerCertificate);
const book = new TokenBook([
  ['admin-token', Role.Admin],
  ['reader-token', Role.Reader],
  ['', Role.Admin],
]);

describe('tokens', () => {
  it('matches each token to its role, and nothing else', () => {
    assert.equal(book.match('admin-token'), Role.Admin);
    assert.equal(book.match('reader-token'), Role.Reader);
    assert.equal(book.match('admin-tokenx'), undefined);
    assert.equal(book.match('admin'), undefined);
    assert.equal(book.match(''), undefined, 'an empty token never matches, not even an empty entry');
  });

  it('a token laid over zeros is not the same token: trailing NULs, a longer one, another encoding of it', () => {
    assert.equal(book.match('admin-token\0'), undefined);
    assert.equal(book.match('reader-token\0\0\0'), undefined, 'longer than the longest token');
    assert.equal(book.match('admin-tokeN'), undefined);
    assert.equal(book.match('admin-toke\u0100'), undefined, 'a character of two bytes where the last was');
    assert.equal(book.match('x'.repeat(10_000)), undefined);
    const wide = new TokenBook([['ключ-токен', Role.Reader]]);
    assert.equal(wide.match('ключ-токен'), Role.Reader, 'tokens of any characters');
    assert.equal(wide.match('ключ-токе'), undefined);
    // The same book again and again: what one call laid out never stays for the next.
    assert.equal(book.match('reader-token'), Role.Reader);
    assert.equal(book.match('admin-token'), Role.Admin);
  });

  it('reads "Bearer <token>" and nothing looser', () => {
    assert.equal(bearerToken(md('Bearer abc')), 'abc');
    assert.equal(bearerToken(md('bearer abc')), 'abc');
    assert.equal(bearerToken(md('abc')), undefined);
    assert.equal(bearerToken(md('Basic abc')), undefined);
    assert.equal(bearerToken(md('Bearer a b')), undefined);
    assert.equal(bearerToken(md()), undefined);
    assert.equal(bearerToken(md('Bearer ')), undefined);
    assert.equal(bearerToken(md('Bearer  abc ')), 'abc');
  });

  it('the quick reading of "Bearer <token>" agrees with the pattern on every kind of value', () => {
    const pattern = (v: string): string | undefined => /^Bearer\s+(\S+)\s*$/i.exec(v)?.[1];
    const parts = ['Bearer', 'bearer', 'BEARER', ' ', '  ', '\t', '\u00a0', '\u2028', 'abc', 'A-z_0.9~+/=', 'ключ', '\x7f', '\x00', '', 'x y'];
    let n = 0;
    for (const a of parts) for (const b of parts) for (const c of parts) for (const d of ['', ' ', 'z', '\n']) {
      const v = a + b + c + d;
      assert.equal(parseBearer(v), pattern(v), JSON.stringify(v));
      n++;
    }
    assert.ok(n > 10_000);
  });

  it('no token or a wrong one is UNAUTHENTICATED', () => {
    const auth = tokenAuth(book);
    assert.throws(() => auth(md(), undefined), UnauthenticatedError);
    assert.throws(() => auth(md('Bearer nope'), undefined), UnauthenticatedError);
    assert.deepEqual(auth(md('Bearer reader-token'), undefined), { role: Role.Reader, via: 'token' });
  });

  it('processes starting at once agree on one token file, 0600', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokens-'));
    const file = path.join(dir, 'auth', 'x.token');
    const script = `process.stdout.write(require(${JSON.stringify(path.join(__dirname, 'private-files.js'))}).ensureToken(${JSON.stringify(file)}))`;
    const outs = await Promise.all(
      Array.from({ length: 6 }, () =>
        new Promise<string>((resolve, reject) => {
          const child = spawn(process.execPath, ['-e', script]);
          let out = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}`))));
        }),
      ),
    );
    assert.equal(new Set(outs).size, 1, outs.join(' '));
    assert.equal(ensureToken(file), outs[0]);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['x.token'], 'no temporary files left');
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('client certificates', () => {
  const auth = certificateAuth(book);
  it('O names the role, CN the caller', () => {
    assert.deepEqual(auth(md(), cert({ O: 'admin', CN: 'alice' })), { role: Role.Admin, via: 'certificate', subject: 'alice' });
    assert.deepEqual(auth(md(), cert({ O: ['ops', 'reader'], CN: 'bob' })), { role: Role.Reader, via: 'certificate', subject: 'bob' });
  });
  it('a certificate without a role is refused unless a token comes with it', () => {
    assert.throws(() => auth(md(), cert({ O: 'ops', CN: 'carol' })), PermissionDeniedError);
    assert.deepEqual(auth(md('Bearer reader-token'), cert({ O: 'ops', CN: 'carol' })), { role: Role.Reader, via: 'token' });
  });
});

describe('authorization', () => {
  const access = { roles: [Role.Admin], methods: { Get: [Role.Admin, Role.Reader] } } as const;
  it('a method is open to the roles its row names, others to the default', () => {
    authorize(access, 'Get', { role: Role.Reader, via: 'token' });
    authorize(access, 'Create', { role: Role.Admin, via: 'socket' });
    assert.throws(() => authorize(access, 'Create', { role: Role.Reader, via: 'token' }), PermissionDeniedError);
    assert.throws(() => authorize(access, 'Get', { role: Role.Internal, via: 'token' }), PermissionDeniedError);
  });
});

describe('plaintext listeners', () => {
  it('loopback and unix sockets may be plaintext; anything else needs TLS or the explicit override', () => {
    for (const a of ['127.0.0.1:50051', 'localhost:1', '[::1]:50051', 'unix:/run/agent.sock']) checkPlaintext(a, 'AGENT_LISTEN', false, false);
    for (const a of ['0.0.0.0:50051', '10.0.0.5:50051', '[::]:50051', 'agent.example:50051']) {
      assert.throws(() => checkPlaintext(a, 'AGENT_LISTEN', false, false), (e: unknown) => e instanceof ConfigError && e.variable === 'AGENT_LISTEN' && /AGENT_TLS_CERT/.test(e.message));
      checkPlaintext(a, 'AGENT_LISTEN', true, false);
      checkPlaintext(a, 'AGENT_LISTEN', false, true);
    }
  });
});
