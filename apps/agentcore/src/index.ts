export { AgentCore, startAgentCore } from './agentcore';
export type { Peers } from './peers';
export { ClusterSync } from './cluster';
