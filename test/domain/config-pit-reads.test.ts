import t from 'tap'
import { loadConfig, ConfigError, trainingReadConnections } from '../../src/config.js'

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

t.test('training-set read connections: auto by storage mode, a number from the environment, bad values named', async (t) => {
  const defaults = loadConfig({})
  t.equal(defaults.TRAINING_READ_CONNECTIONS, 'auto')
  t.equal(trainingReadConnections(defaults, 'postgres'), 2, 'two on plain tables')
  t.equal(trainingReadConnections(defaults, 'timescaledb'), 1, 'one on hypertables')
  for (const [value, want] of [['3', 3], [' 1 ', 1], ['auto', 'auto']] as const) {
    const c = loadConfig({ TRAINING_READ_CONNECTIONS: value })
    t.equal(c.TRAINING_READ_CONNECTIONS, want, `${JSON.stringify(value)} reads as ${want}`)
    if (want !== 'auto') t.equal(trainingReadConnections(c, 'timescaledb'), want, 'a number is used in either mode')
  }
  for (const value of ['0', '-2', '1.5', 'two', 'AUTO']) {
    let err: unknown
    try { loadConfig({ TRAINING_READ_CONNECTIONS: value }) } catch (e) { err = e }
    t.ok(err instanceof ConfigError && err.message.includes('TRAINING_READ_CONNECTIONS'), `TRAINING_READ_CONNECTIONS=${value} is refused, naming it`)
  }
})
