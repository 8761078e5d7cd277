// What agentcore holds, as GET /metrics shows it: the event queue and the objects by kind and state.
import { enumLabel, metrics } from '@agent/telemetry';
import { v1 } from '@agent/proto';
import type { ObjectTable } from './objects';
import type { Scheduler } from './scheduler';

/** Read when scraped; the function returned stops it. */
export function publishCoreMetrics(objects: ObjectTable, scheduler: Scheduler): () => void {
  const off = [
    metrics.queueDepth.provide(() => [[{}, scheduler.depth()]]),
    metrics.queueAge.provide(() => [[{}, scheduler.oldestWaitMs() / 1000]]),
    metrics.objects.provide(() => {
      const counts = new Map<string, { labels: { kind: string; state: string }; n: number }>();
      for (const { object } of objects.all()) {
        const kind = enumLabel(v1.Kind, object.spec?.kind ?? v1.Kind.KIND_UNSPECIFIED, 'KIND_');
        const state = enumLabel(v1.State, object.state, 'STATE_');
        const key = `${kind}/${state}`;
        const c = counts.get(key);
        if (c) c.n++;
        else counts.set(key, { labels: { kind, state }, n: 1 });
      }
      return [...counts.values()].map((c) => [c.labels, c.n] as const);
    }),
  ];
  return () => off.forEach((f) => f());
}
