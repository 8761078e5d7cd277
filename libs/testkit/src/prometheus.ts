// A real Prometheus (Debian's prometheus), scraping what a test points it at.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort, waitFor } from './harness';

export interface Sample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Prometheus {
  /** An instant query: its vector. */
  query(expr: string): Promise<Sample[]>;
  /** The scrape targets' health ("up", "down", "unknown") and last error. */
  targets(): Promise<Array<{ health: string; lastError: string; scrapeUrl: string }>>;
  stop(): Promise<void>;
}

/** Starts Prometheus scraping target (host:port) every second, with the bearer token in tokenFile. */
export async function startPrometheus(target: { address: string; tokenFile: string; metricsPath?: string }): Promise<Prometheus> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-prom-'));
  const port = await freePort();
  const config = path.join(dir, 'prometheus.yml');
  fs.writeFileSync(
    config,
    [
      'global: { scrape_interval: 1s, scrape_timeout: 900ms }',
      'scrape_configs:',
      '  - job_name: agent',
      `    metrics_path: ${target.metricsPath ?? '/metrics'}`,
      `    authorization: { credentials_file: ${JSON.stringify(target.tokenFile)} }`,
      `    static_configs: [{ targets: [${JSON.stringify(target.address)}] }]`,
      '',
    ].join('\n'),
  );
  const child = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => void (stderr = (stderr + d.toString()).slice(-4000)));
  const base = `http://127.0.0.1:${port}`;
  const get = async (p: string): Promise<unknown> => {
    const res = await fetch(`${base}${p}`);
    const body = (await res.json()) as { status: string; data: unknown; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${p}: ${body.error ?? res.status}`);
    return body.data;
  };
  await waitFor('prometheus ready', async () => {
    if (child.exitCode !== null) throw new Error(`prometheus exited ${child.exitCode}: ${stderr}`);
    return (await fetch(`${base}/-/ready`).then((r) => r.ok, () => false)) || undefined;
  }, 30_000, 200);
  return {
    query: async (expr) => {
      const data = (await get(`/api/v1/query?query=${encodeURIComponent(expr)}`)) as { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
      return data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    },
    targets: async () => ((await get('/api/v1/targets')) as { activeTargets: Array<{ health: string; lastError: string; scrapeUrl: string }> }).activeTargets,
    stop: async () => {
      if (child.exitCode === null) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await gone;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
