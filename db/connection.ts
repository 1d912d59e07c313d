import postgres from 'postgres'

export type Sql = postgres.Sql<Record<string, unknown>>
export type TxSql = postgres.TransactionSql<Record<string, unknown>>

/**
 * `work` in one transaction on a reserved connection (sql.begin would take another connection
 * from the pool: with the connection held, a pool of one has none to give). Rolled back when
 * `work` fails.
 */
export async function transactionOn<T> (conn: postgres.ReservedSql<Record<string, unknown>>, work: () => Promise<T>): Promise<T> {
  await conn`BEGIN`
  try {
    const out = await work()
    await conn`COMMIT`
    return out
  } catch (err) {
    await conn`ROLLBACK`.catch(() => {})
    throw err
  }
}

export interface ConnectOptions {
  max?: number
  /** Fired for notices and connection errors; defaults to silent. */
  onnotice?: (n: postgres.Notice) => void
  applicationName?: string
  /** Seconds an unused connection stays open (default 60). */
  idleTimeoutSeconds?: number
}

/**
 * The one way the service opens PostgreSQL. int8 is parsed to a JS number: every
 * bigint the service reads (epoch milliseconds, counts, ttl) is far below 2^53.
 */
export function connect (url: string, opts: ConnectOptions = {}): Sql {
  return postgres(url, {
    max: opts.max ?? 10,
    idle_timeout: opts.idleTimeoutSeconds ?? 60,
    connect_timeout: 10,
    onnotice: opts.onnotice ?? (() => {}),
    // JIT off: it recompiles the point-in-time lookups over compressed chunks on every probe (seconds each)
    connection: { application_name: opts.applicationName ?? 'feature-store', jit: 'off' },
    types: {
      int8: {
        to: 20,
        from: [20],
        serialize: (x: number | bigint | string) => String(x),
        parse: (x: string) => Number(x),
      },
    },
  }) as unknown as Sql
}

/** Replaces the database name of a connection URL. */
export function withDatabase (url: string, database: string): string {
  const u = new URL(url)
  u.pathname = `/${encodeURIComponent(database)}`
  return u.toString()
}
