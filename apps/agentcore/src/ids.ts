import { randomBytes } from 'node:crypto';

/** A new object or event id: the prefix says which, the random part never repeats. */
export function newId(prefix: 'obj' | 'evt'): string {
  return `${prefix}-${randomBytes(8).toString('hex')}`;
}
