import type { App } from '../src/app.js'
import { problems } from './schemas/common.js'
import {
  Contract, ContractList, ContractNameParams, ContractRefParams, ContractVersionList, ContractVersionParams, CreateContractBody,
  ListContractsQuery, NewContractVersionBody, PatchContractBody, RetireResult, ValidateBody, ValidateQuery, ValidationReport,
} from './schemas/contracts.js'
import { VersionsQuery } from './schemas/features.js'

/** Contracts: named, versioned feature sets and the rules a data set must satisfy. */
export default async function contractRoutes (app: App): Promise<void> {
  const contracts = app.services.contracts

  app.post('/v1/contracts', {
    schema: {
      tags: ['contracts'],
      summary: 'Create a contract (version 1)',
      description: 'Every feature must exist, be active and be keyed by the contract entity (422 otherwise). Each feature is a reference (name = latest active version, name@version = pinned), required unless said, with optional overrides of its rules. Status draft (default) or active.',
      body: CreateContractBody,
      response: { 201: Contract, ...problems(400, 401, 403, 409, 413, 415, 422) },
    },
  }, async (request, reply) => {
    const c = await contracts.create(request.body)
    request.auditDetail = { contract: c.name, version: c.version }
    return reply.code(201).header('location', `/v1/contracts/${c.name}/versions/${c.version}`).send(c)
  })

  app.get('/v1/contracts', {
    schema: {
      tags: ['contracts'],
      summary: 'List contracts (filters, cursor pagination)',
      description: 'One entry per contract: its latest active version, else its latest version. Filters: entity, tag, status, feature (contracts naming it), text.',
      querystring: ListContractsQuery,
      response: { 200: ContractList, ...problems(400, 401, 403) },
    },
  }, async (request) => contracts.list(request.query))

  app.get('/v1/contracts/:name', {
    schema: {
      tags: ['contracts'],
      summary: 'Get a contract: latest active version, or name@version',
      description: '`name` answers the latest active version, else the latest version (a draft or retired one); `name@version` answers that version.',
      params: ContractRefParams,
      response: { 200: Contract, ...problems(400, 401, 403, 404) },
    },
  }, async (request) => contracts.get(request.params.name))

  app.get('/v1/contracts/:name/versions', {
    schema: {
      tags: ['contracts'],
      summary: 'List the versions of a contract',
      description: 'Every version, oldest first, whatever its status.',
      params: ContractNameParams,
      querystring: VersionsQuery,
      response: { 200: ContractVersionList, ...problems(400, 401, 403, 404) },
    },
  }, async (request) => contracts.versions(request.params.name, request.query))

  app.get('/v1/contracts/:name/versions/:version', {
    schema: {
      tags: ['contracts'],
      summary: 'Get one version of a contract',
      description: 'That version whatever its status.',
      params: ContractVersionParams,
      response: { 200: Contract, ...problems(400, 401, 403, 404) },
    },
  }, async (request) => contracts.version(request.params.name, request.params.version))

  app.post('/v1/contracts/:name/versions', {
    schema: {
      tags: ['contracts'],
      summary: 'Create the next version of a contract',
      description: 'Version n+1 from the latest version and the changes given (features and rules replace the previous ones as a whole). Status draft unless said; earlier versions keep their status.',
      params: ContractNameParams,
      body: NewContractVersionBody,
      response: { 201: Contract, ...problems(400, 401, 403, 404, 409, 413, 415, 422) },
    },
  }, async (request, reply) => {
    const c = await contracts.newVersion(request.params.name, request.body)
    request.auditDetail = { contract: c.name, version: c.version }
    return reply.code(201).header('location', `/v1/contracts/${c.name}/versions/${c.version}`).send(c)
  })

  app.patch('/v1/contracts/:name', {
    schema: {
      tags: ['contracts'],
      summary: 'Change metadata of a contract, or the status of a version',
      description: 'description, owner and tags apply to every version. status applies to the version addressed (name@version) or the latest version: draft -> active (re-checks its features), draft or active -> retired, retired -> active; never back to draft.',
      params: ContractRefParams,
      body: PatchContractBody,
      response: { 200: Contract, ...problems(400, 401, 403, 404, 409, 413, 415, 422) },
    },
  }, async (request) => contracts.patch(request.params.name, request.body))

  app.delete('/v1/contracts/:name', {
    schema: {
      tags: ['contracts'],
      summary: 'Retire a contract (every version)',
      description: 'Retired versions stay readable and can still validate data; they no longer count as active (they stop guarding their features against deprecation).',
      params: ContractNameParams,
      response: { 200: RetireResult, ...problems(400, 401, 403, 404) },
    },
  }, async (request) => contracts.retire(request.params.name, request.log))

  app.post('/v1/contracts/:name/validate', {
    config: { scope: 'read' },
    schema: {
      tags: ['contracts'],
      summary: 'Check rows against a contract (nothing is written)',
      description: 'Rows in, a report out: valid, the first max_errors row errors ({row, feature, rule, message}, row 0-based), data set errors (min_rows, max_null_fraction), a summary per feature (checked, nulls, violations by rule) and overall. Rows are wide, as a training set produces them. name resolves to the latest active version (else the latest); name@version pins one.',
      params: ContractRefParams,
      querystring: ValidateQuery,
      body: ValidateBody,
      response: { 200: ValidationReport, ...problems(400, 401, 403, 404, 413, 415, 422) },
    },
  }, async (request) => contracts.validate(request.params.name, request.body.rows, request.query.max_errors ?? 100))
}
