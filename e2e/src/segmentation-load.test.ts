// Policy changes under load, on real Docker and real nftables: 25 changes of
// over 1,000 rules each while a client container makes 600 connections its
// allow rule covers and the host keeps one connection streaming. Not one of
// them may fail: every reconcile is one atomic transaction, and established
// connections are accepted before any policy rule is read.
import { after, before, describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as net from 'node:net';
import { BUSYBOX, api, bufCurl, sh, startAgent, waitFor, type Agent } from '@agent/testkit';

const TABLE = `agent_load_${process.pid}`;
const NFLOG_GROUP = String(1000 + ((process.pid + 7) % 60_000));
const ONCE_PORT = 5432;
const STREAM_PORT = 5433;
const CONNECTIONS = 600;
const CHANGES = 25;
const FILLER_RULES = 1_000;

type Obj = { objectId: string; runtimeId: string; ip?: string; enforcement?: string };

async function create(agent: Agent, name: string, app: string, command: string[]): Promise<Obj> {
  const r = await api(agent, 'Create', { spec: { name, kind: 'KIND_CONTAINER', labels: { app }, container: { image: BUSYBOX, command } }, wait: true });
  assert.equal(r.body?.status, 'EVENT_STATUS_SUCCEEDED', JSON.stringify(r.body ?? r.error));
  return (await api(agent, 'Get', { objectId: r.body.objectId })).body as Obj;
}

/** The policy of change n: the two rules under test, and 1,000 others whose ports move with n (each change rewrites all of them). */
function policy(n: number): Record<string, unknown> {
  const fillers = Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, selector: { app: `nobody-${i}` }, mode: 'MODE_PROTECT' }));
  const rules: Array<Record<string, unknown>> = [
    // Rule 1 changes too (its nft rule is replaced each time): a connection must never fall between the old rule and the new.
    { id: 1, from: 'web', to: 'db', ports: n % 2 ? [`tcp/${ONCE_PORT}`] : [`tcp/${ONCE_PORT}`, `tcp/${ONCE_PORT - 1}`], action: 'ACTION_ALLOW' },
    { id: 2, from: 'host', to: 'db', ports: [`tcp/${STREAM_PORT}`], action: 'ACTION_ALLOW' },
  ];
  for (let i = 0; i < FILLER_RULES; i++) rules.push({ id: 100 + i, from: `f${i % 20}`, to: i % 2 ? 'db' : 'web', ports: [`tcp/${10_000 + ((i + n * 7) % 5_000)}`], action: i % 10 === 0 ? 'ACTION_DENY' : 'ACTION_ALLOW' });
  return { revision: n, groups: [{ name: 'db', selector: { app: 'db' }, mode: 'MODE_PROTECT' }, { name: 'web', selector: { app: 'web' }, mode: 'MODE_PROTECT' }, ...fillers], rules };
}

describe('policy changes under load (real Docker, real nftables)', () => {
  let agent: Agent;
  let db: Obj;
  let web: Obj;

  before(async () => {
    agent = await startAgent({ AGENT_NFT_TABLE: TABLE, AGENT_NFLOG_GROUP: NFLOG_GROUP });
    // One server answers a line and closes (a connection is done when it is answered); the other echoes for as long as the client stays.
    const serve = `printf '#!/bin/sh\\nread l\\necho "$l"\\n' > /tmp/once && chmod +x /tmp/once && (nc -ll -p ${STREAM_PORT} -e /bin/cat &) && exec nc -ll -p ${ONCE_PORT} -e /tmp/once`;
    db = await create(agent, 'load-db', 'db', ['sh', '-c', serve]);
    web = await create(agent, 'load-web', 'web', ['sleep', '3600']);
  });
  after(async () => {
    await agent?.stop();
    if (execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).includes(`inet ${TABLE}`)) execFileSync('nft', ['delete', 'table', 'inet', TABLE]);
    await sh('sh', ['-c', `docker ps -aq --filter label=io.agent.host-id=${agent?.hostId ?? 'none'} | xargs -r docker rm -f`]).catch(() => undefined);
  });

  it(`${CHANGES} changes of ${FILLER_RULES}+ rules during ${CONNECTIONS} allowed connections and a long-lived stream: none fails`, async () => {
    const applied = await bufCurl(agent.address, 'agent.v1.PolicyService/ApplyPolicy', policy(1), { token: agent.token });
    assert.equal(applied.ok, true, JSON.stringify(applied.error));

    // The long-lived stream: the host's own connection, one line every 20 ms, each echoed.
    const sock = net.connect(STREAM_PORT, db.ip!);
    let echoed = '';
    sock.on('data', (d) => (echoed += d.toString()));
    sock.on('error', () => undefined);
    await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
    let sent = 0;
    const ticker = setInterval(() => sock.write(`s${++sent}\n`), 20);

    try {
      // The connections: made inside web, one after another, from before the first change until after the last (and at least 600); each must be answered.
      const loop = `i=0; ok=0; while [ ! -f /tmp/stop ]; do i=$((i+1)); [ "$(echo c$i | nc -w 2 ${db.ip} ${ONCE_PORT})" = "c$i" ] && ok=$((ok+1)); echo $i > /tmp/made; done; echo "made=$i ok=$ok"`;
      const connections = sh('docker', ['exec', web.runtimeId, 'sh', '-c', loop]);
      const made = async (): Promise<number> => Number((await sh('docker', ['exec', web.runtimeId, 'cat', '/tmp/made']).catch(() => '0')).trim());
      await waitFor('the loop under way', async () => ((await made()) > 0 ? true : undefined));
      const took: number[] = [];
      for (let n = 2; n < 2 + CHANGES; n++) {
        const t0 = Date.now();
        const r = await bufCurl(agent.address, 'agent.v1.PolicyService/ApplyPolicy', policy(n), { token: agent.token });
        assert.equal(r.ok, true, JSON.stringify(r.error));
        took.push(Date.now() - t0);
      }
      await waitFor(`${CONNECTIONS} connections made`, async () => ((await made()) >= CONNECTIONS ? true : undefined), 60_000, 200);
      await sh('docker', ['exec', web.runtimeId, 'touch', '/tmp/stop']);
      const out = (await connections).trim();
      const [, total, ok] = /made=(\d+) ok=(\d+)/.exec(out) ?? [];
      assert.ok(Number(total) >= CONNECTIONS, out);
      assert.equal(ok, total, `every allowed connection answered: ${out} (changes took ${took.join(', ')} ms)`);

      clearInterval(ticker);
      const want = Array.from({ length: sent }, (_, i) => `s${i + 1}`).join('\n') + '\n';
      await waitFor('the stream echoed every line', () => (echoed === want ? true : undefined), 3_000).catch(() => undefined);
      assert.equal(echoed, want, `the stream lost nothing (${sent} lines sent)`);
      assert.ok(sent > 100, `the stream ran throughout (${sent} lines)`);
    } finally {
      clearInterval(ticker);
      sock.destroy();
    }
    // And the policy still means what it says: another port stays closed.
    const o = (await api(agent, 'Get', { objectId: db.objectId })).body as Obj & { policyRevision?: string };
    assert.deepEqual([o.enforcement, Number(o.policyRevision)], ['ENFORCEMENT_ENFORCED', 1 + CHANGES]);
  });
});
