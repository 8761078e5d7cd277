// List pages: objects too large to fit one 4 MiB message together come back
// over several pages, each exactly once, in object_id order.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { v1 } from '@agent/proto';
import { apiClient, startAgent, type Agent, type Api } from '@agent/testkit';

describe('List paging', () => {
  let agent: Agent;
  let client: Api;
  const ids: string[] = [];

  before(async () => {
    agent = await startAgent();
    client = apiClient(agent.address, agent.token);
    // Five objects of about 1 MiB each (256 env entries of 4000 bytes): 5 MiB in all.
    const env = Array.from({ length: 256 }, (_, i) => `PAD${i}=${'x'.repeat(3990)}`);
    for (let i = 0; i < 5; i++) {
      const ack = await client.call('create', v1.CreateRequest.fromPartial({ spec: { name: `big-${i}`, kind: v1.Kind.KIND_PROCESS, labels: { set: 'big' }, process: { command: ['sleep', '600'], env } }, wait: true }));
      assert.equal(ack.state, v1.State.STATE_RUNNING, ack.error);
      ids.push(ack.objectId);
    }
    for (let i = 0; i < 7; i++) {
      const ack = await client.call('create', v1.CreateRequest.fromPartial({ spec: { name: `small-${i}`, kind: v1.Kind.KIND_PROCESS, labels: { set: 'small' }, process: { command: ['sleep', '600'] } }, wait: true }));
      ids.push(ack.objectId);
    }
  });
  after(async () => {
    for (const objectId of ids) await client.call('delete', v1.DeleteRequest.fromPartial({ objectId, wait: true })).catch(() => undefined);
    client?.close();
    await agent?.stop();
  });

  async function allPages(req: Partial<v1.ListRequest>): Promise<{ pages: v1.ListResponse[]; ids: string[] }> {
    const pages: v1.ListResponse[] = [];
    let pageToken = '';
    do {
      const page = await client.call('list', v1.ListRequest.fromPartial({ ...req, pageToken }));
      pages.push(page);
      pageToken = page.nextPageToken;
      assert.ok(pages.length < 50, 'paging ends');
    } while (pageToken !== '');
    return { pages, ids: pages.flatMap((p) => p.objects.map((o) => o.objectId)) };
  }

  it('large objects come over several pages, each page under the message limit, each object once', async () => {
    const { pages, ids: got } = await allPages({ labels: { set: 'big' } });
    assert.ok(pages.length >= 3, `${pages.length} pages`);
    for (const p of pages) assert.ok(v1.ListResponse.encode(p).finish().length < 4 * 1024 * 1024);
    assert.deepEqual(got, ids.slice(0, 5).sort());
  });

  it('page_size bounds a page; the pages together are the whole list, in object_id order', async () => {
    const { pages, ids: got } = await allPages({ labels: { set: 'small' }, pageSize: 3 });
    assert.deepEqual(pages.map((p) => p.objects.length), [3, 3, 1]);
    assert.deepEqual(got, ids.slice(5).sort());
    const one = await client.call('list', v1.ListRequest.fromPartial({ labels: { set: 'small' }, pageSize: 7 }));
    assert.equal(one.objects.length, 7);
    assert.equal(one.nextPageToken, '', 'no empty last page when the page is exactly full');
  });
});
