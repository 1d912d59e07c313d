import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from '../../db/connection.js'
import { insertAuditEntry, listAuditEntries, type AuditEntry, type AuditRow } from '../../db/audit.js'
import { BadRequestError } from '../domain/errors.js'
import { parseTimestamp } from '../domain/time.js'

export interface AuditQuery {
  key_id?: string
  method?: string
  route?: string
  status?: number
  from?: string | number
  to?: string | number
  limit?: number
  cursor?: string
}

/** An entry as the API shows it. */
export type AuditView = Omit<AuditRow, 'at'> & { at: string }

/**
 * The audit log: one entry per mutation (who, what, when, outcome). Entries are written
 * after the answer is sent, so the log never slows a request down; an entry that cannot be
 * written (database down) goes to the service log in full instead, at error level. An
 * instance writes its entries one after the other, so their ids follow the order of its
 * answers (written at once on several connections, a later answer's entry could take the
 * smaller id; seen in a test run).
 */
export class AuditService {
  private last: Promise<void> = Promise.resolve()

  constructor (private readonly sql: Sql, private readonly log: FastifyBaseLogger) {}

  record (entry: AuditEntry): Promise<void> {
    entry = { ...entry, url: showNul(entry.url), params: showNul(entry.params), ...(entry.keyName === null ? {} : { keyName: showNul(entry.keyName) }) }
    const p = this.last.then(async () => insertAuditEntry(this.sql, entry))
      .catch((err: unknown) => { this.log.error({ err, audit: entry }, 'audit entry could not be written; it is kept in this log line') })
    this.last = p
    return p
  }

  /** Waits for the entries still being written (on close, and in tests). */
  async flush (): Promise<void> {
    await this.last
  }

  async list (q: AuditQuery): Promise<{ items: AuditView[], next_cursor: string | null }> {
    const limit = q.limit ?? 100
    const fromMs = q.from === undefined ? undefined : timestamp(q.from, 'from')
    const toMs = q.to === undefined ? undefined : timestamp(q.to, 'to')
    let beforeId: number | undefined
    if (q.cursor !== undefined) {
      beforeId = Number(Buffer.from(q.cursor, 'base64url').toString('utf8'))
      if (!Number.isSafeInteger(beforeId) || beforeId < 1) throw new BadRequestError('cursor is invalid: pass next_cursor of the previous page unchanged', [{ path: '/querystring/cursor', field: 'cursor', rule: 'cursor', message: 'is not a cursor of this listing' }])
    }
    const rows = await listAuditEntries(this.sql, {
      keyId: q.key_id, method: q.method?.toUpperCase(), route: q.route, status: q.status, fromMs, toMs, beforeId, limit,
    })
    const page = rows.slice(0, limit)
    return {
      items: page.map(view),
      next_cursor: rows.length > limit ? Buffer.from(String(page[page.length - 1].id)).toString('base64url') : null,
    }
  }
}

function timestamp (input: string | number, field: string): number {
  const t = parseTimestamp(input)
  if (!t.ok) throw new BadRequestError(`${field}: ${t.message}`, [{ path: `/querystring/${field}`, field, message: t.message }])
  return t.ms
}

function view (r: AuditRow): AuditView {
  return { ...r, at: r.at.toISOString() }
}

/**
 * `v` with every NUL character (in strings and keys) shown as U+2400 (SYMBOL FOR NULL): text and
 * jsonb cannot hold NUL, and a request whose path or query decodes to one is still audited.
 */
export function showNul<T> (v: T): T {
  if (typeof v === 'string') return (v.includes('\u0000') ? v.replace(/\u0000/g, '\u2400') : v) as T
  if (v === null || typeof v !== 'object') return v
  if (Array.isArray(v)) return v.map((x) => showNul(x)) as T
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) out[showNul(k)] = showNul(x)
  return out as T
}
