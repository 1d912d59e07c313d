import t from 'tap'
import { checkValue } from '../../src/domain/value-validation.js'
import type { FeatureDefinition, ValidationRules } from '../../src/domain/feature.js'

const float = (rules: Partial<ValidationRules> = {}): Pick<FeatureDefinition, 'dtype' | 'validation'> => ({ dtype: 'float64', validation: { nullable: false, allow_non_finite: false, ...rules } })

t.test('non-finite spellings: exactly NaN, Infinity, +Infinity, -Infinity, when the feature allows them', async (t) => {
  const allowed = float({ allow_non_finite: true })
  t.same(checkValue(allowed, 'NaN', true), { ok: true, value: { num: Number.NaN, text: null } })
  t.same(checkValue(allowed, 'Infinity', true), { ok: true, value: { num: Number.POSITIVE_INFINITY, text: null } })
  t.same(checkValue(allowed, '+Infinity', false), { ok: true, value: { num: Number.POSITIVE_INFINITY, text: null } })
  t.same(checkValue(allowed, '-Infinity', false), { ok: true, value: { num: Number.NEGATIVE_INFINITY, text: null } })
  t.match(checkValue(float(), 'NaN', true), { ok: false, rule: 'allow_non_finite' })
  // names an object inherits, and near misses, are not spellings of a number
  for (const raw of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'nan', 'Inf', 'infinity', '-NaN', '+', '-', 'I', 'N']) {
    t.match(checkValue(allowed, raw, true), { ok: false, rule: 'dtype' }, JSON.stringify(raw))
  }
})

t.test('numbers as text (CSV): decimal and exponent forms only', async (t) => {
  for (const [raw, num] of [['1', 1], ['-2.5', -2.5], ['+.5', 0.5], ['5.', 5], [' 7 ', 7], ['1e3', 1000], ['-1.5E-2', -0.015]] as const) {
    t.same(checkValue(float(), raw, true), { ok: true, value: { num, text: null } }, raw)
  }
  for (const raw of ['0x10', '0b11', '1_000', '1,5', 'abc', '1e', '.', '--1']) {
    t.match(checkValue(float(), raw, true), { ok: false, rule: 'dtype' }, raw)
  }
  t.match(checkValue(float(), '12', false), { ok: false, rule: 'dtype' }, 'a JSON string is not a number')
})
