import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * This host's whole-disk block devices as "MAJOR:MINOR" (from /sys/dev/block),
 * what per-device limits can name here: real disks first, then loop and ram
 * devices. Partitions are left out (the throttles take whole disks).
 */
export function blockDevices(): string[] {
  const uevent = (dev: string): Record<string, string> => {
    try {
      return Object.fromEntries(fs.readFileSync(path.join('/sys/dev/block', dev, 'uevent'), 'utf8').split('\n').map((l) => l.split('=') as [string, string]));
    } catch {
      return {};
    }
  };
  const disks = fs.existsSync('/sys/dev/block') ? fs.readdirSync('/sys/dev/block').filter((dev) => uevent(dev).DEVTYPE === 'disk') : [];
  const virtual = (dev: string): number => (/^(loop|ram)/.test(uevent(dev).DEVNAME ?? '') ? 1 : 0);
  return disks.sort((a, b) => virtual(a) - virtual(b) || a.localeCompare(b, 'en', { numeric: true }));
}
