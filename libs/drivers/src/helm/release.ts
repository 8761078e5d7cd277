import * as fs from 'node:fs';
import { load } from 'js-yaml';
import { FailedPreconditionError, PermissionDeniedError } from '@agent/grpc-kit';
import { insideAllowList } from '../exec-policy';
import { admitKubeconfig, isDnsLabel, validatePlace, type KubePlace, type KubePolicy } from '../k8s/workload';
import { fail, maxLen, REDACTED } from '../spec-checks';

// KIND_HELM's part of a spec: a chart on this host, the release it makes and
// its values. Checked here without helm or a cluster; what helm cannot
// render, and what the cluster refuses, come back from the driver naming the
// chart or the values.

/** KIND_HELM's part of a spec (agent.v1.HelmSpec). */
export interface HelmWorkload extends KubePlace {
  /** A chart directory or .tgz on this host. */
  readonly chart: string;
  /** .Release.Name. */
  readonly release: string;
  /** YAML over the chart's values.yaml; '' = none. */
  readonly values: string;
  readonly waitReady: boolean;
}

/** What an Update may change (agent.v1.HelmUpdate): unset keeps it. */
export interface HelmChange {
  readonly chart?: string;
  readonly values?: string;
}

/** Helm's own limit on a release name (it names resources after it). */
export const RELEASE_MAX = 53;
export const HELM_LIMITS = { valuesBytes: 256 * 1024 } as const;

/** The host checks of a helm spec: its kubeconfig, and where charts may come from. */
export interface HelmPolicy extends KubePolicy {
  /** Charts must lie inside these (files or directories); empty: any. */
  readonly helmChartAllow: readonly string[];
}

/** Syntax checks of a helm spec at field ("spec.helm"). */
export function validateHelm(w: HelmWorkload, field: string): void {
  validatePlace(w, field);
  checkChart(w.chart, `${field}.chart`);
  if (w.release === '') fail(`${field}.release`, 'required');
  if (!isDnsLabel(w.release, RELEASE_MAX)) fail(`${field}.release`, `lower case letters, digits and "-" (RFC 1123 label), at most ${RELEASE_MAX}`);
  checkValues(w.values, `${field}.values`);
}

function checkChart(chart: string, field: string): void {
  if (chart === '') fail(field, 'required: a chart directory or .tgz on the agent\'s host');
  if (!chart.startsWith('/')) fail(field, 'an absolute path');
  maxLen(field, chart, 4096);
  if (/[\0-\x1f]/.test(chart)) fail(field, 'must not contain control characters');
}

function checkValues(values: string, field: string): void {
  if (Buffer.byteLength(values) > HELM_LIMITS.valuesBytes) fail(field, `larger than ${HELM_LIMITS.valuesBytes} bytes`);
  let v: unknown;
  try {
    v = load(values);
  } catch (err) {
    fail(field, `not YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (v !== undefined && v !== null && (typeof v !== 'object' || Array.isArray(v))) fail(field, 'must be a YAML mapping');
}

/** Host checks: the kubeconfig may be used, and the chart is there and may be read. */
export function admitHelm<W extends HelmWorkload>(w: W, policy: HelmPolicy): W {
  admitKubeconfig(w, policy, 'spec.helm');
  // The allow list first: outside it, whether a path exists is not the caller's to learn.
  checkChartAllowed(policy.helmChartAllow, w.chart);
  if (!fs.existsSync(w.chart)) throw new FailedPreconditionError(`spec.helm.chart: ${w.chart} does not exist on the agent's host`);
  return w;
}

/** A chart must lie inside AGENT_HELM_CHART_ALLOW when it is set (checked at create, and by every render: an update may name another chart). */
export function checkChartAllowed(allow: readonly string[], chart: string): void {
  if (allow.length > 0 && !insideAllowList(allow, chart)) throw new PermissionDeniedError(`spec.helm.chart: ${chart} is outside AGENT_HELM_CHART_ALLOW`);
}

/** Values often hold passwords: a reader sees that there are some, not what they say. */
export function redactHelm<W extends HelmWorkload>(w: W): W {
  return w.values === '' ? w : { ...w, values: REDACTED };
}

/** The release after an Update's own changes; a bad one names its field at field ("helm"). */
export function changeHelm<W extends HelmWorkload>(w: W, change: HelmChange, field: string): W {
  if (change.chart !== undefined) checkChart(change.chart, `${field}.chart`);
  if (change.values !== undefined) checkValues(change.values, `${field}.values`);
  return { ...w, ...(change.chart !== undefined ? { chart: change.chart } : {}), ...(change.values !== undefined ? { values: change.values } : {}) };
}
