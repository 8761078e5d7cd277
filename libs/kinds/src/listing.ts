import { InvalidArgumentError } from '@agent/grpc-kit';
import { v1 } from '@agent/proto';

const LIST_PAGE_SIZE = 500;
const LIST_MAX_PAGE_SIZE = 1000;
const LIST_PAGE_BYTES = 2 * 1024 * 1024;
const PAGE_TOKEN_PREFIX = 'after:';

/**
 * One page of List over objects: the matching ones in object_id order, each
 * the caller's own copy, bounded in count and in bytes. agentcore answers
 * from its table, the apiserver (five processes) from its copy of it: the
 * same pages, the same tokens.
 */
export function listPage(objects: Iterable<v1.Object>, req: v1.ListRequest): v1.ListResponse {
  const after = req.pageToken === '' ? '' : fromPageToken(req.pageToken);
  const size = req.pageSize === 0 ? LIST_PAGE_SIZE : Math.min(req.pageSize, LIST_MAX_PAGE_SIZE);
  const candidates: v1.Object[] = [];
  for (const o of objects) if (o.objectId > after) candidates.push(o);
  candidates.sort((a, b) => (a.objectId < b.objectId ? -1 : a.objectId > b.objectId ? 1 : 0));
  const page: v1.Object[] = [];
  let bytes = 0;
  for (const object of candidates) {
    if (req.kind !== v1.Kind.KIND_UNSPECIFIED && object.spec?.kind !== req.kind) continue;
    if (!req.includeDeleted && object.state === v1.State.STATE_DELETED) continue;
    const labels = object.spec?.labels ?? {};
    if (!Object.entries(req.labels).every(([k, v]) => labels[k] === v)) continue;
    const o = v1.Object.fromPartial(object);
    const n = v1.Object.encode(o).finish().length;
    // Another match that does not fit: the page ends, and the token says where the next begins.
    if (page.length === size || (page.length > 0 && bytes + n > LIST_PAGE_BYTES)) return { objects: page, nextPageToken: toPageToken(page[page.length - 1]!.objectId) };
    page.push(o);
    bytes += n;
  }
  return { objects: page, nextPageToken: '' };
}

/** Opaque to callers: where the next page begins. */
function toPageToken(lastObjectId: string): string {
  return Buffer.from(PAGE_TOKEN_PREFIX + lastObjectId).toString('base64url');
}

function fromPageToken(token: string): string {
  const text = Buffer.from(token, 'base64url').toString('utf8');
  if (!text.startsWith(PAGE_TOKEN_PREFIX)) throw new InvalidArgumentError('page_token', 'not a token from a previous List');
  return text.slice(PAGE_TOKEN_PREFIX.length);
}
