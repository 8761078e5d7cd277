// Where the services listen and how each listener tells its callers.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ServerCredentials } from '@grpc/grpc-js';
import { type AgentConfig, ConfigError } from '@agent/option';
import { type Authenticate, certificateAuth, Role, socketAuth, TokenBook, tokenAuth } from './auth';
import { accountEntries } from './accounts';
import { ensureToken, privateDir } from './private-files';

export interface Listener {
  /** host:port or unix:/path. */
  readonly address: string;
  /** Default: plaintext. */
  readonly credentials?: ServerCredentials;
  readonly authenticate: Authenticate;
  /** Runs once bound (the socket's group and mode). */
  readonly afterBind?: () => void;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1)$/;

/** A TCP listener off loopback without TLS would hand tokens to the network: refused unless asked for. */
export function checkPlaintext(address: string, variable: string, tls: boolean, allowPlaintext: boolean): void {
  if (tls || allowPlaintext || address.startsWith('unix:')) return;
  const host = address.slice(0, address.lastIndexOf(':'));
  if (LOOPBACK.test(host)) return;
  throw new ConfigError(
    variable,
    `refusing to listen on ${address} without TLS: set AGENT_TLS_CERT and AGENT_TLS_KEY (and AGENT_TLS_CLIENT_CA for client certificates), ` +
      'or listen on 127.0.0.1, or set AGENT_ALLOW_PLAINTEXT=true on a private network (tokens then cross it in clear)',
  );
}

/** The admin and reader tokens, made at first start. */
export function publicTokens(config: Pick<AgentConfig, 'tokenDir'>): { admin: string; reader: string } {
  return { admin: ensureToken(path.join(config.tokenDir, 'admin.token')), reader: ensureToken(path.join(config.tokenDir, 'reader.token')) };
}

/** The token the agent's own services present to each other. */
export function internalToken(config: Pick<AgentConfig, 'internalTokenFile'>): string {
  if (config.internalTokenFile === '') throw new ConfigError('AGENT_INTERNAL_TOKEN_FILE', 'required: the services authenticate each other');
  return ensureToken(config.internalTokenFile);
}

/** The apiserver's listeners: TCP (token, or certificate with mTLS) and the unix socket (admin). */
export function publicListeners(config: AgentConfig, tcpAddress = config.apiListen): Listener[] {
  const out: Listener[] = [];
  const tls = config.tlsCert !== '';
  if (tcpAddress !== '') {
    checkPlaintext(tcpAddress, 'AGENT_LISTEN', tls, config.allowPlaintext);
    const t = publicTokens(config);
    const book = new TokenBook([
      [t.admin, Role.Admin],
      [t.reader, Role.Reader],
    ]);
    const mtls = config.tlsClientCa !== '';
    out.push({
      address: tcpAddress,
      credentials: tls ? tlsCredentials(config) : undefined,
      authenticate: mtls ? certificateAuth(book) : tokenAuth(book),
    });
  }
  if (config.socket !== '') {
    const gid = groupId(config.socketGroup);
    prepareSocket(config.socket, gid);
    out.push({
      address: `unix:${config.socket}`,
      authenticate: socketAuth,
      afterBind: () => {
        setGroup(config.socket, gid);
        fs.chmodSync(config.socket, 0o660);
      },
    });
  }
  if (out.length === 0) throw new ConfigError('AGENT_LISTEN', 'both AGENT_LISTEN and AGENT_SOCKET are off: the API would be unreachable');
  return out;
}

/** An internal service's one listener: only the internal token (read once by whoever wires the services) gets in. */
export function internalListener(config: Pick<AgentConfig, 'internalTokenFile' | 'allowPlaintext'>, address: string, variable: string, token = internalToken(config)): Listener {
  checkPlaintext(address, variable, false, config.allowPlaintext);
  return { address, authenticate: tokenAuth(new TokenBook([[token, Role.Internal]])) };
}

function tlsCredentials(config: AgentConfig): ServerCredentials {
  const read = (file: string, variable: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new ConfigError(variable, `cannot read ${file}: ${(err as Error).message}`);
    }
  };
  const ca = config.tlsClientCa !== '' ? read(config.tlsClientCa, 'AGENT_TLS_CLIENT_CA') : null;
  return ServerCredentials.createSsl(ca, [{ cert_chain: read(config.tlsCert, 'AGENT_TLS_CERT'), private_key: read(config.tlsKey, 'AGENT_TLS_KEY') }], ca !== null);
}

/**
 * The socket's directory exists, with safe modes, before the bind: made here
 * 0700 (0710 with the socket's group, so that its members can reach it and
 * list nothing). A stale socket of a previous run goes; anything else in its
 * place is an error.
 */
function prepareSocket(socket: string, gid: number): void {
  const dir = path.dirname(socket);
  if (!fs.existsSync(dir)) {
    privateDir(dir, gid === ownGid() ? 0o700 : 0o710);
    setGroup(dir, gid);
  }
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(socket);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new ConfigError('AGENT_SOCKET', `${socket} exists and is not a socket`);
  fs.rmSync(socket);
}

const ownGid = (): number => process.getgid?.() ?? 0;

/** Gives path to group gid, keeping its owner; a group the agent may not give is a configuration error. */
function setGroup(file: string, gid: number): void {
  const st = fs.statSync(file);
  if (st.gid === gid) return;
  try {
    fs.chownSync(file, st.uid, gid);
  } catch (err) {
    throw new ConfigError('AGENT_SOCKET_GROUP', `cannot give ${file} to group ${gid}: ${(err as Error).message}`);
  }
}

/** A group name or number -> gid; empty: the agent's own group (root's when it runs as root). */
export function groupId(group: string, groupFile = '/etc/group'): number {
  if (group === '') return ownGid();
  if (/^\d+$/.test(group)) return Number(group);
  let entries: string[][] = [];
  try {
    entries = accountEntries(groupFile);
  } catch {
    /* no group file: only numbers work */
  }
  const gid = entries.find((e) => e[0] === group)?.[2];
  if (gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  throw new ConfigError('AGENT_SOCKET_GROUP', `no group ${JSON.stringify(group)} in ${groupFile}`);
}

/**
 * The data directory: 0700, or 0710 to the socket's group when the socket
 * lives in it (its members must reach the socket; they still list and read
 * nothing).
 */
export function prepareDataDir(config: Pick<AgentConfig, 'dataDir' | 'socket' | 'socketGroup'>): void {
  const gid = config.socket !== '' && path.dirname(config.socket) === config.dataDir ? groupId(config.socketGroup) : ownGid();
  privateDir(config.dataDir, gid === ownGid() ? 0o700 : 0o710);
  setGroup(config.dataDir, gid);
}
