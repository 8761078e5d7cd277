export {
  ROOT,
  BUSYBOX,
  freePort,
  startAgent,
  startNats,
  startDockerProxy,
  startSeparateAgent,
  readTokenFile,
  startSink,
  startOtlpReceiver,
  bufCurl,
  bufTarget,
  api,
  waitFor,
  sh,
  memoryLimitFile,
  cpuQuotaOf,
  isAlive,
  cpuSeconds,
  removeCgroupParent,
} from './harness';
export type { Agent, Sink, Receiver, ReceivedSpan, CurlResult, CurlOpts, LogLine } from './harness';
export { apiClient, rawCall } from './client';
export { fillDisk, mountTmpfs, type Tmpfs } from './disk';
export { blockDevices } from './devices';
export type { Api, Outcome } from './client';
export { outputLogTable, tcpConnects, ulogdPids } from './net';
export { startFakeKube, kubeTools } from './kube';
export type { FakeKube, FakeKubeOptions, KubeTools, KubeObject } from './kube';
export { startPrometheus, type Prometheus, type Sample } from './prometheus';
export { scratchDir } from './scratch';
