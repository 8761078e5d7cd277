// A minimal OTLP/HTTP trace receiver: POST /v1/traces with a JSON body
// (OTEL_EXPORTER_OTLP_PROTOCOL=http/json). Prints one JSON line per span:
// {traceId, spanId, parentSpanId, name, service, kind, attributes, status, links, startMs, endMs}.
// Jaeger cannot run here; the tests point the agent at this instead.
//
//   node tools/otlp-receiver/dist/main.js --listen 0.0.0.0:4318
import * as http from 'node:http';

interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
interface KeyValue {
  key: string;
  value: AnyValue;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number;
  attributes?: KeyValue[];
  status?: { code?: number; message?: string };
  links?: Array<{ traceId: string; spanId: string }>;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
}
interface OtlpRequest {
  resourceSpans?: Array<{ resource?: { attributes?: KeyValue[] }; scopeSpans?: Array<{ spans?: OtlpSpan[] }> }>;
}

function flat(attrs: KeyValue[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const a of attrs ?? []) out[a.key] = a.value.stringValue ?? (a.value.intValue !== undefined ? Number(a.value.intValue) : (a.value.doubleValue ?? a.value.boolValue));
  return out;
}

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return (i >= 0 ? process.argv[i + 1] : undefined) ?? def;
};

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') return void res.end('ok');
  if (req.method !== 'POST' || req.url !== '/v1/traces') return void res.writeHead(404).end();
  if (!String(req.headers['content-type']).includes('json')) {
    return void res.writeHead(415, { 'content-type': 'text/plain' }).end('this receiver takes OTLP/HTTP JSON only (OTEL_EXPORTER_OTLP_PROTOCOL=http/json)\n');
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpRequest;
      for (const rs of body.resourceSpans ?? []) {
        const service = flat(rs.resource?.attributes)['service.name'];
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            process.stdout.write(
              JSON.stringify({
                traceId: s.traceId,
                spanId: s.spanId,
                parentSpanId: s.parentSpanId || undefined,
                name: s.name,
                service,
                kind: s.kind,
                attributes: flat(s.attributes),
                status: s.status?.code ?? 0,
                links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
                startMs: Number(BigInt(s.startTimeUnixNano ?? 0) / 1000n) / 1000,
                endMs: Number(BigInt(s.endTimeUnixNano ?? 0) / 1000n) / 1000,
              }) + '\n',
            );
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    } catch (err) {
      res.writeHead(400).end(String(err));
    }
  });
});

const [host, port] = arg('listen', '127.0.0.1:4318').split(':');
server.listen(Number(port), host, () => {
  const a = server.address();
  process.stdout.write(JSON.stringify({ listening: typeof a === 'object' && a ? `${host}:${a.port}` : '' }) + '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
process.on('SIGINT', () => server.close(() => process.exit(0)));
