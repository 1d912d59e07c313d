import type { Sql } from '../../db/connection.js'
import { ValueStaging } from '../../db/values.js'
import type { Dtype, ValidationRules } from '../../src/domain/feature.js'

export interface DefinitionFixture {
  name: string
  version?: number
  entity?: string
  dtype?: Dtype
  validation?: Partial<ValidationRules>
  ttl_ms?: number | null
  depends_on?: string[]
  status?: 'active' | 'deprecated'
  tags?: string[]
}

/**
 * Inserts a definition straight into the table (for tests of other capabilities that need
 * features to exist without going through the registry API). Returns its id.
 */
export async function insertDefinition (sql: Sql, d: DefinitionFixture): Promise<number> {
  const [row] = await sql<{ id: number }[]>`
    INSERT INTO feature_definitions (name, version, entity, dtype, validation, ttl_ms, depends_on, status, tags)
    VALUES (${d.name}, ${d.version ?? 1}, ${d.entity ?? 'symbol'}, ${d.dtype ?? 'float64'},
            ${sql.json({ nullable: true, allow_non_finite: false, ...d.validation } as never)}, ${d.ttl_ms ?? null},
            ${d.depends_on ?? []}, ${d.status ?? 'active'}, ${d.tags ?? []})
    RETURNING id`
  return row.id
}

export interface RawValue { featureId: number, entityId: string, eventTimeMs: number, num?: number | null, text?: string | null }

/** Appends values through the real write path (one transaction, one ingested_at stamp). */
export async function appendValues (sql: Sql, rows: RawValue[]): Promise<string> {
  return sql.begin(async (tx) => {
    const staging = new ValueStaging(tx)
    await staging.open()
    for (const r of rows) await staging.add({ featureId: r.featureId, entityId: r.entityId, eventTimeMs: r.eventTimeMs, num: r.num ?? null, text: r.text ?? null })
    return (await staging.commit()).ingestedAt
  }) as Promise<string>
}

/** Other client sessions of this database inside a transaction (a join must leave none open). */
export async function transactionsOpen (sql: Sql): Promise<number> {
  const [{ n }] = await sql<Array<{ n: number }>>`
    SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL AND backend_type = 'client backend'`
  return n
}
