// What the apiserver fills in and refuses on a write: field defaults, a
// Service's cluster IP, a Job's selector, and the validation failures a
// driver is most likely to hit (422 Invalid).
import { child, deepEqual, isObject, listAt, objAt, stringMap, strAt, type JsonObject, type KubeObject } from './json';
import { invalid, type Resource } from './resources';
import { selectorMatches } from './selectors';

const setDefault = (o: JsonObject, key: string, value: unknown): void => {
  if (o[key] === undefined) o[key] = value;
};

function containerDefaults(c: unknown): void {
  if (!isObject(c)) return;
  const image = strAt(c, 'image') ?? '';
  const tag = image.includes('@') ? 'digest' : (/:([^/:]+)$/.exec(image)?.[1] ?? 'latest');
  setDefault(c, 'imagePullPolicy', tag === 'latest' ? 'Always' : 'IfNotPresent');
  setDefault(c, 'terminationMessagePath', '/dev/termination-log');
  setDefault(c, 'terminationMessagePolicy', 'File');
  setDefault(c, 'resources', {});
  for (const p of listAt(c, 'ports')) if (isObject(p)) setDefault(p, 'protocol', 'TCP');
}

function podSpecDefaults(spec: JsonObject, restartPolicy: string | undefined): void {
  if (restartPolicy) setDefault(spec, 'restartPolicy', restartPolicy);
  setDefault(spec, 'terminationGracePeriodSeconds', 30);
  setDefault(spec, 'dnsPolicy', 'ClusterFirst');
  setDefault(spec, 'schedulerName', 'default-scheduler');
  setDefault(spec, 'securityContext', {});
  for (const c of [...listAt(spec, 'initContainers'), ...listAt(spec, 'containers')]) containerDefaults(c);
}

/** Guaranteed when every container's requests equal its limits (cpu and memory), Burstable when any is set. */
export function qosClass(podSpec: unknown): string {
  const containers = listAt(podSpec, 'containers');
  const res = containers.map((c) => ({ req: stringMap(objAt(c, 'resources', 'requests')), lim: stringMap(objAt(c, 'resources', 'limits')) }));
  if (res.every((r) => Object.keys(r.req).length === 0 && Object.keys(r.lim).length === 0)) return 'BestEffort';
  const guaranteed = res.every((r) => ['cpu', 'memory'].every((k) => r.lim[k] !== undefined && (r.req[k] ?? r.lim[k]) === r.lim[k]));
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

/** Hands out cluster IPs for Services and pod IPs. */
export class IpPool {
  private next = 1;
  constructor(private readonly prefix: string) {}
  take(): string {
    const n = this.next++;
    return `${this.prefix}.${Math.floor(n / 250)}.${(n % 250) + 1}`;
  }
}

/** Fills in what the real apiserver defaults on this resource (idempotent: also run on updates). */
export function applyDefaults(res: Resource, obj: KubeObject, serviceIps: IpPool): void {
  const spec = child(obj, 'spec');
  switch (res.kind) {
    case 'Pod':
      podSpecDefaults(spec, 'Always');
      setDefault(spec, 'serviceAccountName', 'default');
      break;
    case 'Deployment':
      setDefault(spec, 'replicas', 1);
      setDefault(spec, 'revisionHistoryLimit', 10);
      setDefault(spec, 'progressDeadlineSeconds', 600);
      setDefault(spec, 'strategy', { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } });
      podSpecDefaults(child(child(spec, 'template'), 'spec'), 'Always');
      break;
    case 'ReplicaSet':
      setDefault(spec, 'replicas', 1);
      podSpecDefaults(child(child(spec, 'template'), 'spec'), 'Always');
      break;
    case 'StatefulSet':
      setDefault(spec, 'replicas', 1);
      setDefault(spec, 'podManagementPolicy', 'OrderedReady');
      setDefault(spec, 'updateStrategy', { type: 'RollingUpdate', rollingUpdate: { partition: 0 } });
      setDefault(spec, 'revisionHistoryLimit', 10);
      podSpecDefaults(child(child(spec, 'template'), 'spec'), 'Always');
      break;
    case 'Job':
      setDefault(spec, 'completions', 1);
      setDefault(spec, 'parallelism', 1);
      setDefault(spec, 'backoffLimit', 6);
      setDefault(spec, 'completionMode', 'NonIndexed');
      setDefault(spec, 'suspend', false);
      podSpecDefaults(child(child(spec, 'template'), 'spec'), undefined);
      jobSelector(obj);
      break;
    case 'Service': {
      setDefault(spec, 'type', 'ClusterIP');
      setDefault(spec, 'sessionAffinity', 'None');
      setDefault(spec, 'internalTrafficPolicy', 'Cluster');
      setDefault(spec, 'ipFamilies', ['IPv4']);
      setDefault(spec, 'ipFamilyPolicy', 'SingleStack');
      if (spec.clusterIP === undefined) spec.clusterIP = serviceIps.take();
      setDefault(spec, 'clusterIPs', [spec.clusterIP]);
      for (const p of listAt(spec, 'ports'))
        if (isObject(p)) {
          setDefault(p, 'protocol', 'TCP');
          setDefault(p, 'targetPort', p.port);
        }
      setDefault(obj, 'status', { loadBalancer: {} });
      break;
    }
    case 'Namespace':
      setDefault(spec, 'finalizers', ['kubernetes']);
      setDefault(obj, 'status', { phase: 'Active' });
      break;
    case 'Secret':
      setDefault(obj, 'type', 'Opaque');
      if (isObject(obj.stringData)) {
        const data = child(obj, 'data');
        for (const [k, v] of Object.entries(stringMap(obj.stringData))) data[k] = Buffer.from(v).toString('base64');
        delete obj.stringData;
      }
      break;
  }
  if (Object.keys(spec).length === 0) delete obj.spec;
}

/** A Job's pods carry its uid and name in their labels; its selector is that uid. */
function jobSelector(job: KubeObject): void {
  const spec = child(job, 'spec');
  if (spec.manualSelector === true) return;
  const uid = job.metadata.uid;
  const labels = child(child(child(spec, 'template'), 'metadata'), 'labels');
  Object.assign(labels, { 'batch.kubernetes.io/controller-uid': uid, 'batch.kubernetes.io/job-name': job.metadata.name, 'controller-uid': uid, 'job-name': job.metadata.name });
  setDefault(spec, 'selector', { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } });
}

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** The 422s: bad names, missing containers, selectors that miss their template, changed immutable fields. */
export function validate(res: Resource, obj: KubeObject, old: KubeObject | undefined): void {
  const causes: Array<{ field: string; message: string }> = [];
  const name = obj.metadata.name;
  if (!NAME.test(name) || name.length > 253)
    causes.push({ field: 'metadata.name', message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character` });
  const podSpec = res.kind === 'Pod' ? objAt(obj, 'spec') : objAt(obj, 'spec', 'template', 'spec');
  const prefix = res.kind === 'Pod' ? 'spec' : 'spec.template.spec';
  if (['Pod', 'Deployment', 'ReplicaSet', 'StatefulSet', 'Job'].includes(res.kind)) {
    const containers = listAt(podSpec, 'containers');
    if (containers.length === 0) causes.push({ field: `${prefix}.containers`, message: 'Required value' });
    containers.forEach((c, i) => {
      if (!strAt(c, 'name')) causes.push({ field: `${prefix}.containers[${i}].name`, message: 'Required value' });
      if (!strAt(c, 'image')) causes.push({ field: `${prefix}.containers[${i}].image`, message: 'Required value' });
    });
  }
  if (['Deployment', 'ReplicaSet', 'StatefulSet', 'Job'].includes(res.kind)) {
    const selector = objAt(obj, 'spec').selector;
    const labels = stringMap(objAt(obj, 'spec', 'template', 'metadata', 'labels'));
    if (!isObject(selector)) causes.push({ field: 'spec.selector', message: 'Required value' });
    else if (!selectorMatches(selector, labels))
      causes.push({ field: 'spec.template.metadata.labels', message: `Invalid value: ${JSON.stringify(labels)}: \`selector\` does not match template \`labels\`` });
    if (old && !deepEqual(objAt(old, 'spec').selector, selector)) causes.push({ field: 'spec.selector', message: `Invalid value: ${JSON.stringify(selector)}: field is immutable` });
  }
  if (res.kind === 'Job') {
    const policy = strAt(podSpec, 'restartPolicy');
    if (policy !== 'Never' && policy !== 'OnFailure')
      causes.push({ field: 'spec.template.spec.restartPolicy', message: `${policy ? `Unsupported value: "${policy}"` : 'Required value'}: supported values: "OnFailure", "Never"` });
    const template = objAt(obj, 'spec', 'template');
    if (old && !deepEqual(objAt(old, 'spec', 'template'), template)) causes.push({ field: 'spec.template', message: `Invalid value: ${JSON.stringify(template)}: field is immutable` });
  }
  if (res.kind === 'Pod' && old && !deepEqual(mutablePodSpec(objAt(old, 'spec'), objAt(obj, 'spec')), objAt(obj, 'spec'))) {
    causes.push({ field: 'spec', message: `Forbidden: pod updates may not change fields other than ${POD_MUTABLE}` });
  }
  if (causes.length > 0) throw invalid(res, name, causes);
}

/** The fields of a pod's spec an update may change, as the apiserver lists them. */
const POD_MUTABLE =
  '`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)';

/**
 * The old pod spec with what an update may change taken from the new one
 * (images, activeDeadlineSeconds, tolerations), as ValidatePodUpdate does:
 * equal to the new spec unless something else changed. The node binding
 * (nodeName set where there was none) is let through too: the real
 * scheduler writes it through pods/binding, the fake's by an update.
 */
function mutablePodSpec(old: JsonObject, next: JsonObject): JsonObject {
  const out = structuredClone(old);
  for (const key of ['containers', 'initContainers']) {
    const olds = listAt(out, key);
    const news = listAt(next, key);
    if (olds.length !== news.length) continue;
    olds.forEach((c, i) => {
      const image = strAt(news[i], 'image');
      if (isObject(c) && image !== undefined) c.image = image;
    });
  }
  for (const key of ['activeDeadlineSeconds', 'tolerations']) {
    if (next[key] === undefined) delete out[key];
    else out[key] = structuredClone(next[key]);
  }
  if (out.nodeName === undefined && next.nodeName !== undefined) out.nodeName = next.nodeName;
  return out;
}
