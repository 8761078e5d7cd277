// Watches: newline-delimited JSON events on a chunked response, resumed from
// a resourceVersion out of the store's event log (410 Expired when it is
// gone), with selectors, bookmarks and timeoutSeconds.
import type { ServerResponse } from 'node:http';
import { at, statusObject, type JsonObject, type KubeObject } from './json';
import { apiVersionOf, type Resource } from './resources';
import type { Selector } from './selectors';
import type { Store, StoreEvent } from './store';

export interface WatchRequest {
  readonly res: Resource;
  readonly namespace?: string;
  /** One object only (a watch of /…/name, or fieldSelector=metadata.name=…). */
  readonly matches: Selector;
  readonly resourceVersion: string | null;
  readonly bookmarks: boolean;
  readonly timeoutSeconds?: number;
  /** Turns an object into what the client asked for (a Table row for kubectl get -w). */
  readonly render: (o: KubeObject) => JsonObject;
}

type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/** How a store event looks to a watch with a selector: objects enter (ADDED) and leave (DELETED) its view. */
function seen(w: WatchRequest, e: StoreEvent): WatchEventType | undefined {
  if (e.res !== w.res || (w.namespace !== undefined && e.object.metadata.namespace !== w.namespace)) return undefined;
  const before = e.old !== undefined && e.type !== 'ADDED' && w.matches(e.old);
  const after = e.type !== 'DELETED' && w.matches(e.object);
  if (after) return before ? 'MODIFIED' : 'ADDED';
  return before ? 'DELETED' : undefined;
}

/** The open watch streams, so a test can expire them all at once. */
export class OpenWatches {
  private readonly ends = new Set<() => void>();

  /** Every open watch gets one ERROR 410 Expired and ends; its client must list again. */
  expire(): void {
    for (const end of [...this.ends]) end();
  }

  add(end: () => void): () => void {
    this.ends.add(end);
    return () => this.ends.delete(end);
  }
}

const expired = (message: string): JsonObject => statusObject('Failure', 410, 'Expired', message);

export function serveWatch(store: Store, open: OpenWatches, w: WatchRequest, resp: ServerResponse, bookmarkMs: number): void {
  resp.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
  // Clients (client-node's Watch) return from their call once the headers arrive, before any event.
  resp.flushHeaders();
  // The last resourceVersion this client has seen: where it would resume.
  let last = w.resourceVersion || store.resourceVersion;
  const send = (type: WatchEventType, object: JsonObject): void => {
    const rv = at(object, 'metadata', 'resourceVersion');
    if (typeof rv === 'string' && type !== 'ERROR') last = rv;
    resp.write(`${JSON.stringify({ type, object })}\n`);
  };
  const rv = w.resourceVersion;
  let backlog: StoreEvent[];
  if (rv === null || rv === '' || rv === '0') {
    backlog = [];
    for (const o of store.list(w.res, w.namespace)) if (w.matches(o)) send('ADDED', w.render(o));
  } else {
    const from = Number(rv);
    const kept = Number.isInteger(from) ? store.since(from) : undefined;
    if (!kept) {
      const message = Number.isInteger(from) ? `too old resource version: ${rv} (${store.oldest + 1})` : `invalid resource version: ${rv}`;
      send('ERROR', expired(message));
      resp.end();
      return;
    }
    backlog = kept;
  }
  for (const e of backlog) {
    const type = seen(w, e);
    if (type) send(type, w.render(e.object));
  }
  const unsubscribe = store.subscribe((e) => {
    const type = seen(w, e);
    if (type) send(type, w.render(e.object));
  });
  const timers: NodeJS.Timeout[] = [];
  if (w.bookmarks) {
    timers.push(setInterval(() => send('BOOKMARK', { kind: w.res.kind, apiVersion: apiVersionOf(w.res), metadata: { resourceVersion: store.resourceVersion } }), bookmarkMs));
  }
  const stop = (): void => {
    unsubscribe();
    forget();
    for (const t of timers) clearInterval(t);
    if (!resp.writableEnded) resp.end();
  };
  const forget = open.add(() => {
    send('ERROR', expired(`too old resource version: ${last} (${store.oldest + 1})`));
    stop();
  });
  if (w.timeoutSeconds !== undefined) timers.push(setTimeout(stop, w.timeoutSeconds * 1000));
  resp.on('close', stop);
}
