import type { Http2Server, Http2SecureServer, ServerHttp2Session } from 'node:http2';
import { isMap } from 'node:util/types';
import type { Server } from '@grpc/grpc-js';
import { IdTable } from './id-table';

/**
 * Gives every http2 session of a grpc-js server an IdTable for its open
 * streams in place of Node's Map (why: id-table.ts). A grpc-js client sends
 * all its calls to one target over one connection, so that one session's
 * table sees every call.
 *
 * Both places reached are private: grpc-js keeps its http2 servers in
 * `http2Servers`, Node keeps a session's open streams in
 * `session[Symbol('state')].streams`. Each is checked before it is used; when
 * either is not what is expected (another grpc-js or Node), the session keeps
 * its Map, which is slower under load and as correct. Returns how many http2
 * servers were reached.
 */
export function useIdTables(server: Server): number {
  const http2Servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(http2Servers instanceof Map)) return 0;
  let reached = 0;
  for (const http2Server of http2Servers.keys() as Iterable<Http2Server | Http2SecureServer>) {
    if (typeof http2Server?.on !== 'function') continue;
    http2Server.on('session', replaceStreamMap);
    reached++;
  }
  return reached;
}

/** Swaps the session's stream Map, while empty, for an IdTable. Sessions come new from 'session', before their first stream. */
function replaceStreamMap(session: ServerHttp2Session): void {
  const state = stateOf(session);
  // isMap, not instanceof: Node's own Map (a SafeMap) does not have Map.prototype in its chain.
  if (isMap(state?.streams) && state.streams.size === 0) state.streams = new IdTable<unknown>();
}

function stateOf(session: ServerHttp2Session): { streams?: unknown } | undefined {
  const key = Object.getOwnPropertySymbols(session).find((s) => s.description === 'state');
  const state: unknown = key === undefined ? undefined : (session as unknown as Record<symbol, unknown>)[key];
  return typeof state === 'object' && state !== null ? (state as { streams?: unknown }) : undefined;
}
