// A server of the bench's in a process of its own, as the agent is: node
// <script> [args] prints its address on its first line; SIGTERM stops it.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';

export interface ChildServer {
  readonly address: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** Starts bench/dist/<script> and resolves with the address it prints. */
export async function spawnServer(script: string, args: readonly string[] = []): Promise<ChildServer> {
  const child = spawn(process.execPath, [path.join(__dirname, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const address = await new Promise<string>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  return {
    address,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}
