// grpc.health.v1 probe for container health checks:
//   node libs/grpc-kit/dist/healthcheck.js <host:port> [service]
// Exits 0 when the service (or the whole server) is SERVING, 1 otherwise.
import { credentials, Metadata } from '@grpc/grpc-js';
import { healthv1 } from '@agent/proto';

const [address = '127.0.0.1:50051', service = ''] = process.argv.slice(2);
const client = new healthv1.HealthClient(address, credentials.createInsecure());
client.check({ service }, new Metadata(), { deadline: Date.now() + 3_000 }, (err, res) => {
  const serving = !err && res.status === healthv1.HealthCheckResponse_ServingStatus.SERVING;
  if (!serving) process.stderr.write(`${address} ${service || '(server)'}: ${err ? err.message : healthv1.HealthCheckResponse_ServingStatus[res.status]}\n`);
  client.close();
  process.exit(serving ? 0 : 1);
});
