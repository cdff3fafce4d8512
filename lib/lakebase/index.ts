// The Lakebase connection library: what handlers import.
export type { DatabricksOp } from './api.ts';
export {
  type ConnectionInfo,
  type ConnectOptions,
  type Connector,
  type ConnectorDeps,
  type ConnectorStats,
  createConnector,
  getConnector,
} from './connector.ts';
export { MIN_CREDENTIAL_REMAINING_MS } from './credentials.ts';
export {
  describeError,
  explainPostgresError,
  LakebaseError,
  type LakebaseErrorCode,
  redact,
} from './errors.ts';
export { DEFAULT_INSTANCE_WAIT, type InstanceWait } from './instance.ts';
export { type Log, silentLog } from './log.ts';
export {
  CONNECT_TIMEOUT_MS,
  LOCK_TIMEOUT_MS,
  type NoticeHandler,
  type SessionOptions,
  STATEMENT_TIMEOUT_MS,
} from './postgres.ts';
export { DEFAULT_RETRY, type RetryPolicy } from './retry.ts';
export { createSecretsManagerClient } from './secret.ts';
export { clearWorkspaceClients } from './workspace.ts';
