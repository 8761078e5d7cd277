// The floor server as a process of its own: node floor-main.js <object.json> <memory limit file>.
// Prints its address on stdout; SIGTERM stops it.
import * as fs from 'node:fs';
import { v1 } from '@agent/proto';
import { startFloor } from './floor';

const [objectFile = '', memoryLimitFile = ''] = process.argv.slice(2);
void startFloor({ object: v1.Object.fromJSON(JSON.parse(fs.readFileSync(objectFile, 'utf8'))), memoryLimitFile }).then((floor) => {
  process.stdout.write(`${floor.address}\n`);
  process.on('SIGTERM', () => void floor.stop().then(() => process.exit(0)));
});
