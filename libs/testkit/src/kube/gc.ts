// The garbage collector and the namespace controller: dependents follow their
// owners (ownerReferences by uid), a Foreground deletion waits for them, and
// a deleted namespace empties before it goes.
import { guarded } from './json';
import type { Ops } from './ops';
import { mustKind } from './resources';

const NAMESPACES = mustKind('Namespace');

export function garbageStep(ops: Ops): void {
  const all = ops.store.all();
  const byUid = new Map(all.map((s) => [s.object.metadata.uid, s.object]));
  for (const { res, object } of all) {
    const refs = object.metadata.ownerReferences ?? [];
    if (refs.length === 0 || object.metadata.deletionTimestamp) continue;
    const owners = refs.map((r) => byUid.get(r.uid));
    const { namespace, name } = object.metadata;
    // Pods have no dependents to wait for: they go the usual (graceful) way.
    const cascade = res.kind === 'Pod' ? 'Background' : 'Foreground';
    if (owners.every((o) => o === undefined)) guarded(() => ops.delete(res, namespace, name, { propagationPolicy: 'Background' }));
    else if (owners.some((o) => o?.metadata.finalizers?.includes('foregroundDeletion'))) guarded(() => ops.delete(res, namespace, name, { propagationPolicy: cascade }));
  }
  for (const { res, object } of ops.store.all()) {
    if (!object.metadata.finalizers?.includes('foregroundDeletion')) continue;
    const uid = object.metadata.uid;
    if (ops.store.all().some((d) => d.object.metadata.ownerReferences?.some((r) => r.uid === uid))) continue;
    const next = structuredClone(object);
    next.metadata.finalizers = (next.metadata.finalizers ?? []).filter((f) => f !== 'foregroundDeletion');
    guarded(() => ops.update(res, object.metadata.namespace, object.metadata.name, next, { manager: 'kube-controller-manager' }));
  }
}

export function namespaceStep(ops: Ops): void {
  for (const ns of ops.store.list(NAMESPACES)) {
    if (!ns.metadata.deletionTimestamp) continue;
    const content = ops.store.all().filter((s) => s.res.namespaced && s.object.metadata.namespace === ns.metadata.name);
    for (const { res, object } of content) if (!object.metadata.deletionTimestamp) guarded(() => ops.delete(res, object.metadata.namespace, object.metadata.name, { propagationPolicy: 'Background' }));
    if (content.length === 0) ops.store.remove(NAMESPACES, ns);
  }
}
