import { randomBytes } from 'node:crypto'

/** A request id a client may give in X-Request-Id (kept as the request's id when it matches). */
export const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * Generated request ids: 72 random bits drawn when the process starts (so ids of instances and
 * restarts do not collide) and a counter, e.g. `q3Zk8fJ1wXyT-1a2b`: unique like a UUID for log
 * correlation, at the cost of an increment rather than random bytes per request.
 */
const REQUEST_ID_PREFIX = randomBytes(9).toString('base64url')
let requestCounter = 0

/** The id of a request: its X-Request-Id when that is a valid one, else a new one. */
export function requestIdFor (given: string | string[] | undefined): string {
  return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : `${REQUEST_ID_PREFIX}-${(++requestCounter).toString(36)}`
}
