// GET /metrics: the process's Prometheus exposition, for a reader or admin
// token (Prometheus: authorization.credentials_file), over TLS when the
// agent has a certificate.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { type AgentConfig, ConfigError } from '@agent/option';
import { metrics } from '@agent/telemetry';
import { parseBearer, Role, TokenBook } from './auth';
import { checkPlaintext, publicTokens } from './listeners';
import type { Logger } from './log';

export interface MetricsEndpoint {
  /** http(s)://host:port/metrics, with the real port when asked for :0. */
  readonly url: string;
  close(): Promise<void>;
}

const PATH = '/metrics';

/** Serves this process's metrics on AGENT_METRICS_LISTEN; nothing when it is off. A busy address fails the start, naming the variable. */
export async function serveMetrics(config: Pick<AgentConfig, 'metricsListen' | 'tlsCert' | 'tlsKey' | 'allowPlaintext' | 'tokenDir'>, log: Logger): Promise<MetricsEndpoint | undefined> {
  if (config.metricsListen === '') return undefined;
  const tls = config.tlsCert !== '';
  checkPlaintext(config.metricsListen, 'AGENT_METRICS_LISTEN', tls, config.allowPlaintext);
  const t = publicTokens(config);
  const book = new TokenBook([
    [t.admin, Role.Admin],
    [t.reader, Role.Reader],
  ]);
  metrics.withDefaults();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const refuse = (code: number, message: string, headers: http.OutgoingHttpHeaders = {}): void => {
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', ...headers });
      res.end(`${message}\n`);
    };
    if ((req.url ?? '').split('?')[0] !== PATH) return refuse(404, `not found: metrics are at ${PATH}`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(405, 'method not allowed: use GET', { allow: 'GET, HEAD' });
    const token = parseBearer(req.headers.authorization);
    if (token === undefined) return refuse(401, 'missing credentials: send "Authorization: Bearer <reader or admin token>"', { 'www-authenticate': 'Bearer' });
    if (book.match(token) === undefined) return refuse(401, 'invalid token', { 'www-authenticate': 'Bearer error="invalid_token"' });
    metrics.text().then(
      (body) => {
        res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: unknown) => {
        log.error('metrics not collected', { err });
        refuse(500, 'metrics could not be collected; see the agent log');
      },
    );
  };
  const server = tls ? https.createServer({ cert: fs.readFileSync(config.tlsCert), key: fs.readFileSync(config.tlsKey) }, handler) : http.createServer(handler);
  server.keepAliveTimeout = 65_000; // longer than Prometheus's scrape interval, so one connection serves them all
  const i = config.metricsListen.lastIndexOf(':');
  const host = config.metricsListen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const port = Number(config.metricsListen.slice(i + 1));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new ConfigError('AGENT_METRICS_LISTEN', `cannot listen on ${config.metricsListen}: ${err.code === 'EADDRINUSE' ? 'address in use (give each agent process its own, or "off")' : err.message}`)),
    );
    server.listen(port, host, resolve);
  });
  const bound = (server.address() as { port: number }).port;
  const url = `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${bound}${PATH}`;
  log.info('metrics listening', { url });
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
