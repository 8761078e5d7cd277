import { loadAll } from 'js-yaml';
import { PermissionDeniedError } from '@agent/grpc-kit';
import { insideAllowList } from '../exec-policy';
import { fail, maxLen, REDACTED } from '../spec-checks';

// KIND_K8S's part of a spec: one Kubernetes workload, as a manifest, and
// where to apply it. Checked here without a cluster; the cluster's own
// checks (422) come back from the apply naming the manifest's field.

/** KIND_K8S's part of a spec (agent.v1.K8sSpec). */
export interface K8sWorkload extends KubePlace {
  /** A kubeconfig file; '' = the agent's (AGENT_KUBECONFIG). */
  readonly kubeconfig: string;
  /** A context of it; '' = its current context. */
  readonly context: string;
  /** '' = the manifest's, else the context's, else "default". */
  readonly namespace: string;
  /** One workload, YAML or JSON. */
  readonly manifest: string;
  /** Create answers once the workload is ready, not once it is applied. */
  readonly waitReady: boolean;
}

/** What an Update may change besides limits (agent.v1.K8sUpdate). */
export interface K8sChange {
  readonly replicas?: number;
  readonly image: string;
  readonly container: string;
}

/** A Kubernetes object, as JSON. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  [k: string]: unknown;
}

/** The workload kinds a manifest may hold, with where the API serves them. */
export const WORKLOAD_TYPES = {
  Deployment: { apiVersion: 'apps/v1', plural: 'deployments', scalable: true, podTemplate: true },
  StatefulSet: { apiVersion: 'apps/v1', plural: 'statefulsets', scalable: true, podTemplate: true },
  Job: { apiVersion: 'batch/v1', plural: 'jobs', scalable: false, podTemplate: true },
  Pod: { apiVersion: 'v1', plural: 'pods', scalable: false, podTemplate: false },
} as const;
export type WorkloadType = keyof typeof WORKLOAD_TYPES;

export const K8S_LIMITS = { manifestBytes: 256 * 1024, containers: 32 } as const;

/** RFC 1123 subdomain (object names) and label (namespaces, container names). */
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const IMAGE = /^[a-z0-9][a-z0-9._\-/:@]*$/i;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The one object of a manifest; anything else is INVALID_ARGUMENT at field. */
export function parseManifest(text: string, field: string): KubeObject {
  if (text.trim() === '') fail(field, 'required: one Deployment, StatefulSet, Job or Pod as YAML or JSON');
  if (Buffer.byteLength(text) > K8S_LIMITS.manifestBytes) fail(field, `larger than ${K8S_LIMITS.manifestBytes} bytes`);
  let docs: unknown[];
  try {
    docs = loadAll(text, undefined, { json: true }).filter((d) => d !== null && d !== undefined);
  } catch (err) {
    fail(field, `not YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (docs.length !== 1) fail(field, `must hold exactly one object, holds ${docs.length}`);
  const obj = docs[0];
  if (!isObject(obj)) fail(field, 'must be an object');
  const kind = obj.kind;
  if (typeof kind !== 'string' || !(kind in WORKLOAD_TYPES)) fail(`${field}.kind`, `one of ${Object.keys(WORKLOAD_TYPES).join(', ')}; got ${JSON.stringify(kind)}`);
  const type = WORKLOAD_TYPES[kind as WorkloadType];
  if (obj.apiVersion !== type.apiVersion) fail(`${field}.apiVersion`, `${kind} is ${type.apiVersion}; got ${JSON.stringify(obj.apiVersion)}`);
  const meta = obj.metadata;
  if (!isObject(meta)) fail(`${field}.metadata`, 'required');
  if (typeof meta.name !== 'string' || meta.name === '') fail(`${field}.metadata.name`, 'required');
  if (meta.name.length > 253 || !SUBDOMAIN.test(meta.name)) fail(`${field}.metadata.name`, 'lower case letters, digits, "-" and "." (RFC 1123), at most 253');
  if (meta.namespace !== undefined && (typeof meta.namespace !== 'string' || !LABEL.test(meta.namespace))) fail(`${field}.metadata.namespace`, 'not a valid namespace');
  const containers = containersOf(obj as KubeObject);
  if (containers.length === 0) fail(`${field}.${podSpecPath(kind as WorkloadType)}.containers`, 'required: at least one container');
  if (containers.length > K8S_LIMITS.containers) fail(`${field}.${podSpecPath(kind as WorkloadType)}.containers`, `more than ${K8S_LIMITS.containers}`);
  containers.forEach((c, i) => {
    const at = `${field}.${podSpecPath(kind as WorkloadType)}.containers[${i}]`;
    if (typeof c.name !== 'string' || !LABEL.test(c.name)) fail(`${at}.name`, 'required: a DNS label');
    if (typeof c.image !== 'string' || c.image.length > 255 || !IMAGE.test(c.image)) fail(`${at}.image`, 'required: a valid image reference');
  });
  return obj as KubeObject;
}

/** Where the pod spec sits in a workload of the kind. */
export function podSpecPath(kind: WorkloadType): string {
  return WORKLOAD_TYPES[kind].podTemplate ? 'spec.template.spec' : 'spec';
}

/** The containers of a workload's pods. */
export function containersOf(obj: KubeObject): Array<Record<string, unknown>> {
  const spec = isObject(obj.spec) ? obj.spec : undefined;
  const podSpec = WORKLOAD_TYPES[obj.kind as WorkloadType]?.podTemplate ? (isObject(spec?.template) && isObject(spec.template.spec) ? spec.template.spec : undefined) : spec;
  const list = podSpec?.containers;
  return Array.isArray(list) ? list.filter(isObject) : [];
}

/** Which cluster and namespace: what a k8s and a helm spec share. */
export interface KubePlace {
  readonly kubeconfig: string;
  readonly context: string;
  readonly namespace: string;
}

/** Syntax checks of where a spec goes, at field ("spec.k8s"). */
export function validatePlace(w: KubePlace, field: string): void {
  if (w.kubeconfig !== '' && !w.kubeconfig.startsWith('/')) fail(`${field}.kubeconfig`, 'an absolute path');
  maxLen(`${field}.kubeconfig`, w.kubeconfig, 4096);
  maxLen(`${field}.context`, w.context, 253);
  if (/[\0-\x1f]/.test(w.context)) fail(`${field}.context`, 'must not contain control characters');
  if (w.namespace !== '' && !isDnsLabel(w.namespace)) fail(`${field}.namespace`, 'lower case letters, digits and "-" (RFC 1123 label), at most 63');
}

/** A DNS label (RFC 1123) of at most max characters. */
export const isDnsLabel = (s: string, max = 63): boolean => s.length <= max && LABEL.test(s);

/** Syntax checks of a k8s spec at field ("spec.k8s"). */
export function validateK8s(w: K8sWorkload, field: string): void {
  validatePlace(w, field);
  const obj = parseManifest(w.manifest, `${field}.manifest`);
  const ns = obj.metadata.namespace;
  if (ns !== undefined && w.namespace !== '' && ns !== w.namespace) fail(`${field}.namespace`, `the manifest says namespace ${ns}`);
}

/** The kubeconfig files a spec may name: the agent's own and AGENT_KUBECONFIG_ALLOW. */
export interface KubePolicy {
  readonly kubeconfig: string;
  readonly kubeconfigAllow: readonly string[];
}

/** Host checks: a kubeconfig other than the agent's own must be allowed (the agent would act with its credentials). */
export function admitK8s<W extends K8sWorkload>(w: W, policy: KubePolicy): W {
  admitKubeconfig(w, policy, 'spec.k8s');
  return w;
}

/** A kubeconfig other than the agent's own must be in AGENT_KUBECONFIG_ALLOW (field: "spec.k8s"). */
export function admitKubeconfig(w: KubePlace, policy: KubePolicy, field: string): void {
  if (w.kubeconfig !== '' && !insideAllowList([policy.kubeconfig, ...policy.kubeconfigAllow], w.kubeconfig)) {
    throw new PermissionDeniedError(`${field}.kubeconfig: ${w.kubeconfig} is not the agent's kubeconfig nor in AGENT_KUBECONFIG_ALLOW`);
  }
}

/** A k8s workload as a reader sees it: its containers' variables' names, not their values. */
export function redactK8s<W extends K8sWorkload>(w: W): W {
  let obj: KubeObject;
  try {
    obj = parseManifest(w.manifest, 'manifest');
  } catch {
    return { ...w, manifest: '' };
  }
  for (const c of containersOf(obj)) {
    if (Array.isArray(c.env)) c.env = c.env.map((e: unknown) => (isObject(e) && typeof e.value === 'string' ? { ...e, value: REDACTED } : e));
  }
  return { ...w, manifest: JSON.stringify(obj) };
}

/** The workload after an Update's own changes: replicas and images rewritten in its manifest. Bad changes name their field at field ("k8s"). */
export function changeK8s<W extends K8sWorkload>(w: W, change: K8sChange, field: string): W {
  const obj = parseManifest(w.manifest, 'spec.k8s.manifest');
  const type = WORKLOAD_TYPES[obj.kind as WorkloadType];
  if (change.replicas !== undefined) {
    if (!type.scalable) fail(`${field}.replicas`, `a ${obj.kind} has no replicas`);
    if (!Number.isInteger(change.replicas) || change.replicas < 0 || change.replicas > 10_000) fail(`${field}.replicas`, 'an integer from 0 to 10000');
    (obj.spec ??= {}).replicas = change.replicas;
  }
  if (change.container !== '' && change.image === '') fail(`${field}.image`, 'required with container');
  if (change.image !== '') {
    if (change.image.length > 255 || !IMAGE.test(change.image)) fail(`${field}.image`, 'not a valid image reference');
    const targets = containersOf(obj).filter((c) => change.container === '' || c.name === change.container);
    if (targets.length === 0) fail(`${field}.container`, `no container ${JSON.stringify(change.container)} in the manifest`);
    for (const c of targets) c.image = change.image;
  }
  return { ...w, manifest: JSON.stringify(obj) };
}
