import t from 'tap'
import { openDatabase } from '../../db/bootstrap.js'
import { connect } from '../../db/connection.js'
import { loadConfig } from '../../src/config.js'
import { createTestDatabase, until } from '../lib/helper.js'

/**
 * DB_IDLE_TIMEOUT_SECONDS: how long an unused pooled connection stays open. A new connection
 * reads its first pages of the server's shared memory slowly, so the default keeps them for
 * ten minutes; a short setting closes them soon after their last query.
 */

async function poolConnections (url: string, run: (count: () => Promise<number>) => Promise<void>): Promise<void> {
  const observer = connect(url, { max: 1, applicationName: 'pool-idle-observer' })
  try {
    await run(async () => (await observer<{ n: number }[]>`
      SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'feature-store'`)[0].n)
  } finally {
    await observer.end({ timeout: 1 })
  }
}

t.test('the default keeps unused connections open; a short idle timeout closes them', async (t) => {
  const url = await createTestDatabase(t)
  t.equal(loadConfig({}, { LOAD_DEFAULTS: false }).DB_IDLE_TIMEOUT_SECONDS, 600, 'ten minutes by default')
  for (const [idle, closes] of [[600, false], [1, true]] as const) {
    const db = await openDatabase(url, loadConfig({}, { LOAD_DEFAULTS: false, DB_POOL_MAX: 3, DB_IDLE_TIMEOUT_SECONDS: idle }))
    try {
      // three queries at once: three connections
      await Promise.all([1, 2, 3].map(async () => db.sql`SELECT pg_sleep(0.2)`))
      await poolConnections(url, async (count) => {
        t.equal(await count(), 3, `idle ${idle} s: three connections after three queries at once`)
        if (closes) {
          t.ok(await until(async () => await count() === 0, 10_000), `idle ${idle} s: closed once unused`)
        } else {
          await new Promise((resolve) => setTimeout(resolve, 2500))
          t.equal(await count(), 3, `idle ${idle} s: still open 2.5 s after their last query`)
        }
      })
    } finally {
      await db.sql.end({ timeout: 1 })
    }
  }
})
