import t from 'tap'
import { loadConfig, ConfigError } from '../../src/config.js'

t.test('point-in-time read settings: defaults, values from the environment, bad values named', async (t) => {
  const defaults = loadConfig({})
  t.equal(defaults.PIT_READS, 'auto', 'bounded in TimescaleDB mode, direct in postgres mode')
  t.equal(defaults.PIT_LOOKBACK_SECONDS, 604_800, 'a week')
  const set = loadConfig({ PIT_READS: 'bounded', PIT_LOOKBACK_SECONDS: '3600' })
  t.equal(set.PIT_READS, 'bounded')
  t.equal(set.PIT_LOOKBACK_SECONDS, 3600)
  for (const [key, value] of [['PIT_READS', 'fast'], ['PIT_LOOKBACK_SECONDS', '0'], ['PIT_LOOKBACK_SECONDS', '1.5'], ['PIT_LOOKBACK_SECONDS', 'week']] as const) {
    let err: unknown
    try { loadConfig({ [key]: value }) } catch (e) { err = e }
    t.ok(err instanceof ConfigError && err.message.includes(key), `${key}=${value} is refused, naming ${key}`)
  }
})
