import type postgres from 'postgres'
import Postgrator from 'postgrator'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { readdirSync } from 'node:fs'
import type { Sql } from './connection.js'
import type { StorageMode } from './storage-mode.js'

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'migrations')
const SCHEMA_TABLE = 'schema_migrations'
/** Serialises migrations of several instances starting at once. */
const MIGRATION_LOCK = 7_305_001

export interface MigrationSettings {
  mode: StorageMode
  snapshotChunkInterval: string
  runsChunkInterval: string
  driftChunkInterval: string
  /**
   * Runs under the migration lock before any migration (e.g. converting the storage mode), on
   * the migration's own connection: a pool of one connection has no other.
   */
  beforeMigrations?: (conn: postgres.ReservedSql<Record<string, unknown>>) => Promise<void>
}

/**
 * Applies the numbered SQL files of migrations/ in order, each once, each in its own
 * transaction. The files read the storage mode and chunk intervals from session settings
 * (`feature_store.*`), so one set of files holds both the TimescaleDB and the plain DDL.
 */
export async function migrate (sql: Sql, settings: MigrationSettings): Promise<string[]> {
  const conn = await sql.reserve()
  try {
    await conn`SELECT pg_advisory_lock(${MIGRATION_LOCK})`
    await conn`SELECT set_config('feature_store.storage_mode', ${settings.mode}, false),
                      set_config('feature_store.snapshot_chunk_interval', ${settings.snapshotChunkInterval}, false),
                      set_config('feature_store.runs_chunk_interval', ${settings.runsChunkInterval}, false),
                      set_config('feature_store.drift_chunk_interval', ${settings.driftChunkInterval}, false)`
    await settings.beforeMigrations?.(conn)
    const postgrator = new Postgrator({
      migrationPattern: path.join(MIGRATIONS_DIR, '*.sql'),
      driver: 'pg',
      schemaTable: SCHEMA_TABLE,
      validateChecksums: true,
      execQuery: async (query: string) => ({ rows: [...await conn.unsafe(query)] }),
      execSqlScript: async (script: string) => {
        await conn.unsafe(`BEGIN;\n${script}\n;COMMIT;`).simple().catch(async (err: unknown) => {
          await conn.unsafe('ROLLBACK').catch(() => {})
          throw err
        })
      },
    })
    const applied = await postgrator.migrate()
    return applied.map((m) => m.filename)
  } finally {
    await conn`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`.catch(() => {})
    conn.release()
  }
}

/** The highest migration version on disk. */
export function latestMigrationVersion (): number {
  return Math.max(0, ...readdirSync(MIGRATIONS_DIR).map((f) => Number.parseInt(f, 10)).filter(Number.isFinite))
}

/** True when the database has every migration on disk applied. */
export async function migrationsCurrent (sql: Sql): Promise<boolean> {
  const [row] = await sql<{ v: number | null }[]>`SELECT max(version)::int AS v FROM schema_migrations`
  return (row?.v ?? 0) >= latestMigrationVersion()
}
