import { createHash } from 'node:crypto';

/**
 * The MAC a container the agent creates is given, from its object id: known
 * before the container exists, so the dataplane can hold its traffic from
 * the first packet. Locally administered, unicast.
 */
export function macFor(objectId: string): string {
  const h = createHash('sha1').update(objectId).digest();
  return ['02', ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}
