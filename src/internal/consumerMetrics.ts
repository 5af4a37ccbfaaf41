/**
 * The consumer's metrics, in a module of their own so that `Consumer.ts` and `internal/consumer.ts` can both load
 * them whatever the import order.
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

const lagGauge = Metric.gauge("eventodb_consumer_lag", {
  description: "Newest global position known to exist minus the consumer's saved position"
})
const handledCounter = Metric.counter("eventodb_consumer_handled_total", {
  description: "Messages a consumer's handler succeeded on",
  incremental: true
})
const parkedCounter = Metric.counter("eventodb_consumer_parked_total", {
  description: "Messages a consumer parked after its handler gave up",
  incremental: true
})
const duplicatesCounter = Metric.counter("eventodb_consumer_duplicates_skipped_total", {
  description: "Messages fetched again that were already marked as processed, and so not handled",
  incremental: true
})
// A plain histogram of milliseconds: a timer converts every sample to a `Duration`, which costs more per message
// than the rest of the bookkeeping.
const handlerDuration = Metric.histogram(
  "eventodb_consumer_handler_duration_ms",
  MetricBoundaries.fromIterable([0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]),
  "Time one handler run took, in milliseconds"
)
const unknownTypesCounter = Metric.counter("eventodb_consumer_unknown_types_total", {
  description: "Messages that a dispatch handler skipped because it has no entry for their type",
  incremental: true
})

export const metrics = {
  lag: lagGauge,
  handled: handledCounter,
  parked: parkedCounter,
  duplicatesSkipped: duplicatesCounter,
  handlerDuration,
  unknownTypes: unknownTypesCounter
}
