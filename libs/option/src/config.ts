import * as os from 'node:os';
import * as path from 'node:path';

/** Thrown at startup for a bad setting; names the variable. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

function str(env: Env, name: string, def: string): string {
  const v = env[name];
  return v === undefined || v === '' ? def : v;
}

function int(env: Env, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(name, `expected an integer in [${min}, ${max}], got ${JSON.stringify(raw)}`);
  }
  return n;
}

function oneOf<T extends string>(env: Env, name: string, def: T, allowed: readonly T[]): T {
  const v = str(env, name, def);
  if (!(allowed as readonly string[]).includes(v)) {
    throw new ConfigError(name, `expected one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}

function address(env: Env, name: string, def: string): string {
  const v = str(env, name, def);
  if (v !== '' && !/^(unix:.+|[\w.-]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5})$/.test(v)) {
    throw new ConfigError(name, `expected host:port or unix:/path, got ${JSON.stringify(v)}`);
  }
  return v;
}

function bool(env: Env, name: string, def: boolean): boolean {
  const v = str(env, name, def ? 'true' : 'false').toLowerCase();
  if (['true', '1', 'yes'].includes(v)) return true;
  if (['false', '0', 'no'].includes(v)) return false;
  throw new ConfigError(name, `expected true or false, got ${JSON.stringify(v)}`);
}

/** A path setting: "off" turns it off (empty), a relative path is taken from the working directory. */
function optionalPath(env: Env, name: string, def: string): string {
  const v = str(env, name, def);
  return v === 'off' ? '' : path.resolve(v);
}

function fileSetting(env: Env, name: string): string {
  const v = str(env, name, '');
  return v === '' ? '' : path.resolve(v);
}

function pathList(env: Env, name: string): readonly string[] {
  const items = str(env, name, '').split(',').map((p) => p.trim()).filter(Boolean);
  for (const p of items) if (!path.isAbsolute(p)) throw new ConfigError(name, `expected absolute paths, got ${JSON.stringify(p)}`);
  return items;
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Every setting of every service, with its default. Each service reads the
 * part it needs; the daemon reads all of it once.
 */
export interface AgentConfig {
  /** AGENT_HOST_ID: this node's id on every report and record. Default: the hostname. */
  readonly hostId: string;
  /** AGENT_DATA_DIR: local state, logs of processes, the JSONL report file. Default: ./.agent-data */
  readonly dataDir: string;
  /** AGENT_LOG_LEVEL: debug | info | warn | error. Default: info. */
  readonly logLevel: LogLevel;
  /** AGENT_LISTEN: the apiserver's TCP address; "off" (empty here) disables it. Default: 127.0.0.1:50051. */
  readonly apiListen: string;
  /**
   * AGENT_METRICS_LISTEN: host:port of GET /metrics (Prometheus text format; a
   * reader or admin token is required); "off" (empty here) disables it. Default: 127.0.0.1:9464.
   */
  readonly metricsListen: string;
  /** AGENT_SOCKET: the apiserver's unix socket (whoever can open it is an admin); "off" (empty here) disables it. Default: <dataDir>/agent.sock */
  readonly socket: string;
  /** AGENT_SOCKET_GROUP: group (name or gid) of the unix socket, mode 0660. Default: the agent's own group (root when it runs as root). */
  readonly socketGroup: string;
  /** AGENT_TOKEN_DIR: admin.token and reader.token, made at first start (0600). Default: <dataDir>/auth */
  readonly tokenDir: string;
  /** AGENT_INTERNAL_TOKEN_FILE: the token the five services present to each other. Default: <tokenDir>/internal.token */
  readonly internalTokenFile: string;
  /** AGENT_TLS_CERT, AGENT_TLS_KEY: PEM files; both set turn TLS on for every TCP listener. */
  readonly tlsCert: string;
  readonly tlsKey: string;
  /** AGENT_TLS_CLIENT_CA: PEM CA; set, TCP clients must present a certificate it signed (mTLS). */
  readonly tlsClientCa: string;
  /**
   * AGENT_ALLOW_PLAINTEXT: true lets a TCP listener on a non-loopback address
   * run without TLS (tokens then cross the network in clear; compose's private
   * network is the one place meant for it). Default: false.
   */
  readonly allowPlaintext: boolean;
  /** AGENT_PROCESS_USER: who a process object runs as when its spec names nobody. Default: nobody. */
  readonly processUser: string;
  /** AGENT_PROCESS_ALLOW: comma-separated absolute executables or directories; empty: any executable. */
  readonly processAllow: readonly string[];
  /** AGENT_PROCESS_LOG_MAX_BYTES: a process log over it is rotated, one old copy kept (<log>.1); 0 disables the cap. Default: 10485760 (10 MiB). */
  readonly processLogMaxBytes: number;
  /**
   * AGENT_KUBECONFIG: the kubeconfig k8s objects use when their spec names
   * none. Default: $KUBECONFIG, else ~/.kube/config (read when first used).
   */
  readonly kubeconfig: string;
  /** AGENT_KUBECONFIG_ALLOW: comma-separated absolute kubeconfig files or directories a spec may name besides the default; empty: only the default. */
  readonly kubeconfigAllow: readonly string[];
  /** AGENT_K8S_READY_TIMEOUT_MS: how long a k8s create with wait_ready waits for ready (then answers PENDING), and a delete for the workload to be gone. Default: 60000. */
  readonly k8sReadyTimeoutMs: number;
  /** AGENT_HELM_BIN: the helm binary that renders charts (a path, or a name looked up in PATH). Default: helm. */
  readonly helmBin: string;
  /** AGENT_HELM_CHART_ALLOW: comma-separated absolute chart files or directories a spec may name; empty: any. */
  readonly helmChartAllow: readonly string[];
  /** AGENT_NODE_NAME: this host's Kubernetes node name; k8s pods bound to it get figures from their cgroups. Default: the hostname. */
  readonly nodeName: string;
  /** AGENT_DISCOVER_MANAGE: true lets Update and Delete act on discovered containers. Default: false (read-only). */
  readonly discoverManage: boolean;
  /** AGENT_NFT_TABLE: the nftables table (inet family) the agent owns for network segmentation; it touches no other. Default: agent. */
  readonly nftTable: string;
  /** AGENT_NFLOG_GROUP: the NFLOG group the dataplane logs new connections to (flows). Default: 100. */
  readonly nflogGroup: number;
  /** AGENT_FLOW_WINDOW_MS: flows are aggregated per (src, dst, protocol, port, verdict, rule) over windows this long. Default: 500. */
  readonly flowWindowMs: number;
  /** AGENT_<MODULE>_LISTEN: an internal service's own address when run alone. Default: 127.0.0.1:0. */
  readonly agentcoreListen: string;
  readonly managerListen: string;
  readonly collectorListen: string;
  readonly reporterListen: string;
  /** AGENT_<MODULE>_ADDR: where the other services find one (separate processes). */
  readonly agentcoreAddr: string;
  readonly managerAddr: string;
  readonly collectorAddr: string;
  readonly reporterAddr: string;
  /** AGENT_UPSTREAM: the ReportSink (Bus Out) address; empty: none, reports go to the JSONL file. */
  readonly upstream: string;
  /** AGENT_UPSTREAM_TOKEN_FILE: a token sent to the upstream as "authorization: Bearer"; empty: none. */
  readonly upstreamTokenFile: string;
  /** AGENT_REPORT_FILE: JSON Lines of every report sent; "off" disables. Default: <dataDir>/reports.jsonl */
  readonly reportFile: string;
  /** AGENT_REPORT_FILE_MAX_BYTES: the report file is rotated before it grows past it, one old copy kept (<file>.1); 0 disables the cap. Default: 67108864 (64 MiB). */
  readonly reportFileMaxBytes: number;
  /** AGENT_SPOOL_MAX_BYTES: the Bus Out spool (<dataDir>/spool) at most; past it the oldest samples are dropped, counted and told upstream as a gap; object changes never are. Default: 268435456 (256 MiB). */
  readonly spoolMaxBytes: number;
  /** AGENT_CGROUP_PARENT: the agent's own cgroup root, under each hierarchy. Default: agent. */
  readonly cgroupParent: string;
  /** AGENT_CGROUP_MOUNT: where cgroup hierarchies are mounted. Default: /sys/fs/cgroup. */
  readonly cgroupMount: string;
  /** DOCKER_HOST (unix:// only) or AGENT_DOCKER_SOCKET. Default: /var/run/docker.sock. */
  readonly dockerSocket: string;
  /** AGENT_HEARTBEAT_MS: period of the host collect and report tasks. Default: 10000. */
  readonly heartbeatMs: number;
  /** AGENT_COLLECT_BASE_MS: the low base rate of objects nobody pushes. Default: 10000. */
  readonly collectBaseMs: number;
  /** AGENT_MIN_INTERVAL_MS: the smallest PushOn interval accepted. Default: 50. */
  readonly minIntervalMs: number;
  /** AGENT_STOP_GRACE_MS: SIGTERM to SIGKILL for processes and containers. Default: 3000. */
  readonly stopGraceMs: number;
  /** AGENT_WAIT_TIMEOUT_MS: the longest a wait=true call waits. Default: 120000. */
  readonly waitTimeoutMs: number;
  /**
   * AGENT_EVENT_RETENTION: how many finished events (and their request_ids)
   * are kept, in the store, for GetEvent and idempotent Create. Default: 10000.
   */
  readonly eventRetention: number;
  /** AGENT_EVENT_RETENTION_MS: the longest a finished event is kept. Default: 86400000 (a day). */
  readonly eventRetentionMs: number;
  /**
   * AGENT_DISCOVER: which containers the agent did not create it adopts as
   * objects: "*" (all, the default), "off", or label selectors that must all
   * match, comma-separated ("key" or "key=value").
   */
  readonly discover: string;
  /** AGENT_CLUSTER_URL: nats://host:port[,...] of a NATS server with JetStream; empty: the embedded store. */
  readonly clusterUrl: string;
  /** AGENT_POLICY_PULL_MS: how often config.network is checked for a new revision. Default: 10000. */
  readonly policyPullMs: number;
  /** AGENT_STATS_UPLOAD_MS: how often this host's summary goes to the store (stats.<host>). Default: 30000. */
  readonly statsUploadMs: number;
  /** AGENT_HEALTH_MS: how often Docker, the store and the worker are checked. Default: 60000. */
  readonly healthMs: number;
  /** AGENT_CLEANUP_MS: how often stale hosts are marked and old deleted objects dropped. Default: 3600000. */
  readonly cleanupMs: number;
}

function clusterUrl(env: Env): string {
  const v = str(env, 'AGENT_CLUSTER_URL', '');
  if (v !== '' && !v.split(',').every((u) => /^(nats|tls):\/\/[\w.-]+(:\d{1,5})?$/.test(u))) {
    throw new ConfigError('AGENT_CLUSTER_URL', `expected nats://host:port[,nats://...], got ${JSON.stringify(v)}`);
  }
  return v;
}

/** An nft identifier: it goes into nft commands as a table name. */
function nftTable(env: Env): string {
  const v = str(env, 'AGENT_NFT_TABLE', 'agent');
  if (!/^[a-zA-Z][a-zA-Z0-9_]{0,31}$/.test(v)) throw new ConfigError('AGENT_NFT_TABLE', `a letter, then letters, digits or "_", at most 32: ${JSON.stringify(v)}`);
  return v;
}

function discoverSpec(env: Env): string {
  const v = str(env, 'AGENT_DISCOVER', '*');
  if (v !== '*' && v !== 'off' && !/^[A-Za-z0-9_./-]+(=[^,]*)?(,[A-Za-z0-9_./-]+(=[^,]*)?)*$/.test(v)) {
    throw new ConfigError('AGENT_DISCOVER', `expected "*", "off" or label selectors like app=web,team; got ${JSON.stringify(v)}`);
  }
  return v;
}

export function loadConfig(env: Env = process.env): AgentConfig {
  const dataDir = path.resolve(str(env, 'AGENT_DATA_DIR', '.agent-data'));
  const dockerHost = str(env, 'DOCKER_HOST', '');
  if (dockerHost !== '' && !dockerHost.startsWith('unix://')) {
    throw new ConfigError('DOCKER_HOST', 'only unix:// sockets are supported');
  }
  const listenDefault = '127.0.0.1:0';
  const tokenDir = path.resolve(str(env, 'AGENT_TOKEN_DIR', path.join(dataDir, 'auth')));
  if ((str(env, 'AGENT_TLS_CERT', '') === '') !== (str(env, 'AGENT_TLS_KEY', '') === '')) {
    throw new ConfigError(str(env, 'AGENT_TLS_CERT', '') === '' ? 'AGENT_TLS_CERT' : 'AGENT_TLS_KEY', 'AGENT_TLS_CERT and AGENT_TLS_KEY go together');
  }
  if (str(env, 'AGENT_TLS_CLIENT_CA', '') !== '' && str(env, 'AGENT_TLS_CERT', '') === '') {
    throw new ConfigError('AGENT_TLS_CLIENT_CA', 'needs AGENT_TLS_CERT and AGENT_TLS_KEY (mTLS is TLS with client certificates)');
  }
  return {
    hostId: str(env, 'AGENT_HOST_ID', os.hostname()),
    dataDir,
    logLevel: oneOf(env, 'AGENT_LOG_LEVEL', 'info', LOG_LEVELS),
    apiListen: str(env, 'AGENT_LISTEN', '') === 'off' ? '' : address(env, 'AGENT_LISTEN', '127.0.0.1:50051'),
    metricsListen: metricsListen(env),
    socket: optionalPath(env, 'AGENT_SOCKET', path.join(dataDir, 'agent.sock')),
    socketGroup: str(env, 'AGENT_SOCKET_GROUP', ''),
    tokenDir,
    internalTokenFile: optionalPath(env, 'AGENT_INTERNAL_TOKEN_FILE', path.join(tokenDir, 'internal.token')),
    tlsCert: fileSetting(env, 'AGENT_TLS_CERT'),
    tlsKey: fileSetting(env, 'AGENT_TLS_KEY'),
    tlsClientCa: fileSetting(env, 'AGENT_TLS_CLIENT_CA'),
    allowPlaintext: bool(env, 'AGENT_ALLOW_PLAINTEXT', false),
    processUser: str(env, 'AGENT_PROCESS_USER', 'nobody'),
    processAllow: pathList(env, 'AGENT_PROCESS_ALLOW'),
    processLogMaxBytes: int(env, 'AGENT_PROCESS_LOG_MAX_BYTES', 10_485_760, 0, 1_099_511_627_776),
    kubeconfig: path.resolve(str(env, 'AGENT_KUBECONFIG', str(env, 'KUBECONFIG', path.join(os.homedir(), '.kube', 'config')))),
    kubeconfigAllow: pathList(env, 'AGENT_KUBECONFIG_ALLOW'),
    k8sReadyTimeoutMs: int(env, 'AGENT_K8S_READY_TIMEOUT_MS', 60_000, 100, 3_600_000),
    helmBin: str(env, 'AGENT_HELM_BIN', 'helm'),
    helmChartAllow: pathList(env, 'AGENT_HELM_CHART_ALLOW'),
    nodeName: str(env, 'AGENT_NODE_NAME', os.hostname()).toLowerCase(),
    discoverManage: bool(env, 'AGENT_DISCOVER_MANAGE', false),
    nftTable: nftTable(env),
    nflogGroup: int(env, 'AGENT_NFLOG_GROUP', 100, 1, 65_535),
    flowWindowMs: int(env, 'AGENT_FLOW_WINDOW_MS', 500, 50, 60_000),
    agentcoreListen: address(env, 'AGENT_AGENTCORE_LISTEN', listenDefault),
    managerListen: address(env, 'AGENT_MANAGER_LISTEN', listenDefault),
    collectorListen: address(env, 'AGENT_COLLECTOR_LISTEN', listenDefault),
    reporterListen: address(env, 'AGENT_REPORTER_LISTEN', listenDefault),
    agentcoreAddr: address(env, 'AGENT_AGENTCORE_ADDR', ''),
    managerAddr: address(env, 'AGENT_MANAGER_ADDR', ''),
    collectorAddr: address(env, 'AGENT_COLLECTOR_ADDR', ''),
    reporterAddr: address(env, 'AGENT_REPORTER_ADDR', ''),
    upstream: address(env, 'AGENT_UPSTREAM', ''),
    upstreamTokenFile: fileSetting(env, 'AGENT_UPSTREAM_TOKEN_FILE'),
    reportFile: str(env, 'AGENT_REPORT_FILE', path.join(dataDir, 'reports.jsonl')),
    reportFileMaxBytes: int(env, 'AGENT_REPORT_FILE_MAX_BYTES', 67_108_864, 0, 1_099_511_627_776),
    spoolMaxBytes: int(env, 'AGENT_SPOOL_MAX_BYTES', 268_435_456, 1_048_576, 1_099_511_627_776),
    cgroupParent: str(env, 'AGENT_CGROUP_PARENT', 'agent'),
    cgroupMount: str(env, 'AGENT_CGROUP_MOUNT', '/sys/fs/cgroup'),
    dockerSocket: dockerHost !== '' ? dockerHost.slice('unix://'.length) : str(env, 'AGENT_DOCKER_SOCKET', '/var/run/docker.sock'),
    heartbeatMs: int(env, 'AGENT_HEARTBEAT_MS', 10_000, 100, 3_600_000),
    collectBaseMs: int(env, 'AGENT_COLLECT_BASE_MS', 10_000, 100, 3_600_000),
    minIntervalMs: int(env, 'AGENT_MIN_INTERVAL_MS', 50, 1, 60_000),
    stopGraceMs: int(env, 'AGENT_STOP_GRACE_MS', 3_000, 0, 600_000),
    waitTimeoutMs: int(env, 'AGENT_WAIT_TIMEOUT_MS', 120_000, 1_000, 3_600_000),
    eventRetention: int(env, 'AGENT_EVENT_RETENTION', 10_000, 100, 10_000_000),
    eventRetentionMs: int(env, 'AGENT_EVENT_RETENTION_MS', 86_400_000, 1_000, 31_536_000_000),
    discover: discoverSpec(env),
    clusterUrl: clusterUrl(env),
    policyPullMs: int(env, 'AGENT_POLICY_PULL_MS', 10_000, 100, 86_400_000),
    statsUploadMs: int(env, 'AGENT_STATS_UPLOAD_MS', 30_000, 100, 86_400_000),
    healthMs: int(env, 'AGENT_HEALTH_MS', 60_000, 100, 86_400_000),
    cleanupMs: int(env, 'AGENT_CLEANUP_MS', 3_600_000, 100, 604_800_000),
  };
}

function metricsListen(env: Env): string {
  const v = str(env, 'AGENT_METRICS_LISTEN', '127.0.0.1:9464');
  if (v === 'off') return '';
  if (!/^([\w.-]+|\[[0-9a-fA-F:]+\]):\d{1,5}$/.test(v)) throw new ConfigError('AGENT_METRICS_LISTEN', `expected host:port or off, got ${JSON.stringify(v)}`);
  return v;
}

/** A service run on its own needs a fixed address: ":0" is only for the daemon's loopback wiring. */
export function requireListen(value: string, variable: string): string {
  if (value.endsWith(':0')) throw new ConfigError(variable, 'required (host:port) when this service runs on its own');
  return value;
}

/** Fails loudly when a service that runs alone was not told where a peer is. */
export function requireAddr(value: string, variable: string): string {
  if (value === '') throw new ConfigError(variable, 'required when this service runs on its own');
  return value;
}
