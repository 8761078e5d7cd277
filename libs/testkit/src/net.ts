import { execFileSync, spawnSync } from 'node:child_process';
import * as net from 'node:net';

/** Whether a TCP connection from this process to host:port completes within ms (a drop shows as a timeout). */
export function tcpConnects(host: string, port: number, opts: { ms?: number; localAddress?: string } = {}): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress: opts.localAddress });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(opts.ms ?? 700, () => done(false));
    s.on('connect', () => done(true));
    s.on('error', () => done(false));
  });
}

/**
 * An nft table of the test's own whose output chain logs what rules match
 * to NFLOG (each rule: `<match> log prefix "..." group N`), made afresh;
 * drop() removes it (also when it is already gone).
 */
export function outputLogTable(table: string, rules: readonly string[]): { drop(): void } {
  const drop = (): void => void spawnSync('nft', ['delete', 'table', 'inet', table], { stdio: 'ignore' });
  drop();
  execFileSync('nft', ['-f', '-'], {
    input: `table inet ${table} {
      chain output {
        type filter hook output priority 0; policy accept;
        ${rules.join('\n        ')}
      }
    }`,
  });
  return { drop };
}

/** The pids of the ulogd processes started with this config file. */
export function ulogdPids(conf: string): number[] {
  const r = spawnSync('pgrep', ['-f', conf], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}
