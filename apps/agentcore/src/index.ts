export { AgentCore, startAgentCore } from './agentcore';
export type { Peers } from './agentcore';
export { ClusterSync } from './cluster';
