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
