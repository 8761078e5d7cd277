// One port, two protocols: kubectl (client-go) only sends a bearer token over
// TLS, so the fake answers HTTPS with a throwaway self-signed certificate, and
// plain HTTP on the same port for tests that use fetch.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Listener {
  readonly port: number;
  /** The certificate (PEM), which is also its own CA. */
  readonly ca: string;
  close(): Promise<void>;
}

let cached: { key: string; cert: string } | undefined;

/** A self-signed certificate for 127.0.0.1 (openssl), made once per process. */
function certificate(): { key: string; cert: string } {
  if (cached) return cached;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-kube-tls-'));
  try {
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '7', '-subj', '/CN=fake-kube', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    cached = { key: fs.readFileSync(key, 'utf8'), cert: fs.readFileSync(cert, 'utf8') };
    return cached;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Listens on 127.0.0.1 (a free port); a connection starting with a TLS handshake goes to HTTPS. */
export async function listen(handler: http.RequestListener): Promise<Listener> {
  const { key, cert } = certificate();
  const plain = http.createServer(handler);
  const secure = https.createServer({ key, cert }, handler);
  const sockets = new Set<net.Socket>();
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // A client gone before its first byte must not take the process down.
    socket.on('error', () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      (first[0] === 0x16 ? secure : plain).emit('connection', socket);
      process.nextTick(() => socket.resume());
    });
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: (front.address() as net.AddressInfo).port,
    ca: cert,
    close: () =>
      new Promise<void>((resolve) => {
        front.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
