// The one owner of generated contract code. Generated files live in src/gen
// (never edited, never committed); this barrel is the only way in.
import * as path from 'node:path';

export * as v1 from './gen/agent/v1/agent';
export * as sinkv1 from './gen/agent/v1/sink';
export * as policyv1 from './gen/agent/v1/policy';
export * as internalv1 from './gen/agent/internal/v1/internal';
export * as healthv1 from './gen/grpc/health/v1/health';

/** The binary descriptor set (buf build) that server reflection serves. */
export const descriptorSetPath: string = path.join(__dirname, 'descriptor.binpb');
