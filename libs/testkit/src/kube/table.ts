// Server-side printing: `kubectl get` without -o asks for a meta.k8s.io Table
// (Accept: application/json;as=Table;...) and prints its columns.
import { listAt, numAt, strAt, type JsonObject, type KubeObject } from './json';

type Column = readonly [name: string, type: 'string' | 'integer', cell: (o: KubeObject) => string | number];

function age(o: KubeObject): string {
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(o.metadata.creationTimestamp)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

function podStatus(o: KubeObject): string {
  if (o.metadata.deletionTimestamp) return 'Terminating';
  for (const c of listAt(o, 'status', 'containerStatuses')) {
    const reason = strAt(c, 'state', 'waiting', 'reason') ?? strAt(c, 'state', 'terminated', 'reason');
    if (reason) return reason;
  }
  return strAt(o, 'status', 'phase') ?? 'Pending';
}

function jobStatus(o: KubeObject): string {
  const cond = listAt(o, 'status', 'conditions').find((c) => strAt(c, 'status') === 'True' && ['Complete', 'Failed'].includes(strAt(c, 'type') ?? ''));
  return strAt(cond, 'type') ?? 'Running';
}

const n = (o: KubeObject, ...path: string[]): number => numAt(o, ...path) ?? 0;
const NAME: Column = ['Name', 'string', (o) => o.metadata.name];
const AGE: Column = ['Age', 'string', age];

const COLUMNS: Record<string, readonly Column[]> = {
  Pod: [
    NAME,
    ['Ready', 'string', (o) => `${listAt(o, 'status', 'containerStatuses').filter((c) => (c as JsonObject).ready === true).length}/${listAt(o, 'spec', 'containers').length}`],
    ['Status', 'string', podStatus],
    ['Restarts', 'integer', (o) => listAt(o, 'status', 'containerStatuses').reduce<number>((s, c) => s + (numAt(c, 'restartCount') ?? 0), 0)],
    AGE,
  ],
  Deployment: [NAME, ['Ready', 'string', (o) => `${n(o, 'status', 'readyReplicas')}/${n(o, 'spec', 'replicas')}`], ['Up-to-date', 'integer', (o) => n(o, 'status', 'updatedReplicas')], ['Available', 'integer', (o) => n(o, 'status', 'availableReplicas')], AGE],
  ReplicaSet: [NAME, ['Desired', 'integer', (o) => n(o, 'spec', 'replicas')], ['Current', 'integer', (o) => n(o, 'status', 'replicas')], ['Ready', 'integer', (o) => n(o, 'status', 'readyReplicas')], AGE],
  StatefulSet: [NAME, ['Ready', 'string', (o) => `${n(o, 'status', 'readyReplicas')}/${n(o, 'spec', 'replicas')}`], AGE],
  Job: [NAME, ['Status', 'string', jobStatus], ['Completions', 'string', (o) => `${n(o, 'status', 'succeeded')}/${n(o, 'spec', 'completions')}`], AGE],
  Namespace: [NAME, ['Status', 'string', (o) => strAt(o, 'status', 'phase') ?? ''], AGE],
  Node: [NAME, ['Status', 'string', () => 'Ready'], ['Roles', 'string', () => '<none>'], AGE, ['Version', 'string', (o) => strAt(o, 'status', 'nodeInfo', 'kubeletVersion') ?? '']],
  Service: [
    NAME,
    ['Type', 'string', (o) => strAt(o, 'spec', 'type') ?? ''],
    ['Cluster-IP', 'string', (o) => strAt(o, 'spec', 'clusterIP') ?? ''],
    ['External-IP', 'string', () => '<none>'],
    ['Port(s)', 'string', (o) => listAt(o, 'spec', 'ports').map((p) => `${numAt(p, 'port')}/${strAt(p, 'protocol')}`).join(',') || '<none>'],
    AGE,
  ],
};

/** What a row carries besides its cells: includeObject=None|Metadata (default)|Object. */
function rowObject(o: KubeObject, include: string | null): JsonObject | undefined {
  if (include === 'None') return undefined;
  if (include === 'Object') return o;
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
}

export function toTable(kind: string, objects: KubeObject[], resourceVersion: string, include: string | null): JsonObject {
  const columns = COLUMNS[kind] ?? [NAME, AGE];
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion },
    columnDefinitions: columns.map(([name, type]) => ({ name, type, format: name === 'Name' ? 'name' : '', description: '', priority: 0 })),
    rows: objects.map((o) => ({ cells: columns.map(([, , cell]) => cell(o)), object: rowObject(o, include) })),
  };
}

/** Whether the client asked for Table output first (kubectl get does; -o json does not). */
export const wantsTable = (accept: string | undefined): boolean => (accept ?? '').split(',')[0]?.includes('as=Table') === true;
