export {
  Module,
  MODULES,
  Driver,
  DRIVERS,
  Label,
  KubeLabel,
  GrpcService,
  HealthComponent,
  HOST_OBJECT_ID,
  AGENT_VERSION,
  LEARNED_RULE_IDS,
  MAX_RULE_ID,
  NO_RULE_MARK,
} from './names';
export type { ModuleName, DriverName } from './names';
export { ConfigError, LOG_LEVELS, loadConfig, requireAddr, requireListen } from './config';
export type { AgentConfig, LogLevel } from './config';
