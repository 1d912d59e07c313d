import type { Sql, TxSql } from './connection.js'

/** Namespace of the two-key advisory locks that serialise requests with one idempotency key. */
const IDEMPOTENCY_LOCK_NS = 7_305_020

export interface StoredAnswer {
  requestHash: string
  statusCode: number
  response: unknown
  createdAt: Date
}

/**
 * Where a key lives: the operation (`scope`) and the caller that sent it (`principal`, see
 * idempotencyPrincipal); the same key under another scope or principal is another key.
 */
export interface IdempotencySlot {
  scope: string
  principal: string
  key: string
}

/**
 * Serialises the transactions that carry the same key: a concurrent retry waits here until
 * the first one commits (then finds its answer) or rolls back (then does the work itself).
 */
export async function lockIdempotencyKey (tx: TxSql, slot: IdempotencySlot): Promise<void> {
  await tx`SELECT pg_advisory_xact_lock(${IDEMPOTENCY_LOCK_NS}::int4, hashtext(${slot.scope} || ' ' || ${slot.principal} || ' ' || ${slot.key}))`
}

export async function findIdempotentAnswer (tx: TxSql, slot: IdempotencySlot): Promise<StoredAnswer | undefined> {
  const [row] = await tx<{ request_hash: string, status_code: number, response: unknown, created_at: Date }[]>`
    SELECT request_hash, status_code, response, created_at FROM idempotency_keys
    WHERE scope = ${slot.scope} AND principal = ${slot.principal} AND key = ${slot.key}`
  return row === undefined ? undefined : { requestHash: row.request_hash, statusCode: row.status_code, response: row.response, createdAt: row.created_at }
}

/** Stores the answer in the transaction that did the work, so it exists exactly when the work does. */
export async function saveIdempotentAnswer (tx: TxSql, slot: IdempotencySlot, requestHash: string, statusCode: number, response: unknown): Promise<void> {
  await tx`
    INSERT INTO idempotency_keys (scope, principal, key, request_hash, status_code, response)
    VALUES (${slot.scope}, ${slot.principal}, ${slot.key}, ${requestHash}, ${statusCode}, ${tx.json(response as never)})`
}

/** Deletes keys older than `keepHours`; returns how many. */
export async function purgeIdempotencyKeys (sql: Sql, keepHours: number): Promise<number> {
  const res = await sql`DELETE FROM idempotency_keys WHERE created_at < now() - ${keepHours} * interval '1 hour'`
  return res.count
}
