import t from 'tap'
import { embeddedSharedBuffersMb } from '../../db/embedded.js'
import { testAdminUrl } from '../lib/embedded-test-cluster.js'
import { connect } from '../../db/connection.js'

/** The embedded server's shared_buffers: an eighth of the memory, within [128 MB, 1 GB]. */
t.test('shared_buffers of the embedded server follows the machine\'s memory', async (t) => {
  const GB = 2 ** 30
  t.equal(embeddedSharedBuffersMb(0.5 * GB), 128, 'small machines: PostgreSQL\'s default')
  t.equal(embeddedSharedBuffersMb(4 * GB), 512)
  t.equal(embeddedSharedBuffersMb(24 * GB), 1024, 'at most 1 GB')
  t.ok(embeddedSharedBuffersMb() >= 128)
})

t.test('the test cluster (and the bench, which runs on it) has at least the embedded server\'s shared_buffers', { skip: process.env.TEST_DATABASE_URL ? 'TEST_DATABASE_URL is set: not the embedded test cluster' : false }, async (t) => {
  const sql = connect(testAdminUrl(), { max: 1 })
  t.teardown(async () => { await sql.end() })
  const [{ mb }] = await sql<Array<{ mb: number }>>`SELECT (setting::int8 * 8192 / 1048576)::int AS mb FROM pg_settings WHERE name = 'shared_buffers'`
  t.equal(mb, Math.max(256, embeddedSharedBuffersMb()))
})
