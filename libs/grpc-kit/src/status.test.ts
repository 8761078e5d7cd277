import { describe, it } from 'node:test';
import * as assert from 'node:assert/strict';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import {
  AlreadyExistsError,
  DriverError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  NotSupportedError,
  UnavailableError,
  DeadlineExceededError,
} from './errors';
import { fromGrpcError, toGrpcStatus } from './status';

function asServiceError(err: unknown): ServiceError {
  const st = toGrpcStatus(err);
  return Object.assign(new Error(`${st.code} ${st.details}`), { code: st.code, details: st.details, metadata: st.metadata }) as ServiceError;
}

describe('the one error table', () => {
  const cases: Array<[Error, status]> = [
    [new InvalidArgumentError('spec.name', 'required'), status.INVALID_ARGUMENT],
    [new NotFoundError('no object x'), status.NOT_FOUND],
    [new AlreadyExistsError('name in use'), status.ALREADY_EXISTS],
    [new FailedPreconditionError('deleted'), status.FAILED_PRECONDITION],
    [new DriverError('docker', 'no such image'), status.FAILED_PRECONDITION],
    [new NotSupportedError('no push'), status.UNIMPLEMENTED],
    [new UnavailableError('docker down'), status.UNAVAILABLE],
    [new DeadlineExceededError('slow'), status.DEADLINE_EXCEEDED],
  ];
  for (const [err, code] of cases) {
    it(`${err.name} -> ${status[code]}, and back to the same class across a hop`, () => {
      const st = toGrpcStatus(err);
      assert.equal(st.code, code);
      assert.equal(st.details, err.message);
      const back = fromGrpcError(asServiceError(err));
      assert.equal(back.constructor, err.constructor);
      assert.equal(back.message, err.message);
    });
  }

  it('keeps the field of an invalid argument across a hop', () => {
    const back = fromGrpcError(asServiceError(new InvalidArgumentError('spec.resources.cpus', 'must not be negative')));
    assert.ok(back instanceof InvalidArgumentError);
    assert.equal(back.field, 'spec.resources.cpus');
  });

  it('turns an unknown error into INTERNAL without leaking its message or stack', () => {
    const st = toGrpcStatus(new TypeError('secret detail at /home/x.js:1'));
    assert.equal(st.code, status.INTERNAL);
    assert.equal(st.details, 'internal error');
    assert.equal(st.unexpected, true);
  });

  it('rebuilds a peer error that carries only a code', () => {
    const e = Object.assign(new Error('x'), { code: status.NOT_FOUND, details: 'gone', metadata: new Metadata() }) as ServiceError;
    assert.ok(fromGrpcError(e) instanceof NotFoundError);
  });
});
