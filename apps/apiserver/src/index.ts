export { ApiServer, startApiServer } from './apiserver';
export { LIMITS, validateCreate, validateUpdate, validatePushOn, validateList } from './validate';
