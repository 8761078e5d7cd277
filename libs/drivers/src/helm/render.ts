import { spawn } from 'node:child_process';
import { loadAll } from 'js-yaml';
import { FailedPreconditionError, InvalidArgumentError, UnavailableError } from '@agent/grpc-kit';
import type { KubeObject } from '../k8s/workload';
import { checkChartAllowed, type HelmWorkload } from './release';

// A chart rendered as Argo CD does it: `helm template`, then the agent
// applies what it printed. Tests and hooks are left out (nothing runs them).
// The values go in on stdin: no file holds them. helm runs as the agent
// (root) and follows symlinks inside a chart: AGENT_HELM_CHART_ALLOW is
// where charts the operator trusts live.

export interface RenderOptions {
  /** The helm binary: a path, or a name looked up in PATH. */
  readonly bin: string;
  /** Charts must lie inside these; empty: any. */
  readonly chartAllow: readonly string[];
  readonly timeoutMs: number;
}

export const RENDER_LIMITS = { outputBytes: 8 * 1024 * 1024, resources: 500 } as const;

/** The resources the chart renders for the release in namespace, in the order helm printed them. */
export async function render(w: HelmWorkload, namespace: string, opts: RenderOptions): Promise<KubeObject[]> {
  checkChartAllowed(opts.chartAllow, w.chart);
  const out = await run(opts, ['template', w.release, w.chart, '--namespace', namespace, '--skip-tests', '--no-hooks', '--values', '-'], w.values);
  let docs: unknown[];
  try {
    docs = loadAll(out).filter((d) => d !== null && d !== undefined);
  } catch (err) {
    throw new InvalidArgumentError('spec.helm.chart', `helm rendered no valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (docs.length > RENDER_LIMITS.resources) throw new InvalidArgumentError('spec.helm.chart', `renders ${docs.length} resources, more than ${RENDER_LIMITS.resources}`);
  const seen = new Set<string>();
  return docs.map((d, i) => {
    const o = d as Partial<KubeObject>;
    const name = o.metadata?.name;
    if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string' || typeof name !== 'string' || name === '') {
      throw new InvalidArgumentError('spec.helm.chart', `rendered resource ${i} has no apiVersion, kind or metadata.name`);
    }
    const key = `${o.apiVersion}/${o.kind}/${o.metadata?.namespace ?? ''}/${name}`;
    if (seen.has(key)) throw new InvalidArgumentError('spec.helm.chart', `renders ${o.kind} ${name} twice`);
    seen.add(key);
    return o as KubeObject;
  });
}

/** Runs helm; what it says on failure is the caller's mistake (a chart or values it cannot render). */
function run(opts: RenderOptions, args: string[], stdin: string): Promise<string> {
  return new Promise((resolve, reject) => {
    // Helm needs no secret of the agent's: its own settings (HELM_*), where to find things, nothing else.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('HELM_') || ['PATH', 'HOME', 'TMPDIR'].includes(k)));
    const child = spawn(opts.bin, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let failure: Error | undefined;
    const timer = setTimeout(() => {
      failure = new UnavailableError(`helm template did not finish in ${opts.timeoutMs} ms`);
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      size += b.length;
      if (size > RENDER_LIMITS.outputBytes && !failure) {
        failure = new InvalidArgumentError('spec.helm.chart', `renders more than ${RENDER_LIMITS.outputBytes} bytes`);
        child.kill('SIGKILL');
      }
      if (!failure) out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (err.reduce((n, x) => n + x.length, 0) < 64 * 1024) err.push(b);
    });
    child.stdin.on('error', () => undefined); // helm may exit before reading its values
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(e.code === 'ENOENT' ? new FailedPreconditionError(`AGENT_HELM_BIN: ${opts.bin} not found on the agent's host`) : e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (failure) return reject(failure);
      if (code === 0) return resolve(Buffer.concat(out).toString('utf8'));
      const said = Buffer.concat(err).toString('utf8').trim().replace(/^Error: /, '');
      // "-" is the values, on stdin: helm could not read them. Anything else is the chart's rendering (with those values).
      const field = /failed to parse -:/.test(said) ? 'spec.helm.values' : 'spec.helm.chart';
      reject(new InvalidArgumentError(field, `helm template failed: ${said.split('\n').slice(0, 5).join(' ')}`));
    });
    child.stdin.end(stdin);
  });
}
