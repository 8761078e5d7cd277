export { AgentCore, startAgentCore } from './agentcore';
export type { Peers } from './agentcore';
export { ClusterSync, HealthComponent } from './cluster';
