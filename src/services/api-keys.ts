import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Sql } from '../../db/connection.js'
import { findApiKey, findApiKeyByHash, insertApiKey, listApiKeys, revokeApiKey, touchApiKey, type ApiKeyRow } from '../../db/api-keys.js'
import { NotFoundError, BadRequestError } from '../domain/errors.js'
import { parseTimestamp } from '../domain/time.js'
import type { Static } from 'typebox'
import type { ApiKeySchema, CreateApiKeyBody, CreatedApiKeySchema } from '../../routes/schemas/api-keys.js'
import { isDatabaseUnavailable } from '../plugins/errors.js'

/** The caller a request runs as. */
export interface Principal {
  /** Key id; null for the ADMIN_API_KEY of the environment. */
  keyId: string | null
  name: string
  scopes: string[]
}

export type ApiKeyView = Static<typeof ApiKeySchema>
export type CreatedApiKey = Static<typeof CreatedApiKeySchema>

export interface ApiKeyServiceOptions {
  adminApiKey?: string
  /** Seconds a lookup (found or not) is reused by this instance. */
  cacheSeconds: number
}

const KEY_PREFIX = 'fs_'
const CACHE_MAX_ENTRIES = 10_000
const TOUCH_EVERY_MS = 60_000

interface CacheEntry { principal: Principal | null, expiresAtMs: number | null, fetchedAtMs: number }

export function hashKey (key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex')
}

/**
 * API keys: created with 256 random bits, shown once, kept as their SHA-256. A presented key
 * is looked up by its hash (an index lookup on a digest of a high-entropy secret, so it
 * leaks nothing useful through timing; only the environment key is compared, in constant
 * time). Lookups are cached for `cacheSeconds`; a revocation clears this instance's cache at
 * once and reaches other instances when their entry ages out. While the database is
 * unreachable a key seen before keeps working from the cache, so cached reads go on.
 */
export class ApiKeyService {
  private readonly cache = new Map<string, CacheEntry>()
  private readonly lastTouch = new Map<string, number>()
  private readonly adminHash?: Buffer

  constructor (private readonly sql: Sql, private readonly opts: ApiKeyServiceOptions) {
    if (opts.adminApiKey) this.adminHash = createHash('sha256').update(opts.adminApiKey, 'utf8').digest()
  }

  /**
   * authenticate's answer when this instance's lookup of the key is fresh, without waiting:
   * undefined when the database must be asked. Cached by the presented key itself, so a hit costs
   * no hashing: a Map's string hashing is seeded per process, so lookup timing says nothing about
   * the keys held. The environment key is never cached: it is always compared in constant time.
   */
  cachedPrincipal (key: string, now = Date.now()): Principal | null | undefined {
    const cached = this.cache.get(key)
    return cached && now - cached.fetchedAtMs < this.opts.cacheSeconds * 1000 ? this.live(cached, now) : undefined
  }

  /** The principal of a presented key, or null when the key is unknown, revoked or expired. */
  async authenticate (key: string): Promise<Principal | null> {
    const now = Date.now()
    const known = this.cachedPrincipal(key, now)
    if (known !== undefined) return known
    const cached = this.cache.get(key)
    const digest = createHash('sha256').update(key, 'utf8').digest()
    if (this.adminHash && timingSafeEqual(digest, this.adminHash)) {
      return { keyId: null, name: 'ADMIN_API_KEY', scopes: ['admin'] }
    }
    const hash = digest.toString('hex')
    let row: ApiKeyRow | undefined
    try {
      row = await findApiKeyByHash(this.sql, hash)
    } catch (err) {
      if (cached && isDatabaseUnavailable(err)) return this.live(cached, now)
      throw err
    }
    const entry: CacheEntry = {
      principal: row && row.revoked_at === null ? { keyId: row.id, name: row.name, scopes: row.scopes } : null,
      expiresAtMs: row?.expires_at ? row.expires_at.getTime() : null,
      fetchedAtMs: now,
    }
    if (this.cache.size >= CACHE_MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value as string)
    this.cache.set(key, entry)
    const principal = this.live(entry, now)
    if (principal?.keyId) this.touch(principal.keyId, now)
    return principal
  }

  private live (entry: CacheEntry, now: number): Principal | null {
    if (entry.expiresAtMs !== null && entry.expiresAtMs <= now) return null
    return entry.principal
  }

  /** Records last use at most once a minute per key, off the request path. */
  private touch (keyId: string, now: number): void {
    if (now - (this.lastTouch.get(keyId) ?? 0) < TOUCH_EVERY_MS) return
    this.lastTouch.set(keyId, now)
    touchApiKey(this.sql, keyId).catch(() => { /* best effort */ })
  }

  async create (input: CreateApiKeyBody, createdBy: Principal | null): Promise<CreatedApiKey> {
    let expiresAt: Date | null = null
    if (input.expires_at !== undefined) {
      const t = parseTimestamp(input.expires_at)
      if (!t.ok) throw new BadRequestError(`expires_at: ${t.message}`, [{ path: '/body/expires_at', field: 'expires_at', rule: 'timestamp', message: t.message }])
      if (t.ms <= Date.now()) throw new BadRequestError('expires_at is in the past', [{ path: '/body/expires_at', field: 'expires_at', rule: 'future', message: 'must be in the future' }])
      expiresAt = new Date(t.ms)
    }
    const key = KEY_PREFIX + randomBytes(32).toString('base64url')
    const row = await insertApiKey(this.sql, {
      name: input.name,
      prefix: key.slice(0, KEY_PREFIX.length + 8),
      keyHash: hashKey(key),
      scopes: [...new Set(input.scopes)],
      createdBy: createdBy ? (createdBy.keyId ?? createdBy.name) : null,
      expiresAt,
    })
    return { ...view(row), key }
  }

  async get (id: string): Promise<ApiKeyView> {
    const row = await findApiKey(this.sql, id)
    if (!row) throw new NotFoundError(`No API key with id ${id}`)
    return view(row)
  }

  async list (q: { include_revoked?: boolean, limit?: number, cursor?: string }): Promise<{ items: ApiKeyView[], next_cursor: string | null }> {
    const limit = q.limit ?? 100
    const afterId = q.cursor === undefined ? undefined : decodeCursor(q.cursor)
    const rows = await listApiKeys(this.sql, { includeRevoked: q.include_revoked ?? false, limit, afterId })
    const page = rows.slice(0, limit)
    return { items: page.map(view), next_cursor: rows.length > limit ? Buffer.from(page[page.length - 1].id).toString('base64url') : null }
  }

  async revoke (id: string): Promise<ApiKeyView> {
    const row = await revokeApiKey(this.sql, id)
    if (!row) throw new NotFoundError(`No API key with id ${id}`)
    // this instance forgets every cached lookup at once; others within cacheSeconds
    this.cache.clear()
    return view(row)
  }
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

function decodeCursor (cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8')
  if (!UUID_RE.test(id)) throw new BadRequestError('cursor is invalid: pass next_cursor of the previous page unchanged', [{ path: '/querystring/cursor', field: 'cursor', rule: 'cursor', message: 'is not a cursor of this listing' }])
  return id
}

function iso (d: Date | null): string | null {
  return d === null ? null : d.toISOString()
}

function view (r: ApiKeyRow): ApiKeyView {
  const status = r.revoked_at !== null ? 'revoked' : (r.expires_at !== null && r.expires_at.getTime() <= Date.now() ? 'expired' : 'active')
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    scopes: r.scopes,
    created_at: r.created_at.toISOString(),
    created_by: r.created_by,
    expires_at: iso(r.expires_at),
    revoked_at: iso(r.revoked_at),
    last_used_at: iso(r.last_used_at),
    status,
  }
}
