import type { App } from '../src/app.js'
import systemRoutes from './system.js'
import featureRoutes from './features.js'
import contractRoutes from './contracts.js'
import retrieveRoutes from './retrieve.js'
import trainingSetRoutes from './training-sets.js'
import pipelineRunRoutes from './pipeline-runs.js'
import apiKeyRoutes from './api-keys.js'
import auditRoutes from './audit.js'
import driftRoutes from './drift.js'
import featureStatsRoutes from './feature-stats.js'
import lineageRoutes from './lineage.js'
import valuesRoutes from './values.js'
import onlineRoutes from './online.js'
import valueHistoryRoutes from './value-history.js'
import entityInventoryRoutes from './entity-inventory.js'

/** Every route module of the service, registered in this order. */
export default async function routes (app: App): Promise<void> {
  await app.register(systemRoutes)
  await app.register(featureRoutes)
  await app.register(contractRoutes)
  await app.register(retrieveRoutes)
  await app.register(trainingSetRoutes)
  await app.register(pipelineRunRoutes)
  await app.register(apiKeyRoutes)
  await app.register(auditRoutes)
  await app.register(driftRoutes)
  await app.register(featureStatsRoutes)
  await app.register(lineageRoutes)
  await app.register(valuesRoutes)
  await app.register(onlineRoutes)
  await app.register(valueHistoryRoutes)
  await app.register(entityInventoryRoutes)
}
