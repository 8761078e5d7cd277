// How the API server's answers become the agent's errors (kubeError): each
// status the client can throw, as @kubernetes/client-node 1.4 throws it (an
// ApiException with code and a JSON body).
import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { ApiException } from '@kubernetes/client-node';
import { AlreadyExistsError, DriverError, FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError } from '@agent/grpc-kit';
import { kubeError } from './cluster';

const thrown = (code: number, body: Record<string, unknown>): ApiException<string> => new ApiException(code, `HTTP-Code: ${code}`, JSON.stringify(body), {});

describe('kubeError', () => {
  it('maps each answer to its status, naming the spec field where the cluster named one', () => {
    const cases: Array<[unknown, new (...a: never[]) => Error, RegExp]> = [
      [thrown(422, { message: 'Deployment.apps "w" is invalid', details: { causes: [{ field: 'spec.template.metadata.labels', message: 'does not match' }] } }), InvalidArgumentError, /^spec\.helm\.chart\.spec\.template\.metadata\.labels: the cluster refused apply Deployment default\/w: Deployment\.apps "w" is invalid/],
      [thrown(422, { message: 'bad' }), InvalidArgumentError, /^spec\.helm\.chart: the cluster refused/],
      [thrown(409, { reason: 'AlreadyExists', message: 'exists' }), AlreadyExistsError, /apply Deployment default\/w: exists/],
      [thrown(409, { reason: 'Conflict', message: 'Apply failed with 1 conflict: conflict with "kubectl"' }), FailedPreconditionError, /conflict with "kubectl"/],
      [thrown(401, { message: 'Unauthorized' }), FailedPreconditionError, /refused the agent's credentials: Unauthorized/],
      [thrown(403, { message: 'forbidden: User "x" cannot patch' }), FailedPreconditionError, /refused the agent's credentials: forbidden/],
      [thrown(404, { message: 'not found' }), NotFoundError, /not found/],
      [thrown(503, { message: 'etcd is down' }), UnavailableError, /etcd is down/],
      [thrown(418, { message: 'teapot' }), DriverError, /teapot/],
      [Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), {}), UnavailableError, /the cluster did not answer: connect ECONNREFUSED/],
      [new Error('Unrecognized API version and kind: autoscaling/v2 HorizontalPodAutoscaler'), FailedPreconditionError, /^spec\.helm\.chart: the cluster does not serve apply Deployment default\/w/],
    ];
    for (const [err, type, message] of cases) {
      const e = kubeError('apply Deployment default/w', err, 'spec.helm.chart');
      assert.ok(e instanceof type, `${String((err as Error).message)}: got ${e.constructor.name}`);
      assert.match(e.message, message);
    }
  });
});
