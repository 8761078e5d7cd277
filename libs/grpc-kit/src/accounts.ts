import * as fs from 'node:fs';

/**
 * The colon-separated fields of each entry of /etc/passwd or /etc/group;
 * NIS "+"/"-" lines and comments are not entries. A file that cannot be read
 * throws (the caller says what it was looking for).
 */
export function accountEntries(file: string): string[][] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('+') && !l.startsWith('-'))
    .map((l) => l.split(':'));
}
