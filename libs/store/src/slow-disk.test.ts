import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { HOLD_MS, SlowDisk, SLOW_SYNC_MS, STALL_MS } from './slow-disk';

describe('SlowDisk', () => {
  const clock = (): { now: () => number; t: number } => {
    const c = { t: 1_000, now: () => c.t };
    return c;
  };

  it('one slow sync among fast ones is a blip: commits stay on the loop', () => {
    const c = clock();
    const disk = new SlowDisk(c.now);
    for (let i = 0; i < 200; i++) disk.synced(i % 10 === 0 ? SLOW_SYNC_MS + 1 : 0.3);
    assert.equal(disk.held, false);
  });

  it('a run of slow syncs holds the disk slow for HOLD_MS, then lets go', () => {
    const c = clock();
    const disk = new SlowDisk(c.now);
    for (let i = 0; i < 3; i++) disk.synced(SLOW_SYNC_MS);
    assert.equal(disk.held, false, 'three are not yet a run');
    disk.synced(SLOW_SYNC_MS);
    assert.equal(disk.held, true);
    c.t += HOLD_MS - 1;
    assert.equal(disk.held, true);
    c.t += 1;
    assert.equal(disk.held, false);
  });

  it('half of the last eight slow, spread among fast ones, is slow', () => {
    const disk = new SlowDisk(clock().now);
    for (let i = 0; i < 7; i++) disk.synced(i % 2 === 0 ? SLOW_SYNC_MS : 0.3);
    assert.equal(disk.held, true);
  });

  it('one stall is slow at once', () => {
    const disk = new SlowDisk(clock().now);
    disk.synced(0.3);
    disk.synced(STALL_MS);
    assert.equal(disk.held, true);
  });
});
