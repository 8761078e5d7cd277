export { Kind, type GapPayload, type SpoolRecord } from './codec';
export { Spool, type SpoolOptions, type SpoolStats } from './spool';
